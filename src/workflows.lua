-- workflows.lua: the renewal jobs built on the endpoint methods (paging, order lookup,
-- Remote Management renewal, fleet auto-renewal). Embedded in partner.so at build time.
local partner, methods, new_error = ...

-- The fixed values of seed 002 (the Remote Management renewal tutorial), kept in one place.
local REMOTE_MANAGEMENT = {
  productId = 15,
  plan_name = "Remote Management Account",
  service = { serviceType = "plan", purchaseType = "renew", billingModel = "recurring",
              billingCycle = "annually", multiCycle = 1 },
}

-- Re-raises a caller mistake that the C layer found, at the caller's own line rather than ours.
local function as_caller(fn, ...)
  local ok, result = pcall(fn, ...)
  if not ok then
    error((tostring(result):gsub("^yeastar/partner/workflows%.lua:%d+: ", "")), 3)
  end
  return result
end

-- This file runs on every supported Lua (5.1 to 5.4, LuaJIT): no 5.3+ library call unguarded.
local math_type = math.type -- nil on 5.1, 5.2 and LuaJIT, where every number is a double

-- An integer as the C layer counts it: a Lua integer where numbers have that subtype (5.3+),
-- an integral number elsewhere (C then refuses those beyond 2^53, which have lost digits).
local function is_integer(v)
  if math_type then return math_type(v) == "integer" end
  return type(v) == "number" and v % 1 == 0
end

-- An ID's decimal text, whatever form it came in: integer, integral float, decimal string,
-- or LuaJIT int64 cdata (whose tostring ends in LL or ULL).
local function id_text(v)
  if type(v) == "number" and v % 1 == 0 and math.abs(v) < 2^63 then return ("%d"):format(v) end
  return (tostring(v):gsub("U?LL$", ""))
end

local function copy(t)
  local c = {}
  for k, v in pairs(t or {}) do c[k] = v end
  return c
end

-- t[k] when t is a table: decoded records come from the server, and any of them may be a
-- number or a string where a table was modelled.
local function field(t, k)
  if type(t) == "table" then return t[k] end
  return nil
end

local function closed_error(endpoint)
  return new_error { kind = "closed", code = "client_closed", endpoint = endpoint,
    message = "the client was closed before this call could be sent" }
end

-- One request of a workflow, its parameters already checked. A callback (the logger, the token
-- store) may have closed the client meanwhile: the rest then fails with kind `closed`, as the
-- unsent items of a batch do, instead of raising from inside the workflow.
local function call(self, name, params)
  if self:is_closed() then return nil, closed_error(name) end
  return self[name](self, params)
end

-- Strict option tables, as for partner.new: a typo raises instead of being ignored.
local function check_options(fname, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table (got %s)"):format(fname, type(opts)), 3)
  end
  for k, v in pairs(opts) do
    local want = allowed[k]
    if not want then error(("%s: unknown option '%s'"):format(fname, tostring(k)), 3) end
    -- "id": an integer, a decimal string or an int64 cdata, as everywhere else IDs are accepted
    local ok = want == "id" and (is_integer(v) or type(v) == "string" or type(v) == "cdata")
      or type(v) == want
    if not ok then
      error(("%s: option '%s' must be %s (got %s)"):format(fname, k,
        want == "id" and "an integer or a decimal string" or "a " .. want, type(v)), 3)
    end
  end
  return opts
end

-- client:each(name, params): records of a paged list, one page fetched at a time. A failure
-- ends the loop with (false, err), so `if not record then ... end` sees it.
function methods:each(name, params)
  local ep = partner.endpoints[name]
  if not (ep and ep.paged) then
    error(("each: '%s' is not a paged endpoint"):format(tostring(name)), 2)
  end
  local query = copy(params)
  local page_no = query.pageNo or 1
  as_caller(self.prepare, self, name, query) -- bad parameters raise now, not mid-loop
  local records, i, done = {}, 0, false
  return function()
    while not done do
      if i < #records then
        i = i + 1
        return records[i]
      end
      query.pageNo = page_no
      local page, err = call(self, name, query)
      if not page then
        done = true
        return false, err
      end
      records, i = type(field(page, "results")) == "table" and page.results or {}, 0
      done = #records == 0 or page_no >= (tonumber(field(page, "totalPage")) or page_no)
      page_no = page_no + 1
    end
    if i < #records then
      i = i + 1
      return records[i]
    end
    return nil
  end
end

local FIND_ORDER_OPTIONS = { poNumber = "string", productNo = "string", productId = "id",
                             since = "number", pageSize = "number", max_records = "number" }

-- client:find_order{poNumber=, productNo=, productId=, since=} -> order | false | nil, err
-- Walks the order list newest first, at most max_records (500) orders deep; the way to settle
-- an `ambiguous` create_order, and renew_remote_management's once-per-PO check.
function methods:find_order(criteria)
  criteria = check_options("find_order", criteria, FIND_ORDER_OPTIONS)
  if not criteria.poNumber and not (criteria.since and (criteria.productNo or criteria.productId)) then
    error("find_order: give poNumber, or since with productNo or productId", 2)
  end
  local query = { sort = "-id", pageSize = criteria.pageSize or 50 }
  as_caller(self.prepare, self, "orders", query) -- here, so that a raise names the caller's line
  local since_ms = criteria.since and criteria.since * 1000
  local max_records = criteria.max_records or 500
  local seen = 0
  for order, err in self:each("orders", query) do
    if not order then return nil, err end
    if type(order) == "table" then -- a record of another type matches nothing
      local created = tonumber(order.createTime)
      if since_ms and created and created < since_ms then break end -- older ones follow
      local ok = not criteria.poNumber or order.customReferenceNo == criteria.poNumber
      if ok and (criteria.productNo or criteria.productId) then
        local info = order
        if order.productNo == nil and order.productId == nil then
          -- Modelled: the list may not carry the product; the details do.
          local params = { id = order.id }
          if not self:is_closed() and not pcall(self.prepare, self, "order_details", params) then
            return nil, new_error { kind = "decode", code = "bad_envelope", endpoint = "orders",
              message = "an order record has no id that can name its details" }
          end
          local details, derr = call(self, "order_details", params)
          if not details then return nil, derr end
          info = field(details, "basicInformation")
        end
        ok = (not criteria.productNo or field(info, "productNo") == criteria.productNo)
          and (not criteria.productId or id_text(field(info, "productId")) == id_text(criteria.productId))
      end
      if ok then return order end
    end
    seen = seen + 1
    if seen >= max_records then break end
  end
  return false
end

local RENEW_RM_OPTIONS = { planId = "id", billingId = "id", partnerId = "string",
                           poNumber = "string", productNo = "string", dry_run = "boolean",
                           allow_duplicate_po = "boolean" }

local function plan_id_of(self, product_id, plan_name)
  local info, err = call(self, "plans_and_services", { productId = product_id })
  if not info then return nil, err end
  local plans = field(info, "planList")
  for _, plan in ipairs(type(plans) == "table" and plans or {}) do
    if field(plan, "name") == plan_name then return plan.planId end
  end
  return nil, new_error { kind = "api", code = "plan_not_found", endpoint = "plans_and_services",
    message = ("product %d offers no plan named %q"):format(product_id, plan_name) }
end

local function billing_id_of(self)
  local contacts, err = call(self, "billing_contacts")
  if not contacts then return nil, err end
  contacts = type(contacts) == "table" and contacts or {}
  if #contacts == 1 and field(contacts[1], "billingContactId") ~= nil then
    return contacts[1].billingContactId
  end
  local choices = {}
  for i, c in ipairs(contacts) do
    choices[i] = ("%s (%s)"):format(tostring(field(c, "billingContactId")), tostring(field(c, "emailAddress")))
  end
  local e = new_error { kind = "api", code = "billing_contact_required", endpoint = "billing_contacts",
    message = ("the account has %d billing contacts; pass billingId, one of: %s")
      :format(#contacts, #choices > 0 and table.concat(choices, ", ") or "none") }
  e.choices = contacts
  return nil, e
end

-- client:renew_remote_management{planId=, billingId=, partnerId=, poNumber=, productNo=,
-- dry_run=, allow_duplicate_po=}
-- Seed 002 as one call: look up what is missing, then create the renewal order (or, with
-- dry_run, return the exact request it would send and send nothing). The dry run makes every
-- read the real run makes, in the same order, so it fails where the real run would.
function methods:renew_remote_management(opts)
  opts = check_options("renew_remote_management", opts, RENEW_RM_OPTIONS)
  local billing_id = opts.billingId
  local service = copy(REMOTE_MANAGEMENT.service)
  local order = {
    operationType = "renew_plan", productId = REMOTE_MANAGEMENT.productId,
    productNo = opts.productNo, partnerId = opts.partnerId, billingId = billing_id or 0,
    poNumber = opts.poNumber, serviceList = { service },
  }
  service.serviceId = opts.planId or 0
  local device = opts.productNo and { productNo = opts.productNo, productId = REMOTE_MANAGEMENT.productId }
  -- Every request's parameters are checked before the first is sent: bad IDs, and values that
  -- a URL cannot carry (the lookups put productNo and partnerId in one).
  as_caller(self.prepare, self, "create_order", order)
  if device then as_caller(self.prepare, self, "product_details", device) end
  if opts.partnerId then as_caller(self.prepare, self, "subordinate_user", { partnerId = opts.partnerId }) end

  -- Once per PO: a re-run (a cron job after a crash, the same command twice) gets the order it
  -- placed before instead of a second bill. When the order list cannot be read, nothing is
  -- ordered: spending money is never the answer to "we could not check".
  if opts.poNumber and not opts.allow_duplicate_po then
    local existing, err = self:find_order { poNumber = opts.poNumber }
    if existing == nil then return nil, err end
    if existing then
      existing.existing = true
      return existing
    end
  end
  -- The order endpoint refuses a productNo that is not a product 15 device: ask first, so that
  -- the dry run meets the same refusal.
  if device then
    local found, err = call(self, "product_details", device)
    if not found then return nil, err end
  end
  local plan_id, err = opts.planId, nil
  if not plan_id then
    plan_id, err = plan_id_of(self, REMOTE_MANAGEMENT.productId, REMOTE_MANAGEMENT.plan_name)
    if not plan_id then return nil, err end
  end
  if not billing_id then
    billing_id, err = billing_id_of(self)
    if not billing_id then return nil, err end
  end
  if opts.partnerId then
    local user, uerr = call(self, "subordinate_user", { partnerId = opts.partnerId })
    if not user then return nil, uerr end
  end
  service.serviceId, order.billingId = plan_id, billing_id
  -- The looked-up IDs come from the server: a malformed one is its error, not the caller's.
  local ok, request = pcall(self.prepare, self, "create_order", order)
  if not ok then
    if self:is_closed() then return nil, closed_error("create_order") end
    return nil, new_error { kind = "decode", code = "bad_envelope", endpoint = "create_order",
      message = "a looked-up plan or billing contact ID is not an ID: " .. tostring(request) }
  end
  if opts.dry_run then
    return { dry_run = true, method = request.method, path = request.path, body = request.body,
             order = order }
  end
  return call(self, "create_order", order)
end

local ENSURE_OPTIONS = { concurrency = "number", dry_run = "boolean", on_progress = "function" }
local MAX_CONCURRENCY = 256 -- client:batch's bound (client.c)

-- client:ensure_auto_renewal(devices, opts) -> report
-- For each {productNo, productId, planOrServiceId}: check the status, enable it where off.
-- One device's failure never stops the others, a malformed one included (a typo in one CSV
-- row): it fails alone, with kind `invalid`; the report says what happened to each.
function methods:ensure_auto_renewal(devices, opts)
  opts = check_options("ensure_auto_renewal", opts, ENSURE_OPTIONS)
  local concurrency = opts.concurrency
  if concurrency ~= nil and not (is_integer(concurrency) and concurrency >= 1
                                 and concurrency <= MAX_CONCURRENCY) then
    error(("ensure_auto_renewal: option 'concurrency' must be an integer from 1 to %d")
      :format(MAX_CONCURRENCY), 2)
  end
  if type(devices) ~= "table" then
    error(("ensure_auto_renewal: devices must be a list (got %s)"):format(type(devices)), 2)
  end
  if self:is_closed() then error("yeastar.partner: the client is closed", 2) end

  local total = #devices
  local report = { devices = {}, total = total,
                   totals = { already_on = 0, enabled = 0, would_enable = 0, failed = 0 } }
  local done = 0
  local requests = { auto_renewal_status = {}, enable_auto_renewal = {} } -- by device index
  local function settle(i, outcome, err)
    report.devices[i] = { device = devices[i], outcome = outcome, err = err }
    report.totals[outcome] = report.totals[outcome] + 1
    done = done + 1
    if opts.on_progress then opts.on_progress(done, total, devices[i], outcome, err) end
  end
  -- Runs one endpoint for the devices at `indices`; on_result gets the device's own index. A
  -- callback that closed the client leaves these unsent: they fail with kind `closed`.
  local function run(endpoint, indices, on_result)
    if self:is_closed() then
      for _, i in ipairs(indices) do settle(i, "failed", closed_error(endpoint)) end
      return
    end
    local params = {}
    for j, i in ipairs(indices) do params[j] = requests[endpoint][i] end
    self:batch(endpoint, params, { concurrency = concurrency,
      on_result = function(j, result, err) on_result(indices[j], result, err) end })
  end

  -- Every device is checked for both requests before any I/O; the malformed ones are settled
  -- first, unsent. (A productId of "abc" passes Enable Auto-renewal, a string there, not the
  -- status check.)
  local valid, invalid = {}, {}
  for i = 1, total do
    local d, failed, why = devices[i], nil, nil
    if type(d) ~= "table" then
      failed = "enable_auto_renewal"
    else
      requests.enable_auto_renewal[i] = d
      requests.auto_renewal_status[i] = { productNo = d.productNo, productId = d.productId }
      for _, endpoint in ipairs { "enable_auto_renewal", "auto_renewal_status" } do
        local ok, raised = pcall(self.prepare, self, endpoint, requests[endpoint][i])
        if not ok then failed, why = endpoint, raised break end
      end
    end
    if not failed then
      valid[#valid + 1] = i
    else -- a metamethod of a device may have closed the client: then that is what failed
      invalid[#invalid + 1] = { i, self:is_closed() and closed_error(failed)
        or self:_invalid_item(failed, i, d, why) }
    end
  end
  for _, bad in ipairs(invalid) do settle(bad[1], "failed", bad[2]) end

  local to_enable = {}
  run("auto_renewal_status", valid, function(i, result, err)
    if not result then
      settle(i, "failed", err)
    elseif type(result) == "table" and result.autoRenew == true then
      settle(i, "already_on")
    elseif opts.dry_run then
      settle(i, "would_enable")
    else
      to_enable[#to_enable + 1] = i
    end
  end)
  run("enable_auto_renewal", to_enable, function(i, result, err)
    if result == true then
      settle(i, "enabled")
    else
      settle(i, "failed", err or new_error { kind = "api", code = "not_enabled",
        endpoint = "enable_auto_renewal", message = "the portal did not confirm auto-renewal" })
    end
  end)
  return report
end
