-- An attempt's outcome, in one call (state transition in flight -> delivered / retrying /
-- dead; workers/state/notification.py): the notification's state and log, the attempt
-- record, the counters (workers/state/counters.py), and when it is delivered, the watchdog
-- entry's removal and the lock's release.
-- KEYS: notification hash, its log, records list, metric notifications, metric latency,
--       watchdog, lock, the destination's waiting set (workers.config.settings.Keys.waiting).
-- ARGV: attempts, state, event id, destination, first_at, log entry, record, ttl_s,
--       latency bucket ('' without an answer), latency ms, schedule member ('' to keep it),
--       lock token ('' to keep the lock), seconds it waited on an open circuit since its
--       last attempt (added to 'circuit_waited_s': such waits do not eat its retry span),
--       the notification id, then what the run's first read of the hash found (the run
--       holds the lock, so no other run writes these meanwhile): ARGV[15] '1' when it
--       already has 'first_at', ARGV[16] '1' when it has 'circuit_since' or 'waiting',
--       ARGV[17] '1' when it is not empty (it may then be in the waiting set; a new
--       notification has no hash and is in no set). Absent ('' or missing): '1'.
-- Optional, a delivered notification's early broker ack: KEYS[9] kombu's unacked hash,
-- KEYS[10] its unacked_index, ARGV[18] the task message's delivery tag ('': none). The
-- message is acknowledged in the same script that makes it delivered, so the worker's own
-- ack round trip is saved (workers/taskqueue/tuning.py: early_acks).
-- Returns 1 when it released the lock.
if ARGV[15] == '0' then
  redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'state', ARGV[2], 'event', ARGV[3],
             'destination', ARGV[4], 'first_at', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'state', ARGV[2], 'event', ARGV[3],
             'destination', ARGV[4])
  redis.call('HSETNX', KEYS[1], 'first_at', ARGV[5])
end
-- an attempt went through: it no longer waits on a circuit
if ARGV[16] ~= '0' then redis.call('HDEL', KEYS[1], 'circuit_since', 'waiting') end
if tonumber(ARGV[13]) > 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'circuit_waited_s', ARGV[13]) end
redis.call('RPUSH', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('RPUSH', KEYS[3], ARGV[7])
-- waiting for its next attempt (a retry), or not waiting any more
if ARGV[2] == 'retrying' then
  redis.call('SADD', KEYS[8], ARGV[14])
  redis.call('EXPIRE', KEYS[8], ARGV[8])
elseif ARGV[17] ~= '0' then
  redis.call('SREM', KEYS[8], ARGV[14])
end
-- counters (workers/state/counters.py): every attempt; a retry; a notification delivered
-- (a dead one is counted once, by its reason, where it becomes a dead letter)
redis.call('HINCRBY', KEYS[4], ARGV[4] .. '|attempts', 1)
if ARGV[2] == 'retrying' then redis.call('HINCRBY', KEYS[4], ARGV[4] .. '|retries', 1) end
if ARGV[2] == 'delivered' then redis.call('HINCRBY', KEYS[4], ARGV[4] .. '|delivered', 1) end
if ARGV[9] ~= '' then
  redis.call('HINCRBY', KEYS[5], ARGV[4] .. '|' .. ARGV[9], 1)
  redis.call('HINCRBYFLOAT', KEYS[5], ARGV[4] .. '|sum', ARGV[10])
  -- no '|count': /metrics adds up the buckets (workers/ops/metrics.py)
end
if ARGV[11] ~= '' then redis.call('ZREM', KEYS[6], ARGV[11]) end
if ARGV[18] and ARGV[18] ~= '' and ARGV[2] == 'delivered' then
  redis.call('ZREM', KEYS[10], ARGV[18])
  redis.call('HDEL', KEYS[9], ARGV[18])
end
if ARGV[12] ~= '' then
  if redis.call('GET', KEYS[7]) == ARGV[12] then redis.call('DEL', KEYS[7]) end
  return 1
end
return 0
