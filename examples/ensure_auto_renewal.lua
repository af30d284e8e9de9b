-- ensure_auto_renewal.lua: make sure auto-renewal is on for every device listed in a CSV file.
-- For each device it queries the auto-renewal status and enables auto-renewal where it is off
-- (seeds 000 and 001). One device's failure never stops the others; a summary comes at the end.
--
-- Usage (from the repository root, after `make`):
--   lua5.4 examples/ensure_auto_renewal.lua [--dry-run] [--concurrency N] devices.csv
--     --dry-run         only query: report which devices would be enabled, change nothing
--     --concurrency N   requests in flight at once, 1..256 (default 8)
--
-- The CSV file starts with the header line `productNo,productId,planOrServiceId` (columns in
-- any order); then one device per line. Blank lines and lines starting with # are skipped.
-- IDs stay strings from file to wire, so no digit of a 19-digit plan ID is ever lost.
-- See examples/devices.csv.
--
-- Environment: read by partner.from_env (--help lists every variable). YEASTAR_CLIENT_ID,
-- YEASTAR_CLIENT_SECRET (never printed) and YEASTAR_BASE_URL are required. The first line on
-- stderr names the portal.
--
-- Against the fake portal:
--   make fake-portal       # in one terminal; paste the `export YEASTAR_...` lines it prints
--   lua5.4 examples/ensure_auto_renewal.lua --dry-run examples/devices.csv
--   lua5.4 examples/ensure_auto_renewal.lua examples/devices.csv
-- or: tools/with-fake-portal.sh lua5.4 examples/ensure_auto_renewal.lua examples/devices.csv
--
-- Progress goes to stderr (one live line on a terminal, one line per device otherwise); the
-- summary goes to stdout. Exit status: 0 every device is fine, 1 at least one device failed,
-- 2 usage error (bad arguments, unreadable or malformed CSV, missing environment).

-- From the repository root the module built for this interpreter (build/<5.x|luajit>/) comes
-- first; once the module is installed this entry finds nothing and the installed copy is used.
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
local partner = require "yeastar.partner"

local USAGE = "usage: lua5.4 examples/ensure_auto_renewal.lua [--dry-run] [--concurrency N] devices.csv\n"

local function help()
  local lines = {
    USAGE .. "Makes sure auto-renewal is on for every device of the CSV file (header line",
    "productNo,productId,planOrServiceId, columns in any order; see examples/devices.csv).",
    "",
    "Options:",
    "  --dry-run         only query: report which devices would be enabled, change nothing",
    "  --concurrency N   requests in flight at once, 1..256 (default 8)",
    "  -h, --help        this text",
    "",
    partner.env_help(),
  }
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Progress goes to stderr, the summary to stdout. Exit status: 0 every device is fine,"
  lines[#lines + 1] = "1 at least one device failed, 2 usage (arguments, CSV file, environment)."
  return table.concat(lines, "\n") .. "\n"
end

local function usage_error(message)
  io.stderr:write("ensure_auto_renewal: ", message, "\n", USAGE)
  os.exit(2)
end

-- Arguments.
local dry_run, concurrency, csv_path = false, 8, nil
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--dry-run" then
      dry_run = true
    elseif a == "--concurrency" then
      local n = tonumber(arg[i + 1] or "")
      if not n or n % 1 ~= 0 or n < 1 or n > 256 then usage_error("--concurrency takes a whole number from 1 to 256") end
      concurrency = n
      i = i + 1
    elseif a == "-h" or a == "--help" then
      io.stdout:write(help())
      os.exit(0)
    elseif a:sub(1, 1) == "-" then
      usage_error("unknown option '" .. a .. "'")
    elseif csv_path then
      usage_error("only one CSV file, please")
    else
      csv_path = a
    end
    i = i + 1
  end
  if not csv_path then usage_error("which devices? Give a CSV file") end
end

-- The CSV file. Fields are kept as strings; only their shape is checked here, so that a typo
-- is reported with its line number before anything is sent.
local COLUMNS = { productNo = "^[%w%-]+$", productId = "^%d+$", planOrServiceId = "^%d+$" }

local function split_csv_line(line)
  local fields = {}
  for field in (line .. ","):gmatch("([^,]*),") do
    field = field:match("^%s*(.-)%s*$")
    field = field:match('^"(.*)"$') or field -- a spreadsheet may quote plain values
    fields[#fields + 1] = field
  end
  return fields
end

local function read_devices(path)
  local fh, oerr = io.open(path, "r")
  if not fh then usage_error("cannot read the CSV file: " .. tostring(oerr)) end
  local devices, columns, seen, n = {}, nil, {}, 0
  for line in fh:lines() do
    n = n + 1
    line = line:gsub("\r$", ""):gsub("^\239\187\191", "") -- Windows line ends, UTF-8 BOM
    if not (line:match("^%s*$") or line:match("^%s*#")) then -- blank lines and comments are skipped
      local fields = split_csv_line(line)
      if not columns then
        columns = {}
        for i, name in ipairs(fields) do
          if not COLUMNS[name] then
            usage_error(("%s:%d: unknown column '%s' (the header must be productNo,productId,planOrServiceId)")
              :format(path, n, name))
          end
          columns[i] = name
        end
        for name in pairs(COLUMNS) do
          local found = false
          for _, c in ipairs(columns) do found = found or c == name end
          if not found then usage_error(("%s:%d: the header has no column '%s'"):format(path, n, name)) end
        end
      else
        if #fields ~= #columns then
          usage_error(("%s:%d: %d fields, expected %d"):format(path, n, #fields, #columns))
        end
        local device = {}
        for i, name in ipairs(columns) do
          if not fields[i]:match(COLUMNS[name]) then
            usage_error(("%s:%d: bad %s '%s'"):format(path, n, name, fields[i]))
          end
          device[name] = fields[i]
        end
        if seen[device.productNo] then
          usage_error(("%s:%d: device %s is listed twice (first on line %d)")
            :format(path, n, device.productNo, seen[device.productNo]))
        end
        seen[device.productNo] = n
        devices[#devices + 1] = device
      end
    end
  end
  fh:close()
  if not columns then usage_error(path .. ": empty file (not even the header line)") end
  return devices
end

local devices = read_devices(csv_path)

-- The client, from the environment: a missing or bad variable is a usage error naming it.
local ok, client = pcall(partner.from_env)
if not ok then usage_error(tostring(client)) end
io.stderr:write("ensure_auto_renewal: talking to ", os.getenv("YEASTAR_BASE_URL"),
  " (YEASTAR_BASE_URL; for a rehearsal, see make fake-portal)\n")

-- Progress on stderr. A live line only when stderr is a terminal: in a log file or a pipe,
-- carriage returns make a mess, so there each device gets its own line.
local function stderr_is_terminal()
  local term = os.getenv("TERM")
  if term == nil or term == "" or term == "dumb" then return false end
  local p = io.popen("test -t 2 && echo tty") -- the shell inherits our stderr
  if not p then return false end
  local out = p:read("*a")
  p:close()
  return out:match("tty") ~= nil
end
local live = stderr_is_terminal()

local function describe(device)
  return ("%s (product %s)"):format(device.productNo, device.productId)
end

local function on_progress(done, total, device, outcome, err)
  if live then
    io.stderr:write(("\r[%d/%d] %-12s %s\27[K"):format(done, total, outcome, describe(device)))
    if done == total then io.stderr:write("\n") end
  else
    io.stderr:write(("[%d/%d] %s: %s%s\n"):format(done, total, describe(device), outcome,
      err and (": " .. tostring(err)) or ""))
  end
  io.stderr:flush()
end

io.stderr:write(("%s auto-renewal for %d device%s from %s, %d at a time%s\n"):format(
  dry_run and "Checking" or "Ensuring", #devices, #devices == 1 and "" or "s", csv_path,
  concurrency, dry_run and " (dry run: nothing will be changed)" or ""))

local report = client:ensure_auto_renewal(devices, {
  concurrency = concurrency, dry_run = dry_run, on_progress = on_progress,
})
client:close()

-- The summary, on stdout.
local t = report.totals
print(("Auto-renewal summary: %d device%s%s"):format(report.total, report.total == 1 and "" or "s",
  dry_run and " (dry run: nothing was changed)" or ""))
print(("  %-14s %7s"):format("outcome", "devices"))
for _, outcome in ipairs { "already_on", "enabled", "would_enable", "failed" } do
  print(("  %-14s %7d"):format(outcome, t[outcome]))
end
if t.failed > 0 then
  print()
  print(("Failed devices (%d):"):format(t.failed))
  for _, entry in ipairs(report.devices) do
    if entry.outcome == "failed" then
      print(("  %s: %s"):format(describe(entry.device), tostring(entry.err)))
    end
  end
end
os.exit(t.failed > 0 and 1 or 0)
