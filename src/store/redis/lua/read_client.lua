local handle = redis.call('HGET', KEYS[1], 'handle')
if not handle then return {} end
local result = {handle}
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do result[#result + 1] = tag end
return result
