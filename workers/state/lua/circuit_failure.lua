-- A retryable failure. KEYS[1] circuit hash, KEYS[2] open set. ARGV[1] failures threshold,
-- ARGV[2] ttl s, ARGV[3] destination, ARGV[4] 1 when this attempt was the probe,
-- ARGV[5] the failure (secret-free, for the dead-letter reason), ARGV[6] 1 when a failed
-- probe counts against the parked notifications: the probe had been attempted before, so
-- its failure is not just a receiver refusing a first attempt (workers/state/parking.py).
-- Returns 1 when this failure opened the circuit, 2 when a failed probe re-opened it.
-- include: now
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if opened then
  if ARGV[4] == '1' and redis.call('HGET', KEYS[1], 'probe_until') then
    redis.call('HSET', KEYS[1], 'opened_at', now, 'state', 'open')
    if ARGV[6] == '1' then
      local made = redis.call('HGET', KEYS[1], 'probe_at') or tostring(now)
      redis.call('HSET', KEYS[1], 'probe_failed_at', made, 'probe_error', ARGV[5])
    end
    redis.call('HDEL', KEYS[1], 'probe_until')
    redis.call('SADD', KEYS[2], ARGV[3])
    return 2
  end
  return 0
end
if n >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'opened_at', now, 'state', 'open')
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
return 0
