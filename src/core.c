/* core.c: the call core's decisions, with no socket and no user code: when a call may be sent and
 * with which headers, what a response means, whether and when to retry, and the token rules. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

/* Retry numbers follow Stripe's SDKs (see ../shared/NOTES.md); the defaults live in client.c. */
#define RETRY_AFTER_CAP 60.0
/* Modelled refresh-token lifetime (Authorization Rules page): 15 days. The access token's
 * modelled lifetime and bounds live with the token reader, in classify.c. */
#define REFRESH_TOKEN_LIFETIME (15 * 24 * 3600.0)
#define REFRESH_AHEAD_MAX 180.0 /* refresh this early, or a quarter of the lifetime if shorter */
#define STORED_TIME_MAX 1e11 /* seconds since the epoch: a stored time beyond it is garbage */

double yp_now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double yp_now_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- secrets ---------------------------------------------------------------------------- */

/* Called through a volatile pointer, so the compiler cannot drop the wipe as a dead store before
 * free (C99 has no memset_s). One memset, not a byte loop: every call's token line ends here. */
static void *(*const volatile wipe_bytes)(void *, int, size_t) = memset;

void yp_wipe_free(char **p) {
  if (!*p) return;
  wipe_bytes(*p, 0, strlen(*p));
  free(*p);
  *p = NULL;
}

char *yp_dup_or_raise(lua_State *L, const char *s) {
  char *d = s ? strdup(s) : NULL;
  if (s && !d) luaL_error(L, "yeastar.partner: out of memory");
  return d;
}

/* What is redacted from every server text this client turns into a message or a log line. */
static void client_secrets(const yp_client *c, const char *out[YP_MAX_SECRETS]) {
  out[0] = c->client_secret;
  out[1] = c->access_token;
  out[2] = c->refresh_token;
}

void yp_drop_tokens(yp_client *c) {
  yp_wipe_free(&c->access_token);
  yp_wipe_free(&c->refresh_token);
  yp_wipe_free(&c->token_head);
}

void yp_push_closed_error(lua_State *L, const char *endpoint) {
  yp_error e = {YP_KIND_CLOSED, "client_closed",
                "the client was closed before this call could be sent", 0, NULL, 0, endpoint, NULL};
  yp_push_error(L, &e);
}

int yp_has_logger(const yp_client *c) {
  return c->logger_ref != LUA_NOREF && c->logger_ref != LUA_REFNIL;
}

int yp_has_store(const yp_client *c) {
  return c->store_ref != LUA_NOREF && c->store_ref != LUA_REFNIL;
}

/* ---- sending ---------------------------------------------------------------------------- */

void yp_attempt_end(yp_attempt *a) {
  if (a->auth_line != a->auth_buf) {
    yp_wipe_free(&a->auth_line);
  } else {
    wipe_bytes(a->auth_buf, 0, sizeof a->auth_buf);
    a->auth_line = NULL;
  }
}

static void push_deadline_error(lua_State *L, yp_call *k) {
  yp_error e = {YP_KIND_TIMEOUT, "deadline", "the call's deadline passed before it could finish",
                0, NULL, 1, k->ep->name, NULL};
  yp_push_error(L, &e);
}

/* Calls that must not run twice get a fresh connection: a pooled connection that died before any
 * reply would be silently re-sent by libcurl, and that could place an order twice. */
yp_next yp_core_next(lua_State *L, yp_client *c, yp_call *k, yp_attempt *a, double *pause) {
  double now = yp_now_mono();
  a->auth_line = NULL;
  /* Any callback, the token store's included, may have closed the client. */
  if (c->closed) {
    yp_push_closed_error(L, k->ep->name);
    return YP_NEXT_FAIL;
  }
  if (k->attempt == 0 && k->deadline == 0) k->deadline = now + c->deadline;
  if (now < k->not_before) {
    *pause = k->not_before - now;
    return YP_NEXT_PAUSE;
  }
  if (now >= k->deadline) {
    push_deadline_error(L, k);
    return YP_NEXT_FAIL;
  }
  int n = 0;
  if (!(k->ep->flags & YP_TOKEN)) {
    if (!yp_core_token_valid(c)) return YP_NEXT_TOKEN;
    static const char name[] = "Authorization: ";
    size_t nl = sizeof name - 1, hl = strlen(c->token_head), tl = strlen(c->access_token);
    size_t need = nl + hl + tl + 2;
    char *line = need <= sizeof a->auth_buf ? a->auth_buf : malloc(need);
    if (!line) luaL_error(L, "yeastar.partner: out of memory");
    memcpy(line, name, nl); /* "Authorization: <head> <token>", without a printf per call */
    memcpy(line + nl, c->token_head, hl);
    line[nl + hl] = ' ';
    memcpy(line + nl + hl + 1, c->access_token, tl + 1);
    a->auth_line = line;
    k->auth_gen = c->token_gen;
  }
  a->lines[n++] = c->ua_header;
  a->lines[n++] = "Accept: application/json";
  if (a->auth_line) a->lines[n++] = a->auth_line;
  if (k->content_type) a->lines[n++] = k->content_type;
  else if (k->req.body) a->lines[n++] = "Content-Type: application/json";
  a->lines[n] = NULL;
  double left = k->deadline - now, timeout = left < c->timeout ? left : c->timeout;
  yp_http_request h = {k->ep->method, k->req.url, a->lines, k->req.body, k->req.body_len,
                       (long)(timeout * 1000), !(k->ep->flags & YP_REPLAY_SAFE)};
  a->request = h;
  k->attempt++;
  return YP_NEXT_SEND;
}

/* ---- what came back ------------------------------------------------------------------------ */

static double jitter(yp_client *c) { /* xorshift64*: per client, no global state */
  c->rng ^= c->rng >> 12;
  c->rng ^= c->rng << 25;
  c->rng ^= c->rng >> 27;
  return 0.5 + 0.5 * (double)((c->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* The pause before the next attempt, or -1 when the call ends with the value on top. */
static double next_delay(yp_client *c, yp_call *k, yp_outcome out, const yp_http_response *r) {
  if (out == YP_OUT_REAUTH) {
    if (k->reauthed || (k->ep->flags & YP_TOKEN)) return -1;
    k->reauthed = 1; /* the server refused the call, so replaying it once is safe */
    /* Single flight: only a 401 for the token in use drops it. Calls that were sent with an
     * older one replay with the token another call has already fetched. */
    if (k->auth_gen == c->token_gen) yp_wipe_free(&c->access_token);
    return 0;
  }
  if (out != YP_OUT_RETRY || k->retries >= c->max_retries) return -1;
  double delay = c->retry_base_delay * pow(2, k->retries);
  if (delay > c->retry_max_delay) delay = c->retry_max_delay;
  delay *= jitter(c);
  if (r->retry_after >= 0) delay = r->retry_after < RETRY_AFTER_CAP ? r->retry_after : RETRY_AFTER_CAP;
  if (yp_now_mono() + delay >= k->deadline) return -1; /* the pause alone would overrun the call */
  k->retries++;
  return delay;
}

/* The attempt's log event, with the outcome's value at index `value`. */
static void push_attempt_event(lua_State *L, yp_call *k, const yp_http_response *r, int ok,
                               int value, double delay) {
  lua_createtable(L, 0, 10);
  lua_pushliteral(L, "attempt");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, k->ep->name);
  lua_setfield(L, -2, "endpoint");
  lua_pushstring(L, k->ep->method);
  lua_setfield(L, -2, "method");
  const char *q = strchr(k->req.path, '?'); /* the path only: queries carry customer data */
  lua_pushlstring(L, k->req.path, q ? (size_t)(q - k->req.path) : strlen(k->req.path));
  lua_setfield(L, -2, "path");
  lua_pushinteger(L, k->attempt);
  lua_setfield(L, -2, "attempt");
  if (r->status) {
    lua_pushinteger(L, (lua_Integer)r->status);
    lua_setfield(L, -2, "status");
  }
  lua_pushnumber(L, r->elapsed);
  lua_setfield(L, -2, "elapsed");
  if (ok) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ok");
  } else {
    lua_getfield(L, value, "request_id");
    lua_setfield(L, -2, "request_id");
    lua_pushvalue(L, value);
    lua_setfield(L, -2, "error");
  }
  if (delay >= 0) {
    lua_pushnumber(L, delay);
    lua_setfield(L, -2, "retry_in");
  }
}

yp_fed yp_core_feed(lua_State *L, yp_client *c, yp_call *k, const yp_http_response *r) {
  const char *secrets[YP_MAX_SECRETS];
  client_secrets(c, secrets);
  yp_outcome out = yp_classify(L, k->ep, r, c->max_depth, secrets);
  double delay = out == YP_OUT_DONE ? -1 : next_delay(c, k, out, r);
  int value = lua_gettop(L);
  if (yp_has_logger(c)) push_attempt_event(L, k, r, out == YP_OUT_DONE, value, delay);
  else lua_pushnil(L);
  if (delay < 0) return out == YP_OUT_DONE ? YP_FED_DONE : YP_FED_FAIL;
  lua_remove(L, value); /* a retry: the error is only in the event */
  k->not_before = yp_now_mono() + delay;
  return YP_FED_RETRY;
}

/* ---- tokens ----------------------------------------------------------------------------- */

int yp_core_token_valid(const yp_client *c) {
  double ahead = (c->access_expires - c->access_obtained) / 4;
  if (ahead > REFRESH_AHEAD_MAX) ahead = REFRESH_AHEAD_MAX;
  return c->access_token && yp_now_wall() < c->access_expires - ahead;
}

int yp_core_can_refresh(const yp_client *c) {
  return c->refresh_token && yp_now_wall() < c->refresh_expires;
}

void yp_core_refresh_failed(yp_client *c) { yp_wipe_free(&c->refresh_token); }

void yp_core_token_call(lua_State *L, yp_client *c, int refresh, double deadline, yp_call *k) {
  const yp_endpoint *ep = refresh ? YP_REFRESH_ENDPOINT : YP_TOKEN_ENDPOINT;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (refresh) {
    luaL_addstring(&b, "grant_type=refresh_token&refresh_token=");
    yp_percent_encode(&b, c->refresh_token, strlen(c->refresh_token));
  } else {
    luaL_addstring(&b, "client_id=");
    yp_percent_encode(&b, c->client_id, strlen(c->client_id));
    luaL_addstring(&b, "&client_secret=");
    yp_percent_encode(&b, c->client_secret, strlen(c->client_secret));
    luaL_addstring(&b, "&grant_type=pp_credentials");
  }
  luaL_pushresult(&b);
  lua_pushfstring(L, "%s%s", c->base_url, ep->path);
  yp_call t = {ep, {NULL, NULL, NULL, 0}, "Content-Type: application/x-www-form-urlencoded",
               0, 0, 0, 0, deadline, 0};
  t.req.url = lua_tostring(L, -1);
  t.req.path = t.req.url + strlen(c->base_url);
  t.req.body = lua_tolstring(L, -2, &t.req.body_len);
  *k = t;
}

static void set_tokens(lua_State *L, yp_client *c, const char *token, const char *refresh,
                       const char *head) {
  yp_drop_tokens(c);
  c->access_token = yp_dup_or_raise(L, token);
  c->refresh_token = yp_dup_or_raise(L, refresh);
  c->token_head = yp_dup_or_raise(L, head ? head : "Bearer");
  c->token_gen++;
}

int yp_core_token_accept(lua_State *L, yp_client *c, const yp_endpoint *ep) {
  yp_token_result t;
  if (!yp_read_token(L, -1, &t)) {
    lua_pop(L, 1);
    yp_error e = {YP_KIND_DECODE, "bad_token_response", "the token response has no usable token",
                  200, NULL, 0, ep->name, NULL};
    yp_push_error(L, &e);
    return 0;
  }
  set_tokens(L, c, t.token, t.refresh_token, t.token_head);
  c->access_obtained = yp_now_wall();
  c->access_expires = c->access_obtained + t.lifetime;
  c->refresh_expires = c->access_obtained + REFRESH_TOKEN_LIFETIME;
  lua_pop(L, 1);
  return 1;
}

/* Token_Details without the tokens: they stay inside the client. */
void yp_core_push_token_details(lua_State *L, yp_client *c) {
  double left = c->access_expires - yp_now_wall(); /* bounded: see token_exchange */
  lua_createtable(L, 0, 2);
  lua_pushfstring(L, "%d", left > 0 ? (int)(left + 0.5) : 0);
  lua_setfield(L, -2, "expiresIn");
  lua_pushstring(L, c->token_head);
  lua_setfield(L, -2, "tokenHead");
}

void yp_core_push_token_record(lua_State *L, yp_client *c) {
  lua_createtable(L, 0, 7);
  lua_pushstring(L, c->client_id);
  lua_setfield(L, -2, "clientId");
  lua_pushstring(L, c->access_token);
  lua_setfield(L, -2, "token");
  lua_pushstring(L, c->token_head);
  lua_setfield(L, -2, "tokenHead");
  if (c->refresh_token) {
    lua_pushstring(L, c->refresh_token);
    lua_setfield(L, -2, "refreshToken");
  }
  /* Whole seconds; every value is bounded (see yp_core_token_accept), so the casts are defined. */
  lua_pushinteger(L, (lua_Integer)c->access_obtained);
  lua_setfield(L, -2, "obtainedAt");
  lua_pushinteger(L, (lua_Integer)c->access_expires);
  lua_setfield(L, -2, "expiresAt");
  lua_pushinteger(L, (lua_Integer)c->refresh_expires);
  lua_setfield(L, -2, "refreshExpiresAt");
}

void yp_core_token_load(lua_State *L, yp_client *c, int t) {
  t = yp_absindex(L, t);
  lua_getfield(L, t, "clientId"); /* stays on the stack while id is used */
  const char *id = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  yp_token_result stored; /* the stored table has Token_Details' names */
  if (id && strcmp(id, c->client_id) == 0 && yp_read_token(L, t, &stored)) {
    /* another account's token is useless */
    set_tokens(L, c, stored.token, stored.refresh_token, stored.token_head);
    c->access_obtained = yp_number_field(L, t, "obtainedAt", 0, STORED_TIME_MAX, 0);
    c->access_expires = yp_number_field(L, t, "expiresAt", 0, STORED_TIME_MAX, 0);
    c->refresh_expires = yp_number_field(L, t, "refreshExpiresAt", 0, STORED_TIME_MAX, 0);
  }
  lua_pop(L, 1);
}

void yp_core_store_failure_event(lua_State *L, yp_client *c, const char *op) {
  const char *secrets[YP_MAX_SECRETS];
  size_t n = 0;
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  client_secrets(c, secrets);
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "token_store");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, op);
  lua_setfield(L, -2, "op");
  if (msg) yp_push_safe_text(L, msg, n, YP_MESSAGE_MAX, secrets);
  else lua_pushfstring(L, "%s failed without a message", op);
  lua_setfield(L, -2, "message");
  lua_remove(L, -2);
}
