-- One event id, one content (SPEC 6): store each event of a batch as ev:<id> unless
-- that id holds an event already. KEYS: the ev:<id> key of each event. ARGV: ttl_s, then
-- each event's JSON. Returns, per event, 0 (stored now) or what the id already holds.
local out = {}
for i, key in ipairs(KEYS) do
  local old = redis.call('GET', key)
  if old then
    out[i] = old
  else
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
    out[i] = 0
  end
end
return out
