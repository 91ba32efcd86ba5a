for _, queue in ipairs(redis.call('HVALS', KEYS[1])) do
  local base = ARGV[1] .. queue
  if redis.call('HDEL', base .. ':pkg', ARGV[2]) == 1 then
    upgrade(base)
    redis.call('ZREM', base .. ':free', ARGV[2])
    local receiver = receiver_of(base, ARGV[2])
    if receiver then unassign(base, ARGV[2], receiver) end
    return 1
  end
end
return 0
