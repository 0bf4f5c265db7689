-- schedule_job: create jobs of one shard, or update one when the caller's version matches.
-- Each item is its own outcome (a create of an existing id refuses only that item), so a
-- bulk create sends one call per shard instead of one per job.
-- KEYS[1] due          ZSET   job id -> next fire ms
-- KEYS[2] events       STREAM job/run transitions
-- KEYS[3] jobs         ZSET   job id -> creation ms (listing index)
-- ARGV[1] now_ms       int
-- ARGV[2] job_prefix   str    tagged prefix; Derived: <job_prefix><id> HASH
-- ARGV[3] maxlen       int    events stream cap
-- ARGV[4] wake         str    pub/sub channel told about an earlier head
-- ARGV[5] shard        int
-- ARGV[6...] items     flat groups of 17 per job: job_id; expect_ver (0 = create only,
--                      n > 0 = update only if the version is n); next_ms (first fire, -1
--                      = never again); next_slot (the unjittered slot of next_ms, the
--                      job's `next`; '' = next_ms); spec, sched (opaque JobSpec and
--                      Trigger blobs); queue; tenant; max_att; overlap (allow | forbid |
--                      replace); max_runs, conc, prio (runs in all, at once, the lane 0-9;
--                      '' = no limit / the queue's default); name, labels (JSON), hook
--                      (JSON webhook): '' = none (an update removes it); ukey: the unique
--                      key, written only when given (fixed at creation). The job event
--                      carries them all as given ('' = not set), for the archive.
-- Returns: one code per item: its new version; -4 exists (create), -1 not found, -2
--          version or state mismatch
local due, events, jobs = KEYS[1], KEYS[2], KEYS[3]
local now, job_prefix, maxlen = ARGV[1], ARGV[2], ARGV[3]
local wake, shard = ARGV[4], ARGV[5]

local head = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
local head_ms = tonumber(head[2])  -- nil: nothing due before this call
local adds, listed, low = {}, {}, nil  -- due entries and listing entries, written at the end

-- an optional field: written when set, dropped by an update that leaves it unset
local function optional(fields, drop, expect, name, value)
  if value ~= '' then
    fields[#fields + 1], fields[#fields + 2] = name, value
  elseif expect > 0 then
    drop[#drop + 1] = name
  end
end

local function schedule(id, expect, next_ms, next_slot, spec, sched, queue, tenant, max_att,
                        overlap, max_runs, conc, prio, name, labels, ukey, hook)
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
  if next_slot == '' then next_slot = next_ms end
  local fields = {'spec', spec, 'sched', sched, 'ver', ver, 'queue', queue,
    'tenant', tenant, 'max_att', max_att, 'overlap', overlap, 'state', state,
    'next', next_ms >= 0 and next_slot or '', 'updated', now}
  local drop = {}  -- optional fields an update removes
  optional(fields, drop, expect, 'maxr', max_runs)
  optional(fields, drop, expect, 'conc', conc)
  optional(fields, drop, expect, 'prio', prio)
  optional(fields, drop, expect, 'name', name)
  optional(fields, drop, expect, 'labels', labels)
  optional(fields, drop, expect, 'hook', hook)
  optional(fields, drop, 0, 'ukey', ukey)  -- never dropped: an update does not send it
  if #drop > 0 then redis.call('HDEL', jkey, unpack(drop)) end
  if expect == 0 then
    fields[#fields + 1], fields[#fields + 2] = 'created', now
    fields[#fields + 1], fields[#fields + 2] = 'runs', 0
    listed[#listed + 1], listed[#listed + 2] = now, id
  end
  redis.call('HSET', jkey, unpack(fields))
  if state == 'active' then
    adds[id] = next_ms
    if low == nil or next_ms < low then low = next_ms end
  else
    adds[id] = nil
    redis.call('ZREM', due, id)
  end
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'k', 'job', 'j', id, 'st', state,
    'ver', ver, 'q', queue, 'tn', tenant, 'spec', spec, 'sched', sched,
    'next', next_ms, 'ov', overlap, 'max', max_att, 'maxr', max_runs, 'conc', conc,
    'prio', prio, 'nm', name, 'lb', labels, 'uk', ukey, 'hk', hook, 't', now)
  return ver
end

local out = {}
for i = 6, #ARGV, 17 do
  out[#out + 1] = schedule(ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3],
    ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9],
    ARGV[i + 10], ARGV[i + 11], ARGV[i + 12], ARGV[i + 13], ARGV[i + 14], ARGV[i + 15],
    ARGV[i + 16])
end

-- One ZADD per index for the whole call, in pieces (unpack is bounded by Lua's stack).
local function zadd(key, flat)
  for i = 1, #flat, 1000 do
    redis.call('ZADD', key, unpack(flat, i, math.min(i + 999, #flat)))
  end
end
local pairs_due = {}
for id, ms in pairs(adds) do
  pairs_due[#pairs_due + 1], pairs_due[#pairs_due + 2] = ms, id
end
zadd(jobs, listed)
zadd(due, pairs_due)
-- one wake for the call: the earliest entry it added, if it is earlier than the head was
if low ~= nil and (head_ms == nil or low < head_ms) then
  redis.call('PUBLISH', wake, shard .. ' ' .. low)
end
return out
