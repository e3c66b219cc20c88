-- Lease up to ARGV[2] members scored at most ARGV[1]: push their score to ARGV[3], return
-- them. KEYS[1]: the schedule zset (members due by now), or the watchdog zset (members of
-- lost tasks: workers.state.notification.watchdog_copy_bound). A mover that dies before
-- enqueueing them leaves them due again at ARGV[3].
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], member)
end
return due
