-- Lease up to ARGV[2] watchdog entries due by ARGV[1]: push their score to ARGV[3] and
-- return {member, original score, ...} (the score says when the entry was armed).
-- KEYS[1] watchdog zset.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[2]))
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], ARGV[3], due[i])
end
return due
