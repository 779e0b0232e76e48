-- What a watcher polls to see whether the membership changed.
-- KEYS: members epoch -> {epoch, live}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return { tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('ZCOUNT', KEYS[1], now, '+inf') }
