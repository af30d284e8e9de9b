-- bench/bench.lua: `make bench`: every performance goal of README "Benchmarks" measured against its
-- reference in the same run, printed as one table. A report: it exits non-zero only when the
-- harness itself breaks, never for a missed goal.
--
-- What it runs (see README "Benchmarks" for the goals and how to read the table):
--   sequential  the module's blocking libcurl driver, N calls of auto_renewal_status, vs
--               build/bench/raw_curl (bench/raw_curl.c): one reused easy handle, the same GET
--   batch       client:batch at concurrency 8, 32, 128 vs raw_curl's curl_multi at the same width
--   codec       partner.json_decode/json_encode vs lua-cjson (bench/codec.lua)
--   fleet       ensure_auto_renewal over 2,000 devices against a server answering after 100 ms,
--               libcurl driver here and cosocket driver inside nginx, vs requests x 100 ms / c
--   memory      bench/memory.lua in child processes: batch peak RSS, RSS over repeated work
-- The server is nginx on 127.0.0.1 (bench/api_nginx.conf) with the fake portal's certificate
-- (the portal is started only for its CA and certificate). Each repetition of a pair is several
-- short runs of each side, interleaved (pairs_of), so that load from elsewhere on a shared machine
-- hurts both sides alike; the sequential and batch rows also come as CPU-time ratios, which such
-- load disturbs far less.
--
-- Environment: BENCH_REPS (repetitions, default 5), BENCH_QUICK=1 (fewer requests, 2 repetitions,
-- fleet 500 devices: a smoke run, not the goals' conditions), BENCH_ONLY=seq,batch,codec,fleet,
-- memory (a subset), BENCH_CPATH (this runtime's module, default ./build/?.so), BENCH_JIT_CPATH
-- (nginx's, default ./build/luajit/?.so), BENCH_RAW (default build/bench/raw_curl),
-- BENCH_NGINX_WORKERS (the API server's workers, default 1), BENCH_SEQ_N and BENCH_BATCH_M (the
-- requests of one sequential / batch repetition, default 5,000 / 20,000: larger ones for a profile).
-- Portable Lua 5.1-5.4 and LuaJIT; run from the repository root.
package.path = "./?.lua;./bench/?.lua;" .. package.path
local CPATH = os.getenv("BENCH_CPATH") or "./build/?.so"
local JIT_CPATH = os.getenv("BENCH_JIT_CPATH") or "./build/luajit/?.so"
local RAW = os.getenv("BENCH_RAW") or "build/bench/raw_curl"
package.cpath = CPATH .. ";" .. package.cpath

local helpers = require "spec.helpers"
local nginx = require "spec.nginx"
local socket = require "socket"
local partner = require "yeastar.partner"
local codec = require "codec"

local QUICK = os.getenv("BENCH_QUICK") == "1"
local REPS = tonumber(os.getenv("BENCH_REPS") or (QUICK and "2" or "5"))
local ONLY = {}
for part in (os.getenv("BENCH_ONLY") or "seq,batch,codec,fleet,memory"):gmatch("[^,%s]+") do ONLY[part] = true end
local SEQ_N = tonumber(os.getenv("BENCH_SEQ_N") or (QUICK and 1000 or 5000))
local BATCH_M = tonumber(os.getenv("BENCH_BATCH_M") or (QUICK and 4000 or 20000))
local WIDTHS = { 8, 32, 128 }
local CHUNKS = QUICK and 2 or 4 -- interleaved runs of each side in one repetition (pairs_of)
local FLEET = QUICK and 500 or 2000
local FLEET_OFF_EVERY = 16 -- api_nginx.conf: auto-renewal off for every 16th device
local LATENCY = 0.1
local MEMORY_ITEMS = QUICK and 20000 or 100000

local STATUS = { productNo = "3651E0529415", productId = 12 }
local STATUS_PATH = helpers.STATUS_PATH
local LUA = helpers.LUA
local q = helpers.shell_quote

local started = socket.gettime()
local function note(fmt, ...) io.stderr:write(("[%6.1fs] "):format(socket.gettime() - started), fmt:format(...), "\n") end

-- ---------------------------------------------------------------------------------------------
-- Statistics and the table
-- ---------------------------------------------------------------------------------------------

local function sorted(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s
end

local function median(list)
  local s = sorted(list)
  local n = #s
  if n == 0 then return nil end
  return n % 2 == 1 and s[(n + 1) / 2] or (s[n / 2] + s[n / 2 + 1]) / 2
end

local rows, details, notes = {}, {}, {}

-- One row: values (a list), the goal as text, whether the median meets it, the unit's format.
local function row(measurement, goal, values, meets, fmt, status)
  local s = sorted(values)
  local m = median(values)
  rows[#rows + 1] = { measurement, goal, s[1] and fmt:format(s[1]) or "-",
    m and fmt:format(m) or "-", s[#s] and fmt:format(s[#s]) or "-",
    status or (m and (meets(m) and "PASS" or "MISS") or "n/a") }
end

local function detail(fmt, ...) details[#details + 1] = fmt:format(...) end

local function print_table()
  print("| measurement | goal | min | median | max | |")
  print("|---|---|---|---|---|---|")
  for _, r in ipairs(rows) do print("| " .. table.concat(r, " | ") .. " |") end
end

-- ---------------------------------------------------------------------------------------------
-- Servers: the fake portal (for its certificate only), the API nginx, the cosocket nginx
-- ---------------------------------------------------------------------------------------------

local function read_file(path)
  local fh = assert(io.open(path, "rb"))
  local text = fh:read("*a")
  fh:close()
  return text
end

local function read_file_or_nil(path)
  local fh = io.open(path, "rb")
  if not fh then return nil end
  local text = fh:read("*a")
  fh:close()
  return text
end

local portal, api
local drivers_by_width = {} -- the cosocket nginx of each fleet concurrency
local function stop_all()
  for _, d in pairs(drivers_by_width) do d:stop() end
  if api then api:stop() end
  if portal then portal:stop() end
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return helpers.run("pwd") .. "/" .. path:gsub("^%./", "")
end

local function start_servers()
  portal = helpers.start_portal {}
  local dir = portal.state_dir
  local check_port, slow_port = helpers.free_port(), helpers.free_port()
  while slow_port == check_port do slow_port = helpers.free_port() end
  api = nginx.start { conf = read_file("bench/api_nginx.conf"), vars = {
    WORKERS = os.getenv("BENCH_NGINX_WORKERS") or "1", CERT = dir .. "/server.pem",
    KEY = dir .. "/server.key", CHECK_PORT = tostring(check_port), SLOW_PORT = tostring(slow_port) } }
  api.base_url = "https://127.0.0.1:" .. api.port
  api.check_url = "https://127.0.0.1:" .. check_port
  api.slow_url = "https://127.0.0.1:" .. slow_port
  note("API nginx on 127.0.0.1:%d (fast), %d (wire check), %d (100 ms)", api.port, check_port, slow_port)
end

-- CPU seconds the API nginx's workers have used so far (utime + stime of each child of the
-- master, /proc/PID/stat fields 14 and 15, in clock ticks): the bench reports how busy the server
-- was, to show that it was not the limit.
local TICKS = tonumber((helpers.run("getconf CLK_TCK"))) or 100
local function server_cpu()
  local master = api:master_pid()
  local total = 0
  local list = master and read_file_or_nil("/proc/" .. master .. "/task/" .. master .. "/children") or ""
  for pid in list:gmatch("%d+") do
    local stat = read_file_or_nil("/proc/" .. pid .. "/stat") or ""
    local f = {}
    for v in (stat:match("^.*%)%s+(.*)$") or ""):gmatch("%S+") do f[#f + 1] = v end
    total = total + (tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)
  end
  return total / TICKS
end

local function new_client(base_url, extra)
  local opts = { client_id = "bench", client_secret = "bench", base_url = base_url, ca_file = portal.ca_file }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return partner.new(opts)
end

-- The exact request the module sends for STATUS, as raw_curl's arguments: URL, CA, headers.
local function raw_args(base_url)
  local c = new_client(base_url)
  local url = c:prepare("auto_renewal_status", STATUS).url
  c:close()
  return table.concat({ q(url), q(portal.ca_file), q("User-Agent: OpenAPI"), q("Accept: application/json"),
    q("Authorization: Bearer AT.bench") }, " ")
end

-- Runs raw_curl; returns its elapsed and CPU seconds or raises with its output.
local function raw(args)
  local out, code = helpers.run(q(RAW) .. " " .. args)
  local wall, cpu = out:match("^(%S+) (%S+)$")
  wall, cpu = tonumber(wall), tonumber(cpu)
  if code ~= 0 or not (wall and cpu) then
    error("raw_curl " .. args .. " failed (exit " .. tostring(code) .. "): " .. out, 2)
  end
  return wall, cpu
end

-- The module and raw_curl must send the same request: nginx logs both (api_nginx.conf, "wire").
local function check_wire()
  local c = new_client(api.check_url)
  assert(c:auto_renewal_status(STATUS))
  c:close()
  raw("seq 1 " .. raw_args(api.check_url))
  local log = read_file(api.prefix .. "/logs/wire.log")
  local lines = {}
  for line in log:gmatch("[^\n]+") do lines[#lines + 1] = line end
  -- The module: 1 call; raw_curl: a warm-up GET and the timed one.
  if #lines ~= 3 or lines[1] ~= lines[2] or lines[2] ~= lines[3] then
    error("the module and raw_curl send different requests:\n" .. log)
  end
  note("same request from both: %s", lines[1])
  detail("request (both): `%s`", lines[1])
end

-- ---------------------------------------------------------------------------------------------
-- Sequential and batch
-- ---------------------------------------------------------------------------------------------

local function module_sequential(n)
  local c = new_client(api.base_url)
  assert(c:auto_renewal_status(STATUS)) -- token and connection, as raw_curl's warm-up GET
  local t0, c0 = socket.gettime(), os.clock()
  for i = 1, n do
    local r, err = c:auto_renewal_status(STATUS)
    if not r then error("sequential call " .. i .. " failed: " .. tostring(err)) end
  end
  local t, cpu = socket.gettime() - t0, os.clock() - c0
  c:close()
  return t, cpu
end

local function module_batch(width, m)
  local c = new_client(api.base_url)
  local warm, list = {}, {}
  for i = 1, width do warm[i] = STATUS end
  for i = 1, m do list[i] = STATUS end
  c:batch("auto_renewal_status", warm, { concurrency = width }) -- token and `width` connections
  local t0, c0 = socket.gettime(), os.clock()
  local results = c:batch("auto_renewal_status", list, { concurrency = width })
  local t, cpu = socket.gettime() - t0, os.clock() - c0
  for i = 1, m do
    if not results[i].result then error("batch item " .. i .. " failed: " .. tostring(results[i].err)) end
  end
  c:close()
  return t, cpu
end

-- Alternating pairs. One repetition is `chunks` runs of each side, interleaved ABBAABBA... (the
-- reference first on odd repetitions, BAAB... on even ones), their times summed: on a shared
-- machine, a burst of someone else's load then falls on both sides, not on one. reference() and
-- module() return wall and CPU seconds. Returns the four lists (reference wall, module wall,
-- reference CPU, module CPU) and the fraction of the wall time the API nginx's workers were on a
-- CPU (to show the server was not the limit).
local function pairs_of(reps, chunks, reference, module)
  local rw, mw, rc, mc = {}, {}, {}, {}
  local cpu0, wall0 = api and server_cpu() or 0, socket.gettime()
  for r = 1, reps do
    rw[r], mw[r], rc[r], mc[r] = 0, 0, 0, 0
    for k = 1, chunks do
      local order = (r + k) % 2 == 0 and { reference, module } or { module, reference }
      for _, side in ipairs(order) do
        local wall, cpu = side()
        if side == reference then rw[r], rc[r] = rw[r] + wall, rc[r] + cpu
        else mw[r], mc[r] = mw[r] + wall, mc[r] + cpu end
      end
    end
  end
  return rw, mw, rc, mc, api and (server_cpu() - cpu0) / (socket.gettime() - wall0) or 0
end

local function ratios_of(a, b)
  local out = {}
  for i = 1, #a do out[i] = a[i] / b[i] end
  return out
end

-- A CPU-time row beside a wall-time goal: the same ratio from each process's own CPU time, which
-- other load on the machine disturbs far less. It shows whether a MISS is the module or the
-- machine; the goal is decided by the wall-time row.
local function cpu_row(measurement, goal, values, meets)
  row(measurement, goal, values, meets, "%.3f×")
  local r = rows[#rows]
  r[6] = "(" .. r[6] .. ")"
end

local function bench_sequential()
  local args = raw_args(api.base_url)
  local n = math.floor(SEQ_N / CHUNKS)
  local rw, mw, rc, mc, busy = pairs_of(REPS, CHUNKS,
    function() return raw(("seq %d %s"):format(n, args)) end,
    function() return module_sequential(n) end)
  local total = n * CHUNKS
  note("sequential: raw %.1f us/call, module %.1f us/call (medians)", median(rw) / total * 1e6, median(mw) / total * 1e6)
  local meets = function(m) return m <= 1.10 end
  row(("sequential call: module time / raw libcurl loop (%d GETs a repetition)"):format(total), "≤ 1.10×",
    ratios_of(mw, rw), meets, "%.3f×")
  cpu_row("… the same in CPU time of each client process", "(≤ 1.10×)", ratios_of(mc, rc), meets)
  detail("sequential, median per call: raw libcurl %.1f µs (%.1f µs CPU), module %.1f µs (%.1f µs CPU);"
    .. " API nginx on a CPU %.0f%% of the time", median(rw) / total * 1e6, median(rc) / total * 1e6,
    median(mw) / total * 1e6, median(mc) / total * 1e6, busy * 100)
end

local function bench_batch()
  local args = raw_args(api.base_url)
  local m = math.floor(BATCH_M / CHUNKS)
  local total = m * CHUNKS
  for _, w in ipairs(WIDTHS) do
    local rw, mw, rc, mc, busy = pairs_of(REPS, CHUNKS,
      function() return raw(("multi %d %d %s"):format(w, m, args)) end,
      function() return module_batch(w, m) end)
    note("batch %d: raw %.0f req/s, module %.0f req/s (medians)", w, total / median(rw), total / median(mw))
    local meets = function(v) return v >= 0.95 end
    row(("batch throughput at %d in flight: module / raw curl_multi (%d GETs a repetition)"):format(w, total),
      "≥ 0.95×", ratios_of(rw, mw), meets, "%.3f×")
    cpu_row("… the same in CPU time of each client process", "(≥ 0.95×)", ratios_of(rc, mc), meets)
    detail("batch at %d in flight, median: raw curl_multi %.0f requests/s (%.1f µs CPU each), module %.0f"
      .. " requests/s (%.1f µs CPU each); API nginx on a CPU %.0f%% of the time", w, total / median(rw),
      median(rc) / total * 1e6, total / median(mw), median(mc) / total * 1e6, busy * 100)
  end
end

-- ---------------------------------------------------------------------------------------------
-- Codec
-- ---------------------------------------------------------------------------------------------

local function bench_codec()
  local cjson = require("cjson").new() -- a private instance, default settings
  for _, doc in ipairs(codec.documents()) do
    local text, label = doc.text, doc.name
    local wrong = codec.check(partner, cjson, text)
    if wrong then
      local variant, numbers, arrays = codec.variant(text)
      local changed = {}
      if numbers > 0 then changed[#changed + 1] = ("its %d numbers of 14+ digits cut to 13"):format(numbers) end
      if arrays > 0 then changed[#changed + 1] = ("its %d empty arrays given one element"):format(arrays) end
      notes[#notes + 1] = ("%s* (%d bytes): lua-cjson gets the document wrong (%s); timed instead: the"
        .. " same document with %s (%d bytes), which both get right"):format(label, #text, wrong,
        table.concat(changed, " and "), #variant)
      text = variant
      label = label .. "*"
      local still = codec.check(partner, cjson, text)
      if still then error("the variant of " .. doc.name .. " is still wrong for cjson: " .. still) end
    end
    local tree = partner.json_decode(text) -- both encoders get the same table
    local ops = {
      { name = "json_decode", goal = 0.7, ours = partner.json_decode, theirs = cjson.decode, arg = text },
      { name = "json_encode", goal = 0.8, ours = partner.json_encode, theirs = cjson.encode, arg = tree },
    }
    for _, op in ipairs(ops) do
      local iterations = codec.calibrate(op.theirs, op.arg, QUICK and 0.05 or 0.15)
      -- codec.time is CPU time already: both lists of pairs_of hold it.
      local ref_t, mod_t = pairs_of(REPS, 1,
        function() local t = codec.time(op.theirs, op.arg, iterations) return t, t end,
        function() local t = codec.time(op.ours, op.arg, iterations) return t, t end)
      local ratios = ratios_of(mod_t, ref_t)
      row(("%s: time / lua-cjson's, %s (%s)"):format(op.name, label, #text >= 1e6
          and ("%.1f MB"):format(#text / 1e6) or #text >= 1e4 and ("%.0f KB"):format(#text / 1e3)
          or (#text .. " B")),
        ("≤ %.1f×"):format(op.goal), ratios, function(m) return m <= op.goal end, "%.3f×")
      detail("%s %s, median: lua-cjson %.1f MB/s, ours %.1f MB/s", op.name, label,
        #text * iterations / median(ref_t) / 1e6, #text * iterations / median(mod_t) / 1e6)
      note("%s %s: ratio %.3f (median)", op.name, label, median(ratios))
    end
  end
end

-- ---------------------------------------------------------------------------------------------
-- Fleet
-- ---------------------------------------------------------------------------------------------

local function fleet_devices(n)
  local devices = {}
  for i = 1, n do
    devices[i] = { productNo = ("FLEET%05d"):format(i), productId = 12, planOrServiceId = "3049040650094403584" }
  end
  return devices
end

-- Each run: a fresh client, warmed by `c` status calls at once (the token and `c` connections,
-- as a long-running fleet job has them), then ensure_auto_renewal timed.
local function fleet_curl(c, n)
  local client = new_client(api.slow_url)
  local warm = {}
  for i = 1, c do warm[i] = { productNo = "WARM", productId = 12 } end
  client:batch("auto_renewal_status", warm, { concurrency = c })
  local devices = fleet_devices(n)
  local t0 = socket.gettime()
  local report = client:ensure_auto_renewal(devices, { concurrency = c })
  local t = socket.gettime() - t0
  client:close()
  return t, report.totals
end

-- The same inside nginx (cosocket driver), in a content handler: it reports its own elapsed time.
local DRIVER_LOCATION = [[
    location = /fleet {
      default_type application/json;
      content_by_lua_block {
        local partner = require "yeastar.partner"
        local c, n = tonumber(ngx.var.arg_c), tonumber(ngx.var.arg_n)
        -- pool_size: keep every connection of the run (the default keeps 30 per host).
        local client = partner.new { client_id = "bench", client_secret = "bench",
                                     base_url = ngx.var.arg_base, pool_size = c }
        local warm = {}
        for i = 1, c do warm[i] = { productNo = "WARM", productId = 12 } end
        client:batch("auto_renewal_status", warm, { concurrency = c })
        local devices = {}
        for i = 1, n do
          devices[i] = { productNo = ("FLEET%05d"):format(i), productId = 12,
                         planOrServiceId = "3049040650094403584" }
        end
        ngx.update_time()
        local t0 = ngx.now()
        local report = client:ensure_auto_renewal(devices, { concurrency = c })
        ngx.update_time()
        local t = ngx.now() - t0
        client:close()
        local totals = report.totals
        ngx.print(partner.json_encode { elapsed = t, already_on = totals.already_on,
                                        enabled = totals.enabled, failed = totals.failed })
      }
    }
]]

local function fleet_cosocket(c, n)
  local driver = drivers_by_width[c]
  local status, body = driver:request { path = ("/fleet?c=%d&n=%d&base=%s"):format(c, n, api.slow_url),
                                        timeout = 300 }
  if status ~= 200 then error("cosocket fleet failed: " .. tostring(status) .. " " .. tostring(body)
    .. "\n" .. driver:error_log():sub(-2000)) end
  local r = partner.json_decode(body)
  return r.elapsed, r
end

local function bench_fleet()
  -- One nginx per concurrency: a worker keeps its connection pool per host across requests, sized
  -- by the first connect (pool_size), so runs at another width must not share it.
  for _, c in ipairs(WIDTHS) do
    drivers_by_width[c] = nginx.start { server = DRIVER_LOCATION, ca_file = portal.ca_file,
                                        cpath = JIT_CPATH, worker_processes = 1 }
  end
  local off = math.floor(FLEET / FLEET_OFF_EVERY)
  local requests = FLEET + off
  local drivers = { { name = "libcurl", run = fleet_curl }, { name = "cosocket (nginx)", run = fleet_cosocket } }
  local ratios, connections = {}, {}
  for _, d in ipairs(drivers) do
    ratios[d.name], connections[d.name] = {}, {}
    for _, c in ipairs(WIDTHS) do ratios[d.name][c], connections[d.name][c] = {}, {} end
  end
  -- The connections the slow server saw since the last call (api_nginx.conf logs each request's
  -- connection number; the log is emptied after each run, nginx appends at its new end).
  local slow_log = api.prefix .. "/logs/slow.log"
  local function connections_seen()
    local seen, n = {}, 0
    for id in (read_file_or_nil(slow_log) or ""):gmatch("%d+") do
      if not seen[id] then seen[id], n = true, n + 1 end
    end
    local fh = io.open(slow_log, "w")
    if fh then fh:close() end
    return n
  end
  for r = 1, REPS do
    for _, c in ipairs(WIDTHS) do
      local ideal = requests * LATENCY / c
      -- The drivers alternate which goes first, repetition by repetition.
      local order = r % 2 == 1 and { drivers[1], drivers[2] } or { drivers[2], drivers[1] }
      for _, d in ipairs(order) do
        connections_seen()
        local t, totals = d.run(c, FLEET)
        local opened = connections_seen()
        local conns = connections[d.name][c]
        conns[#conns + 1] = opened
        if totals.failed ~= 0 or totals.enabled ~= off or totals.already_on ~= FLEET - off then
          error(("fleet via %s at %d: %d failed, %d enabled, %d already on (expected 0, %d, %d)")
            :format(d.name, c, totals.failed, totals.enabled, totals.already_on, off, FLEET - off))
        end
        local list = ratios[d.name][c]
        list[#list + 1] = t / ideal
        note("fleet %s c=%d rep %d: %.2f s, ideal %.2f s (%.3f×), %d connections", d.name, c, r, t, ideal,
          t / ideal, opened)
      end
    end
  end
  for _, d in ipairs(drivers) do
    local seen = {}
    for _, c in ipairs(WIDTHS) do
      local s = sorted(connections[d.name][c])
      seen[#seen + 1] = ("%d–%d at %d"):format(s[1], s[#s], c)
    end
    detail("fleet via %s: connections the server saw in one run (warm-up included): %s", d.name,
      table.concat(seen, ", "))
    for _, c in ipairs(WIDTHS) do
      row(("fleet of %d via %s at concurrency %d: time / ideal (%.2f s)"):format(FLEET, d.name, c,
          requests * LATENCY / c), "≤ 1.10×", ratios[d.name][c], function(m) return m <= 1.10 end, "%.3f×")
    end
  end
  detail("fleet: %d devices, auto-renewal off for every %dth (%d enables): %d requests, each answered"
    .. " after %d ms; ideal = requests × %d ms / concurrency", FLEET, FLEET_OFF_EVERY, off, requests,
    LATENCY * 1000, LATENCY * 1000)
  -- ensure_auto_renewal checks every device before it enables any: two batches, each in whole
  -- rounds of 100 ms, so no driver can beat ceil(devices / c) + ceil(enables / c) rounds.
  local floors = {}
  for _, c in ipairs(WIDTHS) do
    local rounds = math.ceil(FLEET / c) + math.ceil(off / c)
    floors[#floors + 1] = ("%.3f× at %d"):format(rounds * LATENCY / (requests * LATENCY / c), c)
  end
  detail("fleet: the two phases (status of all, then the enables) in whole rounds put the best"
    .. " possible time / ideal at %s", table.concat(floors, ", "))
end

-- ---------------------------------------------------------------------------------------------
-- Memory
-- ---------------------------------------------------------------------------------------------

local function memory(mode, count)
  local cmd = ("BENCH_CPATH=%s %s bench/memory.lua %s %s %s %s"):format(q(CPATH), q(LUA), mode,
    q(api.base_url), q(portal.ca_file), count and tostring(count) or "")
  local out, code = helpers.run(cmd)
  if code ~= 0 then error("bench/memory.lua " .. mode .. " failed (exit " .. code .. "):\n" .. out) end
  local values = {}
  for k, v in out:gmatch("(%S+) (%S+)") do values[k] = v end
  return values
end

-- First and last quartile of the samples: their medians, in KiB.
local function quartiles(text)
  local samples = {}
  for v in text:gmatch("%d+") do samples[#samples + 1] = tonumber(v) end
  local k = math.max(1, math.floor(#samples / 4))
  local first, last = {}, {}
  for i = 1, k do first[i] = samples[i]; last[i] = samples[#samples - k + i] end
  return median(first), median(last), #samples
end

-- The smallest leak per request, one malloc chunk (32 bytes), would add 3.1 MiB over 100,000
-- requests; RSS also moves in allocator steps of a few hundred KiB with no leak at all.
local GROWTH_LIMIT_KIB = 1024

local function bench_memory()
  local peak = memory("peak", MEMORY_ITEMS)
  local over = tonumber(peak.peak_over_list_kib) / 1024
  local streaming = peak.streaming == "1"
  row(("batch of %s items, keep_results = false + on_result, concurrency 32: peak RSS over the input list (MiB)")
      :format(MEMORY_ITEMS), "≤ 16 MiB", { over }, function(m) return m <= 16 end, "%.1f",
    not streaming and "pending" or nil)
  if not streaming then
    notes[#notes + 1] = "batch peak: this build does not take keep_results yet (the streaming contract),"
      .. " so the default mode (every result kept) was measured: \"pending\""
  end
  detail("batch peak: the input list itself took %.1f MiB of RSS; %s failed items", tonumber(peak.list_kib) / 1024,
    peak.failed)
  note("memory peak: %.1f MiB over the list (%s)", over, streaming and "streaming" or "default mode")

  local seq_n = QUICK and 20000 or 100000
  local seq = memory("sequential", seq_n)
  local f, l, n = quartiles(seq.samples)
  local lf, ll = quartiles(seq.lua_samples)
  row(("RSS growth over %s sequential calls: last quartile − first (KiB, %d samples)"):format(seq_n, n),
    ("≤ %d KiB"):format(GROWTH_LIMIT_KIB), { l - f }, function(m) return m <= GROWTH_LIMIT_KIB end, "%.0f")
  detail("RSS over %d sequential calls: first quartile %d KiB, last %d KiB (Lua heap %d → %d KiB)", seq_n,
    f, l, lf, ll)
  note("memory sequential: %d -> %d KiB", f, l)

  local batches = memory("batches", 1000)
  local f2, l2, n2 = quartiles(batches.samples)
  local lf2, ll2 = quartiles(batches.lua_samples)
  row(("RSS growth over 100 batches of 1,000: last quartile − first (KiB, %d samples)"):format(n2),
    ("≤ %d KiB"):format(GROWTH_LIMIT_KIB), { l2 - f2 }, function(m) return m <= GROWTH_LIMIT_KIB end, "%.0f")
  detail("RSS over 100 batches: first quartile %d KiB, last %d KiB (Lua heap %d → %d KiB)", f2, l2, lf2, ll2)
  note("memory batches: %d -> %d KiB", f2, l2)
end

-- ---------------------------------------------------------------------------------------------
-- Main
-- ---------------------------------------------------------------------------------------------

local function describe()
  local cores = helpers.run("nproc")
  local date = os.date("!%Y-%m-%d %H:%M UTC")
  local curl_v = helpers.run("curl --version | head -1")
  local nginx_v = helpers.run(q(nginx.binary()) .. " -v 2>&1")
  print(("`make bench`, %s, %s cores (%s), %s, yeastar.partner %s, %s repetition%s%s.")
    :format(date, cores, helpers.run("grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'"),
      _VERSION .. (jit and (" (" .. jit.version .. ")") or ""), partner._VERSION, REPS, REPS == 1 and "" or "s",
      QUICK and ", QUICK MODE (not the goals' conditions)" or ""))
  print(("References: %s; %s; lua-cjson %s."):format(curl_v:match("^(curl %S+ %S+ %S+)") or curl_v,
    nginx_v:match("nginx/%S+") or nginx_v, require("cjson")._VERSION))
end

local ok, err = xpcall(function()
  start_servers()
  check_wire()
  if ONLY.seq then note("sequential: %d reps", REPS); bench_sequential() end
  if ONLY.batch then note("batch"); bench_batch() end
  if ONLY.codec then note("codec"); bench_codec() end
  if ONLY.fleet then note("fleet"); bench_fleet() end
  if ONLY.memory then note("memory"); bench_memory() end
end, debug.traceback)
stop_all()
if not ok then
  io.stderr:write("bench: the harness failed: ", tostring(err), "\n")
  os.exit(1)
end

print()
describe()
print()
print_table()
print()
for _, n in ipairs(notes) do print("* " .. n) end
for _, d in ipairs(details) do print("* " .. d) end
print(("* Medians decide PASS/MISS; min / median / max over %d alternating repetitions (memory rows: one run"
  .. " each). Total bench time: %.0f s."):format(REPS, socket.gettime() - started))
