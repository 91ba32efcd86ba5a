if redis.call('EXISTS', KEYS[3]) == 1 then return {-1} end
local queue = redis.call('HMGET', KEYS[1], 'app', 'version', 'suite', 'label')
if not queue[1] or queue[1] ~= ARGV[2] then return {0} end
local base = ARGV[1]
local relabel = ARGV[5] == '1' and ARGV[6] ~= queue[4]
local new_field = queue[2] .. ':' .. queue[3] .. ':' .. ARGV[6]
if relabel and redis.call('HEXISTS', KEYS[2], new_field) == 1 then return {2} end
-- Expired packages go first (unusable, so dropping them changes nothing an application can
-- see): they count toward no cap.
purge(base, ARGV[3])
local kept = 0
if ARGV[4] ~= '1' then kept = redis.call('HLEN', base .. ':pkg') end
if kept + (#ARGV - 11) / 3 > tonumber(ARGV[10]) then return {3} end
if relabel then
  redis.call('HDEL', KEYS[2], queue[2] .. ':' .. queue[3] .. ':' .. queue[4])
  redis.call('HSET', KEYS[2], new_field, ARGV[11])
  redis.call('HSET', KEYS[1], 'label', ARGV[6])
end
if ARGV[4] == '1' then
  redis.call('DEL', select(2, queue_keys(base)))
end
-- New packages go into `:free` with one ZADD per 500.
local earliest, added = nil, {}
local function add_all()
  if #added == 0 then return end
  redis.call('ZADD', base .. ':free', unpack(added))
  added = {}
end
for i = 12, #ARGV, 3 do
  if redis.call('HSETNX', base .. ':pkg', ARGV[i], ARGV[i + 2]) == 1 then
    added[#added + 1] = ARGV[i + 1]
    added[#added + 1] = ARGV[i]
    if #added == 1000 then add_all() end
    if not earliest or tonumber(ARGV[i + 1]) < tonumber(earliest) then earliest = ARGV[i + 1] end
  end
end
add_all()
if earliest then purge_at_least(base, earliest) end
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'final', ARGV[8], 'final_not_after', ARGV[9])
end
return {1, redis.call('HLEN', base .. ':pkg')}
