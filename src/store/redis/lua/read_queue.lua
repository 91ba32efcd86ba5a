local queue = redis.call('HMGET', KEYS[1], 'app', 'version', 'suite', 'label')
if not queue[1] or queue[1] ~= ARGV[1] then return {} end
return {queue[2], queue[3], queue[4]}
