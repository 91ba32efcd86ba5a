-- Layout 2 of a queue at `base` (the queue hash's `next_purge` marks it): `:free` holds the
-- unassigned refs by `not_after`, `:pkg` every stored package by ref, and `:assigned`
-- 'r' .. receiver -> ref and 'p' .. ref -> not_after .. ' ' .. receiver. A queue stored
-- before (layout 1: a `:taken` zset of the assigned refs by `not_after`, `:to` and `:by`
-- hashes, `purge_at`) is moved to layout 2 the first time a script touches it. Answers
-- `next_purge`.
local function upgrade(base)
  local at = redis.call('HGET', base, 'next_purge')
  if at then return at end
  local free, assigned, by = base .. ':free', base .. ':assigned', base .. ':by'
  local taken = redis.call('ZRANGE', base .. ':taken', 0, -1, 'WITHSCORES')
  local earliest = redis.call('ZRANGE', free, 0, 0, 'WITHSCORES')[2]
  for i = 1, #taken, 2 do
    local ref, not_after = taken[i], taken[i + 1]
    local receiver = redis.call('HGET', by, ref)
    if receiver then
      redis.call('HSET', assigned, 'r' .. receiver, ref, 'p' .. ref, not_after .. ' ' .. receiver)
    else
      redis.call('ZADD', free, not_after, ref)
    end
    if not earliest or tonumber(not_after) < tonumber(earliest) then earliest = not_after end
  end
  redis.call('DEL', base .. ':taken', base .. ':to', by)
  redis.call('HDEL', base, 'purge_at')
  at = earliest or '-'
  redis.call('HSET', base, 'next_purge', at)
  return at
end
-- Every key of a queue at `base`, of either layout.
local function queue_keys(base)
  return base, base .. ':free', base .. ':pkg', base .. ':assigned',
    base .. ':taken', base .. ':to', base .. ':by'
end
-- The assignment of a stored package `ref`: its `not_after` and receiver, or nil.
local function assignment(base, ref)
  local entry = redis.call('HGET', base .. ':assigned', 'p' .. ref)
  if not entry then return nil end
  local space = string.find(entry, ' ', 1, true)
  return string.sub(entry, 1, space - 1), string.sub(entry, space + 1)
end
-- `next_purge` is at or before every stored package's `not_after`, free or assigned ('-'
-- when the queue holds none): until it is due, nothing has expired and nothing is read.
-- Due, the free packages are dropped by score and the assigned ones by a scan of
-- `:assigned` (bounded by the queue's cap; due only when a package has expired).
local function purge(base, now)
  local at = upgrade(base)
  if at == '-' or tonumber(at) > tonumber(now) then return end
  local free, pkg, assigned = base .. ':free', base .. ':pkg', base .. ':assigned'
  for _, ref in ipairs(redis.call('ZRANGEBYSCORE', free, '-inf', now)) do
    redis.call('HDEL', pkg, ref)
  end
  redis.call('ZREMRANGEBYSCORE', free, '-inf', now)
  local earliest = redis.call('ZRANGE', free, 0, 0, 'WITHSCORES')[2]
  local entries = redis.call('HGETALL', assigned)
  for i = 1, #entries, 2 do
    if string.sub(entries[i], 1, 1) == 'p' then
      local ref, entry = string.sub(entries[i], 2), entries[i + 1]
      local space = string.find(entry, ' ', 1, true)
      local not_after = string.sub(entry, 1, space - 1)
      if tonumber(not_after) <= tonumber(now) then
        redis.call('HDEL', pkg, ref)
        redis.call('HDEL', assigned, entries[i], 'r' .. string.sub(entry, space + 1))
      elseif not earliest or tonumber(not_after) < tonumber(earliest) then
        earliest = not_after
      end
    end
  end
  redis.call('HSET', base, 'next_purge', earliest or '-')
end
-- Packages added, the earliest expiring at `not_after`: `next_purge` moves back to it
-- (after `purge`, so the queue is of layout 2).
local function purge_at_least(base, not_after)
  local at = redis.call('HGET', base, 'next_purge')
  if at == '-' or tonumber(not_after) < tonumber(at) then
    redis.call('HSET', base, 'next_purge', not_after)
  end
end
