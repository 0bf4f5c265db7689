-- take_token: take one token from an API key's bucket (token bucket rate limit).
-- KEYS[1] bucket       HASH   tokens (float as string), ts (ms of the last refill)
-- ARGV[1] now_ms       int
-- ARGV[2] rate_milli   int    tokens added per second, times 1000
-- ARGV[3] burst        int    bucket size
-- ARGV[4] ttl_ms       int    an idle bucket expires (it would be full by then anyway)
-- Returns: 0 taken; n > 0 refused, ms until one token is back
local bucket = KEYS[1]
local now, rate = tonumber(ARGV[1]), tonumber(ARGV[2]) / 1000
local burst, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])

local b = redis.call('HMGET', bucket, 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if not tokens or not ts then
  tokens, ts = burst, now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
if tokens < 1 then
  redis.call('HSET', bucket, 'tokens', tostring(tokens), 'ts', ts)
  redis.call('PEXPIRE', bucket, ttl)
  return math.max(1, math.ceil((1 - tokens) * 1000 / rate))
end
redis.call('HSET', bucket, 'tokens', tostring(tokens - 1), 'ts', ts)
redis.call('PEXPIRE', bucket, ttl)
return 0
