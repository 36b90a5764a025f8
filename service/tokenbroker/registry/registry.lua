-- The live-call registry, one operation per call, on the Redis server's clock (ms).
-- Keys share the {calls} hash tag: the index of leases (ZSET call id -> lease end), one
-- hash per call, one ZSET per user (call id or reservation -> when it can end at last).
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if op == 'reserve' then
  -- KEYS: user set. ARGV: op, max live calls (0: no cap), reservation, hold (ms)
  local max = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, tonumber(first[2]) - now}
  end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], 7200000)
  return {1, 0}
elseif op == 'release' then
  -- KEYS: user set. ARGV: op, reservation
  return redis.call('ZREM', KEYS[1], ARGV[2])
elseif op == 'register' then
  -- KEYS: index, call hash, user set. ARGV: op, reservation, call id, max duration (ms),
  -- lease (ms), owner, user, policy, session JSON, API family
  local deadline = now + tonumber(ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZADD', KEYS[3], deadline + 60000, ARGV[3])
  redis.call('PEXPIRE', KEYS[3], 7200000)
  redis.call('HSET', KEYS[2], 'u', ARGV[7], 'p', ARGV[8], 'j', ARGV[9], 'o', ARGV[6],
             's', now, 'd', deadline, 'a', ARGV[10])
  redis.call('PEXPIRE', KEYS[2], deadline - now + 3600000)
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[3])
  return {now, deadline}
elseif op == 'renew' then
  -- KEYS: index, then the call hashes. ARGV: op, owner, lease (ms), then the call ids.
  -- Returns the ids this owner no longer holds.
  local lost = {}
  for i = 2, #KEYS do
    local id = ARGV[2 + i]
    if redis.call('HGET', KEYS[i], 'o') == ARGV[2] then
      redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[3]), id)
    else
      lost[#lost + 1] = id
    end
  end
  return lost
elseif op == 'claim' then
  -- KEYS: index. ARGV: op, owner, lease (ms), how many, the call hashes' key prefix.
  -- Calls whose lease ran out become this owner's; returns id, fields, id, fields, ...
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
  local out = {}
  for _, id in ipairs(ids) do
    local key = ARGV[5] .. id
    if redis.call('EXISTS', key) == 1 then
      redis.call('HSET', key, 'o', ARGV[2])
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), id)
      out[#out + 1] = id
      out[#out + 1] = redis.call('HGETALL', key)
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
  return out
elseif op == 'handover' then
  -- KEYS: index, then the call hashes. ARGV: op, owner, then the call ids.
  local n = 0
  for i = 2, #KEYS do
    if redis.call('HGET', KEYS[i], 'o') == ARGV[2] then
      redis.call('HSET', KEYS[i], 'o', '')
      redis.call('ZADD', KEYS[1], 'XX', 0, ARGV[1 + i])
      n = n + 1
    end
  end
  return n
elseif op == 'mark' then
  -- KEYS: call hash. ARGV: op, reason. The reason the call is ending, if still live.
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  redis.call('HSET', KEYS[1], 'r', ARGV[2])
  return 1
elseif op == 'finish' then
  -- KEYS: index, call hash, user set, ended record. ARGV: op, call id, summary JSON,
  -- how long the summary stays (ms). The first finish keeps the summary.
  redis.call('ZREM', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  local removed = redis.call('DEL', KEYS[2])
  if removed == 1 then
    redis.call('SET', KEYS[4], ARGV[3], 'PX', tonumber(ARGV[4]))
  end
  return removed
end
return redis.error_reply('unknown registry operation ' .. tostring(op))
