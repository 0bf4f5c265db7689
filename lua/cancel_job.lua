-- cancel_job: end a job: remove its slot, cancel its waiting run, signal its running one.
-- KEYS[1] due          ZSET   member -> fire ms
-- KEYS[2] events       STREAM job/run transitions
-- KEYS[3] jobs         ZSET   job id -> creation ms (listing index; finished jobs leave it)
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[4] job_id       str
-- ARGV[5] channel      str    pub/sub channel workers hear cancel signals on
-- ARGV[6] maxlen       int    events stream cap
-- ARGV[7] done_ttl_ms  int    a cancelled job's hash expires after this
-- Returns: 1 cancelled; -1 not found, -2 already cancelled
local due, events, jobs = KEYS[1], KEYS[2], KEYS[3]
local now, job_prefix, run_prefix, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local channel, maxlen, done_ttl = ARGV[5], ARGV[6], ARGV[7]

local jkey = job_prefix .. id
local j = redis.call('HMGET', jkey, 'state', 'cur')
if not j[1] then return -1 end
if j[1] == 'cancelled' then return -2 end
redis.call('HSET', jkey, 'state', 'cancelled', 'next', '')
redis.call('ZREM', due, id)
redis.call('ZREM', jobs, id)
redis.call('PEXPIRE', jkey, done_ttl)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'job', 'j', id,
  'st', 'cancelled')
if j[2] then
  local rkey = run_prefix .. j[2]
  local r = redis.call('HMGET', rkey, 'st', 'slot', 'att')
  local st = r[1]
  if st == 'queued' or st == 'retrying' then
    redis.call('ZREM', due, 'r:' .. j[2])
    redis.call('HSET', rkey, 'st', 'cancelled', 'end', now)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'run', 'r', j[2],
      'j', id, 'st', 'cancelled', 'att', r[3], 'end', now, 'slot', r[2])
  elseif st == 'running' then
    redis.call('HSET', rkey, 'cancel', 1)
    redis.call('PUBLISH', channel, j[2])
  end
end
return 1
