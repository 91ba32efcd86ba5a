-- Layout 2 of a queue at `base` (the queue hash's `next_purge` marks it): `:free` holds the
-- unassigned refs and `:expiry` every stored ref, both by `not_after`; `:assigned` maps
-- 'r' .. receiver -> ref and 'p' .. ref -> receiver. A queue stored before (layout 1:
-- a `:taken` zset of the assigned refs, `:to` and `:by` hashes, `purge_at`) is moved to
-- layout 2 the first time a script touches it. Answers `next_purge`.
local function upgrade(base)
  local at = redis.call('HGET', base, 'next_purge')
  if at then return at end
  local expiry, assigned = base .. ':expiry', base .. ':assigned'
  redis.call('ZUNIONSTORE', expiry, 2, base .. ':free', base .. ':taken', 'AGGREGATE', 'MIN')
  for prefix, old in pairs({r = ':to', p = ':by'}) do
    local entries = redis.call('HGETALL', base .. old)
    for i = 1, #entries, 2 do
      redis.call('HSET', assigned, prefix .. entries[i], entries[i + 1])
    end
  end
  redis.call('DEL', base .. ':taken', base .. ':to', base .. ':by')
  redis.call('HDEL', base, 'purge_at')
  local first = redis.call('ZRANGE', expiry, 0, 0, 'WITHSCORES')
  at = first[2] or '-'
  redis.call('HSET', base, 'next_purge', at)
  return at
end
-- Every key of a queue at `base`, of either layout.
local function queue_keys(base)
  return base, base .. ':free', base .. ':expiry', base .. ':pkg', base .. ':assigned',
    base .. ':taken', base .. ':to', base .. ':by'
end
-- Forgets the stored package `ref` (in `:pkg` already deleted) and its assignment.
local function forget(base, ref)
  local assigned = base .. ':assigned'
  redis.call('ZREM', base .. ':free', ref)
  local receiver = redis.call('HGET', assigned, 'p' .. ref)
  if receiver then redis.call('HDEL', assigned, 'p' .. ref, 'r' .. receiver) end
end
-- `next_purge` is at or before every stored package's `not_after` ('-' when the queue
-- holds none): until it is due, nothing has expired and the sets are not read.
local function purge(base, now)
  local at = upgrade(base)
  if at == '-' or tonumber(at) > tonumber(now) then return end
  local expiry = base .. ':expiry'
  for _, ref in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now)) do
    redis.call('HDEL', base .. ':pkg', ref)
    forget(base, ref)
  end
  redis.call('ZREMRANGEBYSCORE', expiry, '-inf', now)
  local first = redis.call('ZRANGE', expiry, 0, 0, 'WITHSCORES')
  redis.call('HSET', base, 'next_purge', first[2] or '-')
end
-- Packages added, the earliest expiring at `not_after`: `next_purge` moves back to it
-- (after `purge`, so the queue is of layout 2).
local function purge_at_least(base, not_after)
  local at = redis.call('HGET', base, 'next_purge')
  if at == '-' or tonumber(not_after) < tonumber(at) then
    redis.call('HSET', base, 'next_purge', not_after)
  end
end
