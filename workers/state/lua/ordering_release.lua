-- Release the head of one pair (state held -> queued). KEYS[1] in-flight hash, KEYS[2]
-- blocked set, KEYS[3] the pair's queue. ARGV: prefix, pair, frontier, now, ttl.
-- Returns the head released, '!blocked' (an earlier entry is not dispatched yet) or false.
-- include: ordering_release
return release(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
