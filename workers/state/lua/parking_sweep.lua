-- Sweep one destination's parked notifications (workers/state/parking.py).
-- KEYS: parked zset (score: the notification's deadline), parked-since zset (score: when
--       it was parked), parked index, circuit hash, schedule zset, circuits-open set.
-- ARGV: destination, reset_s, batch, lease_s, release_all (1: gone or disabled).
-- Returns {released, probe_failed_at or '', probe_error or '', buried members...}.
--
-- The circuit rule (SPEC 6): a parked notification becomes a dead letter only when its
-- deadline has passed AND a probe made after it was parked has failed. The members
-- returned are leased (their deadline pushed lease_s ahead) for the caller to bury.
-- include: now
local batch = tonumber(ARGV[3])
local opened = tonumber(redis.call('HGET', KEYS[4], 'opened_at') or '')
local function release(members)
  for _, m in ipairs(members) do
    redis.call('ZADD', KEYS[5], now, m)
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZREM', KEYS[2], m)
  end
  return #members
end
local function tidy()
  if redis.call('ZCARD', KEYS[1]) == 0 then
    redis.call('SREM', KEYS[3], ARGV[1])
    redis.call('DEL', KEYS[2])
  end
end
if ARGV[5] == '1' or not opened then
  if not opened then redis.call('SREM', KEYS[6], ARGV[1]) end
  local n = release(redis.call('ZRANGE', KEYS[1], 0, batch - 1))
  tidy()
  return {n, '', ''}
end
local reset = tonumber(ARGV[2])
local n = 0
local probe = tonumber(redis.call('HGET', KEYS[4], 'probe_until') or '')
local sent = tonumber(redis.call('HGET', KEYS[4], 'probe_released_at') or '')
if now >= opened + reset and not (probe and probe > now)
   and (not sent or sent < opened or now > sent + math.max(reset, 30)) then
  n = release(redis.call('ZRANGE', KEYS[1], 0, 0))
  if n > 0 then redis.call('HSET', KEYS[4], 'probe_released_at', now) end
end
local failed_raw = redis.call('HGET', KEYS[4], 'probe_failed_at')
local failed = tonumber(failed_raw or '')
local out = {n, failed_raw or '', redis.call('HGET', KEYS[4], 'probe_error') or ''}
if failed then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 2 * batch)
  for _, m in ipairs(due) do
    local since = tonumber(redis.call('ZSCORE', KEYS[2], m) or '')
    if (not since or since < failed) and #out < batch + 3 then
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), m)
      out[#out + 1] = m
    end
  end
end
tidy()
return out
