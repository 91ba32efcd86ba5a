local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {0} end
local current = tonumber(epoch)
local first = tonumber(ARGV[2])
local last = current
if ARGV[3] ~= '' then last = tonumber(ARGV[3]) end
if first > last or last > current then return {2, current} end
local pruned = tonumber(redis.call('HGET', KEYS[1], 'pruned') or '0')
if pruned > 0 and first <= pruned then return {3, current, pruned} end
local out = {}
for e = math.max(first, 1), last do
  local blob = redis.call('GET', ARGV[1] .. 'epoch:' .. e)
  if blob then out[#out + 1] = blob end
end
return {1, out}
