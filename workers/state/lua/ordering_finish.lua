-- The head of a pair ended. KEYS[1] its notification hash, KEYS[2] in-flight hash,
-- KEYS[3] blocked set. ARGV: prefix, hold-dead (0/1), frontier, now, ttl.
-- Returns {pair, next head or '!blocked' or ''} or false.
-- include: ordering_release
local f = redis.call('HMGET', KEYS[1], 'state', 'ord_pair', 'ord_member')
local state, pair, member = f[1], f[2], f[3]
if not pair or not member then return false end
if state ~= 'delivered' and state ~= 'dead' then return false end
local inflight = KEYS[2]
local current = redis.call('HGET', inflight, pair)
if not current or string.match(current, '^(.*)@[^@]*$') ~= member then return false end
if state == 'dead' and ARGV[2] == '1' then
  redis.call('HSET', inflight, pair, member .. '@held')
  return false
end
redis.call('ZREM', ARGV[1] .. 'ord:q:' .. pair, member)
redis.call('HDEL', inflight, pair)
return {pair, release(inflight, KEYS[3], ARGV[1], pair, ARGV[3], ARGV[4], ARGV[5]) or ''}
