-- The earlier of two `not_after`s, either of which may be missing.
local function earlier(a, b)
  if not a or (b and tonumber(b) < tonumber(a)) then return b end
  return a
end
-- Layout 2 of a queue at `base` (the queue hash's `next_purge` marks it): `:free` holds the
-- unassigned refs by `not_after`, `:pkg` every stored package by ref, and `:assigned`
-- 'r' .. receiver -> ref and 'p' .. ref -> not_after .. ' ' .. receiver. A queue stored
-- before (layout 1: a `:taken` zset of the assigned refs by `not_after`, `:to` and `:by`
-- hashes, `purge_at`) is moved to layout 2 the first time a script touches it, and again
-- when a process of the earlier release has touched it since (it sets `purge_at`: a
-- rolling upgrade), its assignments kept. Answers `next_purge`.
local function upgrade(base)
  local marks = redis.call('HMGET', base, 'next_purge', 'purge_at')
  if marks[1] and not marks[2] then return marks[1] end
  local free, assigned, by = base .. ':free', base .. ':assigned', base .. ':by'
  local taken = redis.call('ZRANGE', base .. ':taken', 0, -1, 'WITHSCORES')
  local earliest = redis.call('ZRANGE', free, 0, 0, 'WITHSCORES')[2]
  if marks[1] and marks[1] ~= '-' then earliest = earlier(earliest, marks[1]) end
  for i = 1, #taken, 2 do
    local ref, not_after = taken[i], taken[i + 1]
    local receiver = redis.call('HGET', by, ref)
    if receiver then
      redis.call('HSET', assigned, 'p' .. ref, not_after .. ' ' .. receiver)
      redis.call('HSETNX', assigned, 'r' .. receiver, ref)
    else
      redis.call('ZADD', free, not_after, ref)
    end
    earliest = earlier(earliest, not_after)
  end
  redis.call('DEL', base .. ':taken', base .. ':to', by)
  redis.call('HDEL', base, 'purge_at')
  local at = earliest or '-'
  redis.call('HSET', base, 'next_purge', at)
  return at
end
-- Every key of a queue at `base`, of either layout.
local function queue_keys(base)
  return base, base .. ':free', base .. ':pkg', base .. ':assigned',
    base .. ':taken', base .. ':to', base .. ':by'
end
-- Forgets the assignment of the package `ref` to `receiver` (whose own entry is left when
-- it names another package).
local function unassign(base, ref, receiver)
  local assigned = base .. ':assigned'
  redis.call('HDEL', assigned, 'p' .. ref)
  if redis.call('HGET', assigned, 'r' .. receiver) == ref then
    redis.call('HDEL', assigned, 'r' .. receiver)
  end
end
-- The receiver a stored package `ref` is assigned to, or nil.
local function receiver_of(base, ref)
  local entry = redis.call('HGET', base .. ':assigned', 'p' .. ref)
  if not entry then return nil end
  return string.sub(entry, string.find(entry, ' ', 1, true) + 1)
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
        unassign(base, ref, string.sub(entry, space + 1))
      else
        earliest = earlier(earliest, not_after)
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
