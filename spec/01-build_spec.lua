-- spec/01-build_spec.lua: one version everywhere, a module that exports only luaopen_* and
-- does not link liblua, and an offline `luarocks make` that yields a loadable module.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"
local run = helpers.run -- output without its trailing newline, and a real exit code on 5.1 too

-- package.searchpath is 5.2+ (LuaJIT has it; plain 5.1 does not).
local function searchpath(name, path)
  local file = name:gsub("%.", "/")
  for template in path:gmatch("[^;]+") do
    local candidate = template:gsub("%?", file)
    local fh = io.open(candidate, "rb")
    if fh then fh:close() return candidate end
  end
end

local function rockspecs()
  local out = run("ls *.rockspec")
  local list = {}
  for name in out:gmatch("[^\n]+") do list[#list + 1] = name end
  return list
end

describe("build", function()
  it("has one version: _VERSION, the rockspec's name and its version field agree", function()
    local specs = rockspecs()
    assert.equal(1, #specs)
    local from_name = specs[1]:match("^yeastar%-partner%-(.+)%-%d+%.rockspec$")
    local text = assert(io.open(specs[1])):read("*a")
    local from_field = text:match('\nversion%s*=%s*"(.-)%-%d+"')
    assert.equal(partner._VERSION, from_name)
    assert.equal(partner._VERSION, from_field)
  end)

  it("exports only luaopen_yeastar_partner and does not link liblua", function()
    local so = assert(searchpath("yeastar.partner", package.cpath))
    local symbols = run("nm -D --defined-only " .. so .. " | awk '$2 == \"T\" {print $3}'")
    assert.equal("luaopen_yeastar_partner", symbols)
    local needed = run("readelf -d " .. so)
    assert.is_nil(needed:find("liblua", 1, true))
  end)
end)

describe("luarocks #external", function()
  -- For the runtime under test. LuaJIT is LuaRocks' 5.1 with its own interpreter and headers
  -- (the Makefile then derives the luajit build from LUA).
  local abi = helpers.RUNTIME == "luajit" and "5.1" or helpers.RUNTIME
  local vars = helpers.RUNTIME == "luajit" and " LUA=/usr/bin/luajit LUA_INCDIR=/usr/include/luajit-2.1" or ""

  it("builds offline into a fresh tree and the module loads from it", function()
    local tmp = run("mktemp -d -t yeastar-rock.XXXXXX")
    assert.truthy(tmp:find("yeastar-rock.", 1, true))
    -- From a copy of the sources: `luarocks make` runs make in its cwd, and the checkout's
    -- build/ belongs to the other runs (and to whoever is editing src/ right now).
    local out, code = run("mkdir " .. tmp .. "/src && tar -cf - --exclude=./.git --exclude=./build "
      .. "--exclude='./build-*' . | tar -xf - -C " .. tmp .. "/src && cd " .. tmp .. "/src && "
      .. "luarocks --lua-version=" .. abi .. " make --tree " .. tmp .. "/tree" .. vars)
    local loaded = run(helpers.LUA .. " -e 'package.cpath=\"" .. tmp .. "/tree/lib/lua/" .. abi .. "/?.so\" "
      .. "io.write(_VERSION, \" \", tostring(jit ~= nil), \" \", require(\"yeastar.partner\")._VERSION)'")
    os.execute("rm -rf -- " .. helpers.shell_quote(tmp))
    assert.equal(0, code, out)
    assert.equal(_VERSION .. " " .. tostring(jit ~= nil) .. " " .. partner._VERSION, loaded)
  end)
end)

describe("README", function()
  local readme = assert(io.open("README.md")):read("*a")

  it("documents every endpoint method with a syntax line and the two commands", function()
    local n = 0
    for name in pairs(partner.endpoints) do
      n = n + 1
      assert.truthy(readme:find("syntax: result, err = client:" .. name, 1, true), name)
    end
    assert.equal(27, n)
    assert.truthy(readme:find("make demo", 1, true))
    assert.truthy(readme:find("make test", 1, true))
  end)

  it(".ci/run calls the README's test command", function()
    local ci = assert(io.open(".ci/run")):read("*a")
    assert.truthy(ci:find("\nmake test\n", 1, true))
  end)
end)
