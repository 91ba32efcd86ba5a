local sequences = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, sequence in ipairs(sequences) do
  out[#out + 1] = sequence
  out[#out + 1] = redis.call('HGET', KEYS[1], sequence)
end
return out
