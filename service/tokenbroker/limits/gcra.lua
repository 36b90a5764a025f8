-- Charge (or refund) the windows of one or more mints, on the server's clock.
-- KEYS: the bucket hashes the calls name. ARGV may start with "@<now in µs>" (tests move
-- time this way; otherwise the server's TIME is now), then with "<<deadline in µs>": a
-- batch that runs after its deadline charges nothing and returns {-2, now}, because its
-- caller has given up waiting (the user must not pay for a key never given). Then, per
-- call: "charge" or "refund", its bucket
-- count m, then m times two values: index into KEYS, and the bucket's windows as
-- "field:interval:burst" (emission interval in µs), space separated. A window's state is
-- its theoretical arrival time (TAT, µs).
-- Each call stands alone. Charge: all its windows pass and are written, or none is.
-- Refund: each TAT moves back one interval, never before now.
-- Returns the server's now (µs), then per call: allowed (1 or 0), retry_after_us, then
-- remaining and reset_us for each window; a call whose Redis command failed returns -1 and
-- the error, then zeros.
local now
local at = 1
if ARGV[1] and string.sub(ARGV[1], 1, 1) == '@' then
  now = tonumber(string.sub(ARGV[1], 2))
  at = 2
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
if ARGV[at] and string.sub(ARGV[at], 1, 1) == '<' then
  if now > tonumber(string.sub(ARGV[at], 2)) then return {-2, now} end
  at = at + 1
end

-- The windows of the call whose buckets start at ARGV[first]: {key, field, interval, burst}.
local function windows(first, m)
  local list = {}
  for j = 0, m - 1 do
    local key = KEYS[tonumber(ARGV[first + 2 * j])]
    for field, interval, burst in string.gmatch(ARGV[first + 2 * j + 1], '(%d+):(%d+):(%d+)') do
      list[#list + 1] = {key, field, tonumber(interval), tonumber(burst)}
    end
  end
  return list
end

local function step(refund, list)
  local allowed, retry = 1, 0
  local reply, new = {}, {}
  local n = #list
  for i = 0, n - 1 do
    local key, field, interval, burst = unpack(list[i + 1])
    local tau = interval * burst
    local stored = redis.call('HGET', key, field)
    local tat = stored and tonumber(stored) or now
    if tat < now then tat = now end
    local nt
    if refund then nt = math.max(tat - interval, now) else nt = tat + interval end
    if not refund and nt - now > tau then
      allowed = 0
      retry = math.max(retry, nt - tau - now)
      nt = tat
    end
    new[i + 1] = nt
    reply[2 * i + 3] = math.floor((tau - (nt - now)) / interval)
    reply[2 * i + 4] = math.floor(nt - now)
  end
  if allowed == 1 then
    local ttl = {}
    for i = 0, n - 1 do
      local key, field = list[i + 1][1], list[i + 1][2]
      local left = new[i + 1] - now
      if left > 0 then
        redis.call('HSET', key, field, string.format('%.0f', new[i + 1]))
      else
        redis.call('HDEL', key, field)
      end
      ttl[key] = math.max(ttl[key] or 0, left)
    end
    for key, left in pairs(ttl) do
      if left > 0 then redis.call('PEXPIRE', key, math.ceil(left / 1000) + 1) end
    end
  end
  reply[1], reply[2] = allowed, math.ceil(retry)
  return reply
end

local out = {now}
while at <= #ARGV do
  local m = tonumber(ARGV[at + 1])
  local list = windows(at + 2, m)
  local n = #list
  local ok, reply = pcall(step, ARGV[at] == 'refund', list)
  if not ok then
    reply = {-1, type(reply) == 'table' and reply.err or tostring(reply)}
    for i = 3, 2 * n + 2 do reply[i] = 0 end
  end
  for i = 1, 2 * n + 2 do out[#out + 1] = reply[i] end
  at = at + 2 + 2 * m
end
return out
