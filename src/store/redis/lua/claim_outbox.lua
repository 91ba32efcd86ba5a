-- KEYS: the group's outbox, its claims. ARGV: now (ms), claim lifetime (ms).
-- Claims every entry of the outbox that no live claim holds (a copy of an entry already
-- claimed in this call stays unclaimed) and answers them, oldest first.
local now = tonumber(ARGV[1])
local claimed = {}
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local id = redis.sha1hex(entry)
  local held = tonumber(redis.call('HGET', KEYS[2], id) or '0')
  if held <= now then
    redis.call('HSET', KEYS[2], id, now + tonumber(ARGV[2]))
    claimed[#claimed + 1] = entry
  end
end
return claimed
