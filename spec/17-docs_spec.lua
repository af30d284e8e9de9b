-- spec/17-docs_spec.lua: the documentation derived from the endpoint table is current (README's
-- method reference, types/yeastar/partner.lua), complete and true: every method has a shape, an
-- example and sources that exist, and every example runs on the fake portal into its shape.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"
local shape = dofile("tools/shape.lua")
local reference = assert(loadfile("tools/gen-reference.lua"))(partner)
local luals = assert(loadfile("tools/gen-luals.lua"))(partner)

local readme = assert(helpers.read_file("README.md"))
local types = assert(helpers.read_file("types/yeastar/partner.lua"))

local function names_in_order()
  local names = {}
  for name in pairs(partner.endpoints) do names[#names + 1] = name end
  table.sort(names, function(a, b) return partner.endpoints[a].index < partner.endpoints[b].index end)
  return names
end

-- Calls fn(param, endpoint name, path) for every parameter and nested member.
local function each_param(fn)
  local function walk(name, params, prefix)
    for _, p in ipairs(params) do
      fn(p, name, prefix .. p.name)
      if p.fields then walk(name, p.fields, prefix .. p.name .. (p.type == "list" and "[]." or ".")) end
    end
  end
  for name, ep in pairs(partner.endpoints) do walk(name, ep.params, "") end
end

-- The README's text for one method: from its heading to the next.
local function readme_section(name)
  local s = assert(readme:find("\n#### " .. name .. "\n", 1, true), name)
  local e = readme:find("\n####? ", s + 1) or #readme
  return readme:sub(s, e)
end

describe("docs", function()
  describe("are current", function()
    it("the README's method reference is what `make reference` generates", function()
      local s = assert(readme:find(reference.BEGIN, 1, true), "README: no reference markers")
      local e = assert(readme:find(reference.END, s, true), "README: no end marker")
      local committed = readme:sub(s + #reference.BEGIN, e - 1)
      assert(committed == reference.generate(partner),
        "README.md's method reference is out of date: run `make reference`")
    end)

    it("types/yeastar/partner.lua is what `make types` generates", function()
      assert(types == luals.generate(partner), "types/yeastar/partner.lua is out of date: run `make types`")
    end)
  end)

  describe("README", function()
    it("links to no file outside the repository", function()
      assert.is_nil(readme:match("[^\n]*%.%./[%w_%-]+[/.][^\n]*"))
      for target in readme:gmatch("%]%(([^)#]+)[^)]*%)") do
        if not target:find("^%a+:") then
          local fh = io.open(target, "rb")
          assert(fh, "README links to a missing " .. target)
          fh:close()
        end
      end
    end)

    it("shows nested members: serviceId in create_order, pricingId in calculate_subscription_price", function()
      local order, quote = readme_section("create_order"), readme_section("calculate_subscription_price")
      assert.truthy(order:find("| `serviceList[].serviceId` | body | integer | yes |", 1, true))
      assert.truthy(order:find("| `orderPceSpecialRequest.regionId` |", 1, true))
      assert.truthy(quote:find("| `serviceList[].pricingId` | body | integer | yes |", 1, true))
      assert.is_nil(quote:find("serviceList[].serviceId", 1, true))
    end)

    it("shows each method's result, an example and where renewal_plan_info's pricingPlanId comes from", function()
      for _, name in ipairs(names_in_order()) do
        local section = readme_section(name)
        assert.truthy(section:find("\nReturns", 1, true), name)
        assert.truthy(section:find("```lua\nlocal [%w_]+, err = client:" .. name), name)
      end
      assert.truthy(readme_section("renewal_plan_info"):find(
        "| `pricingPlanId` | path | string | yes | `plans_and_services` → `planList[].pricingPlanId` |", 1, true))
    end)

    it("has a Going live section: credentials, IP allow-list, CA, proxies, rate, tokens", function()
      local s = assert(readme:find("\n## Going live\n", 1, true))
      local text = readme:sub(s, (readme:find("\n## ", s + 1, true) or #readme))
      for _, word in ipairs { "System > API", "Client IP Restriction", "ca_file", "HTTPS_PROXY",
                              "NO_PROXY", "proxy = ", "YEASTAR_PROXY", "\"proxy\"",
                              "concurrency", "Retry-After", "token_store" } do
        assert.truthy(text:find(word, 1, true), word)
      end
    end)
  end)

  describe("the endpoint table", function()
    it("gives every method a title, a result shape in canonical notation and an example", function()
      for name, ep in pairs(partner.endpoints) do
        assert.truthy(#ep.title > 0, name)
        assert.equal(ep.returns, shape.format(shape.parse(ep.returns)))
        assert.truthy(ep.example:find("^local [%w_]+, err = client:" .. name .. "[ (]"), name)
        for line in (ep.example .. "\n"):gmatch("(.-)\n") do assert.truthy(#line <= 100, line) end
      end
    end)

    it("exposes nested members in partner.endpoints", function()
      local function members(ep, param)
        for _, p in ipairs(partner.endpoints[ep].params) do
          if p.name == param then
            local list = {}
            for i, f in ipairs(p.fields) do list[i] = f.name .. ":" .. f.type .. (f.required and ":req" or "") end
            return list
          end
        end
      end
      assert.same({ "serviceType:string:req", "serviceId:integer:req", "connectionPlanId:integer",
        "quantity:integer", "purchaseType:string", "billingModel:string", "billingCycle:string",
        "multiCycle:integer" }, members("create_order", "serviceList"))
      assert.same({ "serviceType:string:req", "pricingId:integer:req", "quantity:integer",
        "purchaseType:string", "billingModel:string", "billingCycle:string", "multiCycle:integer" },
        members("calculate_subscription_price", "serviceList"))
      assert.same({ "pbxName:string", "regionId:string", "pbxSubDomainId:string" },
        members("create_order", "orderPceSpecialRequest"))
    end)

    it("names, for each `from`, a method and a member of its result", function()
      local n = 0
      each_param(function(p, name, path)
        if not p.from then return end
        for _, source in ipairs(shape.sources(p.from)) do
          local ep = partner.endpoints[source.method]
          assert(ep, name .. " " .. path .. ": no method " .. source.method)
          assert(shape.resolve(shape.parse(ep.returns), source.path),
            name .. " " .. path .. ": " .. source.method .. " returns no " .. source.path)
          n = n + 1
        end
      end)
      assert.truthy(n > 40)
    end)
  end)

  describe("types/yeastar/partner.lua", function()
    it("defines every yeastar.partner type it uses", function()
      local defined, used = {}, {}
      for kind, name in types:gmatch("\n%-%-%-@(%a+) (yeastar%.partner[%w_.]*)") do
        if kind == "class" or kind == "alias" then defined[name] = true end
      end
      for line in types:gmatch("\n(%-%-%-@[^\n]*)") do
        if not line:find("^%-%-%-@class") and not line:find("^%-%-%-@alias") then
          for name in line:gmatch("yeastar%.partner[%w_.]*") do used[name] = true end
        end
      end
      for name in pairs(used) do assert(defined[name], "undefined type " .. name) end
      for name in pairs(partner.endpoints) do
        assert.truthy(types:find("\nfunction Client:" .. name .. "(", 1, true), name)
      end
    end)

    it("has the error kinds of src/errors.h", function()
      local want, got = {}, {}
      for kind in assert(helpers.read_file("src/errors.h")):gmatch('#define YP_KIND_%u+ "(%a+)"') do
        want[#want + 1] = kind
      end
      local alias = types:match("@alias yeastar%.partner%.ErrorKind\n(.-)\n\n")
      for kind in alias:gmatch('%-%-%-| "(%a+)"') do got[#got + 1] = kind end
      table.sort(want)
      table.sort(got)
      assert.same(want, got)
    end)

    it("is a Lua file that loads", function()
      assert(loadfile("types/yeastar/partner.lua"))
    end)

    -- Names as a sorted list, from text: names_of(text, pattern) collects each capture.
    local function names_of(text, pattern)
      local list = {}
      for name in text:gmatch(pattern) do list[#list + 1] = name end
      table.sort(list)
      return list
    end

    it("has the options of partner.new (src/client.c)", function()
      local client_c = assert(helpers.read_file("src/client.c"))
      local c_table = assert(client_c:match("%} options%[%] = (%b{})"), "src/client.c: options[] not found")
      local documented = assert(types:match("@class yeastar%.partner%.Options\n(.-)\n\n"))
      assert.same(names_of(c_table, '{"([%w_]+)", LUA_T'), names_of(documented, "%-%-%-@field ([%w_]+)"))
    end)

    it("has the options of the workflows (src/workflows.lua)", function()
      local workflows = assert(helpers.read_file("src/workflows.lua"))
      for method, options in pairs { find_order = "FIND_ORDER_OPTIONS",
                                     renew_remote_management = "RENEW_RM_OPTIONS",
                                     ensure_auto_renewal = "ENSURE_OPTIONS",
                                     renewal_audit = "AUDIT_OPTIONS" } do
        local lua_table = assert(workflows:match("local " .. options .. " = (%b{})"), options)
        local param = assert(types:match("\n(%-%-%-@param %a+%?? {[^\n]*)\n[^\n]*\n?[^\n]*\nfunction Client:"
          .. method .. "%("), method)
        local members = param:match("%b{}"):sub(2, -2):gsub("%b()", ""):gsub("%b{}", "") -- top level only
        assert.same(names_of(lua_table, '([%w_]+) = "'), names_of(members, "([%w_]+)%??:"), method)
      end
    end)

  end)

  describe("examples", function()
    local portal
    lazy_setup(function() portal = helpers.start_portal() end)
    lazy_teardown(function() portal:stop() end)

    it("run in order on the fake portal, and each result has its documented shape", function()
      local client = helpers.client(portal)
      local json = { null = partner.null, array_mt = partner.array_mt }
      for _, name in ipairs(names_in_order()) do
        local ep = partner.endpoints[name]
        local var = ep.example:match("^local ([%w_]+)")
        local chunk = assert((loadstring or load)("local client = ...\n" .. ep.example
          .. "\nreturn " .. var .. ", err", "=" .. name))
        local result, err = chunk(client)
        assert(result ~= nil, name .. ": " .. tostring(err))
        assert(shape.check(shape.parse(ep.returns), result, json, name))
      end
      client:close()
    end)
  end)
end)
