/* call.c: the call core as Lua objects, for drivers written in Lua (the cosocket driver): a call
 * says what to do next and is fed what happened; tokens and the token store's records likewise. */
#include <stdint.h>
#include <string.h>

#include "call.h"
#include "core.h"

#define CALL_MT "yeastar.partner.Call"

/* A call driven from Lua. While `live`, it counts in the client's depth, so a close() meanwhile
 * only marks the client: the state a call in flight will be fed against stays until it ends. */
typedef struct driven_call {
  yp_call k;
  yp_client *c;
  int client_ref, anchor_ref; /* the client userdata; {url, body} the request points into */
  int live, token;            /* token: a login or refresh, whose result the core keeps */
} driven_call;

static driven_call *check_call(lua_State *L) {
  driven_call *lc = (driven_call *)luaL_checkudata(L, 1, CALL_MT);
  if (!lc->live) luaL_error(L, "yeastar.partner: this call has ended");
  return lc;
}

static void call_end(lua_State *L, driven_call *lc) {
  if (!lc->live) return;
  lc->live = 0;
  luaL_unref(L, LUA_REGISTRYINDEX, lc->anchor_ref);
  lc->c->depth--;
  yp_client_settle(L, lc->c);
  luaL_unref(L, LUA_REGISTRYINDEX, lc->client_ref);
  lc->anchor_ref = lc->client_ref = LUA_NOREF;
}

/* Wraps k, whose url and body are the two values on top (popped), for the client at index 1. */
static driven_call *push_call(lua_State *L, yp_client *c, const yp_call *k, int token) {
  lua_createtable(L, 2, 0);
  lua_insert(L, -3);
  lua_rawseti(L, -3, 2);
  lua_rawseti(L, -2, 1);
  driven_call *lc = (driven_call *)yp_newuserdata(L, sizeof *lc);
  memset(lc, 0, sizeof *lc);
  lc->anchor_ref = lc->client_ref = LUA_NOREF;
  yp_setmetatable(L, CALL_MT);
  lua_insert(L, -2);
  lc->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 1);
  lc->client_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lc->k = *k;
  lc->c = c;
  lc->token = token;
  lc->live = 1;
  c->depth++;
  return lc;
}

/* client:_call(name, params) -> call. The request is built and checked now, before any I/O. */
static int client_call(lua_State *L) {
  yp_client *c = yp_check_open(L, 1);
  const yp_endpoint *ep = yp_find_endpoint(luaL_checkstring(L, 2));
  if (!ep || (ep->flags & YP_TOKEN)) luaL_argerror(L, 2, "unknown endpoint");
  lua_settop(L, 3);
  lua_pushstring(L, c->base_url); /* anchored: metamethods of params may close the client */
  yp_call k;
  memset(&k, 0, sizeof k);
  k.ep = ep;
  yp_build_request(L, lua_tostring(L, 4), ep, 3, &k.req);
  yp_check_open(L, 1);
  /* k.deadline stays 0: yp_core_next sets it at the first attempt, so a batch's late items get
   * their own deadline, as under libcurl. */
  push_call(L, c, &k, 0);
  return 1;
}

/* client:_token_call(refresh [, for_call]) -> call: the login or refresh, within the deadline of
 * the call that needs it. */
static int client_token_call(lua_State *L) {
  yp_client *c = yp_check_open(L, 1);
  int refresh = lua_toboolean(L, 2);
  driven_call *parent = (driven_call *)yp_testudata(L, 3, CALL_MT);
  if (refresh && !c->refresh_token) luaL_error(L, "yeastar.partner: no refresh token");
  lua_settop(L, 1);
  yp_call k;
  yp_core_token_call(L, c, refresh, parent ? parent->k.deadline : yp_now_mono() + c->deadline, &k);
  lua_insert(L, -2); /* url below body, as push_call wants */
  push_call(L, c, &k, 1);
  return 1;
}

/* call:next() -> "send", request | "token" | "pause", seconds | "fail", err */
static int call_next(lua_State *L) {
  driven_call *lc = check_call(L);
  yp_attempt a;
  double pause = 0;
  switch (yp_core_next(L, lc->c, &lc->k, &a, &pause)) {
  case YP_NEXT_TOKEN:
    lua_pushliteral(L, "token");
    return 1;
  case YP_NEXT_PAUSE:
    lua_pushliteral(L, "pause");
    lua_pushnumber(L, pause);
    return 2;
  case YP_NEXT_FAIL:
    call_end(L, lc);
    lua_pushliteral(L, "fail");
    lua_insert(L, -2);
    return 2;
  case YP_NEXT_SEND:
    break;
  }
  const yp_http_request *h = &a.request;
  lua_pushliteral(L, "send");
  lua_createtable(L, 0, 8);
  lua_pushstring(L, h->method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, h->url);
  lua_setfield(L, -2, "url");
  lua_newtable(L);
  for (int i = 0; h->headers[i]; i++) {
    lua_pushstring(L, h->headers[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "headers");
  if (h->body) {
    lua_pushlstring(L, h->body, h->body_len);
    lua_setfield(L, -2, "body");
  }
  lua_pushnumber(L, (double)h->timeout_ms / 1000);
  lua_setfield(L, -2, "timeout");
  lua_pushnumber(L, lc->c->connect_timeout);
  lua_setfield(L, -2, "connect_timeout");
  lua_pushnumber(L, (double)lc->c->max_response);
  lua_setfield(L, -2, "max_response");
  lua_pushboolean(L, h->fresh_connection);
  lua_setfield(L, -2, "fresh");
  yp_attempt_end(&a);
  return 2;
}

static yp_transport_error transport_error(const char *s) {
  static const char *names[] = {"ok", "dns", "connect", "tls", "timeout", "lost", "too_large",
                                "protocol", NULL};
  for (int i = 0; s && names[i]; i++)
    if (strcmp(s, names[i]) == 0) return (yp_transport_error)i;
  return s ? YP_TR_OTHER : YP_TR_OK;
}

/* call:feed{status=, body=, retry_after=, error=, maybe_sent=, elapsed=, detail=}
 *   -> "done", result, event | "fail", err, event | "retry", nil, event
 * event is the attempt's log event, or nil when the client has no logger. */
static int call_feed(lua_State *L) {
  driven_call *lc = check_call(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  yp_http_response r;
  memset(&r, 0, sizeof r);
  lua_getfield(L, 2, "status");
  r.status = (long)luaL_optnumber(L, -1, 0); /* driver-set, 100..999 or nil */
  lua_getfield(L, 2, "body"); /* stays on the stack: r.body points into it */
  r.body = (char *)(uintptr_t)lua_tolstring(L, -1, &r.body_len);
  lua_getfield(L, 2, "retry_after");
  r.retry_after = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : -1;
  lua_getfield(L, 2, "error");
  r.error = transport_error(lua_tostring(L, -1));
  lua_getfield(L, 2, "maybe_sent");
  r.maybe_sent = lua_toboolean(L, -1);
  lua_getfield(L, 2, "elapsed");
  r.elapsed = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : 0;
  lua_getfield(L, 2, "detail");
  const char *detail = lua_tostring(L, -1);
  if (detail) {
    strncpy(r.detail, detail, sizeof r.detail - 1);
    r.detail[sizeof r.detail - 1] = '\0';
  }
  if (r.status < 0 || r.status > 999) r.status = 0;
  int base = lua_gettop(L);
  yp_fed fed = yp_core_feed(L, lc->c, &lc->k, &r);
  if (fed == YP_FED_RETRY) {
    lua_pushliteral(L, "retry");
    lua_pushnil(L);
    lua_pushvalue(L, -3);
    return 3;
  }
  lua_insert(L, base + 1); /* the event below the value */
  if (fed == YP_FED_DONE && lc->token && yp_core_token_accept(L, lc->c, lc->k.ep)) {
    lua_pushboolean(L, 1); /* the tokens stay inside the client */
  } else if (fed == YP_FED_DONE && lc->token) {
    fed = YP_FED_FAIL;
  }
  call_end(L, lc);
  if (fed == YP_FED_DONE) lua_pushliteral(L, "done");
  else lua_pushliteral(L, "fail");
  lua_insert(L, -2);
  lua_pushvalue(L, base + 1);
  return 3;
}

/* call:finish(): ends the call unfinished (a driver giving up, e.g. its thread was killed). */
static int call_finish(lua_State *L) {
  driven_call *lc = (driven_call *)luaL_checkudata(L, 1, CALL_MT);
  call_end(L, lc);
  return 0;
}

/* ---- tokens and the token store, for a driver that calls the store itself ---------------- */

/* client:_token_state() -> load, valid, refresh: whether the store has yet to be asked, whether
 * the access token may be sent now, whether a refresh may be tried. */
static int client_token_state(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
  lua_pushboolean(L, !c->closed && !c->store_loaded && yp_has_store(c));
  lua_pushboolean(L, !c->closed && yp_core_token_valid(c));
  lua_pushboolean(L, !c->closed && yp_core_can_refresh(c));
  return 3;
}

/* client:_token_loaded(t): what the store's load() returned (a table, or nil). */
static int client_token_loaded(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
  c->store_loaded = 1;
  if (!c->closed && lua_istable(L, 2)) yp_core_token_load(L, c, 2);
  return 0;
}

/* client:_token_record() -> the table the store's save() gets */
static int client_token_record(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
  if (c->closed || !c->access_token) return 0;
  yp_core_push_token_record(L, c);
  return 1;
}

static int client_token_details(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
  if (c->closed || !c->access_token) return 0;
  yp_core_push_token_details(L, c);
  return 1;
}

static int client_refresh_failed(lua_State *L) {
  yp_core_refresh_failed(yp_check_client(L, 1));
  return 0;
}

/* client:_store_failure_event(op, message) -> the logger's {type = "token_store", ...} */
static int client_store_failure_event(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
  const char *op = luaL_checkstring(L, 2);
  lua_settop(L, 3);
  if (c->closed) return 0;
  yp_core_store_failure_event(L, c, op);
  return 1;
}

/* client:_driver_info() -> {transport=, pool_size=, ca_file=, deadline=, logger=, token_store=} */
static int client_driver_info(lua_State *L) {
  yp_client *c = yp_check_client(L, 1);
  if (c->closed) return 0;
  static const char *transports[] = {"auto", "curl", "cosocket"};
  lua_createtable(L, 0, 5);
  lua_pushstring(L, transports[c->driver]);
  lua_setfield(L, -2, "transport");
  lua_pushinteger(L, c->pool_size);
  lua_setfield(L, -2, "pool_size");
  lua_pushboolean(L, c->ca_file != NULL);
  lua_setfield(L, -2, "ca_file");
  lua_pushboolean(L, yp_transport_proxy(c->transport) != NULL);
  lua_setfield(L, -2, "proxy");
  lua_pushnumber(L, c->deadline);
  lua_setfield(L, -2, "deadline");
  if (yp_has_logger(c)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->logger_ref);
    lua_setfield(L, -2, "logger");
  }
  if (yp_has_store(c)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->store_ref);
    lua_setfield(L, -2, "token_store");
  }
  return 1;
}

void yp_call_register(lua_State *L) {
  static const luaL_Reg call_methods[] = {
      {"next", call_next}, {"feed", call_feed}, {"finish", call_finish}, {NULL, NULL}};
  static const luaL_Reg client_methods[] = {{"_call", client_call},
                                            {"_token_call", client_token_call},
                                            {"_token_state", client_token_state},
                                            {"_token_loaded", client_token_loaded},
                                            {"_token_record", client_token_record},
                                            {"_token_details", client_token_details},
                                            {"_refresh_failed", client_refresh_failed},
                                            {"_store_failure_event", client_store_failure_event},
                                            {"_driver_info", client_driver_info},
                                            {NULL, NULL}};
  luaL_newmetatable(L, CALL_MT);
  lua_pushcfunction(L, call_finish);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  yp_setfuncs(L, call_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  yp_setfuncs(L, client_methods); /* into the client's methods table, on top */
}
