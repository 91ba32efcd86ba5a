local function purge(base, now)
  local pkg, to, by = base .. ':pkg', base .. ':to', base .. ':by'
  for _, set in ipairs({base .. ':free', base .. ':taken'}) do
    for _, ref in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now)) do
      redis.call('ZREM', set, ref)
      redis.call('HDEL', pkg, ref)
      local receiver = redis.call('HGET', by, ref)
      if receiver then
        redis.call('HDEL', to, receiver)
        redis.call('HDEL', by, ref)
      end
    end
  end
end
