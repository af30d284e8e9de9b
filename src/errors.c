/* errors.c: construction and printing of error objects (see errors.h for their fields), and the
 * sanitizer that keeps secrets, forged log lines and unbounded server text out of every message. */
#include <stdio.h>
#include <string.h>

#include "errors.h"

#define ELLIPSIS "..."
#define REDACTED "[REDACTED]"

/* Length of the well-formed UTF-8 sequence at p (at most n bytes available), or 0. */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  size_t len, i;
  unsigned min;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
  else return 0;
  if (n < len) return 0;
  unsigned cp = c & (0x3F >> (len - 1));
  for (i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

/* Pushes the spellings under which a secret can come back from a server: as sent in a form or
 * query (percent-encoded, either hex case, '+' for space) and inside a JSON string. Returns the
 * number of values pushed (duplicates are skipped by the caller's comparison, not here). */
static int push_spellings(lua_State *L, const char *s) {
  static const char upper[] = "0123456789ABCDEF", lower[] = "0123456789abcdef";
  luaL_Buffer b;
  int variant;
  lua_pushstring(L, s);
  for (variant = 0; variant < 4; variant++) {
    const unsigned char *p;
    luaL_buffinit(L, &b);
    for (p = (const unsigned char *)s; *p; p++) {
      unsigned c = *p;
      int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_' || c == '~';
      if (variant == 3) { /* JSON string escaping, '/' escaped as some encoders do */
        if (c == '"' || c == '\\' || c == '/') {
          luaL_addchar(&b, '\\');
          luaL_addchar(&b, (char)c);
        } else if (c < 0x20) {
          char u[8];
          snprintf(u, sizeof u, "\\u%04x", c);
          luaL_addstring(&b, u);
        } else {
          luaL_addchar(&b, (char)c);
        }
      } else if (plain) {
        luaL_addchar(&b, (char)c);
      } else if (variant == 2 && c == ' ') {
        luaL_addchar(&b, '+');
      } else {
        const char *hex = variant == 1 ? lower : upper;
        luaL_addchar(&b, '%');
        luaL_addchar(&b, hex[c >> 4]);
        luaL_addchar(&b, hex[c & 15]);
      }
    }
    luaL_pushresult(&b);
  }
  return 5;
}

void yp_push_safe_text(lua_State *L, const char *s, size_t len, size_t max,
                       const char *const *secrets) {
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  char out[YP_MESSAGE_MAX + 1];
  size_t n = 0, i;
  int base = lua_gettop(L), nspell = 0, cut = 0;
  if (max > YP_MESSAGE_MAX) max = YP_MESSAGE_MAX;
  if (max < sizeof ELLIPSIS) max = sizeof ELLIPSIS;
  luaL_checkstack(L, 5 * YP_MAX_SECRETS + 4, "yeastar.partner");
  for (i = 0; secrets && i < YP_MAX_SECRETS; i++)
    if (secrets[i] && strlen(secrets[i]) >= YP_REDACT_MIN) nspell += push_spellings(L, secrets[i]);

  size_t safe = 0; /* output length at the last character boundary that leaves room for "..." */
  while (p < end) {
    const char *piece = NULL;
    size_t plen = 0, skip = 0;
    int k;
    for (k = 1; k <= nspell && !skip; k++) {
      size_t sl;
      const char *sp = lua_tolstring(L, base + k, &sl);
      if (sl <= (size_t)(end - p) && memcmp(p, sp, sl) == 0)
        piece = REDACTED, plen = sizeof REDACTED - 1, skip = sl;
    }
    if (!skip) {
      size_t u = utf8_len(p, (size_t)(end - p));
      if (u == 0) piece = "?", plen = 1, skip = 1;
      else if (u == 1) piece = (*p < 0x20 || *p == 0x7F) ? " " : (const char *)p, plen = 1, skip = 1;
      /* NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR: line breaks to some log viewers. */
      else if ((u == 2 && p[0] == 0xC2 && p[1] == 0x85) ||
               (u == 3 && p[0] == 0xE2 && p[1] == 0x80 && (p[2] == 0xA8 || p[2] == 0xA9)))
        piece = " ", plen = 1, skip = u;
      else piece = (const char *)p, plen = u, skip = u;
    }
    if (n + plen > max) {
      cut = 1;
      break;
    }
    memcpy(out + n, piece, plen);
    n += plen;
    p += skip;
    if (n <= max - (sizeof ELLIPSIS - 1)) safe = n;
  }
  if (cut) {
    n = safe;
    memcpy(out + n, ELLIPSIS, sizeof ELLIPSIS - 1);
    n += sizeof ELLIPSIS - 1;
  }
  lua_settop(L, base);
  lua_pushlstring(L, out, n);
}

static void set_text(lua_State *L, const char *name, const char *s, size_t max,
                     const char *const *secrets) {
  if (!s) return;
  yp_push_safe_text(L, s, strlen(s), max, secrets);
  lua_setfield(L, -2, name);
}

void yp_push_error(lua_State *L, const yp_error *e) {
  lua_createtable(L, 0, 8);
  set_text(L, "kind", e->kind, YP_CODE_MAX, NULL);
  set_text(L, "code", e->code, YP_CODE_MAX, e->secrets);
  set_text(L, "message", e->message ? e->message : "", YP_MESSAGE_MAX, e->secrets);
  if (e->status) {
    lua_pushinteger(L, (lua_Integer)e->status);
    lua_setfield(L, -2, "status");
  }
  set_text(L, "request_id", e->request_id, YP_REQUEST_ID_MAX, e->secrets);
  lua_pushboolean(L, e->retryable);
  lua_setfield(L, -2, "retryable");
  set_text(L, "endpoint", e->endpoint, YP_CODE_MAX, NULL);
  luaL_getmetatable(L, YP_ERROR_MT);
  lua_setmetatable(L, -2);
}

/* Adds a field of the error for __tostring, between before and after, and returns 1; returns 0
 * when it is not a non-empty string. Each is bounded again: a caller may have replaced it. The
 * raw value stays anchored in the table, so the stack is balanced at every buffer operation. */
static int add_field(lua_State *L, luaL_Buffer *b, const char *name, const char *before,
                     const char *after, size_t max) {
  size_t n = 0;
  lua_pushstring(L, name);
  lua_rawget(L, 1);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  lua_pop(L, 1);
  if (n == 0) return 0;
  luaL_addstring(b, before);
  yp_push_safe_text(L, s, n, max, NULL);
  luaL_addvalue(b);
  luaL_addstring(b, after);
  return 1;
}

/* "create_order: ambiguous error connection_lost (HTTP 502): ... [request 65f...]" */
static int error_tostring(lua_State *L) {
  luaL_Buffer b;
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_getfield(L, 1, "status"); /* 2 */
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "yeastar.partner: ");
  add_field(L, &b, "endpoint", "", ": ", YP_CODE_MAX);
  if (!add_field(L, &b, "kind", "", " error ", YP_CODE_MAX)) luaL_addstring(&b, "unknown error ");
  if (!add_field(L, &b, "code", "", "", YP_CODE_MAX)) luaL_addstring(&b, "unknown");
  if (lua_type(L, 2) == LUA_TNUMBER) {
    char s[32];
    lua_Number st = lua_tonumber(L, 2);
    if (st >= 100 && st <= 999) {
      snprintf(s, sizeof s, " (HTTP %d)", (int)st);
      luaL_addstring(&b, s);
    }
  }
  add_field(L, &b, "message", ": ", "", YP_MESSAGE_MAX);
  add_field(L, &b, "request_id", " [request ", "]", YP_REQUEST_ID_MAX);
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
  lua_Number status = lua_tonumber(L, 6);
  yp_error e = {luaL_checkstring(L, 2), luaL_checkstring(L, 3), lua_tostring(L, 4),
                status >= 100 && status <= 999 ? (long)status : 0, NULL, 0, lua_tostring(L, 5),
                NULL};
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
