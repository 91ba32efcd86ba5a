-- KEYS: the queue, its lease. ARGV: the body delivered, holder, lease ttl (ms).
-- Removes the head if it is the body; then takes or renews the lease for the holder and
-- answers {1, next head} ({1} when empty), or {0} if another holds the lease.
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then redis.call('LPOP', KEYS[1]) end
local current = redis.call('GET', KEYS[2])
if current and current ~= ARGV[2] then return {0} end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
local head = redis.call('LINDEX', KEYS[1], 0)
if head then return {1, head} end
return {1}
