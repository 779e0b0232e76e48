-- Removes a node that leaves cleanly: gone at once, not listed as down.
-- KEYS: members records down epoch; ARGV: id channel [record] -> 1, or 0 when ARGV[3] (the leaving node's record) is
-- given and the id's stored record is another one: a newer node took the id over (a restart at a new address while
-- the old node was still stopping), and its registration stays.
if ARGV[3] and redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[2], 'change')
return 1
