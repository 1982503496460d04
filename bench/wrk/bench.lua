-- wrk script for `make bench`: an optional request body read from a file, a cap on responses per
-- thread (so every run is bounded in requests as well as in time), and a one-line JSON summary.
--   BENCH_BODY=<file> BENCH_CONTENT_TYPE=<type>  POST that body instead of a GET
--   BENCH_BOUNDARY=<token>                        the multipart boundary written in that file: each request
--                                                 gets a fresh random one instead, as browsers and HTTP
--                                                 libraries send (a server may pay per new boundary)
--   BENCH_PER_THREAD=<n>                          stop each thread after n responses (0: no cap)
--   BENCH_HEADER="<name>: <value>"                one more request header (/v2's Inference-Header-Content-Length)
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
int clock_gettime(int clk_id, bench_timespec_t *tp);
]]
local CLOCK_MONOTONIC = 1

local function now_us()
  local ts = ffi.new("bench_timespec_t")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_BODY")
  if path and path ~= "" then
    local f = assert(io.open(path, "rb"))
    wrk.method = "POST"
    wrk.body = f:read("*a")
    f:close()
    wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")
    local extra = os.getenv("BENCH_HEADER") or ""
    local name, value = string.match(extra, "^([^:]+):%s*(.*)$")
    if name then wrk.headers[name] = value end
    local token = os.getenv("BENCH_BOUNDARY") or ""
    if token ~= "" then
      -- Split the body at the boundary once; request() joins the pieces with a new boundary.
      pieces, content_type = {}, wrk.headers["Content-Type"]
      local start = 1
      while true do
        local i, j = string.find(wrk.body, token, start, true)
        if not i then break end
        table.insert(pieces, string.sub(wrk.body, start, i - 1))
        start = j + 1
      end
      table.insert(pieces, string.sub(wrk.body, start))
      content_type = string.gsub(content_type, token, "%%s")
      math.randomseed(now_us() + (tonumber(tostring({}):sub(8)) or 0))
    end
  end
  limit = tonumber(os.getenv("BENCH_PER_THREAD") or "0")
  count = 0
  first_us = now_us()
  last_us = first_us
end

local function random_boundary()
  local t = {}
  for i = 1, 32 do t[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(t)
end

if os.getenv("BENCH_BOUNDARY") and os.getenv("BENCH_BOUNDARY") ~= "" then
  function request()
    local b = random_boundary()
    wrk.headers["Content-Type"] = string.format(content_type, b)
    return wrk.format(nil, nil, nil, table.concat(pieces, b))
  end
end

function response(status, headers, body)
  count = count + 1
  last_us = now_us()
  if limit > 0 and count == limit then
    -- A stopped thread keeps its sockets open until wrk exits, which would hold a sync server
    -- worker on a half-open connection: tell the parent, which interrupts wrk (SIGINT) at once.
    io.write("BENCH_CAPPED\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local first, last, n = math.huge, 0, 0
  for _, t in ipairs(threads) do
    first = math.min(first, t:get("first_us"))
    last = math.max(last, t:get("last_us"))
    n = n + t:get("count")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_WRK {"requests": %d, "responses": %d, "active_s": %.6f, "duration_s": %.6f, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_ms": {"p50": %.3f, "p90": %.3f, "p99": %.3f, "max": %.3f, "mean": %.3f}}\n',
    summary.requests, n, (last - first) / 1e6, summary.duration / 1e6, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, latency.mean / 1000))
end
