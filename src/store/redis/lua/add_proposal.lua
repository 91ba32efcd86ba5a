local p = ARGV[1]
local pending = redis.call('LLEN', p .. 'outbox')
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {0, 0, pending} end
if epoch ~= ARGV[2] then return {2, tonumber(epoch), pending} end
if redis.call('LPOS', p .. 'proposal-refs', ARGV[3]) then return {3, 0, pending} end
redis.call('RPUSH', p .. 'proposal-refs', ARGV[3])
local held = redis.call('RPUSH', p .. 'proposal-packets', ARGV[4])
for i = 5, #ARGV do redis.call('RPUSH', p .. 'outbox', ARGV[i]) end
return {1, held, redis.call('LLEN', p .. 'outbox')}
