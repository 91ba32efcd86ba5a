local handle = redis.call('HGET', KEYS[1], 'handle')
if not handle then return 0 end
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('SREM', ARGV[1] .. 'tag:' .. tag, ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2], ARGV[1] .. 'handle:' .. handle)
redis.call('ZREM', ARGV[1] .. 'handles', handle)
return 1
