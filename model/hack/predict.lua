-- wrk script: POST /predict with multipart "file" uploads, cycling through
-- the images listed (one path a line) in the file named by the first script
-- argument, relative to the directory in the second. Used by hack/bench.sh.
--   wrk -s predict.lua http://127.0.0.1:18080 -- LIST ROOT [MAX]
local bodies = {}
local boundary = "----planets-bench-boundary"
local i = 0

function init(args)
  local list, root, max = args[1], args[2], tonumber(args[3] or "100")
  for line in io.lines(list) do
    if #bodies >= max then break end
    local f = assert(io.open(root .. "/" .. line, "rb"))
    local data = f:read("*a")
    f:close()
    local name = line:match("[^/]+$")
    bodies[#bodies + 1] = "--" .. boundary .. "\r\n" ..
      'Content-Disposition: form-data; name="file"; filename="' .. name .. '"\r\n' ..
      "Content-Type: image/jpeg\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end

function request()
  i = i % #bodies + 1
  return wrk.format(nil, "/predict", nil, bodies[i])
end

function done(summary, latency, requests)
  io.write(string.format("wrk: %d requests, %d errors (status %d, connect %d, read %d, write %d, timeout %d)\n",
    summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
  io.write(string.format("wrk: req/s %.0f p50 %.2f ms p99 %.2f ms max %.2f ms\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
