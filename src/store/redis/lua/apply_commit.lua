-- The arguments by name, in the order `apply_commit` (groups.rs) sends them; the four
-- counted lists (recipients, removed handles, node changes, outbox entries) follow from ARGV[16].
local arg = {
  prefix = ARGV[1],
  from_epoch = ARGV[2],
  now = ARGV[3],
  leaf_slots = ARGV[4],
  parent_slots = ARGV[5],
  tree_hash = ARGV[6],
  context = ARGV[7],
  ith = ARGV[8],
  tag = ARGV[9],
  has_group_info = ARGV[10],
  staged_id = ARGV[11],
  has_welcome = ARGV[12],
  welcome_id = ARGV[13],
  expires_at = ARGV[14],
  retained_epochs = ARGV[15],
}
local p = arg.prefix
local s = p .. 'staged:' .. arg.staged_id .. ':'
local staged = {s .. 'messages'}
if arg.has_group_info == '1' then staged[#staged + 1] = s .. 'group-info' end
if arg.has_welcome == '1' then
  staged[#staged + 1] = s .. 'welcome-packet'
  staged[#staged + 1] = s .. 'welcome-tree'
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch or epoch ~= arg.from_epoch then
  redis.call('DEL', unpack(staged))
  if not epoch then return {0, 0, redis.call('LLEN', p .. 'outbox')} end
  return {2, tonumber(epoch), redis.call('LLEN', p .. 'outbox')}
end
if redis.call('EXISTS', unpack(staged)) ~= #staged then
  redis.call('DEL', unpack(staged))
  return {3, 0, redis.call('LLEN', p .. 'outbox')}
end
local function place(from, to)
  redis.call('RENAME', from, to)
  redis.call('PERSIST', to)
end
local new = tonumber(epoch) + 1
local now = tonumber(arg.now)
redis.call('HSET', KEYS[1], 'epoch', new, 'leaf_slots', arg.leaf_slots, 'parent_slots', arg.parent_slots,
  'tree_hash', arg.tree_hash, 'context', arg.context, 'ith', arg.ith, 'tag', arg.tag)
if arg.has_group_info == '1' then place(s .. 'group-info', p .. 'group-info')
else redis.call('DEL', p .. 'group-info') end
redis.call('DEL', p .. 'proposal-refs', p .. 'proposal-packets')
place(s .. 'messages', p .. 'epoch:' .. new)
local retain = tonumber(arg.retained_epochs)
if retain > 0 and new > retain then
  -- Epochs 1..pruned have no control messages any more; at most 1000 go per commit, so a
  -- lowered retention catches up over the next commits without a long script.
  local pruned = tonumber(redis.call('HGET', KEYS[1], 'pruned') or '0')
  local target = new - retain
  local budget = 1000
  while pruned < target and budget > 0 do
    pruned = pruned + 1
    budget = budget - 1
    redis.call('DEL', p .. 'epoch:' .. pruned)
  end
  redis.call('HSET', KEYS[1], 'pruned', pruned)
end
local function drop_welcome(e)
  local w = p .. 'welcome:' .. e
  redis.call('DEL', w, w .. ':pending', w .. ':packet', w .. ':tree')
  redis.call('ZREM', p .. 'welcomes', e)
end
for _, e in ipairs(redis.call('ZRANGEBYSCORE', p .. 'welcomes', '-inf', now)) do
  drop_welcome(e)
end
local i = 16
local recipients = {}
for k = 1, tonumber(ARGV[i]) do recipients[k] = ARGV[i + k] end
i = i + #recipients + 1
local removed = tonumber(ARGV[i])
if removed > 0 then
  for _, e in ipairs(redis.call('ZRANGE', p .. 'welcomes', 0, -1)) do
    local pending = p .. 'welcome:' .. e .. ':pending'
    for k = 1, removed do redis.call('SREM', pending, ARGV[i + k]) end
    if redis.call('SCARD', pending) == 0 then drop_welcome(e) end
  end
end
i = i + removed + 1
local changes = tonumber(ARGV[i])
for k = 0, changes - 1 do
  local at = i + 1 + k * 3
  if ARGV[at + 1] == '1' then redis.call('HSET', p .. 'nodes', ARGV[at], ARGV[at + 2])
  else redis.call('HDEL', p .. 'nodes', ARGV[at]) end
end
i = i + changes * 3 + 1
if arg.has_welcome == '1' then
  local w = p .. 'welcome:' .. new
  if #recipients > 0 then
    redis.call('HSET', w, 'id', arg.welcome_id, 'expires_at', arg.expires_at)
    place(s .. 'welcome-packet', w .. ':packet')
    place(s .. 'welcome-tree', w .. ':tree')
    for _, handle in ipairs(recipients) do redis.call('SADD', w .. ':pending', handle) end
    redis.call('ZADD', p .. 'welcomes', arg.expires_at, new)
  else
    redis.call('DEL', s .. 'welcome-packet', s .. 'welcome-tree')
  end
end
for k = 1, tonumber(ARGV[i]) do redis.call('RPUSH', p .. 'outbox', ARGV[i + k]) end
return {1, new, redis.call('LLEN', p .. 'outbox')}
