-- An attempt's outcome, in one call (state transition in flight -> delivered / retrying /
-- dead; workers/state/notification.py): the notification's state and log, the attempt
-- record, and when it is delivered, the watchdog entry's removal and the lock's release.
-- (The per-attempt counters are summed in the worker and sent in batches:
-- workers/state/counters.py Tally.)
-- KEYS: notification hash, its log, records list, watchdog, lock, the destination's
--       waiting set (workers.config.settings.Keys.waiting).
-- ARGV: attempts, state, event id, destination, first_at, log entry, record, ttl_s,
--       schedule member ('' to keep it), lock token ('' to keep the lock), seconds it
--       waited on an open circuit since its last attempt (added to 'circuit_waited_s':
--       such waits do not eat its retry span), the notification id, then what the run's
--       first read of the hash found (the run holds the lock, so no other run writes these
--       meanwhile): ARGV[13] '1' when it already has 'first_at', ARGV[14] '1' when it has
--       'circuit_since' or 'waiting', ARGV[15] '1' when it is not empty (it may then be in
--       the waiting set; a new notification has no hash and is in no set). Absent ('' or
--       missing): '1'.
-- Optional, a delivered notification's early broker ack: KEYS[7] kombu's unacked hash,
-- KEYS[8] its unacked_index, ARGV[16] the task message's delivery tag ('': none). The
-- message is acknowledged in the same script that makes it delivered, so the worker's own
-- ack round trip is saved (workers/taskqueue/tuning.py: early_acks).
-- Returns 1 when it released the lock.
if ARGV[13] == '0' then
  redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'state', ARGV[2], 'event', ARGV[3],
             'destination', ARGV[4], 'first_at', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'state', ARGV[2], 'event', ARGV[3],
             'destination', ARGV[4])
  redis.call('HSETNX', KEYS[1], 'first_at', ARGV[5])
end
-- an attempt went through: it no longer waits on a circuit
if ARGV[14] ~= '0' then redis.call('HDEL', KEYS[1], 'circuit_since', 'waiting') end
if tonumber(ARGV[11]) > 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'circuit_waited_s', ARGV[11]) end
redis.call('EXPIRE', KEYS[1], ARGV[8])
-- The log is the history that a retry's Flower text, a dead letter and a trace read. A
-- first attempt that delivered leaves it empty: nothing reads it then (a trace shows the
-- database's attempt records when the log is empty, workers/ops/tracing.py; a replay
-- starts a new log), and its record below goes to the database.
if ARGV[2] ~= 'delivered' or ARGV[1] ~= '1' then
  redis.call('RPUSH', KEYS[2], ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[8])
end
redis.call('RPUSH', KEYS[3], ARGV[7])
-- waiting for its next attempt (a retry), or not waiting any more
if ARGV[2] == 'retrying' then
  redis.call('SADD', KEYS[6], ARGV[12])
  redis.call('EXPIRE', KEYS[6], ARGV[8])
elseif ARGV[15] ~= '0' then
  redis.call('SREM', KEYS[6], ARGV[12])
end
if ARGV[9] ~= '' then redis.call('ZREM', KEYS[4], ARGV[9]) end
if ARGV[16] and ARGV[16] ~= '' and ARGV[2] == 'delivered' then
  redis.call('ZREM', KEYS[8], ARGV[16])
  redis.call('HDEL', KEYS[7], ARGV[16])
end
if ARGV[10] ~= '' then
  if redis.call('GET', KEYS[5]) == ARGV[10] then redis.call('DEL', KEYS[5]) end
  return 1
end
return 0
