-- Lease up to ARGV[2] watchdog entries scored at most ARGV[1] (the entries of lost tasks:
-- workers.state.notification.watchdog_copy_bound): push their score to ARGV[3] and
-- return {member, original score, ...}.
-- KEYS[1] watchdog zset.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[2]))
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], ARGV[3], due[i])
end
return due
