-- renew_remote_management.lua: renew Remote Management (product 15) for one year, as in
-- Yeastar's tutorial "Renew Remote Management Using API" (seed 002).
--
-- By default this is a DRY RUN: it looks up the plan ID and the billing contact, then prints
-- the exact order it would send and sends nothing. Only --commit places the order (real money
-- on the real portal) and prints its orderNo and orderStatus.
--
-- Usage (from the repository root, after `make`):
--   lua5.4 examples/renew_remote_management.lua [--commit] [--po NUMBER] [--billing-id ID]
--     --commit          place the order (without it: dry run, nothing is ordered)
--     --po NUMBER       your purchase-order number, stored with the order; it is also how
--                       the order is found again if the answer to --commit gets lost, and
--                       what makes a re-run safe: with a PO that is already on an order, the
--                       script prints that order and orders nothing
--     --billing-id ID   the billing contact, needed when the account has more than one
--
-- Environment: read by partner.from_env (--help lists every variable). YEASTAR_CLIENT_ID,
-- YEASTAR_CLIENT_SECRET (never printed) and YEASTAR_BASE_URL are required: the base URL has no
-- default, so that which portal gets the order is always a deliberate choice. The first line on
-- stderr names the portal.
--
-- Against the fake portal (nothing there costs money):
--   make fake-portal       # in one terminal; it prints `export YEASTAR_...` lines
--   # paste them into another terminal, then:
--   lua5.4 examples/renew_remote_management.lua
--   lua5.4 examples/renew_remote_management.lua --commit --po PO-2025-0001
-- or in one go: tools/with-fake-portal.sh lua5.4 examples/renew_remote_management.lua
--
-- Exit status: 0 done, 1 the portal or the network failed (message on stderr), 2 usage.

-- From the repository root the module built for this interpreter (build/<5.x|luajit>/) comes
-- first; once the module is installed this entry finds nothing and the installed copy is used.
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
local partner = require "yeastar.partner"

local USAGE = "usage: lua5.4 examples/renew_remote_management.lua [--commit] [--po NUMBER] [--billing-id ID]\n"

local function help()
  local lines = {
    USAGE .. "Renews Remote Management (product 15) for one year. Without --commit: a dry run that",
    "prints the exact order and orders nothing.",
    "",
    "Options:",
    "  --commit          place the order (real money on the live portal)",
    "  --po NUMBER       your purchase-order number, stored with the order; how the order is",
    "                    found again if the answer gets lost, and what makes a re-run safe",
    "  --billing-id ID   the billing contact, needed when the account has more than one",
    "  -h, --help        this text",
    "",
    partner.env_help(),
  }
  lines[#lines + 1] = ""
  lines[#lines + 1] = "Exit status: 0 done, 1 the portal or the network failed, 2 usage."
  return table.concat(lines, "\n") .. "\n"
end

local function usage_error(message)
  io.stderr:write("renew_remote_management: ", message, "\n", USAGE)
  os.exit(2)
end

local function fail(err, advice)
  io.stderr:write("renew_remote_management: ", tostring(err), "\n")
  if advice then io.stderr:write(advice, "\n") end
  os.exit(1)
end

-- Arguments.
local commit, po_number, billing_id = false, nil, nil
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--commit" then
      commit = true
    elseif a == "--po" or a == "--billing-id" then
      local v = arg[i + 1]
      if v == nil or v == "" or v:sub(1, 2) == "--" then usage_error(a .. " needs a value") end
      if a == "--po" then po_number = v else billing_id = v end
      i = i + 1
    elseif a == "-h" or a == "--help" then
      io.stdout:write(help())
      os.exit(0)
    else
      usage_error("unknown argument '" .. a .. "'")
    end
    i = i + 1
  end
  if billing_id and not billing_id:match("^%d+$") then
    usage_error("--billing-id takes the digits of a billingContactId")
  end
end

-- The client, from the environment: a missing or bad variable is a usage error naming it.
local ok, client = pcall(partner.from_env)
if not ok then usage_error(tostring(client)) end
io.stderr:write("renew_remote_management: talking to ", os.getenv("YEASTAR_BASE_URL"),
  " (YEASTAR_BASE_URL; for a rehearsal, see make fake-portal)\n")

local request = {
  billingId = billing_id, -- a decimal string: a 19-digit ID must not pass through a double
  poNumber = po_number,
}

-- Always build the order first: the dry run shows it, --commit sends this very order.
request.dry_run = true
local plan, err = client:renew_remote_management(request)
if not plan then
  if err.code == "billing_contact_required" then
    fail(err, "Choose one with --billing-id.")
  end
  fail(err)
end

-- Once per PO: an order with this PO number exists already (a re-run, or a cron job restarted
-- after a crash), so there is nothing to order.
local function report_existing(order)
  print(("Existing order for PO %s: orderNo %s, orderStatus %s (id %s). Nothing was ordered.")
    :format(po_number, tostring(order.orderNo), tostring(order.orderStatus), tostring(order.id)))
  client:close()
  os.exit(0)
end
if plan.existing then report_existing(plan) end

print((commit and "Placing this" or "This is the") ..
  " Remote Management renewal order (1 year, recurring, billed annually):")
print(plan.method .. " " .. plan.path)
print(plan.body)

if not commit then
  print("Dry run: nothing was ordered. Run again with --commit to place this order.")
  client:close()
  os.exit(0)
end

-- Send exactly the order shown above: reuse the plan and billing contact it was built with
-- rather than looking them up a second time.
request.dry_run = nil
request.planId = plan.order.serviceList[1].serviceId
request.billingId = plan.order.billingId
local started = os.time()
local order
order, err = client:renew_remote_management(request)
if not order then
  if err.kind ~= "ambiguous" then fail(err) end
  -- The order may or may not exist. Sending it again could buy the renewal twice, so look
  -- for it in the order list instead.
  io.stderr:write("renew_remote_management: ", tostring(err), "\n",
    "The answer to the order got lost; looking for it in the order list instead of ordering again...\n")
  local found, ferr
  if po_number then
    found, ferr = client:find_order { poNumber = po_number }
  else
    found, ferr = client:find_order { since = started - 60, productId = 15 }
  end
  if found then
    print(("Order found in the order list: orderNo %s, orderStatus %s (id %s)%s")
      :format(tostring(found.orderNo), tostring(found.orderStatus), tostring(found.id),
        po_number and "" or " -- found by time and product, not by PO number: check it is this one"))
    client:close()
    os.exit(0)
  end
  fail(ferr or "no such order in the order list yet",
    "Do NOT simply run this again: check the orders in the Partner Portal first" ..
    (po_number and (" (PO number " .. po_number .. ").") or ". Next time, pass --po."))
end
if order.existing then report_existing(order) end -- placed meanwhile, by another run

print("Order placed.")
print("orderNo:     " .. tostring(order.orderNo))
print("orderStatus: " .. tostring(order.orderStatus))
print("orderId:     " .. tostring(order.orderId))
client:close()
