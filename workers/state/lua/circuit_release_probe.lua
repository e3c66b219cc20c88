-- Give the probe lease back unused (the circuit stays open, another worker may probe).
-- KEYS[1] circuit hash.
if redis.call('HDEL', KEYS[1], 'probe_until') == 1 then
  redis.call('HSET', KEYS[1], 'state', 'open')
end
return 0
