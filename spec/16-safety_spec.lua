-- spec/16-safety_spec.lua: the guarantees that keep bulk and money-moving jobs safe to re-run:
-- once per PO, dry runs that fail where the real run fails, bad bulk items that fail alone, and
-- caller mistakes raised at the caller's own line from inside the workflows.
local helpers = require "spec.helpers"

local ORDER_PATH = helpers.ORDER_PATH
local STATUS_PATH = helpers.STATUS_PATH
local PAGE_PATH = "/order/openapi/order/v1/page"
local DETAIL_PATH = "/product/openapi/instance_product/v1/detail"
local RM_DEVICE = "3076913644890832896" -- the fake portal's product 15 (Remote Management) device
local count = helpers.count
local unpack = table.unpack or unpack -- 5.1 and LuaJIT have only the global

local function paths(portal)
  local out = {}
  for _, r in ipairs(portal:requests()) do out[#out + 1] = r.method .. " " .. r.path end
  return out
end

-- The line this is called from.
local function here()
  return debug.getinfo(2, "l").currentline
end

-- What fn raised, split as Lua positions it: file, line, message.
local function raised(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "nothing was raised")
  local file, line, text = tostring(err):match("^(.-):(%d+): (.*)$")
  assert.truthy(file, "no position in: " .. tostring(err))
  return file, tonumber(line), text
end

describe("safety", function()
  local portal
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function() portal:reset() end)

  describe("renew_remote_management orders once per PO", function()
    it("a second run with the same PO returns the first order, marked existing: one POST", function()
      local c = helpers.client(portal)
      local first = assert(c:renew_remote_management { poNumber = "PO-ONCE-1" })
      assert.is_nil(first.existing)
      local second, err = c:renew_remote_management { poNumber = "PO-ONCE-1" }
      assert.is_nil(err)
      assert.is_true(second.existing)
      assert.equal("PO-ONCE-1", second.customReferenceNo)
      assert.equal(first.orderNo, second.orderNo)
      assert.equal(first.orderId, second.id)
      assert.equal(1, count(portal, ORDER_PATH))
      assert.equal(1, #portal:state().orders)
      -- A new client, as a cron job re-run after a crash would have: still no second order.
      local third = assert(helpers.client(portal):renew_remote_management { poNumber = "PO-ONCE-1" })
      assert.is_true(third.existing)
      assert.equal(1, count(portal, ORDER_PATH))
    end)

    it("the second run looks up only the PO: no plan, billing or device lookups", function()
      local c = helpers.client(portal)
      assert(c:renew_remote_management { poNumber = "PO-ONCE-2", productNo = RM_DEVICE })
      local before = #portal:requests()
      assert.is_true(c:renew_remote_management({ poNumber = "PO-ONCE-2", productNo = RM_DEVICE }).existing)
      local after = paths(portal)
      assert.same({ "GET " .. PAGE_PATH }, { select(before + 1, unpack(after)) })
    end)

    it("a dry run with a used PO reports the existing order instead of a plan", function()
      local c = helpers.client(portal)
      assert(c:renew_remote_management { poNumber = "PO-ONCE-3" })
      local plan = assert(c:renew_remote_management { poNumber = "PO-ONCE-3", dry_run = true })
      assert.is_true(plan.existing)
      assert.is_nil(plan.dry_run)
      assert.is_nil(plan.body)
      assert.equal("PO-ONCE-3", plan.customReferenceNo)
      assert.equal(1, count(portal, ORDER_PATH))
    end)

    it("a PO of an older order counts too (the oldest of the 117 seed orders)", function()
      local c = helpers.client(portal)
      local found = assert(c:renew_remote_management { poNumber = "PO-0000" })
      assert.is_true(found.existing)
      assert.equal("1779925", found.id)
      assert.equal(0, count(portal, ORDER_PATH))
    end)

    it("allow_duplicate_po = true orders again, knowingly", function()
      local c = helpers.client(portal)
      assert(c:renew_remote_management { poNumber = "PO-TWICE" })
      local again = assert(c:renew_remote_management { poNumber = "PO-TWICE", allow_duplicate_po = true })
      assert.is_nil(again.existing)
      assert.equal(2, count(portal, ORDER_PATH))
      assert.has_error(function() c:renew_remote_management { allow_duplicate_po = "yes" } end,
        "renew_remote_management: option 'allow_duplicate_po' must be a boolean (got string)")
    end)

    it("when the order list cannot be read, nothing is ordered (real run and dry run)", function()
      local c = helpers.client(portal, { max_retries = 0 })
      assert(c:regions()) -- log in first
      for _, dry in ipairs { false, true } do
        portal:fault { match = { path = PAGE_PATH }, status = 503, count = 1 }
        local order, err = c:renew_remote_management { poNumber = "PO-UNCHECKED", dry_run = dry }
        assert.is_nil(order)
        assert.same({ "api", "service_unavailable" }, { err.kind, err.code })
      end
      assert.equal(0, count(portal, ORDER_PATH))
      assert.equal(0, count(portal, "/pricing/openapi/purchase/v1/purchase_product_info"))
    end)
  end)

  describe("dry runs fail where the real run fails", function()
    -- Each case: what to change on the portal, the options, the kind and code both runs return.
    local cases = {
      { "a productNo that is no product 15 device", nil, { productNo = "3651E0529415" },
        { "api", "product_not_found" } },
      { "an unknown subordinate user", nil, { partnerId = "nobody@example.com" },
        { "api", "user_not_found" } },
      { "two billing contacts and no billingId", { billing_contacts = 2 }, {},
        { "api", "billing_contact_required" } },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. ": the same kind and code, no order", function()
        if case[2] then portal:config(case[2]) end
        local c = helpers.client(portal)
        local dry_opts, real_opts = helpers.with(case[3], { dry_run = true }), helpers.with(case[3])
        local plan, dry_err = c:renew_remote_management(dry_opts)
        local order, real_err = c:renew_remote_management(real_opts)
        assert.is_nil(plan)
        assert.is_nil(order)
        assert.same(case[4], { dry_err.kind, dry_err.code })
        assert.same({ dry_err.kind, dry_err.code }, { real_err.kind, real_err.code })
        assert.equal(0, count(portal, ORDER_PATH))
      end)
    end

    it("the device check is the order endpoint's own refusal, asked first", function()
      local c = helpers.client(portal)
      local _, dry_err = c:renew_remote_management { productNo = "3651E0529415", dry_run = true }
      assert.same({ "GET " .. DETAIL_PATH }, { paths(portal)[2] })
      assert.truthy(portal:requests()[2].query:find("productNo=3651E0529415&productId=15", 1, true))
      -- What the order endpoint itself says to that order:
      local _, order_err = c:create_order(helpers.with(helpers.ORDER, { productNo = "3651E0529415" }))
      assert.same({ order_err.kind, order_err.code }, { dry_err.kind, dry_err.code })
    end)

    it("a product 15 device passes: the dry run checks it, the real run orders it", function()
      local c = helpers.client(portal)
      local plan = assert(c:renew_remote_management { productNo = RM_DEVICE, dry_run = true })
      assert.truthy(plan.body:find('"productNo":"' .. RM_DEVICE .. '"', 1, true))
      assert.equal(1, count(portal, DETAIL_PATH))
      assert.equal(0, count(portal, ORDER_PATH))
      assert(c:renew_remote_management { productNo = RM_DEVICE })
      assert.equal(2, count(portal, DETAIL_PATH))
      assert.equal(1, count(portal, ORDER_PATH))
    end)
  end)

  describe("a bad bulk item fails alone", function()
    local S = helpers.STATUS
    local TYPO = { productNo = "3632E0965333", productID = 11 }
    local TYPO_MESSAGE = "item 2 (productNo 3632E0965333): auto_renewal_status: unknown parameter "
      .. "'productID' (did you mean 'productId'?)"

    it("batch: a typo and a non-table item get kind invalid, the rest run", function()
      local c = helpers.client(portal)
      local seen = {}
      local results = c:batch("auto_renewal_status", { S, TYPO, S, "3651E0529415", S }, {
        concurrency = 2,
        on_result = function(i, result, err) seen[i] = result and "ok" or err.kind end,
      })
      assert.equal(5, #results)
      assert.same({ "ok", "invalid", "ok", "invalid", "ok" }, seen)
      for _, i in ipairs { 1, 3, 5 } do assert.same({ autoRenew = true }, results[i].result) end
      local e2, e4 = results[2].err, results[4].err
      assert.same({ "invalid", "invalid_parameters", 2, "auto_renewal_status", false },
        { e2.kind, e2.code, e2.index, e2.endpoint, e2.retryable })
      assert.equal(TYPO_MESSAGE, e2.message)
      assert.equal("yeastar.partner: auto_renewal_status: invalid error invalid_parameters: "
        .. TYPO_MESSAGE, tostring(e2))
      assert.equal(4, e4.index)
      assert.equal("item 4: auto_renewal_status: the item must be a table (got string)", e4.message)
      assert.equal(3, count(portal, STATUS_PATH))
    end)

    it("batch: a list of only bad items sends nothing at all", function()
      local c = helpers.client(portal)
      local results = c:batch("auto_renewal_status", { TYPO, TYPO })
      assert.same({ "invalid", "invalid" }, { results[1].err.kind, results[2].err.kind })
      assert.equal(0, #portal:requests())
    end)

    it("batch: bad options and single calls still raise before any I/O", function()
      local c = helpers.client(portal)
      assert.has_error(function() c:batch("auto_renewal_status", { S }, { concurrency = 0.5 }) end,
        "batch: bad option 'concurrency' (concurrency: integer 1..256, on_result: function, "
        .. "keep_results: boolean)")
      assert.has_error(function() c:auto_renewal_status(TYPO) end,
        "auto_renewal_status: unknown parameter 'productID' (did you mean 'productId'?)")
      assert.equal(0, #portal:requests())
    end)

    it("batch: an item whose metamethod raises fails alone; one that closes the client raises", function()
      local c = helpers.client(portal)
      local boom = setmetatable({}, { __index = function() error("boom", 0) end })
      local results = c:batch("auto_renewal_status", { boom, S })
      assert.same({ "invalid", "item 1: boom" }, { results[1].err.kind, results[1].err.message })
      assert.same({ autoRenew = true }, results[2].result)
      local closer = setmetatable({}, { __index = function(_, k) c:close(); return S[k] end })
      assert.has_error(function() c:batch("auto_renewal_status", { S, closer }) end,
        "yeastar.partner: the client is closed")
      assert.equal(1, count(portal, STATUS_PATH))
    end)

    it("ensure_auto_renewal: a typo in row 7 of 50 fails alone; 49 devices are handled", function()
      local devices = portal:fleet { count = 50, fail_every = 0 }
      local d7 = devices[7]
      devices[7] = { productNo = d7.productNo, productID = d7.productId, planOrServiceId = d7.planOrServiceId }
      local progress = {}
      local report = helpers.client(portal):ensure_auto_renewal(devices, {
        concurrency = 4,
        on_progress = function(done, total, device, outcome)
          assert.equal(50, total)
          progress[#progress + 1] = done
          if device == devices[7] then assert.equal("failed", outcome) end
        end,
      })
      assert.equal(50, #progress)
      assert.same({ already_on = 25, enabled = 24, would_enable = 0, failed = 1 }, report.totals)
      local entry = report.devices[7]
      assert.equal(devices[7], entry.device)
      assert.equal("failed", entry.outcome)
      assert.same({ "invalid", "invalid_parameters", 7, "enable_auto_renewal" },
        { entry.err.kind, entry.err.code, entry.err.index, entry.err.endpoint })
      assert.equal("item 7 (productNo " .. d7.productNo .. "): enable_auto_renewal: unknown parameter "
        .. "'productID' (did you mean 'productId'?)", entry.err.message)
      assert.equal(49, count(portal, STATUS_PATH))
      assert.equal(24, count(portal, "/product/openapi/instance_subscription/v1/active"))
    end)

    it("ensure_auto_renewal: a device that is not a table fails alone", function()
      local report = helpers.client(portal):ensure_auto_renewal({ 42, {
        productNo = "3651E0529415", productId = 12, planOrServiceId = "3049040650094403584" } })
      assert.equal("item 1: enable_auto_renewal: the item must be a table (got number)",
        report.devices[1].err.message)
      assert.equal("already_on", report.devices[2].outcome)
    end)

    it("ensure_auto_renewal: a device fit for one of its two requests only fails alone", function()
      local report = helpers.client(portal):ensure_auto_renewal({ 42, {
        productNo = "3651E0529415", productId = "twelve", planOrServiceId = "3049040650094403584" } })
      local err = report.devices[2].err
      assert.same({ "invalid", "auto_renewal_status", 2 }, { err.kind, err.endpoint, err.index })
      assert.equal("item 2 (productNo 3651E0529415): auto_renewal_status: parameter 'productId' "
        .. "must be an integer or a decimal string (got \"twelve\")", err.message)
      assert.equal(0, #portal:requests())
    end)

    it("ensure_auto_renewal: a close() from a bad device's on_progress leaves the rest unsent", function()
      local c = helpers.client(portal)
      local report = c:ensure_auto_renewal({ "bad", helpers.with(helpers.STATUS,
        { planOrServiceId = "3049040650094403584" }) }, { on_progress = function() c:close() end })
      assert.same({ "invalid", "closed" }, { report.devices[1].err.kind, report.devices[2].err.kind })
      assert.equal(0, #portal:requests())
    end)
  end)

  describe("the server's records never make a workflow raise", function()
    it("find_order skips records that are not tables and reports an unusable id", function()
      local c = helpers.client(portal)
      assert(c:regions())
      local body = '{"code":"success","status":200,"requestId":"r","detailMessage":"","result":'
        .. '{"pageNo":1,"totalPage":1,"results":[1,"x",true,{"id":"../x","createTime":1}]}}'
      portal:fault { match = { path = PAGE_PATH }, body = body }
      local found, err = c:find_order { productId = 15, since = 0 }
      assert.is_nil(found)
      assert.same({ "decode", "bad_envelope", "orders" }, { err.kind, err.code, err.endpoint })
      portal:fault { match = { path = PAGE_PATH }, body = body }
      assert.is_false(c:find_order { poNumber = "PO-X" })
    end)

    it("billing contacts and plans of the wrong shape are errors, not raises", function()
      local c = helpers.client(portal)
      assert(c:regions())
      portal:fault { match = { path = "/user/openapi/user/v1/client/billing_contact_list" },
        body = '{"code":"success","status":200,"requestId":"r","detailMessage":"","result":7}' }
      local _, err = c:renew_remote_management { planId = "3049036224189325312", dry_run = true }
      assert.same({ "api", "billing_contact_required" }, { err.kind, err.code })
      portal:fault { match = { path = "/pricing/openapi/purchase/v1/purchase_product_info" },
        body = '{"code":"success","status":200,"requestId":"r","detailMessage":"","result":{"planList":[1,{"name":"Remote Management Account","planId":"x/y"}]}}' }
      _, err = c:renew_remote_management { billingId = "3197218168379846218", dry_run = true }
      assert.same({ "decode", "bad_envelope" }, { err.kind, err.code })
    end)
  end)

  describe("caller mistakes in workflows raise at the caller's line", function()
    it("as direct calls do", function()
      local c = helpers.client(portal)
      local closed = helpers.client(portal)
      closed:close()
      local cases = {
        { function() c:auto_renewal_status { productID = 12 } end, here(), "auto_renewal_status: unknown parameter 'productID' (did you mean 'productId'?)" },
        { function() c:renew_remote_management { dryrun = true } end, here(), "renew_remote_management: unknown option 'dryrun'" },
        { function() c:renew_remote_management { billingId = "abc" } end, here(), "create_order: parameter 'billingId' must be an integer or a decimal string (got \"abc\")" },
        { function() c:renew_remote_management { partnerId = "a/b" } end, here(), "subordinate_user: parameter 'partnerId' would change the request path (\"a/b\")" },
        { function() c:renew_remote_management { productNo = "a\nb" } end, here(), "product_details: parameter 'productNo' must not contain CR, LF or NUL" },
        { function() closed:renew_remote_management {} end, here(), "yeastar.partner: the client is closed" },
        { function() c:ensure_auto_renewal({}, { concurrency = 1000 }) end, here(), "ensure_auto_renewal: option 'concurrency' must be an integer from 1 to 256" },
        { function() c:ensure_auto_renewal("devices.csv") end, here(), "ensure_auto_renewal: devices must be a list (got string)" },
        { function() closed:ensure_auto_renewal({}) end, here(), "yeastar.partner: the client is closed" },
        { function() c:find_order { productId = 15 } end, here(), "find_order: give poNumber, or since with productNo or productId" },
        { function() c:find_order { poNumber = "P", pageSize = 1.5 } end, here(), "orders: parameter 'pageSize' is a number that cannot hold an exact integer; pass an integer or a decimal string" },
        { function() closed:find_order { poNumber = "P" } end, here(), "yeastar.partner: the client is closed" },
        { function() c:each("regions") end, here(), "each: 'regions' is not a paged endpoint" },
        { function() c:each("orders", { pagesize = 5 }) end, here(), "orders: unknown parameter 'pagesize' (did you mean 'pageSize'?)" },
        { function() closed:each("orders") end, here(), "yeastar.partner: the client is closed" },
      }
      for _, case in ipairs(cases) do
        local file, line, text = raised(case[1])
        assert.truthy(file:find("16%-safety_spec%.lua$"), file)
        assert.equal(case[2], line, text)
        assert.equal(case[3], text)
      end
      assert.equal(0, #portal:requests())
    end)
  end)
end)
