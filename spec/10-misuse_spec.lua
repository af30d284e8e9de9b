-- spec/10-misuse_spec.lua: what a careless or hostile caller can do from callbacks and parameter
-- tables (re-entrancy, close anywhere, coroutines, metamethods, huge and cyclic tables, NaN).
-- Runs in `make memcheck` too: every case must end defined, with no ASan/UBSan report.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"

local STATUS = helpers.STATUS
local DEVICE = { productNo = "3651E0529415", productId = 12, planOrServiceId = "3049040650094403584" }

describe("misuse", function()
  local portal
  lazy_setup(function() portal = helpers.start_portal() end)
  lazy_teardown(function() portal:stop() end)
  before_each(function() portal:reset() end)

  local function client(extra)
    return helpers.client(portal, helpers.with({ retry_base_delay = 0.01, retry_max_delay = 0.02,
      timeout = 5 }, extra))
  end

  local function list(n, item)
    local t = {}
    for i = 1, n do t[i] = item end
    return t
  end

  local function assert_closed(c)
    assert.equal("yeastar.partner.Client (closed)", tostring(c))
    assert.has_error(function() c:regions() end, "yeastar.partner: the client is closed")
  end

  describe("close from inside a callback", function()
    it("on_result: items not yet sent fail with kind closed, the rest keep their results", function()
      local c = client()
      local seen = 0
      local results = c:batch("auto_renewal_status", list(20, STATUS), {
        concurrency = 4,
        on_result = function()
          seen = seen + 1
          if seen == 2 then c:close() end -- 3 more are in flight: they finish normally
        end,
      })
      local ok, closed = 0, 0
      for i = 1, 20 do
        if results[i].result then ok = ok + 1
        else
          assert.same({ "closed", "client_closed" }, { results[i].err.kind, results[i].err.code })
          closed = closed + 1
        end
      end
      assert.same({ 5, 15 }, { ok, closed })
      assert_closed(c)
    end)

    it("on_progress of ensure_auto_renewal", function()
      local c = client()
      local report = c:ensure_auto_renewal(list(10, DEVICE), {
        concurrency = 2, on_progress = function(done) if done == 1 then c:close() end end,
      })
      assert.is_true(report.totals.failed >= 8)
      assert_closed(c)
    end)

    it("the logger", function()
      local c
      c = client { logger = function() c:close() end }
      local result, err = c:regions()
      assert.truthy(result or err)
      assert_closed(c)
    end)

    it("token_store load and save", function()
      for _, op in ipairs { "load", "save" } do
        local c
        local store = { load = function() return nil end, save = function() return true end }
        store[op] = function() c:close() end
        c = client { token_store = store }
        local result, err = c:regions()
        if op == "load" then
          assert.same({ "closed", "client_closed" }, { err.kind, err.code })
        else
          assert.truthy(result or err)
        end
        assert_closed(c)
      end
    end)

    it("an __index metamethod of the parameter table", function()
      local c = client()
      local params = setmetatable({}, { __index = function(_, k)
        c:close()
        return STATUS[k]
      end })
      assert.has_error(function() c:auto_renewal_status(params) end, "yeastar.partner: the client is closed")
      assert_closed(c)
    end)

    it("a finalizer that runs while a call decodes", function()
      local c = client()
      assert(c:regions())
      -- Tables get __gc from 5.2; on 5.1 and LuaJIT a newproxy() userdata carries it.
      local function garbage_with_finalizer(fn)
        if newproxy then getmetatable(newproxy(true)).__gc = fn
        else setmetatable({}, { __gc = fn }) end
      end
      for _ = 1, 200 do garbage_with_finalizer(function() c:close() end) end
      -- The collector picks the moment: a step at the call's entry closes the client before its
      -- own check (that raises the closed error), one inside it closes it mid-call.
      local ok, result, err = pcall(c.regions, c)
      collectgarbage("collect")
      if ok then
        assert.truthy(result or err)
      else
        assert.matches("the client is closed", result, 1, true)
      end
      assert_closed(c)
    end)
  end)

  describe("re-entrancy", function()
    it("a batch inside a batch's on_result, on the same client", function()
      local c = client()
      local inner = {}
      local outer = c:batch("auto_renewal_status", list(6, STATUS), {
        concurrency = 3,
        on_result = function(i)
          inner[i] = c:batch("auto_renewal_status", list(5, STATUS), { concurrency = 2 })
        end,
      })
      for i = 1, 6 do
        assert.same({ autoRenew = true }, outer[i].result)
        for j = 1, 5 do assert.same({ autoRenew = true }, inner[i][j].result) end
      end
    end)

    it("ensure_auto_renewal and single calls from inside on_result", function()
      local c = client()
      local reports = {}
      c:batch("auto_renewal_status", list(3, STATUS), {
        on_result = function(i)
          reports[i] = c:ensure_auto_renewal({ DEVICE }, { dry_run = true })
          assert(c:regions())
        end,
      })
      for i = 1, 3 do assert.equal(1, reports[i].totals.already_on) end
    end)

    it("an error raised in on_result ends the batch cleanly; the client stays usable", function()
      local c = client()
      assert.has_error(function()
        c:batch("auto_renewal_status", list(10, STATUS), {
          concurrency = 4, on_result = function() error("stop here", 0) end,
        })
      end, "stop here")
      assert.same({ autoRenew = true }, c:auto_renewal_status(STATUS))
      local results = c:batch("auto_renewal_status", list(5, STATUS))
      assert.equal(5, #results)
    end)
  end)

  describe("coroutines", function()
    it("a yield from on_result cannot cross the C call: a clear error, then the client works", function()
      local c = client()
      local co = coroutine.wrap(function()
        return pcall(c.batch, c, "auto_renewal_status", list(3, STATUS), {
          on_result = function() coroutine.yield("yielded") end })
      end)
      local ok, err = co()
      assert.is_false(ok)
      assert.truthy(tostring(err):find("yield across", 1, true))
      assert.same({ autoRenew = true }, c:auto_renewal_status(STATUS))
    end)

    it("a yielding logger is ignored; calls from inside coroutines work", function()
      local c = client { logger = function() coroutine.yield() end }
      local co = coroutine.create(function() return c:auto_renewal_status(STATUS) end)
      local ok, result = coroutine.resume(co)
      assert.is_true(ok)
      assert.same({ autoRenew = true }, result)
    end)
  end)

  describe("hostile parameters", function()
    it("an endpoint method called on anything but a client raises, even on a table with its metatable", function()
      local c = client()
      local impostor = setmetatable({}, getmetatable(c))
      for _, self in ipairs { impostor, io.stdout, 42, "text" } do
        local ok, err = pcall(c.auto_renewal_status, self, STATUS)
        assert.is_false(ok)
        assert.matches("yeastar.partner.Client expected", err, 1, true)
      end
      assert.equal(0, #portal:requests())
      assert.truthy(c:auto_renewal_status(STATUS))
      impostor = nil -- collected now: its __gc (the client's) must leave a table alone
      collectgarbage()
      collectgarbage()
    end)

    it("cyclic and huge tables, NaN and infinities raise before any I/O", function()
      local c = client()
      local cycle = { serviceType = "plan" }
      cycle.serviceList = { cycle }
      local cases = {
        { "auto_renewal_status", { productNo = "x", productId = 0 / 0 } },
        { "auto_renewal_status", { productNo = "x", productId = math.huge } },
        { "auto_renewal_status", { productNo = "x", productId = -math.huge } },
        { "enable_auto_renewal", { productNo = "x", productId = "12", planOrServiceId = 2 ^ 64 } },
        { "create_order", { operationType = "renew_plan", productId = 15, billingId = 1, serviceList = { cycle } } },
        { "create_order", { operationType = "renew_plan", productId = 15, billingId = 1, serviceList = list(100000, {}) } },
        { "auto_renewal_status", { productNo = ("x"):rep(10 * 1024 * 1024), productId = 12, extra = 1 } },
      }
      for _, case in ipairs(cases) do
        assert.has_error(function() c[case[1]](c, case[2]) end)
      end
      assert.equal(0, #portal:requests())
    end)

    it("__len, __pairs and __index tricks on a batch list change nothing the module reads", function()
      local c = client()
      local items = setmetatable({ STATUS, STATUS }, { __len = function() return 1000 end,
                                                       __index = function() return STATUS end })
      local results = c:batch("auto_renewal_status", items)
      assert.equal(2, #results)
    end)
  end)
end)
