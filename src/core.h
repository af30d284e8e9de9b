/* core.h: the call core, shared by the client object and both drivers: the client's state and
 * every decision of a call (token, request, classification, retry, pause, deadline, never-twice).
 * It owns no socket and calls no user code: a driver asks what to do next and feeds what happened. */
#ifndef YP_CORE_H
#define YP_CORE_H

#include <stdint.h>

#include "classify.h"
#include "endpoints.h"
#include "errors.h"
#include "request.h"
#include "transport.h"

#define YP_CLIENT_MT "yeastar.partner.Client"

typedef struct yp_client {
  yp_transport *transport; /* the libcurl driver's; NULL once released */
  /* Re-entrancy: `depth` counts what is under way on this client (method calls, including from
   * callbacks, and calls driven from Lua). close() meanwhile only sets `closed`; the release waits
   * until depth is 0, so nothing ever holds a pointer into freed client state. */
  int depth, closed;
  unsigned token_gen; /* bumped whenever the access token changes (see yp_core_feed) */
  char *base_url, *ua_header, *client_id, *client_secret, *ca_file;
  double timeout, connect_timeout, deadline, retry_base_delay, retry_max_delay;
  int max_retries, max_depth, allow_http;
  int driver, pool_size; /* driver: 0 auto, 1 curl, 2 cosocket; pool_size: cosocket keepalive */
  long low_speed_limit, low_speed_time;
  lua_Integer max_response;
  int logger_ref, store_ref;
  /* Token state. Never exposed to Lua except through the caller's own token_store. */
  char *access_token, *refresh_token, *token_head;
  double access_obtained, access_expires, refresh_expires; /* wall clock, seconds */
  int store_loaded;
  uint64_t rng;
} yp_client;

/* One logical call: the request bytes (anchored by whoever owns the call) and its bookkeeping. */
typedef struct yp_call {
  const yp_endpoint *ep;
  yp_request req;
  const char *content_type; /* NULL: JSON when there is a body */
  int attempt, retries, reauthed;
  unsigned auth_gen; /* the token generation this attempt was sent with */
  double deadline, not_before;
} yp_call;

double yp_now_wall(void); /* yp_now_mono, yp_wipe_free: transport.h */
char *yp_dup_or_raise(lua_State *L, const char *s);
void yp_drop_tokens(yp_client *c);
void yp_push_closed_error(lua_State *L, const char *endpoint);
int yp_has_logger(const yp_client *c);
/* client.c: releases a closed client once nothing is under way on it (depth 0). */
void yp_client_settle(lua_State *L, yp_client *c);
/* client.c: the client at idx; check_open also raises "the client is closed". */
yp_client *yp_check_client(lua_State *L, int idx);
yp_client *yp_check_open(lua_State *L, int idx);
int yp_has_store(const yp_client *c);

/* What a call needs next. */
typedef enum {
  YP_NEXT_SEND,  /* send a->request (the attempt is counted) */
  YP_NEXT_TOKEN, /* make the access token valid first (yp_core_token_call), then ask again */
  YP_NEXT_PAUSE, /* wait *pause seconds: a retry's backoff */
  YP_NEXT_FAIL   /* the error is pushed; nothing of this step was sent */
} yp_next;

/* One attempt's request; yp_attempt_end wipes its Authorization line. The line is built in
 * auth_buf when it fits (a usual token does), so that a call costs no malloc for it; an
 * attempt is therefore never copied, only used where it was declared. */
#define YP_AUTH_INLINE 160
typedef struct yp_attempt {
  const char *lines[5];
  char *auth_line; /* auth_buf, or malloc'd */
  yp_http_request request;
  char auth_buf[YP_AUTH_INLINE];
} yp_attempt;
void yp_attempt_end(yp_attempt *a);

yp_next yp_core_next(lua_State *L, yp_client *c, yp_call *k, yp_attempt *a, double *pause);

/* What an attempt's response means for the call. */
typedef enum {
  YP_FED_DONE,  /* the result is pushed */
  YP_FED_FAIL,  /* the error is pushed */
  YP_FED_RETRY  /* nothing pushed; k->not_before says when yp_core_next will send again */
} yp_fed;

/* Classifies r, then pushes the value (DONE/FAIL) and on top of it the attempt's log event, or
 * nil when the client has no logger: the driver hands it to the logger, where callbacks may run. */
yp_fed yp_core_feed(lua_State *L, yp_client *c, yp_call *k, const yp_http_response *r);

/* ---- tokens: the rules live here; the driver runs the exchange like any call ---------------- */

int yp_core_token_valid(const yp_client *c);   /* the access token may be sent now */
int yp_core_can_refresh(const yp_client *c);   /* a refresh token that has not expired */
/* Makes k the login (refresh = 0) or refresh exchange; pushes the url and body that anchor it. */
void yp_core_token_call(lua_State *L, yp_client *c, int refresh, double deadline, yp_call *k);
/* With the exchange's result on top: keeps the tokens and returns 1 (result popped), or replaces
 * the result with an error and returns 0. */
int yp_core_token_accept(lua_State *L, yp_client *c, const yp_endpoint *ep);
/* A failed refresh falls back to the client credentials. */
void yp_core_refresh_failed(yp_client *c);

/* Token_Details without the tokens (they stay inside the client): {expiresIn, tokenHead}. */
void yp_core_push_token_details(lua_State *L, yp_client *c);

/* The token store's records: what save() gets, and what a load() result means. */
void yp_core_push_token_record(lua_State *L, yp_client *c);
void yp_core_token_load(lua_State *L, yp_client *c, int idx);
/* {type = "token_store", op, message}: message (on top, replaced) is the store's own, sanitized. */
void yp_core_store_failure_event(lua_State *L, yp_client *c, const char *op);

#endif
