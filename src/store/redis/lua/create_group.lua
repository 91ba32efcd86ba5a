if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local p = ARGV[1]
redis.call('HSET', KEYS[1], 'epoch', ARGV[9], 'leaf_slots', ARGV[2], 'parent_slots', ARGV[3],
  'tree_hash', ARGV[4], 'context', ARGV[5], 'ith', ARGV[6], 'tag', ARGV[7])
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'hub', ARGV[10]) end
redis.call('SET', p .. 'group-info', ARGV[8])
for i = 11, #ARGV, 2 do redis.call('HSET', p .. 'nodes', ARGV[i], ARGV[i + 1]) end
return 1
