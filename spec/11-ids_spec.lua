-- spec/11-ids_spec.lua: the seeds' 64-bit IDs on the wire, in both directions, on every runtime.
-- Where every number is a double (5.1, 5.2, LuaJIT) a number above 2^53 has lost digits before
-- the module sees it: such numbers are refused, strings and LuaJIT int64 cdata are exact.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"

local ENABLE_PATH = "/product/openapi/instance_subscription/v1/active"
local ACCOUNT_PLAN = "3049036224189325312" -- Remote Management Account (seed 002)
local TRIAL_PLAN = "3049036224189325400"   -- Remote Management Trial: the same double as Account
local BILLING_ID = "3197218168379846218"   -- seed 002's billing contact
local RM_DEVICE = "3076913644890832896"    -- the Remote Management device of the fake portal

-- A LuaJIT int64 literal, compiled only there (the LL suffix is no Lua syntax elsewhere).
local function int64(digits) return assert((loadstring or load)("return " .. digits .. "LL"))() end

-- The bodies the portal received for path, in order.
local function bodies(portal, path)
  local out = {}
  for _, r in ipairs(portal:requests()) do
    if r.path == path then out[#out + 1] = r.body end
  end
  return out
end

local function enable_body(plan)
  return '{"productNo":"' .. RM_DEVICE .. '","productId":"15","planOrServiceId":' .. plan .. '}'
end

describe("64-bit IDs on " .. _VERSION .. (jit and " (" .. jit.version .. ")" or ""), function()
  local portal
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function() portal:reset() end)

  it("a decimal string goes out with every digit: the Trial plan stays the Trial plan", function()
    local c = helpers.client(portal)
    assert.is_true(assert(c:enable_auto_renewal { productNo = RM_DEVICE, productId = 15,
                                                  planOrServiceId = TRIAL_PLAN }))
    assert.same({ enable_body(TRIAL_PLAN) }, bodies(portal, ENABLE_PATH))
  end)

  it("decoded IDs print their exact digits: tostring compares them on every runtime", function()
    local c = helpers.client(portal)
    local info = assert(c:plans_and_services { productId = 15 })
    local names = {}
    for _, plan in ipairs(info.planList) do names[tostring(plan.planId)] = plan.name end
    assert.same({ [ACCOUNT_PLAN] = "Remote Management Account",
                  [TRIAL_PLAN] = "Remote Management Trial" }, names)
    local contacts = assert(c:billing_contacts())
    assert.equal(BILLING_ID, tostring(contacts[1].billingContactId))
  end)

  it("an ID read from one call is sent exactly by the next", function()
    local c = helpers.client(portal)
    local info = assert(c:plans_and_services { productId = 15 })
    for _, plan in ipairs(info.planList) do
      assert(c:enable_auto_renewal { productNo = RM_DEVICE, productId = 15,
                                     planOrServiceId = plan.planId })
    end
    assert.same({ enable_body(ACCOUNT_PLAN), enable_body(TRIAL_PLAN) }, bodies(portal, ENABLE_PATH))
  end)

  it("the seeds' workflows: renew_remote_management, ensure_auto_renewal, find_order", function()
    local c = helpers.client(portal)
    local order = assert(c:renew_remote_management { poNumber = "PO-IDS-1" })
    assert.equal("MK3400814131142238208", order.orderNo)
    local posted = bodies(portal, helpers.ORDER_PATH)
    assert.equal(1, #posted)
    assert.truthy(posted[1]:find('"billingId":' .. BILLING_ID, 1, true), posted[1])
    assert.truthy(posted[1]:find('"serviceId":' .. ACCOUNT_PLAN, 1, true), posted[1])

    local found = assert(c:find_order { poNumber = "PO-IDS-1" })
    assert.equal("PO-IDS-1", found.customReferenceNo)

    local report = c:ensure_auto_renewal({
      { productNo = RM_DEVICE, productId = 15, planOrServiceId = TRIAL_PLAN },
      { productNo = "3651E0529415", productId = 12, planOrServiceId = "3049040650094403584" },
    }, { concurrency = 2 })
    assert.same({ already_on = 1, enabled = 1, would_enable = 0, failed = 0 }, report.totals)
    assert.same({ enable_body(TRIAL_PLAN) }, bodies(portal, ENABLE_PATH))
  end)

  it("JSON text round-trips every ID digit for digit", function()
    -- Keys in the encoder's (sorted) order; values beyond a runtime's integers come back as
    -- strings, which the gsub unquotes: the digits are what must survive.
    local text = '{"billingId":3197218168379846218,"exact":9007199254740992,"max":9223372036854775807,'
      .. '"n":-9007199254740993,"next":9223372036854775808,"planId":3049036224189325400,"small":9007199254740993}'
    assert.equal(text, (partner.json_encode(partner.json_decode(text)):gsub('"(%-?%d+)"', "%1")))
  end)

  describe("where numbers are doubles #doubles", function()
    it("a number above 2^53 raises before any I/O, naming the method and the field", function()
      local c = helpers.client(portal)
      assert.has_error(function()
        c:enable_auto_renewal { productNo = RM_DEVICE, productId = 15, planOrServiceId = 3049036224189325400 }
      end, "enable_auto_renewal: parameter 'planOrServiceId' is a number that cannot hold an exact "
        .. "integer; pass an integer or a decimal string")
      assert.has_error(function()
        c:renew_remote_management { billingId = 3197218168379846218 }
      end, "create_order: parameter 'billingId' is a number that cannot hold an exact integer; "
        .. "pass an integer or a decimal string")
      assert.same({}, portal:requests()) -- not even a token request
    end)

    it("2^53 itself is exact and accepted; 2^53 + 2 is refused", function()
      local c = helpers.client(portal)
      local ok = pcall(c.prepare, c, "enable_auto_renewal",
        { productNo = RM_DEVICE, productId = 15, planOrServiceId = 2 ^ 53 })
      assert.is_true(ok)
      assert.equal(enable_body("9007199254740992"), c:prepare("enable_auto_renewal",
        { productNo = RM_DEVICE, productId = 15, planOrServiceId = 2 ^ 53 }).body)
      assert.is_false((pcall(c.prepare, c, "enable_auto_renewal",
        { productNo = RM_DEVICE, productId = 15, planOrServiceId = 2 ^ 53 + 2 })))
    end)

    it("every decoded integer beyond 2^53 is a string, whether or not its double is exact", function()
      local c = helpers.client(portal)
      local info = assert(c:plans_and_services { productId = 15 })
      -- Account's double is exact, Trial's is not: both must be strings all the same.
      assert.same({ "string", "string" }, { type(info.planList[1].planId), type(info.planList[2].planId) })
      local v = partner.json_decode("[9007199254740992,9007199254740993,-9007199254740992,-9007199254740993]")
      assert.same({ 9007199254740992, "9007199254740993", -9007199254740992, "-9007199254740993" }, v)
    end)

    it("integral numbers encode with all their digits, never an exponent", function()
      assert.equal("[9223372036854775808,1180591620717411303424,-9223372036854775808,1e-05,0.5]",
        partner.json_encode { 2 ^ 63, 2 ^ 70, -2 ^ 63, 1e-5, 0.5 })
    end)

    it("LuaJIT int64 and uint64 cdata are sent with every digit", function()
      if not jit then
        assert.is_nil(rawget(_G, "jit")) -- plain 5.1/5.2 have no cdata: nothing to send
        return
      end
      local c = helpers.client(portal)
      assert(c:enable_auto_renewal { productNo = RM_DEVICE, productId = int64("15U"),
                                     planOrServiceId = int64(TRIAL_PLAN) })
      assert.same({ enable_body(TRIAL_PLAN) }, bodies(portal, ENABLE_PATH))
      assert.equal("[18446744073709551615,-9223372036854775808]",
        partner.json_encode { int64("18446744073709551615U"), int64("-9223372036854775807") - 1 })
      local ffi = require "ffi"
      assert.has_error(function() partner.json_encode { ffi.new("int32_t", 1) } end,
        "json_encode: cannot encode a cdata value at key '[1]'")
    end)
  end)

  describe("where Lua has integers #integers", function()
    it("19-digit number literals are exact integers, both ways", function()
      local c = helpers.client(portal)
      assert(c:enable_auto_renewal { productNo = RM_DEVICE, productId = 15,
                                     planOrServiceId = 3049036224189325400 })
      assert.same({ enable_body(TRIAL_PLAN) }, bodies(portal, ENABLE_PATH))
      local info = assert(c:plans_and_services { productId = 15 })
      assert.same({ "integer", "integer" }, { math.type(info.planList[1].planId), math.type(info.planList[2].planId) })
      assert.equal(3049036224189325400, info.planList[2].planId)
    end)

    it("a float above 2^53 is refused before any I/O", function()
      local c = helpers.client(portal)
      assert.has_error(function()
        c:enable_auto_renewal { productNo = RM_DEVICE, productId = 15, planOrServiceId = 2.0 ^ 62 }
      end, "enable_auto_renewal: parameter 'planOrServiceId' is a number that cannot hold an exact "
        .. "integer; pass an integer or a decimal string")
      assert.same({}, portal:requests())
    end)
  end)
end)
