local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
return {tonumber(epoch), redis.call('LLEN', ARGV[1] .. 'proposal-refs')}
