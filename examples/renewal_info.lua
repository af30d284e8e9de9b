-- renewal_info.lua: show the renewal terms of a service on a device (seed 003: "Query
-- Information about the Service Available for Renewal"). Read-only: nothing is ordered.
--
-- Usage (from the repository root, after `make`):
--   lua5.4 examples/renewal_info.lua [pricingServiceId [productNo productId]]
-- Defaults: service 27946 (Hotel PMS Integration) on device 3632E0965333, product 11
-- (P-Series Appliance Edition), the example of Yeastar's guide.
--
-- Environment: read by partner.from_env (--help lists every variable). YEASTAR_CLIENT_ID,
-- YEASTAR_CLIENT_SECRET (never printed) and YEASTAR_BASE_URL are required. The first line on
-- stderr names the portal.
--
-- Against the fake portal:
--   make fake-portal       # in one terminal; paste the `export YEASTAR_...` lines it prints
--   lua5.4 examples/renewal_info.lua
-- or: tools/with-fake-portal.sh lua5.4 examples/renewal_info.lua
--
-- Exit status: 0 done, 1 the portal or the network failed (message on stderr), 2 usage.

-- From the repository root the module built for this interpreter (build/<5.x|luajit>/) comes
-- first; once the module is installed this entry finds nothing and the installed copy is used.
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
local partner = require "yeastar.partner"

local USAGE = "usage: lua5.4 examples/renewal_info.lua [pricingServiceId [productNo productId]]\n"

local function usage_error(message)
  io.stderr:write("renewal_info: ", message, "\n", USAGE)
  os.exit(2)
end

if arg[1] == "-h" or arg[1] == "--help" then
  local lines = {
    USAGE .. "Shows the renewal terms of a service on a device. Read-only: nothing is ordered.",
    "",
    "Arguments:",
    "  pricingServiceId  the service (default 27946, Hotel PMS Integration)",
    "  productNo         the device's serial number (default 3632E0965333)",
    "  productId         the device's product (default 11, P-Series Appliance Edition)",
    "  -h, --help        this text",
    "",
    partner.env_help(),
  }
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Exit status: 0 done, 1 the portal or the network failed, 2 usage."
  io.stdout:write(table.concat(lines, "\n"), "\n")
  os.exit(0)
end
if #arg ~= 0 and #arg ~= 1 and #arg ~= 3 then usage_error("give 0, 1 or 3 arguments") end
local service_id = arg[1] or "27946"
local product_no = arg[2] or "3632E0965333"
local product_id = arg[3] or "11"
if not service_id:match("^%d+$") then usage_error("pricingServiceId is a number, got '" .. service_id .. "'") end
if not product_id:match("^%d+$") then usage_error("productId is a number, got '" .. product_id .. "'") end

-- The client, from the environment: a missing or bad variable is a usage error naming it.
local ok, client = pcall(partner.from_env)
if not ok then usage_error(tostring(client)) end
io.stderr:write("renewal_info: talking to ", os.getenv("YEASTAR_BASE_URL"),
  " (YEASTAR_BASE_URL; for a rehearsal, see make fake-portal)\n")
local info, err = client:renewal_service_info {
  pricingServiceId = service_id, productNo = product_no, productId = product_id,
}
client:close()
if not info then
  io.stderr:write("renewal_info: ", tostring(err), "\n")
  os.exit(1)
end

-- JSON null arrives as partner.null (so a present-but-null field is not mistaken for a
-- missing one); both print as "none" here.
local function text(v)
  if v == nil or v == partner.null or v == "" then return "(none)" end
  return tostring(v)
end

local function list(v)
  if type(v) ~= "table" or #v == 0 then return "(none)" end
  local out = {}
  for i, x in ipairs(v) do out[i] = tostring(x) end
  return table.concat(out, ", ")
end

local function show(entry, indent)
  local rows = {
    { "name", text(entry.name) },
    { "serviceId", text(entry.serviceId) },
    { "pricingServiceId", text(entry.pricingServiceId) },
    { "billing cycles", list(entry.billingCycleList) },
    { "billing models", list(entry.billingModelList) },
    { "multi-cycle options", list(entry.purchaseMultiCycleList) },
    { "renewable item", entry.purchaseParameterId == partner.null and "(none)"
      or ("%s (id %s, unit %s)"):format(text(entry.purchaseParameter), text(entry.purchaseParameterId),
        text(entry.unitName)) },
  }
  for _, row in ipairs(rows) do print(("%s%-20s %s"):format(indent, row[1], row[2])) end
end

print(("Renewal terms of service %s on device %s (product %s):"):format(service_id, product_no, product_id))
show(info, "  ")

-- Additional services that can be renewed with it, grouped by billing model and cycle.
local groups = type(info.connectionServiceList) == "table" and info.connectionServiceList or {}
if #groups == 0 then
  print(("  %-20s %s"):format("additional services", "(none)"))
end
for _, group in ipairs(groups) do
  print(("  additional services, %s / %s:"):format(text(group.billingModel), text(group.billingCycle)))
  for _, service in ipairs(type(group.connectionServiceList) == "table" and group.connectionServiceList or {}) do
    show(service, "    ")
    print()
  end
end
