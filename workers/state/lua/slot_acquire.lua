-- Take an in-flight slot. KEYS[1] slot zset. ARGV[1] limit, ARGV[2] token, ARGV[3] slot
-- ttl s. Returns 1 when a slot was taken, else 0.
-- include: now
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
