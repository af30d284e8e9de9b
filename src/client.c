/* client.c: the client object (options, credentials, lifecycle, close while busy) and its methods:
 * each builds its request, then hands the call to a driver (driver_curl.c, or Lua's cosockets). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "call.h"
#include "client.h"
#include "core.h"
#include "driver_curl.h"

/* Defaults, in one place. Retry numbers follow Stripe's SDKs (see ../shared/NOTES.md); the
 * retry-after cap and token lifetimes are the core's (core.c, classify.c). */
#define DEFAULT_BASE_URL "https://openapi.partner.yeastar.com"
#define DEFAULT_USER_AGENT "OpenAPI" /* what every example in Yeastar's guide sends */
#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define DEFAULT_DEADLINE 120.0 /* one call, all attempts and pauses included */
#define DEFAULT_MAX_RETRIES 2
#define DEFAULT_RETRY_BASE_DELAY 0.5
#define DEFAULT_RETRY_MAX_DELAY 5.0
#define DEFAULT_LOW_SPEED_LIMIT 10 /* bytes per second... */
#define DEFAULT_LOW_SPEED_TIME 20  /* ...for this long, else the exchange times out */
#define DEFAULT_MAX_RESPONSE (8 * 1024 * 1024)
#define DEFAULT_MAX_DEPTH 64
#define DEFAULT_POOL_SIZE 30 /* cosocket keepalive pool, as lua_socket_pool_size */

/* ---- lifecycle -------------------------------------------------------------------------- */

static void client_release(lua_State *L, yp_client *c) {
  yp_transport_free(c->transport);
  c->transport = NULL;
  yp_drop_tokens(c);
  yp_wipe_free(&c->client_secret);
  free(c->client_id);
  free(c->base_url);
  free(c->ua_header);
  free(c->ca_file);
  c->client_id = c->base_url = c->ua_header = c->ca_file = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, c->logger_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c->store_ref);
  c->logger_ref = c->store_ref = LUA_NOREF;
}

void yp_client_settle(lua_State *L, yp_client *c) {
  if (c->closed && c->depth == 0 && c->transport) client_release(L, c);
}

yp_client *yp_check_client(lua_State *L, int idx) {
  return (yp_client *)luaL_checkudata(L, idx, YP_CLIENT_MT);
}

yp_client *yp_check_open(lua_State *L, int idx) {
  yp_client *c = yp_check_client(L, idx);
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
  yp_client_settle(L, c);
  if (status != YP_LUA_OK) return lua_error(L);
  return lua_gettop(L) - base;
}

/* The client's base URL as a string on the stack: request building may run the caller's
 * metamethods, which may close the client and free its copy. */
static const char *push_base_url(lua_State *L, yp_client *c) {
  lua_pushstring(L, c->base_url);
  return lua_tostring(L, -1);
}

/* close(), __close and __gc. Inside a call on this client (from any callback) it only marks the
 * client closed: the call under way ends its remaining work with a `closed` error and the
 * release happens when it returns. */
static int client_close(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
  c->closed = 1;
  if (c->depth == 0) client_release(L, c);
  lua_pushboolean(L, 1);
  return 1;
}

static int client_is_closed(lua_State *L) {
  lua_pushboolean(L, yp_check_client(L, 1)->closed);
  return 1;
}

static int client_gc(lua_State *L) {
  /* A table given the client's metatable gets this __gc too: an error raised here would surface
   * wherever the collector happens to run (5.2, 5.3), so anything but a client is left alone. */
  if (yp_testudata(L, 1, YP_CLIENT_MT)) client_close(L);
  return 0;
}

static int client_tostring(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
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
    {"transport", LUA_TSTRING},        {"pool_size", LUA_TNUMBER},
    {"proxy", LUA_TSTRING},            {NULL, 0}};

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

/* An http:// or https:// proxy URL: scheme, optional user:password@, host, optional port. Its
 * text is never in a message (it may hold a password). */
static void check_proxy(lua_State *L, const char *url) {
  if (!url) return;
  int https = strncmp(url, "https://", 8) == 0;
  const char *host = url + (https ? 8 : 7);
  if (!https && strncmp(url, "http://", 7) != 0)
    luaL_error(L, "new: option 'proxy' must start with http:// or https:// (an HTTP proxy, "
                  "e.g. http://proxy.example:3128)");
  const char *at = strrchr(host, '@');
  if (at) host = at + 1;
  if (!*host || *host == ':' || *host == '/' || strpbrk(host, " \t?#"))
    luaL_error(L, "new: option 'proxy' must be a proxy URL such as http://proxy.example:3128");
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
  c->client_id = yp_dup_or_raise(L, opt_string(L, "client_id", NULL, 1));
  c->client_secret = yp_dup_or_raise(L, opt_string(L, "client_secret", NULL, 1));
  c->ca_file = yp_dup_or_raise(L, opt_string(L, "ca_file", NULL, 0));
  check_ca_file(L, c->ca_file);
  const char *proxy = opt_string(L, "proxy", NULL, 0); /* anchored in the options table */
  check_proxy(L, proxy);
  c->base_url = yp_dup_or_raise(L, base_url);
  size_t n = strlen(c->base_url);
  while (n > 0 && c->base_url[n - 1] == '/') c->base_url[--n] = '\0';
  lua_pushfstring(L, "User-Agent: %s", opt_string(L, "user_agent", DEFAULT_USER_AGENT, 0));
  c->ua_header = yp_dup_or_raise(L, lua_tostring(L, -1));
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
  c->pool_size = (int)opt_number(L, "pool_size", DEFAULT_POOL_SIZE, 1, 10000);
  const char *driver = opt_string(L, "transport", "auto", 0);
  if (strcmp(driver, "auto") == 0) c->driver = 0;
  else if (strcmp(driver, "curl") == 0) c->driver = 1;
  else if (strcmp(driver, "cosocket") == 0) c->driver = 2;
  else luaL_error(L, "new: option 'transport' must be \"auto\", \"curl\" or \"cosocket\"");
  if (c->driver == 2 && c->ca_file)
    luaL_error(L, "new: option 'ca_file' does not apply to the cosocket driver: nginx trusts "
                  "the CAs of its lua_ssl_trusted_certificate directive");
  if (c->driver == 2 && proxy)
    luaL_error(L, "new: option 'proxy' does not apply to the cosocket driver: nginx's cosockets "
                  "connect to the portal directly");

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
  c->rng = (uint64_t)(uintptr_t)c ^ (uint64_t)(yp_now_wall() * 1e6) ^ 0x9E3779B97F4A7C15ull;

  yp_transport_config tc = {c->ca_file, c->allow_http, (long)(c->connect_timeout * 1000),
                            c->low_speed_limit, c->low_speed_time, (size_t)c->max_response, proxy};
  char err[128];
  if (!(c->transport = yp_transport_new(&tc, err, sizeof err))) luaL_error(L, "new: %s", err);
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
  double deadline = yp_now_mono() + c->deadline;
  int refresh = ep == YP_REFRESH_ENDPOINT;
  if (refresh && !c->refresh_token) {
    yp_error e = {YP_KIND_AUTH, "no_refresh_token", "there is no refresh token yet; log in first",
                  0, NULL, 0, ep->name, NULL};
    yp_push_error(L, &e);
    return fail(L);
  }
  if (!yp_curl_token_exchange(L, c, refresh, deadline)) return fail(L);
  if (c->closed) {
    yp_push_closed_error(L, ep->name);
    return fail(L);
  }
  yp_core_push_token_details(L, c);
  return 1;
}

static int call_body(lua_State *L, yp_client *c, void *state) {
  return yp_curl_run(L, c, (yp_call *)state) ? 1 : fail(L);
}

/* Every endpoint method: upvalue 1 is its descriptor. */
static int endpoint_method(lua_State *L) {
  yp_client *c = yp_check_open(L, 1);
  const yp_endpoint *ep = (const yp_endpoint *)lua_touserdata(L, lua_upvalueindex(1));
  if (ep->flags & YP_TOKEN) {
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_istable(L, 2)) {
      lua_pushnil(L);
      if (lua_next(L, 2)) luaL_error(L, "%s: takes no parameters", ep->name);
    }
    return guarded(L, c, token_body, (void *)(uintptr_t)ep, 0);
  }
  yp_call k = {ep, {NULL, NULL, NULL, 0}, NULL, 0, 0, 0, 0, 0, 0};
  char url[512]; /* the call's URL lives here, in this frame, which outlives the call */
  lua_settop(L, 2);
  /* may run the caller's metamethods */
  yp_build_request_in(L, push_base_url(L, c), ep, 2, &k.req, url, sizeof url);
  if (c->closed) luaL_error(L, "yeastar.partner: the client is closed"); /* as yp_check_open */
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
  yp_client *c = yp_check_open(L, 1);
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
#define MAX_CONCURRENCY 256 /* a batch reserves this many transport slots at most */
static void batch_options(lua_State *L, int opts, yp_batch *b) {
  int has_callback = 0;
  b->concurrency = DEFAULT_CONCURRENCY;
  b->keep_results = 1;
  if (lua_isnoneornil(L, opts)) return;
  luaL_checktype(L, opts, LUA_TTABLE);
  for (lua_pushnil(L); lua_next(L, opts); lua_pop(L, 1)) {
    const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    if (strcmp(key, "concurrency") == 0 && yp_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 &&
        lua_tointeger(L, -1) <= MAX_CONCURRENCY)
      b->concurrency = (int)lua_tointeger(L, -1);
    else if (strcmp(key, "on_result") == 0 && lua_isfunction(L, -1))
      has_callback = 1;
    else if (strcmp(key, "keep_results") == 0 && lua_isboolean(L, -1))
      b->keep_results = lua_toboolean(L, -1);
    else
      luaL_error(L, "batch: bad option '%s' (concurrency: integer 1..%d, on_result: function, "
                    "keep_results: boolean)", key, MAX_CONCURRENCY);
  }
  if (!b->keep_results && !has_callback)
    luaL_error(L, "batch: option 'keep_results' = false needs on_result (the results are "
                  "handed to it, not kept)");
}

/* Pushes the error of bulk item `index` (1-based) that fails the checks a single call would
 * raise for (`why`, that raise's message; ignored when the item is not a table): kind invalid,
 * its index as a field and, in the message, its productNo when it has one, so that one bad CSV
 * row can be found and fixed while the rest of the list proceeds. */
static void push_invalid_item(lua_State *L, const yp_endpoint *ep, int index, int item,
                              const char *why) {
  int top = lua_gettop(L);
  item = yp_absindex(L, item);
  if (!lua_istable(L, item)) {
    why = lua_pushfstring(L, "%s: the item must be a table (got %s)", ep->name,
                          luaL_typename(L, item));
  } else if (!why) {
    why = "the item's check raised an error object that is not a string";
  }
  lua_pushfstring(L, "item %d", index);
  if (lua_istable(L, item)) {
    lua_pushliteral(L, "productNo");
    lua_rawget(L, item); /* raw: no metamethod of the caller runs again */
    if (lua_type(L, -1) == LUA_TSTRING) {
      size_t n;
      const char *no = lua_tolstring(L, -1, &n);
      lua_pushliteral(L, " (productNo ");
      lua_pushlstring(L, no, n > 40 ? 40 : n); /* the reason must fit in the message too */
      lua_pushstring(L, n > 40 ? "...)" : ")");
      lua_concat(L, 3);
      lua_remove(L, -2); /* the productNo itself */
      lua_concat(L, 2);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_pushfstring(L, "%s: %s", lua_tostring(L, -1), why);
  yp_error e = {YP_KIND_INVALID, "invalid_parameters", lua_tostring(L, -1), 0, NULL, 0, ep->name,
                NULL};
  yp_push_error(L, &e);
  lua_pushinteger(L, index);
  lua_setfield(L, -2, "index");
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

/* client:_invalid_item(name, index, item, why) -> err: that error, for the Lua-side bulk jobs
 * (ensure_auto_renewal, the cosocket driver's batch), so every driver words it the same. */
static int client_invalid_item(lua_State *L) {
  yp_check_client(L, 1);
  const yp_endpoint *ep = check_endpoint(L, 2);
  int index = (int)luaL_checkinteger(L, 3);
  lua_settop(L, 5);
  push_invalid_item(L, ep, index, 4, lua_tostring(L, 5));
  return 1;
}

/* client:_closed_error(name) -> err: the error of a call the client's close() kept from being
 * sent, for the cosocket driver's batch, which stops building items once the client is closed. */
static int client_closed_error(lua_State *L) {
  yp_check_client(L, 1);
  yp_push_closed_error(L, check_endpoint(L, 2)->name);
  return 1;
}

/* What build_item needs, handed over as one light userdata: each value pushed for the pcall
 * costs, once per item. */
typedef struct build_args {
  const yp_endpoint *ep;
  const char *base_url; /* anchored at BATCH_BASE_URL */
  yp_request *req;      /* to fill */
  char *scratch;        /* the URL goes here when it fits (cap bytes) */
  size_t cap;
} build_args;

/* Builds one item's request under lua_pcall, so that a bad item fails alone. Arguments: the
 * build_args and the item (a table); returns url (nil when in the scratch) and body. */
static int build_item(lua_State *L) {
  const build_args *a = (const build_args *)lua_touserdata(L, 1);
  yp_build_request_in(L, a->base_url, a->ep, 2, a->req, a->scratch, a->cap);
  return 2;
}

/* The batch's build (see yp_batch): item i of the list, built when a lane is free for it. */
static int batch_build(lua_State *L, yp_client *c, const yp_batch *b, int i, yp_call *k,
                       char *scratch, size_t cap) {
  yp_call fresh = {b->ep, {NULL, NULL, NULL, 0}, NULL, 0, 0, 0, 0, 0, 0};
  *k = fresh;
  lua_rawgeti(L, BATCH_LIST, i); /* raw: __index and __len of the list are never consulted */
  int item = lua_gettop(L);
  if (lua_istable(L, item)) {
    build_args a = {b->ep, lua_tostring(L, BATCH_BASE_URL), &k->req, scratch, cap};
    lua_pushcfunction(L, build_item);
    lua_pushlightuserdata(L, &a);
    lua_pushvalue(L, item);
    int status = lua_pcall(L, 2, 2, 0); /* may run the caller's metamethods */
    if (status == YP_LUA_OK) {
      if (c->closed) /* a metamethod closed it: raise, as a single call does */
        luaL_error(L, "yeastar.partner: the client is closed");
      lua_remove(L, item);
      return 1;
    }
    if (status != LUA_ERRRUN) lua_error(L); /* out of memory is no item's fault */
  } else {
    lua_pushnil(L);
  }
  push_invalid_item(L, b->ep, i, item, lua_tostring(L, item + 1));
  lua_replace(L, item);
  lua_settop(L, item);
  return 0;
}

static int batch_io(lua_State *L, yp_client *c, void *state) {
  return yp_curl_batch(L, c, (yp_batch *)state);
}

/* client:batch(name, list, {concurrency=, on_result=, keep_results=}) -> {{result=}|{err=}, ...}
 * in list order, or {total=, failed=} with keep_results = false. At most `concurrency` items are
 * under way; each is read and built only when a lane is free for it, so a batch holds no more than
 * that many requests whatever the list's length. An item that a single call would raise for
 * becomes its own {err=} of kind `invalid` when it is reached, and the others run (bulk data must
 * not stop a fleet); bad options or endpoint names still raise, before any I/O. Each item gets the
 * retry policy and deadline of a single call. */
static int client_batch(lua_State *L) {
  yp_client *c = yp_check_open(L, 1);
  yp_batch b;
  b.ep = check_endpoint(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  batch_options(L, 4, &b);
  b.build = batch_build;
  b.n = (int)yp_rawlen(L, 3);
  if (b.concurrency > b.n) b.concurrency = b.n > 0 ? b.n : 1;
  lua_settop(L, 4);
  lua_pushvalue(L, 3); /* BATCH_LIST */
  lua_pushnil(L); /* BATCH_ON_RESULT */
  if (lua_istable(L, 4)) {
    lua_pushliteral(L, "on_result");
    lua_rawget(L, 4); /* raw, as batch_options read it */
    lua_replace(L, -2);
  }
  push_base_url(L, c); /* BATCH_BASE_URL */
  return guarded(L, c, batch_io, &b, 3);
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
                                     {"_invalid_item", client_invalid_item},
                                     {"_closed_error", client_closed_error},
                                     {NULL, NULL}};
  luaL_newmetatable(L, YP_CLIENT_MT);
  yp_setfuncs(L, meta);
  lua_pushliteral(L, "yeastar.partner.Client");
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  yp_setfuncs(L, methods);
  yp_call_register(L);
  for (size_t i = 0; i < yp_endpoint_count; i++) {
    lua_pushlightuserdata(L, (void *)(uintptr_t)&yp_endpoints[i]);
    lua_pushcclosure(L, endpoint_method, 1);
    lua_setfield(L, -2, yp_endpoints[i].name);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "__index");
  lua_remove(L, -2); /* leave the methods table for the Lua-side workflows */
}
