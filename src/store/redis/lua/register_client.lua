if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('SET', KEYS[3], ARGV[2])
redis.call('ZADD', ARGV[1] .. 'handles', 0, ARGV[3])
redis.call('HSET', KEYS[1], 'handle', ARGV[3])
for i = 4, #ARGV do
  redis.call('SADD', KEYS[2], ARGV[i])
  redis.call('SADD', ARGV[1] .. 'tag:' .. ARGV[i], ARGV[2])
end
return 1
