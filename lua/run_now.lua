-- run_now: enqueue one extra run of a job at once, leaving its schedule untouched.
-- KEYS[1] events       STREAM job/run transitions
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[4] queue_prefix str    tagged prefix; Derived: <queue_prefix><queue> STREAM
-- ARGV[5] job_id       str
-- ARGV[6] maxlen       int    events stream cap
-- Returns: the new run id; -1 not found, -2 cancelled
local events = KEYS[1]
local now, job_prefix, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local id, maxlen = ARGV[5], ARGV[6]

local jkey = job_prefix .. id
local j = redis.call('HMGET', jkey, 'state', 'queue', 'tenant', 'spec', 'max_att', 'conc',
  'prio')
if not j[1] then return -1 end
if j[1] == 'cancelled' then return -2 end
if j[7] then j[2] = j[2] .. '!' .. j[7] end  -- an explicit priority's lane
local run_id = id .. ':' .. redis.call('HINCRBY', jkey, 'runs', 1)
local entry = redis.call('XADD', queue_prefix .. j[2], '*', 'r', run_id, 'j', id, 'att', 1,
  'slot', now, 'spec', j[4])
local f = {'job', id, 'queue', j[2], 'tenant', j[3], 'st', 'queued', 'att', 1,
  'max', j[5], 'slot', now, 'enq', now, 'entry', entry}
if j[6] then f[#f + 1], f[#f + 2] = 'lim', j[6] end  -- the job's concurrency limit
redis.call('HSET', run_prefix .. run_id, unpack(f))
redis.call('HSET', jkey, 'cur', run_id)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'run', 'r', run_id,
  'j', id, 'st', 'queued', 'att', 1, 'q', j[2], 'tn', j[3], 'slot', now, 'enq', now,
  'why', 'run_now')
return run_id
