-- Charge (or refund) every window of one mint in one atomic step, on the server's clock.
-- KEYS: the bucket hashes. ARGV[1]: "charge" or "refund"; then, per window, four values:
-- index into KEYS, hash field, emission interval (µs), burst.
-- A window's state is its theoretical arrival time (TAT, µs). Charge: all windows pass
-- and are written, or none is. Refund: each TAT moves back one interval, never before now.
-- Returns {allowed, retry_after_us, then remaining and reset_us for each window}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local refund = ARGV[1] == 'refund'
local n = (#ARGV - 1) / 4
local allowed, retry = 1, 0
local reply, new = {}, {}
for i = 0, n - 1 do
  local b = 2 + i * 4
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
  reply[#reply + 1] = math.floor((tau - (nt - now)) / interval)
  reply[#reply + 1] = math.floor(nt - now)
end
if allowed == 1 then
  local ttl = {}
  for i = 0, n - 1 do
    local b = 2 + i * 4
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
table.insert(reply, 1, math.ceil(retry))
table.insert(reply, 1, allowed)
return reply
