-- json_bench.lua: decode+encode of a ~1 KB API response (a page of orders with 19-digit IDs)
-- with yeastar.partner's codec and with lua-cjson, measured in the same run. Reports, asserts nothing.
-- Usage, from the repository root after `make`: lua5.4 bench/json_bench.lua [iterations]
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
local partner = require("yeastar.partner")
local cjson = require("cjson")

local body = [[
{"errcode":0,"errmsg":"SUCCESS","requestId":"7f3c2a9e-5b1d-4e8a-9c0f-2d6b8e4a1c73",
 "data":{"pageNo":1,"pageSize":4,"total":37,"list":[
  {"orderId":3197218168379846218,"planId":3049040650094403584,"poNumber":"PO-2024-000117",
   "customerName":"Acme Telecom GmbH","status":"PAID","currency":"USD","amount":1249.5,
   "quantity":25,"autoRenew":true,"remark":null,"createTime":1717046400000,
   "items":[{"sku":"P-SERIES-EXT","qty":25,"unitPrice":49.98}]},
  {"orderId":3197218168379846219,"planId":3049036224189325312,"poNumber":"PO-2024-000118",
   "customerName":"Müller & Söhne KG","status":"PENDING","currency":"EUR","amount":399,
   "quantity":8,"autoRenew":false,"remark":"renewal \"Q3\"","createTime":1717132800000,
   "items":[{"sku":"P-SERIES-EXT","qty":8,"unitPrice":49.875}]},
  {"orderId":3197218168379846220,"planId":3049040650094403584,"poNumber":"PO-2024-000119",
   "customerName":"深圳市某某科技有限公司","status":"PAID","currency":"CNY","amount":8800,
   "quantity":100,"autoRenew":true,"remark":null,"createTime":1717219200000,
   "items":[{"sku":"CLOUD-PBX","qty":100,"unitPrice":88}]},
  {"orderId":3197218168379846221,"planId":3049036224189325312,"poNumber":"PO-2024-000120",
   "customerName":"Northwind Traders","status":"CANCELLED","currency":"USD","amount":0,
   "quantity":0,"autoRenew":false,"remark":"duplicate of PO-2024-000119","createTime":1717305600000,
   "items":[]}
 ]}}]]
body = body:gsub("\n%s*", "") -- the API sends compact JSON; the layout above is for reading

local N = tonumber(arg[1]) or 20000
local ROUNDS = 7

local function time(decode, encode)
  local t0 = os.clock()
  for _ = 1, N do
    encode(decode(body))
  end
  return (os.clock() - t0) / N
end

local codecs = {
  { name = "yeastar.partner", decode = partner.json_decode, encode = partner.json_encode },
  { name = "lua-cjson " .. tostring(cjson._VERSION), decode = cjson.decode, encode = cjson.encode },
}
-- Alternate the codecs round by round and keep each one's best, so a noisy moment on a shared
-- machine hurts both alike rather than one.
for _, c in ipairs(codecs) do
  c.best = math.huge
  time(c.decode, c.encode) -- warm-up
end
for _ = 1, ROUNDS do
  for _, c in ipairs(codecs) do
    c.best = math.min(c.best, time(c.decode, c.encode))
  end
end

local ours, theirs = codecs[1], codecs[2]
print(("payload: %d bytes, %d iterations x %d rounds, best round, %s"):format(#body, N, ROUNDS, _VERSION))
for _, c in ipairs(codecs) do
  print(("%-22s %8.2f us per decode+encode"):format(c.name, c.best * 1e6))
end
print(("ratio (ours / cjson time): %.2f"):format(ours.best / theirs.best))
print(("orderId after decode: ours %s, cjson %s"):format(
  tostring(partner.json_decode(body).data.list[1].orderId),
  string.format("%.0f", cjson.decode(body).data.list[1].orderId)))
