-- Adds one response's usage to a user's budget windows, once per event id.
-- KEYS[1]: the call's set of counted event ids; KEYS[2..]: the window hashes.
-- ARGV: event id, tokens, cost (micro-dollars), ttl of the id set, then one ttl per window.
-- Returns {0} for an event already counted, else {1, tokens, cost, seconds, ...} with each
-- window's totals after the addition.
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then
  return {0}
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
local out = {1}
for i = 2, #KEYS do
  local tokens = redis.call('HINCRBY', KEYS[i], 't', ARGV[2])
  local cost = redis.call('HINCRBY', KEYS[i], 'c', ARGV[3])
  redis.call('EXPIRE', KEYS[i], ARGV[3 + i])
  out[#out + 1] = tokens
  out[#out + 1] = cost
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[i], 's') or 0)
end
return out
