-- restore_job: recreate a job lost from Redis (rebuild from the archive); never overwrites.
-- KEYS[1] due          ZSET   job id -> next fire ms
-- KEYS[2] jobs         ZSET   job id -> creation ms (listing index)
-- ARGV[1] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[2] job_id       str
-- ARGV[3] state        str    active | paused | done | cancelled
-- ARGV[4] next_ms      int    next slot; -1 none
-- ARGV[5] version      int
-- ARGV[6] spec         bytes  opaque JobSpec blob
-- ARGV[7] sched        bytes  opaque Trigger blob
-- ARGV[8] queue        str
-- ARGV[9] tenant       str
-- ARGV[10] max_att     int
-- ARGV[11] overlap     str
-- ARGV[12] runs        int    run counter (highest archived run number)
-- ARGV[13] last_ms     int    last fired slot; -1 none
-- ARGV[14] created_ms  int
-- ARGV[15] done_ttl_ms int    finished/cancelled jobs expire after this
-- ARGV[16] name        str    '' = none
-- ARGV[17] labels      str    JSON labels; '' = none
-- ARGV[18] ukey        str    unique key; '' = none
-- ARGV[19] hook        str    JSON webhook; '' = none
-- ARGV[20] max_runs    int    the job's limit of runs in all; '' = none
-- ARGV[21] conc        int    its runs at once, at most; '' = no limit
-- ARGV[22] prio        int    its lane 0-9; '' = the queue's default (the caller registers
--                             the level in the queue's levels set: another slot)
-- Returns: 1 restored; -4 the job already exists in Redis (left untouched)
local due, jobs = KEYS[1], KEYS[2]
local job_prefix, id, state = ARGV[1], ARGV[2], ARGV[3]
local next_ms, ver, spec, sched = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local queue, tenant, max_att, overlap = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local runs, last_ms, created, done_ttl = ARGV[12], tonumber(ARGV[13]), ARGV[14], ARGV[15]
local name, labels, ukey, hook = ARGV[16], ARGV[17], ARGV[18], ARGV[19]
local max_runs, conc, prio = ARGV[20], ARGV[21], ARGV[22]

local jkey = job_prefix .. id
if redis.call('EXISTS', jkey) == 1 then return -4 end
local fields = {'spec', spec, 'sched', sched, 'ver', ver, 'queue', queue,
  'tenant', tenant, 'max_att', max_att, 'overlap', overlap, 'state', state,
  'next', next_ms >= 0 and next_ms or '', 'runs', runs, 'created', created,
  'updated', created}
if last_ms >= 0 then fields[#fields + 1], fields[#fields + 2] = 'last', last_ms end
-- optional fields: written only when archived
for _, f in ipairs({{'name', name}, {'labels', labels}, {'ukey', ukey}, {'hook', hook},
                    {'maxr', max_runs}, {'conc', conc}, {'prio', prio}}) do
  if f[2] ~= '' then fields[#fields + 1], fields[#fields + 2] = f[1], f[2] end
end
redis.call('HSET', jkey, unpack(fields))
if state == 'active' or state == 'paused' then
  redis.call('ZADD', jobs, created, id)
  if state == 'active' then redis.call('ZADD', due, next_ms, id) end
else
  redis.call('PEXPIRE', jkey, done_ttl)
end
return 1
