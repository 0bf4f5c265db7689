-- complete_runs: record the outcome of finished attempts, fenced by attempt, and ack them.
-- KEYS[1] events       STREAM job/run transitions
-- ARGV[1] now_ms       int
-- ARGV[2] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[3] queue_prefix str    tagged prefix; Derived: <queue_prefix><queue> STREAM
-- ARGV[4] group        str    consumer group of the queue streams
-- ARGV[5] ttl_ms       int    run state expires this long after it ends
-- ARGV[6] maxlen       int    events stream cap
-- ARGV[7] ended        str    final statuses, space-separated (models.TERMINAL)
-- ARGV[8] held_prefix  str    tagged prefix; Derived: <held_prefix><job id> ZSET (slots held)
-- ARGV[9...] items     flat quadruples: run_id, attempt, status (succeeded|cancelled), result
-- Returns: one code per item: 0 recorded, -1 run gone, -2 already ended, -3 attempt superseded
local events = KEYS[1]
local now, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3]
local group, ttl, maxlen, held_prefix = ARGV[4], ARGV[5], ARGV[6], ARGV[8]
local ended = {}
for st in string.gmatch(ARGV[7], '%S+') do ended[st] = true end

local out, acks = {}, {}  -- acks: queue -> entry ids, sent once per queue at the end
local function ack(queue, entry)
  local ids = acks[queue] or {}
  ids[#ids + 1] = entry
  acks[queue] = ids
end

for i = 9, #ARGV, 4 do
  local run_id, att, status, result = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local rkey = run_prefix .. run_id
  local r = redis.call('HMGET', rkey, 'st', 'att', 'queue', 'job', 'entry', 'slot', 'lim')
  local code = 0
  if not r[1] then
    code = -1
  elseif r[2] ~= att then
    code = -3
  elseif ended[r[1]] then
    code = -2
    ack(r[3], r[5])
  elseif r[1] ~= 'running' then
    code = -3
  else
    redis.call('HSET', rkey, 'st', status, 'end', now, 'res', result)
    redis.call('PEXPIRE', rkey, ttl)
    ack(r[3], r[5])
    if r[7] then redis.call('ZREM', held_prefix .. r[4], run_id) end  -- its job slot
    redis.call('XADD', events, '*', 't', now, 'k', 'run', 'r', run_id,
      'j', r[4], 'st', status, 'att', att, 'end', now, 'res', result, 'slot', r[6])
  end
  out[#out + 1] = code
end
-- Acked in the same atomic step that recorded the outcomes, so still never before them.
for queue, ids in pairs(acks) do
  for i = 1, #ids, 1000 do
    redis.call('XACK', queue_prefix .. queue, group, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
redis.call('XTRIM', events, 'MAXLEN', '~', maxlen)
return out
