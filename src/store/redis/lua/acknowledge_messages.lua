local now = tonumber(ARGV[3])
local sequences = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, sequence in ipairs(sequences) do
  redis.call('HDEL', KEYS[1], sequence)
  local id = redis.call('HGET', KEYS[4], sequence)
  if id then
    redis.call('HDEL', KEYS[3], id)
    redis.call('ZADD', KEYS[5], now, id)
  end
  redis.call('HDEL', KEYS[4], sequence)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[2]))
-- An abandoned queue's memory of acknowledged ids goes with the window.
if redis.call('EXISTS', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], ARGV[2]) end
return #sequences
