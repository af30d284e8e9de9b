-- spec/helpers.lua: start, stop and drive the fake portal (fakeportal/portal.py) from busted specs.
-- Owns the control-plane client (LuaSocket + cjson), so specs never depend on the module's own HTTP/JSON code.
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
-- A private cjson instance: settings other specs change on the shared one cannot leak in here.
local cjson = require("cjson").new()

local M = {}

-- The runtime running the suite, as the Makefile names it (build/<RUNTIME>/) and as Debian
-- names its interpreter. Specs are portable Lua 5.1 to 5.4 and LuaJIT.
M.RUNTIME = jit and "luajit" or _VERSION:match("%d+%.%d+")
M.LUA = jit and "luajit" or "lua" .. M.RUNTIME
-- Whether Lua numbers have an integer subtype (5.3+). Where they do not, every number is a
-- double: IDs beyond 2^53 travel as strings (or LuaJIT int64 cdata).
M.INTEGERS = math.type ~= nil

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local fh = io.open(path, "rb")
  if not fh then return nil end
  local data = fh:read("*a") -- "*a": 5.1 and LuaJIT know no "a"
  fh:close()
  return data
end

local function command_output(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

-- Runs a shell command; returns its output (stdout and stderr) and exit code. The code comes
-- through the output because io.popen():close() gives none on Lua 5.1.
function M.run(cmd)
  local out = command_output("(" .. cmd .. ") 2>&1; echo \"exit:$?\"")
  local text, code = out:match("^(.-)\n?exit:(%d+)$")
  return text, tonumber(code)
end

-- fakeportal/portal.py, found from this file's own location so the cwd does not matter.
local function portal_script()
  local env = os.getenv("YEASTAR_FAKE_PORTAL")
  if env and env ~= "" then return env end
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = command_output("pwd") .. "/" .. dir end
  return dir .. "/../fakeportal/portal.py"
end

-- Alive means: the PID exists and is not a zombie (nobody may reap our orphan).  With dir,
-- it must also really be our portal, i.e. its command line names our own state dir: PIDs get
-- reused, so never signal one on trust.  (Right after the fork, cmdline can briefly read
-- empty while python is being exec'd, so the start-up wait checks without dir.)
local function portal_alive(pid, dir)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%)%s+(%a)")
  if state == "Z" or state == "X" then return false end
  if not dir then return true end
  local cmdline = read_file("/proc/" .. pid .. "/cmdline") or ""
  return cmdline:find(dir, 1, true) ~= nil
end

local function b64decode(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local value = {}
  for i = 1, #alphabet do value[alphabet:byte(i)] = i - 1 end
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = value[s:byte(i)]
    if v then -- skips '=' padding
      bits = bits * 64 + v -- arithmetic, not bit operators: those are 5.3+ syntax
      nbits = nbits + 6
      if nbits >= 8 then
        nbits = nbits - 8
        local byte = math.floor(bits / 2 ^ nbits)
        out[#out + 1] = string.char(byte)
        bits = bits - byte * 2 ^ nbits
      end
    end
  end
  return table.concat(out)
end
M.b64decode = b64decode

function M.b64encode(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for j = 1, 4 do
      local v = math.floor(n / 64 ^ (4 - j)) % 64
      chars[j] = alphabet:sub(v + 1, v + 1)
    end
    if not b then chars[3] = "=" end
    if not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

local Portal = {}
Portal.__index = Portal

-- One control-plane call; errors (with the portal's answer) unless it says 200.
function Portal:_control(method, path, body)
  local payload = body and cjson.encode(body) or (method == "POST" and "{}" or nil)
  local chunks = {}
  local ok, code = http.request{
    url = self.control_url .. path,
    method = method,
    headers = payload and { ["content-type"] = "application/json", ["content-length"] = #payload } or nil,
    source = payload and ltn12.source.string(payload) or nil,
    sink = ltn12.sink.table(chunks),
  }
  local text = table.concat(chunks)
  if not ok then error("fake portal control " .. path .. " failed: " .. tostring(code), 3) end
  if code ~= 200 then error("fake portal control " .. path .. " -> " .. code .. ": " .. text, 3) end
  return cjson.decode(text)
end

function Portal:reset() return self:_control("POST", "/_control/reset") end
function Portal:config(opts) return self:_control("POST", "/_control/config", opts or {}) end
function Portal:expire_tokens() return self:_control("POST", "/_control/expire_tokens") end
function Portal:fault(spec) return self:_control("POST", "/_control/fault", spec or {}) end
function Portal:stats() return self:_control("GET", "/_control/stats") end
-- Control output turns integers beyond 2^53 into strings (cjson would round them):
-- planOrServiceId here, and the big IDs inside state().orders[i].body, are strings.
function Portal:fleet(spec) return self:_control("POST", "/_control/fleet", spec or {}).devices end
function Portal:state() return self:_control("GET", "/_control/state") end

-- Every API-port request since the last reset, in arrival order.
function Portal:requests()
  local list = self:_control("GET", "/_control/requests")
  for _, r in ipairs(list) do
    r.header = {}
    for _, kv in ipairs(r.headers) do
      local name = kv[1]:lower()
      if r.header[name] == nil then r.header[name] = kv[2] end -- first one wins
    end
    r.body = b64decode(r.body_b64)
  end
  return list
end

-- TERM, wait up to 5 s, then KILL; only PIDs whose command line names our state dir.
local function terminate(pid, dir)
  if not (pid and portal_alive(pid, dir)) then return end
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while portal_alive(pid, dir) and socket.gettime() < deadline do socket.sleep(0.05) end
  if portal_alive(pid, dir) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
end

-- The portal's own PID, as it wrote it first thing (see portal.py main()).
local function own_pid(dir)
  return tonumber((read_file(dir .. "/portal.pid") or ""):match("%d+"))
end

function Portal:stop()
  if self._stopped then return end
  self._stopped = true
  terminate(self.pid, self._owned_dir)
  terminate(self._launcher_pid, self._owned_dir) -- normally gone with its child already
  os.execute("rm -rf -- " .. shell_quote(self._owned_dir))
end

-- Safety nets. A spec that forgets stop() must not leave a portal (or nginx) running: __gc stops
-- it. And should Lua never get to collect (busted killed, 5.1 exiting without closing its
-- state), the portal watches our PID (--owner-pid) and exits when we are gone.
-- stop_when_collected(obj) returns obj, whose class has a stop method: set as __gc for 5.2+,
-- carried by a newproxy() userdata on 5.1 and LuaJIT.
function M.stop_when_collected(obj)
  local class = getmetatable(obj)
  class.__gc = class.__gc or function(self) pcall(self.stop, self) end
  setmetatable(obj, class) -- again: 5.2+ marks an object for __gc only when it is set with one
  if newproxy then
    obj._gc_proxy = newproxy(true)
    getmetatable(obj._gc_proxy).__gc = function() pcall(obj.stop, obj) end
  end
  return obj
end

function M.own_process_pid()
  return (read_file("/proc/self/stat") or ""):match("^(%d+)") -- self: this Lua process
end
local own_process_pid = M.own_process_pid

local CLI_OPTIONS = {
  token_lifetime = "--token-lifetime", latency_ms = "--latency-ms", client_id = "--client-id",
  client_secret = "--client-secret", port = "--port", control_port = "--control-port", host = "--host",
}
-- Options that are runtime config rather than command-line flags.
local CONFIG_OPTIONS = { refresh_enabled = true, billing_contacts = true }

-- Starts a fresh portal in its own temp dir and waits (at most 15 s) until it is ready.
function M.start_portal(opts)
  opts = opts or {}
  local dir = command_output("mktemp -d -t yeastar-portal.XXXXXX")
  assert(dir ~= "" and dir:find("yeastar-portal.", 1, true), "mktemp failed")
  -- `make memcheck` preloads the ASan runtime into busted; the portal must not inherit it.
  local args = { "env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS python3",
                 shell_quote(portal_script()), "--state-dir", shell_quote(dir),
                 "--owner-pid", own_process_pid() }
  local config = {}
  for k, v in pairs(opts) do
    if CLI_OPTIONS[k] then
      args[#args + 1] = CLI_OPTIONS[k] .. " " .. shell_quote(v)
    elseif k == "verbose" then
      if v then args[#args + 1] = "--verbose" end
    elseif CONFIG_OPTIONS[k] then
      config[k] = v
    else
      error("start_portal: unknown option " .. tostring(k), 2)
    end
  end
  -- Background it; stdout/stderr stay in the state dir for post-mortems.  $! is only the
  -- launcher: "python3" may be a wrapper (a pyenv shim) that forks the real interpreter,
  -- so the PID we signal later is the one the portal writes itself (portal.pid).
  local line = string.format("%s >%s 2>%s </dev/null & echo $! >%s", table.concat(args, " "),
    shell_quote(dir .. "/stdout.log"), shell_quote(dir .. "/stderr.log"), shell_quote(dir .. "/launcher.pid"))
  os.execute(line)
  local launcher = tonumber((read_file(dir .. "/launcher.pid") or ""):match("%d+"))

  local function fail(why)
    terminate(own_pid(dir), dir)
    terminate(launcher, dir)
    local stderr = read_file(dir .. "/stderr.log") or ""
    os.execute("rm -rf -- " .. shell_quote(dir))
    error("fake portal did not start (" .. why .. "):\n" .. stderr, 3)
  end

  if not launcher then fail("no pid") end
  -- Every step from here on either returns a running portal or stops it and raises.
  local ok, result = pcall(function()
    local deadline = socket.gettime() + 15
    local info
    while true do
      local text = read_file(dir .. "/portal.json")
      if text then info = cjson.decode(text); break end
      local pid = own_pid(dir)
      if not portal_alive(launcher) and not (pid and portal_alive(pid)) then fail("process exited") end
      if socket.gettime() > deadline then fail("timeout waiting for portal.json") end
      socket.sleep(0.05)
    end
    local portal = M.stop_when_collected(setmetatable({
      -- cjson 2.1 decodes every number as a float; a port must be an integer for LuaSocket.
      pid = math.floor(info.pid), base_url = info.base_url, port = math.floor(info.port), ca_file = info.ca_file,
      other_ca_file = info.other_ca_file, expired_url = info.expired_url,
      wrong_host_url = info.wrong_host_url, client_id = info.client_id,
      client_secret = info.client_secret, control_url = info.control_url, state_dir = dir,
      _owned_dir = dir, _launcher_pid = launcher,
    }, Portal))
    if next(config) then portal:config(config) end
    return portal
  end)
  if not ok then
    terminate(own_pid(dir), dir)
    terminate(launcher, dir)
    os.execute("rm -rf -- " .. shell_quote(dir))
    error(result, 2)
  end
  return result
end

-- A yeastar.partner client pointed at the portal; required lazily so this file loads
-- even before the module is built.
function M.client(portal, extra_opts)
  local opts = {
    client_id = portal.client_id, client_secret = portal.client_secret,
    base_url = portal.base_url, ca_file = portal.ca_file,
  }
  for k, v in pairs(extra_opts or {}) do opts[k] = v end
  return require("yeastar.partner").new(opts)
end

-- How many API requests to `path` the portal has received since its last reset.
function M.count(portal, path)
  local n = 0
  for _, r in ipairs(portal:requests()) do
    if r.path == path then n = n + 1 end
  end
  return n
end

-- A copy of base with extra's fields laid over it.
function M.with(base, extra)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- The seeds' paths and parameters that several spec files send.
M.TOKEN_PATH = "/auth/openapi/v1/oauth/token"
M.ORDER_PATH = "/order/openapi/order/v1/save"
M.STATUS_PATH = "/order/openapi/order/v1/check/existed_auto_renew"
M.STATUS = { productNo = "3651E0529415", productId = 12 }
M.ORDER = {
  operationType = "renew_plan", productId = 15, billingId = "3197218168379846218",
  serviceList = { { serviceType = "plan", serviceId = "3049036224189325312", purchaseType = "renew",
                    billingModel = "recurring", billingCycle = "annually", multiCycle = 1 } },
}

-- A local TCP port with nothing listening on it (bound, never listened, then closed).
function M.free_port()
  local s = assert(socket.tcp())
  assert(s:bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- cjson decoding, for specs that inspect recorded bodies (independent of the module's decoder).
function M.json_decode(s)
  return cjson.decode(s)
end

M.shell_quote = shell_quote
M.read_file = read_file

return M
