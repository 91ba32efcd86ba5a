if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'app', ARGV[3], 'version', ARGV[4], 'suite', ARGV[5], 'label', ARGV[6],
  'next_purge', '-')
return 1
