-- spec/08-hostile_spec.lua: a misbehaving HTTPS server on 127.0.0.1 (the fake portal's raw and echo
-- faults) against a replay-safe GET and against create_order: kind, code, request count, no secret.
local helpers = require "spec.helpers"

local ORDER_PATH, STATUS_PATH, STATUS = helpers.ORDER_PATH, helpers.STATUS_PATH, helpers.STATUS
local ORDER = helpers.with(helpers.ORDER, { poNumber = "PO-hostile" })
local ENVELOPE = '{"code":"success","detailMessage":"","requestId":"r1","result":{"autoRenew":true},"status":200}'

local function response(head, body)
  return head .. "\r\n\r\n" .. (body or "")
end

local many_headers = { "HTTP/1.1 200 OK", "Content-Type: application/json",
                       "Content-Length: " .. #ENVELOPE }
for i = 1, 10000 do many_headers[#many_headers + 1] = "X-Filler-" .. i .. ": v" end

-- Each case: the raw reply, then {kind, code, attempts} for a GET (max_retries = 1) and for
-- create_order, whose bytes the server read and processed in every case. nil kind: a success.
-- A GET attempt on a reused connection that dies without a reply is re-sent once by libcurl
-- itself (harmless for a GET; orders always get a fresh connection), so the GET's request count
-- lies between attempts and twice that.
local CASES = {
  { "no status line after reading the request", "",
    { "network", "connection_lost", 2 }, { "ambiguous", "connection_lost" } },
  { "a broken status line", response("HTTP/1.1 two hundred OK\r\nContent-Length: 2", "{}"),
    { "http", "bad_response", 1 }, { "ambiguous", "bad_response" } },
  { "HTTP/0.9 (a body with no status line)", ENVELOPE,
    { "http", "bad_response", 1 }, { "ambiguous", "bad_response" } },
  { "a Content-Length too short", response("HTTP/1.1 200 OK\r\nContent-Length: 10", ENVELOPE),
    { "decode", "invalid_json", 1 }, { "ambiguous", "invalid_json" } },
  { "a Content-Length too long", response("HTTP/1.1 200 OK\r\nContent-Length: 5000", ENVELOPE),
    { "network", "connection_lost", 2 }, { "ambiguous", "connection_lost" } },
  -- Well-formed, only many: libcurl bounds each header line, not their number; a valid reply.
  { "10,000 header lines", table.concat(many_headers, "\r\n") .. "\r\n\r\n" .. ENVELOPE,
    { nil, nil, 1 }, { nil, nil } },
  { "a 1 MB header line", response("HTTP/1.1 200 OK\r\nX-Big: " .. ("a"):rep(1024 * 1024)
      .. "\r\nContent-Length: " .. #ENVELOPE, ENVELOPE),
    { "http", "bad_response", 1 }, { "ambiguous", "bad_response" } },
}

describe("hostile server", function()
  local portal, secrets, exposed
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function()
    portal:reset()
    exposed = {}
  end)

  local function client(extra)
    local c = helpers.client(portal, helpers.with({ retry_base_delay = 0.01, retry_max_delay = 0.02,
      timeout = 5, logger = function(e) exposed[#exposed + 1] = e end }, extra))
    assert(c:regions()) -- logged in: faults hit the call under test
    return c
  end

  local function count(path) return helpers.count(portal, path) end

  -- Every token the portal issued, and the client secret, in every spelling a server could echo.
  local function forbidden()
    local list = { portal.client_secret }
    for _, r in ipairs(portal:requests()) do
      for token in ((r.header.authorization or "") .. " " .. r.body):gmatch("[AR]T%.%x+") do
        list[#list + 1] = token
      end
    end
    return list
  end

  local function assert_clean(err)
    local text = tostring(err)
    assert.is_nil(text:find("[\r\n]"), "one line")
    assert.is_true(#text <= 800, "bounded: " .. #text)
    for _, s in ipairs(forbidden()) do
      assert.is_nil(text:find(s, 1, true), "secret in " .. text)
      for _, e in ipairs(exposed) do
        if e.error then assert.is_nil(tostring(e.error):find(s, 1, true)) end
      end
    end
  end

  for _, case in ipairs(CASES) do
    it(case[1] .. ": a GET", function()
      local c = client { max_retries = 1 }
      portal:fault { match = { path = STATUS_PATH }, raw_b64 = helpers.b64encode(case[2]), count = 10 }
      local result, err = c:auto_renewal_status(STATUS)
      local kind, code, attempts = case[3][1], case[3][2], case[3][3]
      if kind then
        assert.is_nil(result)
        assert.same({ kind, code }, { err.kind, err.code })
        assert_clean(err)
      else
        assert.same({ autoRenew = true }, result)
      end
      assert.is_true(count(STATUS_PATH) >= attempts and count(STATUS_PATH) <= 2 * attempts)
    end)

    it(case[1] .. ": create_order, processed by the server", function()
      local c = client()
      portal:fault { match = { path = ORDER_PATH }, raw_b64 = helpers.b64encode(case[2]), process = true, count = 3 }
      local result, err = c:create_order(ORDER)
      assert.equal(1, count(ORDER_PATH), "exactly one POST")
      assert.equal(1, #portal:state().orders, "the order exists once")
      if case[4][1] then
        assert.is_nil(result)
        assert.same(case[4], { err.kind, err.code })
        assert.is_false(err.retryable)
        assert_clean(err)
      else
        assert.same({ autoRenew = true }, result)
      end
    end)
  end

  it("a slow trickle: timeout; an order is ambiguous, sent once", function()
    local c = client { low_speed_limit = 1000, low_speed_time = 1, max_retries = 1 }
    portal:fault { match = { path = ORDER_PATH }, raw_b64 = helpers.b64encode(response(
      "HTTP/1.1 200 OK\r\nContent-Length: " .. #ENVELOPE, ENVELOPE)), trickle = 0.05, process = true }
    local _, err = c:create_order(ORDER)
    assert.same({ "ambiguous", "timeout", 1 }, { err.kind, err.code, count(ORDER_PATH) })
  end)

  it("every envelope field echoing the login request: the secret never comes back", function()
    local c = helpers.client(portal, { max_retries = 0 })
    portal:fault { match = { path = "/auth/openapi/v1/oauth/token" }, echo = true, status = 400 }
    local _, err = c:regions()
    assert.equal("api", err.kind)
    assert.truthy(err.message:find("[REDACTED]", 1, true))
    assert.truthy(#err.code <= 64 and #err.request_id <= 64 and #err.message <= 300)
    assert_clean(err)
  end)

  it("every envelope field echoing a call: the token never comes back, in any field", function()
    local c = client { max_retries = 0 }
    portal:fault { match = { path = STATUS_PATH }, echo = true, status = 400 }
    local _, err = c:auto_renewal_status(STATUS)
    assert.equal("api", err.kind)
    for _, field in ipairs { "code", "message", "request_id" } do
      assert.truthy(err[field]:find("[REDACTED]", 1, true) or err[field]:find("...", 1, true), field)
    end
    assert_clean(err)
  end)
end)
