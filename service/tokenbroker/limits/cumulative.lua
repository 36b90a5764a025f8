-- Adds what a session's cumulative usage figures add to the last ones counted for it
-- (GPT-Live: billed seconds and their cost so far), so that a figure delivered twice, or
-- seen again by another replica after an adoption, counts once.
-- KEYS[1]: the session's last counted figures (hash s, c); KEYS[2..]: the window hashes.
-- ARGV: seconds, cost (micro-dollars), ttl of the session's hash, then one ttl per window.
-- Returns {0} when the figures add nothing, else {1, tokens, cost, seconds, ...} with each
-- window's totals after the addition.
local last_s = tonumber(redis.call('HGET', KEYS[1], 's') or 0)
local last_c = tonumber(redis.call('HGET', KEYS[1], 'c') or 0)
local more_s = math.max(0, tonumber(ARGV[1]) - last_s)
local more_c = math.max(0, tonumber(ARGV[2]) - last_c)
if more_s == 0 and more_c == 0 then
  return {0}
end
redis.call('HSET', KEYS[1], 's', last_s + more_s, 'c', last_c + more_c)
redis.call('EXPIRE', KEYS[1], ARGV[3])
local out = {1}
for i = 2, #KEYS do
  out[#out + 1] = tonumber(redis.call('HGET', KEYS[i], 't') or 0)
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 'c', more_c)
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 's', more_s)
  redis.call('EXPIRE', KEYS[i], ARGV[2 + i])
end
return out
