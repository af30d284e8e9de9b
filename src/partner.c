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
#include "config_lua.h"
#include "cosocket_lua.h"
#include "workflows_lua.h"

/* A list of parameter descriptors, {name=, place=, type=, required=, from=, fields=}, where
 * `from` names the call that yields the value and `fields` describes a nested object's members. */
static void push_fields(lua_State *L, const char *endpoint, const yp_field *fields) {
  static const char *places[] = {"member", "path", "query", "body"};
  static const char *types[] = {"?", "string", "integer", "boolean", "object", "list"};
  int n = 0;
  luaL_checkstack(L, 4, "yeastar.partner"); /* nested lists recurse */
  lua_newtable(L);
  for (const yp_field *f = fields; f->name; f++) {
    const char *from = yp_param_source(endpoint, f->name);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, places[f->place]);
    lua_setfield(L, -2, "place");
    lua_pushstring(L, types[f->type]);
    lua_setfield(L, -2, "type");
    lua_pushboolean(L, f->required);
    lua_setfield(L, -2, "required");
    if (from) {
      lua_pushstring(L, from);
      lua_setfield(L, -2, "from");
    }
    if (f->fields) {
      push_fields(L, endpoint, f->fields);
      lua_setfield(L, -2, "fields");
    }
    lua_rawseti(L, -2, ++n);
  }
}

/* partner.endpoints[name] = {index=, method=, path=, paged=, replay_safe=, token=, modelled=,
 * title=, returns=, example=, params={...}}, for tools, docs and the workflows; the C table stays
 * the only source. */
static void push_catalogue(lua_State *L) {
  lua_createtable(L, 0, (int)yp_endpoint_count);
  for (size_t i = 0; i < yp_endpoint_count; i++) {
    const yp_endpoint *ep = &yp_endpoints[i];
    lua_createtable(L, 0, 11);
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
    lua_pushboolean(L, (ep->flags & YP_TOKEN) != 0);
    lua_setfield(L, -2, "token");
    lua_pushboolean(L, (ep->flags & YP_MODELLED) != 0);
    lua_setfield(L, -2, "modelled");
    lua_pushstring(L, ep->title);
    lua_setfield(L, -2, "title");
    lua_pushstring(L, ep->returns);
    lua_setfield(L, -2, "returns");
    lua_pushstring(L, ep->example);
    lua_setfield(L, -2, "example");
    push_fields(L, ep->name, ep->params);
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
  /* partner.from_env and partner.env_variables. */
  if (luaL_loadbuffer(L, yp_config_lua, sizeof yp_config_lua, "=yeastar/partner/config.lua"))
    return lua_error(L);
  lua_pushvalue(L, -2); /* module */
  lua_call(L, 1, 0);
  return 1;
}
