-- May an attempt go? KEYS[1] circuit hash. ARGV[1] reset_s, ARGV[2] probe lease s.
-- Returns {verdict, wait_s, failures_or_probe_failed_at, probe_error}:
--   verdict 0 closed (go): third item 0 when no failure is counted (a success then has
--     nothing to reset), else 1;
--   verdict 1 probe (go): the single half-open attempt; 'probe_at' records when;
--   verdict 2 open (wait): third item the time the last probe of this open period that
--     failed was made ('' when none failed yet), and how it failed.
-- (closed, the common case: one HMGET, no TIME)
local closed = redis.call('HMGET', KEYS[1], 'opened_at', 'failures')
local opened = tonumber(closed[1] or '')
if not opened then return {0, '0', closed[2] and 1 or 0} end
-- include: now
local failed = redis.call('HGET', KEYS[1], 'probe_failed_at') or ''
local why = redis.call('HGET', KEYS[1], 'probe_error') or ''
local reset = tonumber(ARGV[1])
if now < opened + reset then return {2, tostring(opened + reset - now), failed, why} end
local probe = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '')
if probe and probe > now then return {2, tostring(probe - now), failed, why} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]), 'state', 'half-open',
           'probe_at', now)
return {1, '0', failed, why}
