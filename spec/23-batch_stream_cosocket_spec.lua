-- spec/23-batch_stream_cosocket_spec.lua: client:batch as a stream under the cosocket driver, in a real nginx against
-- the fake portal: items built lazily on the light threads, keep_results = false (on_result only, {total, failed}),
-- invalid items where the list has them, close() and errors from on_result.
--
-- nginx loads the module busted loads when busted runs on LuaJIT (busted --cpath=./build/X/?.so), else
-- build/luajit/yeastar/partner.so, as spec/14 does.
local helpers = require "spec.helpers"
local nginx = require "spec.nginx"

local available, why_not = nginx.available()

-- The LuaJIT build under test, as an nginx lua_package_cpath entry, or nil for spec/nginx.lua's default.
local function module_cpath()
  if not jit then return nil end
  for entry in package.cpath:gmatch("[^;]+") do
    local path = entry:gsub("%?", "yeastar/partner")
    if helpers.read_file(path) then return entry end
  end
  return nil
end

local RUN = nginx.RUN_LOCATION

describe("batch as a stream under cosockets #nginx", function()
  if not available then
    pending("nginx not installed: " .. why_not)
    return
  end

  local portal, server, prelude

  lazy_setup(function()
    portal = helpers.start_portal()
    server = nginx.start { server = RUN, ca_file = portal.ca_file, cpath = module_cpath() }
    prelude = string.format([[
      local partner = require "yeastar.partner"
      local c = partner.new { client_id = %q, client_secret = %q, base_url = %q, transport = "cosocket" }
      local S = { productNo = "3651E0529415", productId = 12 }
      local TYPO = { productNo = "3632E0965333", productID = 11 }
      local function list(n) local t = {} for i = 1, n do t[i] = S end return t end
    ]], portal.client_id, portal.client_secret, portal.base_url)
  end)

  lazy_teardown(function()
    if server then server:stop() end
    if portal then portal:stop() end
  end)

  before_each(function() portal:reset() end)

  -- Runs code inside nginx after the prelude; returns its value (through the module's JSON).
  local function run(code) return server:run(prelude .. code) end

  it("keep_results = false hands every result to on_result and returns only {total, failed}", function()
    local v = run [[
      local items = list(12)
      items[4], items[9] = TYPO, "3651E0529415"
      local seen, messages = {}, {}
      local totals = c:batch("auto_renewal_status", items, { concurrency = 3, keep_results = false,
        on_result = function(i, result, err)
          assert(seen[i] == nil, "reported twice")
          seen[i] = result and "ok" or err.kind
          if err then messages[#messages + 1] = err.index .. ": " .. err.message end
        end })
      local keys = {}
      for k in pairs(totals) do keys[#keys + 1] = k end
      table.sort(keys)
      return { totals = totals, keys = keys, seen = seen, messages = messages }
    ]]
    assert.same({ "failed", "total" }, v.keys)
    assert.same({ total = 12, failed = 2 }, v.totals)
    for i = 1, 12 do assert.equal((i == 4 or i == 9) and "invalid" or "ok", v.seen[i]) end
    table.sort(v.messages)
    assert.same({
      "4: item 4 (productNo 3632E0965333): auto_renewal_status: unknown parameter 'productID' (did you mean 'productId'?)",
      "9: item 9: auto_renewal_status: the item must be a table (got string)",
    }, v.messages)
    assert.equal(10, helpers.count(portal, helpers.STATUS_PATH))
  end)

  it("builds each item only when a thread is free: item k + concurrency is not read before item k ends", function()
    local v = run [[
      local out = {}
      for _, keep in ipairs { true, false } do
        local ended, first_read, items = 0, {}, {}
        for i = 1, 10 do
          items[i] = setmetatable({}, { __index = function(_, key)
            if first_read[i] == nil then first_read[i] = ended end
            return S[key]
          end })
        end
        c:batch("auto_renewal_status", items, { concurrency = 3, keep_results = keep,
          on_result = function() ended = ended + 1 end })
        out[#out + 1] = { ended = ended, first_read = first_read }
      end
      return out
    ]]
    for _, run_ in ipairs(v) do
      assert.equal(10, run_.ended)
      for i = 1, 10 do
        assert.is_true(run_.first_read[i] >= math.max(0, i - 3),
          ("item %d was read when %d items had ended"):format(i, run_.first_read[i]))
      end
    end
  end)

  it("keep_results = false without on_result raises before any I/O, with libcurl's words", function()
    local v = run [[
      local ok, err = pcall(c.batch, c, "auto_renewal_status", { S }, { keep_results = false })
      local ok2, err2 = pcall(c.batch, c, "auto_renewal_status", { S }, { keep_results = "no", on_result = print })
      return { ok = ok, err = err, ok2 = ok2, err2 = err2 }
    ]]
    assert.is_false(v.ok)
    assert.matches("batch: option 'keep_results' = false needs on_result (the results are handed to it, not kept)",
      v.err, 1, true)
    assert.is_false(v.ok2)
    assert.matches("batch: bad option 'keep_results' (concurrency: integer 1..256, on_result: function, "
      .. "keep_results: boolean)", v.err2, 1, true)
    assert.equal(0, #portal:requests())
  end)

  it("close() from on_result: the items in flight finish, every later one fails with kind closed", function()
    local v = run [[
      local seen, kinds = 0, { ok = 0, closed = 0 }
      local totals = c:batch("auto_renewal_status", list(20), { concurrency = 4, keep_results = false,
        on_result = function(_, result, err)
          seen = seen + 1
          if seen == 2 then c:close() end
          if result then kinds.ok = kinds.ok + 1
          elseif err.kind == "closed" and err.code == "client_closed" then kinds.closed = kinds.closed + 1 end
        end })
      return { totals = totals, kinds = kinds, closed = c:is_closed() }
    ]]
    assert.same({ total = 20, failed = 15 }, v.totals)
    assert.same({ ok = 5, closed = 15 }, v.kinds)
    assert.is_true(v.closed)
  end)

  it("an error raised in on_result ends the batch at once; nothing more is built", function()
    local v = run [[
      local reads, calls = 0, 0
      local items = {}
      for i = 1, 40 do
        items[i] = setmetatable({}, { __index = function(_, key) if key == "productNo" then reads = reads + 1 end
          return S[key] end })
      end
      local ok, err = pcall(c.batch, c, "auto_renewal_status", items, { concurrency = 4, keep_results = false,
        on_result = function() calls = calls + 1; error("stop here", 0) end })
      local r = c:auto_renewal_status(S)
      return { ok = ok, err = err, calls = calls, reads = reads, usable = r and r.autoRenew }
    ]]
    assert.same({ false, "stop here", 1, true }, { v.ok, v.err, v.calls, v.usable })
    assert.is_true(v.reads <= 5, "items read: " .. v.reads) -- the 4 first, perhaps 1 more; never the 40
  end)
end)
