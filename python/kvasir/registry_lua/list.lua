-- Every member, live or down, for the status table.
-- KEYS: members records down -> {now, id, json, score, live(1/0), ...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = { now }
for _, z in ipairs({ KEYS[1], KEYS[3] }) do
  local live = (z == KEYS[1]) and 1 or 0
  local entries = redis.call('ZRANGE', z, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    out[#out + 1] = entries[i]
    out[#out + 1] = redis.call('HGET', KEYS[2], entries[i]) or ''
    out[#out + 1] = entries[i + 1]
    out[#out + 1] = live
  end
end
return out
