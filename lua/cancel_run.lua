-- cancel_run: cancel one run: a waiting one at once, a running one by signalling its worker.
-- KEYS[1] due          ZSET   member -> fire ms ("r:<run id>" for a retry)
-- KEYS[2] events       STREAM job/run transitions
-- ARGV[1] now_ms       int
-- ARGV[2] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[3] run_id       str
-- ARGV[4] channel      str    pub/sub channel workers hear cancel signals on
-- ARGV[5] maxlen       int    events stream cap
-- Returns: 1 cancelled, 2 signalled (running); -1 not found, -2 already finished
local due, events = KEYS[1], KEYS[2]
local now, run_prefix, run_id = ARGV[1], ARGV[2], ARGV[3]
local channel, maxlen = ARGV[4], ARGV[5]

local rkey = run_prefix .. run_id
local r = redis.call('HMGET', rkey, 'st', 'job', 'slot', 'att')
local st = r[1]
if not st then return -1 end
if st == 'queued' or st == 'retrying' then
  redis.call('ZREM', due, 'r:' .. run_id)
  redis.call('HSET', rkey, 'st', 'cancelled', 'end', now)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'run', 'r', run_id,
    'j', r[2], 'st', 'cancelled', 'att', r[4], 'end', now, 'slot', r[3])
  return 1
end
if st == 'running' then
  redis.call('HSET', rkey, 'cancel', 1)
  redis.call('PUBLISH', channel, run_id)
  return 2
end
return -2
