-- release_lease: give up a shard lease if `owner` still holds it.
-- KEYS[1] lease        STRING owner id
-- ARGV[1] owner        str
-- Returns: 1 released, 0 not held by owner
local lease, owner = KEYS[1], ARGV[1]
if redis.call('GET', lease) == owner then
  redis.call('DEL', lease)
  return 1
end
return 0
