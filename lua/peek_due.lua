-- peek_due: read (never change) up to `limit` due members with their triggers, and with
-- a lookahead the job members due within `ahead_ms` that may be fired ahead of their slot
-- (their runs carry the slot as not-before: workers start them on time).
-- KEYS[1] due          ZSET   member -> fire ms; members "r:<run id>" are retries
-- ARGV[1] now_ms       int
-- ARGV[2] limit        int
-- ARGV[3] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH (sched, next, overlap)
-- ARGV[4] ahead_ms     int    lookahead; 0 = only members due now
-- Returns: {head_ms or -1, member, score, sched, slot, ...}; sched and slot (the job's
--          unjittered `next`) are '' for retries and timed resumes ("r:" and "u:" members).
--          head_ms is when the shard needs a look again: the first member inside the
--          lookahead that fires only when due (a retry, a resume, an overlap rule), else
--          the earliest score after now + ahead_ms
local due = KEYS[1]
local now, limit, job_prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local ahead = tonumber(ARGV[4] or '0')

local out = {'-1'}
local function add(member, score, j)
  out[#out + 1] = member
  out[#out + 1] = score
  out[#out + 1] = j[1] or ''
  out[#out + 1] = j[2] or ''
end

local items = redis.call('ZRANGE', due, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit, 'WITHSCORES')
for i = 1, #items, 2 do
  local member = items[i]
  local j = {}
  if string.sub(member, 2, 2) ~= ':' then  -- job ids never hold ':' (names.JOB_ID)
    j = redis.call('HMGET', job_prefix .. member, 'sched', 'next')
  end
  add(member, items[i + 1], j)
end

local left = limit - #items / 2
if ahead > 0 and left > 0 then
  local later = redis.call('ZRANGE', due, '(' .. now, now + ahead, 'BYSCORE', 'LIMIT', 0, left,
    'WITHSCORES')
  for i = 1, #later, 2 do
    local member, j = later[i], nil
    if string.sub(member, 2, 2) ~= ':' then
      j = redis.call('HMGET', job_prefix .. member, 'sched', 'next', 'overlap')
    end
    if j and j[1] and (not j[3] or j[3] == 'allow') then
      add(member, later[i + 1], j)
    elseif out[1] == '-1' then
      out[1] = later[i + 1]  -- fires only when due: look again then
    end
  end
end
if out[1] == '-1' then
  local head = redis.call('ZRANGE', due, '(' .. (now + ahead), '+inf', 'BYSCORE', 'LIMIT', 0,
    1, 'WITHSCORES')
  out[1] = head[2] or '-1'
end
return out
