-- fire_due: enqueue runs for due members whose score is still the one read (CAS).
-- KEYS[1] due          ZSET   member -> fire ms; "r:<run id>" members are retries
-- KEYS[2] events       STREAM job/run transitions
-- KEYS[3] lease        STRING scheduler owning this shard
-- KEYS[4] jobs         ZSET   job id -> creation ms (listing index; finished jobs leave it)
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[4] queue_prefix str    tagged prefix; Derived: <queue_prefix><queue> STREAM
-- ARGV[5] owner        str    lease owner to check; '' = static shard assignment
-- ARGV[6] maxlen       int    events stream cap
-- ARGV[7] done_ttl_ms  int    a finished job's hash expires after this
-- ARGV[8...] items     flat quintuples: member, read_score, next_ms (-1 none), fire (1/0), skipped
-- Returns: number of runs enqueued; -3 when the lease is held by someone else
-- Writes to the due and jobs indexes and the events trim are batched per call (Redis
-- charges per command: docs/benchmarks.md); the script is atomic, so order is invisible.
local due, events, lease, jobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, job_prefix, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local owner, maxlen, done_ttl = ARGV[5], ARGV[6], ARGV[7]

if owner ~= '' and redis.call('GET', lease) ~= owner then return -3 end

local rem, add, unlist = {}, {}, {}  -- due members to drop, {score, member} to set, jobs

local function event(...)
  redis.call('XADD', events, '*', 't', now, ...)
end

local function batch(cmd, key, args)  -- one command per 1000 arguments (unpack limit)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end

local function enqueue(run_id, job_id, queue, tenant, att, max_att, slot, spec)
  local entry = redis.call('XADD', queue_prefix .. queue, '*', 'r', run_id, 'j', job_id,
    'att', att, 'slot', slot, 'spec', spec)
  redis.call('HSET', run_prefix .. run_id, 'job', job_id, 'queue', queue, 'tenant', tenant,
    'st', 'queued', 'att', att, 'max', max_att, 'slot', slot, 'enq', now, 'entry', entry)
  event('k', 'run', 'r', run_id, 'j', job_id, 'st', 'queued', 'att', att, 'q', queue,
    'tn', tenant, 'slot', slot, 'enq', now)
end

local function fire_retry(member)
  redis.call('ZREM', due, member)
  local run_id = string.sub(member, 3)
  local rkey = run_prefix .. run_id
  local r = redis.call('HMGET', rkey, 'st', 'job', 'queue', 'tenant', 'att', 'max', 'slot')
  if r[1] ~= 'retrying' then return 0 end
  local j = redis.call('HMGET', job_prefix .. r[2], 'state', 'spec')
  if j[1] == 'cancelled' or not j[2] then
    redis.call('HSET', rkey, 'st', 'cancelled', 'end', now)
    event('k', 'run', 'r', run_id, 'j', r[2], 'st', 'cancelled', 'att', r[5], 'end', now,
      'slot', r[7])
    return 0
  end
  enqueue(run_id, r[2], r[3], r[4], r[5], r[6], r[7], j[2])
  return 1
end

local function active_run(run_id)
  if not run_id then return false end
  local st = redis.call('HGET', run_prefix .. run_id, 'st')
  return st == 'queued' or st == 'running' or st == 'retrying'
end

local function fire_job(id, read, next_ms, fire, skipped)
  local jkey = job_prefix .. id
  local j = redis.call('HMGET', jkey, 'state', 'queue', 'tenant', 'spec', 'max_att',
    'overlap', 'cur', 'runs')
  if j[1] ~= 'active' then rem[#rem + 1] = id return 0 end
  if fire == 1 and j[6] == 'forbid' and active_run(j[7]) then
    fire = 0
    event('k', 'skip', 'j', id, 'slot', read, 'why', 'overlap', 'n', 1)
  end
  local set = {}
  if fire == 1 then
    local n = tonumber(j[8] or 0) + 1
    local run_id = id .. ':' .. n
    enqueue(run_id, id, j[2], j[3], 1, j[5], read, j[4])
    set = {'runs', n, 'cur', run_id, 'last', read}
  end
  if skipped > 0 then
    event('k', 'skip', 'j', id, 'slot', read, 'why', 'misfire', 'n', skipped)
  end
  if next_ms >= 0 then
    add[#add + 1], add[#add + 2] = next_ms, id
    redis.call('HSET', jkey, 'next', next_ms, unpack(set))
  else
    rem[#rem + 1], unlist[#unlist + 1] = id, id
    redis.call('HSET', jkey, 'state', 'done', 'next', '', unpack(set))
    redis.call('PEXPIRE', jkey, done_ttl)
    event('k', 'job', 'j', id, 'st', 'done')
  end
  return fire
end

local fired = 0
for i = 8, #ARGV, 5 do
  local member, read = ARGV[i], ARGV[i + 1]
  local score = redis.call('ZSCORE', due, member)
  if score and tonumber(score) == tonumber(read) then
    if string.sub(member, 1, 2) == 'r:' then
      fired = fired + fire_retry(member)
    else
      fired = fired + fire_job(member, read, tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]),
        tonumber(ARGV[i + 4]))
    end
  end
end
batch('ZREM', due, rem)
batch('ZADD', due, add)
batch('ZREM', jobs, unlist)
redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)
return fired
