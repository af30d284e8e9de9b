/* compat.h: the only place that knows which Lua version we are built against.
 * Everything else calls these names and stays version-neutral (5.1, LuaJIT, 5.2-5.4). */
#ifndef YP_COMPAT_H
#define YP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
/* Lua 5.1 / LuaJIT */
#define yp_rawlen(L, i) lua_objlen((L), (i))
#define yp_setfuncs(L, l) luaL_register((L), NULL, (l))
#define yp_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define YP_LUA_OK 0
static inline int yp_isinteger(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, idx);
  return n == (lua_Number)(lua_Integer)n;
}
static inline int yp_absindex(lua_State *L, int idx) {
  return (idx > 0 || idx <= LUA_REGISTRYINDEX) ? idx : lua_gettop(L) + idx + 1;
}
#else
#define yp_rawlen(L, i) lua_rawlen((L), (i))
#define yp_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#define YP_LUA_OK LUA_OK
#define yp_absindex(L, i) lua_absindex((L), (i))
#if LUA_VERSION_NUM >= 504
#define yp_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 0)
#else
#define yp_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif
#if LUA_VERSION_NUM >= 503
#define yp_isinteger(L, i) lua_isinteger((L), (i))
#else
static inline int yp_isinteger(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  lua_Number n = lua_tonumber(L, idx);
  return n == (lua_Number)(lua_Integer)n;
}
#endif
#endif

/* Converts the numeral s (C string) to a Lua number and pushes it; returns 0 and pushes
 * nothing when s is not a numeral. Lua's own converter is locale-proof where it exists. */
#if LUA_VERSION_NUM >= 503
#define yp_stringtonumber(L, s) (lua_stringtonumber((L), (s)) != 0)
#else
#include <stdlib.h>
static inline int yp_stringtonumber(lua_State *L, const char *s) {
  char *end;
  double d = strtod(s, &end);
  if (end == s || *end != '\0') return 0;
  lua_pushnumber(L, d);
  return 1;
}
#endif

/* 1 where Lua numbers have an exact integer subtype (5.3+, lua_Integer is 64-bit unless LUA_32BITS);
 * 0 where every number is a double (5.1, 5.2, LuaJIT), so integers beyond 2^53 lose digits. */
#if LUA_VERSION_NUM >= 503
#define YP_INTEGER_SUBTYPE 1
#else
#define YP_INTEGER_SUBTYPE 0
#endif

#endif
