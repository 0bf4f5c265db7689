-- start_runs: mark delivered runs running, fenced by attempt; ack cancelled ones.
-- KEYS[1] events       STREAM job/run transitions
-- ARGV[1] now_ms       int
-- ARGV[2] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[3] queue_prefix str    tagged prefix; Derived: <queue_prefix><queue> STREAM
-- ARGV[4] group        str    consumer group of the queue streams
-- ARGV[5] worker       str    consumer / worker id
-- ARGV[6] maxlen       int    events stream cap
-- ARGV[7...] items     flat triples: run_id, attempt, entry_id
-- Returns: one code per item: 0 start it, -1 gone (acked), -2 cancelled (acked), -3 stale
local events = KEYS[1]
local now, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3]
local group, worker, maxlen = ARGV[4], ARGV[5], ARGV[6]

local out = {}
for i = 7, #ARGV, 3 do
  local run_id, att, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local rkey = run_prefix .. run_id
  local r = redis.call('HMGET', rkey, 'st', 'att', 'queue', 'job', 'slot')
  local code = 0
  if not r[1] then
    code = -1
  elseif r[2] ~= att then
    code = -3
  elseif r[1] == 'cancelled' then
    code = -2
  elseif r[1] ~= 'queued' then
    code = -3
  end
  if code == -1 or code == -2 then
    -- the entry's queue is unknown for a vanished run; the worker acks those itself
    if r[3] then redis.call('XACK', queue_prefix .. r[3], group, entry) end
  elseif code == 0 then
    redis.call('HSET', rkey, 'st', 'running', 'start', now, 'worker', worker)
    redis.call('XADD', events, '*', 't', now, 'k', 'run', 'r', run_id,
      'j', r[4], 'st', 'running', 'att', att, 'start', now, 'w', worker, 'slot', r[5])
  end
  out[#out + 1] = code
end
redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)  -- once per call, not per event
return out
