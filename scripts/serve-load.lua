-- wrk script for scripts/serve-load.sh: POSTs PNG images to /api/predict, one file after
-- the other (the files named in $CNN_LOAD_PNGS, separated by spaces), and prints one line
-- of results that the shell script turns into a table row.
local files = {}
for path in string.gmatch(os.getenv("CNN_LOAD_PNGS") or "", "%S+") do
  local f = assert(io.open(path, "rb"))
  files[#files + 1] = f:read("*a")
  f:close()
end
assert(#files > 0, "set CNN_LOAD_PNGS to one or more PNG files")
local target = os.getenv("CNN_LOAD_PATH") or "/api/predict"
local requests = {}
for i, body in ipairs(files) do
  requests[i] = wrk.format("POST", target, { ["Content-Type"] = "image/png" }, body)
end
local next_one = 0

request = function()
  next_one = next_one % #requests + 1
  return requests[next_one]
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  -- status counts answers other than 2xx and 3xx.
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout + summary.errors.status
  io.write(string.format("RESULT requests=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests, summary.requests / seconds, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors))
end
