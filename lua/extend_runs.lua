-- extend_runs: renew the lease of in-flight runs, fenced by attempt: XCLAIM (min-idle 0)
-- resets an entry's idle time only while its run hash still names this attempt, running,
-- on this worker, so a worker that lost a run to a reclaim can never take it back.
-- KEYS[1] stream       STREAM one queue stream of this shard
-- ARGV[1] group        str    consumer group of the queue streams
-- ARGV[2] worker       str    consumer / worker id
-- ARGV[3] run_prefix   str    tagged prefix; Derived: <run_prefix><run id> HASH
-- ARGV[4...] items     flat triples: run_id, attempt, entry_id
-- Returns: one code per item: 0 extended, 2 extended but a cancel was asked (the slow path
-- when the cancel signal was missed), -1 run or entry gone, -3 lost (superseded, not
-- running, or held by another worker)
local stream = KEYS[1]
local group, worker, run_prefix = ARGV[1], ARGV[2], ARGV[3]

local out = {}
for i = 4, #ARGV, 3 do
  local run_id, att, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local r = redis.call('HMGET', run_prefix .. run_id, 'st', 'att', 'worker', 'entry', 'cancel')
  local code = 0
  if not r[1] then
    code = -1
  elseif r[2] ~= att or r[1] ~= 'running' or r[3] ~= worker or r[4] ~= entry then
    code = -3
  elseif #redis.call('XCLAIM', stream, group, worker, 0, entry, 'JUSTID') == 0 then
    code = -1  -- no longer pending (acked): nothing left to extend
  elseif r[5] == '1' then
    code = 2
  end
  out[#out + 1] = code
end
return out
