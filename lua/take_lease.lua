-- take_lease: take or renew a scheduler's lease on a shard.
-- KEYS[1] lease        STRING owner id, expires after ttl
-- KEYS[2] fence        STRING counter bumped on every new owner (fencing token)
-- ARGV[1] owner        str
-- ARGV[2] ttl_ms       int
-- Returns: the fencing token (>0) when `owner` holds the lease; 0 when another does
local lease, fence = KEYS[1], KEYS[2]
local owner, ttl = ARGV[1], ARGV[2]

local cur = redis.call('GET', lease)
if cur == owner then
  redis.call('PEXPIRE', lease, ttl)
  return tonumber(redis.call('GET', fence) or 1)
end
if cur then return 0 end
redis.call('SET', lease, owner, 'PX', ttl)
return redis.call('INCR', fence)
