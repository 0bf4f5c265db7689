-- claim_name: compare-and-set a tenant's unique job name (claim, take over, or release).
-- KEYS[1] names        HASH   job name -> job id
-- ARGV[1] name         str
-- ARGV[2] expect       str    the holder the caller saw; "" = the name is free
-- ARGV[3] job_id       str    the new holder; "" = release the name
-- Returns: 1 done; -4 the name is held by someone other than `expect`
local names = KEYS[1]
local name, expect, job_id = ARGV[1], ARGV[2], ARGV[3]

local cur = redis.call('HGET', names, name) or ''
if cur ~= expect then return -4 end
if job_id == '' then
  redis.call('HDEL', names, name)
else
  redis.call('HSET', names, name, job_id)
end
return 1
