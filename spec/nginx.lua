-- spec/nginx.lua: start, drive and stop a throwaway nginx + lua-nginx-module server from busted specs.
-- Owns the temp prefix, nginx.conf, the nginx process tree and its watchdog; nothing here loads yeastar.partner.
--
--   local nginx = require "spec.nginx"
--   local ok, why = nginx.available()          -- false, "one-line reason" when it cannot run here
--   local server = nginx.start{
--     server = [[ location = /t { content_by_lua_block { ngx.say("hi") } } ]],
--     http = "resolver 127.0.0.1;",             -- extra directives inside http {}
--     ca_file = portal.ca_file,                 -- lua_ssl_trusted_certificate + lua_ssl_verify_depth 2
--     cpath = "/abs/build/luajit/?.so",         -- default: the absolute path of ./build/luajit/?.so
--     path = "/abs/lua/?.lua",                  -- extra lua_package_path entries (put first)
--     worker_processes = 1, init_worker = "...", shared_dicts = { cache = "1m" },
--   }
--   local status, body, headers, elapsed = server:get("/t")   -- nil, err, nil, elapsed on failure
--   server:request{ method = "POST", path = "/t", body = "...", headers = {}, timeout = 10 }
--   server.port, server.url ("http://127.0.0.1:PORT"), server.prefix, server:master_pid()
--   server:error_log(), server:stderr()                  -- text; still readable after stop()
--   server:stop()                                        -- idempotent; also run by __gc
--   nginx.RUN_LOCATION, server:run(chunk)                -- run a Lua chunk inside nginx (below)
--   nginx.start{ conf = text, vars = { CA_FILE = "..." } } -- a whole nginx.conf of one's own
--     (examples/openresty/nginx.conf): @PORT@ becomes the port, @NAME@ vars.NAME; its paths
--     must be relative to the prefix (logs/nginx.pid, logs/error.log) or absolute.
--
-- The config sets load_module, user (root only), worker_processes, error_log, pid, lock_file,
-- access_log, the *_temp_path, lua_package_path, lua_package_cpath and, with ca_file,
-- lua_ssl_trusted_certificate and lua_ssl_verify_depth: `http` must not repeat them (nginx
-- refuses duplicates).  No resolver is set: cosockets connect to IP addresses unless `http`
-- adds one.  Start-up failures raise with the tail of logs/stderr.log and logs/error.log.
--
-- Portable Lua 5.1-5.4 and LuaJIT, like every spec file.
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local helpers = require "spec.helpers"

local q = helpers.shell_quote
local read_file = helpers.read_file

local M = {}

-- Debian 12's layout (nginx 1.22.1, libnginx-mod-http-lua 0.10.23, lua-resty-core 0.1.25).
M.MODULES_DIR = os.getenv("YEASTAR_NGINX_MODULES") or "/usr/lib/nginx/modules"
M.MODULES = { "ndk_http_module.so", "ngx_http_lua_module.so" } -- the lua module needs NDK loaded first
-- lua-nginx-module 0.10.16+ requires resty.core at start-up and refuses to start without it
-- ("failed to load the 'resty.core' module"); Debian installs lua-resty-core and the
-- lua-resty-lrucache it requires under /usr/share/lua/5.1.  Debian's nginx happens to have that
-- directory in its default path too, but we name it rather than depend on a distribution patch.
M.LUA_PATH = "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
M.START_TIMEOUT = 10
M.STOP_TIMEOUT = 5

local function file_exists(path)
  local fh = io.open(path, "rb")
  if fh then fh:close() end
  return fh ~= nil
end

local function cwd()
  local out = helpers.run("pwd")
  return out
end

-- The nginx binary: $YEASTAR_NGINX, nginx on PATH, or /usr/sbin/nginx (not on a user's PATH).
function M.binary()
  local env = os.getenv("YEASTAR_NGINX")
  if env and env ~= "" then return file_exists(env) and env or nil end
  local out, code = helpers.run("command -v nginx")
  if code == 0 and out ~= "" then return out end
  for _, p in ipairs{ "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx" } do
    if file_exists(p) then return p end
  end
  return nil
end

local function resty_core_found()
  for entry in M.LUA_PATH:gmatch("[^;]+") do
    if file_exists((entry:gsub("%?", "resty/core"))) then return true end
  end
  return false
end

-- true, or false and a one-line reason.
function M.available()
  if not M.binary() then
    return false, "no nginx binary ($YEASTAR_NGINX, nginx on PATH, /usr/sbin/nginx)"
  end
  for _, name in ipairs(M.MODULES) do
    local path = M.MODULES_DIR .. "/" .. name
    if not file_exists(path) then
      return false, "no lua module: " .. path .. " is missing (Debian: libnginx-mod-http-lua)"
    end
  end
  if not resty_core_found() then
    return false, "no lua-resty-core in " .. M.LUA_PATH .. " (Debian: lua-resty-core)"
  end
  return true
end

-- ---------------------------------------------------------------------------------------------
-- Processes.  Never signal a PID on trust: PIDs get reused, so each is checked to still be ours.
-- ---------------------------------------------------------------------------------------------

-- The fields of /proc/PID/stat after "(comm)": [1] is the state, [2] the parent PID.
local function stat_fields(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return nil end
  local rest = stat:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local fields = {}
  for f in rest:gmatch("%S+") do fields[#fields + 1] = f end
  return fields
end

-- Running: it exists and is neither a zombie nor dead.  With mark, its command line must also
-- contain mark (our prefix): the nginx master's title keeps its "-p PREFIX" arguments, and the
-- watchdog runs PREFIX/watchdog.sh.
local function running(pid, mark)
  if not pid then return false end
  local f = stat_fields(pid)
  if not f or f[1] == "Z" or f[1] == "X" then return false end
  if not mark then return true end
  local cmdline = read_file("/proc/" .. pid .. "/cmdline") or ""
  return cmdline:find(mark, 1, true) ~= nil
end

-- The live children of pid (the nginx workers of a master).
local function children(pid)
  local list = {}
  local text = read_file("/proc/" .. pid .. "/task/" .. pid .. "/children")
  if not text then text = helpers.run("ps -o pid= --ppid " .. pid) or "" end
  for child in text:gmatch("%d+") do
    local f = stat_fields(child)
    if f and f[2] == tostring(pid) then list[#list + 1] = child end
  end
  return list
end

local function signal(sig, pid)
  os.execute("kill -" .. sig .. " " .. pid .. " 2>/dev/null")
end

local function wait_until_gone(pid, mark, seconds)
  local deadline = socket.gettime() + seconds
  while running(pid, mark) and socket.gettime() < deadline do socket.sleep(0.05) end
  return not running(pid, mark)
end

local function read_pid(path)
  return tonumber((read_file(path) or ""):match("%d+"))
end

local own_process_pid = helpers.own_process_pid

-- Started in the background instead of nginx itself: it starts nginx in the foreground, and
-- should the Lua process that started it (the owner, $1) go away without stopping it (busted
-- killed, a crash, a 5.1 state never closed), it stops nginx: TERM, then after 5 s KILL for the
-- master and its workers (workers outlive a KILLed master), and removes the prefix.  The owner is recognised by its
-- start time too, so a reused PID does not keep nginx alive.  It exits once nginx has exited.
local WATCHDOG = [=[
# Written by spec/nginx.lua: runs nginx, and stops it when the owner (PID $1) is gone.
owner=$1 nginx_bin=$2 prefix=$3
fields() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null; }
state_of() { set -- $(fields "$1"); echo "$1"; }
start_of() { set -- $(fields "$1"); echo "${20}"; }
running() { case $(state_of "$1") in ''|Z|X) return 1;; esac; return 0; }
owner_start=$(start_of "$owner")
[ -n "$owner_start" ] || exit 1
"$nginx_bin" -p "$prefix" -c conf/nginx.conf -g 'daemon off;' >"$prefix/logs/stderr.log" 2>&1 </dev/null &
master=$!
echo "$master" >"$prefix/logs/master.pid"
while running "$master"; do
  if ! running "$owner" || [ "$(start_of "$owner")" != "$owner_start" ]; then
    echo "watchdog: owner $owner is gone, stopping nginx $master" >&2
    kill -TERM "$master" 2>/dev/null
    i=0
    while running "$master" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if running "$master"; then
      workers=$(ps -o pid= --ppid "$master")
      kill -KILL "$master" $workers 2>/dev/null
    fi
    rm -rf -- "$prefix"
    exit 0
  fi
  sleep 0.5
done
]=]

-- ---------------------------------------------------------------------------------------------
-- nginx.conf
-- ---------------------------------------------------------------------------------------------

local OPTIONS = { http = true, server = true, ca_file = true, cpath = true, path = true,
                  worker_processes = true, init_worker = true, shared_dicts = true,
                  conf = true, vars = true }

-- Relative entries of a ;-separated Lua path become absolute (";;", nginx's "default", stays).
local function absolute_path_list(list, base)
  local out = {}
  for entry in (list .. ";"):gmatch("([^;]*);") do
    if entry ~= "" and entry:sub(1, 1) ~= "/" then entry = base .. "/" .. entry:gsub("^%./", "") end
    out[#out + 1] = entry
  end
  return table.concat(out, ";")
end

local function lua_string(s) -- a double-quoted nginx config argument
  assert(not s:find('["\\]'), "nginx: quote or backslash in " .. s)
  return '"' .. s .. '"'
end

local function config(opts, prefix, port, base)
  local cpath = absolute_path_list(opts.cpath or "./build/luajit/?.so", base)
  local path = M.LUA_PATH
  if opts.path then path = absolute_path_list(opts.path, base) .. ";" .. path end
  local lines = {
    "# Written by spec/nginx.lua for one test server; removed when it stops.",
  }
  for _, name in ipairs(M.MODULES) do
    lines[#lines + 1] = "load_module " .. M.MODULES_DIR .. "/" .. name .. ";"
  end
  local uid = helpers.run("id -u")
  if uid == "0" then
    -- As root, workers would run as nobody and could not read our build or the portal's
    -- private state dir: keep them as we are (the test server listens on 127.0.0.1 only).
    lines[#lines + 1] = "user root;"
  end
  local L = function(s) lines[#lines + 1] = s end
  L(string.format("worker_processes %d;", opts.worker_processes or 1))
  L("error_log " .. prefix .. "/logs/error.log info;")
  L("pid " .. prefix .. "/logs/nginx.pid;")
  L("lock_file " .. prefix .. "/logs/nginx.lock;")
  L("events { worker_connections 256; }")
  L("http {")
  L("  access_log " .. prefix .. "/logs/access.log;")
  -- The compiled-in temp paths are under /var/lib/nginx: keep everything inside the prefix.
  for _, kind in ipairs{ "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
    L("  " .. kind .. "_temp_path " .. prefix .. "/tmp/" .. kind .. ";")
  end
  -- ";;" appends the default path after ours, as lua-nginx-module documents it.
  L("  lua_package_path " .. lua_string(path .. ";;") .. ";")
  L("  lua_package_cpath " .. lua_string(cpath .. ";;") .. ";")
  if opts.ca_file then
    local ca = opts.ca_file:sub(1, 1) == "/" and opts.ca_file or base .. "/" .. opts.ca_file
    L("  lua_ssl_trusted_certificate " .. ca .. ";")
    L("  lua_ssl_verify_depth 2;") -- the default, 1, is too short for a public chain
  end
  local dicts = {}
  for name in pairs(opts.shared_dicts or {}) do dicts[#dicts + 1] = name end
  table.sort(dicts)
  for _, name in ipairs(dicts) do
    L("  lua_shared_dict " .. name .. " " .. opts.shared_dicts[name] .. ";")
  end
  if opts.init_worker then
    L("  init_worker_by_lua_block {")
    L(opts.init_worker)
    L("  }")
  end
  if opts.http then L(opts.http) end
  L("  server {")
  L(string.format("    listen 127.0.0.1:%d;", port))
  L("    server_name localhost;")
  if opts.server then L(opts.server) end
  L("  }")
  L("}")
  return table.concat(lines, "\n") .. "\n"
end

local function own_config(opts, port)
  local text = opts.conf:gsub("@PORT@", tostring(port)):gsub("@([%u_]+)@", function(name)
    return assert(opts.vars and opts.vars[name], "nginx.start: no value for @" .. name .. "@")
  end)
  -- As in config(): as root, workers stay root so they can read our build and private files.
  if helpers.run("id -u") == "0" then text = "user root;\n" .. text end
  return text
end

-- ---------------------------------------------------------------------------------------------
-- The server object
-- ---------------------------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local function tail(text, n)
  local lines = {}
  for line in (text or ""):gmatch("[^\n]+") do lines[#lines + 1] = line end
  local from = math.max(1, #lines - n + 1)
  local out = {}
  for i = from, #lines do out[#out + 1] = lines[i] end
  return table.concat(out, "\n")
end

-- The error log (logs/error.log) as text; after stop(), as it was when nginx stopped.
function Server:error_log()
  if self._final_log then return self._final_log end
  return read_file(self.prefix .. "/logs/error.log") or ""
end

-- What nginx wrote before its error log was open (config errors, resty.core failures).
function Server:stderr()
  if self._final_stderr then return self._final_stderr end
  return read_file(self.prefix .. "/logs/stderr.log") or ""
end

function Server:_logs_tail(n)
  return "--- logs/stderr.log ---\n" .. tail(self:stderr(), n) ..
         "\n--- logs/error.log ---\n" .. tail(self:error_log(), n)
end

-- The master's PID: the one nginx wrote (logs/nginx.pid), else the one the watchdog started.
function Server:master_pid()
  local pid = read_pid(self.prefix .. "/logs/nginx.pid") or read_pid(self.prefix .. "/logs/master.pid")
  if pid and running(pid, self.prefix) then return pid end
  return nil
end

-- TERM the master, wait up to 5 s, then KILL it and its workers; stop the watchdog; remove the
-- prefix.  Idempotent; error_log() and stderr() still answer afterwards.
function Server:stop()
  if self._stopped then return end
  self._stopped = true
  local master = self:master_pid()
  if master then
    signal("TERM", master) -- fast shutdown: the master waits for its workers, then exits
    if not wait_until_gone(master, self.prefix, M.STOP_TIMEOUT) then
      local workers = children(master)
      signal("KILL", master)
      for _, w in ipairs(workers) do signal("KILL", w) end
      wait_until_gone(master, self.prefix, 1)
    end
  end
  -- The watchdog would see the master gone within half a second and exit; no need to wait.
  if running(self._watchdog_pid, self.prefix) then
    signal("TERM", self._watchdog_pid)
    wait_until_gone(self._watchdog_pid, self.prefix, 1)
  end
  self._final_log = read_file(self.prefix .. "/logs/error.log") or ""
  self._final_stderr = read_file(self.prefix .. "/logs/stderr.log") or ""
  os.execute("rm -rf -- " .. q(self.prefix))
end

-- Safety net: a server nobody stopped is stopped when collected; the watchdog covers a Lua that
-- never collects.
-- One HTTP/1.1 request over LuaSocket (socket.http: it sends Connection: close).
-- opts: method ("GET"), path, body (string), headers (table), timeout (seconds, 10).
-- Returns status, body, headers (lower-case names), elapsed_seconds; or nil, err, nil, elapsed.
function Server:request(opts)
  local chunks = {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k] = v end
  if opts.body then headers["content-length"] = tostring(#opts.body) end
  local saved = http.TIMEOUT
  http.TIMEOUT = opts.timeout or 10 -- socket.http applies its module-wide TIMEOUT to every socket
  local started = socket.gettime()
  local ok, status, response_headers = http.request{
    url = self.url .. (opts.path or "/"), method = opts.method or "GET", headers = headers,
    source = opts.body and ltn12.source.string(opts.body) or nil, sink = ltn12.sink.table(chunks),
  }
  local elapsed = socket.gettime() - started
  http.TIMEOUT = saved
  if not ok then return nil, status, nil, elapsed end
  return status, table.concat(chunks), response_headers, elapsed
end

function Server:get(path, headers)
  return self:request{ path = path, headers = headers }
end

-- A location that runs the Lua chunk POSTed to it and answers its return value as JSON
-- {ok, value | error}, encoded by the module under test; add it to a server's `server` text.
M.RUN_LOCATION = [[
    client_body_buffer_size 1m;
    client_max_body_size 1m;
    location = /run {
      content_by_lua_block {
        local partner = require "yeastar.partner"
        ngx.req.read_body()
        local f, err = loadstring(ngx.req.get_body_data() or "", "=run")
        local ok, value
        if f then ok, value = pcall(f) else ok, value = false, err end
        local reply = { ok = ok }
        if ok then reply.value = value else reply.error = tostring(value) end
        local eok, text = pcall(partner.json_encode, reply)
        if not eok then text = partner.json_encode{ ok = false, error = "json_encode: " .. tostring(text) } end
        ngx.header["Content-Type"] = "application/json"
        ngx.say(text)
      }
    }
]]

-- Runs chunk through RUN_LOCATION; returns its value, or raises with the tail of the error log.
function Server:run(chunk)
  local status, body = self:request{ method = "POST", path = "/run", body = chunk, timeout = 30 }
  assert(status == 200, "nginx /run: " .. tostring(status) .. " " .. tostring(body)
    .. "\n" .. self:error_log():sub(-2000))
  local reply = require("spec.helpers").json_decode(body)
  assert(reply.ok, "in nginx: " .. tostring(reply.error) .. "\n" .. self:error_log():sub(-2000))
  return reply.value
end

-- ---------------------------------------------------------------------------------------------
-- start
-- ---------------------------------------------------------------------------------------------

local function port_answers(port)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

local function write_file(path, text)
  local fh = assert(io.open(path, "wb"))
  fh:write(text)
  fh:close()
end

-- One attempt: a fresh prefix, nginx started through the watchdog, the port answering.
-- Returns the server, or nil, message, bind_failed (someone took the free port first).
local function attempt(opts, nginx_bin, base)
  local prefix = helpers.run("mktemp -d -t yeastar-nginx.XXXXXX")
  assert(prefix:find("yeastar-nginx.", 1, true), "nginx: mktemp failed: " .. prefix)
  os.execute("mkdir -p " .. q(prefix .. "/conf") .. " " .. q(prefix .. "/logs") .. " " .. q(prefix .. "/tmp"))
  local port = helpers.free_port()
  local server = helpers.stop_when_collected(setmetatable({
    port = port, url = "http://127.0.0.1:" .. port, prefix = prefix,
  }, Server))
  -- From here on, any error stops what was started and removes the prefix before raising.
  local ok, why = pcall(function()
    local text = opts.conf and own_config(opts, port) or config(opts, prefix, port, base)
    write_file(prefix .. "/conf/nginx.conf", text)
    write_file(prefix .. "/watchdog.sh", WATCHDOG)
    -- `make memcheck` preloads the ASan runtime into busted; nginx must not inherit it.
    os.execute(string.format(
      "env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS sh %s %s %s %s"
        .. " </dev/null >%s 2>&1 & echo $! >%s",
      q(prefix .. "/watchdog.sh"), own_process_pid(), q(nginx_bin), q(prefix),
      q(prefix .. "/logs/watchdog.log"), q(prefix .. "/watchdog.pid")))
    server._watchdog_pid = read_pid(prefix .. "/watchdog.pid")
    local deadline = socket.gettime() + M.START_TIMEOUT
    while true do
      local master = read_pid(prefix .. "/logs/master.pid")
      if master and read_pid(prefix .. "/logs/nginx.pid") and port_answers(port) then return nil end
      if master and not running(master) then return "nginx exited" end
      if not master and not running(server._watchdog_pid) then return "the launcher exited" end
      if socket.gettime() > deadline then
        return "port " .. port .. " did not answer in " .. M.START_TIMEOUT .. " s"
      end
      socket.sleep(0.05)
    end
  end)
  if ok and not why then return server end
  if not ok then why = "error: " .. tostring(why) end
  local logs = server:_logs_tail(30) .. "\n--- logs/watchdog.log ---\n" .. tail(read_file(prefix .. "/logs/watchdog.log"), 5)
  local bind_failed = logs:find("Address already in use", 1, true) ~= nil
  server:stop()
  return nil, "nginx did not start (" .. why .. "), prefix " .. prefix .. ":\n" .. logs, bind_failed
end

-- Starts nginx; returns a server, or stops everything it started and raises with the logs' tail.
function M.start(opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not OPTIONS[k] then error("nginx.start: unknown option " .. tostring(k), 2) end
  end
  local ok, why = M.available()
  if not ok then error("nginx.start: " .. why, 2) end
  local nginx_bin, base = M.binary(), cwd()
  local err
  for _ = 1, 3 do -- the free port can be taken between our check and nginx's bind: retry
    local server, message, bind_failed = attempt(opts, nginx_bin, base)
    if server then return server end
    err = message
    if not bind_failed then break end
  end
  error(err, 2)
end

return M
