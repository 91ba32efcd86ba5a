for _, queue in ipairs(redis.call('HVALS', KEYS[1])) do
  local base = ARGV[1] .. queue
  if redis.call('HDEL', base .. ':pkg', ARGV[2]) == 1 then
    upgrade(base)
    redis.call('ZREM', base .. ':expiry', ARGV[2])
    forget(base, ARGV[2])
    return 1
  end
end
return 0
