local p = ARGV[1]
local w = p .. 'welcome:' .. ARGV[2]
if redis.call('HGET', w, 'id') ~= ARGV[3] then return 0 end
redis.call('SREM', w .. ':pending', ARGV[4])
if redis.call('SCARD', w .. ':pending') == 0 then
  redis.call('DEL', w, w .. ':pending', w .. ':packet', w .. ':tree')
  redis.call('ZREM', p .. 'welcomes', ARGV[2])
end
return 1
