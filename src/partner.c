/* partner.c: the module entry point (luaopen_yeastar_partner): version, null sentinel,
 * constructor, JSON helpers and array marker, endpoint catalogue, and the Lua parts embedded in
 * the .so (the workflows; the cosocket driver, active inside nginx). */
#include <curl/curl.h>

#include "client.h"
#include "endpoints.h"
#include "errors.h"
#include "http1.h"
#include "json.h"
#include "token_store.h"
#include "version.h"
#include "cosocket_lua.h"
#include "workflows_lua.h"

/* partner.endpoints[name] = {index=, method=, path=, paged=, replay_safe=, params={...}}, for tools,
 * docs and the workflows; the C table stays the only source. */
static void push_catalogue(lua_State *L) {
  static const char *places[] = {"member", "path", "query", "body"};
  static const char *types[] = {"?", "string", "integer", "boolean", "object", "list"};
  lua_createtable(L, 0, (int)yp_endpoint_count);
  for (size_t i = 0; i < yp_endpoint_count; i++) {
    const yp_endpoint *ep = &yp_endpoints[i];
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)i + 1); /* the table's order: the guide's order */
    lua_setfield(L, -2, "index");
    lua_pushstring(L, ep->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, ep->path);
    lua_setfield(L, -2, "path");
    lua_pushboolean(L, (ep->flags & YP_PAGED) != 0);
    lua_setfield(L, -2, "paged");
    lua_pushboolean(L, (ep->flags & YP_REPLAY_SAFE) != 0);
    lua_setfield(L, -2, "replay_safe");
    lua_newtable(L);
    int n = 0;
    for (const yp_field *f = ep->params; f->name; f++) {
      lua_createtable(L, 0, 4);
      lua_pushstring(L, f->name);
      lua_setfield(L, -2, "name");
      lua_pushstring(L, places[f->place]);
      lua_setfield(L, -2, "place");
      lua_pushstring(L, types[f->type]);
      lua_setfield(L, -2, "type");
      lua_pushboolean(L, f->required);
      lua_setfield(L, -2, "required");
      lua_rawseti(L, -2, ++n);
    }
    lua_setfield(L, -2, "params");
    lua_setfield(L, -2, ep->name);
  }
}

/* Where lua-cjson (OpenResty's, which has array_mt) is already loaded, our decoded arrays carry
 * its marker, so that cjson.encode keeps them arrays too. Otherwise json.c makes our own. */
static void adopt_cjson_array_mt(lua_State *L) {
  luaL_getmetatable(L, JSON_ARRAY_MT);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have) return;
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "cjson");
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "array_mt");
      if (lua_istable(L, -1)) lua_setfield(L, LUA_REGISTRYINDEX, JSON_ARRAY_MT);
      else lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

__attribute__((visibility("default"))) int luaopen_yeastar_partner(lua_State *L);

int luaopen_yeastar_partner(lua_State *L) {
  static const luaL_Reg functions[] = {{"new", yp_client_new},
                                       {"json_decode", json_l_decode},
                                       {"json_encode", json_l_encode},
                                       {"file_token_store", yp_file_token_store},
                                       /* internal: the cosocket driver's response framer */
                                       {"_http1", yp_http1_lua_new},
                                       {NULL, NULL}};
  /* Process-wide and reference-counted by libcurl; never cleaned up, as other users may remain. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return luaL_error(L, "yeastar.partner: cannot initialise libcurl");
  yp_errors_register(L);
  yp_client_register(L); /* leaves the methods table */
  lua_newtable(L);
  yp_setfuncs(L, functions);
  lua_pushliteral(L, YP_VERSION);
  lua_setfield(L, -2, "_VERSION");
  json_push_null(L);
  lua_setfield(L, -2, "null");
  adopt_cjson_array_mt(L);
  json_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  push_catalogue(L);
  lua_setfield(L, -2, "endpoints");

  /* The workflows, then the cosocket driver (which wraps the methods only inside nginx). */
  if (luaL_loadbuffer(L, yp_workflows_lua, sizeof yp_workflows_lua, "=yeastar/partner/workflows.lua"))
    return lua_error(L);
  lua_pushvalue(L, -2); /* module */
  lua_pushvalue(L, -4); /* methods */
  yp_push_error_constructor(L);
  lua_call(L, 3, 0);
  if (luaL_loadbuffer(L, yp_cosocket_lua, sizeof yp_cosocket_lua, "=yeastar/partner/cosocket.lua"))
    return lua_error(L);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, -4);
  lua_call(L, 2, 0);
  return 1;
}
