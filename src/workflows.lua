-- workflows.lua: the renewal jobs built on the endpoint methods (paging, order lookup, Remote
-- Management renewal, fleet auto-renewal, renewal audit). Embedded in partner.so at build time.
local partner, methods, new_error = ...

-- The fixed values of seed 002 (the Remote Management renewal tutorial), kept in one place.
local REMOTE_MANAGEMENT = {
  productId = 15,
  plan_name = "Remote Management Account",
  service = { serviceType = "plan", purchaseType = "renew", billingModel = "recurring",
              billingCycle = "annually", multiCycle = 1 },
}

-- What the renewal audit reads from the portal's records, every field name in one place. Those
-- marked "modelled" lie where the guide's pages are cut off (README, "Modelled assumptions").
local AUDIT_FIELDS = {
  -- Query Available Subscription Products (documented): the products to walk, and their names.
  product_id = "productId",
  product_name = "name",
  -- Query Product List record, modelled: the device's SN. The page is cut off before it; other
  -- pages say the SN comes from this list.
  serial = "productNo",
  -- Get Product Details (documented, "returned conditionally"): the current plan's expiry. Its
  -- format is modelled: "YYYY-MM-DD", optionally followed by a time, read as a calendar date.
  expiry = "currentPlanExpireDate",
  -- Get Product Details, modelled (cut off after currentPlanExpireDate): the current plan's ID,
  -- which the audit's fix sends as planOrServiceId, and its name.
  plan_id = "planId",
  plan_name = "planName",
  -- Query Auto Renewal Status (documented, seed 001).
  auto_renew = "autoRenew",
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

-- Runs one endpoint for the items at `indices` of a workflow, params_of(i) giving each one's
-- parameters; on_result gets the item's own index. A callback that closed the client leaves
-- them unsent: each then ends with kind `closed`, as the unsent items of a batch do.
local function batch_at(self, endpoint, indices, params_of, concurrency, on_result)
  if #indices == 0 then return end
  if self:is_closed() then
    for _, i in ipairs(indices) do on_result(i, nil, closed_error(endpoint)) end
    return
  end
  local params = {}
  for j, i in ipairs(indices) do params[j] = params_of(i) end
  self:batch(endpoint, params, { concurrency = concurrency,
    on_result = function(j, result, err) on_result(indices[j], result, err) end })
end

-- Enable Auto-renewal answers true when it worked; any other answer is a failure.
local function not_enabled_error()
  return new_error { kind = "api", code = "not_enabled", endpoint = "enable_auto_renewal",
    message = "the portal did not confirm auto-renewal" }
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
  local function run(endpoint, indices, on_result)
    batch_at(self, endpoint, indices, function(i) return requests[endpoint][i] end, concurrency,
      on_result)
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
      settle(i, "failed", err or not_enabled_error())
    end
  end)
  return report
end

-- Renewal audit -----------------------------------------------------------------------------

local AUDIT_OPTIONS = { productIds = "table", within_days = "number", concurrency = "number",
                        fix = "boolean", dry_run = "boolean", today = "string",
                        on_progress = "function" }
-- Bounds on what the server sends: a serial as the fake portal models it (letters, digits,
-- '.', '_', '-'), names short enough for a table cell, and a list that cannot run for ever
-- (a server repeating one page with a huge totalPage).
local MAX_SERIAL, MAX_NAME, MAX_DATE_TEXT = 64, 200, 64
local MAX_RECORDS_PER_PRODUCT = 100000
local DAYS_IN_MONTH = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- The day number (days since 1970-01-01) of "YYYY-MM-DD", by calendar arithmetic alone: os.time
-- reads its table as local time, so a date would move with the machine's time zone. With
-- allow_time a time may follow ("2027-01-31T23:59:59Z", "2027-01-31 00:00"); only the date counts.
local function day_number(text, allow_time)
  if type(text) ~= "string" or #text > MAX_DATE_TEXT then return nil end
  local y, m, d, rest = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  if rest ~= "" and not (allow_time and rest:find("^[T ]%d%d:%d%d")) then return nil end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  local leap = y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
  if m < 1 or m > 12 or d < 1 or d > ((m == 2 and leap) and 29 or DAYS_IN_MONTH[m]) then
    return nil
  end
  -- Howard Hinnant's days_from_civil: years start in March, so the leap day ends the year.
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- A string from the server fit for a report cell: bounded, no control characters; else nil.
local function safe_text(v, max)
  if type(v) ~= "string" or #v == 0 or #v > max or v:find("%c") then return nil end
  return v
end

local function safe_serial(v)
  v = safe_text(v, MAX_SERIAL)
  return v and v:find("^[%w%._%-]+$") and v or nil
end

-- A plan ID from the server, as decoded: an integer, or the decimal string of one beyond the
-- runtime's integers. Anything else is no plan ID.
local function safe_plan_id(v)
  if is_integer(v) then return v > 0 and v or nil end
  if type(v) == "string" and #v <= 20 and v:find("^%d+$") then return v end
  return nil
end

local function audit_error(code, endpoint, message)
  return new_error { kind = "decode", code = code, endpoint = endpoint, message = message }
end

-- The verdict of a row whose details and status calls have come back (d, s: batch results).
-- Every field that can be read is filled in, even for an `unknown` verdict.
local function judge(row, d, s, today_day, within)
  local details, status = d.result, s.result
  local F = AUDIT_FIELDS
  row.plan = safe_text(field(details, F.plan_name), MAX_NAME)
  row.planId = safe_plan_id(field(details, F.plan_id))
  local auto = field(status, F.auto_renew)
  if type(auto) == "boolean" then row.auto_renew = auto end
  local raw = field(details, F.expiry)
  local day = day_number(raw, true)
  if day then
    row.expiry, row.days_left = raw:sub(1, 10), day - today_day
  end
  if d.err then return "unknown", d.err end
  if s.err then return "unknown", s.err end
  if not day then
    if raw == nil or raw == partner.null then
      return "unknown", audit_error("no_expiry", "product_details",
        ("the details of %s carry no %s"):format(row.productNo, F.expiry))
    end
    return "unknown", audit_error("bad_expiry", "product_details",
      ("the %s of %s is not a date YYYY-MM-DD"):format(F.expiry, row.productNo))
  end
  if row.auto_renew == nil then
    return "unknown", audit_error("bad_auto_renew", "auto_renewal_status",
      ("the auto-renewal status of %s has no boolean %s"):format(row.productNo, F.auto_renew))
  end
  if row.days_left < 0 then return "expired" end
  if row.days_left <= within and row.auto_renew ~= true then return "expiring_unprotected" end
  return "ok"
end

-- client:renewal_audit{productIds=, within_days=, concurrency=, fix=, dry_run=, today=,
-- on_progress=} -> report
-- Walks every page of each product's device list, fetches every device's details and
-- auto-renewal status (at most `concurrency` in flight), and gives each device a verdict; with
-- fix (and dry_run = false), enables auto-renewal where it is off and the plan expires soon.
function methods:renewal_audit(opts)
  opts = check_options("renewal_audit", opts, AUDIT_OPTIONS)
  local within = opts.within_days == nil and 30 or opts.within_days
  if not (is_integer(within) and within >= 0 and within <= 3650) then
    error("renewal_audit: option 'within_days' must be an integer from 0 to 3650", 2)
  end
  local concurrency = opts.concurrency == nil and 8 or opts.concurrency
  if not (is_integer(concurrency) and concurrency >= 1 and concurrency <= MAX_CONCURRENCY) then
    error(("renewal_audit: option 'concurrency' must be an integer from 1 to %d")
      :format(MAX_CONCURRENCY), 2)
  end
  local today = opts.today or os.date("!%Y-%m-%d")
  local today_day = day_number(today, false)
  if not today_day then
    error(("renewal_audit: option 'today' must be a date YYYY-MM-DD (got %q)")
      :format(today:sub(1, 40)), 2)
  end
  if self:is_closed() then error("yeastar.partner: the client is closed", 2) end
  local wanted
  if opts.productIds then
    local n = 0
    for _ in pairs(opts.productIds) do n = n + 1 end
    if n ~= #opts.productIds then error("renewal_audit: option 'productIds' must be a list", 2) end
    wanted = {}
    for i, id in ipairs(opts.productIds) do
      local ok = (is_integer(id) or type(id) == "string" or type(id) == "cdata")
        and pcall(self.prepare, self, "products", { productId = id })
      if not ok then
        error(("renewal_audit: option 'productIds' item %d must be an integer or a decimal string"
          .. " (got %s)"):format(i, type(id) == "string" and ("%q"):format(id:sub(1, 40)) or type(id)), 2)
      end
      wanted[i] = id
    end
  end

  local dry_run = opts.dry_run ~= false
  local report = { today = today, within_days = within, total = 0, devices = {},
                   totals = { ok = 0, expiring_unprotected = 0, expired = 0, unknown = 0 },
                   incomplete = {} }
  if opts.fix then report.fixes = { would_enable = 0, enabled = 0, failed = 0 } end
  local F = AUDIT_FIELDS

  -- The catalogue: the products to walk (unless given) and their names. With productIds given,
  -- the names are a courtesy: a failure leaves them out.
  local names, product_ids, seen_product = {}, wanted or {}, {}
  local catalogue, cerr = call(self, "subscription_products")
  if type(catalogue) == "table" then
    for _, p in ipairs(catalogue) do
      local id = field(p, F.product_id)
      local usable = (is_integer(id) or type(id) == "string") and pcall(self.prepare, self, "products",
        { productId = id })
      if usable then
        names[id_text(id)] = safe_text(field(p, F.product_name), MAX_NAME)
        if not wanted and not seen_product[id_text(id)] then
          seen_product[id_text(id)] = true
          product_ids[#product_ids + 1] = id
        end
      elseif not wanted then
        report.incomplete[#report.incomplete + 1] = { err = audit_error("bad_record",
          "subscription_products", "a product of the catalogue has no usable " .. F.product_id) }
      end
    end
  elseif not wanted then
    report.incomplete[#report.incomplete + 1] = { err = cerr or audit_error("bad_envelope",
      "subscription_products", "the catalogue of products is not a list") }
  end

  -- Every page of every product's list. A list that fails part way keeps the devices read so
  -- far; the product is reported as incomplete. A device listed twice (a list that shifted
  -- between pages) is audited once.
  local rows, seen = {}, {}
  for _, pid in ipairs(product_ids) do
    local n = 0
    for record, err in self:each("products", { productId = pid }) do
      if not record then
        report.incomplete[#report.incomplete + 1] = { productId = pid, err = err }
        break
      end
      n = n + 1
      if n > MAX_RECORDS_PER_PRODUCT then
        report.incomplete[#report.incomplete + 1] = { productId = pid, err = audit_error(
          "too_many_records", "products", ("the list of product %s goes on past %d devices")
            :format(id_text(pid), MAX_RECORDS_PER_PRODUCT)) }
        break
      end
      local serial = safe_serial(field(record, F.serial))
      local key = serial and id_text(pid) .. " " .. serial
      if not (key and seen[key]) then
        if key then seen[key] = true end
        rows[#rows + 1] = { productNo = serial, productId = pid, product = names[id_text(pid)] }
      end
    end
  end

  local total = #rows
  report.total = total
  local done = 0
  local function settle(i, verdict, err)
    local row = rows[i]
    row.verdict, row.err = verdict, err
    report.devices[i] = row
    report.totals[verdict] = report.totals[verdict] + 1
    done = done + 1
    if opts.on_progress then opts.on_progress(done, total, row) end
  end

  local function run(endpoint, indices, params_of, on_result)
    batch_at(self, endpoint, indices, function(i) return params_of(rows[i]) end, concurrency,
      on_result)
  end
  local function device_of(row) return { productNo = row.productNo, productId = row.productId } end

  local valid = {}
  for i, row in ipairs(rows) do
    if row.productNo then
      valid[#valid + 1] = i
    else
      settle(i, "unknown", audit_error("bad_record", "products",
        ("a device of product %s has no usable %s"):format(id_text(row.productId), F.serial)))
    end
  end
  local details = {}
  run("product_details", valid, device_of, function(i, result, err)
    details[i] = { result = result, err = err }
  end)
  run("auto_renewal_status", valid, device_of, function(i, result, err)
    local status = { result = result, err = err }
    settle(i, judge(rows[i], details[i], status, today_day, within))
  end)

  if opts.fix then
    local fixes = report.fixes
    local function fixed(i, outcome, err)
      rows[i].fix, rows[i].fix_err = outcome, err
      fixes[outcome] = fixes[outcome] + 1
    end
    local to_enable = {}
    for i, row in ipairs(rows) do
      if row.verdict == "expiring_unprotected" then
        if row.planId == nil then -- the dry run fails here too: no request involved
          fixed(i, "failed", audit_error("no_plan_id", "product_details",
            ("the details of %s carry no usable %s to enable auto-renewal with")
              :format(row.productNo, F.plan_id)))
        elseif dry_run then
          fixed(i, "would_enable")
        else
          to_enable[#to_enable + 1] = i
        end
      end
    end
    run("enable_auto_renewal", to_enable, function(row)
      return { productNo = row.productNo, productId = row.productId, planOrServiceId = row.planId }
    end, function(i, result, err)
      if result == true then
        fixed(i, "enabled")
      else
        fixed(i, "failed", err or not_enabled_error())
      end
    end)
  end
  return report
end
