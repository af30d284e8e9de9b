-- spec/05-faults_spec.lua: the fault table (what each failure of the outside world becomes, and
-- how many requests the server saw), token lifecycle and store, and that no secret leaks.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"

local TOKEN_PATH, ORDER_PATH, STATUS_PATH = helpers.TOKEN_PATH, helpers.ORDER_PATH, helpers.STATUS_PATH
-- The big IDs as decimal strings: exact on every runtime (a double cannot hold them).
local STATUS, ORDER = helpers.STATUS, helpers.ORDER

-- Everything the module printed or handed out during this file, checked for secrets at the end.
local exposed = {}
local function expose(v, depth)
  depth = depth or 0
  if type(v) == "table" and depth < 4 then
    exposed[#exposed + 1] = tostring(v)
    for k, x in pairs(v) do
      expose(k, depth + 1)
      expose(x, depth + 1)
    end
  elseif v ~= nil then
    exposed[#exposed + 1] = tostring(v)
  end
end

local socket = require "socket"

-- Requests recorded since the test's client logged in (`skip` earlier ones).
local skip = 0
local function recorded(portal)
  local all, out = portal:requests(), {}
  for i = skip + 1, #all do out[#out + 1] = all[i] end
  return out
end

local function count(portal, path)
  local n = 0
  for _, r in ipairs(recorded(portal)) do
    if r.path == path then n = n + 1 end
  end
  return n
end

-- Every token the portal issued during the file, gathered before each reset.
local issued = {}

describe("faults", function()
  local portal, events
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function()
    portal:reset()
    events, skip = {}, 0
  end)
  after_each(function()
    for _, r in ipairs(portal:requests()) do
      for token in ((r.header.authorization or "") .. " " .. r.body):gmatch("[AR]T%.%x+") do
        issued[#issued + 1] = token
      end
    end
  end)

  local function client(extra)
    local opts = { retry_base_delay = 0.01, retry_max_delay = 0.02, timeout = 5,
                   logger = function(e) events[#events + 1] = e; expose(e) end }
    for k, v in pairs(extra or {}) do opts[k] = v end
    local c = helpers.client(portal, opts)
    expose(c)
    return c
  end

  -- Logs in first, so the faults that follow hit the call under test, not the token call.
  local function ready_client(extra)
    local c = client(extra)
    assert(c:regions())
    skip, events = #portal:requests(), {}
    return c
  end

  local function call(c, name, params)
    local result, err = c[name](c, params)
    expose(result)
    expose(err)
    return result, err
  end

  it("connection refused: network/connect_failed, retried, then given up", function()
    local c = client { base_url = "https://127.0.0.1:" .. helpers.free_port() }
    local result, err = call(c, "auto_renewal_status", STATUS)
    assert.is_nil(result)
    assert.same({ "network", "connect_failed", true }, { err.kind, err.code, err.retryable })
    assert.equal(3, #events)
  end)

  it("DNS failure: network/dns_failed", function()
    local c = client { base_url = "https://portal.invalid", max_retries = 0 }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "network", "dns_failed" }, { err.kind, err.code })
  end)

  for _, case in ipairs {
    { "a CA that did not sign it", function(p) return { ca_file = p.other_ca_file } end },
    { "an expired certificate", function(p) return { base_url = p.expired_url } end },
    { "a certificate for another host", function(p) return { base_url = p.wrong_host_url } end },
  } do
    it("TLS with " .. case[1] .. ": refused, not retried, nothing recorded", function()
      local c = client(case[2](portal))
      local _, err = call(c, "auto_renewal_status", STATUS)
      assert.same({ "network", "tls_failed", false }, { err.kind, err.code, err.retryable })
      assert.equal(1, #events)
      assert.equal(0, #recorded(portal))
    end)
  end

  it("timeout before the status line: timeout/timeout after every attempt", function()
    local c = ready_client { timeout = 0.3, max_retries = 1 }
    portal:fault { match = { path = STATUS_PATH }, delay = 1, count = 2 }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "timeout", "timeout", true }, { err.kind, err.code, err.retryable })
    assert.equal(2, count(portal, STATUS_PATH))
  end)

  it("a trickling server hits the low-speed limit", function()
    local c = ready_client { low_speed_limit = 1000, low_speed_time = 1, max_retries = 0 }
    portal:fault { match = { path = STATUS_PATH }, trickle = 0.3 }
    local t0 = os.time()
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "timeout", "timeout" }, { err.kind, err.code })
    assert.is_true(os.time() - t0 <= 4)
  end)

  it("500 once: retried, then the result", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, status = 500, code = "internal_error" }
    assert.same({ autoRenew = true }, (call(c, "auto_renewal_status", STATUS)))
    assert.equal(2, count(portal, STATUS_PATH))
    assert.equal(500, events[1].status)
    assert.equal("internal_error", events[1].error.code)
  end)

  it("500 on every attempt: api/internal_error after 1 + max_retries requests", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, status = 500, code = "internal_error", count = 5 }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "api", "internal_error", 500, true }, { err.kind, err.code, err.status, err.retryable })
    assert.equal(3, count(portal, STATUS_PATH))
  end)

  it("502 with an HTML page: http/http_error, one-line message", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, status = 502, count = 3,
                   html = "<html>\n<body>Bad gateway</body>\n</html>" }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "http", "http_error", 502 }, { err.kind, err.code, err.status })
    assert.not_matches("\n", tostring(err))
    assert.equal(3, count(portal, STATUS_PATH))
  end)

  it("503 with Retry-After: waits that long, then succeeds", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, status = 503, retry_after = "1" }
    assert.truthy(call(c, "auto_renewal_status", STATUS))
    assert.equal(1, events[1].retry_in)
    assert.equal(2, count(portal, STATUS_PATH))
  end)

  it("429 even on create_order: the server refused it, so it is sent again", function()
    local c = ready_client()
    portal:fault { match = { path = ORDER_PATH }, status = 429, retry_after = "0" }
    local order = call(c, "create_order", ORDER)
    assert.equal("MK3400814131142238208", order.orderNo)
    assert.equal(2, count(portal, ORDER_PATH))
    assert.equal(1, #portal:state().orders)
  end)

  it("a Retry-After beyond the deadline ends the call instead of sleeping", function()
    local c = ready_client { deadline = 2 }
    portal:fault { match = { path = STATUS_PATH }, status = 503, retry_after = "30" }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "api", 503 }, { err.kind, err.status })
    assert.equal(1, count(portal, STATUS_PATH))
  end)

  it("401 with an expired token: one refresh, one replay, success", function()
    local c = ready_client()
    portal:expire_tokens()
    assert.truthy(call(c, "auto_renewal_status", STATUS))
    local reqs = recorded(portal)
    assert.equal(3, #reqs)
    assert.equal(401, events[1].status)
    assert.equal(TOKEN_PATH, reqs[2].path)
    assert.matches("^grant_type=refresh_token&refresh_token=RT%.%x+$", reqs[2].body)
  end)

  it("truncated body (connection closed early): retried", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, truncate = true }
    assert.truthy(call(c, "auto_renewal_status", STATUS))
    assert.equal("connection_lost", events[1].error.code)
    assert.equal(2, count(portal, STATUS_PATH))
  end)

  it("truncated JSON in a complete 200: decode/invalid_json, not retried", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, status = 200, body = '{"code":"success","result":{' }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "decode", "invalid_json", false }, { err.kind, err.code, err.retryable })
    assert.equal(1, count(portal, STATUS_PATH))
  end)

  it("invalid JSON: decode/invalid_json", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, status = 200, body = "<<not json>>" }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "decode", "invalid_json" }, { err.kind, err.code })
  end)

  it("a 200 whose envelope says code ~= success: api error with that code", function()
    local c = ready_client()
    portal:fault { match = { path = STATUS_PATH }, status = 200, code = "product_expired" }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "api", "product_expired", 200, false }, { err.kind, err.code, err.status, err.retryable })
    assert.matches("^%x+$", err.request_id)
  end)

  it("a 50 MiB body: http/response_too_large, memory bounded by max_response_size", function()
    local c = ready_client { max_response_size = 1024 * 1024 }
    portal:fault { match = { path = STATUS_PATH }, large_body_bytes = 50 * 1024 * 1024 }
    local before = collectgarbage("count")
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "http", "response_too_large", false }, { err.kind, err.code, err.retryable })
    assert.equal(1, count(portal, STATUS_PATH))
    assert.is_true(collectgarbage("count") - before < 4 * 1024) -- KiB
  end)

  it("nesting deeper than max_depth: decode error, no crash", function()
    local c = ready_client { max_depth = 16 }
    portal:fault { match = { path = STATUS_PATH }, status = 200,
                   body = '{"code":"success","result":' .. ("["):rep(5000) .. ("]"):rep(5000) .. "}" }
    local _, err = call(c, "auto_renewal_status", STATUS)
    assert.same({ "decode", "invalid_json" }, { err.kind, err.code })
  end)

  describe("create_order is never sent twice", function()
    it("dropped connection after the POST: ambiguous, exactly one POST, findable", function()
      local c = ready_client()
      portal:fault { match = { path = ORDER_PATH }, drop = true, process = true }
      local order = {}
      for k, v in pairs(ORDER) do order[k] = v end
      order.poNumber = "PO-drop-1"
      local result, err = call(c, "create_order", order)
      assert.is_nil(result)
      assert.same({ "ambiguous", "connection_lost", false }, { err.kind, err.code, err.retryable })
      assert.matches("look it up before sending it again", err.message)
      assert.equal(1, count(portal, ORDER_PATH))
      local found = c:find_order { poNumber = "PO-drop-1" }
      assert.equal("PO-drop-1", found.customReferenceNo)
      assert.is_false(c:find_order { poNumber = "PO-never-sent" })
    end)

    it("500 after the POST: ambiguous, one POST", function()
      local c = ready_client()
      portal:fault { match = { path = ORDER_PATH }, status = 500, code = "internal_error" }
      local _, err = call(c, "create_order", ORDER)
      assert.same({ "ambiguous", "internal_error", 500 }, { err.kind, err.code, err.status })
      assert.equal(1, count(portal, ORDER_PATH))
    end)

    it("timeout after the POST: ambiguous, one POST", function()
      local c = ready_client { timeout = 0.3 }
      portal:fault { match = { path = ORDER_PATH }, delay = 1, process = true }
      local _, err = call(c, "create_order", ORDER)
      assert.same({ "ambiguous", "timeout" }, { err.kind, err.code })
      assert.equal(1, count(portal, ORDER_PATH))
    end)

    it("unparseable reply: ambiguous", function()
      local c = ready_client()
      portal:fault { match = { path = ORDER_PATH }, status = 200, body = "{oops", process = true }
      local _, err = call(c, "create_order", ORDER)
      assert.same({ "ambiguous", "invalid_json" }, { err.kind, err.code })
      assert.equal(1, count(portal, ORDER_PATH))
    end)

    it("connection refused (nothing sent) is retried", function()
      local c = client { base_url = "https://127.0.0.1:" .. helpers.free_port() }
      local _, err = call(c, "create_order", ORDER)
      assert.same({ "network", "connect_failed" }, { err.kind, err.code })
      assert.equal(3, #events)
    end)

    it("enable_auto_renewal (idempotent) is retried after a 500", function()
      local c = ready_client()
      portal:fault { match = { path = "/product/openapi/instance_subscription/v1/active" }, status = 500 }
      assert.is_true(call(c, "enable_auto_renewal",
        { productNo = "3651E0529416", productId = 12, planOrServiceId = "3049040650094403584" }))
    end)
  end)

  describe("tokens", function()
    it("survive three expiries while calls go on, without a failed call", function()
      portal:config { token_lifetime = 1.2 }
      local c = client()
      local started, calls = socket.gettime(), 0
      repeat
        local result, err = call(c, "auto_renewal_status", STATUS)
        assert.is_nil(err)
        assert.is_true(result.autoRenew)
        calls = calls + 1
        socket.sleep(0.1)
      until socket.gettime() - started >= 4.5
      local refreshes = 0
      for _, r in ipairs(portal:requests()) do
        if r.path == TOKEN_PATH and r.body:find("grant_type=refresh_token", 1, true) then
          refreshes = refreshes + 1
        end
      end
      assert.is_true(refreshes >= 3, "refreshes: " .. refreshes)
      assert.equal(calls, count(portal, STATUS_PATH)) -- refreshed ahead: no 401 and no replay
    end)

    it("a failing refresh falls back to the client credentials", function()
      portal:config { token_lifetime = 1, refresh_enabled = false }
      local c = client()
      assert.truthy(call(c, "auto_renewal_status", STATUS))
      os.execute("sleep 1.1")
      assert.truthy(call(c, "auto_renewal_status", STATUS))
      local bodies = {}
      for _, r in ipairs(portal:requests()) do
        if r.path == TOKEN_PATH then bodies[#bodies + 1] = r.body:match("grant_type=([%w_]+)") end
      end
      assert.same({ "pp_credentials", "refresh_token", "pp_credentials" }, bodies)
    end)

    it("the file store saves with mode 0600 and spares the next run a login", function()
      local dir = helpers.run("mktemp -d")
      local path = dir .. "/token.json"
      local store = partner.file_token_store(path)
      assert.truthy(call(client { token_store = store }, "auto_renewal_status", STATUS))
      local mode = helpers.run("stat -c %a " .. path)
      assert.equal("600", mode)
      assert.truthy(call(client { token_store = store }, "auto_renewal_status", STATUS))
      assert.equal(1, count(portal, TOKEN_PATH))
      -- another account never uses this account's token: it must log in (and fails here)
      local _, err = call(client { token_store = store, client_id = "someone-else" }, "regions")
      assert.equal("invalid_client", err.code)
      assert.equal(2, count(portal, TOKEN_PATH))
      os.execute("rm -rf " .. dir)
    end)

    it("request_access_token/refresh_access_token return the details without the tokens", function()
      local c = client()
      local details = call(c, "request_access_token")
      assert.same({ expiresIn = "1800", tokenHead = "Bearer" }, details)
      details = call(c, "refresh_access_token")
      assert.equal("Bearer", details.tokenHead)
      assert.equal(2, count(portal, TOKEN_PATH))
    end)
  end)

  it("no secret or token appears in any error, logger event or tostring seen above", function()
    -- Runs last in this file (busted keeps file order); `issued` holds every token seen.
    local secrets = { portal.client_secret }
    for _, t in ipairs(issued) do secrets[#secrets + 1] = t end
    assert.is_true(#issued > 20)
    assert.is_true(#exposed > 100)
    for _, text in ipairs(exposed) do
      for _, secret in ipairs(secrets) do
        assert.is_nil(text:find(secret, 1, true), "leak in: " .. text)
      end
    end
  end)
end)
