-- take_queue_slots: take a slot of a queue's concurrency limit and a start of its rate
-- limit for each run a worker is about to start (queue-wide keys, one slot: {q:<queue>}).
-- A slot is held under a lease (renewed with the run's lease, released after its
-- outcome); a holder whose lease passed (its worker died) is dropped here, so a crash
-- never leaks a slot. The rate limit is a GCRA: starts spaced period/rate apart, with up
-- to `burst` at once. Runs refused are deferred by the worker (defer_runs).
-- KEYS[1] limits       HASH   conc, rate, per (ms), burst (schema.QUEUE_LIMITS)
-- KEYS[2] held         ZSET   "<run id>/<attempt>" -> lease deadline ms
-- KEYS[3] rate         STRING theoretical arrival time of the next start, ms (GCRA)
-- ARGV[1] now_ms       int
-- ARGV[2] lease_ms     int    a slot taken here is held this long unless renewed
-- ARGV[3...] items     holder names: "<run id>/<attempt>"
-- Returns: {wait_ms, interval_us, code per item}: 0 taken (or already held), 3 the
--          queue's concurrency limit is full, 4 over the rate limit; wait_ms: when the
--          first refused start may pass the rate limit, interval_us: spacing of starts
local limits, held, rate_key = KEYS[1], KEYS[2], KEYS[3]
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])

local cfg = redis.call('HMGET', limits, 'conc', 'rate', 'per', 'burst')
local conc, rate, per = tonumber(cfg[1]), tonumber(cfg[2]), tonumber(cfg[3] or 1000)
local interval, tolerance, tat = 0, 0, now
if rate then
  interval = per / rate
  tolerance = (tonumber(cfg[4] or 1) - 1) * interval
  tat = math.max(tonumber(redis.call('GET', rate_key) or 0), now)
end
local count = 0
if conc then
  redis.call('ZREMRANGEBYSCORE', held, '-inf', now)  -- holders whose worker stopped renewing
  count = redis.call('ZCARD', held)
end

local out, take = {0, math.floor(interval * 1000)}, {}
for i = 3, #ARGV do
  local member, code = ARGV[i], 0
  if conc and redis.call('ZSCORE', held, member) then
    take[#take + 1], take[#take + 2] = now + lease, member  -- held already: renewed
  elseif conc and count >= conc then
    code = 3
  elseif rate and tat - now > tolerance then
    code = 4
  else
    if rate then tat = tat + interval end
    if conc then
      count = count + 1
      take[#take + 1], take[#take + 2] = now + lease, member
    end
  end
  out[#out + 1] = code
end
if #take > 0 then redis.call('ZADD', held, unpack(take)) end
if rate then
  redis.call('SET', rate_key, string.format('%.3f', tat), 'PX', math.ceil(tat - now + per))
  out[1] = math.max(1, math.ceil(tat - now - tolerance))
end
return out
