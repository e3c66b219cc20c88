-- One event id, one content (SPEC 6): store each event of a batch as ev:<id> unless
-- that id holds an event already. KEYS: the ev:<id> key of each event. ARGV: ttl_s, then
-- each event's JSON. Returns, per event, 0 (stored now) or what the id already holds.
-- (a new id, the common case, costs one SET NX; a stored one a GET after it)
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1]) then
    out[i] = 0
  else
    out[i] = redis.call('GET', key)
  end
end
return out
