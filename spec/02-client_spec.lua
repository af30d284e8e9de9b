-- spec/02-client_spec.lua: the client object (options, lifecycle, tostring), the token call and
-- auto_renewal_status on the wire, and the first failure paths, against the fake portal.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"

local function header_list(request)
  local out = {}
  for i, h in ipairs(request.headers) do out[i] = h[1] .. ": " .. h[2] end
  return out
end

local function host_of(url) return url:match("^https?://([^/]+)") end

describe("client", function()
  local portal
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function() portal:reset() end)

  describe("partner.new", function()
    local base = { client_id = "id", client_secret = "s3cret" }
    local function with(extra)
      local t = {}
      for k, v in pairs(base) do t[k] = v end
      for k, v in pairs(extra) do t[k] = v end
      return t
    end

    it("rejects an unknown option by name", function()
      assert.has_error(function() partner.new(with { timout = 5 }) end,
        "new: unknown option 'timout'")
    end)

    it("rejects a mistyped option by name", function()
      assert.has_error(function() partner.new(with { timeout = "5" }) end,
        "new: option 'timeout' must be a number (got string)")
      assert.has_error(function() partner.new(with { logger = true }) end,
        "new: option 'logger' must be a function (got boolean)")
    end)

    it("requires the credentials", function()
      assert.has_error(function() partner.new { client_secret = "x" } end,
        "new: option 'client_id' is required")
      assert.has_error(function() partner.new { client_id = "x" } end,
        "new: option 'client_secret' is required")
    end)

    it("refuses plain http unless allow_http is set", function()
      assert.has_error(function() partner.new(with { base_url = "http://127.0.0.1:1" }) end,
        "new: option 'base_url' is plain http://; TLS is required unless allow_http = true (loopback tests only)")
      assert.truthy(partner.new(with { base_url = "http://127.0.0.1:1", allow_http = true }))
      assert.has_error(function() partner.new(with { base_url = "ftp://x" }) end,
        "new: option 'base_url' must start with https://")
    end)

    it("rejects a token_store without load/save", function()
      assert.has_error(function() partner.new(with { token_store = { load = print } }) end,
        "new: option 'token_store' needs a function 'save'")
    end)

    it("does not modify the caller's options table", function()
      local opts = with { timeout = 3 }
      partner.new(opts)
      assert.same(with { timeout = 3 }, opts)
    end)

    it("defaults to Yeastar's base URL and hides the secret", function()
      local c = partner.new(base)
      assert.equal("yeastar.partner.Client (https://openapi.partner.yeastar.com)", tostring(c))
      assert.is_nil(c.client_secret)
      for name, value in pairs(getmetatable(c).__index) do
        assert.not_equal("s3cret", value, name)
      end
    end)
  end)

  describe("lifecycle", function()
    it("closes once, twice harmlessly, and then refuses calls", function()
      local c = helpers.client(portal)
      assert.is_true(c:close())
      assert.is_true(c:close())
      assert.equal("yeastar.partner.Client (closed)", tostring(c))
      assert.has_error(function() c:regions() end, "yeastar.partner: the client is closed")
    end)

    -- <close> is 5.4 syntax: compiled from a string so that this file still parses on 5.1-5.3.
    it("closes at the end of a <close> scope #lua54", function()
      local scope = assert(load([[
        local client, assert = ...
        local probe
        do
          local c <close> = client()
          probe = c
          assert.truthy(c:regions())
        end
        return probe
      ]], "=<close> scope"))
      local probe = scope(function() return helpers.client(portal) end, assert)
      assert.equal("yeastar.partner.Client (closed)", tostring(probe))
    end)

    it("is collected without leaking (exercised under memcheck)", function()
      for _ = 1, 20 do helpers.client(portal):regions() end
      collectgarbage()
      collectgarbage()
      assert.equal(20, #(function()
        local n = {}
        for _, r in ipairs(portal:requests()) do
          if r.path == "/auth/openapi/v1/oauth/token" then n[#n + 1] = r end
        end
        return n
      end)())
    end)
  end)

  describe("on the wire", function()
    it("logs in with the exact form request, then sends the exact status query", function()
      local c = helpers.client(portal)
      local result, err = c:auto_renewal_status { productNo = "3651E0529415", productId = 12 }
      assert.is_nil(err)
      assert.same({ autoRenew = true }, result)

      local reqs = portal:requests()
      assert.equal(2, #reqs)
      local token, call = reqs[1], reqs[2]
      local body = "client_id=" .. portal.client_id .. "&client_secret=" .. portal.client_secret
        .. "&grant_type=pp_credentials"
      assert.equal("POST", token.method)
      assert.equal("/auth/openapi/v1/oauth/token", token.path)
      assert.equal("", token.query)
      assert.equal(body, token.body)
      assert.same({
        "Host: " .. host_of(portal.base_url),
        "User-Agent: OpenAPI",
        "Accept: application/json",
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Length: " .. #body,
      }, header_list(token))

      assert.equal("GET", call.method)
      assert.equal("/order/openapi/order/v1/check/existed_auto_renew", call.path)
      assert.equal("productNo=3651E0529415&productId=12", call.query)
      assert.equal("", call.body)
      local headers = header_list(call)
      assert.equal(4, #headers)
      assert.same({ "Host: " .. host_of(portal.base_url), "User-Agent: OpenAPI",
                    "Accept: application/json" }, { headers[1], headers[2], headers[3] })
      assert.matches("^Authorization: Bearer AT%.%x+$", headers[4])
    end)

    it("reuses the token for later calls and sends a custom User-Agent", function()
      local c = helpers.client(portal, { user_agent = "renewals-cron/1.0" })
      assert.truthy(c:auto_renewal_status { productNo = "3651E0529415", productId = 12 })
      assert.truthy(c:auto_renewal_status { productNo = "3632E0965333", productId = "11" })
      local reqs = portal:requests()
      assert.equal(3, #reqs)
      assert.equal("/auth/openapi/v1/oauth/token", reqs[1].path)
      assert.equal("productNo=3632E0965333&productId=11", reqs[3].query)
      assert.equal(reqs[2].header.authorization, reqs[3].header.authorization)
      assert.equal("renewals-cron/1.0", reqs[3].header["user-agent"])
    end)
  end)

  describe("failures", function()
    it("bad credentials: nil and an auth error, one line, no secret", function()
      local c = helpers.client(portal, { client_secret = "wrong-secret-value" })
      local result, err = c:auto_renewal_status { productNo = "3651E0529415", productId = 12 }
      assert.is_nil(result)
      assert.equal("auth", err.kind)
      assert.equal("invalid_client", err.code)
      assert.equal(401, err.status)
      assert.is_false(err.retryable)
      assert.matches("^%x+$", err.request_id)
      local text = tostring(err)
      assert.not_matches("\n", text)
      assert.is_nil(text:find("wrong-secret-value", 1, true))
      assert.equal(1, #portal:requests()) -- refused credentials are not retried
    end)

    it("wrong argument types raise before any I/O", function()
      local c = helpers.client(portal)
      assert.has_error(function() c:auto_renewal_status("3651E0529415") end,
        "bad argument #1 to 'auto_renewal_status' (table expected, got string)")
      assert.has_error(function() c:auto_renewal_status { productNo = {}, productId = 12 } end,
        "auto_renewal_status: parameter 'productNo' must be a string (got table)")
      assert.has_error(function() c:auto_renewal_status { productNo = "x", productId = true } end,
        "auto_renewal_status: parameter 'productId' must be an integer or a decimal string (got boolean)")
      assert.has_error(function() c:auto_renewal_status { productId = 12 } end,
        "auto_renewal_status: parameter 'productNo' is required")
      assert.equal(0, #portal:requests())
    end)

    it("server down: a network error after the retries", function()
      local attempts = 0
      local c = helpers.client(portal, {
        base_url = "https://127.0.0.1:" .. helpers.free_port(),
        retry_base_delay = 0.01, logger = function() attempts = attempts + 1 end,
      })
      local result, err = c:auto_renewal_status { productNo = "3651E0529415", productId = 12 }
      assert.is_nil(result)
      assert.equal("network", err.kind)
      assert.equal("connect_failed", err.code)
      assert.is_true(err.retryable)
      assert.equal(3, attempts) -- max_retries = 2
    end)

    it("TLS with a CA that did not sign the server: refused, never retried", function()
      local attempts = 0
      local c = helpers.client(portal, { ca_file = portal.other_ca_file,
                                         logger = function() attempts = attempts + 1 end })
      local result, err = c:regions()
      assert.is_nil(result)
      assert.equal("network", err.kind)
      assert.equal("tls_failed", err.code)
      assert.is_false(err.retryable)
      assert.equal(1, attempts)
      assert.equal(0, #portal:requests())
    end)
  end)
end)
