-- start_runs: mark delivered runs running, fenced by attempt; ack cancelled ones. A run
-- whose job's concurrency limit is full is deferred: acked, still queued, back in the due
-- index as "r:<run id>" (fire_due enqueues it again then).
-- KEYS[1] events       STREAM job/run transitions
-- KEYS[2] due          ZSET   member -> fire ms
-- ARGV[1] now_ms       int
-- ARGV[2] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[3] queue_prefix str    tagged prefix; Derived: <queue_prefix><queue> STREAM
-- ARGV[4] group        str    consumer group of the queue streams
-- ARGV[5] worker       str    consumer / worker id
-- ARGV[6] maxlen       int    events stream cap
-- ARGV[7] held_prefix  str    tagged prefix; Derived: <held_prefix><job id> ZSET run -> ms
-- ARGV[8] defer_ms     int    a deferred run is due again this much later
-- ARGV[9...] items     flat quads: run_id, attempt, entry_id, start ('' = now; a run fired
--                      ahead of its slot is started as of the slot, its task waits for it)
-- Returns: one code per item: 0 start it, -1 gone (acked), -2 cancelled (acked), -3 stale,
--          3 deferred (acked; the job's concurrency limit is full)
local events = KEYS[1]
local now, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3]
local group, worker, maxlen = ARGV[4], ARGV[5], ARGV[6]
local due, held_prefix, defer_ms = KEYS[2], ARGV[7], tonumber(ARGV[8])

-- the run takes a slot of its job's limit, or is deferred (a no-op without a limit)
local function take_slot(run_id, job, lim, att, entry, queue, slot)
  if not lim then return 0 end
  local held = held_prefix .. job
  if redis.call('ZSCORE', held, run_id) then return 0 end
  if redis.call('ZCARD', held) < tonumber(lim) then
    redis.call('ZADD', held, now, run_id)
    return 0
  end
  local at = now + defer_ms
  redis.call('XACK', queue_prefix .. queue, group, entry)
  redis.call('ZADD', due, at, 'r:' .. run_id)
  redis.call('XADD', events, '*', 't', now, 'k', 'run', 'r', run_id, 'j', job,
    'st', 'queued', 'att', att, 'slot', slot, 'retry', at, 'why', 'limited')
  return 3
end

local out = {}
for i = 9, #ARGV, 4 do
  local run_id, att, entry, start = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if start == '' then start = now end
  local rkey = run_prefix .. run_id
  local r = redis.call('HMGET', rkey, 'st', 'att', 'queue', 'job', 'slot', 'lim')
  local code = 0
  if not r[1] then
    code = -1
  elseif r[2] ~= att then
    code = -3
  elseif r[1] == 'cancelled' then
    code = -2
  elseif r[1] ~= 'queued' then
    code = -3
  else
    code = take_slot(run_id, r[4], r[6], att, entry, r[3], r[5])
  end
  if code == -1 or code == -2 then
    -- the entry's queue is unknown for a vanished run; the worker acks those itself
    if r[3] then redis.call('XACK', queue_prefix .. r[3], group, entry) end
  elseif code == 0 then
    redis.call('HSET', rkey, 'st', 'running', 'start', start, 'worker', worker)
    redis.call('XADD', events, '*', 't', now, 'k', 'run', 'r', run_id,
      'j', r[4], 'st', 'running', 'att', att, 'start', start, 'w', worker, 'slot', r[5])
  end
  out[#out + 1] = code
end
redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)  -- once per call, not per event
return out
