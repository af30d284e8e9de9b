-- fleet_bench.lua: client:ensure_auto_renewal over a fleet of 2,000 devices on the fake portal,
-- sequentially (concurrency 1) and with 8 and 32 requests in flight, all measured in the same
-- run. Reports, asserts nothing.
--
-- Usage, from the repository root after `make`:
--   lua5.4 bench/fleet_bench.lua [repetitions]        (default 3; `make bench` runs it)
-- It starts its own fake portal through spec/helpers.lua (LuaSocket and lua-cjson needed),
-- with a small latency added to every API request so that the numbers resemble a network
-- rather than loopback; any YEASTAR_* variables in the environment are ignored.
-- Every run is a dry run (status queries only) on a freshly reset portal, so each run does the
-- same work: 2,000 GETs. Runs of the three modes alternate, and the median of each is kept.
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
package.path = "./spec/?.lua;" .. package.path
local helpers = require "helpers"
local socket = require "socket"
local partner = require "yeastar.partner"

local FLEET = 2000
local LATENCY_MS = 2
local MODES = { { name = "sequential", concurrency = 1 },
                { name = "concurrent", concurrency = 8 },
                { name = "concurrent", concurrency = 32 } }
local BUDGET_S = 90 -- keep a whole run well under two minutes
local wanted = tonumber(arg[1] or "3")
if not wanted or wanted < 1 then
  io.stderr:write("usage: lua5.4 bench/fleet_bench.lua [repetitions >= 1]\n")
  os.exit(2)
end

local portal = helpers.start_portal { latency_ms = LATENCY_MS }

-- One timed run: a fresh fleet and a fresh client with its token already fetched, then only
-- ensure_auto_renewal is inside the stopwatch.
local function run(concurrency)
  portal:reset()
  local devices = {}
  for i, d in ipairs(portal:fleet { count = FLEET }) do
    -- IDs as strings, as a CSV would give them (cjson hands over productId as a float).
    devices[i] = { productNo = d.productNo, productId = ("%d"):format(d.productId),
                   planOrServiceId = tostring(d.planOrServiceId) }
  end
  local client = helpers.client(portal)
  local warm, err = client:auto_renewal_status { productNo = devices[1].productNo,
                                                 productId = devices[1].productId }
  if not warm then error("warm-up failed: " .. tostring(err)) end
  local before = portal:stats().total
  local t0 = socket.gettime()
  local report = client:ensure_auto_renewal(devices, { concurrency = concurrency, dry_run = true })
  local elapsed = socket.gettime() - t0
  local stats = portal:stats()
  client:close()
  if report.totals.failed > 0 then
    local first
    for _, e in ipairs(report.devices) do
      if e.outcome == "failed" then first = e.err break end
    end
    error(("%d of %d devices failed, first: %s"):format(report.totals.failed, FLEET, tostring(first)))
  end
  return elapsed, stats.total - before, stats.max_in_flight
end

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

local ok, failure = pcall(function()
  print(("fleet_bench: ensure_auto_renewal{dry_run=true} over %d devices, yeastar.partner %s, %s")
    :format(FLEET, partner._VERSION, _VERSION))
  print(("fake portal on 127.0.0.1 (HTTPS) with %d ms added to every API request to"
    .. " resemble a network;"):format(LATENCY_MS))
  print("portal reset and fleet re-created before every run; modes alternate; median of the runs")
  io.stdout:flush()

  for _, m in ipairs(MODES) do m.times, m.requests, m.max_in_flight = {}, 0, 0 end
  local started = socket.gettime()
  local reps = wanted
  local rep = 0
  while rep < reps do
    rep = rep + 1
    for _, m in ipairs(MODES) do
      local elapsed, requests, in_flight = run(m.concurrency)
      m.times[#m.times + 1] = elapsed
      m.requests = requests
      m.max_in_flight = math.max(m.max_in_flight, in_flight)
    end
    local spent = socket.gettime() - started
    if rep == 1 and reps > 1 and spent * reps > BUDGET_S then
      reps = math.max(1, math.floor(BUDGET_S / spent))
      print(("(one round took %.1f s: %d repetition%s instead of %d, to stay under ~%d s)")
        :format(spent, reps, reps == 1 and "" or "s", wanted, BUDGET_S))
    end
  end

  print(("%d repetition%s per mode, %d requests per run, %.1f s in all"):format(
    reps, reps == 1 and "" or "s", MODES[1].requests, socket.gettime() - started))
  print()
  print(("%-11s %11s %10s %11s %13s %14s"):format("mode", "concurrency", "median s", "requests/s",
    "vs sequential", "max in flight"))
  local base
  for _, m in ipairs(MODES) do
    local t = median(m.times)
    local rate = m.requests / t
    base = base or rate
    print(("%-11s %11d %10.2f %11.0f %12.2fx %14d"):format(m.name, m.concurrency, t, rate,
      rate / base, m.max_in_flight))
  end
end)
portal:stop()
if not ok then
  io.stderr:write("fleet_bench: ", tostring(failure), "\n")
  os.exit(1)
end
