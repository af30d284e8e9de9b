-- bench/bench.lua: `make bench`: every performance goal of README "Benchmarks" measured against its
-- reference in the same run, printed as one table. A report: it exits non-zero only when the
-- harness itself breaks, never for a missed goal.
--
-- What it runs (see README "Benchmarks" for the goals and how to read the table):
--   sequential  the module's blocking libcurl driver, calls of auto_renewal_status (in
--               bench/module_serve.lua), vs build/bench/raw_curl (bench/raw_curl.c): one reused
--               easy handle, the same GET
--   batch       client:batch at concurrency 8, 32, 128 vs raw_curl's curl_multi at the same width
--   codec       partner.json_decode/json_encode vs lua-cjson (bench/codec.lua)
--   fleet       ensure_auto_renewal over 2,000 devices against a server answering after 100 ms,
--               libcurl driver here and cosocket driver inside nginx, vs requests x 100 ms / c
--   memory      bench/memory.lua in child processes: batch peak RSS, RSS over repeated work
-- The server is nginx on 127.0.0.1 (bench/api_nginx.conf) with the fake portal's certificate
-- (the portal is started only for its CA and certificate). The sequential and batch rows run three
-- warmed processes that keep their connections: raw_curl, the module (bench/module_serve.lua) and
-- a second raw_curl, and interleave many short runs of the three (interleaved): load from
-- elsewhere on a shared machine then falls on all sides alike, and the second raw_curl against the
-- first (A/A) shows how precise the row's ratios are. They also come as CPU-time ratios. Those
-- processes share one CPU and the API nginx has the others (see PLACEMENT).
--
-- Environment: BENCH_REPS (repetitions, default 5), BENCH_QUICK=1 (fewer requests, 2 repetitions,
-- fleet 500 devices: a smoke run, not the goals' conditions), BENCH_ONLY=seq,batch,codec,fleet,
-- memory (a subset), BENCH_CPATH (this runtime's module, default ./build/?.so), BENCH_JIT_CPATH
-- (nginx's, default ./build/luajit/?.so), BENCH_RAW (default build/bench/raw_curl), RAW_TUNED=1
-- (raw_curl also gets the module's own libcurl tuning, see bench/raw_curl.c), BENCH_NGINX_WORKERS
-- (the API server's workers, default 1), BENCH_PIN=0 (no CPU pinning), BENCH_SEQ_N and
-- BENCH_BATCH_M (the requests of one short sequential / batch run, default 20 / 8 rounds of the
-- width but at least 250),
-- BENCH_SEQ_RUNS and BENCH_BATCH_RUNS (such runs of each side in one repetition, default 480 / as
-- many as make 48,000 items; best a multiple of 6, see ORDERS).
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
-- A repetition of a sequential / batch row: many short runs of each side, interleaved, in SESSIONS
-- sessions of freshly started processes (see interleaved). The spread of such runs hardly shrinks
-- with their length on a shared machine, so they are as short as they can be while still measuring
-- the thing itself: 20 calls, or a batch of 8 rounds (at least 250 items), so that the pace of a
-- running batch outweighs its start and end. Each side runs about 9,600 calls resp. 48,000 batch
-- items in a repetition.
local SESSIONS = QUICK and 1 or 4
-- Placement of the sequential and batch rows (BENCH_PIN=0 leaves it to the scheduler): their
-- client processes on one CPU, the API nginx on the others, as a remote portal would be: the
-- server never runs on the client's core. Left to the scheduler, a client on a small VM runs in
-- one of two modes that differ by 2x (on nginx's core, or on the other one, waking an idle CPU for
-- every answer) and switches between them at random, often on one side of a comparison only.
local function allowed_cpus() -- this process's affinity list ("0,1", "0-3,6"), lowest first
  local out, code = helpers.run("taskset -cp $$")
  local cpus = {}
  for a, b in (code == 0 and out:match(":%s*(%S+)%s*$") or ""):gmatch("(%d+)%-?(%d*)") do
    for c = tonumber(a), tonumber(b ~= "" and b or a) do cpus[#cpus + 1] = c end
  end
  return cpus
end
local CPUS = allowed_cpus()
local PIN = os.getenv("BENCH_PIN") ~= "0" and #CPUS >= 2
local CLIENT_PREFIX, SERVER_MASK = "", nil -- SERVER_MASK: for worker_cpu_affinity, CPU 0 rightmost
local PLACEMENT = ("no CPU pinning (%s)"):format(#CPUS < 2 and "fewer than 2 CPUs" or "BENCH_PIN=0")
if PIN then
  local bits = {}
  for c = 0, CPUS[#CPUS] do bits[c + 1] = "0" end
  for k = 2, #CPUS do bits[CPUS[k] + 1] = "1" end
  CLIENT_PREFIX, SERVER_MASK = ("taskset -c %d "):format(CPUS[1]), table.concat(bits):reverse()
  PLACEMENT = ("sequential and batch clients on CPU %d, API nginx on CPU %s"):format(CPUS[1],
    table.concat(CPUS, ",", 2))
end
local SEQ_N = tonumber(os.getenv("BENCH_SEQ_N") or 20)
local SEQ_RUNS = tonumber(os.getenv("BENCH_SEQ_RUNS") or (QUICK and 60 or 480))
local BATCH_PER_REP = QUICK and 6000 or 48000
local function batch_shape(width) -- the items of one run, and the runs of a repetition
  local m = tonumber(os.getenv("BENCH_BATCH_M")) or math.max(250, 8 * width)
  local unit = 6 * SESSIONS -- every session runs whole cycles of ORDERS
  local runs = tonumber(os.getenv("BENCH_BATCH_RUNS")) or math.max(1, math.floor(BATCH_PER_REP / m / unit + 0.5)) * unit
  return m, runs
end
local WIDTHS = { 8, 32, 128 }
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
local servers = {} -- the sides of the sequential and batch rows (spawn)
local function stop_all()
  for i = #servers, 1, -1 do servers[i]:stop() end
  for _, d in pairs(drivers_by_width) do d:stop() end -- by PID: os.exit(1) below runs no __gc
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
  local workers = os.getenv("BENCH_NGINX_WORKERS") or "1"
  local affinity = SERVER_MASK and ("worker_cpu_affinity" .. (" " .. SERVER_MASK):rep(tonumber(workers)) .. ";") or ""
  api = nginx.start { conf = read_file("bench/api_nginx.conf"), vars = {
    WORKERS = workers, AFFINITY = affinity, CERT = dir .. "/server.pem",
    KEY = dir .. "/server.key", CHECK_PORT = tostring(check_port), SLOW_PORT = tostring(slow_port) } }
  api.base_url = "https://127.0.0.1:" .. api.port
  api.check_url = "https://127.0.0.1:" .. check_port
  api.slow_url = "https://127.0.0.1:" .. slow_port
  note("API nginx on 127.0.0.1:%d (fast), %d (wire check), %d (100 ms); %s", api.port, check_port, slow_port,
    PLACEMENT)
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

-- The sides of a sequential or batch row, each a process of its own that is warmed up once and then
-- told over a FIFO how many requests to run, again and again, over the same handles and
-- connections: `raw_curl serve` (bench/raw_curl.c) and bench/module_serve.lua, which speak the same
-- protocol (a count per line in; "ready", then a "WALL CPU" line per count, out). Their stdout comes
-- back through io.popen; the shell prints its PID first and then becomes the server (exec), so the
-- PID is the server's. stop(): end of input, then KILL by PID should it not exit within 5 s (the PID
-- stays ours until io.popen's close reaps it), then the FIFO's directory is removed.
local Server = {}
Server.__index = Server

local function process_state(pid)
  local stat = read_file_or_nil("/proc/" .. pid .. "/stat")
  return stat and stat:match("^.*%)%s+(%S)") -- nil: gone; "Z": exited, not yet reaped
end

function Server:fail(what)
  local err = read_file_or_nil(self.dir .. "/stderr") or ""
  self:stop()
  error(("%s: %s: %s"):format(self.label, what, err:sub(-2000)), 0)
end

-- Starts the server's shell, which waits (in its open of the FIFO) for connect(). All the sides of a
-- row are spawned before any is connected, so that no server inherits another's FIFO writer (which
-- would keep that one from ever seeing the end of its input).
local function spawn(label, command)
  local dir, code = helpers.run("mktemp -d -t yeastar-bench.XXXXXX")
  assert(code == 0 and dir:find("yeastar-bench.", 1, true), "mktemp failed: " .. dir)
  local s = setmetatable({ label = label, dir = dir, fifo = dir .. "/commands" }, Server)
  servers[#servers + 1] = s
  local out, mk = helpers.run("mkfifo " .. q(s.fifo))
  if mk ~= 0 then s:fail("mkfifo: " .. out) end
  s.output = assert(io.popen(("echo $$; exec %s <%s 2>%s"):format(command, q(s.fifo), q(dir .. "/stderr")), "r"))
  s.pid = tonumber(s.output:read("*l"))
  if not s.pid then s:fail("no PID") end
  return s
end

-- Opens the FIFO (the server then execs and warms up); ready() waits for the end of the warm-up.
function Server:connect()
  self.input = assert(io.open(self.fifo, "w"))
end

function Server:ready()
  if self.output:read("*l") ~= "ready" then self:fail("warm-up failed") end
end

-- n requests; returns the server's elapsed and CPU seconds for them.
function Server:run(n)
  self.input:write(n, "\n")
  self.input:flush()
  local line = self.output:read("*l")
  local wall, cpu = (line or ""):match("^(%S+) (%S+)$")
  wall, cpu = tonumber(wall), tonumber(cpu)
  if not (wall and cpu) then self:fail(("%d requests: answered %q"):format(n, tostring(line))) end
  return wall, cpu
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  if self.input then self.input:close() end -- end of input: the server cleans up and exits
  if self.pid then
    local deadline = socket.gettime() + 5
    while (process_state(self.pid) or "Z") ~= "Z" and socket.gettime() < deadline do socket.sleep(0.01) end
    if (process_state(self.pid) or "Z") ~= "Z" then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  end
  if self.output then self.output:close() end
  os.execute("rm -rf -- " .. q(self.dir))
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

-- The three sides of a row, freshly started: the reference (raw_curl), the module and a second
-- raw_curl (the A/A twin), in that order. mode: "seq" or a width.
local function start_sides(mode)
  local raw = ("%s%s serve %s %s"):format(CLIENT_PREFIX, q(RAW), mode == "seq" and "seq" or ("multi " .. mode),
    raw_args(api.base_url))
  local module = ("%senv BENCH_CPATH=%s %s bench/module_serve.lua %s %s %s"):format(CLIENT_PREFIX, q(CPATH),
    q(LUA), mode, q(api.base_url), q(portal.ca_file))
  local sides = { spawn("raw_curl serve " .. mode, raw), spawn("module_serve " .. mode, module),
    spawn("raw_curl serve " .. mode .. " (A/A)", raw) }
  for _, side in ipairs(sides) do side:connect() end
  for _, side in ipairs(sides) do side:ready() end
  return sides
end

local function stop_sides(sides)
  for i = #sides, 1, -1 do sides[i]:stop() end
end

-- The orders of three sides in consecutive runs: every side takes every place once in six, and
-- each order is followed by its mirror image, so that a load that rises or falls steadily over
-- two runs adds the same to every side.
local ORDERS = { { 1, 2, 3 }, { 3, 2, 1 }, { 2, 3, 1 }, { 1, 3, 2 }, { 3, 1, 2 }, { 2, 1, 3 } }

-- One row's measurements: `reps` repetitions of `runs` short runs of n requests of each side,
-- interleaved in the ORDERS above, in SESSIONS sessions of freshly started sides (start_sides). A
-- process can be lucky or unlucky for as long as it lives (by some percent: where the scheduler
-- keeps it, how its memory falls in the caches), so each repetition mixes several of each side,
-- and none of them lasts beyond its session. On a small shared machine the time of
-- one run, wall and CPU alike, varies by some 25 % whatever its length (measured from 10 to 200
-- ms): what makes a ratio precise is the number of runs, compared where they ran next to each
-- other. A repetition's value is the median, over its runs, of each side's time against the
-- reference's run of the same round: the runs that other load spoils move it less than they
-- would move a sum. Returns, per side i (2: module, 3: A/A twin), the lists of the repetitions'
-- ratios side/reference in wall and in CPU time, the median seconds of one run of each side
-- (per_run.wall[i], per_run.cpu[i]), and the fraction of the wall time the API nginx's workers
-- were on a CPU (to show the server was not the limit).
local function interleaved(mode, reps, runs, n)
  local wall_ratio, cpu_ratio = { {}, {}, {} }, { {}, {}, {} }
  local wall_runs, cpu_runs = { {}, {}, {} }, { {}, {}, {} }
  local cpu0, wall0 = server_cpu(), socket.gettime()
  local per_session = math.ceil(runs / SESSIONS)
  for r = 1, reps do
    local w, c = { {}, {}, {} }, { {}, {}, {} }
    local sides
    for k = 1, runs do
      if (k - 1) % per_session == 0 then
        if sides then stop_sides(sides) end
        sides = start_sides(mode)
      end
      for _, i in ipairs(ORDERS[(k - 1) % #ORDERS + 1]) do
        w[i][k], c[i][k] = sides[i]:run(n)
        wall_runs[i][#wall_runs[i] + 1], cpu_runs[i][#cpu_runs[i] + 1] = w[i][k], c[i][k]
      end
    end
    stop_sides(sides)
    for i = 1, 3 do
      local rw, rc = {}, {}
      for k = 1, runs do rw[k], rc[k] = w[i][k] / w[1][k], c[i][k] / c[1][k] end
      wall_ratio[i][r], cpu_ratio[i][r] = median(rw), median(rc)
    end
  end
  local busy = (server_cpu() - cpu0) / (socket.gettime() - wall0)
  local per_run = { wall = {}, cpu = {} }
  for i = 1, 3 do per_run.wall[i], per_run.cpu[i] = median(wall_runs[i]), median(cpu_runs[i]) end
  return wall_ratio, cpu_ratio, per_run, busy
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

-- The A/A row under a goal's rows: the second raw_curl measured as if it were the module, so its
-- spread around 1 is the method's own noise at that moment. Not a goal: "—" in both columns.
local function noise_row(measurement, values)
  row(measurement, "—", values, nil, "%.3f×", "—")
end

local function spread(values)
  local s = sorted(values)
  return ("%.3f–%.3f"):format(s[1], s[#s])
end

-- Time ratios side/reference as throughput ratios reference/side.
local function inverted(list)
  local out = {}
  for i, v in ipairs(list) do out[i] = 1 / v end
  return out
end

local function bench_sequential()
  local wall, cpu, per_run, busy = interleaved("seq", REPS, SEQ_RUNS, SEQ_N)
  local us = function(seconds) return seconds / SEQ_N * 1e6 end
  note("sequential: raw %.1f us/call, module %.1f us/call (medians); ratio %.3f, A/A %s",
    us(per_run.wall[1]), us(per_run.wall[2]), median(wall[2]), spread(wall[3]))
  local meets = function(m) return m <= 1.10 end
  row(("sequential call: module time / raw libcurl loop (%d × %d GETs a repetition)"):format(SEQ_RUNS, SEQ_N),
    "≤ 1.10×", wall[2], meets, "%.3f×")
  cpu_row("… the same in CPU time of each client process", "(≤ 1.10×)", cpu[2], meets)
  noise_row("… noise floor (A/A): a second raw libcurl loop / the first, same schedule", wall[3])
  detail("sequential, median per call: raw libcurl %.1f µs (%.1f µs CPU), module %.1f µs (%.1f µs CPU);"
    .. " API nginx on a CPU %.0f%% of the time; A/A in CPU time %s", us(per_run.wall[1]),
    us(per_run.cpu[1]), us(per_run.wall[2]), us(per_run.cpu[2]), busy * 100, spread(cpu[3]))
end

local function bench_batch()
  for _, w in ipairs(WIDTHS) do
    local m, runs = batch_shape(w)
    local wall, cpu, per_run, busy = interleaved(w, REPS, runs, m)
    local tput = { inverted(wall[2]), inverted(cpu[2]), inverted(wall[3]), inverted(cpu[3]) }
    local rate = function(seconds) return m / seconds end
    local us = function(seconds) return seconds / m * 1e6 end
    note("batch %d: raw %.0f req/s, module %.0f req/s (medians); ratio %.3f, A/A %s", w,
      rate(per_run.wall[1]), rate(per_run.wall[2]), median(tput[1]), spread(tput[3]))
    local meets = function(v) return v >= 0.95 end
    row(("batch throughput at %d in flight: module / raw curl_multi (%d × %d GETs a repetition)")
      :format(w, runs, m), "≥ 0.95×", tput[1], meets, "%.3f×")
    cpu_row("… the same in CPU time of each client process", "(≥ 0.95×)", tput[2], meets)
    noise_row("… noise floor (A/A): a second raw curl_multi / the first, same schedule", tput[3])
    detail("batch at %d in flight, median run: raw curl_multi %.0f requests/s (%.1f µs CPU each), module"
      .. " %.0f requests/s (%.1f µs CPU each); API nginx on a CPU %.0f%% of the time; A/A in CPU time %s",
      w, rate(per_run.wall[1]), us(per_run.cpu[1]), rate(per_run.wall[2]), us(per_run.cpu[2]), busy * 100,
      spread(tput[4]))
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
      -- codec.time is CPU time already. One run of each side a repetition, alternating which
      -- goes first (AB BA ...).
      local ref_t, mod_t = {}, {}
      for r = 1, REPS do
        local order = r % 2 == 1 and { "theirs", "ours" } or { "ours", "theirs" }
        for _, side in ipairs(order) do
          local t = codec.time(op[side], op.arg, iterations)
          if side == "theirs" then ref_t[r] = t else mod_t[r] = t end
        end
      end
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
  print(("References: %s; %s; lua-cjson %s.%s"):format(curl_v:match("^(curl %S+ %S+ %S+)") or curl_v,
    nginx_v:match("nginx/%S+") or nginx_v, require("cjson")._VERSION,
    os.getenv("RAW_TUNED") == "1" and " raw_curl with the module's own libcurl tuning (RAW_TUNED=1)." or ""))
  print(("Placement: %s."):format(PLACEMENT))
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
print(("* Medians decide PASS/MISS; min / median / max over %d repetitions (sequential and batch rows: each"
  .. " repetition the median ratio of many short interleaved runs; the A/A rows are the method's own noise;"
  .. " memory rows: one run each). Total bench time: %.0f s."):format(REPS, socket.gettime() - started))
