-- pause_job: take an active job out of the due index; its next slot is kept for resume.
-- Paused until an instant, a "u:<job id>" due member resumes it then (fire_due).
-- KEYS[1] due          ZSET   member -> fire ms
-- KEYS[2] events       STREAM job/run transitions
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] job_id       str
-- ARGV[4] maxlen       int    events stream cap
-- ARGV[5] until_ms     int    resume at this instant; -1 = until resumed
-- ARGV[6] wake         str    pub/sub channel told about an earlier head
-- ARGV[7] shard        int
-- Returns: 1 paused; -1 not found, -2 not active (or paused: only the instant changes)
local due, events = KEYS[1], KEYS[2]
local now, job_prefix, id, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local until_ms, wake, shard = tonumber(ARGV[5]), ARGV[6], ARGV[7]

local jkey = job_prefix .. id
local state = redis.call('HGET', jkey, 'state')
if not state then return -1 end
if state ~= 'active' and not (state == 'paused' and until_ms >= 0) then return -2 end
redis.call('HSET', jkey, 'state', 'paused')
redis.call('ZREM', due, id)
local fields = {'t', now, 'k', 'job', 'j', id, 'st', 'paused'}
if until_ms >= 0 then
  redis.call('HSET', jkey, 'until', until_ms)
  redis.call('ZADD', due, until_ms, 'u:' .. id)
  redis.call('PUBLISH', wake, shard .. ' ' .. until_ms)
  fields[#fields + 1], fields[#fields + 2] = 'until', until_ms
else
  redis.call('HDEL', jkey, 'until')
  redis.call('ZREM', due, 'u:' .. id)
end
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', unpack(fields))
return 1
