-- spec/09-hardening_spec.lua: envelope members of any type, the envelope's status, the retry
-- rule for money-moving calls, bounded and redacted server text, token lifetimes, single-flight
-- re-authentication, response memory, the token store under concurrent writers, strict options.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"

local TOKEN_PATH, ORDER_PATH, STATUS_PATH = helpers.TOKEN_PATH, helpers.ORDER_PATH, helpers.STATUS_PATH
local STATUS, ORDER = helpers.STATUS, helpers.ORDER

local function envelope(fields)
  local parts = {}
  for k, v in pairs(fields) do parts[#parts + 1] = ('"%s":%s'):format(k, v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

describe("hardening", function()
  local portal, events
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function()
    portal:reset()
    events = {}
  end)

  local function client(extra)
    return helpers.client(portal, helpers.with({ retry_base_delay = 0.01, retry_max_delay = 0.02,
      timeout = 5, logger = function(e) events[#events + 1] = e end }, extra))
  end

  local function ready(extra)
    local c = client(extra)
    assert(c:regions())
    events = {}
    return c
  end

  local function count(path) return helpers.count(portal, path) end

  describe("envelope members of any JSON type", function()
    it("numbers where strings belong are read as their text, hundreds of times, under GC", function()
      local c = ready { max_retries = 0 }
      local body = '{"code":10000001,"detailMessage":123,"requestId":456,"status":400}'
      portal:fault { match = { path = STATUS_PATH }, status = 400, body = body, count = 300 }
      for _ = 1, 300 do
        local _, err = c:auto_renewal_status(STATUS)
        assert.same({ "api", "10000001", "123", "456", 400 },
          { err.kind, err.code, err.message, err.request_id, err.status })
        collectgarbage("step")
      end
    end)

    for _, case in ipairs {
      { '{"code":true,"status":200}', "decode", "bad_envelope" },
      { '{"code":null,"result":1}', "decode", "bad_envelope" },
      { '{"code":{"a":1},"result":1}', "decode", "bad_envelope" },
      { '[1,2]', "decode", "bad_envelope" },
      { '"success"', "decode", "bad_envelope" },
      { '{"code":"success","requestId":[1],"detailMessage":{},"status":"200","result":7}', nil, 7 },
      { '{"code":"failed","detailMessage":null}', "api", "failed" },
    } do
      it("200 with " .. case[1], function()
        local c = ready { max_retries = 0 }
        portal:fault { match = { path = STATUS_PATH }, status = 200, body = case[1] }
        local result, err = c:auto_renewal_status(STATUS)
        if case[2] then
          assert.same({ case[2], case[3] }, { err.kind, err.code })
        else
          assert.equal(case[3], result)
        end
      end)
    end
  end)

  describe("the envelope's status inside an HTTP 200", function()
    it("500: a GET is retried and fails as api/internal_error (500)", function()
      local c = ready { max_retries = 2 }
      portal:fault { match = { path = STATUS_PATH }, status = 200, count = 3,
                     body = envelope { code = '"internal_error"', status = 500 } }
      local _, err = c:auto_renewal_status(STATUS)
      assert.same({ "api", "internal_error", 500, 3 }, { err.kind, err.code, err.status, count(STATUS_PATH) })
    end)

    it("500 on an order: ambiguous, sent once", function()
      local c = ready()
      portal:fault { match = { path = ORDER_PATH }, status = 200, process = true,
                     body = envelope { code = '"internal_error"', status = 500 } }
      local _, err = c:create_order(ORDER)
      assert.same({ "ambiguous", 1 }, { err.kind, count(ORDER_PATH) })
    end)

    it("401: one token refresh and one replay, then success", function()
      local c = ready()
      portal:fault { match = { path = STATUS_PATH }, status = 200,
                     body = envelope { code = '"unauthorized"', status = 401 } }
      assert.same({ autoRenew = true }, c:auto_renewal_status(STATUS))
      assert.same({ 2, 1 }, { count(STATUS_PATH), count(TOKEN_PATH) - 1 })
    end)

    it("429 on an order: the portal refused it, so it is sent again", function()
      local c = ready()
      portal:fault { match = { path = ORDER_PATH }, status = 200,
                     body = envelope { code = '"too_many_requests"', status = 429 } }
      assert.truthy(c:create_order(ORDER))
      assert.equal(2, count(ORDER_PATH))
    end)

    it("any other status of 400 or more is an api error; success with it is never a success", function()
      local c = ready { max_retries = 0 }
      portal:fault { match = { path = STATUS_PATH }, status = 200,
                     body = envelope { code = '"not_found"', status = 404 } }
      local _, err = c:auto_renewal_status(STATUS)
      assert.same({ "api", "not_found", 404 }, { err.kind, err.code, err.status })
      portal:fault { match = { path = STATUS_PATH }, status = 200,
                     body = envelope { code = '"success"', status = 403, result = "true" } }
      _, err = c:auto_renewal_status(STATUS)
      assert.same({ "api", "unexpected_status", 403 }, { err.kind, err.code, err.status })
    end)
  end)

  describe("money-moving calls are re-sent only after proof", function()
    for _, status in ipairs { 408, 500, 502, 503, 504 } do
      it(status .. " on create_order: ambiguous, one POST", function()
        local c = ready { max_retries = 2 }
        portal:fault { match = { path = ORDER_PATH }, status = status, count = 3 }
        local _, err = c:create_order(ORDER)
        assert.same({ "ambiguous", false, 1 }, { err.kind, err.retryable, count(ORDER_PATH) })
      end)
    end

    it("a 400 refusal with the portal's envelope: api error, one POST, not ambiguous", function()
      local c = ready()
      portal:fault { match = { path = ORDER_PATH }, status = 400, code = "parameter_validation_failed" }
      local _, err = c:create_order(ORDER)
      assert.same({ "api", "parameter_validation_failed", 1 }, { err.kind, err.code, count(ORDER_PATH) })
    end)

    it("a 403 page without the envelope (a proxy?): ambiguous", function()
      local c = ready()
      portal:fault { match = { path = ORDER_PATH }, status = 403, html = "<h1>Forbidden</h1>" }
      local _, err = c:create_order(ORDER)
      assert.same({ "ambiguous", "http_error", 1 }, { err.kind, err.code, count(ORDER_PATH) })
    end)

    it("a 401 on create_order: refreshed and replayed once", function()
      local c = ready()
      portal:fault { match = { path = ORDER_PATH }, status = 401, code = "unauthorized" }
      assert.truthy(c:create_order(ORDER))
      assert.equal(2, count(ORDER_PATH))
    end)
  end)

  describe("server text in messages", function()
    local function detail_fault(text)
      local json = require("cjson").encode(text)
      portal:fault { match = { path = STATUS_PATH }, status = 400,
                     body = envelope { code = '"bad"', detailMessage = json, requestId = '"rid"' } }
    end

    it("the secret and the token are redacted, raw, percent-encoded and JSON-escaped", function()
      local c = ready { max_retries = 0, client_secret = portal.client_secret }
      local secret = portal.client_secret
      local pct = secret:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end)
      local escaped = secret:gsub("/", "\\/")
      detail_fault("a=" .. secret .. " b=" .. pct .. " c=" .. escaped)
      local _, err = c:auto_renewal_status(STATUS)
      assert.equal("a=[REDACTED] b=[REDACTED] c=[REDACTED]", err.message)
    end)

    it("a newline cannot forge a log line; a 1.1 MB message is bounded", function()
      local c = ready { max_retries = 0 }
      detail_fault("first\nINFO forged line\r\n\226\128\168third")
      local _, err = c:auto_renewal_status(STATUS)
      assert.equal("first INFO forged line   third", err.message)
      detail_fault(("x"):rep(1100 * 1024))
      _, err = c:auto_renewal_status(STATUS)
      assert.equal(300, #err.message)
      assert.equal("...", err.message:sub(-3))
      assert.is_true(#tostring(err) < 500)
    end)

    it("a long Chinese message is cut on a character boundary and still encodes", function()
      local c = ready { max_retries = 0 }
      detail_fault(("产品不存在"):rep(200))
      local _, err = c:auto_renewal_status(STATUS)
      assert.is_true(#err.message <= 300)
      assert.truthy(err.message:match("^[\228-\233][\128-\191][\128-\191]"))
      assert.equal("...", err.message:sub(-3))
      assert.truthy(partner.json_encode(err))
      assert.truthy(partner.json_encode({ tostring(err) }))
    end)

    it("a short configured secret is not redacted from the portal's words", function()
      local c = helpers.client(portal, { client_secret = "wrong", max_retries = 0 })
      local _, err = c:regions()
      assert.equal("auth", err.kind)
      assert.is_nil(err.message:find("[REDACTED]", 1, true))
    end)
  end)

  describe("token lifetimes", function()
    for _, case in ipairs {
      { '"1e300"', "2592000" }, { '"-5"', "1800" }, { '"0"', "1800" }, { '"soon"', "1800" },
      { "-2147483649", "1800" }, { "null", "1800" }, { '"nan"', "1800" }, { "3600", "3600" },
    } do
      it("expiresIn = " .. case[1] .. " gives " .. case[2], function()
        local c = client()
        portal:fault { match = { path = TOKEN_PATH }, status = 200, body = envelope {
          code = '"success"', status = 200,
          result = '{"token":"AT.abcdef0123","refreshToken":"RT.abcdef0123","tokenHead":"Bearer","expiresIn":'
            .. case[1] .. '}' } }
        local details = assert(c:request_access_token())
        assert.is_true(math.abs(tonumber(details.expiresIn) - tonumber(case[2])) <= 1)
      end)
    end
  end)

  describe("re-authentication is single-flight", function()
    it("20 items that all meet a 401 cause one refresh, named refresh_access_token", function()
      local c = ready()
      portal:expire_tokens()
      local items = {}
      for i = 1, 20 do items[i] = STATUS end
      local results = c:batch("auto_renewal_status", items, { concurrency = 8 })
      for i = 1, 20 do assert.same({ autoRenew = true }, results[i].result) end
      assert.equal(1, count(TOKEN_PATH) - 1)
      local refreshes = 0
      for _, e in ipairs(events) do
        if e.path == TOKEN_PATH then
          refreshes = refreshes + 1
          assert.equal("refresh_access_token", e.endpoint)
        end
      end
      assert.equal(1, refreshes)
    end)
  end)

  describe("response memory", function()
    -- Measured in a child process with glibc's mmap threshold pinned: otherwise the first free of
    -- a large chunk raises the threshold and later chunks stay on the heap whatever we free.
    it("large responses are not kept: 16 replies of 6 MiB leave RSS flat #rss", function()
      portal:fault { match = { path = STATUS_PATH }, large_body_bytes = 6 * 1024 * 1024, count = 16 }
      local script = ([[package.cpath = %q
        local c = require("yeastar.partner").new { client_id = %q, client_secret = %q,
          base_url = %q, ca_file = %q, max_retries = 0 }
        local function rss()
          local f = io.open("/proc/self/status"); local s = f:read("*a"); f:close()
          return tonumber(s:match("VmRSS:%%s*(%%d+)"))
        end
        assert(c:regions())
        local items = {}
        for i = 1, 8 do items[i] = %s end
        collectgarbage("collect")
        local before = rss()
        c:batch("auto_renewal_status", items, { concurrency = 8 })
        c:batch("auto_renewal_status", items, { concurrency = 8 })
        collectgarbage("collect")
        io.write(rss() - before)]]):format(package.cpath, portal.client_id, portal.client_secret,
          portal.base_url, portal.ca_file, '{ productNo = "3651E0529415", productId = 12 }')
      -- The child is the runtime under test, loading the module build busted loads.
      local out, code = helpers.run("env MALLOC_MMAP_THRESHOLD_=131072 " .. helpers.LUA .. " -e "
        .. helpers.shell_quote(script))
      assert.equal(0, code, out)
      local grew = tonumber(out)
      assert.equal(16, helpers.count(portal, STATUS_PATH))
      assert.is_true(grew < 20 * 1024, "grew by " .. tostring(grew) .. " KB")
    end)
  end)

  describe("file_token_store", function()
    local dir
    before_each(function()
      dir = helpers.run("mktemp -d")
    end)
    after_each(function() os.execute("rm -rf " .. helpers.shell_quote(dir)) end)

    it("3 concurrent writers and a reader: no failed save, never a partial file", function()
      local path = dir .. "/token.json"
      local cpath = package.cpath
      local writer = ([[package.cpath = %q
        local s = require("yeastar.partner").file_token_store(%q)
        local fails = 0
        for i = 1, 150 do
          local ok = s.save { clientId = "c", token = ("T"):rep(2000) .. i, refreshToken = "R" .. i }
          if not ok then fails = fails + 1 end
        end
        io.write(fails)]]):format(cpath, path)
      local reader = ([[package.cpath = %q
        local s = require("yeastar.partner").file_token_store(%q)
        local bad = 0
        for i = 1, 400 do
          local t, err = s.load()
          if err or (t and #t.token < 2001) then bad = bad + 1 end
        end
        io.write(bad)]]):format(cpath, path)
      local procs = {}
      -- Side by side (popen does not wait); stderr joins stdout so a crash shows in the failure.
      local function spawn(code) return io.popen(helpers.LUA .. " -e " .. helpers.shell_quote(code) .. " 2>&1") end
      for i = 1, 3 do procs[i] = spawn(writer) end
      procs[4] = spawn(reader)
      for i = 1, 4 do
        assert.equal("0", procs[i]:read("*a"))
        procs[i]:close()
      end
      local leftovers = helpers.run("ls " .. helpers.shell_quote(dir))
      assert.equal("token.json", leftovers)
    end)

    it("a failing load or save is reported through the logger", function()
      local c = client { token_store = {
        load = function() error("disk on fire") end,
        save = function() return nil, "read-only file system" end,
      } }
      assert(c:regions())
      local seen = {}
      for _, e in ipairs(events) do
        if e.type == "token_store" then seen[#seen + 1] = e.op .. ": " .. e.message end
      end
      assert.equal(2, #seen)
      assert.truthy(seen[1]:find("^load: .*disk on fire"))
      assert.equal("save: read-only file system", seen[2])
    end)
  end)

  describe("options", function()
    local function with(extra)
      return helpers.with({ client_id = "id", client_secret = "a-long-enough-secret" }, extra)
    end

    it("allow_http is for loopback only", function()
      for _, url in ipairs { "http://127.0.0.1:8080", "http://127.1.2.3", "http://localhost:1", "http://[::1]:80/x" } do
        assert.truthy(partner.new(with { base_url = url, allow_http = true }))
      end
      for _, url in ipairs { "http://10.0.0.1", "http://example.com", "http://127.0.0.1.evil.com", "http://localhost.evil" } do
        assert.has_error(function() partner.new(with { base_url = url, allow_http = true }) end,
          "new: option 'allow_http' permits only 127.0.0.0/8, [::1] and localhost, never a remote host")
      end
    end)

    it("refuses credentials in the base URL", function()
      assert.has_error(function() partner.new(with { base_url = "https://user:pw@portal.example" }) end,
        "new: option 'base_url' must not contain user:password@ (the module authenticates with client_id and client_secret)")
    end)

    it("checks ca_file when the client is made, not at the first call", function()
      assert.has_error(function() partner.new(with { ca_file = "/nonexistent/ca.pem" }) end,
        "new: option 'ca_file' cannot be read: No such file or directory")
    end)

    it("refuses an empty client_id or client_secret", function()
      assert.has_error(function() partner.new(with { client_id = "" }) end, "new: option 'client_id' must not be empty")
      assert.has_error(function() partner.new(with { client_secret = "" }) end, "new: option 'client_secret' must not be empty")
    end)
  end)
end)
