/* classify.h: what one HTTP exchange means for a call: its result, or an error and whether the
 * call may be retried, replayed after a new token, or must stop (the never-twice rule). */
#ifndef YP_CLASSIFY_H
#define YP_CLASSIFY_H

#include "compat.h"
#include "endpoints.h"
#include "transport.h"

typedef enum { YP_OUT_DONE, YP_OUT_FAIL, YP_OUT_RETRY, YP_OUT_REAUTH } yp_outcome;

/* Classifies r for endpoint ep and pushes exactly one value: the result (YP_OUT_DONE) or an
 * error object. secrets (NULL-terminated, may be NULL) are redacted from every text. Raises only
 * on memory errors. Every byte of r is treated as hostile. */
yp_outcome yp_classify(lua_State *L, const yp_endpoint *ep, const yp_http_response *r,
                       int max_depth, const char *const *secrets);

#endif
