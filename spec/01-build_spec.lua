-- spec/01-build_spec.lua: one version everywhere, a module that exports only luaopen_* and
-- does not link liblua, and an offline `luarocks make` that yields a loadable module.
local partner = require "yeastar.partner"

local function run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  local ok, _, code = p:close()
  return out, ok and 0 or code
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
    local so = package.searchpath("yeastar.partner", package.cpath)
    local symbols = run("nm -D --defined-only " .. so .. " | awk '$2 == \"T\" {print $3}'")
    assert.equal("luaopen_yeastar_partner\n", symbols)
    local needed = run("readelf -d " .. so)
    assert.is_nil(needed:find("liblua", 1, true))
  end)
end)

describe("luarocks #external", function()
  it("builds offline into a fresh tree and the module loads from it", function()
    local tree = run("mktemp -d"):gsub("%s+$", "")
    local out, code = run("luarocks --lua-version=5.4 make --tree " .. tree)
    assert.equal(0, code, out)
    local loaded = run("lua5.4 -e 'package.cpath=\"" .. tree .. "/lib/lua/5.4/?.so\" "
      .. "print(require(\"yeastar.partner\")._VERSION)'")
    os.execute("rm -rf " .. tree)
    assert.equal(partner._VERSION .. "\n", loaded)
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
