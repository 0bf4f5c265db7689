-- count_job_states: count the states of a slice of one shard's jobs (read only, for /metrics).
-- KEYS[1] jobs         ZSET   job id -> creation ms (the shard's listing index)
-- ARGV[1] job_prefix   str    job hash key = job_prefix .. job id
-- ARGV[2] start        int    rank of the first index member to examine
-- ARGV[3] count        int    index members to examine at most (one short call)
-- Returns: {examined, state, n, state, n, ...}; a member whose hash expired counts as "gone"
local jobs, prefix = KEYS[1], ARGV[1]
local start, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZRANGE', jobs, start, start + count - 1)
local counts, out = {}, {#ids}
for _, id in ipairs(ids) do
  local state = redis.call('HGET', prefix .. id, 'state') or 'gone'
  counts[state] = (counts[state] or 0) + 1
end
for state, n in pairs(counts) do
  out[#out + 1] = state
  out[#out + 1] = n
end
return out
