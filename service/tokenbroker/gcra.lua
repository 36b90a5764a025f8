-- Charge (or refund) the windows of one or more mints, on the server's clock.
-- KEYS: the bucket hashes the calls name. ARGV, per call: "charge" or "refund", its window
-- count n, then n times four values: index into KEYS, hash field, emission interval (µs),
-- burst. A window's state is its theoretical arrival time (TAT, µs).
-- Each call stands alone. Charge: all its windows pass and are written, or none is.
-- Refund: each TAT moves back one interval, never before now.
-- Returns, per call: allowed (1 or 0), retry_after_us, then remaining and reset_us for each
-- window; a call whose Redis command failed returns -1 and the error, then zeros.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function step(refund, first, n)
  local allowed, retry = 1, 0
  local reply, new = {}, {}
  for i = 0, n - 1 do
    local b = first + i * 4
    local key = KEYS[tonumber(ARGV[b])]
    local interval, burst = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
    local tau = interval * burst
    local stored = redis.call('HGET', key, ARGV[b + 1])
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
      local b = first + i * 4
      local key = KEYS[tonumber(ARGV[b])]
      local left = new[i + 1] - now
      if left > 0 then
        redis.call('HSET', key, ARGV[b + 1], string.format('%.0f', new[i + 1]))
      else
        redis.call('HDEL', key, ARGV[b + 1])
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

local out = {}
local at = 1
while at <= #ARGV do
  local n = tonumber(ARGV[at + 1])
  local ok, reply = pcall(step, ARGV[at] == 'refund', at + 2, n)
  if not ok then
    reply = {-1, type(reply) == 'table' and reply.err or tostring(reply)}
    for i = 3, 2 * n + 2 do reply[i] = 0 end
  end
  for i = 1, 2 * n + 2 do out[#out + 1] = reply[i] end
  at = at + 2 + 4 * n
end
return out
