local p = ARGV[1]
local h = redis.call('HMGET', KEYS[1], 'epoch', 'leaf_slots', 'parent_slots', 'tree_hash',
  'context', 'ith', 'tag')
if not h[1] then return {} end
h[8] = redis.call('GET', p .. 'group-info')
local has_info = 1
if not h[8] then h[8] = ''; has_info = 0 end
return {h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], has_info,
  redis.call('HGETALL', p .. 'nodes'), redis.call('LRANGE', p .. 'proposal-refs', 0, -1),
  redis.call('LRANGE', p .. 'proposal-packets', 0, -1), redis.call('LLEN', p .. 'outbox')}
