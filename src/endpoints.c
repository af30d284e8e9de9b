/* endpoints.c: every documented Partner Portal endpoint as data (method, path, parameters,
 * their place and JSON type). Types follow ../shared/api; where pages disagree the seeds win. */
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

const yp_endpoint yp_endpoints[] = {
    /* The two token operations are methods too; the client fills their form fields itself.
     * The first entry is YP_TOKEN_ENDPOINT. */
    {"request_access_token", POST, "/auth/openapi/v1/oauth/token", SAFE | YP_TOKEN, no_params},
    {"refresh_access_token", POST, "/auth/openapi/v1/oauth/token", SAFE | YP_TOKEN, no_params},
    {"subscription_products", GET, "/pricing/openapi/purchase/v1/product_list", SAFE, no_params},
    {"plans_and_services", GET, "/pricing/openapi/purchase/v1/purchase_product_info", SAFE,
     product_query},
    {"trial_plan_info", GET, "/pricing/openapi/purchase/v1/trial/plan_info/{pricingPlanId}", SAFE,
     plan_info},
    {"subscription_plan_info", GET,
     "/pricing/openapi/purchase/v1/purchase/plan_info/{pricingPlanId}", SAFE, plan_info},
    {"renewal_plan_info", GET, "/pricing/openapi/purchase/v1/renew/plan_info/{pricingPlanId}", SAFE,
     renewal_plan_info},
    {"trial_service_info", GET,
     "/pricing/openapi/purchase/v1/trial/add_on_info/{pricingServiceId}", SAFE, service_info},
    {"subscription_service_info", GET,
     "/pricing/openapi/purchase/v1/purchase/add_on_info/{pricingServiceId}", SAFE, service_info},
    {"renewal_service_info", GET,
     "/pricing/openapi/purchase/v1/renew/add_on_info/{pricingServiceId}", SAFE,
     renewal_service_info},
    {"subscription_price", GET, "/pricing/openapi/purchase/v1/my_price_info", SAFE, price_info},
    /* A quote moves no money, so replaying it is harmless. */
    {"calculate_subscription_price", POST, "/pricing/openapi/purchase/v1/pricing/calculate", SAFE,
     calculate_price},
    {"products", GET, "/product/openapi/instance_product/v1/client/instance_product_list",
     SAFE | YP_PAGED, paged_products},
    {"product_details", GET, "/product/openapi/instance_product/v1/detail", SAFE,
     product_required},
    {"product_model", GET, "/product/openapi/instance/v1/product_model", SAFE, product_required},
    {"regions", GET, "/product/openapi/instance/v1/region_list", SAFE, no_params},
    /* Enabling twice leaves it enabled: idempotent, so safe to replay. */
    {"enable_auto_renewal", POST, "/product/openapi/instance_subscription/v1/active", SAFE,
     enable_auto_renewal},
    {"auto_renewal_status", GET, "/order/openapi/order/v1/check/existed_auto_renew", SAFE,
     product_required},
    {"subordinate_users", GET, "/user/openapi/user/v1/client/partner_list", SAFE, no_params},
    {"subordinate_user", GET, "/user/openapi/user/v1/subordinate_user/{partnerId}", SAFE, user_id},
    /* Not replay-safe: a replay after an unknown outcome could report a user that we created. */
    {"create_subordinate_user", POST, "/user/openapi/user/v1/client/save_user", 0, create_user},
    {"edit_subordinate_user", POST, "/user/openapi/user/v1/client/edit_user", SAFE, edit_user},
    {"countries", GET, "/user/openapi/area/v1/page", SAFE | YP_PAGED, countries},
    {"billing_contacts", GET, "/user/openapi/user/v1/client/billing_contact_list", SAFE, no_params},
    /* Moves money and has no idempotency key: never re-sent once it may have arrived. */
    {"create_order", POST, "/order/openapi/order/v1/save", 0, create_order},
    {"orders", GET, "/order/openapi/order/v1/page", SAFE | YP_PAGED, orders},
    {"order_details", GET, "/order/openapi/order/v1/get/{id}", SAFE, order_id},
};

const size_t yp_endpoint_count = sizeof yp_endpoints / sizeof yp_endpoints[0];

const yp_endpoint *yp_find_endpoint(const char *name) {
  for (size_t i = 0; i < yp_endpoint_count; i++)
    if (strcmp(yp_endpoints[i].name, name) == 0) return &yp_endpoints[i];
  return NULL;
}
