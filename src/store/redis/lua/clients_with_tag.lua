local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local client = ARGV[1] .. 'client:' .. id
  local handle = redis.call('HGET', client, 'handle')
  if handle then
    out[#out + 1] = {id, handle, redis.call('SMEMBERS', client .. ':tags')}
  end
end
return out
