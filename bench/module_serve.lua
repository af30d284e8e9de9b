-- bench/module_serve.lua: the module's side of `make bench`'s sequential and batch rows, in its own
-- process, speaking the protocol of `raw_curl serve` (bench/raw_curl.c) so the two are run alike.
--
-- Usage: lua bench/module_serve.lua seq|WIDTH BASE_URL CA_FILE
--   seq     one client, warmed by one call (the token and the connection); each count n on stdin is
--           answered with the time of n auto_renewal_status calls one after another.
--   WIDTH   one client, warmed by a batch of WIDTH items at concurrency WIDTH (WIDTH connections);
--           each count n is answered with the time of one batch of n items at concurrency WIDTH.
-- Prints "ready" after the warm-up, then one "WALL CPU" line (seconds) per count, flushed. A failed
-- call answers "FAIL" (the reason on stderr), then it waits for end of input and exits 1. The
-- module comes from BENCH_CPATH, as in bench/bench.lua. Portable Lua 5.1-5.4 and LuaJIT.
package.cpath = (os.getenv("BENCH_CPATH") or "./build/?.so") .. ";" .. package.cpath
local partner = require "yeastar.partner"
local socket = require "socket"

local mode, base_url, ca_file = arg[1], arg[2], arg[3]
local width = tonumber(mode)
if not ((mode == "seq" or (width and width >= 1)) and base_url and ca_file) then
  io.stderr:write("usage: lua bench/module_serve.lua seq|WIDTH BASE_URL CA_FILE\n")
  os.exit(2)
end

local STATUS = { productNo = "3651E0529415", productId = 12 }
local client = partner.new { client_id = "bench", client_secret = "bench", base_url = base_url,
                             ca_file = ca_file }

-- timed(n) makes n calls (or one batch of n) and returns the wall and CPU seconds they took, then
-- nil and a message if one failed. The input list of a batch is built before the clock starts
-- (once per size) and its results are checked after it stops.
local timed
if mode == "seq" then
  timed = function(n)
    local t0, c0 = socket.gettime(), os.clock()
    for i = 1, n do
      local r, err = client:auto_renewal_status(STATUS)
      if not r then return 0, 0, ("call %d failed: %s"):format(i, tostring(err)) end
    end
    return socket.gettime() - t0, os.clock() - c0
  end
else
  local lists = {}
  timed = function(n)
    local list = lists[n]
    if not list then
      list = {}
      for i = 1, n do list[i] = STATUS end
      lists[n] = list
    end
    local t0, c0 = socket.gettime(), os.clock()
    local results = client:batch("auto_renewal_status", list, { concurrency = width })
    local wall, cpu = socket.gettime() - t0, os.clock() - c0
    for i = 1, n do
      local r = results[i]
      if not r.result then return 0, 0, ("batch item %d failed: %s"):format(i, tostring(r.err)) end
    end
    return wall, cpu
  end
end

local function fail(message)
  io.stderr:write("module_serve: ", message, "\n")
  io.stdout:write("FAIL\n")
  io.stdout:flush()
  while io.stdin:read("*l") do end -- until end of input: the bench never writes to a closed pipe
  client:close()
  os.exit(1)
end

local _, _, err = timed(width or 1)
if err then fail("warm-up: " .. err) end
io.stdout:write("ready\n")
io.stdout:flush()
for line in io.stdin:lines() do
  local n = tonumber(line)
  if not (n and n >= 1 and n % 1 == 0) then fail("not a positive count: " .. line) end
  local wall, cpu
  wall, cpu, err = timed(n)
  if err then fail(err) end
  io.stdout:write(("%.6f %.6f\n"):format(wall, cpu))
  io.stdout:flush()
end
client:close()
