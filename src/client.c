/* client.c: the client object and the one call path every endpoint goes through: token,
 * send, classify the outcome, retry only when that cannot do harm, log, return result or error. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <time.h>

#include "classify.h"
#include "client.h"
#include "endpoints.h"
#include "errors.h"
#include "json.h"
#include "request.h"
#include "transport.h"

/* Defaults, in one place. Retry numbers follow Stripe's SDKs (see ../shared/NOTES.md). */
#define DEFAULT_BASE_URL "https://openapi.partner.yeastar.com"
#define DEFAULT_USER_AGENT "OpenAPI" /* what every example in Yeastar's guide sends */
#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_DEADLINE 120.0 /* one call, all attempts and pauses included */
#define DEFAULT_MAX_RETRIES 2
#define DEFAULT_RETRY_BASE_DELAY 0.5
#define DEFAULT_RETRY_MAX_DELAY 5.0
#define RETRY_AFTER_CAP 60.0
#define DEFAULT_LOW_SPEED_LIMIT 10 /* bytes per second... */
#define DEFAULT_LOW_SPEED_TIME 20  /* ...for this long, else the exchange times out */
#define DEFAULT_MAX_RESPONSE (8 * 1024 * 1024)
#define DEFAULT_MAX_DEPTH 64
/* Modelled refresh-token lifetime (Authorization Rules page): 15 days. The access token's
 * modelled lifetime and bounds live with the token reader, in classify.c. */
#define REFRESH_TOKEN_LIFETIME (15 * 24 * 3600.0)
#define REFRESH_AHEAD_MAX 180.0 /* refresh this early, or a quarter of the lifetime if shorter */
#define STORED_TIME_MAX 1e11 /* seconds since the epoch: a stored time beyond it is garbage */

typedef struct yp_client {
  yp_transport *transport; /* NULL once released */
  /* Re-entrancy: `depth` counts the method calls under way on this client (a callback may call
   * another). close() during one only sets `closed`; the release waits until depth is 0, so no
   * C frame ever holds a pointer into freed client state. */
  int depth, closed;
  unsigned token_gen; /* bumped whenever the access token changes (see next_delay) */
  char *base_url, *ua_header, *client_id, *client_secret, *ca_file;
  double timeout, connect_timeout, deadline, retry_base_delay, retry_max_delay;
  int max_retries, max_depth, allow_http;
  long low_speed_limit, low_speed_time;
  lua_Integer max_response;
  int logger_ref, store_ref;
  /* Token state. Never exposed to Lua except through the caller's own token_store. */
  char *access_token, *refresh_token, *token_head;
  double access_obtained, access_expires, refresh_expires; /* wall clock, seconds */
  int store_loaded;
  uint64_t rng;
} yp_client;

/* One logical call: the request bytes (anchored on the Lua stack) and its retry bookkeeping. */
typedef struct call {
  const yp_endpoint *ep;
  yp_request req;
  const char *content_type;
  int attempt, retries, reauthed;
  unsigned auth_gen; /* the token generation this attempt was sent with */
  double deadline, not_before;
} call;


static double now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- secrets ---------------------------------------------------------------------------- */

static void wipe_free(char **p) {
  if (!*p) return;
  volatile char *v = *p;
  while (*v) *v++ = 0;
  free(*p);
  *p = NULL;
}

static char *dup_or_raise(lua_State *L, const char *s) {
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

static void drop_tokens(yp_client *c) {
  wipe_free(&c->access_token);
  wipe_free(&c->refresh_token);
  wipe_free(&c->token_head);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void client_release(lua_State *L, yp_client *c) {
  yp_transport_free(c->transport);
  c->transport = NULL;
  drop_tokens(c);
  wipe_free(&c->client_secret);
  free(c->client_id);
  free(c->base_url);
  free(c->ua_header);
  free(c->ca_file);
  c->client_id = c->base_url = c->ua_header = c->ca_file = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, c->logger_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->store_ref);
  c->logger_ref = c->store_ref = LUA_NOREF;
}

static yp_client *check_client(lua_State *L, int idx) {
  return (yp_client *)luaL_checkudata(L, idx, YP_CLIENT_MT);
}

static yp_client *check_open(lua_State *L, int idx) {
  yp_client *c = check_client(L, idx);
  if (c->closed) luaL_error(L, "yeastar.partner: the client is closed");
  return c;
}

/* The I/O part of a method: runs with the client marked busy. Its stack starts with the job
 * (index 1) and the values the method passed along (2, 3, ...). */
typedef int (*io_body)(lua_State *L, struct yp_client *c, void *state);
typedef struct io_job {
  io_body body;
  struct yp_client *client;
  void *state;
} io_job;

static int io_trampoline(lua_State *L) {
  io_job *job = (io_job *)lua_touserdata(L, 1);
  return job->body(L, job->client, job->state);
}

/* Runs body under lua_pcall with the client marked busy, so that the mark, the transport slots
 * the call reserved and a close made meanwhile are settled however the body ends (a callback's
 * error included); then returns its results or re-raises its error unchanged. The nargs values
 * on top become the body's arguments 2..nargs+1. Argument checks belong before this: Lua names
 * the method in their messages only outside the pcall. */
static int guarded(lua_State *L, yp_client *c, io_body body, void *state, int nargs) {
  io_job job = {body, c, state};
  int mark = yp_transport_mark(c->transport), base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, io_trampoline);
  lua_pushlightuserdata(L, &job);
  lua_insert(L, base + 1);
  lua_insert(L, base + 1);
  c->depth++;
  int status = lua_pcall(L, nargs + 1, LUA_MULTRET, 0);
  c->depth--;
  yp_transport_release_to(c->transport, mark);
  if (c->closed && c->depth == 0) client_release(L, c);
  if (status != YP_LUA_OK) return lua_error(L);
  return lua_gettop(L) - base;
}

/* The client's base URL as a string on the stack: request building may run the caller's
 * metamethods, which may close the client and free its copy. */
static const char *push_base_url(lua_State *L, yp_client *c) {
  lua_pushstring(L, c->base_url);
  return lua_tostring(L, -1);
}

static void push_closed_error(lua_State *L, const char *endpoint) {
  yp_error e = {YP_KIND_CLOSED, "client_closed",
                "the client was closed before this call could be sent", 0, NULL, 0, endpoint, NULL};
  yp_push_error(L, &e);
}

/* close(), __close and __gc. Inside a call on this client (from any callback) it only marks the
 * client closed: the call under way ends its remaining work with a `closed` error and the
 * release happens when it returns. */
static int client_close(lua_State *L) {
  yp_client *c = check_client(L, 1);
  c->closed = 1;
  if (c->depth == 0) client_release(L, c);
  lua_pushboolean(L, 1);
  return 1;
}

static int client_is_closed(lua_State *L) {
  lua_pushboolean(L, check_client(L, 1)->closed);
  return 1;
}

static int client_gc(lua_State *L) {
  client_close(L);
  return 0;
}

static int client_tostring(lua_State *L) {
  yp_client *c = check_client(L, 1);
  if (!c->closed) lua_pushfstring(L, YP_CLIENT_MT " (%s)", c->base_url);
  else lua_pushliteral(L, YP_CLIENT_MT " (closed)");
  return 1;
}

/* ---- options ---------------------------------------------------------------------------- */

static const struct option {
  const char *name;
  int type;
} options[] = {
    {"client_id", LUA_TSTRING},        {"client_secret", LUA_TSTRING},
    {"base_url", LUA_TSTRING},         {"ca_file", LUA_TSTRING},
    {"user_agent", LUA_TSTRING},       {"allow_http", LUA_TBOOLEAN},
    {"timeout", LUA_TNUMBER},          {"connect_timeout", LUA_TNUMBER},
    {"deadline", LUA_TNUMBER},         {"max_retries", LUA_TNUMBER},
    {"retry_base_delay", LUA_TNUMBER}, {"retry_max_delay", LUA_TNUMBER},
    {"low_speed_limit", LUA_TNUMBER},  {"low_speed_time", LUA_TNUMBER},
    {"max_response_size", LUA_TNUMBER}, {"max_depth", LUA_TNUMBER},
    {"logger", LUA_TFUNCTION},         {"token_store", LUA_TTABLE},
    {NULL, 0}};

static void check_option_names(lua_State *L) {
  for (lua_pushnil(L); lua_next(L, 1); lua_pop(L, 1)) {
    const struct option *o = options;
    /* Type first: lua_tostring would turn a number key into a string in place, under lua_next. */
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "new: option names must be strings (got %s)", luaL_typename(L, -2));
    while (o->name && strcmp(o->name, lua_tostring(L, -2)) != 0) o++;
    if (!o->name) luaL_error(L, "new: unknown option '%s'", lua_tostring(L, -2));
    if (lua_type(L, -1) != o->type)
      luaL_error(L, "new: option '%s' must be a %s (got %s)", o->name, lua_typename(L, o->type),
                 luaL_typename(L, -1));
  }
}

static const char *opt_string(lua_State *L, const char *name, const char *def, int required) {
  size_t len = 0;
  lua_getfield(L, 1, name);
  const char *s = lua_tolstring(L, -1, &len);
  lua_pop(L, 1); /* still anchored in the options table */
  if (!s && required) luaL_error(L, "new: option '%s' is required", name);
  if (s && !*s && required) luaL_error(L, "new: option '%s' must not be empty", name);
  if (s && strlen(s) != len) luaL_error(L, "new: option '%s' must not contain NUL", name);
  if (s && strpbrk(s, "\r\n")) luaL_error(L, "new: option '%s' must not contain CR or LF", name);
  return s ? s : def;
}

static double opt_number(lua_State *L, const char *name, double def, double min, double max) {
  lua_getfield(L, 1, name);
  double v = lua_isnil(L, -1) ? def : (double)lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= min && v <= max))
    luaL_error(L, "new: option '%s' must be between %f and %f", name, min, max);
  return v;
}

static int opt_ref(lua_State *L, const char *name) {
  lua_getfield(L, 1, name);
  return luaL_ref(L, LUA_REGISTRYINDEX); /* LUA_REFNIL for nil: unref of it is harmless */
}

/* 1 when the URL's host is the loopback interface: 127.0.0.0/8, ::1 or localhost. */
static int loopback_host(const char *host, size_t n) {
  if (n == 9 && strncasecmp(host, "localhost", 9) == 0) return 1;
  if (n == 5 && memcmp(host, "[::1]", 5) == 0) return 1;
  if (n < 9 || n > 15 || memcmp(host, "127.", 4) != 0) return 0;
  int dots = 0;
  for (size_t i = 0; i < n; i++) {
    if (host[i] == '.') dots++;
    else if (host[i] < '0' || host[i] > '9') return 0;
  }
  return dots == 3;
}

static void check_base_url(lua_State *L, const char *url, int allow_http) {
  int https = strncmp(url, "https://", 8) == 0;
  if (!https && strncmp(url, "http://", 7) != 0)
    luaL_error(L, "new: option 'base_url' must start with https://");
  if (strpbrk(url, " ?#\t")) luaL_error(L, "new: option 'base_url' must be a bare base URL");
  const char *host = url + (https ? 8 : 7);
  size_t n = strcspn(host, "/");
  if (memchr(host, '@', n))
    luaL_error(L, "new: option 'base_url' must not contain user:password@ (the module "
                  "authenticates with client_id and client_secret)");
  if (!https) {
    size_t hn = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":/");
    if (!allow_http)
      luaL_error(L, "new: option 'base_url' is plain http://; TLS is required unless "
                    "allow_http = true (loopback tests only)");
    if (!loopback_host(host, hn > n ? n : hn))
      luaL_error(L, "new: option 'allow_http' permits only 127.0.0.0/8, [::1] and localhost, "
                    "never a remote host");
  }
}

static void check_ca_file(lua_State *L, const char *path) {
  FILE *f = path ? fopen(path, "r") : NULL;
  if (path && !f) luaL_error(L, "new: option 'ca_file' cannot be read: %s", strerror(errno));
  if (f) fclose(f);
}

int yp_client_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  check_option_names(L);
  /* Create closed, then acquire: __gc is in place before anything can leak. */
  yp_client *c = (yp_client *)yp_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->logger_ref = c->store_ref = LUA_NOREF;
  yp_setmetatable(L, YP_CLIENT_MT);

  const char *base_url = opt_string(L, "base_url", DEFAULT_BASE_URL, 0);
  lua_getfield(L, 1, "allow_http");
  c->allow_http = lua_toboolean(L, -1);
  lua_pop(L, 1);
  check_base_url(L, base_url, c->allow_http);
  c->client_id = dup_or_raise(L, opt_string(L, "client_id", NULL, 1));
  c->client_secret = dup_or_raise(L, opt_string(L, "client_secret", NULL, 1));
  c->ca_file = dup_or_raise(L, opt_string(L, "ca_file", NULL, 0));
  check_ca_file(L, c->ca_file);
  c->base_url = dup_or_raise(L, base_url);
  size_t n = strlen(c->base_url);
  while (n > 0 && c->base_url[n - 1] == '/') c->base_url[--n] = '\0';
  lua_pushfstring(L, "User-Agent: %s", opt_string(L, "user_agent", DEFAULT_USER_AGENT, 0));
  c->ua_header = dup_or_raise(L, lua_tostring(L, -1));
  lua_pop(L, 1);

  c->timeout = opt_number(L, "timeout", DEFAULT_TIMEOUT, 0.001, 3600);
  c->connect_timeout = opt_number(L, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, 0.001, 600);
  c->deadline = opt_number(L, "deadline", DEFAULT_DEADLINE, 0.001, 86400);
  c->max_retries = (int)opt_number(L, "max_retries", DEFAULT_MAX_RETRIES, 0, 10);
  c->retry_base_delay = opt_number(L, "retry_base_delay", DEFAULT_RETRY_BASE_DELAY, 0, 60);
  c->retry_max_delay = opt_number(L, "retry_max_delay", DEFAULT_RETRY_MAX_DELAY, 0, 600);
  c->low_speed_limit = (long)opt_number(L, "low_speed_limit", DEFAULT_LOW_SPEED_LIMIT, 0, 1e9);
  c->low_speed_time = (long)opt_number(L, "low_speed_time", DEFAULT_LOW_SPEED_TIME, 1, 3600);
  c->max_response = (lua_Integer)opt_number(L, "max_response_size", DEFAULT_MAX_RESPONSE, 1024, 1e10);
  c->max_depth = (int)opt_number(L, "max_depth", DEFAULT_MAX_DEPTH, 1, 10000);

  lua_getfield(L, 1, "token_store");
  if (lua_istable(L, -1)) {
    const char *fns[] = {"load", "save"};
    for (int i = 0; i < 2; i++) {
      lua_getfield(L, -1, fns[i]);
      if (!lua_isfunction(L, -1))
        luaL_error(L, "new: option 'token_store' needs a function '%s'", fns[i]);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  c->logger_ref = opt_ref(L, "logger");
  c->store_ref = opt_ref(L, "token_store");
  c->rng = (uint64_t)(uintptr_t)c ^ (uint64_t)(now_wall() * 1e6) ^ 0x9E3779B97F4A7C15ull;

  yp_transport_config tc = {c->ca_file, c->allow_http, (long)(c->connect_timeout * 1000),
                            c->low_speed_limit, c->low_speed_time, (size_t)c->max_response};
  char err[128];
  if (!(c->transport = yp_transport_new(&tc, err, sizeof err))) luaL_error(L, "new: %s", err);
  return 1;
}

/* ---- logging ---------------------------------------------------------------------------- */

static int has_logger(const yp_client *c) {
  return c->logger_ref != LUA_NOREF && c->logger_ref != LUA_REFNIL;
}

/* Calls the logger with the event table on top (popped). A broken logger must never break a
 * call that moves money, so its errors are dropped. */
static void emit(lua_State *L, yp_client *c) {
  if (!has_logger(c)) {
    lua_pop(L, 1);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->logger_ref);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != YP_LUA_OK) lua_pop(L, 1);
}

static void log_attempt(lua_State *L, yp_client *c, call *k, const yp_http_response *r,
                        yp_outcome out, double delay) {
  if (!has_logger(c)) return;
  int value = lua_gettop(L);
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
  if (out == YP_OUT_DONE) {
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
  emit(L, c);
}

/* A token store that failed: {type = "token_store", op = "load"|"save", message}. The message
 * (on top, popped) is the store's own, sanitized like any outside text. */
static void log_store_failure(lua_State *L, yp_client *c, const char *op) {
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
  emit(L, c);
}

/* ---- token store ------------------------------------------------------------------------ */

/* Calls store[op] with nargs arguments below it on the stack; leaves one result. Returns 1 when
 * the store answered (its result on top), else logs why and returns 0 with nothing left. A
 * store that fails costs a login, never the call. */
static int store_call(lua_State *L, yp_client *c, const char *op, int nargs) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->store_ref);
  lua_getfield(L, -1, op);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  if (lua_pcall(L, nargs, 2, 0) != YP_LUA_OK) {
    log_store_failure(L, c, op);
    return 0;
  }
  if (lua_isnil(L, -2) && !lua_isnil(L, -1)) { /* the nil, message convention */
    lua_remove(L, -2);
    log_store_failure(L, c, op);
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

static int has_store(const yp_client *c) {
  return c->store_ref != LUA_NOREF && c->store_ref != LUA_REFNIL;
}

static void store_call_save(lua_State *L, yp_client *c) {
  if (!has_store(c)) return;
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
  /* Whole seconds; every value is bounded (see token_exchange), so the casts are defined. */
  lua_pushinteger(L, (lua_Integer)c->access_obtained);
  lua_setfield(L, -2, "obtainedAt");
  lua_pushinteger(L, (lua_Integer)c->access_expires);
  lua_setfield(L, -2, "expiresAt");
  lua_pushinteger(L, (lua_Integer)c->refresh_expires);
  lua_setfield(L, -2, "refreshExpiresAt");
  if (store_call(L, c, "save", 1)) lua_pop(L, 1);
}

static void set_tokens(lua_State *L, yp_client *c, const char *token, const char *refresh,
                       const char *head) {
  drop_tokens(c);
  c->access_token = dup_or_raise(L, token);
  c->refresh_token = dup_or_raise(L, refresh);
  c->token_head = dup_or_raise(L, head ? head : "Bearer");
  c->token_gen++;
}

static void store_call_load(lua_State *L, yp_client *c) {
  c->store_loaded = 1;
  if (!has_store(c) || !store_call(L, c, "load", 0)) return;
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
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
    lua_pop(L, 1);
    return;
  } else if (!lua_isnil(L, -1)) {
    lua_pushfstring(L, "load returned a %s, not a table", luaL_typename(L, -1));
    lua_remove(L, -2);
    log_store_failure(L, c, "load");
    return;
  }
  lua_pop(L, 1);
}

/* ---- one exchange, classified ----------------------------------------------------------- */

static yp_outcome evaluate(lua_State *L, yp_client *c, call *k, const yp_http_response *r) {
  const char *secrets[YP_MAX_SECRETS];
  client_secrets(c, secrets);
  return yp_classify(L, k->ep, r, c->max_depth, secrets);
}

/* ---- retry decisions -------------------------------------------------------------------- */

static double jitter(yp_client *c) { /* xorshift64*: per client, no global state */
  c->rng ^= c->rng >> 12;
  c->rng ^= c->rng << 25;
  c->rng ^= c->rng >> 27;
  return 0.5 + 0.5 * (double)((c->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* Returns the pause before the next attempt, or -1 when the call ends with the value on top. */
static double next_delay(yp_client *c, call *k, yp_outcome out, const yp_http_response *r) {
  if (out == YP_OUT_REAUTH) {
    if (k->reauthed || (k->ep->flags & YP_TOKEN)) return -1;
    k->reauthed = 1; /* the server refused the call, so replaying it once is safe */
    /* Single flight: only a 401 for the token in use drops it. Calls that were sent with an
     * older one replay with the token another call has already fetched. */
    if (k->auth_gen == c->token_gen) wipe_free(&c->access_token);
    return 0;
  }
  if (out != YP_OUT_RETRY || k->retries >= c->max_retries) return -1;
  double delay = c->retry_base_delay * pow(2, k->retries);
  if (delay > c->retry_max_delay) delay = c->retry_max_delay;
  delay *= jitter(c);
  if (r->retry_after >= 0) delay = r->retry_after < RETRY_AFTER_CAP ? r->retry_after : RETRY_AFTER_CAP;
  if (now_mono() + delay >= k->deadline) return -1; /* the pause alone would overrun the call */
  k->retries++;
  return delay;
}

/* ---- sending ---------------------------------------------------------------------------- */

static int ensure_token(lua_State *L, yp_client *c, double deadline);

/* Fills the header lines of k's next attempt; auth_line is malloc'd (or NULL) for the caller. */
static int make_headers(lua_State *L, yp_client *c, call *k, const char *lines[5],
                        char **auth_line) {
  int n = 0;
  *auth_line = NULL;
  if (!(k->ep->flags & YP_TOKEN)) {
    if (!ensure_token(L, c, k->deadline)) return 0;
    size_t len = strlen(c->token_head) + strlen(c->access_token) + 17;
    if (!(*auth_line = malloc(len))) luaL_error(L, "yeastar.partner: out of memory");
    snprintf(*auth_line, len, "Authorization: %s %s", c->token_head, c->access_token);
    k->auth_gen = c->token_gen;
  }
  lines[n++] = c->ua_header;
  lines[n++] = "Accept: application/json";
  if (*auth_line) lines[n++] = *auth_line;
  if (k->content_type) lines[n++] = k->content_type;
  lines[n] = NULL;
  return 1;
}

static void push_deadline_error(lua_State *L, call *k) {
  yp_error e = {YP_KIND_TIMEOUT, "deadline", "the call's deadline passed before it could finish",
                0, NULL, 1, k->ep->name, NULL};
  yp_push_error(L, &e);
}

/* Everything an attempt needs before its bytes go out: an open client (any callback, the token
 * store's included, may have closed it), a token, time left. Pushes the error and returns 0 when
 * the attempt cannot start; nothing has been sent then. */
static int start_attempt(lua_State *L, yp_client *c, call *k, const char *lines[5],
                         char **auth_line) {
  *auth_line = NULL;
  if (!c->closed && !make_headers(L, c, k, lines, auth_line)) return 0;
  if (c->closed) {
    wipe_free(auth_line);
    push_closed_error(L, k->ep->name);
    return 0;
  }
  if (now_mono() >= k->deadline) {
    wipe_free(auth_line);
    push_deadline_error(L, k);
    return 0;
  }
  return 1;
}

/* Calls that must not run twice get a fresh connection: libcurl silently re-sends a request
 * whose reused connection died before any reply, and that could place an order twice. */
static yp_http_request http_request_for(yp_client *c, call *k, const char *const *lines) {
  double left = k->deadline - now_mono();
  double timeout = left < c->timeout ? left : c->timeout;
  yp_http_request h = {k->ep->method, k->req.url, lines, k->req.body, k->req.body_len,
                       (long)(timeout * 1000), !(k->ep->flags & YP_REPLAY_SAFE)};
  return h;
}

/* Runs k to its end, sequentially, on a transport slot of its own. Pushes the result (returns 1)
 * or an error (returns 0). */
static int run_call(lua_State *L, yp_client *c, call *k) {
  int mark = yp_transport_mark(c->transport), slot = yp_transport_reserve(c->transport, 1);
  if (slot < 0) luaL_error(L, "%s: out of memory", k->ep->name);
  for (;;) {
    const char *lines[5];
    char *auth_line;
    if (!start_attempt(L, c, k, lines, &auth_line)) break;
    yp_http_request h = http_request_for(c, k, lines);
    k->attempt++;
    const yp_http_response *r = yp_transport_perform(c->transport, slot, &h);
    wipe_free(&auth_line);
    yp_outcome out = evaluate(L, c, k, r);
    double delay = out == YP_OUT_DONE ? -1 : next_delay(c, k, out, r);
    log_attempt(L, c, k, r, out, delay);
    yp_transport_recycle(c->transport, slot);
    if (delay < 0) {
      yp_transport_release_to(c->transport, mark);
      return out == YP_OUT_DONE;
    }
    lua_pop(L, 1);
    yp_transport_sleep(c->transport, delay);
  }
  yp_transport_release_to(c->transport, mark);
  return 0;
}

/* ---- tokens ----------------------------------------------------------------------------- */

/* Logs in (refresh = 0) or refreshes; on success stores the new tokens and returns 1, else
 * pushes the error and returns 0. */
static int token_exchange(lua_State *L, yp_client *c, int refresh, double deadline) {
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
  call k = {ep, {NULL, NULL, NULL, 0}, "Content-Type: application/x-www-form-urlencoded",
            0, 0, 0, 0, deadline, 0};
  k.req.url = lua_tostring(L, -1);
  k.req.path = k.req.url + strlen(c->base_url);
  k.req.body = lua_tolstring(L, -2, &k.req.body_len);
  int ok = run_call(L, c, &k);
  lua_replace(L, -3);
  lua_pop(L, 1);
  if (!ok) return 0;

  yp_token_result t;
  if (!yp_read_token(L, -1, &t)) {
    lua_pop(L, 1);
    yp_error e = {YP_KIND_DECODE, "bad_token_response", "the token response has no usable token",
                  200, NULL, 0, ep->name, NULL};
    yp_push_error(L, &e);
    return 0;
  }
  set_tokens(L, c, t.token, t.refresh_token, t.token_head);
  c->access_obtained = now_wall();
  c->access_expires = c->access_obtained + t.lifetime;
  c->refresh_expires = c->access_obtained + REFRESH_TOKEN_LIFETIME;
  lua_pop(L, 1);
  store_call_save(L, c);
  return 1;
}

static int ensure_token(lua_State *L, yp_client *c, double deadline) {
  /* A store that closes the client needs no check here: the exchange below then fails unsent
   * with the closed error (start_attempt), and a valid token is still allocated until release. */
  if (!c->store_loaded) store_call_load(L, c);
  double now = now_wall(), ahead = (c->access_expires - c->access_obtained) / 4;
  if (ahead > REFRESH_AHEAD_MAX) ahead = REFRESH_AHEAD_MAX;
  if (c->access_token && now < c->access_expires - ahead) return 1;
  if (c->refresh_token && now < c->refresh_expires) {
    if (token_exchange(L, c, 1, deadline)) return 1;
    lua_pop(L, 1); /* a failed refresh falls back to the client credentials */
    wipe_free(&c->refresh_token);
  }
  return token_exchange(L, c, 0, deadline);
}

/* Token_Details without the tokens: they stay inside the client. */
static int push_token_details(lua_State *L, yp_client *c) {
  double left = c->access_expires - now_wall(); /* bounded: see token_exchange */
  lua_createtable(L, 0, 2);
  lua_pushfstring(L, "%d", left > 0 ? (int)(left + 0.5) : 0);
  lua_setfield(L, -2, "expiresIn");
  lua_pushstring(L, c->token_head);
  lua_setfield(L, -2, "tokenHead");
  return 1;
}

static int fail(lua_State *L) {
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* ---- methods ---------------------------------------------------------------------------- */

static int token_body(lua_State *L, yp_client *c, void *state) {
  const yp_endpoint *ep = (const yp_endpoint *)state;
  double deadline = now_mono() + c->deadline;
  int refresh = ep == YP_REFRESH_ENDPOINT;
  if (refresh && !c->refresh_token) {
    yp_error e = {YP_KIND_AUTH, "no_refresh_token", "there is no refresh token yet; log in first",
                  0, NULL, 0, ep->name, NULL};
    yp_push_error(L, &e);
    return fail(L);
  }
  if (!token_exchange(L, c, refresh, deadline)) return fail(L);
  if (c->closed) {
    push_closed_error(L, ep->name);
    return fail(L);
  }
  return push_token_details(L, c);
}

static int call_body(lua_State *L, yp_client *c, void *state) {
  return run_call(L, c, (call *)state) ? 1 : fail(L);
}

/* Every endpoint method: upvalue 1 is its descriptor. */
static int endpoint_method(lua_State *L) {
  yp_client *c = check_open(L, 1);
  const yp_endpoint *ep = (const yp_endpoint *)lua_touserdata(L, lua_upvalueindex(1));
  if (ep->flags & YP_TOKEN) {
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_istable(L, 2)) {
      lua_pushnil(L);
      if (lua_next(L, 2)) luaL_error(L, "%s: takes no parameters", ep->name);
    }
    return guarded(L, c, token_body, (void *)(uintptr_t)ep, 0);
  }
  call k = {ep, {NULL, NULL, NULL, 0}, NULL, 0, 0, 0, 0, 0, 0};
  lua_settop(L, 2);
  yp_build_request(L, push_base_url(L, c), ep, 2, &k.req); /* may run the caller's metamethods */
  check_open(L, 1);
  if (k.req.body) k.content_type = "Content-Type: application/json";
  k.deadline = now_mono() + c->deadline;
  return guarded(L, c, call_body, &k, 0);
}

static const yp_endpoint *check_endpoint(lua_State *L, int idx) {
  const yp_endpoint *ep = yp_find_endpoint(luaL_checkstring(L, idx));
  if (!ep || (ep->flags & YP_TOKEN))
    luaL_argerror(L, idx, lua_pushfstring(L, "unknown endpoint '%s'", lua_tostring(L, idx)));
  return ep;
}

/* client:prepare(name, params) -> {method, url, path, body}: the exact request, nothing sent. */
static int client_prepare(lua_State *L) {
  yp_client *c = check_open(L, 1);
  const yp_endpoint *ep = check_endpoint(L, 2);
  yp_request req;
  lua_settop(L, 3);
  yp_build_request(L, push_base_url(L, c), ep, 3, &req);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, ep->method);
  lua_setfield(L, -2, "method");
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "url");
  lua_pushstring(L, req.path);
  lua_setfield(L, -2, "path");
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "body");
  return 1;
}

/* ---- batch ------------------------------------------------------------------------------ */

#define DEFAULT_CONCURRENCY 8
#define MAX_CONCURRENCY 256
/* The batch's I/O part sees these as its arguments (see guarded). */
#define BATCH_OPTS 2
#define BATCH_RESULTS 3

typedef struct batch {
  call *calls;  /* one per item, anchored by the method's stack */
  int *waiting; /* items paused before a retry */
  int n, concurrency, has_callback;
} batch;

/* Stores the value on top as item i's {result=} or {err=}, tells on_result, pops the value.
 * An error raised by on_result ends the batch (see guarded: nothing stays in flight). */
static void batch_finish(lua_State *L, const batch *b, int i, int ok) {
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, ok ? "result" : "err");
  lua_rawseti(L, BATCH_RESULTS, i + 1);
  if (b->has_callback) {
    lua_getfield(L, BATCH_OPTS, "on_result");
    lua_pushinteger(L, i + 1);
    lua_pushvalue(L, -3);
    lua_pushnil(L);
    if (!ok) lua_insert(L, -2); /* (i, nil, err) */
    lua_call(L, 3, 0);
  }
  lua_pop(L, 1);
}

static int batch_options(lua_State *L, int opts, int *has_callback) {
  int concurrency = DEFAULT_CONCURRENCY;
  *has_callback = 0;
  if (lua_isnoneornil(L, opts)) return concurrency;
  luaL_checktype(L, opts, LUA_TTABLE);
  for (lua_pushnil(L); lua_next(L, opts); lua_pop(L, 1)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    if (strcmp(key, "concurrency") == 0 && yp_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 &&
        lua_tointeger(L, -1) <= MAX_CONCURRENCY)
      concurrency = (int)lua_tointeger(L, -1);
    else if (strcmp(key, "on_result") == 0 && lua_isfunction(L, -1))
      *has_callback = 1;
    else
      luaL_error(L, "batch: bad option '%s' (concurrency: integer 1..%d, on_result: function)",
                 key, MAX_CONCURRENCY);
  }
  return concurrency;
}

/* Runs every item on the batch's own range of transport slots, so that a callback may start
 * another batch, or any call, on the same client. */
static int batch_io(lua_State *L, yp_client *c, void *state) {
  batch *b = (batch *)state;
  call *calls = b->calls;
  int *waiting = b->waiting, n = b->n, concurrency = b->concurrency;
  int first = yp_transport_reserve(c->transport, concurrency);
  if (first < 0) luaL_error(L, "batch: out of memory");

  /* on_slot[s]: the item running on slot first + s. */
  int on_slot[MAX_CONCURRENCY], next = 0, in_flight = 0, finished = 0, nwaiting = 0;
  for (int s = 0; s < concurrency; s++) on_slot[s] = -1;
  while (finished < n) {
    /* Fill free slots: retries whose pause is over first, then new items. Once the client is
     * closed, every item not yet in flight fails at once, unsent. */
    for (int s = 0; s < concurrency && finished < n; s++) {
      if (on_slot[s] >= 0) continue;
      int pick = -1;
      double now = now_mono();
      for (int w = 0; w < nwaiting && pick < 0; w++)
        if (calls[waiting[w]].not_before <= now || c->closed) {
          pick = waiting[w];
          waiting[w] = waiting[--nwaiting];
        }
      if (pick < 0 && next < n) pick = next++;
      if (pick < 0) break;
      call *k = &calls[pick];
      if (k->attempt == 0) k->deadline = now + c->deadline;
      const char *lines[5];
      char *auth_line;
      if (!start_attempt(L, c, k, lines, &auth_line)) {
        finished++;
        batch_finish(L, b, pick, 0);
        s--; /* the slot is still free */
        continue;
      }
      yp_http_request h = http_request_for(c, k, lines);
      k->attempt++;
      int ok = yp_transport_submit(c->transport, first + s, &h);
      wipe_free(&auth_line);
      if (!ok) luaL_error(L, "batch: out of memory");
      on_slot[s] = pick;
      in_flight++;
    }
    if (finished >= n) break;
    if (in_flight == 0) { /* only paused retries left */
      double wake = HUGE_VAL;
      for (int w = 0; w < nwaiting; w++)
        if (calls[waiting[w]].not_before < wake) wake = calls[waiting[w]].not_before;
      yp_transport_sleep(c->transport, wake - now_mono());
      continue;
    }
    int slot = yp_transport_wait(c->transport, first, concurrency);
    if (slot < 0) continue;
    int i = on_slot[slot - first];
    on_slot[slot - first] = -1;
    in_flight--;
    const yp_http_response *r = yp_transport_response(c->transport, slot);
    yp_outcome out = evaluate(L, c, &calls[i], r);
    double delay = out == YP_OUT_DONE ? -1 : next_delay(c, &calls[i], out, r);
    log_attempt(L, c, &calls[i], r, out, delay);
    yp_transport_recycle(c->transport, slot);
    if (delay >= 0) {
      lua_pop(L, 1);
      calls[i].not_before = now_mono() + delay;
      waiting[nwaiting++] = i;
      continue;
    }
    finished++;
    batch_finish(L, b, i, out == YP_OUT_DONE);
  }
  lua_pushvalue(L, BATCH_RESULTS);
  return 1;
}

/* client:batch(name, list, {concurrency=, on_result=}) -> {{result=}|{err=}, ...} in list
 * order, at most `concurrency` requests in flight. Every item is checked before anything is
 * sent; each item gets the retry policy and deadline of a single call. */
static int client_batch(lua_State *L) {
  yp_client *c = check_open(L, 1);
  const yp_endpoint *ep = check_endpoint(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  batch b;
  b.concurrency = batch_options(L, 4, &b.has_callback);
  lua_settop(L, 4);
  const char *base_url = push_base_url(L, c); /* 5 */
  b.n = (int)yp_rawlen(L, 3);
  b.calls = (call *)yp_newuserdata(L, (size_t)(b.n ? b.n : 1) * sizeof *b.calls); /* 6 */
  b.waiting = (int *)yp_newuserdata(L, (size_t)(b.n ? b.n : 1) * sizeof *b.waiting); /* 7 */
  lua_createtable(L, 2 * b.n, 0); /* 8: anchors every request's strings */
  for (int i = 0; i < b.n; i++) {
    lua_rawgeti(L, 3, i + 1);
    if (!lua_istable(L, -1))
      luaL_error(L, "batch: item %d must be a table (got %s)", i + 1, luaL_typename(L, -1));
    call k = {ep, {NULL, NULL, NULL, 0}, NULL, 0, 0, 0, 0, 0, 0};
    yp_build_request(L, base_url, ep, -1, &k.req);
    if (k.req.body) k.content_type = "Content-Type: application/json";
    b.calls[i] = k;
    lua_rawseti(L, 8, 2 * i + 2);
    lua_rawseti(L, 8, 2 * i + 1);
    lua_pop(L, 1);
  }
  check_open(L, 1); /* a metamethod of an item may have closed it */
  if (b.concurrency > b.n) b.concurrency = b.n ? b.n : 1;
  lua_pushvalue(L, 4);            /* BATCH_OPTS */
  lua_createtable(L, b.n, 0);     /* BATCH_RESULTS */
  return guarded(L, c, batch_io, &b, 2);
}

/* ---- registration ----------------------------------------------------------------------- */

void yp_client_register(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", client_gc},
                                  {"__close", client_gc},
                                  {"__tostring", client_tostring},
                                  {NULL, NULL}};
  static const luaL_Reg methods[] = {{"close", client_close},
                                     {"is_closed", client_is_closed},
                                     {"prepare", client_prepare},
                                     {"batch", client_batch},
                                     {NULL, NULL}};
  luaL_newmetatable(L, YP_CLIENT_MT);
  yp_setfuncs(L, meta);
  lua_pushliteral(L, "yeastar.partner.Client");
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  yp_setfuncs(L, methods);
  for (size_t i = 0; i < yp_endpoint_count; i++) {
    lua_pushlightuserdata(L, (void *)(uintptr_t)&yp_endpoints[i]);
    lua_pushcclosure(L, endpoint_method, 1);
    lua_setfield(L, -2, yp_endpoints[i].name);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_remove(L, -2); /* leave the methods table for the Lua-side workflows */
}
