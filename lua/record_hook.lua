-- record_hook: record a completion webhook's delivery on its run, while the run exists.
-- KEYS[1] run          HASH   the run (schema.RUN)
-- ARGV[1] status       str    delivered | failed (gave up)
-- ARGV[2] attempts     int    delivery attempts made
-- ARGV[3] code         int    the receiver's last HTTP status; 0 = no answer
-- Returns: 1 recorded; -1 the run's hash is gone (expired): nothing written
local run = KEYS[1]
if redis.call('EXISTS', run) == 0 then return -1 end
redis.call('HSET', run, 'hook', ARGV[1], 'hook_att', ARGV[2], 'hook_code', ARGV[3])
return 1
