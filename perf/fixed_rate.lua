-- wrk script: send requests at a fixed total rate (requests per second, the first script argument) instead of
-- as fast as possible. wrk asks delay() before each request; the schedule is absolute (next_at advances by one
-- interval per request), so the 1 ms granularity of wrk's timers jitters single requests but not the rate.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } perf_timespec;
int clock_gettime(int clk_id, perf_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("perf_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local interval, next_at

function init(args)
  interval = 1000 / tonumber(args[1])
end

function delay()
  local now = now_ms()
  if next_at == nil then next_at = now end
  next_at = next_at + interval
  local wait = next_at - now
  if wait < 0 then return 0 end
  return wait
end

-- wrk's --latency table stops at 99%; the tail beyond it, in the table's own format so one parser reads both.
function done(summary, latency, requests)
  io.write(string.format("  99.9%%  %.2fus\n", latency:percentile(99.9)))
end
