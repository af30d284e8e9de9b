/* errors.h: the error objects returned as the second value of a failed call, and the one
 * sanitizer every piece of text passes through before it reaches an error, a log or a message. */
#ifndef YP_ERRORS_H
#define YP_ERRORS_H

#include <stddef.h>
#include "compat.h"

#define YP_ERROR_MT "yeastar.partner.Error"

/* Stable values of `kind`. */
#define YP_KIND_API "api"             /* the portal answered with code ~= "success" */
#define YP_KIND_AUTH "auth"           /* credentials or token refused (HTTP 401) */
#define YP_KIND_HTTP "http"           /* a non-2xx without the envelope, a broken reply, too large */
#define YP_KIND_NETWORK "network"     /* DNS, connect, TLS, connection lost */
#define YP_KIND_TIMEOUT "timeout"
#define YP_KIND_DECODE "decode"       /* the body is not JSON or not the envelope */
#define YP_KIND_AMBIGUOUS "ambiguous" /* a money-moving POST may or may not have been applied */
#define YP_KIND_CLOSED "closed"       /* the client was closed before the call could start */
#define YP_KIND_INVALID "invalid"     /* a bulk item that a single call would have raised for */

/* Bounds on server-controlled text, in bytes, "..." included. */
#define YP_MESSAGE_MAX 300
#define YP_CODE_MAX 64
#define YP_REQUEST_ID_MAX 64
/* Secrets shorter than this are not redacted: a 5-letter "secret" would blank the portal's own
 * words. Real client secrets and tokens are far longer. */
#define YP_REDACT_MIN 8
#define YP_MAX_SECRETS 3

typedef struct yp_error {
  const char *kind, *code, *message;
  long status;            /* HTTP status (or the envelope's, see classify.c), 0 when none */
  const char *request_id; /* the portal's requestId, NULL when none */
  int retryable;          /* retrying the same call later may succeed and cannot do harm */
  const char *endpoint;
  const char *const *secrets; /* YP_MAX_SECRETS entries (NULL: none), or NULL: redacted */
} yp_error;

/* Pushes a new error object. Every text field goes through yp_push_safe_text. */
void yp_push_error(lua_State *L, const yp_error *e);

/* Pushes s[0..len) made safe to print: each secret of the list (YP_MAX_SECRETS entries, each
 * possibly NULL; or no list at all) and also its
 * percent-encoded, form-encoded and JSON-escaped spellings) becomes [REDACTED]; control
 * characters and Unicode line breaks become spaces; bytes that are not UTF-8 become '?'; the
 * result is at most max bytes, cut on a character boundary and ending in "..." when cut. */
void yp_push_safe_text(lua_State *L, const char *s, size_t len, size_t max,
                       const char *const *secrets);

void yp_errors_register(lua_State *L);
/* Pushes new_error(fields), the constructor handed to the embedded workflows. */
void yp_push_error_constructor(lua_State *L);

#endif
