/* endpoints.c: every documented Partner Portal endpoint as data: method, path, parameters (place,
 * JSON type), result shape, an example call, and where inputs come from. Seeds win over pages. */
#include <string.h>

#include "endpoints.h"

#define END {NULL, 0, 0, 0, NULL}
#define Q(name, type, req) {name, YP_QUERY, type, req, NULL}
#define B(name, type, req) {name, YP_BODY, type, req, NULL}
#define P(name) {name, YP_PATH, YP_STRING, 1, NULL}
#define M(name, type, req) {name, 0, type, req, NULL} /* member of a nested object */

/* Shared parameter lists. */
static const yp_field no_params[] = {END};
static const yp_field product_required[] = {
    Q("productNo", YP_STRING, 1), Q("productId", YP_INTEGER, 1), END};
static const yp_field product_query[] = {
    Q("productId", YP_INTEGER, 1), Q("productNo", YP_STRING, 0), END};
static const yp_field plan_info[] = {
    P("pricingPlanId"), Q("productId", YP_INTEGER, 1), Q("productNo", YP_STRING, 0), END};
/* One page version marks productNo required for renewals; the newer one does not. The
 * stricter reading wins: a renewal always concerns an existing device. */
static const yp_field renewal_plan_info[] = {
    P("pricingPlanId"), Q("productId", YP_INTEGER, 1), Q("productNo", YP_STRING, 1), END};
static const yp_field service_info[] = {
    P("pricingServiceId"), Q("productId", YP_INTEGER, 1), Q("productNo", YP_STRING, 0),
    Q("connectionPlanId", YP_INTEGER, 0), END};
static const yp_field renewal_service_info[] = {
    P("pricingServiceId"), Q("productNo", YP_STRING, 1), Q("productId", YP_INTEGER, 1), END};
static const yp_field price_info[] = {
    Q("productId", YP_INTEGER, 1), Q("partnerId", YP_STRING, 0),
    Q("billingCycle", YP_STRING, 1), Q("offeringId", YP_STRING, 1), END};

/* Modelled: pricing items carry more members than the cut-off page shows; these are the ones seen. */
static const yp_field price_items[] = {
    M("serviceType", YP_STRING, 1), M("pricingId", YP_INTEGER, 1),
    M("quantity", YP_INTEGER, 0), M("purchaseType", YP_STRING, 0),
    M("billingModel", YP_STRING, 0), M("billingCycle", YP_STRING, 0),
    M("multiCycle", YP_INTEGER, 0), END};
static const yp_field calculate_price[] = {
    B("productId", YP_INTEGER, 1), B("productNo", YP_STRING, 0),
    B("operationType", YP_STRING, 1), {"serviceList", YP_BODY, YP_LIST, 1, price_items},
    B("partnerView", YP_STRING, 0), END};

static const yp_field paged_products[] = {
    Q("productId", YP_INTEGER, 1), Q("pageNo", YP_INTEGER, 0), Q("pageSize", YP_INTEGER, 0), END};
static const yp_field enable_auto_renewal[] = {
    /* Seed 000: productId travels as a JSON string here, unlike everywhere else. */
    B("productNo", YP_STRING, 1), B("productId", YP_STRING, 1),
    B("planOrServiceId", YP_INTEGER, 1), END};

static const yp_field user_id[] = {P("partnerId"), END};
#define USER_PROFILE                                                                   \
  B("firstName", YP_STRING, 0), B("lastName", YP_STRING, 0),                           \
      B("phoneNumber", YP_STRING, 0), B("stateProvince", YP_STRING, 0),                \
      B("city", YP_STRING, 0), B("street", YP_STRING, 0), B("zipCode", YP_STRING, 0), \
      B("taxType", YP_STRING, 0), B("taxNum", YP_STRING, 0), B("remark", YP_STRING, 0)
static const yp_field create_user[] = {
    B("userType", YP_STRING, 1), B("yeastarId", YP_STRING, 1), B("company", YP_STRING, 1),
    B("country", YP_STRING, 1), USER_PROFILE, B("sendUserActivationEmail", YP_BOOLEAN, 0), END};
static const yp_field edit_user[] = {
    B("yeastarId", YP_STRING, 1), B("userType", YP_STRING, 1), B("company", YP_STRING, 0),
    USER_PROFILE, END};
static const yp_field countries[] = {
    Q("pageSize", YP_INTEGER, 0), Q("pageNo", YP_INTEGER, 0), Q("sort", YP_STRING, 0),
    Q("name", YP_STRING, 0), END};

/* Modelled from the tutorials (the reference page is cut off): members and their order, as in
 * seed 002. IDs are JSON numbers there, so serviceId and connectionPlanId are integers. */
static const yp_field order_items[] = {
    M("serviceType", YP_STRING, 1), M("serviceId", YP_INTEGER, 1),
    M("connectionPlanId", YP_INTEGER, 0), M("quantity", YP_INTEGER, 0),
    M("purchaseType", YP_STRING, 0), M("billingModel", YP_STRING, 0),
    M("billingCycle", YP_STRING, 0), M("multiCycle", YP_INTEGER, 0), END};
static const yp_field pce_request[] = {
    M("pbxName", YP_STRING, 0), M("regionId", YP_STRING, 0), M("pbxSubDomainId", YP_STRING, 0), END};
static const yp_field create_order[] = {
    B("operationType", YP_STRING, 1), B("productNo", YP_STRING, 0),
    B("productId", YP_INTEGER, 1), B("assignId", YP_STRING, 0), B("partnerId", YP_STRING, 0),
    B("billingId", YP_INTEGER, 1), B("poNumber", YP_STRING, 0),
    {"serviceList", YP_BODY, YP_LIST, 1, order_items},
    {"orderPceSpecialRequest", YP_BODY, YP_OBJECT, 0, pce_request}, END};
static const yp_field orders[] = {
    Q("pageSize", YP_INTEGER, 0), Q("pageNo", YP_INTEGER, 0), Q("sort", YP_STRING, 0), END};
/* Documented as Long, but it also takes an order number such as MK3400814131142238208. */
static const yp_field order_id[] = {P("id"), END};

#define GET "GET"
#define POST "POST"
#define SAFE YP_REPLAY_SAFE
#define MODELLED YP_MODELLED

/* Result shapes (notation: endpoints.h). Members are the guide's, in its order, unless marked
 * modelled; "..." where its tables are cut off. Shapes used by several endpoints come first. */
#define TOKEN_DETAILS "{expiresIn: string, tokenHead: string}" /* the tokens stay in the client */
#define PAGE(record) \
  "{pageNo: integer, pageSize: integer, total: integer, count: integer, totalPage: integer, " \
  "results: [" record "]}"
/* Plan_Info: no page shows its members; these are the fake portal's, after Service_Details. */
#define PLAN_TERMS \
  "{name: string, planId: id, pricingPlanId: integer, billingCycleList: [string], " \
  "billingModelList: [string], purchaseMultiCycleList: [integer], trialPeriod?: integer, ...}"
/* Seed 003 (the renewal Details table, complete); the trial and subscription pages are cut
 * off, and modelled as the same object with Service_Details' purchase and trial members. */
#define SERVICE_DETAILS \
  "billingCycleList: [string], billingModelList: [string], " \
  "connectionServiceList: [{billingModel: string, billingCycle: string, " \
  "connectionServiceList: [{...}]}], name: string, pricingServiceId: integer, " \
  "purchaseMultiCycleList: [integer], purchaseParameter: string, " \
  "purchaseParameterId: integer|null, serviceId: string, unitName: string"
#define SERVICE_TERMS \
  "{" SERVICE_DETAILS ", purchaseType?: [string], trialPeriod?: integer, trialPrice?: number, " \
  "trialQuantity?: integer, ...}"
#define USER_RECORD \
  "{partnerId: string, email: string, firstName: string, lastName: string, company: string, " \
  "country: string, stateProvince: string, city: string, street: string, zipCode: string, " \
  "phoneNumber: string, taxNum: string, remark: string, userType: string}"
#define PRICED(id) "{" id ": id, name: string, price: number, currencyCode: string, ...}"

/* The examples run in this order against the fake portal (spec/17-docs_spec.lua), with its
 * seeded devices and the tutorials' IDs; IDs are written as strings, which every runtime keeps. */
#define DEVICE_11 "productId = 11, productNo = \"3632E0965333\""

const yp_endpoint yp_endpoints[] = {
    /* The two token operations are methods too; the client fills their form fields itself.
     * The first entry is YP_TOKEN_ENDPOINT. */
    {"request_access_token", POST, "/auth/openapi/v1/oauth/token", SAFE | YP_TOKEN, no_params,
     "Request Access Token", TOKEN_DETAILS,
     "local token, err = client:request_access_token()"},
    {"refresh_access_token", POST, "/auth/openapi/v1/oauth/token", SAFE | YP_TOKEN, no_params,
     "Refresh Access Token", TOKEN_DETAILS,
     "local token, err = client:refresh_access_token()"},
    {"subscription_products", GET, "/pricing/openapi/purchase/v1/product_list", SAFE | MODELLED,
     no_params, "Query Available Subscription Products", "[{productId: integer, name: string}]",
     "local products, err = client:subscription_products()"},
    /* Modelled (REFERENCE.md): the page stops after offeringId. The tutorials take planId and
     * serviceId from here, and the info pages their pricing IDs. */
    {"plans_and_services", GET, "/pricing/openapi/purchase/v1/purchase_product_info",
     SAFE | MODELLED, product_query,
     "Query Available Subscription / Trial Plans and Services for a Product",
     "{offeringId: string, "
     "planList: [{planId: id, name: string, pricingPlanId?: integer, ...}], "
     "serviceList: [{serviceId: id, name: string, pricingServiceId: integer, ...}], ...}",
     "local offer, err = client:plans_and_services { productId = 15 }"},
    {"trial_plan_info", GET, "/pricing/openapi/purchase/v1/trial/plan_info/{pricingPlanId}",
     SAFE | MODELLED, plan_info, "Query Information about the Plan Available for Trial",
     PLAN_TERMS,
     "local terms, err = client:trial_plan_info { pricingPlanId = \"27901\", productId = 11 }"},
    {"subscription_plan_info", GET,
     "/pricing/openapi/purchase/v1/purchase/plan_info/{pricingPlanId}", SAFE | MODELLED, plan_info,
     "Query Information about the Plan Available for Subscription", PLAN_TERMS,
     "local terms, err = client:subscription_plan_info {\n"
     "  pricingPlanId = \"27901\", " DEVICE_11 ",\n}"},
    {"renewal_plan_info", GET, "/pricing/openapi/purchase/v1/renew/plan_info/{pricingPlanId}",
     SAFE | MODELLED, renewal_plan_info,
     "Query Information about the Plan Available for Renewal", PLAN_TERMS,
     "local terms, err = client:renewal_plan_info {\n"
     "  pricingPlanId = \"27901\", " DEVICE_11 ",\n}"},
    {"trial_service_info", GET,
     "/pricing/openapi/purchase/v1/trial/add_on_info/{pricingServiceId}", SAFE | MODELLED,
     service_info, "Query Information about the Service Available for Trial", SERVICE_TERMS,
     "local terms, err = client:trial_service_info { pricingServiceId = \"27946\", "
     "productId = 11 }"},
    {"subscription_service_info", GET,
     "/pricing/openapi/purchase/v1/purchase/add_on_info/{pricingServiceId}", SAFE | MODELLED,
     service_info, "Query Information about the Service Available for Subscription",
     SERVICE_TERMS,
     "local terms, err = client:subscription_service_info {\n"
     "  pricingServiceId = \"27946\", " DEVICE_11 ",\n}"},
    /* Seed 003, request and result. */
    {"renewal_service_info", GET,
     "/pricing/openapi/purchase/v1/renew/add_on_info/{pricingServiceId}", SAFE,
     renewal_service_info, "Query Information about the Service Available for Renewal",
     "{" SERVICE_DETAILS "}",
     "local terms, err = client:renewal_service_info {\n"
     "  pricingServiceId = \"27946\", productNo = \"3632E0965333\", productId = 11,\n}"},
    /* Price_Info: the page names planList and serviceList but not their members. */
    {"subscription_price", GET, "/pricing/openapi/purchase/v1/my_price_info", SAFE | MODELLED,
     price_info, "Query Subscription Price",
     "{offeringId: string, planList: [" PRICED("planId") "], serviceList: [" PRICED("serviceId")
     "]}",
     "local prices, err = client:subscription_price {\n"
     "  productId = 15, offeringId = \"3049036224189300015\", billingCycle = \"annually\",\n"
     "}"},
    /* A quote moves no money, so replaying it is harmless. */
    {"calculate_subscription_price", POST, "/pricing/openapi/purchase/v1/pricing/calculate",
     SAFE | MODELLED, calculate_price, "Calculate Subscription Price",
     "{currencyCode: string, totalPrice: number, ...}",
     "local quote, err = client:calculate_subscription_price {\n"
     "  " DEVICE_11 ", operationType = \"renew_plan\",\n"
     "  serviceList = { { serviceType = \"plan\", pricingId = 27901, "
     "billingCycle = \"annually\" } },\n"
     "}"},
    /* Product_Info is cut off after `comment`; productNo (the SN), which other pages say comes
     * from here, and the rest are modelled. */
    {"products", GET, "/product/openapi/instance_product/v1/client/instance_product_list",
     SAFE | YP_PAGED | MODELLED, paged_products, "Query Product List",
     PAGE("{activationCode: string, activationStatus: string, comment: string, productNo: string, "
          "productId: integer, createTime: integer, currentPlanExpireDate?: string, ...}"),
     "local page, err = client:products { productId = 12, pageNo = 1, pageSize = 25 }"},
    {"product_details", GET, "/product/openapi/instance_product/v1/detail", SAFE,
     product_required, "Get Product Details",
     "{activationCode: string, activationStatus: string, comment: string, createTime: integer, "
     "currentPlan?: string, currentPlanExpireDate?: string, ...}",
     "local device, err = client:product_details { productNo = \"3651E0529415\", productId = 12 }"},
    {"product_model", GET, "/product/openapi/instance/v1/product_model", SAFE, product_required,
     "Query Product Model", "{productModel: string}",
     "local model, err = client:product_model { productNo = \"3632E0965333\", productId = 11 }"},
    /* Documented as one Region_Info object; a list, by the page's title. */
    {"regions", GET, "/product/openapi/instance/v1/region_list", SAFE | MODELLED, no_params,
     "Query Region List",
     "[{id: string, name: string, region: [{pbxSubDomain: [string], pbxSubDomainId: string}]}]",
     "local regions, err = client:regions()"},
    /* Enabling twice leaves it enabled: idempotent, so safe to replay. Seed 000. */
    {"enable_auto_renewal", POST, "/product/openapi/instance_subscription/v1/active", SAFE,
     enable_auto_renewal, "Enable Auto-renewal", "boolean",
     "local enabled, err = client:enable_auto_renewal {\n"
     "  productNo = \"3651E0529415\", productId = \"12\", "
     "planOrServiceId = \"3049040650094403584\",\n"
     "}"},
    /* Seed 001. */
    {"auto_renewal_status", GET, "/order/openapi/order/v1/check/existed_auto_renew", SAFE,
     product_required, "Query Auto Renewal Status", "{autoRenew: boolean}",
     "local status, err = client:auto_renewal_status { productNo = \"3651E0529415\", "
     "productId = 12 }"},
    /* Documented as one User_Info object; a list, by the page's title. */
    {"subordinate_users", GET, "/user/openapi/user/v1/client/partner_list", SAFE | MODELLED,
     no_params, "Query Subordinate User List", "[" USER_RECORD "]",
     "local users, err = client:subordinate_users()"},
    {"subordinate_user", GET, "/user/openapi/user/v1/subordinate_user/{partnerId}", SAFE, user_id,
     "Query Information of a Subordinate User", USER_RECORD,
     "local user, err = client:subordinate_user { partnerId = \"customer1@example.com\" }"},
    /* Not replay-safe: a replay after an unknown outcome could report a user that we created. */
    {"create_subordinate_user", POST, "/user/openapi/user/v1/client/save_user", 0, create_user,
     "Create a Subordinate User", "boolean",
     "local created, err = client:create_subordinate_user {\n"
     "  userType = \"Customer\", yeastarId = \"new.customer@example.com\", "
     "company = \"Example Hotel\",\n"
     "  country = \"Germany\", firstName = \"Eva\", sendUserActivationEmail = true,\n"
     "}"},
    {"edit_subordinate_user", POST, "/user/openapi/user/v1/client/edit_user", SAFE, edit_user,
     "Edit a Subordinate User", "boolean",
     "local edited, err = client:edit_subordinate_user {\n"
     "  yeastarId = \"customer1@example.com\", userType = \"Customer\", taxNum = \"DE123456780\",\n"
     "}"},
    {"countries", GET, "/user/openapi/area/v1/page", SAFE | YP_PAGED, countries,
     "Query Country List", PAGE("{code: string, id: integer, name: string}"),
     "local page, err = client:countries { name = \"land\", sort = \"name\" }"},
    /* Documented as one Contact_Info object; a list, by the page's title. */
    {"billing_contacts", GET, "/user/openapi/user/v1/client/billing_contact_list",
     SAFE | MODELLED, no_params, "Query Billing Contact List",
     "[{billingContactId: string, emailAddress: string, firstName: string, lastName: string, "
     "company: string, country: string, stateProvince: string, city: string, street: string, "
     "zipCode: string, phoneNumber: string, taxNum: string, remark: string}]",
     "local contacts, err = client:billing_contacts()"},
    /* Moves money and has no idempotency key: never re-sent once it may have arrived. Seed 002,
     * request and result, with a poNumber to find the order by (find_order). */
    {"create_order", POST, "/order/openapi/order/v1/save", 0, create_order, "Create an Order",
     "{instanceId: string, orderId: string, orderNo: string, orderStatus: string, "
     "productNo: string, transactionNo: string}",
     "local order, err = client:create_order {\n"
     "  operationType = \"renew_plan\", productId = 15, billingId = \"3197218168379846218\",\n"
     "  poNumber = \"PO-2026-0042\",\n"
     "  serviceList = { {\n"
     "    serviceType = \"plan\", serviceId = \"3049036224189325312\", purchaseType = \"renew\",\n"
     "    billingModel = \"recurring\", billingCycle = \"annually\", multiCycle = 1,\n"
     "  } },\n"
     "}"},
    {"orders", GET, "/order/openapi/order/v1/page", SAFE | YP_PAGED, orders, "Query Order List",
     PAGE("{id: string, orderNo: string, orderStatus: string, currencyCode: string, "
          "createTime: integer, customReferenceNo: string, invoiceNo: string, ...}"),
     "local page, err = client:orders { sort = \"-id\", pageSize = 50 }"},
    {"order_details", GET, "/order/openapi/order/v1/get/{id}", SAFE, order_id, "Get Order Details",
     "{basicInformation: {productId: string, productName: string, productNo: string, ...}, "
     "billingInformation: {...}, orderInformation: {...}, orderSummary: {...}, ...}",
     "local details, err = client:order_details { id = \"1780042\" }"},
};

const size_t yp_endpoint_count = sizeof yp_endpoints / sizeof yp_endpoints[0];

/* How one call leads to the next: the tutorials' "query X using the Y interface" notes. */
static const yp_source sources[] = {
    {"productId", NULL, "subscription_products [].productId"},
    {"productNo", NULL, "products results[].productNo"},
    {"pricingPlanId", NULL, "plans_and_services planList[].pricingPlanId"},
    {"pricingServiceId", NULL, "plans_and_services serviceList[].pricingServiceId"},
    {"connectionPlanId", NULL, "plans_and_services planList[].planId"},
    {"offeringId", NULL, "plans_and_services offeringId"},
    {"planOrServiceId", NULL,
     "plans_and_services planList[].planId or plans_and_services serviceList[].serviceId"},
    {"serviceId", NULL,
     "plans_and_services planList[].planId or plans_and_services serviceList[].serviceId"},
    {"pricingId", NULL,
     "plans_and_services planList[].pricingPlanId or "
     "plans_and_services serviceList[].pricingServiceId"},
    {"partnerId", NULL, "subordinate_users [].partnerId"},
    {"partnerView", NULL, "subordinate_users [].partnerId"},
    {"assignId", NULL, "subordinate_users [].partnerId"},
    {"yeastarId", "edit_subordinate_user", "subordinate_users [].partnerId"},
    {"country", NULL, "countries results[].name"},
    {"billingId", NULL, "billing_contacts [].billingContactId"},
    {"regionId", NULL, "regions [].id"},
    {"pbxSubDomainId", NULL, "regions [].region[].pbxSubDomainId"},
    {"id", "order_details", "orders results[].id or create_order orderId"},
};

const yp_endpoint *yp_find_endpoint(const char *name) {
  for (size_t i = 0; i < yp_endpoint_count; i++)
    if (strcmp(yp_endpoints[i].name, name) == 0) return &yp_endpoints[i];
  return NULL;
}

const char *yp_param_source(const char *endpoint, const char *param) {
  for (size_t i = 0; i < sizeof sources / sizeof sources[0]; i++)
    if (strcmp(sources[i].param, param) == 0 &&
        (!sources[i].endpoint || strcmp(sources[i].endpoint, endpoint) == 0))
      return sources[i].from;
  return NULL;
}
