-- spec/18-sandbox_spec.lua: the fake portal as a product, as `make fake-portal` gives it to a user:
-- its exports, devices from a file or the control plane, one portal per state dir, stopping with
-- make and during start-up; and the rock's commands (the examples) run against it.
-- Portals here are real processes started through make or python3, never left running.
local helpers = require "spec.helpers"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local q, run, read_file = helpers.shell_quote, helpers.run, helpers.read_file

local PORTAL = "fakeportal/portal.py" -- specs run from the repository root, as make does
local SECRET = "yp-demo-secret-5f2b9c"

local function tmpdir(tag)
  local dir = run("mktemp -d -t yeastar-" .. tag .. ".XXXXXX")
  assert(dir:find("yeastar-" .. tag .. ".", 1, true), "mktemp failed")
  return dir
end

-- date + n days (local noon, so no DST shift crosses a day): the portal's default expiry.
local function add_days(date, n)
  local y, m, d = date:match("^(%d+)-(%d+)-(%d+)$")
  return os.date("%Y-%m-%d", os.time { year = tonumber(y), month = tonumber(m), day = tonumber(d) + n, hour = 12 })
end

local function write(path, text)
  local fh = assert(io.open(path, "wb"))
  fh:write(text)
  fh:close()
end

-- Alive and not a zombie; with needle, its command line must also contain it (PIDs get reused:
-- never signal one on trust).
local function alive(pid, needle)
  local stat = pid and read_file("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%)%s+(%a)")
  if state == "Z" or state == "X" then return false end
  return not needle or (read_file("/proc/" .. pid .. "/cmdline") or ""):find(needle, 1, true) ~= nil
end

local function wait_until(check, seconds)
  local deadline = socket.gettime() + seconds
  while not check() do
    if socket.gettime() > deadline then return false end
    socket.sleep(0.05)
  end
  return true
end

local function pid_in(path)
  return tonumber((read_file(path) or ""):match("%d+"))
end

local function signal(pid, name)
  os.execute("kill -" .. name .. " " .. pid .. " 2>/dev/null")
end

-- TERM, up to 5 s, then KILL; only a PID whose command line names needle.
local function terminate(pid, needle)
  if not alive(pid, needle) then return end
  signal(pid, "TERM")
  if not wait_until(function() return not alive(pid, needle) end, 5) then signal(pid, "KILL") end
end

-- One control-plane call: status and decoded answer (LuaSocket + cjson, not the module's code).
local function control(url, method, path, body)
  local chunks = {}
  local _, status = http.request{
    url = url .. path, method = method, sink = ltn12.sink.table(chunks),
    headers = body and { ["content-type"] = "application/json", ["content-length"] = #body } or nil,
    source = body and ltn12.source.string(body) or nil,
  }
  return status, helpers.json_decode(table.concat(chunks))
end

-- A `make fake-portal` of our own: its state dir in a temp dir, any free ports, and the portal
-- watching this process (--owner-pid) so that it never outlives the test run.
local Sandbox = {}
Sandbox.__index = Sandbox

local function make_command(dir, devices)
  return "make --no-print-directory -s fake-portal FAKE_PORTAL_DIR=" .. q(dir) .. " PORT=0 PORTAL_ARGS="
    .. q("--owner-pid " .. helpers.own_process_pid()) .. (devices and " DEVICES=" .. q(devices) or "")
end

-- Starts make in the background and waits until a portal other than old_pid is serving; if
-- none does, stops what it started and raises.
function Sandbox:launch(old_pid)
  self.runs = self.runs + 1
  self.out = self.root .. "/make" .. self.runs .. ".out"
  os.execute(make_command(self.dir, self.devices) .. " >" .. q(self.out) .. " 2>&1 </dev/null & echo $! >"
    .. q(self.root .. "/make.pid"))
  self.make_pid = pid_in(self.root .. "/make.pid")
  self.info, self.pid = nil, nil
  wait_until(function()
    local text = read_file(self.dir .. "/portal.json")
    local info = text and helpers.json_decode(text)
    local pid = info and math.floor(info.pid) -- cjson 2.1 decodes every number as a float
    if pid and pid ~= old_pid and alive(pid) then
      self.info, self.pid = info, pid
      return true
    end
    return not alive(self.make_pid)
  end, 20)
  if not self.info then
    local out = read_file(self.out) or ""
    self:stop()
    error("make fake-portal did not start:\n" .. out, 2)
  end
  return self
end

function Sandbox:control(method, path, body)
  return control(self.info.control_url, method, path, body)
end

function Sandbox:stop()
  if self.stopped then return end
  self.stopped = true
  terminate(self.make_pid, self.dir) -- make's command line names the dir, the portal's too
  terminate(pid_in(self.dir .. "/portal.pid"), self.dir)
  os.execute("rm -rf -- " .. q(self.root))
end

local function sandbox(devices_text, name)
  local root = tmpdir("sandbox")
  local s = helpers.stop_when_collected(setmetatable({ root = root, dir = root .. "/state", runs = 0 }, Sandbox))
  if devices_text then
    s.devices = root .. "/" .. (name or "devices.csv")
    write(s.devices, devices_text)
  end
  return s:launch()
end

describe("make fake-portal #external", function()
  local s
  after_each(function()
    if s then s:stop() end
    s = nil
  end)

  it("prints the five exports, the control URL among them, and they work as printed", function()
    s = sandbox()
    local exports = {}
    for line in (read_file(s.out) or ""):gmatch("[^\n]+") do
      if line:find("^export ") then exports[#exports + 1] = line end
    end
    assert.are.same({
      "export YEASTAR_BASE_URL=" .. s.info.base_url,
      "export YEASTAR_CA_FILE=" .. s.dir .. "/ca.pem",
      "export YEASTAR_CLIENT_ID=yp-demo-client",
      "export YEASTAR_CLIENT_SECRET=" .. SECRET,
      "export YEASTAR_CONTROL_URL=" .. s.info.control_url,
    }, exports)
    -- Pasted into a shell: the control plane and the API answer.
    local out, code = run(table.concat(exports, "; ") .. '; curl -sS "$YEASTAR_CONTROL_URL/_control/stats"'
      .. ' && curl -sS --cacert "$YEASTAR_CA_FILE" "$YEASTAR_BASE_URL/pricing/openapi/purchase/v1/product_list"')
    assert.are.equal(0, code, out)
    assert.truthy(out:find('{"total": 0, "in_flight": 0, "max_in_flight": 0}', 1, true), out)
    assert.truthy(out:find('"code": "unauthorized"', 1, true), out)
    assert.truthy((read_file(s.out) or ""):find("\n  Devices       : 6 (the seed devices)\n", 1, true))
  end)

  it("loads devices from a CSV file (DEVICES=), again after every reset", function()
    s = sandbox("# a rehearsal fleet\r\n"
      .. "productNo,productId,planId,autoRenew,model,expiry\r\n"
      .. "SBX0001,12,3049040650094403584,false,PSE,2026-12-31\r\n"
      .. '\r\nSBX0002,15,"3049036224189325312",TRUE,,\r\n'
      .. "3651E0529415,12,3049040650094403584,false,PSE-2,2025-06-30\r\n")
    assert.truthy(read_file(s.out):find("\n  Devices       : 8 (3 from " .. s.devices .. ")\n", 1, true))
    local _, state = s:control("GET", "/_control/state")
    assert.are.same({ productId = 12, planId = "3049040650094403584", autoRenew = false, model = "PSE",
      expiry = "2026-12-31" }, state.devices.SBX0001)
    -- model and expiry are optional: the product's name and a year from the portal's today
    assert.are.same({ productId = 15, planId = "3049036224189325312", autoRenew = true,
      model = "Remote Management", expiry = add_days(state.today, 365) }, state.devices.SBX0002)
    -- a device of the file replaces the seed device of that productNo
    assert.are.same({ productId = 12, planId = "3049040650094403584", autoRenew = false, model = "PSE-2",
      expiry = "2025-06-30" }, state.devices["3651E0529415"])

    local client = helpers.client(s.info)
    assert.are.same({ autoRenew = true }, client:auto_renewal_status{ productNo = "SBX0002", productId = 15 })
    assert.are.equal("2026-12-31",
      client:product_details{ productNo = "SBX0001", productId = 12 }.currentPlanExpireDate)
    assert.are.same({ productModel = "PSE" }, client:product_model{ productNo = "SBX0001", productId = 12 })
    assert.is_true(client:enable_auto_renewal{ productNo = "SBX0001", productId = 12,
      planOrServiceId = "3049040650094403584" })
    -- A device the file does not list fails as on the real portal, saying why.
    local none, err = client:auto_renewal_status{ productNo = "3651E0999999", productId = 12 }
    assert.is_nil(none)
    assert.are.same({ "api", "product_not_found", 404, "device 3651E0999999 is not in this account" },
      { err.kind, err.code, err.status, err.message })
    client:close()

    assert.are.equal(200, (s:control("POST", "/_control/reset")))
    _, state = s:control("GET", "/_control/state")
    assert.is_false(state.devices.SBX0001.autoRenew) -- as the file says, again
    assert.are.equal("PSE-2", state.devices["3651E0529415"].model)
  end)

  it("loads devices from a JSON file, and POST /_control/devices adds more until the next reset", function()
    s = sandbox('[\n  {"productNo": "J1", "productId": 12, "planId": 3049040650094403584, "autoRenew": false},\n'
      .. '  {"productNo": "J2", "productId": 11, "planId": "3048558946648207360", "autoRenew": true,\n'
      .. '   "model": "P550", "expiry": "2028-02-29"}\n]\n', "devices.json")
    local _, state = s:control("GET", "/_control/state")
    assert.are.same({ productId = 12, planId = "3049040650094403584", autoRenew = false,
      model = "P-Series Software Edition", expiry = add_days(state.today, 365) }, state.devices.J1)
    assert.are.equal("2028-02-29", state.devices.J2.expiry)

    -- All or nothing: one bad device refuses the request, naming it.
    local status, answer = s:control("POST", "/_control/devices", '{"devices": ['
      .. '{"productNo": "C1", "productId": 12, "planId": "3049040650094403584", "autoRenew": false},'
      .. '{"productNo": "C2", "productId": 12, "planId": "3049040650094403584", "autoRenew": "yes"}]}')
    assert.are.equal(400, status)
    assert.are.same({ error = "device 2: autoRenew must be true or false, got 'yes'" }, answer)
    _, state = s:control("GET", "/_control/state")
    assert.is_nil(state.devices.C1)

    -- The answer is a device list that ensure_auto_renewal takes as it is.
    status, answer = s:control("POST", "/_control/devices", '{"devices": ['
      .. '{"productNo": "C1", "productId": 12, "planId": "3049040650094403584", "autoRenew": false},'
      .. '{"productNo": "C2", "productId": 12, "planId": "3049040650094403584", "autoRenew": true}]}')
    assert.are.equal(200, status)
    assert.are.same({ devices = {
      { productNo = "C1", productId = 12, planOrServiceId = "3049040650094403584" },
      { productNo = "C2", productId = 12, planOrServiceId = "3049040650094403584" } } }, answer)
    local client = helpers.client(s.info)
    local report = client:ensure_auto_renewal(answer.devices)
    client:close()
    assert.are.same({ already_on = 1, enabled = 1, would_enable = 0, failed = 0 }, report.totals)

    s:control("POST", "/_control/reset")
    _, state = s:control("GET", "/_control/state")
    assert.is_nil(state.devices.C1)
    assert.is_false(state.devices.J1.autoRenew)
  end)

  it("refuses a bad devices file with its line, exit status 2, before writing anything", function()
    local root = tmpdir("devices")
    local cases = {
      { "a.csv", "productNo,productId,planId,autoRenew\n\nA1,12,1,true\nA2,12,1,yes\n",
        ":4: autoRenew must be true or false, got 'yes'" },
      { "b.csv", "# old header\nproductNo,productId,planOrServiceId,autoRenew\n",
        ":2: unknown column 'planOrServiceId' (columns: productNo, productId, planId, autoRenew, model, expiry)" },
      { "c.csv", "productNo,productId,planId\n", ":1: the header has no column autoRenew" },
      { "d.csv", "productNo,productId,planId,autoRenew,expiry\nA1,12,1,true,2027-02-30\n",
        ":2: expiry must be a date YYYY-MM-DD, +N or -N days from today (N up to 36500), or none, got '2027-02-30'" },
      { "e.csv", "productNo,productId,planId,autoRenew\nA1,12,1,true\nA1,12,1,false\n",
        ":3: productNo A1 is listed twice (first at " .. root .. "/e.csv:2)" },
      { "f.csv", "productNo,productId,planId,autoRenew\nA1,99,1,true\n",
        ":2: productId 99 is not a product (known: 9, 11, 12, 13, 14, 15, 19, 21)" },
      { "g.csv", "productNo,productId,planId,autoRenew\nA 1,12,1,true\n",
        ":2: productNo must be 1 to 64 letters, digits, '.', '_' or '-', got 'A 1'" },
      { "h.csv", "productNo,productId,planId,autoRenew\nA1,12,1\n", ":2: 3 values for 4 columns" },
      { "i.csv", "productNo,productId,planId,autoRenew\nA1,12,1.5,true\n",
        ":2: planId must be a positive integer, got '1.5'" },
      { "j.csv", "", ": no header line (productNo,productId,planId,autoRenew[,model][,expiry])" },
      { "a.json", '[\n {"productNo": "J1", "productId": 12, "planId": 1, "autoRenew": true},\n'
        .. ' {"productNo": "J2", "productId": 12, "planId": "x", "autoRenew": true}\n]\n',
        ":3: planId must be a positive integer, got 'x'" },
      { "b.json", '[\n {"productNo": "J1", "productId": 12,\n  "planId": 1 "autoRenew": true}\n]\n',
        ":3: not valid JSON: Expecting ',' delimiter" },
      { "c.json", '{"devices": []}', ":1: a JSON devices file is a list of device objects" },
      { "d.json", '[\n 5\n]', ":2: a device is a JSON object, got int" },
      { "e.json", '[{"productNo": "J1", "productId": 12, "planId": 1, "autoRenew": "true"}]',
        ":1: autoRenew must be true or false, got 'true'" },
      { "f.json", '[{"productNo": "J1", "productId": 12.0, "planId": 1, "autoRenew": true}]',
        ":1: productId must be a positive integer, got 12.0" },
      { "g.json", '[{"productNo": "J1", "productId": 12, "planId": 1, "autoRenew": true, "fail": true}]',
        ":1: unknown field 'fail' (fields: productNo, productId, planId, autoRenew, model, expiry)" },
    }
    local ok, err = pcall(function()
      for _, case in ipairs(cases) do
        local file = root .. "/" .. case[1]
        write(file, case[2])
        local out, code = run("timeout 20 python3 " .. PORTAL .. " --state-dir " .. q(root .. "/state")
          .. " --devices " .. q(file))
        assert.are.equal(2, code, case[1])
        assert.are.equal("portal: " .. file .. case[3], out)
        assert.is_nil(io.open(root .. "/state"), case[1]) -- not even the state dir
      end
      local out, code = run("timeout 20 python3 " .. PORTAL .. " --state-dir " .. q(root .. "/state")
        .. " --devices " .. q(root .. "/missing.csv"))
      assert.are.equal(2, code)
      assert.are.equal("portal: " .. root .. "/missing.csv: cannot read the devices file: "
        .. "[Errno 2] No such file or directory: '" .. root .. "/missing.csv'", out)
    end)
    os.execute("rm -rf -- " .. q(root))
    assert(ok, err)
  end)

  it("refuses a second start in the same state dir without touching the running portal", function()
    s = sandbox()
    local files = { "ca.pem", "ca.key", "server.pem", "server.key", "portal.json", "portal.pid" }
    local before = {}
    for _, f in ipairs(files) do before[f] = assert(read_file(s.dir .. "/" .. f), f) end

    local out, code = run("timeout 30 " .. make_command(s.dir))
    assert.are_not.equal(0, code)
    assert.truthy(out:find("portal: " .. s.dir .. " is in use by another fake portal (pid " .. s.pid
      .. ", API " .. s.info.base_url .. ", control " .. s.info.control_url .. "); stop that one first, "
      .. "or give this one another --state-dir\n", 1, true), out)
    for _, f in ipairs(files) do assert.are.equal(before[f], read_file(s.dir .. "/" .. f), f) end
    -- Still serving with the CA its clients trust.
    assert.are.equal(200, (s:control("GET", "/_control/stats")))
    local client = helpers.client(s.info)
    assert.are.same({ autoRenew = true }, client:auto_renewal_status(helpers.STATUS))
    client:close()
  end)

  it("stops with make, and neither a stop nor a crash blocks the next start in the dir", function()
    s = sandbox()
    local first = s.pid
    signal(s.make_pid, "TERM") -- make passes it on to its child: the portal itself, not a shell
    assert.is_true(wait_until(function() return not alive(first) end, 5), "the portal outlived make")
    assert.is_nil(read_file(s.dir .. "/portal.json"))

    s:launch(first)
    local second = s.pid
    signal(second, "KILL") -- a crash: its pid file and portal.json stay behind
    assert.is_true(wait_until(function() return not alive(second) end, 5))
    assert.truthy(read_file(s.dir .. "/portal.json"))
    s:launch(second)
    assert.are.equal(200, (s:control("GET", "/_control/stats")))
  end)
end)

describe("the fake portal's start-up #external", function()
  it("stops the openssl it is running when told to stop", function()
    local root = tmpdir("startup")
    -- An openssl that hangs, so that the stop request arrives while it runs.
    write(root .. "/openssl", "#!/bin/sh\necho $$ >" .. q(root .. "/openssl.pid") .. "\nexec sleep 60\n")
    os.execute("chmod +x " .. q(root .. "/openssl"))
    os.execute("env PATH=" .. q(root) .. ":\"$PATH\" python3 " .. PORTAL .. " --state-dir " .. q(root .. "/state")
      .. " --owner-pid " .. helpers.own_process_pid() .. " >/dev/null 2>&1 </dev/null &")
    local child
    local ok, err = pcall(function()
      assert.is_true(wait_until(function()
        child = pid_in(root .. "/openssl.pid")
        return alive(child, "sleep")
      end, 20), "openssl never ran")
      local portal = pid_in(root .. "/state/portal.pid")
      signal(portal, "TERM")
      assert.is_true(wait_until(function() return not alive(portal) end, 5), "the portal did not stop")
      assert.is_false(alive(child, "sleep"), "openssl outlived the portal")
      assert.is_nil(read_file(root .. "/state/portal.json"))
    end)
    terminate(pid_in(root .. "/state/portal.pid"), root)
    terminate(child, "sleep")
    os.execute("rm -rf -- " .. q(root))
    assert(ok, err)
  end)
end)

describe("the rock's commands #external", function()
  -- For the runtime under test, as spec/01 builds it: LuaJIT is LuaRocks' 5.1 with its own
  -- interpreter and headers.
  local abi = helpers.RUNTIME == "luajit" and "5.1" or helpers.RUNTIME
  local vars = helpers.RUNTIME == "luajit" and " LUA=/usr/bin/luajit LUA_INCDIR=/usr/include/luajit-2.1" or ""
  local COMMANDS = { "yeastar-ensure-auto-renewal", "yeastar-renew-remote-management", "yeastar-renewal-info" }

  it("are installed by luarocks make, with the license and changelog, and run against the fake portal", function()
    local tmp = tmpdir("rock-bin")
    local portal
    local ok, err = pcall(function()
      -- From a copy of the sources: the checkout's build/ belongs to other runs.
      local out, code = run("mkdir " .. tmp .. "/src && tar -cf - --exclude=./.git --exclude=./build "
        .. "--exclude='./build-*' . | tar -xf - -C " .. tmp .. "/src && cd " .. tmp .. "/src && "
        .. "luarocks --lua-version=" .. abi .. " make --tree " .. tmp .. "/tree" .. vars)
      assert.are.equal(0, code, out)
      for _, name in ipairs(COMMANDS) do
        assert.are.equal(0, select(2, run("test -x " .. tmp .. "/tree/bin/" .. name)), name)
      end
      local rockspec = run("ls *.rockspec")
      local version = rockspec:match("^yeastar%-partner%-(.+)%.rockspec$")
      local docs = run("ls " .. tmp .. "/tree/lib/luarocks/rocks-" .. abi .. "/yeastar-partner/" .. version .. "/doc")
      assert.are.equal("CHANGELOG.md\nLICENSE\nREADME.md", docs)

      portal = helpers.start_portal{}
      -- From another directory, so only the installed module can be found.
      local env = "cd " .. tmp .. " && env YEASTAR_BASE_URL=" .. q(portal.base_url) .. " YEASTAR_CA_FILE="
        .. q(portal.ca_file) .. " YEASTAR_CLIENT_ID=" .. q(portal.client_id) .. " YEASTAR_CLIENT_SECRET="
        .. q(portal.client_secret) .. " "
      out, code = run(env .. tmp .. "/tree/bin/yeastar-renewal-info")
      assert.are.equal(0, code, out)
      assert.truthy(out:find("Hotel PMS Integration", 1, true), out)
      out, code = run(env .. tmp .. "/tree/bin/yeastar-renew-remote-management") -- a dry run
      assert.are.equal(0, code, out)
      assert.are.equal(0, helpers.count(portal, helpers.ORDER_PATH))
    end)
    if portal then portal:stop() end
    os.execute("rm -rf -- " .. q(tmp))
    assert(ok, err)
  end)
end)

describe("packaging", function()
  it("has the MIT license the rockspec names, and a changelog section for the rockspec's version", function()
    local rockspec = assert(read_file(run("ls *.rockspec")))
    assert.truthy(rockspec:find('\n   license = "MIT",\n', 1, true))
    local license = assert(read_file("LICENSE"))
    assert.truthy(license:find("^MIT License\n\nCopyright %(c%) 2026 the yeastar%-partner authors\n"))
    local version = rockspec:match('\nversion%s*=%s*"(.-)%-%d+"')
    local changelog = assert(read_file("CHANGELOG.md"))
    assert.truthy(changelog:find("\n## [" .. version .. "] - ", 1, true), version)
  end)
end)
