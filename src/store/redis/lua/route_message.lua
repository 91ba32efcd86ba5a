local p = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, redis.call('LLEN', p .. 'outbox')} end
for i = 2, #ARGV do redis.call('RPUSH', p .. 'outbox', ARGV[i]) end
return {1, 0, redis.call('LLEN', p .. 'outbox')}
