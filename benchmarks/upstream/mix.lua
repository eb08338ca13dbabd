-- wrk (Debian's wrk 4, closed loop) script: POST a mix of AdmissionReviews to /mutate over
-- keep-alive. BENCH_BODIES is a colon-separated list of files; request i sends body i mod N.
-- A copy of benchmarks/mutate.lua with a request() that rotates through the bodies; done()
-- prints the same lines ("non-200 responses: N", requests, duration, socket errors, latency).

local bodies = {}
for path in string.gmatch(os.getenv("BENCH_BODIES") or "", "[^:]+") do
  local file = assert(io.open(path, "rb"))
  table.insert(bodies, file:read("*a"))
  file:close()
end
assert(#bodies > 0, "BENCH_BODIES names no file")

local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
local threads = {}
local requests = {}
local next_request = 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", "/mutate", headers, body)
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
  end
  io.write(string.format("non-200 responses: %d\n", total))
  io.write(string.format("requests: %d\n", summary.requests))
  io.write(string.format("duration_us: %d\n", summary.duration))
  io.write(string.format("socket errors: connect %d, read %d, write %d, timeout %d, status %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status))
  io.write(string.format("latency_us p50 %d p99 %d p99.9 %d max %d\n",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
