if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
return {1, redis.call('LRANGE', ARGV[1] .. 'proposal-packets', 0, -1)}
