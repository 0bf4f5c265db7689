-- resume_job: put a paused job back in the due index at its kept next slot; a slot
-- that passed while paused is then handled by the job's misfire policy.
-- KEYS[1] due          ZSET   member -> fire ms
-- KEYS[2] events       STREAM job/run transitions
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] job_id       str
-- ARGV[4] maxlen       int    events stream cap
-- ARGV[5] wake         str    pub/sub channel told about an earlier head
-- ARGV[6] shard        int
-- Returns: 1 resumed; -1 not found, -2 not paused
local due, events = KEYS[1], KEYS[2]
local now, job_prefix, id, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local wake, shard = ARGV[5], ARGV[6]

local jkey = job_prefix .. id
local j = redis.call('HMGET', jkey, 'state', 'next')
if not j[1] then return -1 end
if j[1] ~= 'paused' then return -2 end
local state = 'active'
if j[2] and j[2] ~= '' then
  redis.call('ZADD', due, j[2], id)
  redis.call('PUBLISH', wake, shard .. ' ' .. j[2])
else
  state = 'done'
end
redis.call('HSET', jkey, 'state', state)
redis.call('HDEL', jkey, 'until')
redis.call('ZREM', due, 'u:' .. id)  -- a timed resume no longer due
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'job', 'j', id,
  'st', state)
return 1
