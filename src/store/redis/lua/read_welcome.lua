local w = ARGV[1] .. 'welcome:' .. ARGV[2]
local stored = redis.call('HMGET', w, 'id', 'expires_at')
if stored[1] ~= ARGV[3] or tonumber(stored[2]) <= tonumber(ARGV[5]) then return {} end
if redis.call('SISMEMBER', w .. ':pending', ARGV[4]) == 0 then return {} end
return {redis.call('GET', w .. ':packet'), redis.call('GET', w .. ':tree')}
