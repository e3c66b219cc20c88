-- The expired parked notifications of one destination (state/parking.py: ParkingLot.bury_expired).
-- KEYS: parked-expiry zset (score: when each member expires), parked zset.
-- ARGV: batch, lease_s.
-- Returns the members due: expired and still parked, leased (their expiry pushed lease_s
-- ahead) for the caller to bury; a sweeper that dies mid-way leaves them to the next sweep.
-- Entries of members no longer parked (released, buried) are dropped here.
-- include: now
local out = {}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  if redis.call('ZSCORE', KEYS[2], m) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), m)
    out[#out + 1] = m
  else
    redis.call('ZREM', KEYS[1], m)
  end
end
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[1]) end
return out
