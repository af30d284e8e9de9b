-- demo.lua: the renewal story end to end, told step by step, against the fake portal.
--   1. the auto-renewal status of one device;
--   2. the renewal audit: every device of the account, what expires within 30 days and whether
--      auto-renewal covers it, with what `--fix` would enable (a dry run: nothing changes);
--   3. a fleet (examples/devices.csv): the status of each device, then auto-renewal enabled
--      wherever it is off, with a summary;
--   4. a Remote Management renewal: a dry run showing the exact order, then the real order;
--   5. that order found again in the order list, by its PO number.
--
-- Run it with `make demo` (starts a fake portal, runs this, stops the portal), or:
--   tools/with-fake-portal.sh lua5.4 examples/demo.lua
-- or against a running `make fake-portal` after pasting the `export YEASTAR_...` lines it prints:
--   lua5.4 examples/demo.lua
--
-- Environment: read by partner.from_env (--help lists every variable); YEASTAR_CLIENT_ID,
-- YEASTAR_CLIENT_SECRET (never printed) and YEASTAR_BASE_URL are required. Because step 3
-- places an order and step 2 changes devices, the demo refuses any portal that is not on this
-- machine (127.0.0.1, ::1, localhost): it is never a way to spend money by accident.
--
-- Exit status: 0 the story ran, 1 a step failed (message on stderr), 2 usage.

-- From the repository root the module built for this interpreter (build/<5.x|luajit>/) comes
-- first; once the module is installed this entry finds nothing and the installed copy is used.
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
local partner = require "yeastar.partner"

local USAGE = "usage: lua5.4 examples/demo.lua\n"

local function usage_error(message)
  io.stderr:write("demo: ", message, "\n", USAGE)
  os.exit(2)
end

if arg[1] == "-h" or arg[1] == "--help" then
  local lines = {
    USAGE .. "The renewal story end to end against a portal on this machine (`make demo` starts",
    "the fake portal and runs this): one device's auto-renewal status, the renewal audit (what",
    "expires within 30 days unprotected; a dry run of --fix), a fleet from",
    "examples/devices.csv, a Remote Management renewal (dry run, then the order), and that",
    "order found again by its PO number. It takes no arguments.",
    "",
    "Options:",
    "  -h, --help   this text",
    "",
    partner.env_help(),
  }
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Exit status: 0 the story ran, 1 a step failed, 2 usage (or a portal not on this machine)."
  io.stdout:write(table.concat(lines, "\n"), "\n")
  os.exit(0)
end
if arg[1] ~= nil then usage_error("unknown argument '" .. arg[1] .. "'") end

local client -- closed by fail() and at the end

local function fail(what, err)
  io.stderr:write("demo: ", what, " failed: ", tostring(err), "\n")
  if client then client:close() end
  os.exit(1)
end

local function step(n, title)
  print()
  print(("Step %d of 5: %s"):format(n, title))
end

-- The client, from the environment (a missing or bad variable is a usage error naming it);
-- loopback portals only. Making the client sends nothing.
do
  local ok, c = pcall(partner.from_env)
  if not ok then usage_error(tostring(c) .. "; run the demo with `make demo`") end
  local base_url = os.getenv("YEASTAR_BASE_URL")
  io.stderr:write("demo: talking to ", base_url, " (YEASTAR_BASE_URL; `make demo` starts a fake portal)\n")
  local host = base_url:match("^%a+://%[([^%]]+)%]") or base_url:match("^%a+://([^/:?#]+)")
  if host ~= "127.0.0.1" and host ~= "localhost" and host ~= "::1" then
    c:close()
    usage_error("the demo places an order, so it only talks to a portal on this machine, not " ..
      base_url .. "; run it with `make demo`")
  end
  client = c
  print(("yeastar.partner %s, talking to the portal at %s"):format(partner._VERSION, base_url))
end

local function onoff(on) return on and "ON" or "OFF" end

local function describe(device)
  return ("%s (product %s)"):format(device.productNo, tostring(device.productId))
end

-- examples/devices.csv, found beside this script. The format is the one
-- examples/ensure_auto_renewal.lua reads; this reader is the short version of that one.
local function read_devices()
  local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
  local path = dir .. "/devices.csv"
  local fh, err = io.open(path, "r")
  if not fh then fail("reading the device list", err) end
  local devices, header = {}, nil
  for line in fh:lines() do
    line = line:gsub("\r$", "")
    if not (line:match("^%s*$") or line:match("^%s*#")) then
      local fields = {}
      for f in (line .. ","):gmatch("%s*([^,]-)%s*,") do fields[#fields + 1] = f end
      if not header then
        header = fields
      else
        local d = {}
        for i, name in ipairs(header) do d[name] = fields[i] end
        devices[#devices + 1] = d
      end
    end
  end
  fh:close()
  return devices, path
end

------------------------------------------------------------------------------------------
step(1, "is auto-renewal on for one device?")
local SEED_DEVICE = { productNo = "3651E0529415", productId = 12 }
print(("Asking the portal about %s..."):format(describe(SEED_DEVICE)))
local status, err = client:auto_renewal_status(SEED_DEVICE)
if not status then fail("querying the auto-renewal status", err) end
print(("%s: auto-renewal is %s"):format(describe(SEED_DEVICE), onoff(status.autoRenew)))

------------------------------------------------------------------------------------------
step(2, "the renewal audit: what expires within 30 days, and is auto-renewal on?")
-- The same report as `bin/yeastar-partner audit --within 30 --fix` (the CLI's dry run).
print("Walking every product's device list, then each device's details and auto-renewal status...")
local audit = client:renewal_audit { within_days = 30, concurrency = 8, fix = true }
local ROW = "  %-20s %-9s %-26s %-10s %9s %-10s %s"
print(ROW:format("productNo", "productId", "plan", "expiry", "days left", "auto-renew", "verdict"))
for _, row in ipairs(audit.devices) do
  local verdict = row.verdict
  if row.fix == "would_enable" then verdict = verdict .. " (--fix would enable auto-renewal)" end
  if row.err then verdict = verdict .. " (" .. tostring(row.err.message) .. ")" end
  print(ROW:format(tostring(row.productNo), tostring(row.productId), tostring(row.plan or "?"),
    row.expiry or "?", row.days_left and tostring(row.days_left) or "?",
    row.auto_renew == nil and "?" or onoff(row.auto_renew), verdict))
end
local v = audit.totals
print(("Summary on %s: %d devices: %d ok, %d expiring unprotected, %d expired, %d unknown."):format(
  audit.today, audit.total, v.ok, v.expiring_unprotected, v.expired, v.unknown))
for _, gap in ipairs(audit.incomplete) do
  fail("walking the device lists", gap.err)
end
if v.unknown > 0 then
  print("  (unknown: a device whose details carry no expiry date; the fake portal seeds one on purpose)")
end

------------------------------------------------------------------------------------------
step(3, "a whole fleet: check every device, enable auto-renewal where it is off")
local devices, path = read_devices()
print(("%d devices listed in %s. Their status now (8 requests in flight at a time):"):format(#devices, path))

local function print_statuses()
  local queries = {}
  for i, d in ipairs(devices) do queries[i] = { productNo = d.productNo, productId = d.productId } end
  local results = client:batch("auto_renewal_status", queries, { concurrency = 8 })
  for i, r in ipairs(results) do
    if r.result then
      print(("  %s: auto-renewal is %s"):format(describe(devices[i]), onoff(r.result.autoRenew)))
    else
      print(("  %s: could not check: %s"):format(describe(devices[i]), tostring(r.err)))
    end
  end
end
print_statuses()

print("Enabling auto-renewal where it is off (ensure_auto_renewal)...")
local report = client:ensure_auto_renewal(devices, { concurrency = 8 })
local t = report.totals
print(("Summary: %d devices: %d already on, %d enabled now, %d failed."):format(
  report.total, t.already_on, t.enabled, t.failed))
local unexpected = 0
for _, entry in ipairs(report.devices) do
  if entry.outcome == "failed" then
    print(("  %s failed: %s"):format(describe(entry.device), tostring(entry.err)))
    -- devices.csv lists one serial the portal does not know, to show a per-device failure;
    -- anything else going wrong means the demo itself is broken.
    if entry.err.code ~= "product_not_found" then unexpected = unexpected + 1 end
  end
end
if t.failed > 0 then
  print("  (a device the portal does not know is expected: devices.csv includes one on purpose;")
  print("   one device failing never stops the others)")
end
if unexpected > 0 then fail("enabling auto-renewal", ("%d device(s) failed unexpectedly"):format(unexpected)) end
print("The fleet again, after the change:")
print_statuses()

------------------------------------------------------------------------------------------
step(4, "renew Remote Management for a year")
-- A PO number of our own: if the answer to the order ever got lost, this is how we would
-- find the order again instead of ordering a second time (step 5 does exactly that search).
local po_number = ("demo-%d-%04d"):format(os.time(), math.random(0, 9999))
print(("First a dry run with PO number %s. Nothing is sent; this is the exact order:"):format(po_number))
local plan
plan, err = client:renew_remote_management { poNumber = po_number, dry_run = true }
if not plan then fail("preparing the renewal order", err) end
print("  " .. plan.method .. " " .. plan.path)
print("  " .. plan.body)

print("Now the real order (the same plan and billing contact as the dry run)...")
local order
order, err = client:renew_remote_management {
  poNumber = po_number,
  planId = plan.order.serviceList[1].serviceId,
  billingId = plan.order.billingId,
}
if not order then
  if err.kind == "ambiguous" then
    fail("placing the order", tostring(err) .. "\n(do not order again: look for PO number " ..
      po_number .. " in the order list first)")
  end
  fail("placing the order", err)
end
print(("Ordered: orderNo %s, status %s (orderId %s)."):format(
  tostring(order.orderNo), tostring(order.orderStatus), tostring(order.orderId)))

------------------------------------------------------------------------------------------
step(5, "find that order again in the order list")
print(("Looking for PO number %s, newest orders first..."):format(po_number))
local found
found, err = client:find_order { poNumber = po_number }
if found == nil then fail("searching the order list", err) end
if not found then fail("searching the order list", "no order with PO number " .. po_number) end
if found.orderNo ~= order.orderNo then
  fail("searching the order list", ("PO number %s belongs to order %s, not %s")
    :format(po_number, tostring(found.orderNo), tostring(order.orderNo)))
end
local created = tonumber(found.createTime)
print(("Found it: orderNo %s, status %s, PO number %s%s."):format(
  tostring(found.orderNo), tostring(found.orderStatus), tostring(found.customReferenceNo),
  created and (", created " .. os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(created / 1000))) or ""))

client:close()
print()
print("Done: every step of the renewal story worked.")
