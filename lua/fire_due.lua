-- fire_due: enqueue runs for due members whose score is still the one read (CAS).
-- KEYS[1] due          ZSET   member -> fire ms; "r:<run id>" retries, "u:<job id>" resumes
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
-- ARGV[8] channel      str    pub/sub channel workers hear cancel signals on (replace)
-- ARGV[9...] items     flat 7-tuples: member, read_score, next_ms (-1 none), fire (1/0),
--                      skipped, slot ('' = read_score), next_slot ('' = next_ms); a jittered
--                      job's scores are its slots plus an offset, its runs keep the slots.
--                      A job member read later than now (the scheduler's lookahead) fires
--                      ahead: its run entry carries the read score as `nb` (not before),
--                      and workers start it then
-- Returns: number of runs enqueued; -3 when the lease is held by someone else
-- Writes to the due and jobs indexes and the events trim are batched per call (Redis
-- charges per command: docs/benchmarks.md); the script is atomic, so order is invisible.
local due, events, lease, jobs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, job_prefix, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local owner, maxlen, done_ttl, channel = ARGV[5], ARGV[6], ARGV[7], ARGV[8]

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

local function enqueue(run_id, job_id, queue, tenant, att, max_att, slot, spec, lim, nb)
  local q = {'r', run_id, 'j', job_id, 'att', att, 'slot', slot, 'spec', spec}
  if nb then q[#q + 1], q[#q + 2] = 'nb', nb end  -- fired ahead: not before this
  local entry = redis.call('XADD', queue_prefix .. queue, '*', unpack(q))
  local f = {'job', job_id, 'queue', queue, 'tenant', tenant, 'st', 'queued', 'att', att,
    'max', max_att, 'slot', slot, 'enq', now, 'entry', entry}
  if lim then f[#f + 1], f[#f + 2] = 'lim', lim end  -- the job's concurrency limit
  redis.call('HSET', run_prefix .. run_id, unpack(f))
  event('k', 'run', 'r', run_id, 'j', job_id, 'st', 'queued', 'att', att, 'q', queue,
    'tn', tenant, 'slot', slot, 'enq', now)
end

local function end_job(jkey, id, state, set)
  redis.call('HSET', jkey, 'state', state, 'next', '', unpack(set))
  redis.call('PEXPIRE', jkey, done_ttl)
  unlist[#unlist + 1] = id
  event('k', 'job', 'j', id, 'st', state)
end

-- a retry whose backoff passed, or a run a limit deferred (still queued): enqueue again
local function fire_retry(member)
  redis.call('ZREM', due, member)
  local run_id = string.sub(member, 3)
  local rkey = run_prefix .. run_id
  local r = redis.call('HMGET', rkey, 'st', 'job', 'queue', 'tenant', 'att', 'max', 'slot',
    'lim')
  if r[1] ~= 'retrying' and r[1] ~= 'queued' then return 0 end
  local j = redis.call('HMGET', job_prefix .. r[2], 'state', 'spec')
  if j[1] == 'cancelled' or not j[2] then
    redis.call('HSET', rkey, 'st', 'cancelled', 'end', now)
    event('k', 'run', 'r', run_id, 'j', r[2], 'st', 'cancelled', 'att', r[5], 'end', now,
      'slot', r[7])
    return 0
  end
  enqueue(run_id, r[2], r[3], r[4], r[5], r[6], r[7], j[2], r[8])
  return 1
end

-- a job paused until `read`: active again, back at its kept slot (misfire policy applies)
local function resume(member, read)
  redis.call('ZREM', due, member)
  local id = string.sub(member, 3)
  local jkey = job_prefix .. id
  local j = redis.call('HMGET', jkey, 'state', 'until', 'next')
  if j[1] ~= 'paused' or tonumber(j[2]) ~= tonumber(read) then return 0 end  -- resumed or re-paused since
  redis.call('HDEL', jkey, 'until')
  if j[3] and j[3] ~= '' then
    redis.call('HSET', jkey, 'state', 'active')
    add[#add + 1], add[#add + 2] = j[3], id
    event('k', 'job', 'j', id, 'st', 'active', 'why', 'resumed')
  else
    end_job(jkey, id, 'done', {})
  end
  return 0
end

-- overlap replace: the unfinished run is cancelled (a running one through its worker)
local function replace(run_id)
  local rkey = run_prefix .. run_id
  local r = redis.call('HMGET', rkey, 'st', 'job', 'slot', 'att')
  if r[1] == 'queued' or r[1] == 'retrying' then
    redis.call('ZREM', due, 'r:' .. run_id)
    redis.call('HSET', rkey, 'st', 'cancelled', 'end', now)
    event('k', 'run', 'r', run_id, 'j', r[2], 'st', 'cancelled', 'att', r[4], 'end', now,
      'slot', r[3], 'why', 'replaced')
  elseif r[1] == 'running' then
    redis.call('HSET', rkey, 'cancel', 1)
    redis.call('PUBLISH', channel, run_id)
  end
end

local function active_run(run_id)
  if not run_id then return false end
  local st = redis.call('HGET', run_prefix .. run_id, 'st')
  return st == 'queued' or st == 'running' or st == 'retrying'
end

local function fire_job(id, read, next_ms, fire, skipped, slot, next_slot, nb)
  local jkey = job_prefix .. id
  local j = redis.call('HMGET', jkey, 'state', 'queue', 'tenant', 'spec', 'max_att',
    'overlap', 'cur', 'runs', 'maxr', 'conc', 'prio')
  -- ahead of its slot only where nothing at the slot could change the decision; an
  -- overlap rule set since the peek leaves the member due for a fire on time
  if nb and j[6] and j[6] ~= 'allow' then return 0 end
  if j[1] ~= 'active' then rem[#rem + 1] = id return 0 end
  if fire == 1 and j[6] == 'forbid' and active_run(j[7]) then
    fire = 0
    event('k', 'skip', 'j', id, 'slot', slot, 'why', 'overlap', 'n', 1)
  elseif fire == 1 and j[6] == 'replace' and j[7] then
    replace(j[7])
  end
  local set, n = {}, tonumber(j[8] or 0)
  if fire == 1 then
    n = n + 1
    local run_id = id .. ':' .. n
    local lane = j[2]  -- an explicit priority queues into the lane "<queue>!<prio>"
    if j[11] then lane = lane .. '!' .. j[11] end
    enqueue(run_id, id, lane, j[3], 1, j[5], slot, j[4], j[10], nb)
    set = {'runs', n, 'cur', run_id, 'last', slot}
  end
  if skipped > 0 then
    event('k', 'skip', 'j', id, 'slot', slot, 'why', 'misfire', 'n', skipped)
  end
  if j[9] and n >= tonumber(j[9]) then next_ms = -1 end  -- max runs reached
  if next_ms >= 0 then
    add[#add + 1], add[#add + 2] = next_ms, id
    redis.call('HSET', jkey, 'next', next_slot, unpack(set))
  else
    rem[#rem + 1] = id
    end_job(jkey, id, 'done', set)
  end
  return fire
end

local fired = 0
for i = 9, #ARGV, 7 do
  local member, read = ARGV[i], ARGV[i + 1]
  local score = redis.call('ZSCORE', due, member)
  if score and tonumber(score) == tonumber(read) then
    local kind = string.sub(member, 1, 2)
    if kind == 'r:' then
      fired = fired + fire_retry(member)
    elseif kind == 'u:' then
      resume(member, score)
    else
      local nxt = tonumber(ARGV[i + 2])
      local slot, next_slot, nb = ARGV[i + 5], ARGV[i + 6], nil
      if slot == '' then slot = read end
      if next_slot == '' then next_slot = nxt end
      if tonumber(read) > tonumber(now) then nb = read end
      fired = fired + fire_job(member, read, nxt, tonumber(ARGV[i + 3]),
        tonumber(ARGV[i + 4]), slot, next_slot, nb)
    end
  end
end
batch('ZREM', due, rem)
batch('ZADD', due, add)
batch('ZREM', jobs, unlist)
redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)
return fired
