/* errors.c: construction and printing of error objects (see errors.h for their fields).
 * Messages never carry secrets: callers pass text the client has already redacted. */
#include <stdio.h>
#include <string.h>

#include "errors.h"

#define MESSAGE_MAX 300

void yp_push_error(lua_State *L, const yp_error *e) {
  char line[MESSAGE_MAX + 4];
  size_t n = 0;
  /* One line, bounded: a multi-line HTML page or a huge detailMessage must not flood a log. */
  for (const char *p = e->message ? e->message : ""; *p && n < MESSAGE_MAX; p++)
    line[n++] = (*p == '\r' || *p == '\n' || *p == '\t') ? ' ' : *p;
  if (n == MESSAGE_MAX) memcpy(line + n - 3, "...", 3);
  line[n] = '\0';

  lua_createtable(L, 0, 8);
  lua_pushstring(L, e->kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, e->code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, line);
  lua_setfield(L, -2, "message");
  if (e->status) {
    lua_pushinteger(L, (lua_Integer)e->status);
    lua_setfield(L, -2, "status");
  }
  if (e->request_id) {
    lua_pushstring(L, e->request_id);
    lua_setfield(L, -2, "request_id");
  }
  lua_pushboolean(L, e->retryable);
  lua_setfield(L, -2, "retryable");
  if (e->endpoint) {
    lua_pushstring(L, e->endpoint);
    lua_setfield(L, -2, "endpoint");
  }
  luaL_getmetatable(L, YP_ERROR_MT);
  lua_setmetatable(L, -2);
}

/* "create_order: ambiguous error connection_lost (HTTP 502): ... [request 65f...]" */
static int error_tostring(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_Buffer b;
  lua_getfield(L, 1, "endpoint");
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "status");
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "request_id");
  const char *endpoint = lua_tostring(L, -6), *kind = lua_tostring(L, -5),
             *code = lua_tostring(L, -4), *message = lua_tostring(L, -2),
             *request_id = lua_tostring(L, -1);
  lua_Integer status = lua_tointeger(L, -3);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "yeastar.partner: ");
  if (endpoint) {
    luaL_addstring(&b, endpoint);
    luaL_addstring(&b, ": ");
  }
  luaL_addstring(&b, kind ? kind : "unknown");
  luaL_addstring(&b, " error ");
  luaL_addstring(&b, code ? code : "unknown");
  if (status) {
    char s[32];
    snprintf(s, sizeof s, " (HTTP %d)", (int)status);
    luaL_addstring(&b, s);
  }
  if (message && *message) {
    luaL_addstring(&b, ": ");
    luaL_addstring(&b, message);
  }
  if (request_id) {
    luaL_addstring(&b, " [request ");
    luaL_addstring(&b, request_id);
    luaL_addchar(&b, ']');
  }
  luaL_pushresult(&b);
  return 1;
}

/* new_error{kind=, code=, message=, endpoint=, status=}: for the embedded Lua workflows. */
static int error_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "kind");
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "message");
  lua_getfield(L, 1, "endpoint");
  lua_getfield(L, 1, "status");
  yp_error e = {luaL_checkstring(L, 2), luaL_checkstring(L, 3), lua_tostring(L, 4),
                (long)lua_tointeger(L, 6), NULL, 0, lua_tostring(L, 5)};
  yp_push_error(L, &e);
  return 1;
}

void yp_push_error_constructor(lua_State *L) {
  lua_pushcfunction(L, error_new);
}

void yp_errors_register(lua_State *L) {
  if (luaL_newmetatable(L, YP_ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}
