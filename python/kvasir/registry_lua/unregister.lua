-- Removes a node that leaves cleanly: gone at once, not listed as down.
-- KEYS: members records down epoch; ARGV: id channel -> 1
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[2], 'change')
return 1
