-- peek_due: read (never change) up to `limit` due members with their triggers.
-- KEYS[1] due          ZSET   member -> fire ms; members "r:<run id>" are retries
-- ARGV[1] now_ms       int
-- ARGV[2] limit        int
-- ARGV[3] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH (sched, next)
-- Returns: {next_head_ms or -1, member, score, sched, slot, ...}; next_head_ms is the
--          earliest score after now; sched and slot (the job's unjittered `next`) are ''
--          for retries and timed resumes ("r:" and "u:" members)
local due = KEYS[1]
local now, limit, job_prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]

local items = redis.call('ZRANGE', due, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
local head = redis.call('ZRANGE', due, '(' .. now, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
local out = {head[2] or '-1'}
for i = 1, #items, 2 do
  local member = items[i]
  local j = {}
  if string.sub(member, 2, 2) ~= ':' then  -- job ids never hold ':' (names.JOB_ID)
    j = redis.call('HMGET', job_prefix .. member, 'sched', 'next')
  end
  out[#out + 1] = member
  out[#out + 1] = items[i + 1]
  out[#out + 1] = j[1] or ''
  out[#out + 1] = j[2] or ''
end
return out
