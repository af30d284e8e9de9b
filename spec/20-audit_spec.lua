-- spec/20-audit_spec.lua: client:renewal_audit on the wire against the fake portal: every page walked,
-- the concurrency bound, each seeded verdict, the fix (dry and real), faults, odd records, and option errors.
local helpers = require "spec.helpers"
local nginx = require "spec.nginx"

local CATALOGUE_PATH = "/pricing/openapi/purchase/v1/product_list"
local LIST_PATH = "/product/openapi/instance_product/v1/client/instance_product_list"
local DETAILS_PATH = "/product/openapi/instance_product/v1/detail"
local STATUS_PATH = helpers.STATUS_PATH
local ENABLE_PATH = "/product/openapi/instance_subscription/v1/active"
local count = helpers.count

-- The seed devices as the audit must see them (portal.py SEED_DEVICES), in list order: the
-- catalogue's products in order, each list in the portal's order. {productNo, productId, product,
-- plan, planId, days from the portal's today, auto_renew, verdict}
local SEEDED = {
  { "3632E0965333", 11, "P-Series Plan for Appliance Edition", "Enterprise Plan", "3048560232537899008",
    20, false, "expiring_unprotected" },
  { "3632E0965334", 11, "P-Series Plan for Appliance Edition", "Standard Plan", "3048558946648207360",
    30, false, "expiring_unprotected" },
  { "3651E0529415", 12, "P-Series Software Edition", "Enterprise Plan", "3049040650094403584", 12, true, "ok" },
  { "3651E0529416", 12, "P-Series Software Edition", "Enterprise Plan", "3049040650094403584", 200, false, "ok" },
  { "1369A2021101", 13, "P-Series Cloud Edition", "Enterprise Plan", "3048571730026938368", nil, true, "unknown" },
  { "3076913644890832896", 15, "Remote Management", "Remote Management Account", "3049036224189325312",
    -5, false, "expired" },
}

-- date + n days, through os.time/os.date (local noon, so no DST shift crosses a day): a check of
-- the module's own calendar arithmetic by other means.
local function add_days(date, n)
  local y, m, d = date:match("^(%d+)-(%d+)-(%d+)$")
  return os.date("%Y-%m-%d", os.time { year = tonumber(y), month = tonumber(m), day = tonumber(d) + n, hour = 12 })
end

-- A success envelope around a result's JSON text, for body faults.
local function envelope(result)
  return '{"code":"success","detailMessage":"","requestId":"r1","result":' .. result .. ',"status":200}'
end

local function sequence(portal)
  local out = {}
  for _, r in ipairs(portal:requests()) do out[#out + 1] = r.method .. " " .. r.path end
  return out
end

local function add_devices(portal, devices)
  return portal:_control("POST", "/_control/devices", { devices = devices }).devices
end

local function verdicts(report)
  local out = {}
  for i, row in ipairs(report.devices) do
    out[i] = tostring(row.productNo) .. " " .. row.verdict
      .. (row.err and (" " .. tostring(row.err.kind) .. "/" .. tostring(row.err.code)) or "")
  end
  return out
end

describe("renewal_audit", function()
  local portal, today
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function()
    portal:reset()
    today = portal:state().today -- the portal's dates count from it: never from our clock
  end)

  describe("on the seed devices", function()
    it("gives each its verdict, days left, plan and auto-renewal, in list order", function()
      local c = helpers.client(portal)
      local report = c:renewal_audit { today = today }
      assert.equal(today, report.today)
      assert.equal(30, report.within_days)
      assert.equal(#SEEDED, report.total)
      assert.equal(#SEEDED, #report.devices)
      for i, want in ipairs(SEEDED) do
        local row = report.devices[i]
        local sn = want[1]
        assert.equal(sn, row.productNo)
        assert.equal(want[2], row.productId, sn)
        assert.equal(want[3], row.product, sn)
        assert.equal(want[4], row.plan, sn)
        assert.equal(want[5], tostring(row.planId), sn)
        assert.equal(want[6], row.days_left, sn)
        assert.equal(want[6] and add_days(today, want[6]), row.expiry, sn)
        assert.equal(want[7], row.auto_renew, sn)
        assert.equal(want[8], row.verdict, sn)
        assert.is_nil(row.fix, sn)
        if helpers.INTEGERS and row.days_left then assert.equal("integer", math.type(row.days_left)) end
      end
      -- the device without currentPlanExpireDate: unknown, a decode error saying so
      local unknown = report.devices[5]
      assert.same({ "decode", "no_expiry", "product_details" },
        { unknown.err.kind, unknown.err.code, unknown.err.endpoint })
      assert.equal("the details of 1369A2021101 carry no currentPlanExpireDate", unknown.err.message)
      for i = 1, 6 do
        if i ~= 5 then assert.is_nil(report.devices[i].err) end
      end
      assert.same({ ok = 2, expiring_unprotected = 2, expired = 1, unknown = 1 }, report.totals)
      assert.same({}, report.incomplete)
      assert.is_nil(report.fixes)
      -- One catalogue, one page per product (8), and two reads per device; nothing else.
      assert.equal(1, count(portal, CATALOGUE_PATH))
      assert.equal(8, count(portal, LIST_PATH))
      assert.equal(6, count(portal, DETAILS_PATH))
      assert.equal(6, count(portal, STATUS_PATH))
      assert.equal(1 + 1 + 8 + 12, #portal:requests())
    end)

    it("moves the boundary with within_days (inclusive)", function()
      local c = helpers.client(portal)
      local function verdict_of(within)
        local out = {}
        for _, row in ipairs(c:renewal_audit { today = today, within_days = within }.devices) do
          out[row.productNo] = row.verdict
        end
        return out
      end
      local v = verdict_of(19)
      assert.same({ "ok", "ok" }, { v["3632E0965333"], v["3632E0965334"] })
      v = verdict_of(20)
      assert.same({ "expiring_unprotected", "ok" }, { v["3632E0965333"], v["3632E0965334"] })
      v = verdict_of(0)
      assert.same({ "ok", "ok", "expired" }, { v["3632E0965333"], v["3651E0529416"], v["3076913644890832896"] })
      v = verdict_of(3650)
      assert.equal("expiring_unprotected", v["3651E0529416"]) -- 200 days, auto-renewal off
      assert.equal("ok", v["3651E0529415"])                   -- 12 days, auto-renewal on
    end)

    it("counts from today's UTC date by default", function()
      local before = os.date("!%Y-%m-%d")
      local report = helpers.client(portal):renewal_audit { productIds = { 15 } }
      local after = os.date("!%Y-%m-%d")
      assert.truthy(report.today == before or report.today == after, report.today)
      assert.equal(1, report.total)
    end)

    it("reports progress once per device, with its row", function()
      local seen = {}
      local report = helpers.client(portal):renewal_audit { today = today,
        on_progress = function(done, total, row)
          assert.equal(#seen + 1, done)
          assert.equal(6, total)
          assert.truthy(row.verdict)
          seen[#seen + 1] = row.productNo
        end }
      assert.equal(6, #seen)
      for _, row in ipairs(report.devices) do
        local n = 0
        for _, sn in ipairs(seen) do if sn == row.productNo then n = n + 1 end end
        assert.equal(1, n, row.productNo)
      end
    end)
  end)

  describe("on the wire", function()
    it("walks every page of every product given, and audits every device once", function()
      local fleet = portal:fleet { count = 60, product_id = 12, fail_every = 20 }
      local c = helpers.client(portal)
      local report = c:renewal_audit { productIds = { 12, "11" }, today = today }
      local pages = {}
      for _, r in ipairs(portal:requests()) do
        if r.path == LIST_PATH then pages[#pages + 1] = r.query end
      end
      -- 62 devices of product 12, 25 a page: three pages; then product 11's one page
      assert.same({ "productId=12&pageNo=1", "productId=12&pageNo=2", "productId=12&pageNo=3",
                    "productId=11&pageNo=1" }, pages)
      assert.equal(64, report.total)
      assert.equal("3651E0529415", report.devices[1].productNo)
      assert.equal("3651E0529416", report.devices[2].productNo)
      for i, d in ipairs(fleet) do
        local row = report.devices[2 + i]
        assert.equal(d.productNo, row.productNo)
        assert.equal(12, row.productId)
        if i % 20 == 0 then -- transferred away: the portal refuses it
          assert.equal("unknown", row.verdict)
          assert.same({ "api", "product_not_found" }, { row.err.kind, row.err.code })
        else
          assert.equal("ok", row.verdict, row.productNo) -- a year away (the default expiry)
          assert.equal(365, row.days_left)
        end
      end
      assert.equal("3632E0965333", report.devices[63].productNo)
      assert.equal("11", report.devices[63].productId) -- as given
      assert.same({ ok = 59, expiring_unprotected = 2, expired = 0, unknown = 3 }, report.totals)
      assert.equal(64, count(portal, DETAILS_PATH))
      assert.equal(64, count(portal, STATUS_PATH))
    end)

    it("keeps at most `concurrency` requests in flight", function()
      portal:config { latency_ms = 10 }
      portal:fleet { count = 40, product_id = 12 }
      local report = helpers.client(portal):renewal_audit { productIds = { 12 }, concurrency = 4, today = today }
      assert.equal(42, report.total)
      local stats = portal:stats()
      assert.is_true(stats.max_in_flight <= 4, "max in flight " .. stats.max_in_flight)
      assert.is_true(stats.max_in_flight >= 2, "no concurrency at all")

      portal:reset()
      portal:fleet { count = 10, product_id = 12 }
      helpers.client(portal):renewal_audit { productIds = { 12 }, concurrency = 1, today = today }
      assert.equal(1, portal:stats().max_in_flight)
    end)
  end)

  describe("fix", function()
    it("is a dry run by default: what it would enable, and no POST at all", function()
      local report = helpers.client(portal):renewal_audit { today = today, fix = true }
      assert.same({ would_enable = 2, enabled = 0, failed = 0 }, report.fixes)
      local fixes = {}
      for _, row in ipairs(report.devices) do
        fixes[#fixes + 1] = row.productNo .. " " .. tostring(row.fix)
      end
      assert.same({ "3632E0965333 would_enable", "3632E0965334 would_enable", "3651E0529415 nil",
                    "3651E0529416 nil", "1369A2021101 nil", "3076913644890832896 nil" }, fixes)
      for _, line in ipairs(sequence(portal)) do
        assert.truthy(line:find("^GET ") or line == "POST " .. helpers.TOKEN_PATH, line)
      end
      assert.equal(0, count(portal, ENABLE_PATH))
      assert.is_false(portal:state().devices["3632E0965333"].autoRenew)
    end)

    it("with dry_run = false enables exactly the unprotected ones; a second audit finds them ok", function()
      local c = helpers.client(portal)
      local report = c:renewal_audit { today = today, fix = true, dry_run = false }
      assert.same({ would_enable = 0, enabled = 2, failed = 0 }, report.fixes)
      assert.same({ "enabled", "enabled" }, { report.devices[1].fix, report.devices[2].fix })
      local bodies = {}
      for _, r in ipairs(portal:requests()) do
        if r.path == ENABLE_PATH then bodies[#bodies + 1] = r.body end
      end
      table.sort(bodies)
      assert.same({
        '{"productNo":"3632E0965333","productId":"11","planOrServiceId":3048560232537899008}',
        '{"productNo":"3632E0965334","productId":"11","planOrServiceId":3048558946648207360}',
      }, bodies)
      local state = portal:state().devices
      assert.same({ true, true, false, false }, { state["3632E0965333"].autoRenew, state["3632E0965334"].autoRenew,
        state["3651E0529416"].autoRenew, state["3076913644890832896"].autoRenew })

      local again = c:renewal_audit { today = today, fix = true, dry_run = false }
      assert.same({ ok = 4, expiring_unprotected = 0, expired = 1, unknown = 1 }, again.totals)
      assert.same({ would_enable = 0, enabled = 0, failed = 0 }, again.fixes)
      assert.equal(2, count(portal, ENABLE_PATH)) -- none more
    end)

    it("fails a device without a plan ID unsent (dry or not), and one the portal refuses", function()
      -- The first device's details lose their planId; the second one's enable is refused.
      local function run(dry_run)
        portal:reset()
        portal:fault { match = { path = DETAILS_PATH }, body = envelope(
          '{"currentPlanExpireDate":"' .. add_days(today, 5) .. '","planName":"Enterprise Plan"}') }
        portal:fault { match = { path = ENABLE_PATH }, status = 404, code = "plan_not_found" }
        return helpers.client(portal, { max_retries = 0 }):renewal_audit { productIds = { 11 }, today = today,
          concurrency = 1, fix = true, dry_run = dry_run }
      end
      local dry = run(true)
      assert.same({ would_enable = 1, enabled = 0, failed = 1 }, dry.fixes)
      assert.same({ "failed", "would_enable" }, { dry.devices[1].fix, dry.devices[2].fix })
      assert.same({ "decode", "no_plan_id" }, { dry.devices[1].fix_err.kind, dry.devices[1].fix_err.code })
      assert.equal(0, count(portal, ENABLE_PATH))

      local real = run(false)
      assert.equal("expiring_unprotected", real.devices[1].verdict)
      assert.is_nil(real.devices[1].planId)
      assert.equal("Enterprise Plan", real.devices[1].plan)
      assert.same({ would_enable = 0, enabled = 0, failed = 2 }, real.fixes)
      assert.same({ "decode", "no_plan_id" }, { real.devices[1].fix_err.kind, real.devices[1].fix_err.code })
      assert.same({ "api", "plan_not_found" }, { real.devices[2].fix_err.kind, real.devices[2].fix_err.code })
      assert.equal(1, count(portal, ENABLE_PATH)) -- only the device with a plan ID was sent
    end)
  end)

  describe("failures", function()
    it("makes a device unknown when its details or status call fails, with the error", function()
      local cases = {
        { DETAILS_PATH, { status = 500 }, "api", "internal_error" },
        { DETAILS_PATH, { body = "not json" }, "decode", "invalid_json" },
        { DETAILS_PATH, { html = "<p>bad gateway</p>" }, "http", "http_error" },
        { DETAILS_PATH, { truncate = true }, "network", "connection_lost" },
        { STATUS_PATH, { status = 404, code = "product_not_found" }, "api", "product_not_found" },
        { STATUS_PATH, { body = envelope("[]") }, "decode", "bad_auto_renew" },
      }
      for _, case in ipairs(cases) do
        portal:reset()
        local fault = case[2]
        fault.match = { path = case[1] }
        portal:fault(fault)
        local report = helpers.client(portal, { max_retries = 0 }):renewal_audit {
          productIds = { 11 }, today = today, concurrency = 1 }
        local first, second = report.devices[1], report.devices[2]
        local what = case[1] .. " " .. case[4]
        assert.equal("unknown", first.verdict, what)
        assert.same({ case[3], case[4] }, { first.err.kind, first.err.code }, what)
        assert.equal("expiring_unprotected", second.verdict, what) -- the fault hit one device only
        if case[1] == STATUS_PATH then -- what the details said is still reported
          assert.equal(add_days(today, 20), first.expiry, what)
          assert.equal(20, first.days_left, what)
          assert.is_nil(first.auto_renew, what)
        else
          assert.is_nil(first.expiry, what)
          assert.is_false(first.auto_renew, what)
        end
        assert.same({ ok = 0, expiring_unprotected = 1, expired = 0, unknown = 1 }, report.totals)
      end
    end)

    it("reports a product whose list fails part way as incomplete, and audits what it read", function()
      portal:fleet { count = 60, product_id = 12 }
      -- The first page of product 12 comes through (a fault with nothing but a zero delay sends the
      -- real answer); the second is refused.
      portal:fault { match = { path = LIST_PATH }, delay = 0 }
      portal:fault { match = { path = LIST_PATH }, status = 400, code = "parameter_validation_failed" }
      local report = helpers.client(portal):renewal_audit { productIds = { 12, 15 }, today = today }
      assert.equal(1, #report.incomplete)
      assert.equal(12, report.incomplete[1].productId)
      assert.same({ "api", "parameter_validation_failed" },
        { report.incomplete[1].err.kind, report.incomplete[1].err.code })
      assert.equal(26, report.total) -- page 1 of product 12, and product 15's device
      assert.equal("3076913644890832896", report.devices[26].productNo)
      assert.equal(26, count(portal, DETAILS_PATH))
    end)

    it("reports an unreadable catalogue as incomplete, with no product to name", function()
      portal:fault { match = { path = CATALOGUE_PATH }, status = 400, code = "parameter_validation_failed" }
      local report = helpers.client(portal):renewal_audit { today = today }
      assert.equal(0, report.total)
      assert.equal(1, #report.incomplete)
      assert.is_nil(report.incomplete[1].productId)
      assert.equal("parameter_validation_failed", report.incomplete[1].err.code)
      assert.equal(0, count(portal, LIST_PATH))
      -- Given products, the catalogue only names them: its failure costs the names, nothing else.
      portal:fault { match = { path = CATALOGUE_PATH }, status = 400, code = "parameter_validation_failed" }
      report = helpers.client(portal):renewal_audit { productIds = { 15 }, today = today }
      assert.same({}, report.incomplete)
      assert.equal("expired", report.devices[1].verdict)
      assert.is_nil(report.devices[1].product)
    end)

    it("raises on bad options before any request", function()
      local c = helpers.client(portal)
      local cases = {
        { { within_days = -1 }, "renewal_audit: option 'within_days' must be an integer from 0 to 3650" },
        { { within_days = 3651 }, "renewal_audit: option 'within_days' must be an integer from 0 to 3650" },
        { { within_days = 1.5 }, "renewal_audit: option 'within_days' must be an integer from 0 to 3650" },
        { { within_days = "30" }, "renewal_audit: option 'within_days' must be a number (got string)" },
        { { concurrency = 0 }, "renewal_audit: option 'concurrency' must be an integer from 1 to 256" },
        { { concurrency = 257 }, "renewal_audit: option 'concurrency' must be an integer from 1 to 256" },
        { { today = "2026-02-29" }, "renewal_audit: option 'today' must be a date YYYY-MM-DD (got \"2026-02-29\")" },
        { { today = "2026-1-1" }, "renewal_audit: option 'today' must be a date YYYY-MM-DD (got \"2026-1-1\")" },
        { { today = "2026-01-01T00:00" },
          "renewal_audit: option 'today' must be a date YYYY-MM-DD (got \"2026-01-01T00:00\")" },
        { { today = 20260101 }, "renewal_audit: option 'today' must be a string (got number)" },
        { { productIds = 12 }, "renewal_audit: option 'productIds' must be a table (got number)" },
        { { productIds = { 12, "abc" } },
          "renewal_audit: option 'productIds' item 2 must be an integer or a decimal string (got \"abc\")" },
        { { productIds = { 12.5 } },
          "renewal_audit: option 'productIds' item 1 must be an integer or a decimal string (got number)" },
        { { productIds = { 12, nil, 13 } }, "renewal_audit: option 'productIds' must be a list" },
        { { productIds = { id = 12 } }, "renewal_audit: option 'productIds' must be a list" },
        { { fix = "yes" }, "renewal_audit: option 'fix' must be a boolean (got string)" },
        { { dry_run = 0 }, "renewal_audit: option 'dry_run' must be a boolean (got number)" },
        { { on_progress = true }, "renewal_audit: option 'on_progress' must be a function (got boolean)" },
        { { withindays = 30 }, "renewal_audit: unknown option 'withindays'" },
      }
      for _, case in ipairs(cases) do
        assert.has_error(function() c:renewal_audit(case[1]) end, case[2])
      end
      assert.has_error(function() c:renewal_audit("30") end, "renewal_audit: options must be a table (got string)")
      c:close()
      assert.has_error(function() c:renewal_audit() end, "yeastar.partner: the client is closed")
      assert.equal(0, #portal:requests())
    end)
  end)

  describe("reads the server's records as untrusted", function()
    it("audits odd list records as unknown, and a device listed twice once", function()
      local long = ("A"):rep(65)
      portal:fault { match = { path = LIST_PATH }, body = envelope('{"count":9,"pageNo":1,"pageSize":25,'
        .. '"results":[{"productNo":5},"x",{"productNo":"ok\\nbad"},{"productNo":"3651E0529415"},'
        .. '{"productNo":"3651E0529415"},{"productNo":"NOPE1"},{"productNo":"' .. long .. '"},null,'
        .. '{"productNo":"a b"},{}],"total":9,"totalPage":1}') }
      local report = helpers.client(portal):renewal_audit { productIds = { 12 }, today = today }
      assert.same({ "nil unknown decode/bad_record", "nil unknown decode/bad_record",
                    "nil unknown decode/bad_record", "3651E0529415 ok", "NOPE1 unknown api/product_not_found",
                    "nil unknown decode/bad_record", "nil unknown decode/bad_record",
                    "nil unknown decode/bad_record", "nil unknown decode/bad_record" }, verdicts(report))
      assert.equal(9, report.total)
      assert.equal(2, count(portal, DETAILS_PATH)) -- the odd records are never sent
      assert.equal(1, count(portal, LIST_PATH))
    end)

    it("reads expiry dates by the calendar, a time after the date allowed, and refuses the rest", function()
      -- Device 3076913644890832896 (auto-renewal off), today 2027-01-30.
      local cases = {
        { '"2027-01-31T23:59:59Z"', "expiring_unprotected", 1, "2027-01-31" },
        { '"2027-01-31 00:00:00"', "expiring_unprotected", 1, "2027-01-31" },
        { '"2027-01-29"', "expired", -1, "2027-01-29" },
        { '"2027-03-01"', "expiring_unprotected", 30, "2027-03-01" },
        { '"2027-03-02"', "ok", 31, "2027-03-02" },
        { '"2027-02-30"', "bad_expiry" },
        { '"2027-1-31"', "bad_expiry" },
        { '"31/01/2027"', "bad_expiry" },
        { '"2027-01-31X"', "bad_expiry" },
        { '"2027-01-31T"', "bad_expiry" },
        { '"2027-01-31T00:00' .. (" "):rep(60) .. '"', "bad_expiry" },
        { '""', "bad_expiry" },
        { "20270131", "bad_expiry" },
        { "true", "bad_expiry" },
        { "null", "no_expiry" },
      }
      local c = helpers.client(portal)
      for _, case in ipairs(cases) do
        portal:fault { match = { path = DETAILS_PATH },
          body = envelope('{"currentPlanExpireDate":' .. case[1] .. ',"planId":3049036224189325312}') }
        local row = c:renewal_audit { productIds = { 15 }, today = "2027-01-30" }.devices[1]
        if case[3] then
          assert.same({ case[2], case[3], case[4] }, { row.verdict, row.days_left, row.expiry }, case[1])
        else
          assert.same({ "unknown", "decode", case[2] }, { row.verdict, row.err.kind, row.err.code }, case[1])
          assert.is_nil(row.expiry, case[1])
          assert.is_nil(row.days_left, case[1])
        end
        assert.is_false(row.auto_renew)
      end
      -- details that are no object at all
      for _, result in ipairs { '"x"', "[]", "42" } do
        portal:fault { match = { path = DETAILS_PATH }, body = envelope(result) }
        local row = c:renewal_audit { productIds = { 15 }, today = "2027-01-30" }.devices[1]
        assert.same({ "unknown", "no_expiry" }, { row.verdict, row.err.code }, result)
      end
    end)

    it("keeps only plan IDs that are IDs and plan names fit for a report", function()
      local cases = {
        { '"planId":"3049036224189325312","planName":"Remote Management Account"',
          "3049036224189325312", "Remote Management Account" },
        { '"planId":1.5,"planName":"Plan\\n1"', nil, nil },
        { '"planId":"abc","planName":"' .. ("p"):rep(201) .. '"', nil, nil },
        { '"planId":-3,"planName":7', nil, nil },
        { '"planId":true,"planName":""', nil, nil },
        { '"planId":"123456789012345678901"', nil, nil },
        { '"planId":42,"planName":"' .. ("p"):rep(200) .. '"', "42", ("p"):rep(200) },
      }
      local c = helpers.client(portal)
      for _, case in ipairs(cases) do
        portal:fault { match = { path = DETAILS_PATH },
          body = envelope('{"currentPlanExpireDate":"2027-02-01",' .. case[1] .. '}') }
        local row = c:renewal_audit { productIds = { 15 }, today = "2027-01-30" }.devices[1]
        assert.equal(case[2], row.planId ~= nil and tostring(row.planId) or nil, case[1])
        assert.equal(case[3], row.plan, case[1])
        assert.equal("expiring_unprotected", row.verdict, case[1])
      end
    end)

    it("counts days across months, leap years and centuries", function()
      local spans = { -- expiry, days from 2028-02-28, verdict within 30 with auto-renewal off
        { "2028-02-28", 0, "expiring_unprotected" }, { "2028-02-29", 1, "expiring_unprotected" },
        { "2028-03-01", 2, "expiring_unprotected" }, { "2028-03-29", 30, "expiring_unprotected" },
        { "2028-03-30", 31, "ok" }, { "2028-02-27", -1, "expired" }, { "2029-02-28", 366, "ok" },
        { "1999-12-31", -10286, "expired" }, { "2100-03-01", 26299, "ok" },
      }
      local devices = {}
      for i, s in ipairs(spans) do
        devices[i] = { productNo = "CAL" .. i, productId = 14, planId = "42", autoRenew = false, expiry = s[1] }
      end
      add_devices(portal, devices)
      local report = helpers.client(portal):renewal_audit { productIds = { 14 }, today = "2028-02-28" }
      assert.equal(#spans, report.total)
      for i, s in ipairs(spans) do
        local row = report.devices[i]
        assert.same({ "CAL" .. i, s[1], s[2], s[3] }, { row.productNo, row.expiry, row.days_left, row.verdict })
        assert.is_nil(row.plan) -- plan 42 is not in the catalogue: the portal gives no name
      end
    end)
  end)

  describe("the fake portal's expiries", function()
    it("are relative to the portal's today: +N, -N, none and the default", function()
      add_devices(portal, {
        { productNo = "REL1", productId = 19, planId = "42", autoRenew = false, expiry = "+3" },
        { productNo = "REL2", productId = 19, planId = "42", autoRenew = false, expiry = "-1" },
        { productNo = "REL3", productId = 19, planId = "42", autoRenew = true, expiry = "none" },
        { productNo = "REL4", productId = 19, planId = "42", autoRenew = false, expiry = "" },
        { productNo = "REL5", productId = 19, planId = "42", autoRenew = false, expiry = "+0" },
      })
      local state = portal:state().devices
      assert.same({ add_days(today, 3), add_days(today, -1), add_days(today, 365), today },
        { state.REL1.expiry, state.REL2.expiry, state.REL4.expiry, state.REL5.expiry })
      assert.is_nil(state.REL3.expiry)
      for i, want in ipairs(SEEDED) do
        assert.equal(want[6] and add_days(today, want[6]), state[want[1]].expiry, want[1])
      end
      local report = helpers.client(portal):renewal_audit { productIds = { 19 }, today = today }
      assert.same({ "REL1 expiring_unprotected", "REL2 expired", "REL3 unknown decode/no_expiry", "REL4 ok",
                    "REL5 expiring_unprotected" }, verdicts(report))
      assert.same({ 3, -1, nil, 365, 0 }, { report.devices[1].days_left, report.devices[2].days_left,
        report.devices[3].days_left, report.devices[4].days_left, report.devices[5].days_left })
      assert.has_error(function()
        add_devices(portal, { { productNo = "BAD", productId = 19, planId = "42", autoRenew = false, expiry = "+x" } })
      end)
    end)
  end)
end)

-- Inside nginx the workflow runs on the cosocket driver: batches on light threads. The report and
-- the portal's end state must be those of the libcurl driver. YEASTAR_NGINX_CPATH points nginx at
-- another LuaJIT build than build/luajit (a private one).
describe("renewal_audit in nginx (cosocket driver) #nginx", function()
  local available, why_not = nginx.available()
  if not available then
    pending("nginx not installed: " .. why_not)
    return
  end
  local cpath = os.getenv("YEASTAR_NGINX_CPATH")
  local partner = require "yeastar.partner"

  -- The report as plain text lines, the same on both sides.
  local REDUCE = [[
    local function reduce(report)
      local out = { report.today, tostring(report.total), tostring(#report.incomplete) }
      for k, v in pairs(report.totals) do out[#out + 1] = k .. "=" .. v end
      for k, v in pairs(report.fixes or {}) do out[#out + 1] = "fix " .. k .. "=" .. v end
      for _, row in ipairs(report.devices) do
        out[#out + 1] = table.concat({ tostring(row.productNo), tostring(row.productId), tostring(row.product),
          tostring(row.plan), (tostring(row.planId):gsub("U?LL$", "")), tostring(row.expiry),
          tostring(row.days_left), tostring(row.auto_renew), row.verdict, tostring(row.fix),
          row.err and row.err.kind .. "/" .. row.err.code or "-" }, " ")
      end
      table.sort(out, function(a, b) return tostring(a) < tostring(b) end)
      return out
    end
  ]]

  local portal, server
  lazy_setup(function()
    portal = helpers.start_portal()
    server = nginx.start { ca_file = portal.ca_file, worker_processes = 1, cpath = cpath, server = [[
      location = /audit {
        content_by_lua_block {
          local partner = require "yeastar.partner"
          ngx.req.read_body()
          local args = partner.json_decode(ngx.req.get_body_data())
          local reduce = loadstring(args.reduce)()
          local c = partner.new { client_id = args.client_id, client_secret = args.client_secret,
                                  base_url = args.base_url, transport = "cosocket" }
          local ok, report = pcall(c.renewal_audit, c, { today = args.today, concurrency = 3, fix = true,
                                                          dry_run = false })
          ngx.say(partner.json_encode(ok and reduce(report) or { error = tostring(report) }))
        }
      }
    ]] }
  end)
  lazy_teardown(function()
    if server then server:stop() end
    if portal then portal:stop() end
  end)

  it("gives the libcurl driver's report and effect, within the bound", function()
    portal:reset()
    portal:fleet { count = 30, product_id = 11, fail_every = 7 }
    local today = portal:state().today
    local reduce = assert((loadstring or load)(REDUCE .. " return reduce"))()
    local c = helpers.client(portal)
    local expected = reduce(c:renewal_audit { today = today, concurrency = 3, fix = true, dry_run = false })
    c:close()
    local expected_state = portal:state().devices

    portal:reset()
    portal:fleet { count = 30, product_id = 11, fail_every = 7 }
    local status, body = server:request { method = "POST", path = "/audit", body = partner.json_encode {
      reduce = REDUCE .. " return reduce", client_id = portal.client_id, client_secret = portal.client_secret,
      base_url = portal.base_url, today = today } }
    assert.equal(200, status, body)
    local got = helpers.json_decode(body)
    assert.is_nil(got.error, got.error)
    assert.same(expected, got)
    assert.same(expected_state, portal:state().devices)
    assert.is_true(portal:stats().max_in_flight <= 3, "max in flight " .. portal:stats().max_in_flight)
  end)
end)
