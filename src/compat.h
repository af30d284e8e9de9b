/* compat.h: the only place that knows which Lua version we are built against.
 * Everything else calls these names and stays version-neutral (5.1, LuaJIT, 5.2-5.4). */
#ifndef YP_COMPAT_H
#define YP_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <string.h>

#if LUA_VERSION_NUM < 502
/* Lua 5.1 / LuaJIT */
#define yp_rawlen(L, i) lua_objlen((L), (i))
#define yp_setfuncs(L, l) luaL_register((L), NULL, (l))
#define yp_newuserdata(L, sz) lua_newuserdata((L), (sz))
#define YP_LUA_OK 0
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
#endif

#if LUA_VERSION_NUM < 502
static inline void yp_setmetatable(lua_State *L, const char *name) {
  luaL_getmetatable(L, name);
  lua_setmetatable(L, -2);
}
static inline void *yp_testudata(lua_State *L, int idx, const char *name) {
  void *p = lua_touserdata(L, idx);
  int same;
  if (!p || !lua_getmetatable(L, idx)) return NULL;
  luaL_getmetatable(L, name);
  same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}
#else
#define yp_setmetatable(L, name) luaL_setmetatable((L), (name))
#define yp_testudata(L, idx, name) luaL_testudata((L), (idx), (name))
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

/* Where numbers are doubles, the largest magnitude up to which every integer is exact. */
#define YP_EXACT_DOUBLE_MAX 9007199254740992.0 /* 2^53 */

/* Is the value at idx a number that holds an integer exactly, so lua_tointeger may read it?
 * With a subtype: an integer (a float never is). Without: an integral double within +-2^53;
 * beyond that the digits the caller wrote may already be gone, so it is not an integer. */
#if YP_INTEGER_SUBTYPE
#define yp_isinteger(L, i) lua_isinteger((L), (i))
#else
#include <math.h>
static inline int yp_isinteger(lua_State *L, int idx) {
  lua_Number n;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  n = lua_tonumber(L, idx);
  return n == floor(n) && fabs(n) <= YP_EXACT_DOUBLE_MAX; /* false for NaN and infinities */
}
#endif

/* LuaJIT's boxed 64-bit integers (`3049040650094403584LL`, `...ULL`), the exact way to write
 * a large ID there. Its lua.h has no name for the cdata type and the C API cannot read a cdata,
 * but the FFI's own __tostring spells an int64_t/uint64_t as its digits plus LL/ULL (any other
 * cdata as "cdata<...>: 0x..."). Writes the digits (with '-') into out and returns their length,
 * or 0 when idx is not such a cdata. Elsewhere no value has type 10, so this always says 0. */
#define YP_TCDATA 10
static inline size_t yp_int64_cdata_digits(lua_State *L, int idx, char out[24]) {
  size_t n = 0, len;
  const char *s;
  if (lua_type(L, idx) != YP_TCDATA || !luaL_callmeta(L, idx, "__tostring")) return 0;
  s = lua_tolstring(L, -1, &len);
  if (s && len >= 3 && len <= 23 && strcmp(s + len - 2, "LL") == 0) {
    len -= (len >= 4 && s[len - 3] == 'U') ? 3 : 2;
    for (n = (s[0] == '-'); n < len && s[n] >= '0' && s[n] <= '9'; n++) {}
    if (n == len && len > (size_t)(s[0] == '-')) memcpy(out, s, n);
    else n = 0;
  }
  lua_pop(L, 1);
  return n;
}

#endif
