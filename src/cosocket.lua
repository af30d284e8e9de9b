-- cosocket.lua: the OpenResty driver. It runs the call core's steps (call.c) over ngx.socket.tcp,
-- pauses with ngx.sleep and spreads batches over light threads, so nothing blocks a worker and
-- every callback may yield. Embedded in partner.so; it installs itself only inside nginx.
local partner, methods = ...
local ngx = rawget(_G, "ngx")
if not (type(ngx) == "table" and ngx.socket and ngx.get_phase and ngx.thread) then return end

-- Phases in which lua-nginx-module lets cosockets and light threads run; elsewhere (init,
-- init_worker, set, header/body filters, log) a call goes through the blocking libcurl driver.
local COSOCKET_PHASES = { rewrite = true, access = true, content = true, timer = true,
                          ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true }
local IDLE_TIMEOUT_MS = 60000 -- how long a pooled connection may wait for the next request
local READ_SIZE = 65536

local driver_info = setmetatable({}, { __mode = "k" }) -- client -> its _driver_info()
local token_flight = setmetatable({}, { __mode = "k" }) -- client -> single-flight login state

-- The driver for this call: false for libcurl, or the client's driver info for cosockets.
local function cosocket_info(self, fname)
  local info = driver_info[self]
  if info == nil then
    info = self:_driver_info() or false -- false: closed; the native method says so
    driver_info[self] = info
  end
  if not info or info.transport == "curl" then return false end
  local phase = ngx.get_phase()
  if not COSOCKET_PHASES[phase] then
    if info.transport == "cosocket" then
      error(("%s: transport = \"cosocket\" cannot run in nginx's %s phase (use ngx.timer.at)")
        :format(fname, phase), 3)
    end
    return false
  end
  if info.ca_file then
    error(("%s: option 'ca_file' does not apply under nginx's cosockets: nginx trusts the CAs "
      .. "of lua_ssl_trusted_certificate (or pass transport = \"curl\")"):format(fname), 3)
  end
  if info.proxy then
    error(("%s: option 'proxy' does not apply under nginx's cosockets (or pass transport = \"curl\")")
      :format(fname), 3)
  end
  return info
end

local function log(info, event)
  if event ~= nil and info.logger then pcall(info.logger, event) end -- a broken logger never breaks a call
end

-- ---- moving bytes ------------------------------------------------------------------------------

local function split_url(url)
  local scheme, authority, path = url:match("^(https?)://([^/?#]+)(.*)$")
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  return scheme, host, tonumber(port) or (scheme == "https" and 443 or 80), authority,
    path ~= "" and path or "/"
end

local function transport_error(err)
  if err == "timeout" then return "timeout" end
  if err:find("resolve", 1, true) or err:find("resolver", 1, true) then return "dns" end
  return nil
end

-- One exchange, as the core wants it fed: {status, body, retry_after, error, maybe_sent, ...}.
-- A failure before the request was written has maybe_sent = false; any later one, true.
local function exchange(req, info)
  ngx.update_time()
  local started = ngx.now()
  local ends = started + req.timeout -- the whole exchange, as libcurl's CURLOPT_TIMEOUT
  local scheme, host, port, authority, path = split_url(req.url)
  local sock = ngx.socket.tcp()
  local framer
  local ms = math.max(1, math.floor(req.timeout * 1000))
  sock:settimeouts(math.max(1, math.floor(math.min(req.connect_timeout, req.timeout) * 1000)), ms, ms)
  local function failed(kind, detail, maybe_sent)
    sock:close()
    return { error = kind, detail = detail, maybe_sent = maybe_sent, elapsed = ngx.now() - started,
             status = framer and framer:status() or nil } -- a status line already read, as libcurl reports it
  end
  -- Each step gets only what is left of the exchange's timeout: a server that trickles bytes
  -- cannot stretch the exchange (or the call's deadline) beyond it.
  local function left_ms()
    ngx.update_time()
    return math.floor((ends - ngx.now()) * 1000)
  end
  -- Calls that must not run twice never share a connection: their pool is never refilled.
  local pool = scheme .. "://" .. authority .. (req.fresh and " fresh" or "")
  local ok, err = sock:connect(host, port, { pool = pool, pool_size = info.pool_size })
  if not ok then return failed(transport_error(err) or "connect", "connect: " .. err, false) end
  if scheme == "https" and sock:getreusedtimes() == 0 then
    if left_ms() < 1 then return failed("timeout", "TLS: timeout", false) end
    sock:settimeout(left_ms())
    -- pcall: lua-resty-core 0.1.25 can raise (an assertion) instead of returning nil, err when a
    -- handshake fails verification; either way it is a TLS failure, nothing sent.
    local okh, session, herr = pcall(sock.sslhandshake, sock, nil, host, true)
    if not okh then session, herr = nil, "handshake failed" end
    if not session then return failed(transport_error(herr) or "tls", "TLS: " .. herr, false) end
  end
  local head = { req.method .. " " .. path .. " HTTP/1.1", "Host: " .. authority }
  for _, line in ipairs(req.headers) do head[#head + 1] = line end
  if req.body then head[#head + 1] = "Content-Length: " .. #req.body end
  if left_ms() < 1 then return failed("timeout", "send: timeout", false) end
  sock:settimeout(left_ms())
  local sent, serr = sock:send(table.concat(head, "\r\n") .. "\r\n\r\n" .. (req.body or ""))
  if not sent then return failed(transport_error(serr) or "lost", "send: " .. serr, true) end
  framer = partner._http1(req.max_response)
  while true do
    local left = left_ms()
    if left < 1 then return failed("timeout", "receive: timeout", true) end
    sock:settimeout(left)
    local data, rerr = sock:receiveany(READ_SIZE)
    local state, code, detail
    if data then
      state, code, detail = framer:feed(data)
    elseif rerr == "closed" then
      state, code, detail = framer:eof()
    else
      return failed(transport_error(rerr) or "lost", "receive: " .. rerr, true)
    end
    if state == "done" then break end
    if not state then return failed(code, detail, true) end
  end
  local resp = framer:response(ngx.now())
  -- Back to the pool only after a fully framed reply that allows it, never after an error.
  if resp.keep_alive and not req.fresh then sock:setkeepalive(IDLE_TIMEOUT_MS, info.pool_size)
  else sock:close() end
  return { status = resp.status, body = resp.body, retry_after = resp.retry_after,
           maybe_sent = true, elapsed = ngx.now() - started }
end

-- ---- tokens: one login at a time per client, however many light threads need one -------------

local function store_failed(self, info, op, message)
  log(info, self:_store_failure_event(op, message))
end

local function store_load(self, info)
  local ok, t, message = pcall(info.token_store.load)
  if not ok then t, message = nil, t end
  if t ~= nil and type(t) ~= "table" then
    t, message = nil, ("load returned a %s, not a table"):format(type(t))
  end
  self:_token_loaded(t) -- a store that fails costs a login, never the call
  if t == nil and message ~= nil then store_failed(self, info, "load", message) end
end

local function store_save(self, info)
  local record = info.token_store and self:_token_record()
  if not record then return end
  local ok, r, message = pcall(info.token_store.save, record)
  if not ok then store_failed(self, info, "save", r)
  elseif r == nil and message ~= nil then store_failed(self, info, "save", message) end
end

local drive

local function token_exchange(self, info, refresh, for_call)
  local ok, err = drive(self, info, self:_token_call(refresh, for_call))
  if not ok then return nil, err end
  store_save(self, info)
  return true
end

local function fetch_token(self, info, for_call)
  local _, _, can_refresh = self:_token_state()
  if can_refresh then
    if token_exchange(self, info, true, for_call) then return true end
    self:_refresh_failed() -- a failed refresh falls back to the client credentials
  end
  return token_exchange(self, info, false, for_call)
end

-- Makes the client's access token valid, or returns nil, err. The first light thread that needs a
-- token fetches it; the others wait for it and then use the same one (single flight). The light
-- thread holding the flight may be killed (ngx.thread.kill, a batch whose on_result raised, an
-- aborted request) and then never clears it: the mark lapses when that login's deadline has passed.
local function ensure_token(self, info, for_call)
  local flight = token_flight[self]
  if not flight then
    flight = { owner = false, waiting = 0, done = require("ngx.semaphore").new(0) }
    token_flight[self] = flight
  end
  while true do
    if self:is_closed() then return true end -- the call's next step fails it as closed
    ngx.update_time()
    if flight.owner and ngx.now() >= flight.owner.expires then flight.owner = false end
    if not flight.owner then
      local mine = { expires = ngx.now() + info.deadline }
      local load, valid = self:_token_state()
      if load then
        flight.owner = mine -- the store may yield: nobody else logs in meanwhile
        local ok = pcall(store_load, self, info)
        if flight.owner == mine then flight.owner = false end
        if flight.waiting > 0 then flight.done:post(flight.waiting) end -- they may use what it loaded
        if not ok then self:_token_loaded(nil) end
        valid = select(2, self:_token_state())
      end
      if valid then return true end
      flight.owner = mine
      local ok, got, err = pcall(fetch_token, self, info, for_call)
      if flight.owner == mine then flight.owner = false end
      if flight.waiting > 0 then flight.done:post(flight.waiting) end
      if not ok then error(got, 0) end
      return got, err
    end
    flight.waiting = flight.waiting + 1
    flight.done:wait(math.max(0.001, math.min(1, flight.owner.expires - ngx.now())))
    flight.waiting = flight.waiting - 1
  end
end

-- ---- the loop over the core's steps --------------------------------------------------------------

-- Runs call k to its end: true, result or false, err.
function drive(self, info, k)
  while true do
    local what, arg = k:next()
    if what == "send" then
      local ok, resp = pcall(exchange, arg, info)
      if not ok then k:finish(); error(resp, 0) end
      local outcome, value, event = k:feed(resp)
      log(info, event)
      if outcome == "done" then return true, value end
      if outcome == "fail" then return false, value end
    elseif what == "token" then
      local ok, got, err = pcall(ensure_token, self, info, k)
      if not (ok and got) then k:finish() end
      if not ok then error(got, 0) end
      if not got then return false, err end
    elseif what == "pause" then
      -- ngx.sleep counts whole milliseconds from nginx's cached clock: round up, from a fresh
      -- clock, so that one sleep covers the pause (a sub-millisecond rest would be ngx.sleep(0),
      -- a busy loop through the event loop that the lua module warns about at every turn).
      ngx.update_time()
      ngx.sleep(math.ceil(arg * 1000 + 1) / 1000)
    else -- "fail": nothing of this step was sent
      return false, arg
    end
  end
end

-- ---- the same methods, driven by cosockets where the phase allows ------------------------------

for name in pairs(partner.endpoints) do
  local native = methods[name]
  if name == "request_access_token" or name == "refresh_access_token" then
    methods[name] = function(self, params)
      local info = cosocket_info(self, name)
      if not info then return native(self, params) end
      if params ~= nil and (type(params) ~= "table" or next(params) ~= nil) then
        return native(self, params) -- the native method raises the same argument error
      end
      local refresh = name == "refresh_access_token"
      local _, _, can_refresh = self:_token_state()
      if refresh and not can_refresh then return native(self) end -- its no_refresh_token error
      local ok, err = token_exchange(self, info, refresh)
      if not ok then return nil, err end
      return self:_token_details()
    end
  else
    methods[name] = function(self, params)
      local info = cosocket_info(self, name)
      if not info then return native(self, params) end
      local ok, value = drive(self, info, self:_call(name, params))
      if ok then return value end
      return nil, value
    end
  end
end

local MAX_CONCURRENCY, DEFAULT_CONCURRENCY = 256, 8
local unpack = table.unpack or unpack
local native_batch = methods.batch

-- client:batch on light threads: at most `concurrency` items under way, each read from the list and
-- built only when a thread is free for it (so the batch holds no more than that many calls, whatever
-- the list's length); results in input order, or {total, failed} with keep_results = false; on_result
-- called as each item ends (it may yield, call the client, or close it).
function methods.batch(self, name, list, opts)
  local info = cosocket_info(self, "batch")
  if not info then return native_batch(self, name, list, opts) end
  local ep = partner.endpoints[name]
  if not ep or name == "request_access_token" or name == "refresh_access_token" then
    return native_batch(self, name, list, opts) -- raises its argument error
  end
  if type(list) ~= "table" or (opts ~= nil and type(opts) ~= "table") then
    return native_batch(self, name, list, opts)
  end
  local concurrency, on_result, keep = DEFAULT_CONCURRENCY, nil, true
  for k, v in pairs(opts or {}) do
    if k == "concurrency" and type(v) == "number" and v % 1 == 0 and v >= 1 and v <= MAX_CONCURRENCY then
      concurrency = v
    elseif k == "on_result" and type(v) == "function" then
      on_result = v
    elseif k == "keep_results" and type(v) == "boolean" then
      keep = v
    else
      error(("batch: bad option '%s' (concurrency: integer 1..%d, on_result: function, keep_results: boolean)")
        :format(type(k) == "string" and k or "?", MAX_CONCURRENCY), 2)
    end
  end
  if not keep and not on_result then
    error("batch: option 'keep_results' = false needs on_result (the results are handed to it, not kept)", 2)
  end
  local n, results, failed, next_item = #list, keep and {} or nil, 0, 1
  local live = {} -- thread number -> its call in flight: finished if the batch ends early
  local function finish(i, ok, value)
    if not ok then failed = failed + 1 end
    if results then results[i] = ok and { result = value } or { err = value } end
    if on_result then
      if ok then on_result(i, value, nil) else on_result(i, nil, value) end
    end
  end
  -- Items are taken in list order. One that a single call would raise for fails alone, unsent,
  -- with kind `invalid` (worded by client.c, as under libcurl). Once the client is closed nothing
  -- more is built: each item not yet sent fails with kind closed.
  local function worker(t)
    while next_item <= n do
      local i = next_item
      next_item = i + 1
      local item, ok, call = rawget(list, i), false, nil
      if self:is_closed() then
        finish(i, false, self:_closed_error(name))
      else
        if type(item) == "table" then ok, call = pcall(self._call, self, name, item) end
        if ok then
          live[t] = call
          local done, value = drive(self, info, call)
          live[t] = nil
          finish(i, done, value)
        elseif self:is_closed() then -- the item's metamethod closed it: raise, as client.c does
          error("yeastar.partner: the client is closed", 0)
        else
          finish(i, false, self:_invalid_item(name, i, item, call))
        end
      end
    end
    return t -- tells the batch which thread ended
  end
  -- The first thread to fail (an error from on_result, or a client closed by an item) ends the
  -- batch at once, as with libcurl: the others are killed, their calls finished unsent or abandoned.
  local threads, spawned = {}, {}
  for t = 1, math.min(concurrency, n) do
    spawned[t] = ngx.thread.spawn(worker, t)
    threads[t] = spawned[t]
  end
  local failure
  while #threads > 0 do
    local ok, value = ngx.thread.wait(unpack(threads))
    if not ok then
      failure = value
      for _, th in ipairs(threads) do ngx.thread.kill(th) end
      break
    end
    for u = 1, #threads do
      if threads[u] == spawned[value] then table.remove(threads, u) break end
    end
  end
  if failure then
    for _, k in pairs(live) do k:finish() end -- nothing stays in flight
    error(failure, 0)
  end
  if results then return results end
  return { total = n, failed = failed }
end
