-- Take a rate token. KEYS[1] bucket hash. ARGV[1] rate per s.
-- Returns "0" (token taken) or the wait in s.
-- include: now
local rate = tonumber(ARGV[1])
local capacity = math.max(1, rate)
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '')
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or '')
if not tokens then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 2)
return tostring(wait)
