-- The destination answered. KEYS[1] circuit hash, KEYS[2] open set. ARGV[1] destination.
-- Returns 1 when this success closed an open circuit.
local was_open = redis.call('HEXISTS', KEYS[1], 'opened_at')
if was_open == 1 or redis.call('HEXISTS', KEYS[1], 'failures') == 1 then
  redis.call('DEL', KEYS[1])
end
if was_open == 1 then redis.call('SREM', KEYS[2], ARGV[1]) end
return was_open
