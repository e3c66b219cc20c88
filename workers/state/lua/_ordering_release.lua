-- Shared by the ordering scripts: release the head of a pair when allowed and assign its
-- sequence number. The in-flight hash and the blocked set come as KEYS; a pair's queue
-- (ord:q:PAIR), sequence counter (ord:seq:PAIR) and its head's notification hash (n:NID)
-- depend on the pair and on the head read here, so they are built from the prefix with
-- the names workers.config.settings.Keys gives them (recnotify does not run on Redis Cluster).
local function release(inflight, blocked, prefix, pair, frontier, now, ttl)
  if redis.call('HGET', inflight, pair) then
    -- its finish releases the next: nothing for the sweeper to re-check
    redis.call('SREM', blocked, pair)
    return false
  end
  local head = redis.call('ZRANGE', prefix .. 'ord:q:' .. pair, 0, 0)[1]
  if not head then
    redis.call('SREM', blocked, pair)
    return false
  end
  if head >= frontier then
    redis.call('SADD', blocked, pair)
    return '!blocked'
  end
  redis.call('HSET', inflight, pair, head .. '@' .. now)
  redis.call('SREM', blocked, pair)
  local nid = string.match(head, '|([^|]*)$')
  if nid and nid ~= '' then
    local nkey = prefix .. 'n:' .. nid
    if not redis.call('HGET', nkey, 'seq') then
      local seqkey = prefix .. 'ord:seq:' .. pair
      redis.call('HSET', nkey, 'seq', redis.call('INCR', seqkey))
      redis.call('EXPIRE', seqkey, ttl)
    end
  end
  return head
end
