local p = ARGV[1]
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return 0 end
local pruned = tonumber(redis.call('HGET', KEYS[1], 'pruned') or '0')
for e = pruned + 1, tonumber(epoch) do redis.call('DEL', p .. 'epoch:' .. e) end
for _, e in ipairs(redis.call('ZRANGE', p .. 'welcomes', 0, -1)) do
  local w = p .. 'welcome:' .. e
  redis.call('DEL', w, w .. ':packet', w .. ':tree', w .. ':pending')
end
redis.call('DEL', KEYS[1], p .. 'group-info', p .. 'nodes', p .. 'proposal-refs',
  p .. 'proposal-packets', p .. 'welcomes')
return 1
