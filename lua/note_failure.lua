-- note_failure: count a job's failed attempt in its alert window and say whether to alert.
-- KEYS[1] gate         HASH   the job's alert window (schema.ALERT_GATE)
-- ARGV[1] now_ms       int
-- ARGV[2] window_ms    int    an alert window (starts at the first failure after the last)
-- ARGV[3] threshold    int    failed attempts in a window that alert; 0 = only final ones
-- ARGV[4] per_window   int    alerts sent per job per window, at most
-- ARGV[5] final        str    '1': the run ended failed | dead | timed_out (always alerts)
-- Returns: {code, failures in the window, alerts held back before this one}; code 0
-- nothing to send, 1 send it, 3 held back (this window's alerts are spent)
local gate = KEYS[1]
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local threshold, per_window, final = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]

local g = redis.call('HMGET', gate, 'from', 'fails', 'sent', 'held')
local from, fails, sent, held = tonumber(g[1]), tonumber(g[2] or 0), tonumber(g[3] or 0),
  tonumber(g[4] or 0)
if not from or now - from >= window then
  from, fails, sent = now, 0, 0
end
fails = fails + 1
local code = 0
if final == '1' or (threshold > 0 and fails == threshold) then
  if sent < per_window then
    code, sent = 1, sent + 1
  else
    code, held = 3, held + 1
  end
end
local out = {code, fails, held}
if code == 1 then held = 0 end
redis.call('HSET', gate, 'from', from, 'fails', fails, 'sent', sent, 'held', held)
-- a job that stops failing leaves nothing behind; held-back counts last one more window
redis.call('PEXPIRE', gate, 2 * window)
return out
