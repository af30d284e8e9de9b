-- gen-reference.lua: prints the README's method reference from partner.endpoints, so the
-- documentation is derived from the same table that drives the code. Run: make reference
package.cpath = "./build/" .. (jit and "luajit" or _VERSION:match("%d+%.%d+")) .. "/?.so;" .. package.cpath
local partner = require "yeastar.partner"

-- What each method returns, in one line (the portal's `result`, as REFERENCE.md models it).
local RESULTS = {
  request_access_token = "`{expiresIn, tokenHead}` (the tokens stay inside the client)",
  refresh_access_token = "`{expiresIn, tokenHead}` (the tokens stay inside the client)",
  subscription_products = "list of `{productId, name}`",
  plans_and_services = "`{offeringId, planList = {{planId, name, ...}}, serviceList = {{serviceId, name, ...}}}`",
  trial_plan_info = "plan terms (`Plan_Info`)",
  subscription_plan_info = "plan terms (`Plan_Info`)",
  renewal_plan_info = "plan terms (`Plan_Info`)",
  trial_service_info = "service terms",
  subscription_service_info = "service terms",
  renewal_service_info = "service terms (seed 003: `{name, billingCycleList, billingModelList, pricingServiceId, serviceId, ...}`)",
  subscription_price = "`{offeringId, planList, serviceList}` with list prices",
  calculate_subscription_price = "the quote",
  products = "page `{pageNo, pageSize, total, count, totalPage, results}` of devices",
  product_details = "device details `{activationStatus, currentPlanExpireDate, ...}`",
  product_model = "`{productModel}`",
  regions = "list of regions `{id, name, region = {{pbxSubDomain, pbxSubDomainId}}}`",
  enable_auto_renewal = "`true`",
  auto_renewal_status = "`{autoRenew = boolean}`",
  subordinate_users = "list of user records `{partnerId, email, company, ...}`",
  subordinate_user = "one user record",
  create_subordinate_user = "`true`",
  edit_subordinate_user = "`true`",
  countries = "page of `{code, id, name}`",
  billing_contacts = "list of `{billingContactId, emailAddress, ...}`",
  create_order = "`{instanceId, orderId, orderNo, orderStatus, productNo, transactionNo}` (seed 002)",
  orders = "page of orders `{id, orderNo, orderStatus, createTime, customReferenceNo, ...}`",
  order_details = "`{basicInformation, billingInformation, orderInformation, orderSummary}`",
}

local names = {}
for name in pairs(partner.endpoints) do names[#names + 1] = name end
table.sort(names, function(a, b) return partner.endpoints[a].index < partner.endpoints[b].index end)
for _, name in ipairs(names) do
  local ep = partner.endpoints[name]
  local args = {}
  for _, p in ipairs(ep.params) do args[#args + 1] = p.name .. "=" end
  print(("#### %s\n"):format(name))
  print(("    syntax: result, err = client:%s%s\n"):format(name,
    #args > 0 and "{" .. table.concat(args, ", ") .. "}" or "()"))
  print(("`%s %s`%s%s. Returns %s.\n"):format(ep.method, ep.path,
    ep.replay_safe and "" or "; **never re-sent** once it may have reached the server",
    ep.paged and "; paged (`client:each`)" or "", RESULTS[name] or "the API's result"))
  if #ep.params > 0 then
    print("| parameter | where | type | required |\n|---|---|---|---|")
    for _, p in ipairs(ep.params) do
      print(("| `%s` | %s | %s | %s |"):format(p.name, p.place, p.type, p.required and "yes" or "no"))
    end
    print()
  end
end
