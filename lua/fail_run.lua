-- fail_run: record a failed attempt (fenced); retry through the due index or dead-letter.
-- KEYS[1] due          ZSET   member -> fire ms; retries are "r:<run id>"
-- KEYS[2] events       STREAM job/run transitions
-- KEYS[3] dead         STREAM dead-lettered runs
-- ARGV[1] now_ms       int
-- ARGV[2] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[3] queue_prefix str    tagged prefix; Derived: <queue_prefix><queue> STREAM
-- ARGV[4] group        str    consumer group of the queue streams
-- ARGV[5] ttl_ms       int    run state expires this long after it ends
-- ARGV[6] maxlen       int    events and dead stream cap
-- ARGV[7] run_id       str
-- ARGV[8] attempt      int    the attempt that failed (fence)
-- ARGV[9] error        str
-- ARGV[10] retry_at_ms int    -1 = never retry (fatal)
-- ARGV[11] final       str    status when no retry: failed | dead | timed_out
-- ARGV[12] held_prefix str    tagged prefix; Derived: <held_prefix><job id> ZSET (slots held)
-- Returns: 1 retrying, 2 ended; -1 run gone, -3 attempt superseded or not running
local due, events, dead = KEYS[1], KEYS[2], KEYS[3]
local now, run_prefix, queue_prefix = ARGV[1], ARGV[2], ARGV[3]
local group, ttl, maxlen = ARGV[4], ARGV[5], ARGV[6]
local run_id, att, err = ARGV[7], ARGV[8], ARGV[9]
local retry_at, final, held_prefix = tonumber(ARGV[10]), ARGV[11], ARGV[12]

local rkey = run_prefix .. run_id
local r = redis.call('HMGET', rkey, 'st', 'att', 'max', 'queue', 'job', 'entry', 'slot',
  'lim')
if not r[1] then return -1 end
if r[2] ~= att or r[1] ~= 'running' then return -3 end
redis.call('XACK', queue_prefix .. r[4], group, r[6])
if r[8] then redis.call('ZREM', held_prefix .. r[5], run_id) end  -- a retry takes it again
local n = tonumber(att)
if retry_at >= 0 and n < tonumber(r[3]) then
  redis.call('HSET', rkey, 'st', 'retrying', 'att', n + 1, 'err', err, 'end', now)
  redis.call('ZADD', due, retry_at, 'r:' .. run_id)
  -- the event's attempt is the hash's (lua/README.md): the one to run next
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'run', 'r', run_id,
    'j', r[5], 'st', 'retrying', 'att', n + 1, 'err', err, 'end', now, 'retry', retry_at,
    'slot', r[7])
  return 1
end
redis.call('HSET', rkey, 'st', final, 'err', err, 'end', now)
redis.call('PEXPIRE', rkey, ttl)
redis.call('XADD', dead, 'MAXLEN', '~', maxlen, '*', 'r', run_id, 'j', r[5], 'q', r[4],
  'st', final, 'att', att, 'err', err, 't', now)
redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 't', now, 'k', 'run', 'r', run_id,
  'j', r[5], 'st', final, 'att', att, 'err', err, 'end', now, 'slot', r[7])
return 2
