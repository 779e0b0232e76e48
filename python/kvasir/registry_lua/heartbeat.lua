-- Registers or refreshes a node and expires the members whose heartbeat lapsed (one atomic step, the server's clock).
-- KEYS: members records down epoch; ARGV: id json ttl_ms channel [renewal] -> 1 when the live membership changed, else
-- 0; or, changing nothing, the stored record (a string) when a renewal ('1': the node has registered before) finds the
-- id live with another node's record: one that registered after it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = 0
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not prev) or tonumber(prev) < now then changed = 1 end
-- A live id with another record (a node restarted under its id at a new address before its old registration
-- expired) is a change too: clients poll the epoch, and without it they kept the old address until a full read.
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if changed == 0 and stored ~= ARGV[2] then
  -- The later registration keeps a live id, in the order the heartbeats reach this server, never by the start times
  -- the nodes write from their own clocks: a node's first heartbeat (no renewal flag) takes the id over, so a restart
  -- succeeds at once even on a host whose clock is behind its dead predecessor's; a renewal from a node whose record
  -- no longer holds the id (another node registered since: of two live nodes misconfigured with one id, the older one)
  -- is refused here, instead of both rewriting the record (and bumping the epoch) on every heartbeat. A node is known
  -- by its record's started_ms and addr, compared for equality only: one whose own record changed goes on, and so
  -- does a renewal over a record that is not JSON.
  if ARGV[5] == '1' then
    local ok_theirs, theirs = pcall(cjson.decode, stored or '')
    local ok_mine, mine = pcall(cjson.decode, ARGV[2])
    if ok_theirs and ok_mine and type(theirs) == 'table' and type(mine) == 'table'
        and (tonumber(theirs['started_ms']) ~= tonumber(mine['started_ms']) or tostring(theirs['addr']) ~= tostring(mine['addr'])) then
      return stored
    end
  end
  changed = 1
end
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
