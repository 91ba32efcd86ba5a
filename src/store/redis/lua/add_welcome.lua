if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local p = ARGV[1]
local w = p .. 'welcome:' .. ARGV[2]
if redis.call('HGET', w, 'id') == ARGV[3] then return 2 end
redis.call('DEL', w .. ':pending')
redis.call('HSET', w, 'id', ARGV[3], 'expires_at', ARGV[4])
redis.call('SET', w .. ':packet', ARGV[5])
redis.call('SET', w .. ':tree', ARGV[6])
for i = 7, #ARGV do redis.call('SADD', w .. ':pending', ARGV[i]) end
redis.call('ZADD', p .. 'welcomes', ARGV[4], ARGV[2])
return 1
