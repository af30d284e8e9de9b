/* classify.h: what the server's answers mean. One exchange: its result, or an error and whether
 * the call may be retried, replayed after a new token, or must stop (the never-twice rule); and
 * the token details inside a successful token response. */
#ifndef YP_CLASSIFY_H
#define YP_CLASSIFY_H

#include "compat.h"
#include "endpoints.h"
#include "transport.h"

typedef enum { YP_OUT_DONE, YP_OUT_FAIL, YP_OUT_RETRY, YP_OUT_REAUTH } yp_outcome;

/* Classifies r for endpoint ep and pushes exactly one value: the result (YP_OUT_DONE) or an
 * error object. secrets (YP_MAX_SECRETS entries, see errors.h) are redacted from every text. Raises only
 * on memory errors. Every byte of r is treated as hostile. */
yp_outcome yp_classify(lua_State *L, const yp_endpoint *ep, const yp_http_response *r,
                       int max_depth, const char *const *secrets);

/* Token_Details, read from the table at idx: strings stay anchored in that table. */
typedef struct yp_token_result {
  const char *token, *refresh_token, *token_head; /* refresh_token and token_head may be NULL */
  double lifetime;                                 /* seconds, always within sane bounds */
} yp_token_result;

/* 1 when idx is a table with a usable token (every field checked), else 0. */
int yp_read_token(lua_State *L, int idx, yp_token_result *out);
/* t[name] when it is token-shaped (printable ASCII, no spaces, at most 8 KiB), else NULL. */
const char *yp_token_field(lua_State *L, int t, const char *name);
/* t[name] as a number (numeric strings too: expiresIn is a String) within [min, max], else def. */
double yp_number_field(lua_State *L, int t, const char *name, double min, double max, double def);

#endif
