-- spec/04-endpoints_spec.lua: every endpoint method on the wire and back, against the fake portal:
-- the exact request bytes received (method, path, query, headers, body), the decoded result, 64-bit
-- IDs in both directions, the caller-mistake checks that raise before any I/O, and a 400 from the API.
-- Portable Lua 5.1 to 5.4 and LuaJIT: what needs an integer subtype is tagged #integers, with its
-- #doubles counterpart for 5.1, 5.2 and LuaJIT (where every number is a double).
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"

local INTEGERS = helpers.INTEGERS

-- A 64-bit ID as this runtime holds it exactly: a Lua integer on 5.3+, else its decimal string
-- (a double above 2^53 has lost digits; the decoder gives such IDs as strings, callers send them so).
local function id(digits)
  return INTEGERS and tonumber(digits) or digits
end

-- A LuaJIT int64 (or, with a U, uint64) literal, compiled only there: LL is no Lua syntax elsewhere.
local function int64(digits) return assert((loadstring or load)("return " .. digits .. "LL"))() end

-- How the module refuses a number that may have lost digits (a double above 2^53, a fraction).
local NOT_EXACT = "is a number that cannot hold an exact integer; pass an integer or a decimal string"

-- The fake portal's default credentials; nothing in them needs percent-encoding.
local LOGIN_BODY = "client_id=yp-demo-client&client_secret=yp-demo-secret-5f2b9c&grant_type=pp_credentials"
local AUTH_PATTERN = "^Bearer AT%." .. ("%x"):rep(40) .. "$"
local REFRESH_PATTERN = "^grant_type=refresh_token&refresh_token=RT%." .. ("%x"):rep(40) .. "$"
local TOKEN_PATH = "/auth/openapi/v1/oauth/token"

-- Seed 000: the Enable Auto-renewal request body, compact.
local SEED_000_BODY = '{"productNo":"3651E0529415","productId":"12","planOrServiceId":3049040650094403584}'
-- Seed 002: the Create an Order request body, compact, and its result.
local SEED_002_BODY = '{"operationType":"renew_plan","productId":15,"billingId":3197218168379846218,'
  .. '"serviceList":[{"serviceType":"plan","serviceId":3049036224189325312,"purchaseType":"renew",'
  .. '"billingModel":"recurring","billingCycle":"annually","multiCycle":1}]}'
local SEED_002_RESULT = {
  instanceId = "1946688", orderId = "1780042", orderNo = "MK3400814131142238208",
  orderStatus = "succeed", productNo = "3076913644890832896", transactionNo = "IH3400814132429889537",
}
-- Seed 003: the renewal add-on info for pricing service 27946.
local SEED_003_RESULT = {
  billingCycleList = { "annually" }, billingModelList = { "recurring" }, connectionServiceList = {},
  name = "Hotel PMS Integration", pricingServiceId = 27946, purchaseMultiCycleList = {},
  purchaseParameter = "", purchaseParameterId = partner.null, serviceId = "3116037397465776128",
  unitName = "",
}

-- The IDs as this runtime's callers pass them (id()): the same bytes on the wire everywhere.
local function seed_002_params()
  return {
    operationType = "renew_plan", productId = 15, billingId = id("3197218168379846218"),
    serviceList = { {
      serviceType = "plan", serviceId = id("3049036224189325312"), purchaseType = "renew",
      billingModel = "recurring", billingCycle = "annually", multiCycle = 1,
    } },
  }
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = type(v) == "table" and copy(v) or v end
  return c
end

local function merge(t, over)
  local c = copy(t)
  for k, v in pairs(over) do c[k] = v end
  return c
end

describe("endpoints", function()
  local portal, host
  local clients = {}
  local covered = {}

  lazy_setup(function()
    portal = helpers.start_portal()
    host = portal.base_url:match("^https://([^/]+)$")
  end)

  lazy_teardown(function()
    if portal then portal:stop() end
  end)

  before_each(function()
    portal:reset()
  end)

  after_each(function()
    for i = #clients, 1, -1 do
      clients[i]:close()
      clients[i] = nil
    end
  end)

  local function new_client(extra)
    local c = helpers.client(portal, extra)
    clients[#clients + 1] = c
    return c
  end

  -- The exact header list of one received request: names, order and values.
  -- kind: "form" (token call), "get", or "json" (JSON POST).
  local function check_headers(r, kind)
    local want = { { "Host", host }, { "User-Agent", "OpenAPI" }, { "Accept", "application/json" } }
    if kind ~= "form" then
      local auth = r.header["authorization"]
      assert.is_string(auth, "no Authorization header")
      assert.matches(AUTH_PATTERN, auth)
      want[#want + 1] = { "Authorization", auth }
    end
    if kind == "form" then
      want[#want + 1] = { "Content-Type", "application/x-www-form-urlencoded" }
      want[#want + 1] = { "Content-Length", tostring(#r.body) }
    elseif kind == "json" then
      want[#want + 1] = { "Content-Type", "application/json" }
      want[#want + 1] = { "Content-Length", tostring(#r.body) }
    end
    assert.same(want, r.headers)
  end

  local function check_login(r)
    assert.equal("POST", r.method)
    assert.equal(TOKEN_PATH, r.path)
    assert.equal("", r.query)
    assert.equal(LOGIN_BODY, r.body)
    assert.is_nil(r.header["authorization"])
    check_headers(r, "form")
  end

  -- want = {method=, path=, query= (default ""), body= (default "")}
  local function check_request(r, want)
    assert.equal(want.method, r.method)
    assert.equal(want.path, r.path)
    assert.equal(want.query or "", r.query)
    assert.equal(want.body or "", r.body)
    if want.method == "POST" then
      assert.equal("application/json", r.header["content-type"])
      check_headers(r, "json")
    else
      assert.is_nil(r.header["content-type"])
      check_headers(r, "get")
    end
  end

  -- One call on a fresh client: the first call logs in exactly once, then sends the request.
  -- Returns result, err, the API request as received, and the client.
  local function call(name, params)
    local client = new_client()
    assert.equal(0, #portal:requests())
    local res, err = client[name](client, params)
    local reqs = portal:requests()
    assert.equal(2, #reqs, "expected exactly one login and one API request")
    check_login(reqs[1])
    return res, err, reqs[2], client
  end

  -- A call that must succeed; err is shown if it does not.
  local function ok_call(name, params)
    local res, err, r, client = call(name, params)
    assert.is_nil(err, err and tostring(err))
    return res, r, client
  end

  -- A call refused for a parameter that is a number without an exact integer: raised, naming the
  -- method and the parameter, before any I/O (not even a login).
  local function refuses_number(name, params, param)
    local client = new_client()
    assert.has_error(function() client[name](client, params) end,
      name .. ": parameter '" .. param .. "' " .. NOT_EXACT)
    assert.equal(0, #portal:requests())
  end

  -- The request that the descriptor says this endpoint sends.
  local function descriptor_path(name, path_params)
    local ep = partner.endpoints[name]
    return (ep.path:gsub("{(%w+)}", function(k) return assert(path_params[k], k) end))
  end

  local function endpoint(name, body)
    covered[name] = true
    describe(name, body)
  end

  -- ------------------------------------------------------------------------------------------
  -- The catalogue

  describe("partner.endpoints", function()
    local SIGNATURES = {
      request_access_token = { "POST /auth/openapi/v1/oauth/token" },
      refresh_access_token = { "POST /auth/openapi/v1/oauth/token" },
      subscription_products = { "GET /pricing/openapi/purchase/v1/product_list" },
      plans_and_services = { "GET /pricing/openapi/purchase/v1/purchase_product_info",
        "productId:query:integer:req", "productNo:query:string" },
      trial_plan_info = { "GET /pricing/openapi/purchase/v1/trial/plan_info/{pricingPlanId}",
        "pricingPlanId:path:string:req", "productId:query:integer:req", "productNo:query:string" },
      subscription_plan_info = { "GET /pricing/openapi/purchase/v1/purchase/plan_info/{pricingPlanId}",
        "pricingPlanId:path:string:req", "productId:query:integer:req", "productNo:query:string" },
      renewal_plan_info = { "GET /pricing/openapi/purchase/v1/renew/plan_info/{pricingPlanId}",
        "pricingPlanId:path:string:req", "productId:query:integer:req", "productNo:query:string:req" },
      trial_service_info = { "GET /pricing/openapi/purchase/v1/trial/add_on_info/{pricingServiceId}",
        "pricingServiceId:path:string:req", "productId:query:integer:req", "productNo:query:string",
        "connectionPlanId:query:integer" },
      subscription_service_info = { "GET /pricing/openapi/purchase/v1/purchase/add_on_info/{pricingServiceId}",
        "pricingServiceId:path:string:req", "productId:query:integer:req", "productNo:query:string",
        "connectionPlanId:query:integer" },
      renewal_service_info = { "GET /pricing/openapi/purchase/v1/renew/add_on_info/{pricingServiceId}",
        "pricingServiceId:path:string:req", "productNo:query:string:req", "productId:query:integer:req" },
      subscription_price = { "GET /pricing/openapi/purchase/v1/my_price_info", "productId:query:integer:req",
        "partnerId:query:string", "billingCycle:query:string:req", "offeringId:query:string:req" },
      calculate_subscription_price = { "POST /pricing/openapi/purchase/v1/pricing/calculate",
        "productId:body:integer:req", "productNo:body:string", "operationType:body:string:req",
        "serviceList:body:list:req", "partnerView:body:string" },
      products = { "GET /product/openapi/instance_product/v1/client/instance_product_list",
        "productId:query:integer:req", "pageNo:query:integer", "pageSize:query:integer" },
      product_details = { "GET /product/openapi/instance_product/v1/detail", "productNo:query:string:req",
        "productId:query:integer:req" },
      product_model = { "GET /product/openapi/instance/v1/product_model", "productNo:query:string:req",
        "productId:query:integer:req" },
      regions = { "GET /product/openapi/instance/v1/region_list" },
      enable_auto_renewal = { "POST /product/openapi/instance_subscription/v1/active",
        "productNo:body:string:req", "productId:body:string:req", "planOrServiceId:body:integer:req" },
      auto_renewal_status = { "GET /order/openapi/order/v1/check/existed_auto_renew",
        "productNo:query:string:req", "productId:query:integer:req" },
      subordinate_users = { "GET /user/openapi/user/v1/client/partner_list" },
      subordinate_user = { "GET /user/openapi/user/v1/subordinate_user/{partnerId}",
        "partnerId:path:string:req" },
      create_subordinate_user = { "POST /user/openapi/user/v1/client/save_user", "userType:body:string:req",
        "yeastarId:body:string:req", "company:body:string:req", "country:body:string:req",
        "firstName:body:string", "lastName:body:string", "phoneNumber:body:string",
        "stateProvince:body:string", "city:body:string", "street:body:string", "zipCode:body:string",
        "taxType:body:string", "taxNum:body:string", "remark:body:string",
        "sendUserActivationEmail:body:boolean" },
      edit_subordinate_user = { "POST /user/openapi/user/v1/client/edit_user", "yeastarId:body:string:req",
        "userType:body:string:req", "company:body:string", "firstName:body:string", "lastName:body:string",
        "phoneNumber:body:string", "stateProvince:body:string", "city:body:string", "street:body:string",
        "zipCode:body:string", "taxType:body:string", "taxNum:body:string", "remark:body:string" },
      countries = { "GET /user/openapi/area/v1/page", "pageSize:query:integer", "pageNo:query:integer",
        "sort:query:string", "name:query:string" },
      billing_contacts = { "GET /user/openapi/user/v1/client/billing_contact_list" },
      create_order = { "POST /order/openapi/order/v1/save", "operationType:body:string:req",
        "productNo:body:string", "productId:body:integer:req", "assignId:body:string", "partnerId:body:string",
        "billingId:body:integer:req", "poNumber:body:string", "serviceList:body:list:req",
        "orderPceSpecialRequest:body:object" },
      orders = { "GET /order/openapi/order/v1/page", "pageSize:query:integer", "pageNo:query:integer",
        "sort:query:string" },
      order_details = { "GET /order/openapi/order/v1/get/{id}", "id:path:string:req" },
    }

    it("has the 27 documented operations, each with method, path and parameters in wire order", function()
      local got = {}
      for name, ep in pairs(partner.endpoints) do
        local parts = { ep.method .. " " .. ep.path }
        for _, p in ipairs(ep.params) do
          parts[#parts + 1] = p.name .. ":" .. p.place .. ":" .. p.type .. (p.required and ":req" or "")
        end
        got[name] = parts
      end
      assert.same(SIGNATURES, got)
    end)

    it("marks the three paged lists, and only create_order and create_subordinate_user as not replay-safe", function()
      local paged, unsafe = {}, {}
      for name, ep in pairs(partner.endpoints) do
        if ep.paged then paged[#paged + 1] = name end
        if not ep.replay_safe then unsafe[#unsafe + 1] = name end
      end
      table.sort(paged)
      table.sort(unsafe)
      assert.same({ "countries", "orders", "products" }, paged)
      assert.same({ "create_order", "create_subordinate_user" }, unsafe)
    end)

    it("has a describe block in this file for every endpoint", function()
      local names = {}
      for name in pairs(partner.endpoints) do names[name] = true end
      assert.same(names, covered)
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- Tokens

  endpoint("request_access_token", function()
    it("posts the credentials as a form, without a bearer header; returns Token_Details minus the tokens", function()
      local client = new_client()
      local res, err = client:request_access_token()
      assert.is_nil(err)
      assert.same({ expiresIn = "1800", tokenHead = "Bearer" }, res)
      local reqs = portal:requests()
      assert.equal(1, #reqs)
      check_login(reqs[1])
      assert.equal(partner.endpoints.request_access_token.path, reqs[1].path)
    end)

    it("is used by the next call: no second login", function()
      local client = new_client()
      assert.truthy(client:request_access_token())
      assert.truthy(client:regions())
      assert.truthy(client:billing_contacts())
      local reqs = portal:requests()
      assert.equal(3, #reqs)
      check_login(reqs[1])
      check_request(reqs[2], { method = "GET", path = "/product/openapi/instance/v1/region_list" })
      check_request(reqs[3], { method = "GET", path = "/user/openapi/user/v1/client/billing_contact_list" })
      assert.equal(reqs[2].header["authorization"], reqs[3].header["authorization"])
    end)

    it("percent-encodes the credentials in the form body", function()
      local client = new_client { client_secret = "a b&c=d+é" }
      local res, err = client:request_access_token()
      assert.is_nil(res)
      assert.equal("auth", err.kind)
      assert.equal("invalid_client", err.code)
      assert.equal(401, err.status)
      local reqs = portal:requests()
      assert.equal(1, #reqs) -- a refused login is not retried
      assert.equal("client_id=yp-demo-client&client_secret=a%20b%26c%3Dd%2B%C3%A9&grant_type=pp_credentials",
        reqs[1].body)
      check_headers(reqs[1], "form")
    end)

    it("takes no parameters", function()
      local client = new_client()
      assert.has_error(function() client:request_access_token { grant_type = "x" } end,
        "request_access_token: takes no parameters")
      assert.equal(0, #portal:requests())
    end)
  end)

  endpoint("refresh_access_token", function()
    it("sends grant_type=refresh_token with the latest refresh token; the next call uses the new token", function()
      local client = new_client()
      assert.truthy(client:regions())
      local res, err = client:refresh_access_token()
      assert.is_nil(err)
      assert.same({ expiresIn = "1800", tokenHead = "Bearer" }, res)
      assert.truthy(client:refresh_access_token()) -- rotation: the second refresh needs the new token
      assert.truthy(client:regions())
      local reqs = portal:requests()
      assert.equal(5, #reqs)
      check_login(reqs[1])
      for i = 3, 4 do
        local r = reqs[i]
        assert.equal("POST", r.method)
        assert.equal(TOKEN_PATH, r.path)
        assert.equal("", r.query)
        assert.matches(REFRESH_PATTERN, r.body)
        assert.is_nil(r.header["authorization"])
        check_headers(r, "form")
      end
      assert.not_equal(reqs[3].body, reqs[4].body)
      check_request(reqs[5], { method = "GET", path = "/product/openapi/instance/v1/region_list" })
      assert.not_equal(reqs[2].header["authorization"], reqs[5].header["authorization"])
    end)

    it("fails without I/O before any login", function()
      local client = new_client()
      local res, err = client:refresh_access_token()
      assert.is_nil(res)
      assert.equal("auth", err.kind)
      assert.equal("no_refresh_token", err.code)
      assert.equal("refresh_access_token", err.endpoint)
      assert.equal(0, #portal:requests())
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- Pricing

  endpoint("subscription_products", function()
    it("GETs the product list", function()
      local res, r = ok_call("subscription_products")
      check_request(r, { method = "GET", path = descriptor_path("subscription_products", {}) })
      assert.equal("/pricing/openapi/purchase/v1/product_list", r.path)
      assert.same({
        { name = "Linkus Cloud Service", productId = 9 },
        { name = "P-Series Plan for Appliance Edition", productId = 11 },
        { name = "P-Series Software Edition", productId = 12 },
        { name = "P-Series Cloud Edition", productId = 13 },
        { name = "P-Series Turnkey Package", productId = 14 },
        { name = "Remote Management", productId = 15 },
        { name = "Add-on Service", productId = 19 },
        { name = "Remote Management Premium", productId = 21 },
      }, res)
    end)

    it("decodes productId as a Lua integer #integers", function()
      local res = ok_call("subscription_products")
      assert.equal("integer", math.type(res[6].productId))
      assert.equal(15, res[6].productId)
    end)

    it("decodes productId as a number: small integers are exact doubles #doubles", function()
      local res = ok_call("subscription_products")
      assert.equal("number", type(res[6].productId))
      assert.equal(15, res[6].productId)
    end)
  end)

  endpoint("plans_and_services", function()
    it("GETs product 15's plans (seed 002 step 2) with 64-bit plan IDs exact", function()
      local res, r = ok_call("plans_and_services", { productId = 15 })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/purchase_product_info",
        query = "productId=15" })
      assert.same({
        offeringId = "3049036224189300015",
        planList = {
          { name = "Remote Management Account", planId = id("3049036224189325312") },
          { name = "Remote Management Trial", planId = id("3049036224189325400") },
        },
        serviceList = {
          { name = "Remote Management Connections", pricingServiceId = 27950, serviceId = id("3049036224189326000") },
        },
      }, res)
    end)

    it("sends productId before productNo, whatever the caller's types", function()
      local res, r = ok_call("plans_and_services", { productNo = "3651E0529415", productId = "12" })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/purchase_product_info",
        query = "productId=12&productNo=3651E0529415" })
      assert.same({
        offeringId = "3049036224189300012",
        planList = { { name = "Enterprise Plan", planId = id("3049040650094403584") } },
        serviceList = {},
      }, res)
    end)

    it("decodes the 19-digit plan IDs as exact Lua integers #integers", function()
      local client = new_client()
      local p15 = assert(client:plans_and_services { productId = 15 })
      local p12 = assert(client:plans_and_services { productNo = "3651E0529415", productId = "12" })
      assert.equal("integer", math.type(p15.planList[1].planId))
      assert.equal(3049036224189325312, p15.planList[1].planId)
      assert.equal(3049036224189325400, p15.planList[2].planId) -- as a double it would equal the first
      assert.equal("integer", math.type(p12.planList[1].planId))
      assert.equal(3049040650094403584, p12.planList[1].planId)
    end)

    it("decodes the 19-digit plan IDs as their exact decimal strings #doubles", function()
      local client = new_client()
      local p15 = assert(client:plans_and_services { productId = 15 })
      local p12 = assert(client:plans_and_services { productNo = "3651E0529415", productId = "12" })
      -- Strings beyond 2^53 whether or not the double would be exact: Account's is, Trial's is
      -- not (it would read as Account's).
      assert.same({ "3049036224189325312", "3049036224189325400" },
        { p15.planList[1].planId, p15.planList[2].planId })
      assert.equal("3049036224189326000", p15.serviceList[1].serviceId)
      assert.equal("3049040650094403584", p12.planList[1].planId)
      assert.equal(27950, p15.serviceList[1].pricingServiceId) -- small integers stay numbers
    end)
  end)

  local PLAN_27901 = {
    billingCycleList = { "monthly", "annually" }, billingModelList = { "recurring" },
    name = "Enterprise Plan", planId = "3048560232537899008", pricingPlanId = 27901,
    purchaseMultiCycleList = { 1, 2, 3 },
  }

  endpoint("trial_plan_info", function()
    it("puts pricingPlanId in the path (an integer is sent as its text)", function()
      local res, r = ok_call("trial_plan_info", { pricingPlanId = 27901, productId = 11 })
      check_request(r, { method = "GET",
        path = descriptor_path("trial_plan_info", { pricingPlanId = "27901" }), query = "productId=11" })
      assert.equal("/pricing/openapi/purchase/v1/trial/plan_info/27901", r.path)
      assert.same(merge(PLAN_27901, { trialPeriod = 30 }), res)
    end)

    it("decodes pricingPlanId as a Lua integer #integers", function()
      local res = ok_call("trial_plan_info", { pricingPlanId = 27901, productId = 11 })
      assert.equal("integer", math.type(res.pricingPlanId))
      assert.equal(27901, res.pricingPlanId)
    end)

    it("decodes pricingPlanId as a number #doubles", function()
      local res = ok_call("trial_plan_info", { pricingPlanId = 27901, productId = 11 })
      assert.equal("number", type(res.pricingPlanId))
      assert.equal(27901, res.pricingPlanId)
    end)

    it("requires pricingPlanId", function()
      local client = new_client()
      assert.has_error(function() client:trial_plan_info { productId = 11 } end,
        "trial_plan_info: parameter 'pricingPlanId' is required")
      assert.equal(0, #portal:requests())
    end)
  end)

  endpoint("subscription_plan_info", function()
    it("GETs purchase/plan_info with the optional productNo after productId", function()
      local res, r = ok_call("subscription_plan_info",
        { productNo = "3632E0965333", pricingPlanId = "27901", productId = 11 })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/purchase/plan_info/27901",
        query = "productId=11&productNo=3632E0965333" })
      assert.same(PLAN_27901, res)
    end)
  end)

  endpoint("renewal_plan_info", function()
    it("GETs renew/plan_info", function()
      local res, r = ok_call("renewal_plan_info",
        { pricingPlanId = "27901", productId = 11, productNo = "3632E0965333" })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/renew/plan_info/27901",
        query = "productId=11&productNo=3632E0965333" })
      assert.same(PLAN_27901, res)
    end)

    it("requires productNo (unlike the trial and purchase variants)", function()
      local client = new_client()
      assert.has_error(function() client:renewal_plan_info { pricingPlanId = "27901", productId = 11 } end,
        "renewal_plan_info: parameter 'productNo' is required")
      assert.equal(0, #portal:requests())
    end)

    it("returns the portal's 404 for an unknown plan", function()
      local res, err, r = call("renewal_plan_info", { pricingPlanId = "1", productId = 11, productNo = "3632E0965333" })
      assert.equal("/pricing/openapi/purchase/v1/renew/plan_info/1", r.path)
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("plan_not_found", err.code)
      assert.equal(404, err.status)
      assert.equal("no pricing plan 1 for productId 11", err.message)
    end)
  end)

  local ADD_ON_27946 = {
    billingCycleList = { "annually" }, billingModelList = { "recurring" }, connectionServiceList = {},
    name = "Hotel PMS Integration", pricingServiceId = 27946, purchaseMultiCycleList = { 1, 2, 3 },
    purchaseParameter = "", purchaseParameterId = partner.null, serviceId = "3116037397465776128",
    unitName = "",
  }

  endpoint("trial_service_info", function()
    it("sends all four parameters, connectionPlanId as a 19-digit integer", function()
      local res, r = ok_call("trial_service_info", { connectionPlanId = "3048560232537899008",
        productNo = "3632E0965333", productId = 11, pricingServiceId = 27946 })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/trial/add_on_info/27946",
        query = "productId=11&productNo=3632E0965333&connectionPlanId=3048560232537899008" })
      assert.same(merge(ADD_ON_27946, { purchaseType = { "trial" }, trialPeriod = 30, trialPrice = 0.0,
        trialQuantity = 1 }), res)
    end)

    local TRIAL_ADD_ON = { connectionPlanId = "3048560232537899008", productNo = "3632E0965333", productId = 11,
      pricingServiceId = 27946 }

    it("decodes trialPrice 0.0 as a float and trialQuantity 1 as an integer #integers", function()
      local res = ok_call("trial_service_info", TRIAL_ADD_ON)
      assert.equal("float", math.type(res.trialPrice))
      assert.equal("integer", math.type(res.trialQuantity))
    end)

    it("decodes trialPrice 0.0 and trialQuantity 1 as numbers: no subtype to keep #doubles", function()
      local res = ok_call("trial_service_info", TRIAL_ADD_ON)
      assert.same({ "number", "number" }, { type(res.trialPrice), type(res.trialQuantity) })
      assert.same({ 0, 1 }, { res.trialPrice, res.trialQuantity })
    end)
  end)

  endpoint("subscription_service_info", function()
    local MAX_QUERY = "productId=11&connectionPlanId=9223372036854775807"

    it("GETs purchase/add_on_info, connectionPlanId = int64 max sent with every digit", function()
      local res, r = ok_call("subscription_service_info",
        { pricingServiceId = "27946", productId = 11, connectionPlanId = "9223372036854775807" })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/purchase/add_on_info/27946",
        query = MAX_QUERY })
      assert.same(merge(ADD_ON_27946, { purchaseType = { "purchase" } }), res)
    end)

    it("sends math.maxinteger with every digit #integers", function()
      local res, r = ok_call("subscription_service_info",
        { pricingServiceId = "27946", productId = 11, connectionPlanId = math.maxinteger })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/purchase/add_on_info/27946",
        query = MAX_QUERY })
      assert.same(merge(ADD_ON_27946, { purchaseType = { "purchase" } }), res)
    end)

    it("refuses int64 max as a number (a double, 2^63); LuaJIT int64 cdata goes out exactly #doubles", function()
      refuses_number("subscription_service_info",
        { pricingServiceId = "27946", productId = 11, connectionPlanId = 9223372036854775807 }, "connectionPlanId")
      if jit then
        local res, r = ok_call("subscription_service_info",
          { pricingServiceId = "27946", productId = 11, connectionPlanId = int64("9223372036854775807") })
        check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/purchase/add_on_info/27946",
          query = MAX_QUERY })
        assert.same(merge(ADD_ON_27946, { purchaseType = { "purchase" } }), res)
      end
    end)
  end)

  endpoint("renewal_service_info", function()
    it("sends seed 003's request and returns seed 003's result", function()
      local res, r = ok_call("renewal_service_info",
        { pricingServiceId = "27946", productNo = "3632E0965333", productId = 11 })
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/renew/add_on_info/27946",
        query = "productNo=3632E0965333&productId=11" })
      assert.same(SEED_003_RESULT, res)
      assert.equal(partner.null, res.purchaseParameterId)
      assert.equal("string", type(res.serviceId))
      assert.equal(0, #res.connectionServiceList)
    end)

    local SEED_003_PARAMS = { pricingServiceId = "27946", productNo = "3632E0965333", productId = 11 }

    it("decodes pricingServiceId as a Lua integer #integers", function()
      local res = ok_call("renewal_service_info", SEED_003_PARAMS)
      assert.equal("integer", math.type(res.pricingServiceId))
      assert.equal(27946, res.pricingServiceId)
    end)

    it("decodes pricingServiceId as a number #doubles", function()
      local res = ok_call("renewal_service_info", SEED_003_PARAMS)
      assert.equal("number", type(res.pricingServiceId))
      assert.equal(27946, res.pricingServiceId)
    end)
  end)

  endpoint("subscription_price", function()
    local PRICE_PARAMS = { offeringId = "3049036224189300015", billingCycle = "annually",
      partnerId = "customer1@example.com", productId = 15 }

    it("percent-encodes partnerId in the query and returns the 64-bit planId exactly", function()
      local res, r = ok_call("subscription_price", PRICE_PARAMS)
      check_request(r, { method = "GET", path = "/pricing/openapi/purchase/v1/my_price_info",
        query = "productId=15&partnerId=customer1%40example.com&billingCycle=annually&offeringId=3049036224189300015" })
      assert.same({
        offeringId = "3049036224189300015",
        planList = { { currencyCode = "USD", name = "Remote Management Account",
          planId = id("3049036224189325312"), price = 60.0 } },
        serviceList = {},
      }, res)
    end)

    it("decodes planId as a Lua integer and price 60.0 as a float #integers", function()
      local res = ok_call("subscription_price", PRICE_PARAMS)
      assert.equal("integer", math.type(res.planList[1].planId))
      assert.equal(3049036224189325312, res.planList[1].planId)
      assert.equal("float", math.type(res.planList[1].price))
    end)

    it("decodes planId as its exact decimal string and price as a number #doubles", function()
      local res = ok_call("subscription_price", PRICE_PARAMS)
      assert.equal("3049036224189325312", res.planList[1].planId)
      assert.equal("number", type(res.planList[1].price))
      assert.equal(60, res.planList[1].price)
    end)

    it("sends a 20-digit offeringId as given and gets the same string back", function()
      local res, r = ok_call("subscription_price",
        { productId = 15, billingCycle = "annually", offeringId = "17896360390850257349" })
      assert.equal("productId=15&billingCycle=annually&offeringId=17896360390850257349", r.query)
      assert.equal("17896360390850257349", res.offeringId)
    end)
  end)

  endpoint("calculate_subscription_price", function()
    -- pricingId given as the caller likes (int64 max as a string, an integer, a cdata).
    local function params(pricing_id)
      return {
        partnerView = "customer1@example.com", operationType = "renew_plan", productNo = "3076913644890832896",
        productId = "15",
        serviceList = { { multiCycle = 1, billingCycle = "annually", billingModel = "recurring",
          purchaseType = "renew", quantity = 1, pricingId = pricing_id, serviceType = "plan" } },
      }
    end
    local CALCULATE = { method = "POST", path = "/pricing/openapi/purchase/v1/pricing/calculate",
      body = '{"productId":15,"productNo":"3076913644890832896","operationType":"renew_plan",'
        .. '"serviceList":[{"serviceType":"plan","pricingId":9223372036854775807,"quantity":1,'
        .. '"purchaseType":"renew","billingModel":"recurring","billingCycle":"annually","multiCycle":1}],'
        .. '"partnerView":"customer1@example.com"}' }

    it("POSTs a compact body in descriptor order, pricingId = int64 max as a JSON number", function()
      local res, r = ok_call("calculate_subscription_price", params("9223372036854775807"))
      check_request(r, CALCULATE)
      assert.same({ currencyCode = "USD", totalPrice = 120.5 }, res)
      assert.equal(id("9223372036854775807"), partner.json_decode(r.body).serviceList[1].pricingId)
    end)

    it("sends math.maxinteger as pricingId with every digit; totalPrice is a float #integers", function()
      local res, r = ok_call("calculate_subscription_price", params(math.maxinteger))
      check_request(r, CALCULATE)
      assert.same({ currencyCode = "USD", totalPrice = 120.5 }, res)
      assert.equal("float", math.type(res.totalPrice))
      assert.equal(math.maxinteger, partner.json_decode(r.body).serviceList[1].pricingId)
    end)

    it("sends a body several times libcurl's upload buffer (transport_curl sets 16 KiB) byte for byte", function()
      local big = params("9223372036854775807")
      for i = 2, 600 do big.serviceList[i] = big.serviceList[1] end
      local want = new_client():prepare("calculate_subscription_price", big).body
      assert.is_true(#want > 4 * 16 * 1024, #want)
      local _, _, r = call("calculate_subscription_price", big)
      assert.equal("POST", r.method)
      assert.equal(#want, #r.body)
      assert.equal(want, r.body)
    end)

    it("refuses int64 max as a number inside serviceList; LuaJIT int64 cdata goes out exactly #doubles", function()
      refuses_number("calculate_subscription_price", params(9223372036854775807), "serviceList[1].pricingId")
      if jit then
        local res, r = ok_call("calculate_subscription_price", params(int64("9223372036854775807")))
        check_request(r, CALCULATE)
        assert.same({ currencyCode = "USD", totalPrice = 120.5 }, res)
        assert.equal("9223372036854775807", partner.json_decode(r.body).serviceList[1].pricingId)
      end
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- Products

  endpoint("products", function()
    it("GETs one page of a product's devices; integers accepted as strings and exact floats", function()
      local res, r = ok_call("products", { pageSize = "1", pageNo = 2.0, productId = 12 })
      check_request(r, { method = "GET",
        path = "/product/openapi/instance_product/v1/client/instance_product_list",
        query = "productId=12&pageNo=2&pageSize=1" })
      -- The seed expiries count from the portal's today (checked in 20-audit_spec).
      local expiry = portal:state().devices["3651E0529416"].expiry
      assert.same({
        count = 2, pageNo = 2, pageSize = 1, total = 2, totalPage = 2,
        results = { {
          activationCode = "AC0000049416", activationStatus = "activated", comment = "",
          createTime = 1704326400000, currentPlanExpireDate = expiry, productId = 12,
          productNo = "3651E0529416",
        } },
      }, res)
    end)

    it("decodes the millisecond createTime as a Lua integer #integers", function()
      local res = ok_call("products", { pageSize = 1, pageNo = 2, productId = 12 })
      assert.equal("integer", math.type(res.results[1].createTime))
      assert.equal(1704326400000, res.results[1].createTime)
    end)

    it("decodes the millisecond createTime as an exact number: far below 2^53 #doubles", function()
      local res = ok_call("products", { pageSize = 1, pageNo = 2, productId = 12 })
      assert.equal("number", type(res.results[1].createTime))
      assert.equal(1704326400000, res.results[1].createTime)
    end)
  end)

  endpoint("product_details", function()
    it("GETs productNo then productId", function()
      local res, r = ok_call("product_details", { productId = 12, productNo = "3651E0529415" })
      check_request(r, { method = "GET", path = "/product/openapi/instance_product/v1/detail",
        query = "productNo=3651E0529415&productId=12" })
      assert.same({
        activationCode = "AC0000019415", activationStatus = "activated", autoRenew = true, comment = "",
        createTime = 1704067200000, currentPlanExpireDate = portal:state().devices["3651E0529415"].expiry,
        planId = id("3049040650094403584"), planName = "Enterprise Plan", productId = 12,
        productNo = "3651E0529415",
      }, res)
    end)
  end)

  endpoint("product_model", function()
    it("GETs the model of a device", function()
      local res, r = ok_call("product_model", { productNo = "3632E0965333", productId = 11 })
      check_request(r, { method = "GET", path = "/product/openapi/instance/v1/product_model",
        query = "productNo=3632E0965333&productId=11" })
      assert.same({ productModel = "P560" }, res)
    end)
  end)

  endpoint("regions", function()
    it("GETs the region list", function()
      local res, r = ok_call("regions")
      check_request(r, { method = "GET", path = "/product/openapi/instance/v1/region_list" })
      assert.same({
        { id = "1", name = "Europe",
          region = { { pbxSubDomain = { "eu1.pbx.example" }, pbxSubDomainId = "101" } } },
        { id = "2", name = "North America",
          region = { { pbxSubDomain = { "us1.pbx.example" }, pbxSubDomainId = "201" } } },
      }, res)
    end)
  end)

  endpoint("enable_auto_renewal", function()
    local ENABLE = { method = "POST", path = "/product/openapi/instance_subscription/v1/active",
      body = SEED_000_BODY }

    it("sends seed 000's body byte for byte (productId a JSON string, planOrServiceId a 19-digit number) #integers", function()
      local res, r = ok_call("enable_auto_renewal",
        { planOrServiceId = 3049040650094403584, productId = 12, productNo = "3651E0529415" })
      check_request(r, ENABLE)
      assert.is_true(res)
    end)

    it("refuses the 19-digit planOrServiceId as a number; LuaJIT int64 cdata sends seed 000's bytes #doubles", function()
      -- Refused even though this double happens to be exact: above 2^53 the module cannot tell.
      refuses_number("enable_auto_renewal",
        { planOrServiceId = 3049040650094403584, productId = 12, productNo = "3651E0529415" }, "planOrServiceId")
      if jit then
        local res, r = ok_call("enable_auto_renewal",
          { planOrServiceId = int64("3049040650094403584"), productId = int64("12U"), productNo = "3651E0529415" })
        check_request(r, ENABLE)
        assert.is_true(res)
      end
    end)

    it("sends the same bytes when productId is a string and planOrServiceId a decimal string", function()
      local res, r = ok_call("enable_auto_renewal",
        { planOrServiceId = "3049040650094403584", productId = "12", productNo = "3651E0529415" })
      check_request(r, ENABLE)
      assert.is_true(res)
      assert.equal(id("3049040650094403584"), partner.json_decode(r.body).planOrServiceId)
    end)

    it("turns auto-renewal on in the portal", function()
      assert.is_false(portal:state().devices["3651E0529416"].autoRenew)
      local res, r = ok_call("enable_auto_renewal",
        { productNo = "3651E0529416", productId = 12, planOrServiceId = id("3049040650094403584") })
      assert.equal('{"productNo":"3651E0529416","productId":"12","planOrServiceId":3049040650094403584}', r.body)
      assert.is_true(res)
      assert.is_true(portal:state().devices["3651E0529416"].autoRenew)
    end)

    it("raises on a float planOrServiceId that already lost digits, and sends nothing", function()
      local client = new_client()
      assert.has_error(function()
        client:enable_auto_renewal { productNo = "3651E0529415", productId = 12, planOrServiceId = 3.0490406500944e+18 }
      end, "enable_auto_renewal: parameter 'planOrServiceId' is a number that cannot hold an exact integer; "
        .. "pass an integer or a decimal string")
      assert.equal(0, #portal:requests())
    end)
  end)

  endpoint("auto_renewal_status", function()
    it("sends seed 001's query and returns {autoRenew = true}", function()
      local res, r = ok_call("auto_renewal_status", { productNo = "3651E0529415", productId = 12 })
      check_request(r, { method = "GET", path = "/order/openapi/order/v1/check/existed_auto_renew",
        query = "productNo=3651E0529415&productId=12" })
      assert.same({ autoRenew = true }, res)
    end)

    it("returns false for a device without auto-renewal", function()
      local res = ok_call("auto_renewal_status", { productNo = "3632E0965333", productId = "11" })
      assert.same({ autoRenew = false }, res)
    end)

    -- The transport keeps a connection's header list while its lines stay the same: a GET after
    -- a GET reuses it; a POST, the GET after it and a GET with a new token must not.
    it("sends each request's own header lines: GETs and a POST on one client, then a new token", function()
      local client = new_client()
      local status = { productNo = "3651E0529415", productId = 12 }
      assert.truthy(client:auto_renewal_status(status))
      assert.truthy(client:auto_renewal_status(status))
      assert.truthy(client:enable_auto_renewal {
        productNo = "3651E0529415", productId = 12, planOrServiceId = "3049040650094403584" })
      assert.truthy(client:auto_renewal_status(status))
      local reqs = portal:requests()
      assert.equal(5, #reqs)
      check_login(reqs[1])
      local get = { method = "GET", path = "/order/openapi/order/v1/check/existed_auto_renew",
        query = "productNo=3651E0529415&productId=12" }
      check_request(reqs[2], get)
      check_request(reqs[3], get)
      check_request(reqs[4], { method = "POST", path = "/product/openapi/instance_subscription/v1/active",
        body = SEED_000_BODY })
      check_request(reqs[5], get)
      portal:expire_tokens() -- the next GET is refused (401), refreshes and is sent again
      assert.truthy(client:auto_renewal_status(status))
      reqs = portal:requests()
      assert.equal(8, #reqs)
      assert.equal(reqs[5].header["authorization"], reqs[6].header["authorization"])
      assert.equal(TOKEN_PATH, reqs[7].path)
      check_request(reqs[8], get)
      assert.not_equal(reqs[6].header["authorization"], reqs[8].header["authorization"])
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- Users

  local USER_1 = {
    partnerId = "customer1@example.com", email = "customer1@example.com", firstName = "Maria",
    lastName = "Schmidt", company = "Schmidt Hotels GmbH", country = "Germany", stateProvince = "Bayern",
    city = "München", street = "Leopoldstraße 1", zipCode = "80802", phoneNumber = "+49 89 123456",
    taxNum = "DE123456789", remark = "", userType = "Enduser",
  }
  local USER_2 = {
    partnerId = "customer2@example.com", email = "customer2@example.com", firstName = "John",
    lastName = "Doe", company = "Doe Logistics Inc.", country = "United States", stateProvince = "Texas",
    city = "Austin", street = "100 Congress Ave", zipCode = "78701", phoneNumber = "+1 512 5550100",
    taxNum = "", remark = "VIP", userType = "Enduser",
  }

  endpoint("subordinate_users", function()
    it("GETs the partner list (UTF-8 kept)", function()
      local res, r = ok_call("subordinate_users")
      check_request(r, { method = "GET", path = "/user/openapi/user/v1/client/partner_list" })
      assert.same({ USER_1, USER_2 }, res)
    end)
  end)

  endpoint("subordinate_user", function()
    it("percent-encodes partnerId in the path", function()
      local res, r = ok_call("subordinate_user", { partnerId = "customer1@example.com" })
      check_request(r, { method = "GET",
        path = descriptor_path("subordinate_user", { partnerId = "customer1%40example.com" }) })
      assert.equal("/user/openapi/user/v1/subordinate_user/customer1%40example.com", r.path)
      assert.same(USER_1, res)
    end)

    it("returns the portal's 404 for an unknown user", function()
      local res, err, r = call("subordinate_user", { partnerId = "nobody+x@example.com" })
      assert.equal("/user/openapi/user/v1/subordinate_user/nobody%2Bx%40example.com", r.path)
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("user_not_found", err.code)
      assert.equal(404, err.status)
      assert.equal("no subordinate user nobody+x@example.com", err.message)
    end)
  end)

  endpoint("create_subordinate_user", function()
    it("POSTs every field in descriptor order and the user then exists", function()
      local res, r = ok_call("create_subordinate_user", {
        sendUserActivationEmail = false, remark = "via API", taxNum = "DE111", taxType = "VAT_number",
        zipCode = "10115", street = "Chausseestraße 5", city = "Berlin", stateProvince = "Berlin",
        phoneNumber = "+49 30 555", lastName = "Mustermann", firstName = "Erika", country = "Germany",
        company = "Muster & Co", yeastarId = "erika@example.com", userType = "Customer",
      })
      check_request(r, { method = "POST", path = "/user/openapi/user/v1/client/save_user",
        body = '{"userType":"Customer","yeastarId":"erika@example.com","company":"Muster & Co",'
          .. '"country":"Germany","firstName":"Erika","lastName":"Mustermann","phoneNumber":"+49 30 555",'
          .. '"stateProvince":"Berlin","city":"Berlin","street":"Chausseestraße 5","zipCode":"10115",'
          .. '"taxType":"VAT_number","taxNum":"DE111","remark":"via API","sendUserActivationEmail":false}' })
      assert.is_true(res)
      local users = portal:state().users
      assert.equal(3, #users)
      assert.same({
        partnerId = "erika@example.com", email = "erika@example.com", userType = "Enduser",
        firstName = "Erika", lastName = "Mustermann", company = "Muster & Co", country = "Germany",
        stateProvince = "Berlin", city = "Berlin", street = "Chausseestraße 5", zipCode = "10115",
        phoneNumber = "+49 30 555", taxNum = "DE111", remark = "via API",
      }, users[3])
    end)

    it("returns the portal's 400 for an existing user", function()
      local res, err, r = call("create_subordinate_user", { userType = "Customer",
        yeastarId = "customer1@example.com", company = "X", country = "Germany", firstName = "M" })
      assert.equal('{"userType":"Customer","yeastarId":"customer1@example.com","company":"X",'
        .. '"country":"Germany","firstName":"M"}', r.body)
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("user_exists", err.code)
      assert.equal(400, err.status)
      assert.equal(2, #portal:requests()) -- not retried
    end)
  end)

  endpoint("edit_subordinate_user", function()
    it("POSTs only the given fields, yeastarId and userType first", function()
      local res, r = ok_call("edit_subordinate_user", { remark = "moved", company = "Doe Freight Inc.",
        userType = "Customer", yeastarId = "customer2@example.com" })
      check_request(r, { method = "POST", path = "/user/openapi/user/v1/client/edit_user",
        body = '{"yeastarId":"customer2@example.com","userType":"Customer","company":"Doe Freight Inc.",'
          .. '"remark":"moved"}' })
      assert.is_true(res)
      assert.same(merge(USER_2, { company = "Doe Freight Inc.", remark = "moved" }), portal:state().users[2])
    end)
  end)

  endpoint("countries", function()
    it("sends the query in descriptor order and returns the page", function()
      local res, r = ok_call("countries", { name = "an", sort = "-name", pageNo = 1, pageSize = 2 })
      check_request(r, { method = "GET", path = "/user/openapi/area/v1/page",
        query = "pageSize=2&pageNo=1&sort=-name&name=an" })
      assert.same({
        count = 5, pageNo = 1, pageSize = 2, total = 5, totalPage = 3,
        results = { { code = "NL", id = 528, name = "Netherlands" }, { code = "JP", id = 392, name = "Japan" } },
      }, res)
    end)

    it("percent-encodes a name with a space and '&' (one parameter, not two)", function()
      local res, r = ok_call("countries", { name = "Trinidad & Tobago" })
      assert.equal("name=Trinidad%20%26%20Tobago", r.query)
      assert.same({ count = 0, pageNo = 1, pageSize = 25, total = 0, totalPage = 0, results = {} }, res)
    end)

    it("percent-encodes UTF-8 and the apostrophe", function()
      local res, r = ok_call("countries", { name = "Côte d'Ivoire" })
      assert.equal("name=C%C3%B4te%20d%27Ivoire", r.query)
      assert.same({ { code = "CI", id = 384, name = "Côte d'Ivoire" } }, res.results)
    end)

    -- A single call writes its URL into a fixed buffer when it fits (client.c's endpoint_method):
    -- URLs of 510 to 513 bytes straddle that buffer's end, and a 1,200-byte query is far past it.
    it("sends a URL of any length whole, around and past the single call's URL buffer", function()
      local path = "/user/openapi/area/v1/page"
      local fixed = #portal.base_url + #path + #"?name="
      for _, total in ipairs{ 510, 511, 512, 513 } do
        local name = ("n"):rep(total - fixed)
        local _, r = ok_call("countries", { name = name })
        assert.equal(path, r.path)
        assert.equal("name=" .. name, r.query)
        portal:reset()
      end
      local name = ("\195\188"):rep(200) .. " & x" -- u-umlaut x 200: 6 bytes each once encoded
      local encoded = ("%C3%BC"):rep(200) .. "%20%26%20x"
      local _, r, client = ok_call("countries", { name = name })
      assert.equal("name=" .. encoded, r.query)
      assert.equal(portal.base_url .. path .. "?name=" .. encoded, client:prepare("countries", { name = name }).url)
    end)
  end)

  endpoint("billing_contacts", function()
    local CONTACT_1 = {
      billingContactId = "3197218168379846218", emailAddress = "billing@example.com", firstName = "Alex",
      lastName = "Reseller", company = "Example Reseller Ltd", country = "Germany", stateProvince = "Berlin",
      city = "Berlin", street = "Friedrichstraße 100", zipCode = "10117", phoneNumber = "+49 30 1234567",
      taxNum = "DE987654321", remark = "",
    }

    it("GETs the contacts; the 19-digit billingContactId stays a string", function()
      local res, r = ok_call("billing_contacts")
      check_request(r, { method = "GET", path = "/user/openapi/user/v1/client/billing_contact_list" })
      assert.same({ CONTACT_1 }, res)
    end)

    it("lists a second contact when the portal has two", function()
      portal:config { billing_contacts = 2 }
      local res = ok_call("billing_contacts")
      assert.equal(2, #res)
      assert.same(CONTACT_1, res[1])
      assert.equal("3197218168379846219", res[2].billingContactId)
      assert.equal("finance@example.com", res[2].emailAddress)
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- Orders

  endpoint("create_order", function()
    it("sends seed 002's body byte for byte and returns seed 002's result", function()
      local res, r = ok_call("create_order", seed_002_params())
      check_request(r, { method = "POST", path = "/order/openapi/order/v1/save", body = SEED_002_BODY })
      assert.same(SEED_002_RESULT, res)
      -- The portal stored the exact IDs (its control plane gives integers beyond 2^53 as strings).
      local order = portal:state().orders[1]
      assert.equal("3197218168379846218", order.body.billingId)
      assert.equal("3049036224189325312", order.body.serviceList[1].serviceId)
      assert.equal(15, order.body.productId)
      -- And the module's decoder reads the recorded body back exactly.
      local sent = partner.json_decode(r.body)
      assert.equal(id("3197218168379846218"), sent.billingId)
      assert.equal(id("3049036224189325312"), sent.serviceList[1].serviceId)
    end)

    it("sends the 19-digit IDs given as integer literals, and reads them back as integers #integers", function()
      local params = seed_002_params()
      params.billingId = 3197218168379846218
      params.serviceList[1].serviceId = 3049036224189325312
      local res, r = ok_call("create_order", params)
      check_request(r, { method = "POST", path = "/order/openapi/order/v1/save", body = SEED_002_BODY })
      assert.same(SEED_002_RESULT, res)
      local sent = partner.json_decode(r.body)
      assert.equal("integer", math.type(sent.billingId))
      assert.equal(3197218168379846218, sent.billingId)
      assert.equal("integer", math.type(sent.serviceList[1].serviceId))
      assert.equal(3049036224189325312, sent.serviceList[1].serviceId)
    end)

    it("refuses the 19-digit IDs as numbers (also in serviceList); LuaJIT int64 cdata go out exactly #doubles", function()
      refuses_number("create_order", merge(seed_002_params(), { billingId = 3197218168379846218 }), "billingId")
      local params = seed_002_params()
      params.serviceList[1].serviceId = 3049036224189325312
      refuses_number("create_order", params, "serviceList[1].serviceId")
      assert.same({}, portal:state().orders)
      if jit then
        params = seed_002_params()
        params.billingId = int64("3197218168379846218")
        params.serviceList[1].serviceId = int64("3049036224189325312U")
        local res, r = ok_call("create_order", params)
        check_request(r, { method = "POST", path = "/order/openapi/order/v1/save", body = SEED_002_BODY })
        assert.same(SEED_002_RESULT, res)
        assert.equal("3197218168379846218", portal:state().orders[1].body.billingId)
      end
    end)

    it("sends productId 15.0 as 15 and the IDs given as decimal strings as numbers", function()
      local params = seed_002_params()
      params.productId = 15.0
      params.billingId = "3197218168379846218"
      params.serviceList[1].serviceId = "3049036224189325312"
      params.serviceList[1].multiCycle = "1"
      local res, r = ok_call("create_order", params)
      assert.equal(SEED_002_BODY, r.body)
      assert.same(SEED_002_RESULT, res)
    end)

    it("sends every field, nested objects in descriptor order", function()
      local res, r = ok_call("create_order", {
        orderPceSpecialRequest = { pbxSubDomainId = "101", regionId = "1", pbxName = "hotel-pbx" },
        serviceList = {
          { serviceId = id("3048571730026938368"), serviceType = "plan", quantity = 10, purchaseType = "purchase",
            billingModel = "recurring", billingCycle = "annually", multiCycle = 1 },
          { multiCycle = 1, billingCycle = "annually", billingModel = "recurring", purchaseType = "purchase",
            quantity = 10, connectionPlanId = "3048571730026938368", serviceId = id("3048573516041273344"),
            serviceType = "service" },
        },
        poNumber = "PO-7", billingId = id("3197218168379846218"), partnerId = "customer1@example.com",
        assignId = "customer2@example.com", productId = 13, productNo = "1369A2021101",
        operationType = "purchase_plan",
      })
      check_request(r, { method = "POST", path = "/order/openapi/order/v1/save",
        body = '{"operationType":"purchase_plan","productNo":"1369A2021101","productId":13,'
          .. '"assignId":"customer2@example.com","partnerId":"customer1@example.com",'
          .. '"billingId":3197218168379846218,"poNumber":"PO-7","serviceList":['
          .. '{"serviceType":"plan","serviceId":3048571730026938368,"quantity":10,"purchaseType":"purchase",'
          .. '"billingModel":"recurring","billingCycle":"annually","multiCycle":1},'
          .. '{"serviceType":"service","serviceId":3048573516041273344,"connectionPlanId":3048571730026938368,'
          .. '"quantity":10,"purchaseType":"purchase","billingModel":"recurring","billingCycle":"annually",'
          .. '"multiCycle":1}],'
          .. '"orderPceSpecialRequest":{"pbxName":"hotel-pbx","regionId":"1","pbxSubDomainId":"101"}}' })
      assert.same(merge(SEED_002_RESULT, { productNo = "1369A2021101" }), res)
      local order = portal:state().orders[1]
      assert.equal("PO-7", order.poNumber)
      assert.same({ pbxName = "hotel-pbx", regionId = "1", pbxSubDomainId = "101" }, order.body.orderPceSpecialRequest)
      assert.equal("3048571730026938368", order.body.serviceList[2].connectionPlanId)
    end)

    it("reaches the second billing contact, 3197218168379846219, only with its exact ID", function()
      portal:config { billing_contacts = 2 }
      local params = seed_002_params()
      params.billingId = id("3197218168379846219")
      local res, r = ok_call("create_order", params)
      assert.equal(SEED_002_BODY:gsub("3197218168379846218", "3197218168379846219"), r.body)
      assert.same(SEED_002_RESULT, res)
      assert.equal("3197218168379846219", portal:state().orders[1].billingId)
    end)
  end)

  endpoint("orders", function()
    it("GETs a page sorted by id (the docs' 117 orders, pageSize 3 -> 39 pages)", function()
      local res, r = ok_call("orders", { sort = "id", pageNo = 1, pageSize = 3 })
      check_request(r, { method = "GET", path = "/order/openapi/order/v1/page",
        query = "pageSize=3&pageNo=1&sort=id" })
      assert.same({
        count = 117, total = 117, pageNo = 1, pageSize = 3, totalPage = 39,
        results = {
          { createTime = 1735689600000, currencyCode = "USD", customReferenceNo = "PO-0000", id = "1779925",
            invoiceNo = "INV1779925", orderNo = "MK3400814131025237857", orderStatus = "succeed",
            productId = 12, productNo = "3651E0529415" },
          { createTime = 1735862400000, currencyCode = "USD", customReferenceNo = "", id = "1779926",
            invoiceNo = "INV1779926", orderNo = "MK3400814131026237860", orderStatus = "succeed",
            productId = 11, productNo = "3632E0965333" },
          { createTime = 1736035200000, currencyCode = "USD", customReferenceNo = "", id = "1779927",
            invoiceNo = "INV1779927", orderNo = "MK3400814131027237863", orderStatus = "succeed",
            productId = 15, productNo = "3076913644890832896" },
        },
      }, res)
    end)

    it("lists a created order first by default (newest first)", function()
      local client = new_client()
      assert.truthy(client:create_order(seed_002_params()))
      local res, err = client:orders { pageSize = 1 }
      assert.is_nil(err)
      local reqs = portal:requests()
      assert.equal(3, #reqs) -- one login for both calls
      check_login(reqs[1])
      check_request(reqs[3], { method = "GET", path = "/order/openapi/order/v1/page", query = "pageSize=1" })
      assert.equal(118, res.total)
      assert.equal("1780042", res.results[1].id)
      assert.equal("MK3400814131142238208", res.results[1].orderNo)
      assert.equal("INV1780042", res.results[1].invoiceNo)
    end)
  end)

  endpoint("order_details", function()
    it("GETs a seed order by id (an integer is sent as its text)", function()
      local res, r = ok_call("order_details", { id = 1779934 })
      check_request(r, { method = "GET", path = "/order/openapi/order/v1/get/1779934" })
      assert.same({
        basicInformation = { productId = "12", productName = "P-Series Software Edition", productNo = "3651E0529416" },
        billingInformation = { billingContactId = "3197218168379846218", emailAddress = "billing@example.com" },
        orderInformation = { createTime = 1737244800000, customReferenceNo = "", id = "1779934",
          operationType = "renew_plan", orderNo = "MK3400814131034237884", orderStatus = "pending" },
        orderSummary = { currencyCode = "USD", totalAmount = 60.0 },
      }, res)
    end)

    it("finds the order created from seed 002 by its order number", function()
      local client = new_client()
      local t0 = os.time()
      local created = assert(client:create_order(seed_002_params()))
      local res, err = client:order_details { id = created.orderNo }
      assert.is_nil(err)
      local reqs = portal:requests()
      assert.equal(3, #reqs)
      check_request(reqs[3], { method = "GET", path = "/order/openapi/order/v1/get/MK3400814131142238208" })
      local created_ms = res.orderInformation.createTime
      assert.is_true(created_ms >= (t0 - 5) * 1000 and created_ms <= (os.time() + 5) * 1000)
      res.orderInformation.createTime = nil
      assert.same({
        basicInformation = { productId = "15", productName = "Remote Management", productNo = "3076913644890832896" },
        billingInformation = { billingContactId = "3197218168379846218", emailAddress = "billing@example.com" },
        orderInformation = { customReferenceNo = "", id = "1780042", operationType = "renew_plan",
          orderNo = "MK3400814131142238208", orderStatus = "succeed" },
        orderSummary = { currencyCode = "USD", totalAmount = 60.0 },
      }, res)
    end)

    -- createTime of an order created now, in milliseconds.
    local function new_order_time()
      local client = new_client()
      local created = assert(client:create_order(seed_002_params()))
      return assert(client:order_details { id = created.orderNo }).orderInformation.createTime
    end

    it("decodes a new order's millisecond createTime as a Lua integer #integers", function()
      local created_ms = new_order_time()
      assert.equal("integer", math.type(created_ms))
      assert.is_true(created_ms > 1.7e12)
    end)

    it("decodes a new order's millisecond createTime as an exact, integral number #doubles", function()
      local created_ms = new_order_time()
      assert.equal("number", type(created_ms))
      assert.equal(math.floor(created_ms), created_ms)
      assert.is_true(created_ms > 1.7e12 and created_ms < 2 ^ 53)
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- 64-bit IDs at the edges

  describe("64-bit IDs", function()
    -- create_order with this billingId: a contact the portal does not know, so its 400 echoes it.
    local function max_billing_id(billing_id)
      local params = seed_002_params()
      params.billingId = billing_id
      local res, err, r = call("create_order", params)
      assert.equal(SEED_002_BODY:gsub("3197218168379846218", "9223372036854775807"), r.body)
      assert.is_nil(res)
      assert.equal("billing_contact_not_found", err.code)
      assert.equal("no billing contact 9223372036854775807", err.message)
      return partner.json_decode(r.body).billingId
    end

    it("sends 9223372036854775807 as billingId with every digit; the portal echoes it in its 400", function()
      assert.equal(id("9223372036854775807"), max_billing_id("9223372036854775807"))
    end)

    it("sends math.maxinteger as billingId with every digit #integers", function()
      assert.equal(math.maxinteger, max_billing_id(math.maxinteger))
    end)

    it("refuses 9223372036854775807 as a number (2^63 as a double); LuaJIT int64 cdata go out exactly #doubles", function()
      refuses_number("create_order", merge(seed_002_params(), { billingId = 9223372036854775807 }), "billingId")
      if jit then
        assert.equal("9223372036854775807", max_billing_id(int64("9223372036854775807")))
        portal:reset()
        assert.equal("9223372036854775807", max_billing_id(int64("9223372036854775807U")))
      end
    end)

    it("sends 17896360390850257349 (beyond int64) as a JSON number when given as a decimal string", function()
      local params = seed_002_params()
      params.billingId = "17896360390850257349"
      local res, err, r = call("create_order", params)
      assert.equal(SEED_002_BODY:gsub("3197218168379846218", "17896360390850257349"), r.body)
      -- Too big for a Lua integer: the module's decoder gives the exact numeral back as a string.
      assert.equal("17896360390850257349", partner.json_decode(r.body).billingId)
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("parameter_validation_failed", err.code)
      assert.equal(400, err.status)
      assert.equal("billingId must be a JSON integer", err.message)
      assert.same({}, portal:state().orders)
    end)

    it("sends 17896360390850257349 in a query with every digit", function()
      local res, err, r = call("trial_service_info",
        { pricingServiceId = "27946", productId = 11, connectionPlanId = "17896360390850257349" })
      assert.equal("productId=11&connectionPlanId=17896360390850257349", r.query)
      assert.is_nil(res)
      assert.equal("parameter_validation_failed", err.code)
      assert.equal("connectionPlanId must be an integer", err.message)
    end)

    it("accepts an exactly integral float up to 2^53, and raises above it", function()
      local client = new_client()
      local req = client:prepare("enable_auto_renewal",
        { productNo = "3651E0529415", productId = 12, planOrServiceId = 2.0 ^ 53 })
      assert.equal('{"productNo":"3651E0529415","productId":"12","planOrServiceId":9007199254740992}', req.body)
      assert.has_error(function()
        client:enable_auto_renewal { productNo = "3651E0529415", productId = 12, planOrServiceId = 2.0 ^ 53 + 2 }
      end, "enable_auto_renewal: parameter 'planOrServiceId' is a number that cannot hold an exact integer; "
        .. "pass an integer or a decimal string")
      assert.has_error(function()
        client:create_order(merge(seed_002_params(), { productId = 15.5 }))
      end, "create_order: parameter 'productId' is a number that cannot hold an exact integer; "
        .. "pass an integer or a decimal string")
      assert.equal(0, #portal:requests())
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- Caller mistakes: raised, naming the method and the parameter, before any I/O

  describe("input checks", function()
    local function rejects(name, params, message)
      local client = new_client()
      local before = #portal:requests()
      assert.has_error(function() client[name](client, params) end, message)
      assert.equal(before, #portal:requests())
      assert.equal(0, before)
    end

    it("a missing required parameter", function()
      rejects("product_details", { productId = 12 }, "product_details: parameter 'productNo' is required")
      rejects("enable_auto_renewal", { productNo = "3651E0529415", productId = "12" },
        "enable_auto_renewal: parameter 'planOrServiceId' is required")
      rejects("order_details", nil, "order_details: parameter 'id' is required")
      rejects("create_order", { operationType = "renew_plan", productId = 15, billingId = 1 },
        "create_order: parameter 'serviceList' is required")
    end)

    it("a parameter of the wrong type", function()
      rejects("product_details", { productNo = {}, productId = 12 },
        "product_details: parameter 'productNo' must be a string (got table)")
      rejects("product_details", { productNo = "3651E0529415", productId = true },
        "product_details: parameter 'productId' must be an integer or a decimal string (got boolean)")
      rejects("product_details", { productNo = "3651E0529415", productId = "12a" },
        "product_details: parameter 'productId' must be an integer or a decimal string (got \"12a\")")
      rejects("product_details", { productNo = "3651E0529415", productId = " 12" },
        "product_details: parameter 'productId' must be an integer or a decimal string (got \" 12\")")
      rejects("enable_auto_renewal", { productNo = "3651E0529415", productId = 12.5, planOrServiceId = 1 },
        "enable_auto_renewal: parameter 'productId' is a number that cannot hold an exact integer; pass an integer or a decimal string")
      rejects("create_subordinate_user", { userType = "Customer", yeastarId = "a@b.c", company = "C",
        country = "DE", sendUserActivationEmail = "yes" },
        "create_subordinate_user: parameter 'sendUserActivationEmail' must be a boolean (got string)")
    end)

    it("an unknown parameter, with the likely one suggested", function()
      rejects("product_details", { productNo = "3651E0529415", productID = 12 },
        "product_details: unknown parameter 'productID' (did you mean 'productId'?)")
      rejects("regions", { region = "eu" }, "regions: unknown parameter 'region'")
    end)

    it("CR, LF or NUL in a query value", function()
      rejects("product_details", { productNo = "3651E0529415\r\nX-Evil: 1", productId = 12 },
        "product_details: parameter 'productNo' must not contain CR, LF or NUL")
      rejects("product_details", { productNo = "3651E0529415\n", productId = 12 },
        "product_details: parameter 'productNo' must not contain CR, LF or NUL")
      rejects("product_details", { productNo = "3651\0E0529415", productId = 12 },
        "product_details: parameter 'productNo' must not contain CR, LF or NUL")
    end)

    it("a path parameter that would change the path", function()
      for _, v in ipairs { "../x", "a/b", "?", ".." } do
        rejects("subordinate_user", { partnerId = v },
          ("subordinate_user: parameter 'partnerId' would change the request path (\"%s\")"):format(v))
      end
      rejects("subordinate_user", { partnerId = "" }, "subordinate_user: parameter 'partnerId' must not be empty")
      rejects("order_details", { id = "1\r\n" }, "order_details: parameter 'id' must not contain CR, LF or NUL")
    end)

    it("a serviceList that is not a list of tables", function()
      local sl = seed_002_params().serviceList[1]
      rejects("create_order", merge(seed_002_params(), { serviceList = sl }),
        "create_order: parameter 'serviceList' must be a non-empty list of tables (got table)")
      rejects("create_order", merge(seed_002_params(), { serviceList = {} }),
        "create_order: parameter 'serviceList' must be a non-empty list of tables (got table)")
      rejects("create_order", merge(seed_002_params(), { serviceList = "plan" }),
        "create_order: parameter 'serviceList' must be a non-empty list of tables (got string)")
      rejects("create_order", merge(seed_002_params(), { serviceList = { sl, extra = sl } }),
        "create_order: parameter 'serviceList' must be a list (keys 1..n only)")
      rejects("create_order", merge(seed_002_params(), { serviceList = { "plan" } }),
        "create_order: parameter 'serviceList[1]' must be a table (got string)")
    end)

    it("a serviceList item with a missing or unknown member", function()
      local p = seed_002_params()
      p.serviceList[1].serviceId = nil
      rejects("create_order", p, "create_order: parameter 'serviceList[1].serviceId' is required")
      p = seed_002_params()
      p.serviceList[2] = copy(p.serviceList[1])
      p.serviceList[2].serviceID = p.serviceList[2].serviceId
      rejects("create_order", p,
        "create_order: unknown parameter 'serviceList[2].serviceID' (did you mean 'serviceList[2].serviceId'?)")
      p = seed_002_params()
      p.serviceList[1].multiCycle = "one"
      rejects("create_order", p,
        "create_order: parameter 'serviceList[1].multiCycle' must be an integer or a decimal string (got \"one\")")
      rejects("calculate_subscription_price", { productId = 15, operationType = "renew_plan",
        serviceList = { { serviceType = "plan" } } },
        "calculate_subscription_price: parameter 'serviceList[1].pricingId' is required")
    end)

    it("an orderPceSpecialRequest with an unknown member or of the wrong type", function()
      rejects("create_order", merge(seed_002_params(), { orderPceSpecialRequest = { pbxName = "x", regionID = "1" } }),
        "create_order: unknown parameter 'orderPceSpecialRequest.regionID' (did you mean 'orderPceSpecialRequest.regionId'?)")
      rejects("create_order", merge(seed_002_params(), { orderPceSpecialRequest = "eu" }),
        "create_order: parameter 'orderPceSpecialRequest' must be a table (got string)")
      rejects("create_order", merge(seed_002_params(), { orderPceSpecialRequest = { regionId = 1.5 } }),
        "create_order: parameter 'orderPceSpecialRequest.regionId' is a number that cannot hold an exact integer; pass an integer or a decimal string")
    end)

    it("leaves the caller's table unchanged", function()
      local p = seed_002_params()
      local before = copy(p)
      local client = new_client()
      assert.truthy(client:create_order(p))
      assert.same(before, p)
    end)
  end)

  -- ------------------------------------------------------------------------------------------
  -- Answers from the API that say no

  describe("a 400 from the portal", function()
    it("returns nil and an api error with the portal's code, status, request ID and message", function()
      local params = seed_002_params()
      params.billingId = id("3197218168379846219") -- a contact the portal does not list by default
      local res, err, r = call("create_order", params)
      assert.equal(SEED_002_BODY:gsub("3197218168379846218", "3197218168379846219"), r.body)
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("billing_contact_not_found", err.code)
      assert.equal(400, err.status)
      assert.equal("create_order", err.endpoint)
      assert.is_false(err.retryable)
      assert.equal("no billing contact 3197218168379846219", err.message)
      assert.matches("^" .. ("%x"):rep(32) .. "$", err.request_id)
      local text = tostring(err)
      assert.is_nil(text:find("[\r\n]"))
      assert.equal("yeastar.partner: create_order: api error billing_contact_not_found (HTTP 400): "
        .. "no billing contact 3197218168379846219 [request " .. err.request_id .. "]", text)
      assert.same({}, portal:state().orders)
    end)

    it("reports parameter_validation_failed for a value the portal rejects", function()
      local res, err, r = call("subscription_price",
        { productId = 15, billingCycle = "weekly", offeringId = "3049036224189300015" })
      assert.equal("productId=15&billingCycle=weekly&offeringId=3049036224189300015", r.query)
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal("parameter_validation_failed", err.code)
      assert.equal(400, err.status)
      assert.equal("billingCycle must be one of monthly, annually, once", err.message)
      assert.matches("^" .. ("%x"):rep(32) .. "$", err.request_id)
      assert.equal("yeastar.partner: subscription_price: api error parameter_validation_failed (HTTP 400): "
        .. "billingCycle must be one of monthly, annually, once [request " .. err.request_id .. "]", tostring(err))
    end)
  end)
end)
