-- spec/06-workflows_spec.lua: the renewal jobs on the wire: Remote Management renewal (dry run
-- and real), fleet auto-renewal with failures and a concurrency bound, batch, paging, find_order.
local helpers = require "spec.helpers"

local ORDER_PATH = "/order/openapi/order/v1/save"
local ENABLE_PATH = "/product/openapi/instance_subscription/v1/active"
local SEED_002_BODY = '{"operationType":"renew_plan","productId":15,"billingId":3197218168379846218,'
  .. '"serviceList":[{"serviceType":"plan","serviceId":3049036224189325312,"purchaseType":"renew",'
  .. '"billingModel":"recurring","billingCycle":"annually","multiCycle":1}]}'

local function paths(portal)
  local out = {}
  for _, r in ipairs(portal:requests()) do out[#out + 1] = r.method .. " " .. r.path end
  return out
end

local count = helpers.count

describe("workflows", function()
  local portal
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function() portal:reset() end)

  describe("renew_remote_management", function()
    it("dry run: every lookup, no order, the exact body of seed 002", function()
      local c = helpers.client(portal)
      local plan = assert(c:renew_remote_management { dry_run = true })
      assert.is_true(plan.dry_run)
      assert.equal("POST", plan.method)
      assert.equal(ORDER_PATH, plan.path)
      assert.equal(SEED_002_BODY, plan.body)
      assert.same({
        "POST /auth/openapi/v1/oauth/token",
        "GET /pricing/openapi/purchase/v1/purchase_product_info",
        "GET /user/openapi/user/v1/client/billing_contact_list",
      }, paths(portal))
      assert.equal(0, count(portal, ORDER_PATH))
    end)

    it("real run: exactly one order POST with seed 002's body, seed 002's result", function()
      local c = helpers.client(portal)
      local order, err = c:renew_remote_management {}
      assert.is_nil(err)
      assert.equal(1, count(portal, ORDER_PATH))
      local posted
      for _, r in ipairs(portal:requests()) do
        if r.path == ORDER_PATH then posted = r end
      end
      assert.equal(SEED_002_BODY, posted.body)
      assert.same({ instanceId = "1946688", orderId = "1780042", orderNo = "MK3400814131142238208",
                    orderStatus = "succeed", productNo = "3076913644890832896",
                    transactionNo = "IH3400814132429889537" }, order)
    end)

    it("given planId and billingId, looks up only the PO; partnerId is checked and sent", function()
      local c = helpers.client(portal)
      -- billingId as a Lua integer where there are integers; a double cannot hold it exactly,
      -- so elsewhere as the decimal string. The wire is the same.
      local billing_id = helpers.INTEGERS and 3197218168379846218 or "3197218168379846218"
      assert(c:renew_remote_management { planId = "3049036224189325312",
        billingId = billing_id, partnerId = "customer1@example.com", poNumber = "PO-7" })
      assert.same({
        "POST /auth/openapi/v1/oauth/token",
        -- once per PO: the 117 seed orders, newest first, 50 a page, none with PO-7
        "GET /order/openapi/order/v1/page",
        "GET /order/openapi/order/v1/page",
        "GET /order/openapi/order/v1/page",
        "GET /user/openapi/user/v1/subordinate_user/customer1%40example.com",
        "POST " .. ORDER_PATH,
      }, paths(portal))
      local body = portal:requests()[6].body
      assert.truthy(body:find('"partnerId":"customer1@example.com","billingId":3197218168379846218,"poNumber":"PO-7"', 1, true))
    end)

    it("with two billing contacts and no billingId: an error listing them, no order", function()
      portal:config { billing_contacts = 2 }
      local c = helpers.client(portal)
      local order, err = c:renew_remote_management {}
      assert.is_nil(order)
      assert.same({ "api", "billing_contact_required" }, { err.kind, err.code })
      assert.truthy(err.message:find("3197218168379846218", 1, true))
      assert.truthy(err.message:find("3197218168379846219", 1, true))
      assert.equal(2, #err.choices)
      assert.equal(0, count(portal, ORDER_PATH))
    end)

    it("bad input raises before any I/O", function()
      local c = helpers.client(portal)
      assert.has_error(function() c:renew_remote_management { billingId = "abc" } end,
        "create_order: parameter 'billingId' must be an integer or a decimal string (got \"abc\")")
      assert.has_error(function() c:renew_remote_management { dryrun = true } end,
        "renew_remote_management: unknown option 'dryrun'")
      assert.equal(0, #portal:requests())
    end)
  end)

  describe("ensure_auto_renewal", function()
    it("a fleet of 500 with 10 % failing: the right report, at most `concurrency` in flight", function()
      portal:config { latency_ms = 5 }
      local devices = portal:fleet { count = 500, fail_every = 10 }
      local c = helpers.client(portal)
      local progress, last_done = 0, 0
      local report = c:ensure_auto_renewal(devices, {
        concurrency = 6,
        on_progress = function(done, total, device, outcome)
          assert.equal(last_done + 1, done)
          assert.equal(500, total)
          assert.truthy(device.productNo)
          assert.truthy(outcome)
          last_done, progress = done, progress + 1
        end,
      })
      assert.equal(500, progress)
      assert.equal(500, report.total)
      assert.same({ already_on = 200, enabled = 250, would_enable = 0, failed = 50 }, report.totals)
      for i, entry in ipairs(report.devices) do
        assert.equal(devices[i], entry.device)
        if i % 10 == 0 then
          assert.equal("failed", entry.outcome)
          assert.equal("product_not_found", entry.err.code)
        else
          assert.equal(i % 2 == 0 and "already_on" or "enabled", entry.outcome)
        end
      end
      assert.equal(250, count(portal, ENABLE_PATH))
      local stats = portal:stats()
      assert.is_true(stats.max_in_flight <= 6, "max in flight " .. stats.max_in_flight)
      assert.is_true(stats.max_in_flight >= 2, "no concurrency at all")
      local state = portal:state().devices
      for i, d in ipairs(devices) do
        if i % 10 ~= 0 then assert.is_true(state[d.productNo].autoRenew, d.productNo) end
      end
    end)

    it("dry run: statuses only, nothing enabled", function()
      local devices = portal:fleet { count = 40, fail_every = 0 }
      local report = helpers.client(portal):ensure_auto_renewal(devices, { dry_run = true })
      assert.same({ already_on = 20, enabled = 0, would_enable = 20, failed = 0 }, report.totals)
      assert.equal(0, count(portal, ENABLE_PATH))
    end)

    it("bad options raise before any I/O (a malformed device fails alone: 16-safety_spec)", function()
      local c = helpers.client(portal)
      assert.has_error(function() c:ensure_auto_renewal({}, { concurrency = 0 }) end,
        "ensure_auto_renewal: option 'concurrency' must be an integer from 1 to 256")
      assert.has_error(function() c:ensure_auto_renewal({}, { concurrency = 257 }) end,
        "ensure_auto_renewal: option 'concurrency' must be an integer from 1 to 256")
      assert.has_error(function() c:ensure_auto_renewal("devices.csv") end,
        "ensure_auto_renewal: devices must be a list (got string)")
      assert.equal(0, #portal:requests())
    end)
  end)

  describe("batch", function()
    it("returns results in input order, errors in place, within the bound", function()
      portal:config { latency_ms = 20 }
      local c = helpers.client(portal)
      assert(c:regions()) -- log in first
      local list = {}
      for i = 1, 12 do
        list[i] = i == 5 and { productNo = "NOPE", productId = 12 }
          or { productNo = i % 2 == 0 and "3651E0529415" or "3632E0965333", productId = i % 2 == 0 and 12 or 11 }
      end
      local seen = {}
      local results = c:batch("auto_renewal_status", list, {
        concurrency = 4, on_result = function(i) seen[#seen + 1] = i end })
      assert.equal(12, #results)
      assert.equal(12, #seen)
      for i, r in ipairs(results) do
        if i == 5 then
          assert.equal("product_not_found", r.err.code)
        else
          assert.same({ autoRenew = i % 2 == 0 }, r.result)
        end
      end
      local stats = portal:stats()
      assert.is_true(stats.max_in_flight <= 4 and stats.max_in_flight >= 2)
    end)

    it("refuses an unknown endpoint and bad options before any I/O (bad items: 16-safety_spec)", function()
      local c = helpers.client(portal)
      assert.has_error(function() c:batch("nope", {}) end,
        "bad argument #1 to 'batch' (unknown endpoint 'nope')")
      assert.has_error(function() c:batch("auto_renewal_status", { helpers.STATUS }, { concurrency = 0 }) end,
        "batch: bad option 'concurrency' (concurrency: integer 1..256, on_result: function, "
        .. "keep_results: boolean)")
      assert.equal(0, #portal:requests())
    end)
  end)

  describe("each and find_order", function()
    it("walks all 117 seed orders page by page", function()
      local c = helpers.client(portal)
      local n, ids = 0, {}
      for order, err in c:each("orders", { pageSize = 25 }) do
        assert.is_nil(err)
        n = n + 1
        ids[order.id] = true
      end
      assert.equal(117, n)
      assert.truthy(ids["1779925"] and ids["1780041"])
      assert.equal(5, count(portal, "/order/openapi/order/v1/page"))
    end)

    it("ends with false, err when a page fails", function()
      local c = helpers.client(portal, { max_retries = 0 })
      assert(c:regions())
      portal:fault { match = { path = "/order/openapi/order/v1/page" }, status = 400,
                     code = "parameter_validation_failed", count = 1 }
      local got = {}
      for order, err in c:each("orders", { pageSize = 50 }) do got[#got + 1] = { order, err } end
      assert.equal(1, #got)
      assert.is_false(got[1][1])
      assert.equal("parameter_validation_failed", got[1][2].code)
    end)

    it("finds a new order by product and time, and by poNumber", function()
      local c = helpers.client(portal)
      local since = os.time() - 1
      assert(c:renew_remote_management { poNumber = "PO-find-me" })
      local by_po = c:find_order { poNumber = "PO-find-me" }
      assert.equal("MK3400814131142238208", by_po.orderNo)
      local by_product = c:find_order { productId = 15, since = since }
      assert.equal(by_po.id, by_product.id)
      assert.is_false(c:find_order { productNo = "3651E0529415", since = since })
      assert.has_error(function() c:find_order { productId = 15 } end,
        "find_order: give poNumber, or since with productNo or productId")
    end)
  end)
end)

describe("IDs decoded by lua-cjson (every number a float)", function()
  it("12.0 for a string-typed productId is sent as \"12\"", function()
    local c = require("yeastar.partner").new { client_id = "x", client_secret = "y" }
    local req = c:prepare("enable_auto_renewal",
      { productNo = "3651E0529415", productId = 12.0, planOrServiceId = "3049040650094403584" })
    assert.equal('{"productNo":"3651E0529415","productId":"12","planOrServiceId":3049040650094403584}', req.body)
  end)
end)
