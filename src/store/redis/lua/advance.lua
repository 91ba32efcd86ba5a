for _, queue in ipairs(redis.call('HVALS', KEYS[1])) do
  local base = ARGV[1] .. queue
  if redis.call('HDEL', base .. ':pkg', ARGV[2]) == 1 then
    redis.call('ZREM', base .. ':free', ARGV[2])
    redis.call('ZREM', base .. ':taken', ARGV[2])
    local receiver = redis.call('HGET', base .. ':by', ARGV[2])
    if receiver then
      redis.call('HDEL', base .. ':to', receiver)
      redis.call('HDEL', base .. ':by', ARGV[2])
    end
    return 1
  end
end
return 0
