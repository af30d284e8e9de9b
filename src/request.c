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
    for (f = fields; f->name && strcmp(f->name, key) != 0; f++) {
    }
    if (f->name) continue;
    for (f = fields; f->name; f++) /* a typo's case-insensitive match names the suggestion */
      if (strcasecmp(f->name, key) == 0) near = f;
    if (near)
      luaL_error(L, "%s: unknown parameter '%s%s' (did you mean '%s%s'?)", fn, prefix, key,
                 prefix, near->name);
    luaL_error(L, "%s: unknown parameter '%s%s'", fn, prefix, key);
  }
}

/* The decimal digits of v (with '-'), into out; returns their length. Every call with an ID
 * goes through here, so no printf. */
static size_t decimal(char out[24], long long v) {
  char tmp[24];
  size_t n = 0, len = 0;
  unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) out[len++] = '-';
  while (n) out[len++] = tmp[--n];
  return len;
}

/* Wire text of an integer parameter, pushed as a string. Floats are accepted only when they
 * are exact: above 2^53 a double has already lost digits of the ID it was meant to carry. */
static void push_integer_text(lua_State *L, const char *fn, const char *name, const yp_field *f,
                              int idx) {
  char num[32];
  size_t len;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    if (yp_isinteger(L, idx)) {
      lua_pushlstring(L, num, decimal(num, (long long)lua_tointeger(L, idx)));
      return;
    }
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

/* RFC 3986 unreserved characters, which travel as they are. */
static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

void yp_percent_encode(luaL_Buffer *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c)) {
      luaL_addchar(b, (char)c);
    } else {
      luaL_addchar(b, '%');
      luaL_addchar(b, hex[c >> 4]);
      luaL_addchar(b, hex[c & 15]);
    }
  }
}

static int in_url(const yp_field *f) {
  return f->place == YP_PATH || f->place == YP_QUERY;
}

/* Leaves on the stack, for each path or query parameter in descriptor order, its wire text
 * before percent-encoding (nil when absent), after every check. The URL is then written from
 * these slots in one pass, with no table and no intermediate string per parameter. */
static void push_url_texts(lua_State *L, const yp_endpoint *ep, int t) {
  for (const yp_field *f = ep->params; f->name; f++) {
    if (!in_url(f)) continue;
    luaL_checkstack(L, 4, "yeastar.partner");
    lua_getfield(L, t, f->name);
    if (lua_isnil(L, -1)) {
      if (f->required) luaL_error(L, "%s: parameter '%s' is required", ep->name, f->name);
      continue; /* the nil keeps the parameter's slot */
    }
    push_scalar_text(L, ep->name, f->name, f, -1);
    check_url_safe(L, ep->name, f->name, -1, f->place == YP_PATH);
    lua_replace(L, -2);
  }
}

/* A bounded writer: copies what fits in cap bytes, counts everything, so that one pass both
 * sizes and (when it fits) writes the URL. */
typedef struct url_out {
  char *dst;
  size_t cap, len;
} url_out;

static void put(url_out *o, const char *s, size_t n) {
  if (o->len < o->cap) memcpy(o->dst + o->len, s, n < o->cap - o->len ? n : o->cap - o->len);
  o->len += n;
}

static void put_encoded(url_out *o, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  size_t plain = 0;
  while (plain < n && unreserved((unsigned char)s[plain])) plain++;
  put(o, s, plain);
  for (size_t i = plain; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
    if (unreserved(c)) put(o, (const char *)&c, 1);
    else put(o, esc, 3);
  }
}

/* The URL from the text slots that push_url_texts left from index `texts` on; returns its length
 * (without the NUL), of which at most cap bytes were written. Reads the stack, never changes it. */
static size_t write_url(lua_State *L, const char *base_url, const yp_endpoint *ep, int texts,
                        char *dst, size_t cap) {
  url_out o = {dst, cap, 0};
  size_t n;
  put(&o, base_url, strlen(base_url));
  for (const char *p = ep->path; *p;) {
    const char *open = strchr(p, '{');
    if (!open) {
      put(&o, p, strlen(p));
      break;
    }
    put(&o, p, (size_t)(open - p));
    const char *close = strchr(open, '}');
    size_t len = (size_t)(close - open - 1);
    int slot = texts;
    const yp_field *f = ep->params;
    for (; f->name; f++) {
      if (!in_url(f)) continue;
      if (f->place == YP_PATH && strncmp(f->name, open + 1, len) == 0 && !f->name[len]) break;
      slot++;
    }
    const char *s = f->name ? lua_tolstring(L, slot, &n) : NULL; /* required, so a string */
    if (s) put_encoded(&o, s, n);
    p = close + 1;
  }
  const char *sep = "?";
  int slot = texts;
  for (const yp_field *f = ep->params; f->name; f++) {
    if (!in_url(f)) continue;
    const char *s = f->place == YP_QUERY ? lua_tolstring(L, slot, &n) : NULL;
    slot++;
    if (!s) continue;
    put(&o, sep, 1);
    sep = "&";
    put(&o, f->name, strlen(f->name));
    put(&o, "=", 1);
    put_encoded(&o, s, n);
  }
  return o.len;
}

/* Pushes the URL as a string, or nil when it fits `scratch` (cap bytes, NUL included) and is
 * written there; returns the URL's text either way. */
static const char *push_url(lua_State *L, const char *base_url, const yp_endpoint *ep, int texts,
                            char *scratch, size_t cap) {
  char local[512]; /* most URLs are a fraction of this: one pass, one string */
  char *dst = scratch ? scratch : local;
  size_t room = scratch ? cap : sizeof local;
  size_t len = write_url(L, base_url, ep, texts, dst, room);
  if (len < room) {
    dst[len] = '\0';
    if (scratch) {
      lua_pushnil(L);
      return scratch;
    }
  } else { /* longer: a second pass into memory the collector owns, so an error cannot leak it */
    dst = (char *)yp_newuserdata(L, len + 1);
    write_url(L, base_url, ep, texts, dst, len + 1);
  }
  lua_pushlstring(L, dst, len);
  if (dst != local) lua_remove(L, -2);
  return lua_tostring(L, -1);
}

void yp_build_request_in(lua_State *L, const char *base_url, const yp_endpoint *ep,
                         int params_idx, yp_request *out, char *scratch, size_t cap) {
  int top = lua_gettop(L), t;
  if (lua_isnoneornil(L, params_idx)) {
    lua_newtable(L); /* no parameters given: the same checks against an empty table */
    t = lua_gettop(L);
  } else {
    luaL_checktype(L, params_idx, LUA_TTABLE);
    t = yp_absindex(L, params_idx);
  }
  check_names(L, ep->name, "", t, ep->params);
  int texts = lua_gettop(L) + 1;
  push_url_texts(L, ep, t);
  out->url = push_url(L, base_url, ep, texts, scratch, cap);
  out->path = out->url + strlen(base_url);
  if (strcmp(ep->method, "POST") == 0 && !(ep->flags & YP_TOKEN)) {
    json_buf *b = json_buf_push(L);
    encode_object(L, b, ep->name, "", t, ep->params, YP_BODY);
    lua_pushlstring(L, b->data, b->len);
    lua_remove(L, -2);
  } else {
    lua_pushnil(L);
  }
  int n = lua_gettop(L); /* keep only url, body: n - 1 >= top + 1, so nothing is overwritten */
  lua_pushvalue(L, n - 1);
  lua_replace(L, top + 1);
  lua_pushvalue(L, n);
  lua_replace(L, top + 2);
  lua_settop(L, top + 2);
  out->body = lua_tolstring(L, -1, &out->body_len);
}

void yp_build_request(lua_State *L, const char *base_url, const yp_endpoint *ep, int params_idx,
                      yp_request *out) {
  yp_build_request_in(L, base_url, ep, params_idx, out, NULL, 0);
}
