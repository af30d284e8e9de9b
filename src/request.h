/* request.h: turning one endpoint call's Lua parameter table into the exact bytes to send.
 * Every check happens here, before any I/O; a caller's mistake raises a Lua error. */
#ifndef YP_REQUEST_H
#define YP_REQUEST_H

#include "compat.h"
#include "endpoints.h"

typedef struct yp_request {
  const char *url;  /* base URL + path + query, percent-encoded */
  const char *path; /* points into url: the path and query, for logs */
  const char *body; /* NULL for GET */
  size_t body_len;
} yp_request;

/* Validates the table at params_idx (or none) against ep and pushes two values, the URL and the
 * body (nil for GET), which own the strings `out` points to. Raises naming ep->name and the field. */
void yp_build_request(lua_State *L, const char *base_url, const yp_endpoint *ep, int params_idx,
                      yp_request *out);
/* The same, except that a URL that fits in scratch (cap bytes) is written there and nil pushed
 * in its place: a single call's URL then costs no allocation and no garbage. scratch must outlive
 * every use of out->url and out->path. */
void yp_build_request_in(lua_State *L, const char *base_url, const yp_endpoint *ep,
                         int params_idx, yp_request *out, char *scratch, size_t cap);

/* Appends s percent-encoded (RFC 3986 unreserved characters kept). */
void yp_percent_encode(luaL_Buffer *b, const char *s, size_t n);

#endif
