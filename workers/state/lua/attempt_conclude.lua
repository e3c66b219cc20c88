-- An attempt's outcome, in one call (state transition in flight -> delivered / retrying /
-- dead; workers/state/notification.py): the notification's state and log, the attempt
-- record, and when it is delivered, the watchdog entry's removal.
-- (The per-attempt counters are summed in the worker and sent in batches:
-- workers/state/counters.py Tally.)
-- A delivered notification's lock is not released here: its state is final, so a copy
-- of its task that comes meanwhile reads 'delivered' and is skipped before it looks at
-- the lock, which expires by itself (workers/delivery/deliverer.py _conclude).
-- KEYS: notification hash, its log, records list, watchdog, the destination's waiting set
--       (workers.config.settings.Keys.waiting).
-- ARGV: attempts, state, event id, destination, first_at, log entry, record, ttl_s,
--       schedule member ('' to keep it), seconds it waited on an open circuit since its
--       last attempt (added to 'circuit_waited_s': such waits do not eat its retry span),
--       the notification id, then what the run's first read of the hash found (the run
--       holds the lock, so no other run writes these meanwhile): ARGV[12] '1' when it
--       already has 'first_at', ARGV[13] '1' when it has 'circuit_since' or 'waiting',
--       ARGV[14] '1' when it is not empty (it may then be in the waiting set; a new
--       notification has no hash and is in no set). Absent ('' or missing): '1'.
if ARGV[12] == '0' then
  redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'state', ARGV[2], 'event', ARGV[3],
             'destination', ARGV[4], 'first_at', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'state', ARGV[2], 'event', ARGV[3],
             'destination', ARGV[4])
  redis.call('HSETNX', KEYS[1], 'first_at', ARGV[5])
end
-- an attempt went through: it no longer waits on a circuit
if ARGV[13] ~= '0' then redis.call('HDEL', KEYS[1], 'circuit_since', 'waiting') end
if tonumber(ARGV[10]) > 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'circuit_waited_s', ARGV[10]) end
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
  redis.call('SADD', KEYS[5], ARGV[11])
  redis.call('EXPIRE', KEYS[5], ARGV[8])
elseif ARGV[14] ~= '0' then
  redis.call('SREM', KEYS[5], ARGV[11])
end
if ARGV[9] ~= '' then redis.call('ZREM', KEYS[4], ARGV[9]) end
return 0
