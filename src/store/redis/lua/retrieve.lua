local counters = 2
if ARGV[7] == '1' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[8]) then return {-1} end
  local count = redis.call('INCR', KEYS[3])
  if count == 1 then redis.call('EXPIRE', KEYS[3], ARGV[9]) end
  if count > tonumber(ARGV[10]) then return {-2, count} end
  counters = 4
end
-- A retired client has no index: retire_client deletes it in the step that marks it.
local queue = redis.call('HGET', KEYS[1], ARGV[1])
if not queue then return {0} end
local base = ARGV[4] .. queue
local now = tonumber(ARGV[3])
purge(base, ARGV[3])
local assigned = base .. ':assigned'
local before = redis.call('HGET', assigned, 'r' .. ARGV[2])
if before then
  local bytes = redis.call('HGET', base .. ':pkg', before)
  if bytes then return {4, bytes} end
  -- Its package is gone (advanced by a process of the earlier release, which knows no
  -- `:assigned`): the receiver is treated as new.
  unassign(base, before, ARGV[2])
end
local first = {}
if ARGV[5] == '1' then first = redis.call('ZPOPMIN', base .. ':free') end
if first[1] then
  local ref = first[1]
  -- `next_purge` is at or before this package's `not_after` already: it was free.
  redis.call('HSET', assigned, 'r' .. ARGV[2], ref, 'p' .. ref, first[2] .. ' ' .. ARGV[2])
  local reply = {1, redis.call('HGET', base .. ':pkg', ref)}
  for i = counters, #KEYS do
    local count = redis.call('INCR', KEYS[i])
    if count == 1 then redis.call('EXPIRE', KEYS[i], ARGV[6]) end
    reply[#reply + 1] = count
  end
  return reply
end
local final = redis.call('HMGET', base, 'final', 'final_not_after')
if final[1] and tonumber(final[2]) > now then return {2, final[1]} end
if ARGV[5] ~= '1' and redis.call('ZCARD', base .. ':free') > 0 then return {5} end
return {3}
