-- Registers or refreshes a node and expires the members whose heartbeat lapsed (one atomic step, the server's clock).
-- KEYS: members records down epoch; ARGV: id json ttl_ms channel -> 1 when the live membership changed, else 0; or,
-- changing nothing, the stored record (a string) when the id is live with a record of a node that started later.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = 0
local prev = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not prev) or tonumber(prev) < now then changed = 1 end
-- A live id with another record (a node restarted under its id at a new address before its old registration
-- expired) is a change too: clients poll the epoch, and without it they kept the old address until a full read.
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if changed == 0 and stored ~= ARGV[2] then
  -- The later start keeps the id: a restart takes over at once, and of two live nodes misconfigured with one id the
  -- older one is refused here, instead of both rewriting the record (and bumping the epoch) on every heartbeat.
  -- Same start time: the larger address keeps it; a node whose own record changed (same start, same address) goes on.
  local ok_theirs, theirs = pcall(cjson.decode, stored or '')
  local ok_mine, mine = pcall(cjson.decode, ARGV[2])
  if ok_theirs and ok_mine and type(theirs) == 'table' and type(mine) == 'table' then
    local their_start, my_start = tonumber(theirs['started_ms']) or 0, tonumber(mine['started_ms']) or 0
    local their_addr, my_addr = tostring(theirs['addr']), tostring(mine['addr'])
    if their_start > my_start or (their_start == my_start and their_addr > my_addr) then return stored end
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
