for _, queue in ipairs(redis.call('HVALS', KEYS[1])) do
  redis.call('DEL', queue_keys(ARGV[1] .. queue))
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1')
return 1
