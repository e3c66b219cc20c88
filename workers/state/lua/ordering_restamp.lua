-- Compare-and-set one field. KEYS[1] in-flight hash. ARGV: pair, expected value, new value.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
