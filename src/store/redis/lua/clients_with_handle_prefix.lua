local out = {}
local handles = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2], '(' .. ARGV[2] .. '\255')
for _, handle in ipairs(handles) do
  local id = redis.call('GET', ARGV[1] .. 'handle:' .. handle)
  if id then
    out[#out + 1] = handle
    out[#out + 1] = id
  end
end
return out
