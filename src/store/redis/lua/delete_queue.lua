local queue = redis.call('HMGET', KEYS[1], 'app', 'version', 'suite', 'label')
if not queue[1] or queue[1] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], queue[2] .. ':' .. queue[3] .. ':' .. queue[4])
redis.call('DEL', queue_keys(ARGV[1]))
return 1
