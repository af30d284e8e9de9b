-- bench/memory.lua: the memory half of `make bench`, one measurement per process so that nothing
-- else this process did is in its RSS. bench/bench.lua runs it and reads its "key value" lines.
--
-- Usage: lua bench/memory.lua MODE BASE_URL CA_FILE [COUNT]
--   peak        a COUNT-item batch (default 100,000) with keep_results = false and on_result, at
--               concurrency 32: VmHWM after it minus VmRSS after building the input list (the
--               peak is reset with /proc/self/clear_refs first). Where the module does not take
--               keep_results yet, the default mode is measured and "streaming 0" says so.
--   sequential  COUNT calls (default 100,000) one after another, VmRSS sampled every COUNT/100.
--   batches     100 batches of COUNT items (default 1,000) at concurrency 32, VmRSS after each
--               (after 5 unsampled ones).
-- The samples are taken after a full collection: what they show is what is kept, not garbage.
-- Portable Lua 5.1-5.4 and LuaJIT; Linux (/proc).
package.cpath = (os.getenv("BENCH_CPATH") or "./build/?.so") .. ";" .. package.cpath
local partner = require "yeastar.partner"

local mode, base_url, ca_file = arg[1], arg[2], arg[3]
local count = tonumber(arg[4])
if not (mode and base_url and ca_file) then
  io.stderr:write("usage: lua bench/memory.lua peak|sequential|batches BASE_URL CA_FILE [COUNT]\n")
  os.exit(2)
end

local function status_kib(field)
  local fh = assert(io.open("/proc/self/status", "r"))
  local text = fh:read("*a")
  fh:close()
  return tonumber(text:match(field .. ":%s*(%d+) kB"))
end

local function rss_kib()
  collectgarbage()
  collectgarbage()
  return status_kib("VmRSS")
end

local STATUS = { productNo = "3651E0529415", productId = 12 }
local client = partner.new { client_id = "bench", client_secret = "bench", base_url = base_url,
                             ca_file = ca_file }
assert(client:auto_renewal_status(STATUS)) -- the token and a connection, before any sample

local function out(k, v) io.write(k, " ", tostring(v), "\n") end

if mode == "peak" then
  count = count or 100000
  -- Whether this build streams: a one-item probe (an unknown option raises before any I/O).
  local streaming = pcall(client.batch, client, "auto_renewal_status", { STATUS },
    { concurrency = 1, keep_results = false, on_result = function() end })
  local before = rss_kib()
  local list = {}
  for i = 1, count do list[i] = { productNo = STATUS.productNo, productId = STATUS.productId } end
  local after_list = rss_kib()
  local clear = io.open("/proc/self/clear_refs", "w")
  assert(clear, "cannot open /proc/self/clear_refs (needed to reset the peak RSS)")
  clear:write("5") -- resets VmHWM to the current RSS
  clear:close()
  local failed, seen = 0, 0
  local opts = { concurrency = 32, on_result = function(_, result)
    seen = seen + 1
    if not result then failed = failed + 1 end
  end }
  if streaming then opts.keep_results = false end
  local ret = client:batch("auto_renewal_status", list, opts)
  local peak = status_kib("VmHWM")
  -- A streaming batch that skipped items would look lean: every item must have been answered.
  if seen ~= count then error(("on_result ran %d times for %d items"):format(seen, count)) end
  if streaming and not (type(ret) == "table" and ret.total == count and ret.failed == failed) then
    error("keep_results = false did not return {total = n, failed = k}")
  end
  out("streaming", streaming and 1 or 0)
  out("list_kib", after_list - before)
  out("peak_over_list_kib", peak - after_list)
  out("failed", failed)
elseif mode == "sequential" then
  count = count or 100000
  local every = math.max(1, math.floor(count / 100))
  local samples, lua_samples = {}, {}
  for i = 1, count do
    local r, err = client:auto_renewal_status(STATUS)
    if not r then error("call " .. i .. " failed: " .. tostring(err)) end
    if i % every == 0 then
      samples[#samples + 1] = rss_kib()
      lua_samples[#lua_samples + 1] = math.floor(collectgarbage("count"))
    end
  end
  out("samples", table.concat(samples, ","))
  out("lua_samples", table.concat(lua_samples, ","))
elseif mode == "batches" then
  count = count or 1000
  local list = {}
  for i = 1, count do list[i] = STATUS end
  -- Five batches first, unsampled: the connections, TLS sessions and slot tables a batch of this
  -- width needs exist before the first sample, as they do in the sequential run after its first call.
  for _ = 1, 5 do client:batch("auto_renewal_status", list, { concurrency = 32 }) end
  local samples, lua_samples = {}, {}
  for b = 1, 100 do
    local results = client:batch("auto_renewal_status", list, { concurrency = 32 })
    for i = 1, count do
      if not results[i].result then error("batch " .. b .. " item " .. i .. " failed: " .. tostring(results[i].err)) end
    end
    results = nil
    samples[#samples + 1] = rss_kib()
    lua_samples[#lua_samples + 1] = math.floor(collectgarbage("count"))
  end
  out("samples", table.concat(samples, ","))
  out("lua_samples", table.concat(lua_samples, ","))
else
  io.stderr:write("memory.lua: unknown mode " .. mode .. "\n")
  os.exit(2)
end
client:close()
