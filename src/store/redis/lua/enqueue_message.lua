local queued = redis.call('HGET', KEYS[4], ARGV[1])
if queued then return tonumber(queued) end
local acked = redis.call('ZSCORE', KEYS[6], ARGV[1])
if acked and tonumber(acked) > tonumber(ARGV[4]) - tonumber(ARGV[3]) then
  return 0
end
local sequence = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], sequence, ARGV[2])
redis.call('ZADD', KEYS[3], sequence, sequence)
redis.call('HSET', KEYS[4], ARGV[1], sequence)
redis.call('HSET', KEYS[5], sequence, ARGV[1])
return sequence
