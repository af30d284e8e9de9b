-- spec/15-config_spec.lua: configuration from the environment (partner.from_env: every variable,
-- overrides, the one error naming every missing variable, no secret in any message, the portal's
-- own export lines and the README's Quick start on the wire) and the `proxy` option, through a
-- real CONNECT proxy on 127.0.0.1 (a tiny Python one, started here, that records what it sees).
-- from_env reads the process environment, so its cases run as child processes with exactly the
-- variables they set: nothing of whoever runs busted leaks in.
local helpers = require "spec.helpers"
local partner = require "yeastar.partner"
local socket = require "socket"
local q = helpers.shell_quote

local SECRET = "config-spec-secret-4d81c0e7"
local STATUS_PATH = helpers.STATUS_PATH
local TOKEN_PATH = helpers.TOKEN_PATH
local ACTIVE_PATH = "/product/openapi/instance_subscription/v1/active"
local REQUIRED = { "YEASTAR_CLIENT_ID", "YEASTAR_CLIENT_SECRET", "YEASTAR_BASE_URL" }
-- Unset in every child: what from_env reads and the proxy variables libcurl reads.
local UNSET = { "https_proxy", "HTTPS_PROXY", "http_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY" }
for _, v in ipairs(partner.env_variables) do UNSET[#UNSET + 1] = v.name end

-- A CONNECT proxy: one JSON line per request head in <dir>/log ({line, auth}); mode "deny"
-- answers 403 to every CONNECT. It exits with its owner (our PID) or on SIGTERM.
local PROXY_PY = [=[
import json, os, signal, socket, sys, threading, time
state, mode, owner = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(os.path.join(state, "pid"), "w") as f:
    f.write("%d\n" % os.getpid())

def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None

owner_started = start_time(owner)
lock = threading.Lock()

def record(entry):
    with lock, open(os.path.join(state, "log"), "a") as f:
        f.write(json.dumps(entry) + "\n")

def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def handle(conn):
    upstream = None
    try:
        conn.settimeout(30)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = conn.recv(4096)
            if not data or len(buf) > 65536:
                return
            buf += data
        head, rest = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        auth = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "proxy-authorization":
                auth = value.strip()
        record({"line": lines[0], "auth": auth})
        parts = lines[0].split()
        if mode == "deny" or len(parts) != 3 or parts[0] != "CONNECT":
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        host, _, port = parts[1].rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        upstream.settimeout(None)
        conn.settimeout(None)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        t = threading.Thread(target=pipe, args=(conn, upstream), daemon=True)
        t.start()
        pipe(upstream, conn)
        t.join()
    except OSError:
        pass
    finally:
        for s in (conn, upstream):
            if s is not None:
                s.close()

def serve(srv):
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
threading.Thread(target=serve, args=(srv,), daemon=True).start()
with open(os.path.join(state, "port.tmp"), "w") as f:
    f.write("%d\n" % srv.getsockname()[1])
os.replace(os.path.join(state, "port.tmp"), os.path.join(state, "port"))
while not stop.wait(0.2):
    if start_time(owner) != owner_started:
        break
os._exit(0)
]=]

local Proxy = {}
Proxy.__index = Proxy

local function alive(pid, dir)
  local stat = helpers.read_file("/proc/" .. pid .. "/stat")
  if not stat or stat:match("%)%s+([ZX])") then return false end
  return (helpers.read_file("/proc/" .. pid .. "/cmdline") or ""):find(dir, 1, true) ~= nil
end

-- Stops our proxy by the PID it wrote, only if its command line names our own folder.
function Proxy:stop()
  if self._stopped then return end
  self._stopped = true
  local pid = tonumber((helpers.read_file(self.dir .. "/pid") or ""):match("%d+"))
  if pid and alive(pid, self.dir) then
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    while alive(pid, self.dir) and socket.gettime() < deadline do socket.sleep(0.05) end
    if alive(pid, self.dir) then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
  end
  os.execute("rm -rf -- " .. q(self.dir))
end

-- Every request head the proxy received since the last clear, in order.
function Proxy:requests()
  local list = {}
  for line in (helpers.read_file(self.dir .. "/log") or ""):gmatch("[^\n]+") do
    list[#list + 1] = helpers.json_decode(line)
  end
  return list
end

function Proxy:clear() os.remove(self.dir .. "/log") end

local function start_proxy(mode)
  local dir = helpers.run("mktemp -d -t yeastar-proxy.XXXXXX")
  assert(dir and dir:find("yeastar-proxy.", 1, true), "mktemp failed")
  local fh = assert(io.open(dir .. "/proxy.py", "w"))
  fh:write(PROXY_PY)
  fh:close()
  local proxy = helpers.stop_when_collected(setmetatable({ dir = dir }, Proxy))
  -- `make memcheck` preloads the ASan runtime into busted; Python must not inherit it.
  os.execute(("env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS python3 %s %s %s %s"
    .. " >%s 2>&1 </dev/null &"):format(q(dir .. "/proxy.py"), q(dir), mode, helpers.own_process_pid(),
    q(dir .. "/output.log")))
  local deadline = socket.gettime() + 10
  while not helpers.read_file(dir .. "/port") do
    if socket.gettime() > deadline then
      local why = helpers.read_file(dir .. "/output.log") or ""
      proxy:stop()
      error("the test proxy did not start:\n" .. why)
    end
    socket.sleep(0.02)
  end
  proxy.port = tonumber(helpers.read_file(dir .. "/port"):match("%d+"))
  proxy.url = "http://127.0.0.1:" .. proxy.port
  return proxy
end

describe("configuration", function()
  local portal, proxy, denier

  setup(function()
    portal = helpers.start_portal { client_secret = SECRET }
    proxy = start_proxy("ok")
    denier = start_proxy("deny")
  end)

  teardown(function()
    if denier then denier:stop() end
    if proxy then proxy:stop() end
    if portal then portal:stop() end
  end)

  before_each(function()
    portal:reset()
    proxy:clear()
    denier:clear()
  end)

  local function connect_line() return "CONNECT 127.0.0.1:" .. portal.port .. " HTTP/1.1" end

  local function portal_env(extra)
    local env = { YEASTAR_CLIENT_ID = portal.client_id, YEASTAR_CLIENT_SECRET = portal.client_secret,
                  YEASTAR_BASE_URL = portal.base_url, YEASTAR_CA_FILE = portal.ca_file }
    for k, v in pairs(extra or {}) do env[k] = v end
    return env
  end

  -- Runs `script` (a shell script, or a Lua chunk run by the runtime under test) as a child whose
  -- environment is ours minus UNSET plus `env`. Checks that the secret was never printed.
  local function run_child(env, lua_code, shell)
    local file = os.tmpname()
    local fh = assert(io.open(file, "w"))
    fh:write(lua_code)
    fh:close()
    local cmd = { "env" }
    for _, k in ipairs(UNSET) do cmd[#cmd + 1] = "-u " .. k end
    local names = {}
    for k, v in pairs(env) do
      if v ~= false then names[#names + 1] = k end -- false: left unset
    end
    table.sort(names)
    for _, k in ipairs(names) do cmd[#cmd + 1] = k .. "=" .. q(env[k]) end
    cmd[#cmd + 1] = shell and ("sh -c " .. q(shell .. " " .. q(file))) or (helpers.LUA .. " " .. q(file))
    local out_file, err_file = os.tmpname(), os.tmpname()
    local _, code = helpers.run(table.concat(cmd, " ") .. " </dev/null >" .. q(out_file) .. " 2>" .. q(err_file))
    local r = { code = code, stdout = helpers.read_file(out_file) or "", stderr = helpers.read_file(err_file) or "" }
    os.remove(out_file)
    os.remove(err_file)
    os.remove(file)
    assert.is_nil((r.stdout .. r.stderr):find(SECRET, 1, true), "the secret was printed:\n" .. r.stdout .. r.stderr)
    return r
  end

  -- A child that runs `pre`, builds its client with partner.from_env(<overrides>) and runs
  -- `body`, which fills `out`; returns out (or {raised = message}) as decoded JSON.
  local PRELUDE = [[
package.cpath = %s
local partner = require "yeastar.partner"
local function e2t(err)
  return err and { kind = err.kind, code = err.code, message = err.message, text = tostring(err),
                   retryable = err.retryable } or nil
end
%s
local ok, client = pcall(partner.from_env, %s)
if not ok then
  io.write(partner.json_encode { raised = tostring(client) }, "\n")
  os.exit(0, true)
end
local out = { client = tostring(client) }
%s
client:close()
io.write(partner.json_encode(out), "\n")
os.exit(0, true)
]]
  local STATUS_CALL = [[
local r, err = client:auto_renewal_status { productNo = "3651E0529415", productId = 12 }
out.result, out.err = r, e2t(err)
]]

  local function from_env(env, body, overrides, shell, pre)
    local r = run_child(env, PRELUDE:format(("%q"):format(package.cpath), pre or "", overrides or "nil",
      body or ""), shell)
    assert.are.equal(0, r.code, r.stdout .. r.stderr)
    local ok, out = pcall(helpers.json_decode, r.stdout)
    assert(ok and type(out) == "table", "not one JSON line:\n" .. r.stdout .. r.stderr)
    return out
  end

  local function count(path, method)
    local n = 0
    for _, r in ipairs(portal:requests()) do
      if r.path == path and (not method or r.method == method) then n = n + 1 end
    end
    return n
  end

  describe("partner.from_env", function()
    it("builds a client from the four variables the portal prints, and it talks to that portal", function()
      local out = from_env(portal_env(), STATUS_CALL)
      assert.are.equal("yeastar.partner.Client (" .. portal.base_url .. ")", out.client)
      assert.are.same({ autoRenew = true }, out.result)
      local reqs = portal:requests()
      assert.are.equal(2, #reqs)
      assert.are.equal(TOKEN_PATH, reqs[1].path)
      assert.matches("client_id=" .. portal.client_id, reqs[1].body, 1, true)
      assert.are.equal(STATUS_PATH, reqs[2].path)
      assert.matches("^Bearer ", reqs[2].header.authorization)
    end)

    it("the export lines `make fake-portal` prints, pasted into a shell, reach the fake portal", function()
      local printed = assert(helpers.read_file(portal.state_dir .. "/stdout.log"))
      for _, name in ipairs { "YEASTAR_BASE_URL", "YEASTAR_CA_FILE", "YEASTAR_CLIENT_ID", "YEASTAR_CLIENT_SECRET" } do
        assert.matches("\nexport " .. name .. "=", printed, 1, true)
      end
      local shell = ("eval \"$(grep '^export YEASTAR_' %s)\" && exec %s")
        :format(q(portal.state_dir .. "/stdout.log"), helpers.LUA)
      local out = from_env({}, STATUS_CALL, nil, shell)
      assert.are.equal("yeastar.partner.Client (" .. portal.base_url .. ")", out.client)
      assert.are.same({ autoRenew = true }, out.result)
      assert.are.equal(1, count(STATUS_PATH))
    end)

    it("the README's Quick start, run with those exports, talks to the fake portal", function()
      local readme = assert(helpers.read_file("README.md"))
      local code = readme:match("\n## Quick start\n.-```lua\n(.-)```")
      assert.truthy(code, "no Lua block in the README's Quick start")
      assert.matches("partner.from_env()", code, 1, true)
      local shell = ("eval \"$(grep '^export YEASTAR_' %s)\" && LUA_CPATH=%s exec %s")
        :format(q(portal.state_dir .. "/stdout.log"), q(package.cpath), helpers.LUA)
      local r = run_child({}, code, shell)
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal("auto-renewal is on\n", r.stdout)
      assert.are.equal("talking to yeastar.partner.Client (" .. portal.base_url .. ")\n", r.stderr)
      assert.are.equal(1, count(STATUS_PATH))
      assert.are.equal(1, count(ACTIVE_PATH, "POST"))
    end)

    it("one error lists every missing variable; there is no default portal", function()
      local out = from_env({})
      assert.are.equal("from_env: missing environment variables YEASTAR_CLIENT_ID, YEASTAR_CLIENT_SECRET, "
        .. "YEASTAR_BASE_URL (YEASTAR_BASE_URL is https://openapi.partner.yeastar.com for the live portal; "
        .. "`make fake-portal` prints the export lines of a fake one)", out.raised)

      out = from_env(portal_env { YEASTAR_BASE_URL = false })
      assert.are.equal("from_env: missing environment variable YEASTAR_BASE_URL (YEASTAR_BASE_URL is "
        .. "https://openapi.partner.yeastar.com for the live portal; `make fake-portal` prints the export "
        .. "lines of a fake one)", out.raised)

      out = from_env(portal_env { YEASTAR_CLIENT_SECRET = false })
      assert.are.equal("from_env: missing environment variable YEASTAR_CLIENT_SECRET (the Partner Portal's "
        .. "System > API page gives the client ID and secret; `make fake-portal` prints the export lines "
        .. "of a fake portal)", out.raised)
      assert.are.equal(0, #portal:requests())
    end)

    it("an empty variable counts as missing (required) or unset (optional)", function()
      local out = from_env(portal_env { YEASTAR_CLIENT_ID = "", YEASTAR_BASE_URL = "" })
      assert.matches("^from_env: missing environment variables YEASTAR_CLIENT_ID, YEASTAR_BASE_URL %(", out.raised)
      local empty = {}
      for _, v in ipairs(partner.env_variables) do
        if not v.required then empty[v.name] = "" end
      end
      out = from_env(portal_env(empty), STATUS_CALL)
      -- YEASTAR_CA_FILE="" is no CA file: the system store does not know the fake portal's CA.
      assert.are.same({ "network", "tls_failed" }, { out.err.kind, out.err.code })
      assert.are.equal(0, #proxy:requests())
    end)

    it("YEASTAR_CA_FILE: the CA that makes the fake portal's certificate good", function()
      local out = from_env(portal_env { YEASTAR_CA_FILE = false }, STATUS_CALL)
      assert.are.same({ "network", "tls_failed" }, { out.err.kind, out.err.code })
      out = from_env(portal_env { YEASTAR_CA_FILE = portal.other_ca_file }, STATUS_CALL)
      assert.are.same({ "network", "tls_failed" }, { out.err.kind, out.err.code })
      out = from_env(portal_env(), STATUS_CALL)
      assert.are.same({ autoRenew = true }, out.result)
    end)

    it("YEASTAR_TIMEOUT: seconds for one exchange", function()
      portal:fault { match = { path = STATUS_PATH }, delay = 2, count = 2 }
      local t0 = socket.gettime()
      local out = from_env(portal_env { YEASTAR_TIMEOUT = "0.3", YEASTAR_MAX_RETRIES = "0" }, STATUS_CALL)
      assert.are.same({ "timeout", "timeout" }, { out.err.kind, out.err.code })
      assert.is_true(socket.gettime() - t0 < 1.8)
      assert.are.equal(1, count(STATUS_PATH))
    end)

    it("YEASTAR_DEADLINE: seconds for the whole call", function()
      portal:fault { match = { path = STATUS_PATH }, delay = 3, count = 3 }
      local t0 = socket.gettime()
      local out = from_env(portal_env { YEASTAR_DEADLINE = "0.8" }, STATUS_CALL)
      assert.are.equal("timeout", out.err.kind)
      assert.is_true(socket.gettime() - t0 < 2.5)
    end)

    it("YEASTAR_MAX_RETRIES: how often a retryable failure is tried again", function()
      portal:fault { match = { path = STATUS_PATH }, status = 503, count = 1 }
      local out = from_env(portal_env { YEASTAR_MAX_RETRIES = "0" }, STATUS_CALL)
      assert.are.same({ "api", true }, { out.err.kind, out.err.retryable })
      assert.are.equal(1, count(STATUS_PATH))

      portal:reset()
      portal:fault { match = { path = STATUS_PATH }, status = 503, count = 1 }
      out = from_env(portal_env { YEASTAR_MAX_RETRIES = "1" }, STATUS_CALL)
      assert.are.same({ autoRenew = true }, out.result)
      assert.are.equal(2, count(STATUS_PATH))
    end)

    it("YEASTAR_PROXY: every request goes through that proxy", function()
      local out = from_env(portal_env { YEASTAR_PROXY = proxy.url }, STATUS_CALL)
      assert.are.same({ autoRenew = true }, out.result)
      local seen = proxy:requests()
      assert.are.equal(1, #seen) -- one tunnel: the login and the call share the connection
      assert.are.equal(connect_line(), seen[1].line)
      assert.are.equal(2, #portal:requests())
    end)

    it("YEASTAR_TOKEN_FILE: the token survives the process, so the next run does not log in", function()
      local dir = helpers.run("mktemp -d -t yeastar-token.XXXXXX")
      local path = dir .. "/token.json"
      local env = portal_env { YEASTAR_TOKEN_FILE = path }
      assert.are.same({ autoRenew = true }, from_env(env, STATUS_CALL).result)
      assert.are.same({ autoRenew = true }, from_env(env, STATUS_CALL).result)
      local mode = helpers.run("stat -c %a " .. q(path))
      local stored = helpers.read_file(path) or ""
      os.execute("rm -rf -- " .. q(dir))
      assert.are.equal(1, count(TOKEN_PATH))
      assert.are.equal(2, count(STATUS_PATH))
      assert.are.equal("600", mode)
      assert.matches('"clientId"', stored, 1, true)
      assert.is_nil(stored:find(SECRET, 1, true))
    end)

    it("a bad value names its variable; ranges are partner.new's, still naming the variable", function()
      local cases = {
        { "YEASTAR_TIMEOUT", "abc", "from_env: YEASTAR_TIMEOUT must be a number of seconds such as 30 or 2.5, got 'abc'" },
        { "YEASTAR_TIMEOUT", "30s", "from_env: YEASTAR_TIMEOUT must be a number of seconds such as 30 or 2.5, got '30s'" },
        { "YEASTAR_DEADLINE", "1e3", "from_env: YEASTAR_DEADLINE must be a number of seconds such as 30 or 2.5, got '1e3'" },
        { "YEASTAR_DEADLINE", "-5", "from_env: YEASTAR_DEADLINE must be a number of seconds such as 30 or 2.5, got '-5'" },
        { "YEASTAR_MAX_RETRIES", "2.5", "from_env: YEASTAR_MAX_RETRIES must be a whole number such as 2, got '2.5'" },
        { "YEASTAR_MAX_RETRIES", "0x3", "from_env: YEASTAR_MAX_RETRIES must be a whole number such as 2, got '0x3'" },
        { "YEASTAR_MAX_RETRIES", "11", "from_env: YEASTAR_MAX_RETRIES: option 'max_retries' must be between" },
        { "YEASTAR_TIMEOUT", "0", "from_env: YEASTAR_TIMEOUT: option 'timeout' must be between" },
        { "YEASTAR_CA_FILE", "/nonexistent/ca.pem", "from_env: YEASTAR_CA_FILE: option 'ca_file' cannot be read: " },
        { "YEASTAR_BASE_URL", "http://portal.example", "from_env: YEASTAR_BASE_URL: option 'base_url' is plain http://" },
        { "YEASTAR_BASE_URL", "openapi.partner.yeastar.com", "from_env: YEASTAR_BASE_URL: option 'base_url' must start with https://" },
        { "YEASTAR_PROXY", "proxy.example:3128", "from_env: YEASTAR_PROXY: option 'proxy' must start with http:// or https://" },
        { "YEASTAR_TOKEN_FILE", "/nonexistent/dir/token.json", nil },
      }
      for _, case in ipairs(cases) do
        local out = from_env(portal_env { [case[1]] = case[2] })
        if case[3] then
          assert.are.equal(case[3], out.raised and out.raised:sub(1, #case[3]), case[2])
        else
          -- A token file in a folder that does not exist: not an error until it is written.
          assert.is_nil(out.raised)
        end
      end
      assert.are.equal(0, #portal:requests())
    end)

    it("overrides win over the variables, and the variable is then not read at all", function()
      -- The environment names a dead portal; the override names the real one.
      local env = portal_env { YEASTAR_BASE_URL = "https://127.0.0.1:" .. helpers.free_port(),
                               YEASTAR_CLIENT_SECRET = false, SPEC_URL = portal.base_url,
                               SPEC_SECRET = portal.client_secret }
      local out = from_env(env, STATUS_CALL,
        "{ base_url = os.getenv('SPEC_URL'), client_secret = os.getenv('SPEC_SECRET'), max_retries = 0 }")
      assert.are.equal("yeastar.partner.Client (" .. portal.base_url .. ")", out.client)
      assert.are.same({ autoRenew = true }, out.result)
      -- A bad variable under an override is never looked at.
      out = from_env(portal_env { YEASTAR_TIMEOUT = "soon" }, "", "{ timeout = 5 }")
      assert.is_nil(out.raised)
    end)

    it("an override of false leaves its variable unread", function()
      local env = portal_env { YEASTAR_PROXY = "http://127.0.0.1:" .. helpers.free_port(),
                               YEASTAR_TOKEN_FILE = "/nonexistent/token.json" }
      local out = from_env(env, STATUS_CALL, "{ proxy = false, token_store = false, max_retries = 0 }")
      assert.are.same({ autoRenew = true }, out.result)
    end)

    it("the caller's overrides are not modified; other options pass through to partner.new", function()
      local out = from_env(portal_env(), [[
out.same = overrides.timeout == 5 and overrides.logger ~= nil and overrides.base_url == nil
  and next(overrides, next(overrides, next(overrides))) == nil
]] .. STATUS_CALL .. "out.events = #events", "overrides", nil,
        "local events = {}\nlocal overrides = { timeout = 5, logger = function(e) events[#events + 1] = e end }")
      assert.is_nil(out.raised)
      assert.is_true(out.same)
      assert.are.equal(2, out.events)
    end)

    it("a mistake in the overrides raises like partner.new, named from_env", function()
      assert.are.equal("from_env: unknown option 'timout'", from_env(portal_env(), "", "{ timout = 5 }").raised)
      assert.are.equal("from_env: option 'timeout' must be a number (got string)",
        from_env(portal_env(), "", "{ timeout = '5' }").raised)
      assert.matches("from_env: overrides must be a table of partner.new options %(got string%)$",
        from_env(portal_env(), "", "'x'").raised)
    end)

    it("no message ever holds the secret, even one pasted into the wrong variable", function()
      for _, extra in ipairs {
        { YEASTAR_TIMEOUT = SECRET }, { YEASTAR_MAX_RETRIES = "x" .. SECRET }, { YEASTAR_CLIENT_ID = false },
        { YEASTAR_BASE_URL = SECRET }, { YEASTAR_CA_FILE = "/nonexistent/" .. SECRET },
        { YEASTAR_PROXY = SECRET }, { YEASTAR_PROXY = "http://u:" .. SECRET .. "@127.0.0.1:" .. helpers.free_port() },
        { YEASTAR_BASE_URL = "https://u:" .. SECRET .. "@127.0.0.1" },
      } do
        local env = portal_env(extra)
        env.YEASTAR_CLIENT_SECRET = SECRET
        local out = from_env(env, STATUS_CALL .. "out.err = out.err and out.err.text")
        local message = out.raised or out.err or out.client
        assert.is_string(message)
        assert.is_nil(message:find(SECRET, 1, true), message) -- run_child checked all output too
      end
      local out = from_env(portal_env { YEASTAR_TIMEOUT = SECRET })
      assert.are.equal("from_env: YEASTAR_TIMEOUT must be a number of seconds such as 30 or 2.5, got (hidden)", out.raised)
    end)

    it("partner.env_variables lists what it reads, required ones first", function()
      local names, required = {}, {}
      for i, v in ipairs(partner.env_variables) do
        names[i] = v.name
        if v.required then required[#required + 1] = v.name end
        assert.is_string(v.about)
        assert.is_string(v.option)
      end
      assert.are.same(REQUIRED, required)
      assert.are.same({ "YEASTAR_CLIENT_ID", "YEASTAR_CLIENT_SECRET", "YEASTAR_BASE_URL", "YEASTAR_CA_FILE",
        "YEASTAR_PROXY", "YEASTAR_TIMEOUT", "YEASTAR_DEADLINE", "YEASTAR_MAX_RETRIES", "YEASTAR_TOKEN_FILE" }, names)
      local readme = assert(helpers.read_file("README.md"))
      for _, name in ipairs(names) do assert.matches("| `" .. name .. "` |", readme, 1, true) end
    end)
  end)

  describe("the proxy option", function()
    local function client(extra)
      return helpers.client(portal, helpers.with({ max_retries = 0 }, extra))
    end

    it("sends every request through the proxy's CONNECT tunnel", function()
      local c = client { proxy = proxy.url }
      assert.are.same({ autoRenew = true }, (c:auto_renewal_status(helpers.STATUS)))
      assert.truthy(c:regions())
      c:close()
      local seen = proxy:requests()
      assert.are.equal(1, #seen)
      assert.are.equal(connect_line(), seen[1].line)
      assert.are.equal("", seen[1].auth)
      local reqs = portal:requests()
      assert.are.equal(3, #reqs)
      assert.are.equal(TOKEN_PATH, reqs[1].path)
    end)

    it("an order gets a fresh tunnel, like its fresh connection", function()
      local c = client { proxy = proxy.url }
      assert.truthy(c:regions())
      local order = assert(c:create_order(helpers.ORDER))
      assert.are.equal("MK3400814131142238208", order.orderNo)
      c:close()
      assert.are.equal(2, #proxy:requests())
    end)

    it("user:password@ in the proxy URL authenticates to the proxy and is never shown", function()
      local url = "http://spec-user:spec-pass-93@127.0.0.1:" .. proxy.port
      local c = client { proxy = url }
      assert.truthy(c:auto_renewal_status(helpers.STATUS))
      assert.are.equal("yeastar.partner.Client (" .. portal.base_url .. ")", tostring(c))
      c:close()
      assert.are.equal("Basic " .. helpers.b64encode("spec-user:spec-pass-93"), proxy:requests()[1].auth)
      local d = client { proxy = "http://spec-user:spec-pass-93@127.0.0.1:" .. denier.port }
      local _, err = d:auto_renewal_status(helpers.STATUS)
      assert.is_nil(tostring(err):find("spec-pass", 1, true))
      assert.is_nil(tostring(d):find("spec-pass", 1, true))
      d:close()
    end)

    it("wins over NO_PROXY, which applies only to libcurl's own proxy variables", function()
      local out = from_env(portal_env { YEASTAR_PROXY = proxy.url, NO_PROXY = "127.0.0.1,localhost",
                                        no_proxy = "*" }, STATUS_CALL)
      assert.are.same({ autoRenew = true }, out.result)
      assert.are.equal(1, #proxy:requests())
    end)

    for _, case in ipairs {
      { "a proxy that is not listening", function() return "http://127.0.0.1:" .. helpers.free_port() end,
        "cannot reach the proxy: " },
      { "a proxy that refuses the tunnel", function() return denier.url end,
        "the proxy refused the tunnel (CONNECT answered 403): " },
    } do
      it(case[1] .. ": a network error saying proxy, and nothing reaches the portal", function()
        local c = client { proxy = case[2](), max_retries = 1, retry_base_delay = 0.01 }
        local _, err = c:auto_renewal_status(helpers.STATUS)
        assert.are.same({ "network", "connect_failed", true }, { err.kind, err.code, err.retryable })
        assert.are.equal(case[3], err.message:sub(1, #case[3]))
        assert.matches("proxy", tostring(err), 1, true)
        -- An order that never got past the proxy was not sent: never `ambiguous`.
        local order
        order, err = c:create_order(helpers.ORDER)
        assert.is_nil(order)
        assert.are.same({ "network", "connect_failed" }, { err.kind, err.code })
        assert.are.equal(case[3], err.message:sub(1, #case[3]))
        c:close()
        assert.are.equal(0, #portal:requests())
        assert.are.equal(0, #portal:state().orders)
      end)
    end

    it("without the option, libcurl's HTTPS_PROXY and NO_PROXY still apply", function()
      local out = from_env(portal_env { HTTPS_PROXY = proxy.url }, STATUS_CALL)
      assert.are.same({ autoRenew = true }, out.result)
      assert.are.equal(connect_line(), proxy:requests()[1].line)

      proxy:clear()
      out = from_env(portal_env { HTTPS_PROXY = proxy.url, NO_PROXY = "127.0.0.1" }, STATUS_CALL)
      assert.are.same({ autoRenew = true }, out.result)
      assert.are.equal(0, #proxy:requests())

      -- A dead proxy of the environment: the message points at it too.
      out = from_env(portal_env { HTTPS_PROXY = "http://127.0.0.1:" .. helpers.free_port(),
                                  YEASTAR_MAX_RETRIES = "0" }, STATUS_CALL)
      assert.are.same({ "network", "connect_failed" }, { out.err.kind, out.err.code })
      assert.matches("(HTTPS_PROXY is set: is that proxy reachable?)", out.err.message, 1, true)
    end)

    -- The client reads these variables once, by libcurl's rules, and hands them to libcurl as
    -- options (which spares it six getenv calls a request): the rules must stay libcurl's.
    it("reads the proxy variables by libcurl's rules: lower case first, all_proxy last, no_proxy first", function()
      local dead = "http://127.0.0.1:" .. helpers.free_port()
      for _, case in ipairs {
        { { https_proxy = proxy.url, HTTPS_PROXY = dead }, 1 },
        { { ALL_PROXY = proxy.url }, 1 },
        { { all_proxy = proxy.url, ALL_PROXY = dead }, 1 },
        { { HTTPS_PROXY = proxy.url, all_proxy = dead }, 1 },
        { { http_proxy = dead }, 0 },                              -- http_proxy is for http:// only
        { { HTTPS_PROXY = dead, no_proxy = "127.0.0.1", NO_PROXY = "example.com" }, 0 },
        { { HTTPS_PROXY = proxy.url, no_proxy = "", NO_PROXY = "example.com" }, 1 }, -- empty: unset
      } do
        proxy:clear()
        local out = from_env(portal_env(case[1]), STATUS_CALL)
        local names = {}
        for k in pairs(case[1]) do names[#names + 1] = k end
        table.sort(names)
        local what = table.concat(names, ", ")
        assert.are.same({ autoRenew = true }, out.result, what)
        assert.are.equal(case[2], #proxy:requests(), what)
      end
    end)

    it("a bad proxy option raises, without showing it", function()
      local base = { client_id = "id", client_secret = "secret-value-1" }
      for _, case in ipairs {
        { "socks5://u:hidden-1@127.0.0.1:1080", "new: option 'proxy' must start with http:// or https://" },
        { "proxy.example:3128", "new: option 'proxy' must start with http:// or https://" },
        { "", "new: option 'proxy' must start with http:// or https://" },
        { "http://", "new: option 'proxy' must be a proxy URL such as http://proxy.example:3128" },
        { "http://u:hidden-2@", "new: option 'proxy' must be a proxy URL such as http://proxy.example:3128" },
        { "http://:3128", "new: option 'proxy' must be a proxy URL such as http://proxy.example:3128" },
        { "http://proxy.example:3128/?x=hidden-3", "new: option 'proxy' must be a proxy URL such as http://proxy.example:3128" },
        { "http://proxy.example\r\n:3128", "new: option 'proxy' must not contain CR or LF" },
        { 3128, "new: option 'proxy' must be a string (got number)" },
      } do
        local ok, err = pcall(partner.new, helpers.with(base, { proxy = case[1] }))
        assert.is_false(ok)
        assert.are.equal(case[2], err:sub(1, #case[2]))
        assert.is_nil(err:find("hidden", 1, true))
      end
    end)

    it("does not apply to the cosocket driver", function()
      local ok, err = pcall(partner.new, { client_id = "id", client_secret = "secret-value-1",
                                          proxy = proxy.url, transport = "cosocket" })
      assert.is_false(ok)
      assert.matches("^new: option 'proxy' does not apply to the cosocket driver", err)
      -- Without the option, a cosocket client is fine (libcurl's variables do not concern it).
      assert.truthy(partner.new { client_id = "id", client_secret = "secret-value-1", transport = "cosocket" })
    end)
  end)
end)
