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

/* A batch: its stack holds the options at BATCH_OPTS and the results list at BATCH_RESULTS. */
#define BATCH_OPTS 2
#define BATCH_RESULTS 3
typedef struct yp_batch {
  yp_call *calls; /* one per item, anchored by the method's stack */
  int *waiting;   /* items paused before a retry */
  int n, concurrency, has_callback;
} yp_batch;
/* Runs every item, at most b->concurrency in flight; pushes the results list. */
int yp_curl_batch(lua_State *L, yp_client *c, yp_batch *b);

/* Hands the value on top (a log event, or nil) to the logger and pops it. */
void yp_emit(lua_State *L, yp_client *c);

#endif
