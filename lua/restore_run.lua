-- restore_run: re-queue an unfinished run lost from Redis, as a retry due now.
-- KEYS[1] due          ZSET   member -> fire ms; retries are "r:<run id>"
-- ARGV[1] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[2] run_id       str
-- ARGV[3] job_id       str
-- ARGV[4] queue        str
-- ARGV[5] tenant       str
-- ARGV[6] attempt      int    the attempt to run next
-- ARGV[7] max_att      int
-- ARGV[8] slot_ms      int
-- ARGV[9] due_ms       int
-- Returns: 1 restored; -4 the run already exists in Redis (left untouched)
local due = KEYS[1]
local run_prefix, run_id, job_id, queue = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local tenant, att, max_att, slot, due_ms = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]

local rkey = run_prefix .. run_id
if redis.call('EXISTS', rkey) == 1 then return -4 end
redis.call('HSET', rkey, 'job', job_id, 'queue', queue, 'tenant', tenant, 'st', 'retrying',
  'att', att, 'max', max_att, 'slot', slot, 'err', 'restored from the archive')
redis.call('ZADD', due, due_ms, 'r:' .. run_id)
return 1
