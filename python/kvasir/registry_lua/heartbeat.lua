-- Registers or refreshes a node and expires the members whose heartbeat lapsed (one atomic step, the server's clock).
-- KEYS: members records down epoch; ARGV: id json ttl_ms channel -> 1 when the live membership changed, else 0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = 0
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not prev) or tonumber(prev) < now then changed = 1 end
-- A live id with another record (a node restarted under its id at a new address before its old registration
-- expired) is a change too: clients poll the epoch, and without it they kept the old address until a full read.
if changed == 0 and redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then changed = 1 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[3], now, id)
  changed = 1
end
local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - 3600000)
for _, id in ipairs(old) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[2], id)
end
if changed == 1 then
  redis.call('INCR', KEYS[4])
  redis.call('PUBLISH', ARGV[4], 'change')
end
return changed
