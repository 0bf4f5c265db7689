-- pause_job: take an active job out of the due index; its next slot is kept for resume.
-- KEYS[1] due          ZSET   member -> fire ms
-- KEYS[2] events       STREAM job/run transitions
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] job_id       str
-- ARGV[4] maxlen       int    events stream cap
-- Returns: 1 paused; -1 not found, -2 not active
local due, events = KEYS[1], KEYS[2]
local now, job_prefix, id, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

local jkey = job_prefix .. id
local state = redis.call('HGET', jkey, 'state')
if not state then return -1 end
if state ~= 'active' then return -2 end
redis.call('HSET', jkey, 'state', 'paused')
redis.call('ZREM', due, id)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'job', 'j', id,
  'st', 'paused')
return 1
