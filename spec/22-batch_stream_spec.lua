-- spec/22-batch_stream_spec.lua: client:batch as a stream under the libcurl driver: items built lazily, as slots
-- free up; keep_results = false hands each result to on_result, keeps nothing and returns {total, failed}; its
-- memory stays flat however long the list (#rss, against a local nginx: the fake portal is too slow for 100,000).
local helpers = require "spec.helpers"
local nginx = require "spec.nginx"

local STATUS, STATUS_PATH, TOKEN_PATH = helpers.STATUS, helpers.STATUS_PATH, helpers.TOKEN_PATH
local TYPO = { productNo = "3632E0965333", productID = 11 }

local function list(n, item)
  local t = {}
  for i = 1, n do t[i] = item end
  return t
end

-- The keys of a table, sorted: what a streaming batch returns must be exactly {total, failed}.
local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("batch as a stream", function()
  local portal

  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() if portal then portal:stop() end end)
  before_each(function() portal:reset() end)

  local function client(extra) return helpers.client(portal, extra) end

  it("keep_results = false hands every result to on_result and returns only {total, failed}", function()
    local c = client()
    local seen, ok = {}, 0
    local items = list(12, STATUS)
    items[4], items[9] = TYPO, "3651E0529415"
    local totals = c:batch("auto_renewal_status", items, {
      concurrency = 3, keep_results = false,
      on_result = function(i, result, err)
        assert.is_nil(seen[i], "item " .. i .. " reported twice")
        seen[i] = result and "ok" or err.kind
        if result then
          assert.same({ autoRenew = true }, result)
          ok = ok + 1
        end
      end,
    })
    assert.same({ "failed", "total" }, keys(totals))
    assert.same({ total = 12, failed = 2 }, totals)
    assert.equal(10, ok)
    for i = 1, 12 do assert.equal((i == 4 or i == 9) and "invalid" or "ok", seen[i]) end
    assert.equal(10, helpers.count(portal, STATUS_PATH))
  end)

  it("counts every kind of failure in failed: API errors, invalid items, unsent ones", function()
    local c = client { max_retries = 0 }
    portal:fault { match = { path = STATUS_PATH }, status = 404, code = "not_found", count = 3 }
    local kinds = {}
    local totals = c:batch("auto_renewal_status", { STATUS, STATUS, STATUS, TYPO, STATUS }, {
      concurrency = 1, keep_results = false,
      on_result = function(i, _, err) kinds[i] = err and err.kind or "ok" end,
    })
    assert.same({ total = 5, failed = 4 }, totals)
    assert.same({ "invalid" }, { kinds[4] })
    assert.equal("ok", kinds[5])
  end)

  it("an empty list returns {total = 0, failed = 0} and sends nothing", function()
    local c = client()
    assert.same({ total = 0, failed = 0 },
      c:batch("auto_renewal_status", {}, { keep_results = false, on_result = function() end }))
    assert.same({}, c:batch("auto_renewal_status", {}))
    assert.equal(0, #portal:requests())
  end)

  it("builds each item only when a slot is free: item k + concurrency is not read before item k ends", function()
    local c = client()
    local ended, first_read = 0, {}
    local items = {}
    for i = 1, 10 do
      -- An empty proxy: the module reads productNo and productId through __index, so the first read is seen.
      items[i] = setmetatable({}, { __index = function(_, key)
        if first_read[i] == nil then first_read[i] = ended end
        return STATUS[key]
      end })
    end
    for _, keep in ipairs { true, false } do
      ended, first_read = 0, {}
      c:batch("auto_renewal_status", items, {
        concurrency = 3, keep_results = keep, on_result = function() ended = ended + 1 end,
      })
      for i = 1, 10 do
        assert.is_true(first_read[i] >= math.max(0, i - 3),
          ("item %d was read when %d items had ended (keep_results = %s)"):format(i, first_read[i], tostring(keep)))
      end
      assert.equal(10, ended)
    end
  end)

  it("an invalid item fails alone when the batch reaches it, with the same error as when results are kept", function()
    local items = { STATUS, STATUS, TYPO, STATUS, "3651E0529415", STATUS }
    local order, errs = {}, {}
    local c = client()
    local totals = c:batch("auto_renewal_status", items, {
      concurrency = 1, keep_results = false,
      on_result = function(i, _, err)
        order[#order + 1] = i
        errs[i] = err
      end,
    })
    assert.same({ total = 6, failed = 2 }, totals)
    assert.same({ 1, 2, 3, 4, 5, 6 }, order) -- one at a time: each invalid item ends where the list has it
    local kept = c:batch("auto_renewal_status", items, { concurrency = 1 })
    for _, i in ipairs { 3, 5 } do
      local e, k = errs[i], kept[i].err
      assert.same({ "invalid", "invalid_parameters", i, "auto_renewal_status" }, { e.kind, e.code, e.index, e.endpoint })
      assert.same({ k.kind, k.code, k.index, k.message, tostring(k) }, { e.kind, e.code, e.index, e.message, tostring(e) })
    end
    assert.equal("item 3 (productNo 3632E0965333): auto_renewal_status: unknown parameter 'productID' "
      .. "(did you mean 'productId'?)", errs[3].message)
    assert.equal("item 5: auto_renewal_status: the item must be a table (got string)", errs[5].message)
    assert.equal(8, helpers.count(portal, STATUS_PATH))
  end)

  it("a URL too long for a slot's own buffer is sent whole", function()
    local c = client { max_retries = 0 }
    local long = ("L"):rep(700)
    local seen = {}
    c:batch("auto_renewal_status", { STATUS, { productNo = long, productId = 12 }, STATUS }, {
      concurrency = 2, keep_results = false, on_result = function(i, result, err) seen[i] = result or err end,
    })
    assert.same({ autoRenew = true }, seen[1])
    assert.same({ autoRenew = true }, seen[3])
    local queries = {}
    for _, r in ipairs(portal:requests()) do
      if r.path == STATUS_PATH then queries[#queries + 1] = r.query end
    end
    table.sort(queries, function(a, b) return #a > #b end)
    assert.equal("productNo=" .. long .. "&productId=12", queries[1])
  end)

  it("keep_results = false without on_result raises before any I/O; so does a keep_results that is no boolean", function()
    local c = client()
    assert.has_error(function() c:batch("auto_renewal_status", { STATUS }, { keep_results = false }) end,
      "batch: option 'keep_results' = false needs on_result (the results are handed to it, not kept)")
    assert.has_error(function() c:batch("auto_renewal_status", { STATUS }, { keep_results = 0, on_result = print }) end,
      "batch: bad option 'keep_results' (concurrency: integer 1..256, on_result: function, keep_results: boolean)")
    assert.equal(0, #portal:requests())
    local results = c:batch("auto_renewal_status", { STATUS }, { keep_results = true })
    assert.same({ autoRenew = true }, results[1].result)
  end)

  it("close() from on_result: the items in flight finish, every later one fails with kind closed", function()
    local c = client()
    local seen, kinds = 0, { ok = 0, closed = 0 }
    local totals = c:batch("auto_renewal_status", list(20, STATUS), {
      concurrency = 4, keep_results = false,
      on_result = function(_, result, err)
        seen = seen + 1
        if seen == 2 then c:close() end -- 3 more are in flight: they finish normally
        if result then kinds.ok = kinds.ok + 1
        else
          assert.same({ "closed", "client_closed" }, { err.kind, err.code })
          kinds.closed = kinds.closed + 1
        end
      end,
    })
    assert.same({ total = 20, failed = 15 }, totals)
    assert.same({ ok = 5, closed = 15 }, kinds)
    assert.is_true(c:is_closed())
    assert.equal(5, helpers.count(portal, STATUS_PATH))
  end)

  it("an item not yet built when the client closes is never read", function()
    local c = client()
    local reads = 0
    local watched = setmetatable({}, { __index = function(_, key) reads = reads + 1; return STATUS[key] end })
    local items = list(6, STATUS)
    items[6] = watched
    local totals = c:batch("auto_renewal_status", items, {
      concurrency = 1, keep_results = false,
      on_result = function(i) if i == 2 then c:close() end end,
    })
    assert.same({ total = 6, failed = 4 }, totals)
    assert.equal(0, reads)
  end)

  it("an error raised in on_result ends a streaming batch; the client stays usable", function()
    local c = client()
    local calls = 0
    assert.has_error(function()
      c:batch("auto_renewal_status", list(50, STATUS), {
        concurrency = 4, keep_results = false,
        on_result = function() calls = calls + 1; error("stop here", 0) end,
      })
    end, "stop here")
    assert.equal(1, calls)
    assert.is_true(helpers.count(portal, STATUS_PATH) <= 8) -- nothing more was built after the error
    assert.same({ autoRenew = true }, c:auto_renewal_status(STATUS))
    -- The abandoned exchanges were written before the error: let the portal finish serving them,
    -- or they would be recorded in the next test's request log.
    local socket = require "socket"
    local deadline, last = socket.gettime() + 5, -1
    while socket.gettime() < deadline do
      local n = helpers.count(portal, STATUS_PATH)
      if n == last and portal:stats().in_flight == 0 then break end
      last = n
      socket.sleep(0.2)
    end
  end)

  it("a retry keeps its slot: with concurrency 1 a 503 is retried before the next item is sent", function()
    local c = client { retry_base_delay = 0.01, retry_max_delay = 0.02 }
    portal:fault { match = { path = STATUS_PATH }, status = 503, count = 1 }
    local totals = c:batch("auto_renewal_status", { STATUS, { productNo = "3651E0529416", productId = 12 } }, {
      concurrency = 1, keep_results = false, on_result = function() end,
    })
    assert.same({ total = 2, failed = 0 }, totals)
    local queries = {}
    for _, r in ipairs(portal:requests()) do
      if r.path == STATUS_PATH then queries[#queries + 1] = r.query:match("productNo=(%w+)") end
    end
    assert.same({ "3651E0529415", "3651E0529415", "3651E0529416" }, queries)
  end)

  it("a retry whose pause is over is sent while another exchange is still under way", function()
    -- Of the first two items, one gets a 503 (retried after ~10 ms), the other an answer that
    -- takes 2 s. The retry, then item 3, must finish before that slow answer: a pause that
    -- waited for the next completion would end with item 3 instead.
    local c = client { retry_base_delay = 0.01, retry_max_delay = 0.02 }
    portal:fault { match = { path = STATUS_PATH }, status = 503, count = 1 }
    portal:fault { match = { path = STATUS_PATH }, delay = 2, count = 1 }
    local order = {}
    local totals = c:batch("auto_renewal_status", list(3, STATUS), {
      concurrency = 2, keep_results = false,
      on_result = function(i, result) order[#order + 1] = result and i or -i end,
    })
    assert.same({ total = 3, failed = 0 }, totals)
    assert.equal(3, #order)
    assert.equal(3, order[2], "item 3 went before the slow answer: " .. table.concat(order, ","))
    assert.equal(4, helpers.count(portal, STATUS_PATH))
  end)

  it("the logger and the token store run as before: one login, an event per attempt", function()
    local events, saves = {}, 0
    local c = client {
      logger = function(e) events[#events + 1] = e end,
      token_store = { load = function() return nil end, save = function() saves = saves + 1 end },
    }
    local totals = c:batch("auto_renewal_status", list(9, STATUS), {
      concurrency = 4, keep_results = false, on_result = function() end,
    })
    assert.same({ total = 9, failed = 0 }, totals)
    assert.equal(1, helpers.count(portal, TOKEN_PATH))
    assert.equal(1, saves)
    local attempts = 0
    for _, e in ipairs(events) do
      if e.type == "attempt" and e.endpoint == "auto_renewal_status" then attempts = attempts + 1 end
    end
    assert.equal(9, attempts)
  end)
end)

-- Peak RSS of one 100,000-item streaming batch, measured in a child process (the runtime and module build
-- under test) against nginx serving the envelopes over TLS with the fake portal's certificate.
describe("batch memory #rss #nginx", function()
  local available, why_not = nginx.available()
  if not available then
    pending("nginx not installed: " .. why_not)
    return
  end

  local portal, server, tls_port

  lazy_setup(function()
    portal = helpers.start_portal() -- for its certificate and CA only
    local dir = portal.ca_file:match("^(.*)/[^/]+$")
    tls_port = helpers.free_port()
    local function reply(result)
      return "return 200 '{\"code\":\"success\",\"detailMessage\":\"\",\"requestId\":\"0123456789abcdef\","
        .. "\"result\":" .. result .. ",\"status\":200}';"
    end
    server = nginx.start { server = table.concat({
      ("listen 127.0.0.1:%d ssl;"):format(tls_port),
      ("ssl_certificate %s/server.pem;"):format(dir),
      ("ssl_certificate_key %s/server.key;"):format(dir),
      "keepalive_requests 1000000;",
      "default_type application/json;",
      "location = " .. TOKEN_PATH .. " { " .. reply('{"expiresIn":"1800","refreshToken":"RT.0123456789",'
        .. '"token":"AT.0123456789","tokenHead":"Bearer"}') .. " }",
      "location = " .. STATUS_PATH .. " { " .. reply('{"autoRenew":true}') .. " }",
    }, "\n") }
  end)

  lazy_teardown(function()
    if server then server:stop() end
    if portal then portal:stop() end
  end)

  it("100,000 items with keep_results = false peak at no more than the list + 16 MiB", function()
    local script = ([[package.cpath = %q
      local function status(field)
        local f = io.open("/proc/self/status"); local s = f:read("*a"); f:close()
        return tonumber(s:match(field .. ":%%s*(%%d+)"))
      end
      local c = require("yeastar.partner").new { client_id = "id", client_secret = "secret",
        base_url = %q, ca_file = %q }
      assert(c:auto_renewal_status { productNo = "3651E0529415", productId = 12 })
      collectgarbage("collect")
      local before = status("VmRSS")
      local items = {}
      for i = 1, 100000 do items[i] = { productNo = string.format("FLEET%%07d", i), productId = 12 } end
      collectgarbage("collect")
      local with_list = status("VmRSS")
      local ok = 0
      local totals = c:batch("auto_renewal_status", items, { concurrency = 32, keep_results = false,
        on_result = function(_, result) if result then ok = ok + 1 end end })
      assert(totals.total == 100000 and totals.failed == 0 and ok == 100000, "failed: " .. totals.failed)
      io.write(with_list - before, " ", status("VmHWM") - with_list)]]):format(package.cpath,
        "https://127.0.0.1:" .. tls_port, portal.ca_file)
    local out, code = helpers.run(helpers.LUA .. " -e " .. helpers.shell_quote(script) .. " 2>&1")
    assert.equal(0, code, out)
    local list_kb, over_kb = out:match("^(%-?%d+) (%-?%d+)$")
    assert(list_kb, out)
    assert.is_true(tonumber(over_kb) <= 16 * 1024,
      ("peak RSS was the list (%d KiB) + %d KiB"):format(tonumber(list_kb), tonumber(over_kb)))
  end)
end)
