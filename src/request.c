/* request.c: parameter validation and encoding into path, query string and JSON body.
 * IDs keep every digit: integers are written from Lua integers or checked decimal strings. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "request.h"

#define MAX_ID_DIGITS 20 /* 17896360390850257349 is the longest ID seen in the docs */

static const char *type_name(const yp_field *f) {
  switch (f->type) {
    case YP_STRING: return "a string";
    case YP_INTEGER: return "an integer or a decimal string";
    case YP_BOOLEAN: return "a boolean";
    case YP_OBJECT: return "a table";
    default: return "a non-empty list of tables";
  }
}

static int wrong_type(lua_State *L, const char *fn, const char *name, const yp_field *f, int idx) {
  return luaL_error(L, "%s: parameter '%s' must be %s (got %s)", fn, name, type_name(f),
                    luaL_typename(L, idx));
}

/* Every table key must name a field: a typo such as productID would otherwise be dropped silently. */
static void check_names(lua_State *L, const char *fn, const char *prefix, int t,
                        const yp_field *fields) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: %sparameter names must be strings (got %s)", fn, prefix,
                 luaL_typename(L, -1));
    const char *key = lua_tostring(L, -1);
    const yp_field *f, *near = NULL;
    for (f = fields; f->name; f++) {
      if (strcmp(f->name, key) == 0) break;
      if (strcasecmp(f->name, key) == 0) near = f;
    }
    if (!f->name) {
      if (near)
        luaL_error(L, "%s: unknown parameter '%s%s' (did you mean '%s%s'?)", fn, prefix, key,
                   prefix, near->name);
      luaL_error(L, "%s: unknown parameter '%s%s'", fn, prefix, key);
    }
  }
}

/* Wire text of an integer parameter, pushed as a string. Floats are accepted only when they
 * are exact: above 2^53 a double has already lost digits of the ID it was meant to carry. */
static void push_integer_text(lua_State *L, const char *fn, const char *name, const yp_field *f,
                              int idx) {
  char num[32];
  size_t len;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (yp_isinteger(L, idx)) {
      snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
    } else {
      /* A float that is integral within 2^53 (12.0) is taken. Beyond, the digits the caller
       * wrote may already be gone, which is also where plain numbers stop being exact on 5.1,
       * 5.2 and LuaJIT: there an integer literal above 2^53 is refused here too. */
      double d = (double)lua_tonumber(L, idx);
      if (!(d == floor(d) && fabs(d) <= YP_EXACT_DOUBLE_MAX))
        luaL_error(L,
                   "%s: parameter '%s' is a number that cannot hold an exact integer; "
                   "pass an integer or a decimal string",
                   fn, name);
      snprintf(num, sizeof num, "%.0f", d);
    }
    lua_pushstring(L, num);
    return;
  }
  if ((len = yp_int64_cdata_digits(L, idx, num)) > 0) {
    lua_pushlstring(L, num, len);
    return;
  }
  if (lua_type(L, idx) != LUA_TSTRING) wrong_type(L, fn, name, f, idx);
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  size_t i = (n > 0 && s[0] == '-') ? 1 : 0, digits = n - i;
  int ok = digits >= 1 && digits <= MAX_ID_DIGITS && !(digits > 1 && s[i] == '0');
  for (; ok && i < n; i++) ok = s[i] >= '0' && s[i] <= '9';
  if (!ok)
    luaL_error(L, "%s: parameter '%s' must be an integer or a decimal string (got \"%s\")", fn,
               name, n > 40 ? "..." : s);
  lua_pushvalue(L, idx);
}

/* Wire text of a string parameter, pushed. A number is taken as its decimal text under the
 * integer rule above (IDs such as productId often arrive as numbers, even as 12.0). */
static void push_string_text(lua_State *L, const char *fn, const char *name, const yp_field *f,
                             int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER || lua_type(L, idx) == YP_TCDATA) {
    push_integer_text(L, fn, name, f, idx);
    return;
  }
  if (lua_type(L, idx) != LUA_TSTRING) wrong_type(L, fn, name, f, idx);
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  if (!json_utf8_valid(s, n)) luaL_error(L, "%s: parameter '%s' is not valid UTF-8", fn, name);
  lua_pushvalue(L, idx);
}

/* A value that reaches the URL must not smuggle in a header line or a different request. */
static void check_url_safe(lua_State *L, const char *fn, const char *name, int idx, int in_path) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
      luaL_error(L, "%s: parameter '%s' must not contain CR, LF or NUL", fn, name);
  if (!in_path) return;
  if (n == 0) luaL_error(L, "%s: parameter '%s' must not be empty", fn, name);
  if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strpbrk(s, "/\\?#%"))
    luaL_error(L, "%s: parameter '%s' would change the request path (\"%s\")", fn, name,
               n > 40 ? "..." : s);
}

static void push_scalar_text(lua_State *L, const char *fn, const char *name, const yp_field *f,
                             int idx) {
  if (f->type == YP_INTEGER) push_integer_text(L, fn, name, f, idx);
  else if (f->type == YP_STRING) push_string_text(L, fn, name, f, idx);
  else if (lua_type(L, idx) == LUA_TBOOLEAN) lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
  else wrong_type(L, fn, name, f, idx);
}

static void encode_object(lua_State *L, json_buf *b, const char *fn, const char *prefix, int t,
                          const yp_field *fields, int place);

static void encode_value(lua_State *L, json_buf *b, const char *fn, const char *name,
                         const yp_field *f, int idx) {
  idx = yp_absindex(L, idx);
  if (f->type == YP_OBJECT) {
    if (!lua_istable(L, idx)) wrong_type(L, fn, name, f, idx);
    lua_pushfstring(L, "%s.", name);
    encode_object(L, b, fn, lua_tostring(L, -1), idx, f->fields, 0);
    lua_pop(L, 1);
    return;
  }
  if (f->type == YP_LIST) {
    size_t n = lua_istable(L, idx) ? yp_rawlen(L, idx) : 0, count = 0;
    if (n == 0) wrong_type(L, fn, name, f, idx);
    for (lua_pushnil(L); lua_next(L, idx); lua_pop(L, 1)) count++;
    if (count != n) luaL_error(L, "%s: parameter '%s' must be a list (keys 1..n only)", fn, name);
    json_buf_add_char(L, b, '[');
    for (size_t i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, (lua_Integer)i);
      lua_pushfstring(L, "%s[%d].", name, (int)i);
      if (!lua_istable(L, -2))
        luaL_error(L, "%s: parameter '%s[%d]' must be a table (got %s)", fn, name, (int)i,
                   luaL_typename(L, -2));
      if (i > 1) json_buf_add_char(L, b, ',');
      encode_object(L, b, fn, lua_tostring(L, -1), yp_absindex(L, -2), f->fields, 0);
      lua_pop(L, 2);
    }
    json_buf_add_char(L, b, ']');
    return;
  }
  push_scalar_text(L, fn, name, f, idx);
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  if (f->type == YP_STRING) json_buf_add_string(L, b, s, n);
  else json_buf_add(L, b, s, n);
  lua_pop(L, 1);
}

/* Writes the members of `fields` that belong to `place` (0 = nested object) in table order. */
static void encode_object(lua_State *L, json_buf *b, const char *fn, const char *prefix, int t,
                          const yp_field *fields, int place) {
  int first = 1;
  if (place == 0) check_names(L, fn, prefix, t, fields);
  json_buf_add_char(L, b, '{');
  for (const yp_field *f = fields; f->name; f++) {
    if (f->place != place) continue;
    lua_getfield(L, t, f->name);
    lua_pushfstring(L, "%s%s", prefix, f->name);
    const char *name = lua_tostring(L, -1);
    if (lua_isnil(L, -2)) {
      if (f->required) luaL_error(L, "%s: parameter '%s' is required", fn, name);
    } else {
      if (!first) json_buf_add_char(L, b, ',');
      first = 0;
      json_buf_add_string(L, b, f->name, strlen(f->name));
      json_buf_add_char(L, b, ':');
      encode_value(L, b, fn, name, f, -2);
    }
    lua_pop(L, 2);
  }
  json_buf_add_char(L, b, '}');
}

void yp_percent_encode(luaL_Buffer *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      luaL_addchar(b, (char)c);
    } else {
      luaL_addchar(b, '%');
      luaL_addchar(b, hex[c >> 4]);
      luaL_addchar(b, hex[c & 15]);
    }
  }
}

/* Pushes the percent-encoded text of each path or query parameter, in descriptor order, as a
 * table name -> text, after every check. The URL is then assembled without touching the stack. */
static void push_url_parts(lua_State *L, const yp_endpoint *ep, int t) {
  lua_newtable(L);
  int parts = lua_gettop(L);
  for (const yp_field *f = ep->params; f->name; f++) {
    if (f->place != YP_PATH && f->place != YP_QUERY) continue;
    lua_getfield(L, t, f->name);
    if (lua_isnil(L, -1)) {
      if (f->required) luaL_error(L, "%s: parameter '%s' is required", ep->name, f->name);
      lua_pop(L, 1);
      continue;
    }
    push_scalar_text(L, ep->name, f->name, f, -1);
    check_url_safe(L, ep->name, f->name, -1, f->place == YP_PATH);
    luaL_Buffer b;
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    luaL_buffinit(L, &b);
    yp_percent_encode(&b, s, n);
    luaL_pushresult(&b);
    lua_setfield(L, parts, f->name);
    lua_pop(L, 2);
  }
}

static void push_url(lua_State *L, const char *base_url, const yp_endpoint *ep, int parts) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, base_url);
  for (const char *p = ep->path; *p;) {
    const char *open = strchr(p, '{');
    if (!open) {
      luaL_addstring(&b, p);
      break;
    }
    luaL_addlstring(&b, p, (size_t)(open - p));
    const char *close = strchr(open, '}');
    lua_pushlstring(L, open + 1, (size_t)(close - open - 1));
    lua_rawget(L, parts);
    luaL_addvalue(&b);
    p = close + 1;
  }
  char sep = '?';
  for (const yp_field *f = ep->params; f->name; f++) {
    if (f->place != YP_QUERY) continue;
    /* Buffer operations need the buffer's slot on top, so look the value up only to test it. */
    lua_getfield(L, parts, f->name);
    int present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!present) continue;
    luaL_addchar(&b, sep);
    sep = '&';
    luaL_addstring(&b, f->name);
    luaL_addchar(&b, '=');
    lua_getfield(L, parts, f->name);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}

void yp_build_request(lua_State *L, const char *base_url, const yp_endpoint *ep, int params_idx,
                      yp_request *out) {
  int top = lua_gettop(L), t;
  if (lua_isnoneornil(L, params_idx)) {
    lua_newtable(L); /* no parameters given: the same checks against an empty table */
    t = lua_gettop(L);
  } else {
    luaL_checktype(L, params_idx, LUA_TTABLE);
    t = yp_absindex(L, params_idx);
  }
  check_names(L, ep->name, "", t, ep->params);
  push_url_parts(L, ep, t);
  int parts = lua_gettop(L);
  push_url(L, base_url, ep, parts);
  if (strcmp(ep->method, "POST") == 0 && !(ep->flags & YP_TOKEN)) {
    json_buf *b = json_buf_push(L);
    encode_object(L, b, ep->name, "", t, ep->params, YP_BODY);
    lua_pushlstring(L, b->data, b->len);
    lua_remove(L, -2);
  } else {
    lua_pushnil(L);
  }
  while (lua_gettop(L) > top + 2) lua_remove(L, top + 1); /* keep only url, body */
  out->url = lua_tostring(L, -2);
  out->path = out->url + strlen(base_url);
  out->body = lua_tolstring(L, -1, &out->body_len);
}
