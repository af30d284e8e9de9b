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

/* Where a call's parameter values are read from. A table without a metatable is read once, by
 * the name check's own lua_next pass, into one stack slot per field: exactly what a lua_getfield
 * per field would give, for much less. With a metatable, __index may compute values and run
 * code, so each value is read with lua_getfield when it is needed, in the order it always was. */
typedef struct params {
  int t;      /* the table */
  int values; /* stack index of the first field's slot; 0: read with lua_getfield */
} params;

/* Every table key must name a field: a typo such as productID would otherwise be dropped silently.
 * With `values`, each key's value is also stored in its field's slot (values + field index). */
static void check_names(lua_State *L, const char *fn, const char *prefix, int t,
                        const yp_field *fields, int values) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: %sparameter names must be strings (got %s)", fn, prefix,
                 luaL_typename(L, -2));
    const char *key = lua_tostring(L, -2);
    const yp_field *f, *near = NULL;
    for (f = fields; f->name && (f->name[0] != key[0] || strcmp(f->name, key) != 0); f++) {
    }
    if (f->name) {
      if (values) lua_replace(L, values + (int)(f - fields));
      else lua_pop(L, 1);
      continue;
    }
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

/* A scalar parameter's wire text, before any escaping: the bytes of the Lua string at its index
 * (anchored there), digits written into num, or a literal. Nothing is pushed, so a call's IDs
 * cost no Lua string of their own. */
typedef struct scalar {
  const char *s; /* NULL: the parameter is absent */
  size_t n;
  char num[24];
} scalar;

/* Wire text of an integer parameter. Floats are accepted only when they are exact: above 2^53 a
 * double has already lost digits of the ID it was meant to carry. */
static void integer_text(lua_State *L, const char *fn, const char *name, const yp_field *f,
                         int idx, int type, scalar *out) {
  out->s = out->num;
  if (type == LUA_TNUMBER) {
    if (yp_isinteger(L, idx)) {
      out->n = decimal(out->num, (long long)lua_tointeger(L, idx));
      out->num[out->n] = '\0'; /* a path parameter's checks read it as a C string */
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
    /* at most 17 characters: 2^53 has 16 digits */
    out->n = (size_t)snprintf(out->num, sizeof out->num, "%.0f", d);
    return;
  }
  if ((out->n = yp_int64_cdata_digits(L, idx, out->num)) > 0) {
    out->num[out->n] = '\0'; /* at most 21 characters */
    return;
  }
  if (type != LUA_TSTRING) wrong_type(L, fn, name, f, idx);
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  size_t i = (n > 0 && s[0] == '-') ? 1 : 0, digits = n - i;
  int ok = digits >= 1 && digits <= MAX_ID_DIGITS && !(digits > 1 && s[i] == '0');
  for (; ok && i < n; i++) ok = s[i] >= '0' && s[i] <= '9';
  if (!ok)
    luaL_error(L, "%s: parameter '%s' must be an integer or a decimal string (got \"%s\")", fn,
               name, n > 40 ? "..." : s);
  out->s = s;
  out->n = n;
}

/* Wire text of a string parameter. A number is taken as its decimal text under the integer rule
 * above (IDs such as productId often arrive as numbers, even as 12.0). */
static void string_text(lua_State *L, const char *fn, const char *name, const yp_field *f,
                        int idx, int type, scalar *out) {
  if (type == LUA_TNUMBER || type == YP_TCDATA) {
    integer_text(L, fn, name, f, idx, type, out);
    return;
  }
  if (type != LUA_TSTRING) wrong_type(L, fn, name, f, idx);
  out->s = lua_tolstring(L, idx, &out->n);
  if (!json_utf8_valid(out->s, out->n))
    luaL_error(L, "%s: parameter '%s' is not valid UTF-8", fn, name);
}

/* A value that reaches the URL must not smuggle in a header line or a different request. */
static void check_url_safe(lua_State *L, const char *fn, const char *name, const scalar *v,
                           int in_path) {
  const char *s = v->s;
  size_t n = v->n;
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
      luaL_error(L, "%s: parameter '%s' must not contain CR, LF or NUL", fn, name);
  if (!in_path) return;
  if (n == 0) luaL_error(L, "%s: parameter '%s' must not be empty", fn, name);
  /* s has no NUL (checked above), so the C string functions see all of it */
  if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || strpbrk(s, "/\\?#%"))
    luaL_error(L, "%s: parameter '%s' would change the request path (\"%s\")", fn, name,
               n > 40 ? "..." : s);
}

/* type: lua_type(L, idx), which the caller has at hand. */
static void scalar_text(lua_State *L, const char *fn, const char *name, const yp_field *f,
                        int idx, int type, scalar *out) {
  if (f->type == YP_INTEGER) integer_text(L, fn, name, f, idx, type, out);
  else if (f->type == YP_STRING) string_text(L, fn, name, f, idx, type, out);
  else if (type == LUA_TBOOLEAN) {
    out->s = lua_toboolean(L, idx) ? "true" : "false";
    out->n = strlen(out->s);
  } else wrong_type(L, fn, name, f, idx);
}

static void encode_object(lua_State *L, json_buf *b, const char *fn, const char *prefix,
                          const params *p, const yp_field *fields, int place);

static void encode_value(lua_State *L, json_buf *b, const char *fn, const char *name,
                         const yp_field *f, int idx) {
  idx = yp_absindex(L, idx);
  if (f->type == YP_OBJECT) {
    if (!lua_istable(L, idx)) wrong_type(L, fn, name, f, idx);
    params nested = {idx, 0};
    lua_pushfstring(L, "%s.", name);
    encode_object(L, b, fn, lua_tostring(L, -1), &nested, f->fields, 0);
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
      params item = {yp_absindex(L, -2), 0};
      encode_object(L, b, fn, lua_tostring(L, -1), &item, f->fields, 0);
      lua_pop(L, 2);
    }
    json_buf_add_char(L, b, ']');
    return;
  }
  scalar v;
  scalar_text(L, fn, name, f, idx, lua_type(L, idx), &v);
  if (f->type == YP_STRING) json_buf_add_string(L, b, v.s, v.n);
  else json_buf_add(L, b, v.s, v.n);
}

/* Writes the members of `fields` that belong to `place` (0 = nested object) in table order. */
static void encode_object(lua_State *L, json_buf *b, const char *fn, const char *prefix,
                          const params *p, const yp_field *fields, int place) {
  int first = 1;
  if (place == 0) check_names(L, fn, prefix, p->t, fields, 0);
  json_buf_add_char(L, b, '{');
  for (const yp_field *f = fields; f->name; f++) {
    if (f->place != place) continue;
    if (p->values) lua_pushvalue(L, p->values + (int)(f - fields));
    else lua_getfield(L, p->t, f->name);
    /* a top-level name is the field's own: no string to make */
    const char *name = *prefix ? lua_pushfstring(L, "%s%s", prefix, f->name) : f->name;
    int value = *prefix ? -2 : -1;
    if (lua_isnil(L, value)) {
      if (f->required) luaL_error(L, "%s: parameter '%s' is required", fn, name);
    } else {
      if (!first) json_buf_add_char(L, b, ',');
      first = 0;
      json_buf_add_string(L, b, f->name, strlen(f->name));
      json_buf_add_char(L, b, ':');
      encode_value(L, b, fn, name, f, value);
    }
    lua_pop(L, *prefix ? 2 : 1);
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

/* Fills texts[] with the wire text of each path or query parameter in descriptor order (s NULL
 * when absent), after every check. The values stay on the stack, so the texts stay valid; the
 * URL is then written from them in one pass. */
static void url_texts(lua_State *L, const yp_endpoint *ep, const params *p, scalar *texts) {
  for (const yp_field *f = ep->params; f->name; f++) {
    if (!in_url(f)) continue;
    scalar *v = texts++;
    int idx;
    if (p->values) {
      idx = p->values + (int)(f - ep->params);
    } else {
      lua_getfield(L, p->t, f->name); /* left on the stack: it anchors the text */
      idx = lua_gettop(L);
    }
    int type = lua_type(L, idx);
    v->s = NULL;
    if (type == LUA_TNIL) {
      if (f->required) luaL_error(L, "%s: parameter '%s' is required", ep->name, f->name);
      continue;
    }
    scalar_text(L, ep->name, f->name, f, idx, type, v);
    check_url_safe(L, ep->name, f->name, v, f->place == YP_PATH);
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

/* The URL from texts (see url_texts); returns its length (without the NUL), of which at most cap
 * bytes were written. */
static size_t write_url(const char *base_url, size_t base_len, const yp_endpoint *ep,
                        const scalar *texts, char *dst, size_t cap) {
  url_out o = {dst, cap, 0};
  put(&o, base_url, base_len);
  for (const char *p = ep->path; *p;) {
    const char *open = strchr(p, '{');
    if (!open) {
      put(&o, p, strlen(p));
      break;
    }
    put(&o, p, (size_t)(open - p));
    const char *close = strchr(open, '}');
    size_t len = (size_t)(close - open - 1);
    const scalar *v = texts;
    const yp_field *f = ep->params;
    for (; f->name; f++) {
      if (!in_url(f)) continue;
      if (f->place == YP_PATH && strncmp(f->name, open + 1, len) == 0 && !f->name[len]) break;
      v++;
    }
    if (f->name && v->s) put_encoded(&o, v->s, v->n); /* required, so present */
    p = close + 1;
  }
  const char *sep = "?";
  for (const yp_field *f = ep->params; f->name; f++) {
    if (!in_url(f)) continue;
    const scalar *v = texts++;
    if (f->place != YP_QUERY || !v->s) continue;
    put(&o, sep, 1);
    sep = "&";
    put(&o, f->name, strlen(f->name));
    put(&o, "=", 1);
    put_encoded(&o, v->s, v->n);
  }
  return o.len;
}

/* Writes the URL into scratch (cap bytes, NUL included) when it fits and returns scratch; else
 * (or without scratch) stores it as a string in stack slot `slot` and returns its text. */
static const char *url_into(lua_State *L, const char *base_url, size_t base_len,
                            const yp_endpoint *ep, const scalar *texts, char *scratch, size_t cap,
                            int slot) {
  char local[512]; /* most URLs are a fraction of this: one pass, one string */
  char *dst = scratch ? scratch : local;
  size_t room = scratch ? cap : sizeof local;
  size_t len = write_url(base_url, base_len, ep, texts, dst, room);
  if (len < room) {
    dst[len] = '\0';
    if (scratch) return scratch;
  } else { /* longer: a second pass into memory the collector owns, so an error cannot leak it */
    dst = (char *)yp_newuserdata(L, len + 1);
    write_url(base_url, base_len, ep, texts, dst, len + 1);
  }
  lua_pushlstring(L, dst, len);
  lua_replace(L, slot);
  return lua_tostring(L, slot); /* the userdata, if any, goes with the caller's settop */
}

void yp_build_request_in(lua_State *L, const char *base_url, const yp_endpoint *ep,
                         int params_idx, yp_request *out, char *scratch, size_t cap) {
  int top = lua_gettop(L), given = !lua_isnoneornil(L, params_idx), nfields = 0, nurl = 0;
  params p = {0, 0};
  if (given) {
    luaL_checktype(L, params_idx, LUA_TTABLE);
    p.t = yp_absindex(L, params_idx);
  }
  for (const yp_field *f = ep->params; f->name; f++) {
    nfields++;
    nurl += in_url(f);
  }
  luaL_checkstack(L, nfields + 8, "yeastar.partner");
  lua_settop(L, top + 2); /* the slots of the url and the body, nil until made */
  if (!given) {
    lua_newtable(L); /* no parameters given: the same checks against an empty table */
    p.t = top + 3;
  }
  if (lua_getmetatable(L, p.t)) {
    lua_pop(L, 1);
  } else {
    p.values = lua_gettop(L) + 1;
    lua_settop(L, p.values + nfields - 1); /* one nil per field, until check_names fills it */
  }
  check_names(L, ep->name, "", p.t, ep->params, p.values);
  scalar local[8]; /* endpoints have at most a few URL parameters */
  scalar *texts = nurl <= 8 ? local : (scalar *)yp_newuserdata(L, (size_t)nurl * sizeof *texts);
  url_texts(L, ep, &p, texts);
  size_t base_len = strlen(base_url);
  out->url = url_into(L, base_url, base_len, ep, texts, scratch, cap, top + 1);
  out->path = out->url + base_len;
  out->body = NULL;
  out->body_len = 0;
  if (strcmp(ep->method, "POST") == 0 && !(ep->flags & YP_TOKEN)) {
    json_buf *b = json_buf_push(L);
    encode_object(L, b, ep->name, "", &p, ep->params, YP_BODY);
    lua_pushlstring(L, b->data, b->len);
    lua_replace(L, top + 2);
    out->body = lua_tolstring(L, top + 2, &out->body_len);
  }
  lua_settop(L, top + 2);
}

void yp_build_request(lua_State *L, const char *base_url, const yp_endpoint *ep, int params_idx,
                      yp_request *out) {
  yp_build_request_in(L, base_url, ep, params_idx, out, NULL, 0);
}
