-- Lease up to ARGV[2] members due by ARGV[1]: push their score to ARGV[3], return them.
-- KEYS[1] schedule zset.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[3], member)
end
return due
