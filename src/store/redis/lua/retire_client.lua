for _, queue in ipairs(redis.call('HVALS', KEYS[1])) do
  local base = ARGV[1] .. queue
  redis.call('DEL', base, base .. ':free', base .. ':taken', base .. ':pkg', base .. ':to', base .. ':by')
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1')
return 1
