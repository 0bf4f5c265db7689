-- defer_runs: runs a worker read but may not start yet (their queue's concurrency or rate
-- limit, take_queue_slots, refused them): acked, still queued, back in the due index as
-- "r:<run id>" at the given instant (fire_due enqueues them again then), fenced by attempt.
-- KEYS[1] events       STREAM job/run transitions
-- KEYS[2] due          ZSET   member -> fire ms
-- ARGV[1] now_ms       int
-- ARGV[2] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[3] queue_prefix str    tagged prefix; Derived: <queue_prefix><queue> STREAM
-- ARGV[4] group        str    consumer group of the queue streams
-- ARGV[5] maxlen       int    events stream cap
-- ARGV[6] why          str    the event's why: queue_limit | rate_limit
-- ARGV[7...] items     flat quadruples: run_id, attempt, entry_id, due_ms
-- Returns: one code per item: 3 deferred (acked), -1 gone, -2 cancelled (acked),
--          -3 stale attempt or not queued
local events, due = KEYS[1], KEYS[2]
local now, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3]
local group, maxlen, why = ARGV[4], ARGV[5], ARGV[6]

local out = {}
for i = 7, #ARGV, 4 do
  local run_id, att, entry, at = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local r = redis.call('HMGET', run_prefix .. run_id, 'st', 'att', 'queue', 'job', 'slot')
  local code = 3
  if not r[1] then
    code = -1
  elseif r[2] ~= att or (r[1] ~= 'queued' and r[1] ~= 'cancelled') then
    code = -3
  elseif r[1] == 'cancelled' then
    code = -2
    redis.call('XACK', queue_prefix .. r[3], group, entry)
  else
    redis.call('XACK', queue_prefix .. r[3], group, entry)
    redis.call('ZADD', due, at, 'r:' .. run_id)
    redis.call('XADD', events, '*', 't', now, 'k', 'run', 'r', run_id, 'j', r[4],
      'st', 'queued', 'att', att, 'slot', r[5], 'retry', at, 'why', why)
  end
  out[#out + 1] = code
end
redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)
return out
