-- bench/codec.lua: the codec half of `make bench`: partner.json_decode/json_encode against
-- lua-cjson on three documents, counting only the documents both codecs get right.
-- Owns the documents (built here, byte for byte the same every run), the correctness checks and
-- the timing loops; bench/bench.lua owns the table. Portable Lua 5.1-5.4 and LuaJIT.
local M = {}

-- Seed 003's response example (Query Information about the Service Available for Renewal),
-- verbatim: the guide's layout, 4-space indentation included.
local SEED = [[
{
    "code": "success",
    "detailMessage": "",
    "requestId": "bcd5d88e5e0fa7b09296df663b9d6db1",
    "result": {
        "billingCycleList": [
            "annually"
        ],
        "billingModelList": [
            "recurring"
        ],
        "connectionServiceList": [],
        "name": "Hotel PMS Integration",
        "pricingServiceId": 27946,
        "purchaseMultiCycleList": [],
        "purchaseParameter": "",
        "purchaseParameterId": null,
        "serviceId": "3116037397465776128",
        "unitName": ""
    },
    "status": 200
}]]

local NAMES = { "Acme Telecom GmbH", "M\195\188ller & S\195\182hne KG", "Northwind Traders",
                "\230\183\177\229\156\179\229\184\130\231\167\145\230\138\128\230\156\137\233\153\144\229\133\172\229\143\184",
                "Contoso \"EU\" Ltd", "Fabrikam\\Partners" }
local STATUSES = { "succeed", "pending", "cancelled" }

-- One order record of the order list (fakeportal/portal.py seed_orders' shape, with the plan,
-- billing and service IDs the API sends as JSON numbers: 19 digits, above 2^53).
local function order(i)
  return ('{"id": "34008141311422%05d", "orderNo": "MK34008141311422%05d", "instanceId": "%d", '
    .. '"transactionNo": "%s", "orderStatus": "%s", "createTime": %d, "poNumber": "PO-%04d", '
    .. '"productId": %d, "productNo": "3651E05%05d", "operationType": "renew_plan", '
    .. '"billingId": 31972181683798%05d, "customerName": "%s", "currency": "USD", '
    .. '"amount": %d.%02d, "quantity": %d, "autoRenew": %s, "remark": %s, '
    .. '"invoiceNo": "INV34008141311422%05d", "serviceList": [{"serviceType": "plan", '
    .. '"serviceId": 30490406500943%05d, "purchaseType": "renew", "billingModel": "recurring", '
    .. '"billingCycle": "annually", "multiCycle": 1, "unitPrice": 49.875}]}')
    :format(i, i, 1946688 - i, i % 3 == 0 and "" or ("TX%08d"):format(i * 7),
            STATUSES[i % 3 + 1], 1735689600000 + i * 86400000, i, 11 + i % 5, i,
            46218 + i, NAMES[i % #NAMES + 1]:gsub("[\"\\]", "\\%0"), i * 37 % 5000, i % 100,
            1 + i % 50, i % 2 == 0 and "true" or "false",
            i % 4 == 0 and "null" or ('"renewal \\"Q%d\\" \\u00e9t\195\169"'):format(i % 4),
            i, 83584 + i)
end

-- One device of the instance product list, with its plan ID (a JSON number above 2^53).
local function device(i)
  return ('{"productNo": "FLEET%07d", "productId": %d, "model": "P%03d", '
    .. '"planId": 30490406500943%05d, "planName": "Enterprise Plan", "autoRenew": %s, '
    .. '"currentPlanExpireDate": "2026-%02d-%02d", "activationCode": "AC%06d%04d", '
    .. '"createTime": %d, "extensions": %d, "usage": %d.%03d}')
    :format(i, 11 + i % 5, 500 + i % 70, 10000 + i % 90000, i % 3 == 0 and "false" or "true",
            1 + i % 12, 1 + i % 28, i, i % 10000, 1704067200000 + i * 60000, 10 + i % 500,
            i % 97, i % 1000)
end

local function list_document(count, item, prefix)
  local parts = {}
  for i = 1, count do parts[i] = item(i) end
  return '{"code": "success", "detailMessage": "", "requestId": "' .. prefix
    .. '", "result": {"pageNo": 1, "pageSize": ' .. count .. ', "total": ' .. count
    .. ', "totalPage": 1, "list": [' .. table.concat(parts, ", ") .. ']}, "status": 200}'
end

-- The three documents: name, text.
function M.documents()
  return {
    { name = "seed envelope (seed 003)", text = SEED },
    { name = "order page", text = list_document(94, order, "7f3c2a9e5b1d4e8a9c0f2d6b8e4a1c73") },
    { name = "device list", text = list_document(17600, device, "0f1e2d3c4b5a69788796a5b4c3d2e1f0") },
  }
end

-- ---------------------------------------------------------------------------------------------
-- Right or wrong: cjson's output is checked against ours.
-- ---------------------------------------------------------------------------------------------

-- Same data: numbers compare by value (an integer and a float holding it are equal, a float that
-- lost an ID's digits is not), tables member by member, metatables ignored (an empty array and an
-- empty object are not told apart here: the encode check is where that matters).
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function show(v) -- every digit: an integer as itself, a float with 17 significant digits
  if type(v) ~= "number" or (math.type and math.type(v) == "integer") then return tostring(v) end
  return ("%.17g"):format(v)
end

-- Where `a` (ours) and `b` differ first, for the report: a path and both values.
local function first_difference(a, b, path)
  if type(a) ~= "table" or type(b) ~= "table" then
    if not same(a, b) then
      return ("%s: ours %s, cjson %s"):format(path, show(a), show(b))
    end
    return nil
  end
  local keys = {}
  for k in pairs(a) do keys[#keys + 1] = k end
  for k in pairs(b) do if a[k] == nil then keys[#keys + 1] = k end end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  for _, k in ipairs(keys) do
    local d = first_difference(a[k], b[k], path .. "." .. tostring(k))
    if d then return d end
  end
  return nil
end

-- Arrays as arrays: our decoder marks them with partner.array_mt; an encoder that writes an
-- empty array as {} got the document wrong.
local function same_shape(a, b, array_mt)
  if type(a) ~= "table" then return true end
  if type(b) ~= "table" then return false end
  if (getmetatable(a) == array_mt) ~= (getmetatable(b) == array_mt) then return false end
  for k, v in pairs(a) do
    if not same_shape(v, b[k], array_mt) then return false end
  end
  return true
end

-- nil when cjson gets `text` right both ways, else why not: decode is compared with ours, encode
-- (of the table our decoder gives both) is decoded again by ours and compared with that table.
function M.check(partner, cjson, text)
  local ours = partner.json_decode(text)
  local theirs = cjson.decode(text)
  local why = {}
  if not same(ours, theirs) then
    why[#why + 1] = "decode: " .. tostring(first_difference(ours, theirs, "$"))
  end
  local back = partner.json_decode(cjson.encode(ours))
  if not same(ours, back) then
    why[#why + 1] = "encode: " .. tostring(first_difference(ours, back, "$"))
  elseif not same_shape(ours, back, partner.array_mt) then
    why[#why + 1] = "encode: an empty array written as {}"
  end
  local mine = partner.json_decode(partner.json_encode(ours))
  assert(same(ours, mine) and same_shape(ours, mine, partner.array_mt),
    "partner.json_encode does not round-trip the document")
  return #why > 0 and table.concat(why, "; ") or nil
end

-- The variant both codecs get right, made on the text: every JSON number of 14 or more digits
-- becomes 13 digits, a 1 and its last 12 (cjson decodes numbers as doubles, exact to 2^53, and
-- encodes 14 significant digits), and every empty array gets one element, 0 (cjson 2.1.0 writes
-- an empty table as {}).
-- Same layout, nearly the same size. (No string of these documents holds ": 123..." or "[]".)
-- Returns the text, how many numbers and how many empty arrays it changed.
function M.variant(text)
  local ids, numbers = text:gsub("([:%[,]%s*)%d+(%d%d%d%d%d%d%d%d%d%d%d%d)", "%11%2")
  local out, arrays = ids:gsub("%[%]", "[0]")
  return out, numbers, arrays
end

-- ---------------------------------------------------------------------------------------------
-- Timing
-- ---------------------------------------------------------------------------------------------

-- CPU seconds for `iterations` calls of f(arg), after a full collection, so that garbage left by
-- the other codec is not collected on this one's time.
function M.time(f, arg, iterations)
  collectgarbage()
  collectgarbage()
  local t0 = os.clock()
  for _ = 1, iterations do f(arg) end
  return os.clock() - t0
end

-- How many iterations make a measurement of about `seconds` CPU time for f(arg).
function M.calibrate(f, arg, seconds)
  local n = 1
  while true do
    local t = M.time(f, arg, n)
    if t >= seconds / 8 then return math.max(1, math.floor(n * seconds / t + 0.5)) end
    n = n * 4
  end
end

return M
