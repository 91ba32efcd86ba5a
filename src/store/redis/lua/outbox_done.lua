-- KEYS: the group's outbox, its claims. ARGV: an entry carried out.
-- Removes one copy of the entry and its claim; answers how many entries are left.
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], redis.sha1hex(ARGV[1]))
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('DEL', KEYS[2]) end
return left
