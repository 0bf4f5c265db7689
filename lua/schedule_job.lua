-- schedule_job: create a job, or update it when the caller's version matches.
-- KEYS[1] due          ZSET   job id -> next fire ms
-- KEYS[2] events       STREAM job/run transitions
-- KEYS[3] jobs         ZSET   job id -> creation ms (listing index)
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] job_id       str
-- ARGV[4] next_ms      int    first fire; -1 when the schedule never fires again
-- ARGV[5] expect_ver   int    0 = create only; n > 0 = update only if version is n
-- ARGV[6] spec         bytes  opaque JobSpec blob
-- ARGV[7] sched        bytes  opaque Trigger blob
-- ARGV[8] queue        str
-- ARGV[9] tenant       str
-- ARGV[10] max_att     int
-- ARGV[11] overlap     str    allow | forbid
-- ARGV[12] maxlen      int    events stream cap
-- ARGV[13] wake        str    pub/sub channel told about an earlier head
-- ARGV[14] shard       int
-- ARGV[15] next_slot   str    the unjittered slot of next_ms (the job's `next`); '' = next_ms
-- ARGV[16] max_runs    str    the job is done after this many runs; '' = no limit
-- ARGV[17] conc        str    runs of this job running at once, at most; '' = no limit
-- ARGV[18] prio        str    the job's priority 0-9 (its runs' lane); '' = the queue's default
-- Returns: new version; -4 exists (create), -1 not found, -2 version/state mismatch
local due, events, jobs = KEYS[1], KEYS[2], KEYS[3]
local now, job_prefix, id = ARGV[1], ARGV[2], ARGV[3]
local next_ms, expect = tonumber(ARGV[4]), tonumber(ARGV[5])
local spec, sched, queue, tenant = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local max_att, overlap, maxlen = ARGV[10], ARGV[11], ARGV[12]
local wake, shard = ARGV[13], ARGV[14]
local next_slot, max_runs, conc, prio = ARGV[15], ARGV[16], ARGV[17], ARGV[18] or ''

if next_slot == '' then next_slot = next_ms end

local jkey = job_prefix .. id
local cur = redis.call('HMGET', jkey, 'ver', 'state')
local ver = tonumber(cur[1] or 0)
if expect == 0 and ver > 0 then return -4 end
if expect > 0 then
  if ver == 0 then return -1 end
  if ver ~= expect or cur[2] == 'cancelled' then return -2 end
end
ver = ver + 1
local state = cur[2]
if state ~= 'paused' then state = 'active' end
if next_ms < 0 and state == 'active' then state = 'done' end
local fields = {'spec', spec, 'sched', sched, 'ver', ver, 'queue', queue,
  'tenant', tenant, 'max_att', max_att, 'overlap', overlap, 'state', state,
  'next', next_ms >= 0 and next_slot or '', 'updated', now}
local drop = {}  -- limits an update removes
for _, kv in ipairs({{'maxr', max_runs}, {'conc', conc}, {'prio', prio}}) do
  if kv[2] ~= '' then
    fields[#fields + 1], fields[#fields + 2] = kv[1], kv[2]
  elseif expect > 0 then
    drop[#drop + 1] = kv[1]
  end
end
if #drop > 0 then redis.call('HDEL', jkey, unpack(drop)) end
if expect == 0 then
  fields[#fields + 1], fields[#fields + 2] = 'created', now
  fields[#fields + 1], fields[#fields + 2] = 'runs', 0
  redis.call('ZADD', jobs, now, id)
end
redis.call('HSET', jkey, unpack(fields))  -- one write (bulk creates pay per command)
if state == 'active' then
  local head = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  redis.call('ZADD', due, next_ms, id)
  if #head == 0 or next_ms < tonumber(head[2]) then
    redis.call('PUBLISH', wake, shard .. ' ' .. next_ms)
  end
else
  redis.call('ZREM', due, id)
end
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'k', 'job', 'j', id, 'st', state,
  'ver', ver, 'q', queue, 'tn', tenant, 'spec', spec, 'sched', sched,
  'next', next_ms, 'ov', overlap, 'max', max_att, 't', now)
return ver
