/* driver_curl.h: the libcurl driver: runs the call core's steps with blocking libcurl transfers
 * (one call, or a curl_multi batch), for plain Lua, cron jobs and the command line. */
#ifndef YP_DRIVER_CURL_H
#define YP_DRIVER_CURL_H

#include "core.h"

/* Runs k to its end on a transport slot of its own: pushes the result (returns 1) or an error
 * (returns 0). Callbacks (logger, token store) run from here, inside the client's guard. */
int yp_curl_run(lua_State *L, yp_client *c, yp_call *k);
/* Logs in (refresh = 0) or refreshes, then saves to the token store: 1, or 0 with the error pushed. */
int yp_curl_token_exchange(lua_State *L, yp_client *c, int refresh, double deadline);

/* A batch, streamed: items are read and built in list order as lanes free up, so its memory is
 * sized by its concurrency, whatever the list's length. The body's stack holds the list, on_result
 * (a function, or nil) and the base URL the build uses; the driver's own values go above them. */
#define BATCH_LIST 2
#define BATCH_ON_RESULT 3
#define BATCH_BASE_URL 4
typedef struct yp_batch {
  const yp_endpoint *ep;
  int n, concurrency, keep_results;
  /* Builds item i (1-based) into *k: 1 with the url and body that own its strings pushed (the url
   * is nil when it fits in scratch, cap bytes that outlive the call), or 0 with the item's error
   * (kind invalid) pushed. Raises when the build closed the client. */
  int (*build)(lua_State *L, yp_client *c, const struct yp_batch *b, int i, yp_call *k,
               char *scratch, size_t cap);
} yp_batch;
/* Runs every item, at most b->concurrency under way (in flight, or paused before a retry); pushes
 * the results list in list order, or {total, failed} when b->keep_results is 0. */
int yp_curl_batch(lua_State *L, yp_client *c, yp_batch *b);

/* Hands the value on top (a log event, or nil) to the logger and pops it. */
void yp_emit(lua_State *L, yp_client *c);

#endif
