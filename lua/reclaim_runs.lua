-- reclaim_runs: take runs idle past their lease (their worker died or froze) with
-- XAUTOCLAIM, bump the attempt (the fence), and hand them to `consumer`, or end them.
-- KEYS[1] stream       STREAM one queue stream of this shard
-- KEYS[2] events       STREAM job/run transitions
-- KEYS[3] dead         STREAM dead-lettered runs
-- ARGV[1] now_ms       int
-- ARGV[2] group        str
-- ARGV[3] consumer     str    the reclaiming worker
-- ARGV[4] min_idle_ms  int    lease time
-- ARGV[5] count        int    entries examined per call
-- ARGV[6] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[7] ttl_ms       int    run state expires this long after it ends
-- ARGV[8] maxlen       int    events and dead stream cap
-- ARGV[9] ended        str    final statuses, space-separated (models.TERMINAL)
-- ARGV[10] held_prefix str    tagged prefix; Derived: <held_prefix><job id> ZSET (slots held)
-- A re-run keeps its job slot; an ending releases it, so a dead worker never leaks one.
-- Returns: flat {entry_id, run_id, job_id, attempt, slot, payload, ...} to execute now
local stream, events, dead = KEYS[1], KEYS[2], KEYS[3]
local now, group, consumer = ARGV[1], ARGV[2], ARGV[3]
local min_idle, count, run_prefix = ARGV[4], ARGV[5], ARGV[6]
local ttl, maxlen, held_prefix = ARGV[7], ARGV[8], ARGV[10]
local ended = {}
for st in string.gmatch(ARGV[9], '%S+') do ended[st] = true end

local function finish(rkey, run_id, job, st, att, err, slot)
  redis.call('ZREM', held_prefix .. job, run_id)  -- its job slot, if it held one
  redis.call('HSET', rkey, 'st', st, 'err', err, 'end', now)
  redis.call('PEXPIRE', rkey, ttl)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'run', 'r', run_id,
    'j', job, 'st', st, 'att', att, 'err', err, 'end', now, 'slot', slot)
end

local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, '0-0',
  'COUNT', count)
local out = {}
for _, entry in ipairs(claimed[2]) do
  local id, f = entry[1], {}
  local fields = entry[2]
  for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
  -- entries written before the schema's one spelling used s and p (schema.QUEUE_ENTRY)
  local slot, spec = f.slot or f.s, f.spec or f.p
  local rkey = run_prefix .. f.r
  local r = redis.call('HMGET', rkey, 'st', 'att', 'max', 'cancel', 'entry')
  local att = tonumber(r[2] or 0)
  if not r[1] or ended[r[1]] or r[5] ~= id then
    redis.call('XACK', stream, group, id)
  elseif r[4] == '1' then
    redis.call('XACK', stream, group, id)
    finish(rkey, f.r, f.j, 'cancelled', att, 'cancelled while its worker was gone', slot)
  elseif att + 1 > tonumber(r[3]) then
    local err = 'lease expired on attempt ' .. att .. ' (worker lost)'
    redis.call('XACK', stream, group, id)
    redis.call('XADD', dead, 'MAXLEN', '~', maxlen, '*', 'r', f.r, 'j', f.j,
      'q', string.match(stream, ':q:(.*)$'), 'st', 'dead', 'att', att, 'err', err, 't', now)
    finish(rkey, f.r, f.j, 'dead', att, err, slot)
  else
    att = att + 1
    redis.call('HSET', rkey, 'st', 'running', 'att', att, 'worker', consumer, 'start', now)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'run', 'r', f.r,
      'j', f.j, 'st', 'running', 'att', att, 'start', now, 'w', consumer, 'why', 'reclaimed',
      'slot', slot)
    out[#out + 1] = id
    out[#out + 1] = f.r
    out[#out + 1] = f.j
    out[#out + 1] = att
    out[#out + 1] = slot
    out[#out + 1] = spec
  end
end
return out
