-- wrk (Debian's wrk 4, closed loop) script: POST AdmissionReviews to /mutate over keep-alive.
-- BENCH_BODIES is a colon-separated list of files (a request mix: request i sends body i mod N);
-- BENCH_BODY names a single file (run.sh writes a compact copy of review.json).
-- Every response whose status is not 200 is counted per thread and reported in done(), with
-- the line "non-200 responses: N" that run.sh checks (wrk's own "Non-2xx or 3xx" line would let
-- a 3xx through).

local bodies = {}
local names = os.getenv("BENCH_BODIES") or os.getenv("BENCH_BODY") or "benchmarks/review.json"
for path in string.gmatch(names, "[^:]+") do
  local file = assert(io.open(path, "rb"))
  table.insert(bodies, file:read("*a"))
  file:close()
end
assert(#bodies > 0, "BENCH_BODIES names no file")

local target = os.getenv("BENCH_PATH") or "/mutate"
local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
local requests = {}
local next_request = 0

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
  for i, body in ipairs(bodies) do
    requests[i] = wrk.format("POST", target, headers, body)
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
