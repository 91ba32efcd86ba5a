local prefix, id = ARGV[1], ARGV[2]
local old = redis.call('HGET', KEYS[1], 'handle')
if not old then return {0} end
local new = ARGV[4]
local rename = ARGV[3] == '1' and new ~= old
if rename and redis.call('EXISTS', prefix .. 'handle:' .. new) == 1 then return {2} end
local add_count = tonumber(ARGV[6])
local adds, removes = {}, {}
for i = 7, 6 + add_count do adds[#adds + 1] = ARGV[i] end
for i = 7 + add_count, #ARGV do removes[#removes + 1] = ARGV[i] end
local count = redis.call('SCARD', KEYS[2])
for _, tag in ipairs(adds) do
  if redis.call('SISMEMBER', KEYS[2], tag) == 0 then count = count + 1 end
end
for _, tag in ipairs(removes) do
  if redis.call('SISMEMBER', KEYS[2], tag) == 1 then count = count - 1 end
end
if count > tonumber(ARGV[5]) then return {3} end
if rename then
  redis.call('DEL', prefix .. 'handle:' .. old)
  redis.call('SET', prefix .. 'handle:' .. new, id)
  redis.call('ZREM', prefix .. 'handles', old)
  redis.call('ZADD', prefix .. 'handles', 0, new)
  redis.call('HSET', KEYS[1], 'handle', new)
end
for _, tag in ipairs(adds) do
  redis.call('SADD', KEYS[2], tag)
  redis.call('SADD', prefix .. 'tag:' .. tag, id)
end
for _, tag in ipairs(removes) do
  redis.call('SREM', KEYS[2], tag)
  redis.call('SREM', prefix .. 'tag:' .. tag, id)
end
local result = {1, redis.call('HGET', KEYS[1], 'handle')}
for _, tag in ipairs(redis.call('SMEMBERS', KEYS[2])) do result[#result + 1] = tag end
return result
