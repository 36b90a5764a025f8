-- wrk script: POST a session request, each with the next user's pre-signed JWT.
-- TOKENS names a file with one token per line (made by the benchmark driver).
-- MINT_PATH and MINT_BODY choose the endpoint and body (default: the seed's endpoint).
local tokens = {}
local index = 0
local path = os.getenv("MINT_PATH") or "/v1/realtime/sessions"
local body = os.getenv("MINT_BODY") or '{"voice":"ash"}'

function init(args)
  local file = os.getenv("TOKENS")
  if file then
    for line in io.lines(file) do tokens[#tokens + 1] = line end
  end
  index = math.random(1, math.max(#tokens, 1))
end

function request()
  index = index + 1
  -- A browser's request: cross-origin, so it carries Origin and gets CORS headers back.
  local headers = {["Content-Type"] = "application/json", ["Origin"] = "https://app.bench.test"}
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[(index % #tokens) + 1]
  end
  return wrk.format("POST", path, headers, body)
end

local errors = 0
function response(status, headers, body)
  if status ~= 200 then errors = errors + 1 end
end

function done(summary, latency, requests)
  local non200 = summary.errors.status
  io.write(string.format("JSON {\"requests\": %d, \"non2xx\": %d, \"rps\": %.1f, " ..
    "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f, \"mean_ms\": %.3f, " ..
    "\"socket_errors\": %d, \"connect_errors\": %d, \"timeouts\": %d}\n",
    summary.requests, non200, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.connect, summary.errors.timeout))
end
