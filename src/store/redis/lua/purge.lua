-- The queue hash's `purge_at` is at or before every stored package's `not_after` ('-' when
-- the queue holds none): until it is due, nothing has expired and the sets are not read.
-- Missing (a queue stored before the field existed, or reset), the sets are read.
local function purge(base, now)
  local at = redis.call('HGET', base, 'purge_at')
  if at == '-' or (at and tonumber(at) > tonumber(now)) then return end
  local pkg, to, by = base .. ':pkg', base .. ':to', base .. ':by'
  local earliest = nil
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
    local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
    if first[2] and (not earliest or tonumber(first[2]) < tonumber(earliest)) then
      earliest = first[2]
    end
  end
  redis.call('HSET', base, 'purge_at', earliest or '-')
end
-- Packages added, the earliest expiring at `not_after`: `purge_at` moves back to it
-- (left missing when missing: the next purge reads the sets).
local function purge_at_least(base, not_after)
  local at = redis.call('HGET', base, 'purge_at')
  if at and (at == '-' or tonumber(not_after) < tonumber(at)) then
    redis.call('HSET', base, 'purge_at', not_after)
  end
end
