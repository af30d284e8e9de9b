/* errors.h: the error objects returned as the second value of a failed call.
 * Fields: kind, code, message, status, request_id, retryable, endpoint; one-line __tostring. */
#ifndef YP_ERRORS_H
#define YP_ERRORS_H

#include "compat.h"

#define YP_ERROR_MT "yeastar.partner.Error"

/* Stable values of `kind`. */
#define YP_KIND_API "api"             /* the portal answered with code ~= "success" */
#define YP_KIND_AUTH "auth"           /* credentials or token refused (HTTP 401) */
#define YP_KIND_HTTP "http"           /* a non-2xx status without a usable envelope, or too large */
#define YP_KIND_NETWORK "network"     /* DNS, connect, TLS, connection lost */
#define YP_KIND_TIMEOUT "timeout"
#define YP_KIND_DECODE "decode"       /* the body is not JSON or not the envelope */
#define YP_KIND_AMBIGUOUS "ambiguous" /* a money-moving POST may or may not have been applied */

typedef struct yp_error {
  const char *kind, *code, *message;
  long status;            /* HTTP status, 0 when none */
  const char *request_id; /* the portal's requestId, NULL when none */
  int retryable;          /* retrying the same call later may succeed and cannot do harm */
  const char *endpoint;
} yp_error;

/* Pushes a new error object. The message is flattened to one line. */
void yp_push_error(lua_State *L, const yp_error *e);
void yp_errors_register(lua_State *L);
/* Pushes new_error(fields), the constructor handed to the embedded workflows. */
void yp_push_error_constructor(lua_State *L);

#endif
