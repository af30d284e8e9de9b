/* json.c: the JSON codec: a single-pass, non-recursive strict decoder that keeps 64-bit IDs exact,
 * the GC-owned output buffer, and the deterministic encoder (sorted keys, exact integers). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define BUF_MT "yeastar.partner.json_buf"

void json_push_null(lua_State *L) {
  lua_pushlightuserdata(L, NULL);
}

void json_push_array_mt(lua_State *L) {
  if (luaL_newmetatable(L, JSON_ARRAY_MT)) { /* first use: mark it as dkjson and others read it */
    lua_pushliteral(L, "array");
    lua_setfield(L, -2, "__jsontype");
  }
}

/* Pushes package.loaded.cjson[field], or nil: lua-cjson's markers, where that library is loaded. */
static void push_cjson_field(lua_State *L, const char *field) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "cjson");
    lua_remove(L, -2);
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, field);
      lua_remove(L, -2);
      return;
    }
  }
  lua_pop(L, 1);
  lua_pushnil(L);
}

/* 1 when the empty table at idx is marked as an array: our marker (which decoded arrays carry),
 * any metatable with __jsontype = "array", or lua-cjson's array_mt / empty_array_mt. */
static int marked_array(lua_State *L, int idx) {
  static const char *const cjson_marks[] = {"array_mt", "empty_array_mt"};
  int yes = 0;
  size_t i;
  if (!lua_getmetatable(L, idx)) return 0;
  json_push_array_mt(L);
  yes = lua_rawequal(L, -1, -2);
  lua_pop(L, 1);
  if (!yes) {
    lua_pushliteral(L, "__jsontype");
    lua_rawget(L, -2);
    yes = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "array") == 0;
    lua_pop(L, 1);
  }
  for (i = 0; !yes && i < sizeof cjson_marks / sizeof *cjson_marks; i++) {
    push_cjson_field(L, cjson_marks[i]);
    yes = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return yes;
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------- */

/* Length of the well-formed sequence at s (s[0] >= 0x80), or 0. The ranges are Unicode's
 * Table 3-7, which is what excludes overlongs (C0, C1, E0 80..9F, F0 80..8F), surrogates
 * (ED A0..BF) and code points above U+10FFFF (F4 90.., F5..FF). */
static size_t utf8_seq(const unsigned char *s, size_t avail) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return (avail >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
  if (c < 0xF0) {
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
    return (avail >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80) ? 3 : 0;
  }
  if (c < 0xF5) {
    if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
    return (avail >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
            (s[3] & 0xC0) == 0x80) ? 4 : 0;
  }
  return 0;
}

int json_utf8_valid(const char *s, size_t n) {
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  while (p < end) {
    /* Most text is ASCII: test eight bytes at a time (memcpy keeps it alignment-safe). */
    if (end - p >= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      if ((w & UINT64_C(0x8080808080808080)) == 0) {
        p += 8;
        continue;
      }
    }
    if (*p < 0x80) {
      p++;
    } else {
      size_t k = utf8_seq(p, (size_t)(end - p));
      if (k == 0) return 0;
      p += k;
    }
  }
  return 1;
}

/* Writes code point cp (<= 0x10FFFF, not a surrogate) as UTF-8 into out; returns the length. */
static size_t utf8_put(char *out, unsigned long cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* ---------------------------------------------------------------------------------------------
 * The buffer
 * ------------------------------------------------------------------------------------------- */

/* Memory comes from the state's allocator so it is counted by collectgarbage("count") and obeys
 * any limit the host put on the state. Safe to call twice. */
static void buf_release(lua_State *L, json_buf *b) {
  if (b->data != NULL) {
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    f(ud, b->data, b->cap, 0);
  }
  b->data = NULL;
  b->len = b->cap = 0;
}

static int buf_gc(lua_State *L) {
  buf_release(L, (json_buf *)lua_touserdata(L, 1));
  return 0;
}

json_buf *json_buf_push(lua_State *L) {
  /* Closed first (no memory, __gc set), acquire later: an error at any point cannot leak. */
  json_buf *b = (json_buf *)yp_newuserdata(L, sizeof *b);
  b->data = NULL;
  b->len = b->cap = 0;
  if (luaL_newmetatable(L, BUF_MT)) {
    lua_pushcfunction(L, buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return b;
}

static void buf_grow(lua_State *L, json_buf *b, size_t extra) {
  void *ud, *p;
  lua_Alloc f = lua_getallocf(L, &ud);
  size_t need, ncap = b->cap ? b->cap : 256;
  if (extra > (size_t)-1 - b->len) luaL_error(L, "not enough memory");
  need = b->len + extra;
  while (ncap < need) ncap = (ncap > (size_t)-1 / 2) ? need : ncap * 2;
  p = f(ud, b->data, b->data ? b->cap : 0, ncap);
  if (p == NULL) luaL_error(L, "not enough memory");
  b->data = (char *)p;
  b->cap = ncap;
}

static void buf_reserve(lua_State *L, json_buf *b, size_t extra) {
  if (b->cap - b->len < extra) buf_grow(L, b, extra);
}

void json_buf_add(lua_State *L, json_buf *b, const char *s, size_t n) {
  if (n == 0) return;
  buf_reserve(L, b, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

void json_buf_add_char(lua_State *L, json_buf *b, char c) {
  buf_reserve(L, b, 1);
  b->data[b->len++] = c;
}

/* What follows the backslash for bytes that must be escaped ('u' means \u00XX), 0 for bytes
 * written as they are. Entries past 0x5C are all 0. */
static const char escape_of[256] = {
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
  0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\',
};

void json_buf_add_string(lua_State *L, json_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
  buf_reserve(L, b, n); /* the common case has nothing to escape: one allocation at most */
  json_buf_add_char(L, b, '"');
  for (; p < end; p++) {
    char e = escape_of[*p];
    char out[6];
    if (e == 0) continue;
    json_buf_add(L, b, (const char *)run, (size_t)(p - run));
    out[0] = '\\';
    out[1] = e;
    if (e == 'u') {
      out[2] = '0';
      out[3] = '0';
      out[4] = hex[*p >> 4];
      out[5] = hex[*p & 15];
      json_buf_add(L, b, out, 6);
    } else {
      json_buf_add(L, b, out, 2);
    }
    run = p + 1;
  }
  json_buf_add(L, b, (const char *)run, (size_t)(p - run));
  json_buf_add_char(L, b, '"');
}

/* long long, not lua_Integer: where lua_Integer is 32 bits (5.1 on 32-bit hosts) integral
 * doubles still need all 64. */
static void buf_add_ll(lua_State *L, json_buf *b, long long v) {
  char tmp[24], *q = tmp + sizeof tmp;
  /* Unsigned negation so that the most negative value needs no special case. */
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  do {
    *--q = (char)('0' + (int)(u % 10));
    u /= 10;
  } while (u != 0);
  if (v < 0) *--q = '-';
  json_buf_add(L, b, q, (size_t)(tmp + sizeof tmp - q));
}

void json_buf_add_integer(lua_State *L, json_buf *b, lua_Integer v) {
  buf_add_ll(L, b, (long long)v);
}

static int add_shortest(lua_State *L, json_buf *b, double d);

int json_buf_add_float(lua_State *L, json_buf *b, double d) {
  if (isnan(d) || isinf(d)) return 0;
  if (d == 0 && signbit(d)) {
    /* "-0" would come back as the integer 0; "-0.0" keeps the value (and is Lua's own spelling). */
    json_buf_add(L, b, "-0.0", 4);
    return 1;
  }
  if (d == floor(d)) {
    /* Integral: write the exact digits, never an exponent. "%.17g" would give
     * 3.0490406500944036e+18 for the double 3049040650094403584, a different integer to anyone
     * reading it as a decimal. This is how every integral number is written where Lua has no
     * integer subtype (5.1, 5.2, LuaJIT). */
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
      buf_add_ll(L, b, (long long)d);
    } else { /* beyond long long: "%.0f" prints a double's exact value (at most 309 digits) */
      char big[320];
      int n = snprintf(big, sizeof big, "%.0f", d);
      json_buf_add(L, b, big, (size_t)n);
    }
    return 1;
  }
  return add_shortest(L, b, d);
}

/* The shortest of %.15g/%.16g/%.17g that reads back equal, with '.' whatever the locale. */
static int add_shortest(lua_State *L, json_buf *b, double d) {
  char tmp[40], out[40];
  int prec, n = 0, i, j = 0, in_sep = 0;
  for (prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    /* snprintf and strtod use the same C locale, so reading back here is a fair test even where
     * the decimal point is ','; the point is fixed below, for the output only. */
    if (prec == 17 || strtod(tmp, NULL) == d) break;
  }
  if (n <= 0 || n >= (int)sizeof tmp) return luaL_error(L, "cannot format a number");
  for (i = 0; i < n; i++) {
    char c = tmp[i];
    if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e' || c == 'E') {
      out[j++] = c;
      in_sep = 0;
    } else if (!in_sep) { /* a locale's decimal point, possibly several bytes long */
      out[j++] = '.';
      in_sep = 1;
    }
  }
  json_buf_add(L, b, out, (size_t)j);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------- */

typedef struct decoder {
  lua_State *L;
  const unsigned char *start, *end;
  char *err;
  size_t errlen;
} decoder;

/* Always returns NULL so that callers can `return dec_fail(...)`. The message carries a position
 * and never input bytes: responses may contain secrets. */
static const unsigned char *dec_fail(decoder *d, const char *reason, const unsigned char *at) {
  if (d->errlen > 0)
    snprintf(d->err, d->errlen, "invalid JSON: %s at byte %lu", reason,
             (unsigned long)(at - d->start) + 1);
  return NULL;
}

/* Classes of string bytes; 0 is the hot path (copied as is). */
enum { SC_PLAIN, SC_QUOTE, SC_ESCAPE, SC_CONTROL, SC_HIGH };
static const unsigned char string_class[256] = {
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
  0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
  4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

/* The four hex digits at p as a number, or -1. The caller guarantees four readable bytes. */
static long hex4(const unsigned char *p) {
  long v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    unsigned c = p[i];
    if (c >= '0' && c <= '9') c -= '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') c = (c | 0x20) - 'a' + 10;
    else return -1;
    v = v * 16 + (long)c;
  }
  return v;
}

/* Decodes the string whose opening quote is at p and pushes it. Returns the byte after the
 * closing quote, or NULL once the error is written. Strings without escapes (nearly all) are
 * pushed straight from the input; a luaL_Buffer is only started at the first backslash. */
static const unsigned char *dec_string(decoder *d, const unsigned char *p) {
  lua_State *L = d->L;
  const unsigned char *end = d->end, *run = ++p;
  luaL_Buffer lb;
  int buffered = 0;
  for (;;) {
    unsigned cls = SC_PLAIN;
    while (p < end && (cls = string_class[*p]) == SC_PLAIN) p++;
    if (p >= end) return dec_fail(d, "unexpected end of input", p);
    switch (cls) {
    case SC_QUOTE:
      if (buffered) {
        luaL_addlstring(&lb, (const char *)run, (size_t)(p - run));
        luaL_pushresult(&lb);
      } else {
        lua_pushlstring(L, (const char *)run, (size_t)(p - run));
      }
      return p + 1;
    case SC_HIGH: {
      size_t k = utf8_seq(p, (size_t)(end - p));
      if (k == 0) return dec_fail(d, "invalid UTF-8", p);
      p += k;
      break;
    }
    case SC_CONTROL:
      return dec_fail(d, "unescaped control character in string", p);
    default: { /* SC_ESCAPE */
      const unsigned char *esc = p;
      char out[4];
      size_t outlen = 1;
      if (end - p < 2) return dec_fail(d, "unexpected end of input", end);
      switch (p[1]) {
      case '"': out[0] = '"'; break;
      case '\\': out[0] = '\\'; break;
      case '/': out[0] = '/'; break;
      case 'b': out[0] = '\b'; break;
      case 'f': out[0] = '\f'; break;
      case 'n': out[0] = '\n'; break;
      case 'r': out[0] = '\r'; break;
      case 't': out[0] = '\t'; break;
      case 'u': {
        long cp, lo = -1;
        if (end - p < 6 || (cp = hex4(p + 2)) < 0) return dec_fail(d, "invalid \\u escape", esc);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
          /* Only a high surrogate directly followed by an escaped low one makes a code point. */
          if (cp <= 0xDBFF && end - p >= 12 && p[6] == '\\' && p[7] == 'u') lo = hex4(p + 8);
          if (lo < 0xDC00 || lo > 0xDFFF) return dec_fail(d, "unpaired surrogate in \\u escape", esc);
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          p += 6;
        }
        outlen = utf8_put(out, (unsigned long)cp);
        p += 4; /* the common += 2 below covers the backslash and the 'u' */
        break;
      }
      default:
        return dec_fail(d, "invalid escape", esc);
      }
      if (!buffered) {
        /* 5.1's luaL_Buffer keeps pieces on the stack; leave it room. */
        if (!lua_checkstack(L, LUA_MINSTACK)) return dec_fail(d, "Lua stack exhausted", esc);
        luaL_buffinit(L, &lb);
        buffered = 1;
      }
      luaL_addlstring(&lb, (const char *)run, (size_t)(esc - run));
      luaL_addlstring(&lb, out, outlen);
      p += 2;
      run = p;
      break;
    }
    }
  }
}

static int is_digit(unsigned c) {
  return c - '0' < 10;
}

/* Decodes the number at p (a '-' or a digit) and pushes it; returns the byte after it or NULL.
 * An integer numeral becomes a Lua integer when it fits, else its exact text (a 20-digit ID must
 * not become a nearby double); a fraction or exponent makes a float. */
static const unsigned char *dec_number(decoder *d, const unsigned char *p) {
  lua_State *L = d->L;
  const unsigned char *start = p, *end = d->end, *digits;
  uint64_t u = 0;
  int neg = 0, is_int = 1;
  if (*p == '-') {
    neg = 1;
    p++;
  }
  digits = p;
  if (p >= end) return dec_fail(d, "unexpected end of input", p);
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    /* Wraps past 20 digits, but then u is not used. */
    do u = u * 10 + (unsigned)(*p++ - '0');
    while (p < end && is_digit(*p));
  } else {
    return dec_fail(d, "invalid number", p);
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || !is_digit(*p)) return dec_fail(d, "invalid number", p);
    while (p < end && is_digit(*p)) p++;
    is_int = 0;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || !is_digit(*p)) return dec_fail(d, "invalid number", p);
    while (p < end && is_digit(*p)) p++;
    is_int = 0;
  }
  if (is_int) {
    if (p - digits <= 19) { /* no wrap: 19 digits < 2^64 */
#if YP_INTEGER_SUBTYPE
      if (!neg && u <= (uint64_t)LUA_MAXINTEGER) {
        lua_pushinteger(L, (lua_Integer)u);
        return p;
      }
      if (neg && u <= (uint64_t)LUA_MAXINTEGER + 1) {
        lua_pushinteger(L, u == (uint64_t)LUA_MAXINTEGER + 1 ? LUA_MININTEGER : -(lua_Integer)u);
        return p;
      }
#else
      /* Every number is a double here. Up to 2^53 each integer is exact; beyond, the text is
       * kept, for every value: whether one double happens to be exact must not decide the type. */
      if (u <= (uint64_t)YP_EXACT_DOUBLE_MAX) {
        lua_pushnumber(L, neg ? -(lua_Number)u : (lua_Number)u);
        return p;
      }
#endif
    }
    lua_pushlstring(L, (const char *)start, (size_t)(p - start));
    return p;
  }
  {
    /* Lua's converter wants a C string and copes with the locale's decimal point. */
    char tmp[64];
    size_t n = (size_t)(p - start);
    int ok;
    if (n < sizeof tmp) {
      memcpy(tmp, start, n);
      tmp[n] = '\0';
      ok = yp_stringtonumber(L, tmp);
    } else {
      lua_pushlstring(L, (const char *)start, n);
      ok = yp_stringtonumber(L, lua_tostring(L, -1));
      lua_remove(L, ok ? -2 : -1);
    }
    /* The grammar is already checked, so only Lua's converter can refuse here: 5.4 gives up on
     * numerals over 200 bytes when the C locale's decimal point is not '.'. */
    if (!ok) return dec_fail(d, "number too long", start);
    if (isinf(lua_tonumber(L, -1))) {
      /* RFC 8259 section 9 allows range limits; inf could not be encoded again anyway. */
      lua_pop(L, 1);
      return dec_fail(d, "number out of range", start);
    }
  }
  return p;
}

static const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  return p;
}

/* Per open container the stack holds the table and, in an object, the pending key; the rest is
 * room for the value being built and for lua_stringtonumber. */
#define STACK_PER_LEVEL 6
#define FIXED_FRAMES 32

int json_decode(lua_State *L, const char *text, size_t len, int max_depth, char *err,
                size_t errlen) {
  decoder d;
  const unsigned char *p = (const unsigned char *)text, *end = p + len;
  int base = lua_gettop(L), depth = 0;
  /* The parser is a loop, not recursion, so depth costs no C stack. Each open container saves
   * its parent's state word here: element count << 1 for arrays, 1 for objects. Frames beyond
   * the fixed ones live in a json_buf box inserted just above `base`. */
  size_t fixed[FIXED_FRAMES], *frames = fixed, nframes = FIXED_FRAMES, cur = 0;
  json_buf *spill = NULL;

  d.L = L;
  d.start = p;
  d.end = end;
  d.err = err;
  d.errlen = errlen;
  if (max_depth < 1) max_depth = JSON_DEFAULT_DEPTH;
  if (!lua_checkstack(L, STACK_PER_LEVEL)) {
    dec_fail(&d, "Lua stack exhausted", p);
    return 0;
  }

value:
  p = skip_ws(p, end);
  if (p >= end) goto eoi;
  switch (*p) {
  case '{':
  case '[':
    if (depth >= max_depth) {
      if (errlen > 0)
        snprintf(err, errlen, "invalid JSON: nesting deeper than %d at byte %lu", max_depth,
                 (unsigned long)(p - d.start) + 1);
      goto fail;
    }
    /* Checked, not raised: a deep document is bad input, not a reason to throw. */
    if (!lua_checkstack(L, STACK_PER_LEVEL)) {
      dec_fail(&d, "nesting too deep for the Lua stack", p);
      goto fail;
    }
    if ((size_t)depth == nframes) {
      if (spill == NULL) {
        spill = json_buf_push(L);
        lua_insert(L, base + 1);
        json_buf_add(L, spill, (const char *)fixed, sizeof fixed);
      }
      buf_reserve(L, spill, spill->len); /* doubles */
      frames = (size_t *)(void *)spill->data;
      nframes = spill->cap / sizeof *frames;
      spill->len = nframes * sizeof *frames;
    }
    frames[depth++] = cur;
    lua_newtable(L);
    if (*p++ == '{') {
      cur = 1;
      p = skip_ws(p, end);
      if (p < end && *p == '}') {
        p++;
        goto close;
      }
      goto key;
    }
    cur = 0;
    json_push_array_mt(L);
    lua_setmetatable(L, -2);
    p = skip_ws(p, end);
    if (p < end && *p == ']') {
      p++;
      goto close;
    }
    goto value;
  case '"':
    if ((p = dec_string(&d, p)) == NULL) goto fail;
    break;
  case 't':
    if (end - p < 4 || memcmp(p, "true", 4) != 0) goto unexpected;
    lua_pushboolean(L, 1);
    p += 4;
    break;
  case 'f':
    if (end - p < 5 || memcmp(p, "false", 5) != 0) goto unexpected;
    lua_pushboolean(L, 0);
    p += 5;
    break;
  case 'n':
    if (end - p < 4 || memcmp(p, "null", 4) != 0) goto unexpected;
    json_push_null(L);
    p += 4;
    break;
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    if ((p = dec_number(&d, p)) == NULL) goto fail;
    break;
  default:
    goto unexpected;
  }

after: /* a complete value is on top of the stack */
  if (depth == 0) goto done;
  p = skip_ws(p, end);
  if (cur & 1) {
    lua_rawset(L, -3); /* duplicate keys: the last one wins */
    if (p >= end) goto eoi;
    if (*p == ',') {
      p++;
      goto key;
    }
    if (*p != '}') goto unexpected;
    p++;
    goto close;
  }
  cur += 2;
  lua_rawseti(L, -2, (lua_Integer)(cur >> 1));
  if (p >= end) goto eoi;
  if (*p == ',') {
    p++;
    goto value;
  }
  if (*p != ']') goto unexpected;
  p++;
  goto close;

key:
  p = skip_ws(p, end);
  if (p >= end) goto eoi;
  if (*p != '"') goto unexpected;
  if ((p = dec_string(&d, p)) == NULL) goto fail;
  p = skip_ws(p, end);
  if (p >= end) goto eoi;
  if (*p != ':') goto unexpected;
  p++;
  goto value;

close: /* the finished table on top is now the value */
  cur = frames[--depth];
  goto after;

done:
  p = skip_ws(p, end);
  if (p < end) {
    dec_fail(&d, "unexpected data after the value", p);
    goto fail;
  }
  if (spill != NULL) lua_remove(L, base + 1);
  return 1;

eoi:
  dec_fail(&d, "unexpected end of input", p);
  goto fail;
unexpected:
  dec_fail(&d, "unexpected character", p);
fail:
  lua_settop(L, base);
  return 0;
}

int json_l_decode(lua_State *L) {
  size_t len;
  const char *s;
  lua_Integer depth;
  char err[96];
  /* Strict: a number here is a caller's mistake, not a document. */
  luaL_checktype(L, 1, LUA_TSTRING);
  s = lua_tolstring(L, 1, &len);
  depth = luaL_optinteger(L, 2, JSON_DEFAULT_DEPTH);
  if (depth < 1) depth = JSON_DEFAULT_DEPTH;
  if (depth > INT_MAX) depth = INT_MAX;
  if (json_decode(L, s, len, (int)depth, err, sizeof err)) return 1;
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

/* ---------------------------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------------------------- */

/* Where the encoder is, for error messages: one link per level, on the C stack. */
typedef struct enc_path {
  const struct enc_path *up;
  const char *key; /* NULL for an array element */
  size_t klen;
  lua_Integer index;
} enc_path;

typedef struct key_ref {
  const char *s;
  size_t n;
} key_ref;

typedef struct encoder {
  lua_State *L;
  json_buf *b;
  json_buf *keys; /* scratch for sorting: each object level uses a slice past its parent's */
  int max_depth;
  const char *fname;
} encoder;

/* Raises "<fname>: <what> at key '<path>'". The path is built right to left into a bounded
 * buffer (its start is elided past ~120 bytes) and control bytes in keys are shown as '?'. */
static void enc_error(encoder *e, const enc_path *at, const char *what) {
  char path[128];
  size_t pos = sizeof path - 1;
  int cut = 0;
  path[pos] = '\0';
  for (; at != NULL && !cut; at = at->up) {
    char seg[32];
    const char *s;
    size_t n, i;
    if (at->key != NULL) {
      s = at->key;
      n = at->klen;
    } else {
      snprintf(seg, sizeof seg, "[%lld]", (long long)at->index);
      s = seg;
      n = strlen(seg);
    }
    if (n + 1 > pos) {
      cut = 1;
      break;
    }
    for (i = n; i > 0; i--) {
      unsigned char c = (unsigned char)s[i - 1];
      path[--pos] = (c < 0x20 || c == 0x7F) ? '?' : (char)c;
    }
    if (at->key != NULL && at->up != NULL) path[--pos] = '.';
  }
  if (cut && path[pos] == '.') pos++;
  if (pos == sizeof path - 1)
    luaL_error(e->L, "%s: %s", e->fname, what);
  luaL_error(e->L, "%s: %s at key '%s%s'", e->fname, what, cut ? "..." : "", path + pos);
}

static int key_cmp(const void *a, const void *b) {
  const key_ref *x = (const key_ref *)a, *y = (const key_ref *)b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c != 0 ? c : (x->n > y->n) - (x->n < y->n);
}

/* The value of the array key at idx (a positive integer), or 0 if it is anything else. */
static lua_Integer array_key(lua_State *L, int idx) {
#if YP_INTEGER_SUBTYPE
  lua_Integer k;
  if (!yp_isinteger(L, idx)) return 0;
  k = lua_tointeger(L, idx);
  return k > 0 ? k : 0;
#else
  lua_Number k;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0; /* lua_tonumber would take "1" */
  k = lua_tonumber(L, idx);
  return (k >= 1 && k <= (lua_Number)INT_MAX && k == floor(k)) ? (lua_Integer)k : 0;
#endif
}

static void enc_value(encoder *e, int idx, int depth, const enc_path *at);

#if YP_INTEGER_SUBTYPE
/* A Lua float keeps being a float: 1.0 is written "1.0", not "1", which would come back as the
 * integer 1. Large integral floats take the exponent form, which also reads back as a float. */
static int add_lua_float(lua_State *L, json_buf *b, double d) {
  if (isnan(d) || isinf(d)) return 0;
  if (d == floor(d) && fabs(d) < 1e16 && !(d == 0 && signbit(d))) {
    buf_add_ll(L, b, (long long)d);
    json_buf_add(L, b, ".0", 2);
    return 1;
  }
  if (d == floor(d) && d != 0) return add_shortest(L, b, d);
  return json_buf_add_float(L, b, d);
}
#endif

static void enc_table(encoder *e, int idx, int depth, const enc_path *at) {
  lua_State *L = e->L;
  json_buf *b = e->b;
  size_t kbase = e->keys->len, nkeys, i;
  lua_Integer count = 0, max = 0;
  enum { EMPTY, ARRAY, OBJECT } kind = EMPTY;

  if (depth > e->max_depth) {
    char what[64];
    snprintf(what, sizeof what, "tables nested deeper than %d (a cycle?)", e->max_depth);
    enc_error(e, at, what);
  }
  if (!lua_checkstack(L, 4)) enc_error(e, at, "Lua stack exhausted");

  /* One pass decides the shape: keys exactly 1..n make an array, all-string keys an object. */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_Integer k;
    if (kind != ARRAY && lua_type(L, -2) == LUA_TSTRING) {
      key_ref r;
      r.s = lua_tolstring(L, -2, &r.n);
      kind = OBJECT;
      json_buf_add(L, e->keys, (const char *)&r, sizeof r);
    } else if (kind != OBJECT && (k = array_key(L, -2)) > 0) {
      kind = ARRAY;
      count++;
      if (k > max) max = k;
    } else {
      lua_pop(L, 2);
      enc_error(e, at, "table keys must be 1..n or all strings");
    }
    lua_pop(L, 1);
  }

  if (kind == EMPTY) {
    json_buf_add(L, b, marked_array(L, idx) ? "[]" : "{}", 2);
    return;
  }

  if (kind == ARRAY) {
    enc_path here;
    lua_Integer n;
    if (count != max) enc_error(e, at, "array has holes (use partner.null for null)");
    here.up = at;
    here.key = NULL;
    here.klen = 0;
    json_buf_add_char(L, b, '[');
    for (n = 1; n <= max; n++) {
      if (n > 1) json_buf_add_char(L, b, ',');
      here.index = n;
      lua_rawgeti(L, idx, n);
      enc_value(e, lua_gettop(L), depth, &here);
      lua_pop(L, 1);
    }
    json_buf_add_char(L, b, ']');
    return;
  }

  /* Sorted keys make the output deterministic (signatures, logs, tests). Key strings stay alive
   * while they are keys of the table, which is anchored on the stack; the slice is re-read by
   * index because nested objects may move the scratch buffer. */
  nkeys = (e->keys->len - kbase) / sizeof(key_ref);
  qsort(e->keys->data + kbase, nkeys, sizeof(key_ref), key_cmp);
  json_buf_add_char(L, b, '{');
  for (i = 0; i < nkeys; i++) {
    key_ref r;
    enc_path here;
    memcpy(&r, e->keys->data + kbase + i * sizeof r, sizeof r);
    if (!json_utf8_valid(r.s, r.n)) enc_error(e, at, "key is not valid UTF-8");
    if (i > 0) json_buf_add_char(L, b, ',');
    json_buf_add_string(L, b, r.s, r.n);
    json_buf_add_char(L, b, ':');
    here.up = at;
    here.key = r.s;
    here.klen = r.n;
    here.index = 0;
    lua_pushlstring(L, r.s, r.n);
    lua_rawget(L, idx);
    enc_value(e, lua_gettop(L), depth, &here);
    lua_pop(L, 1);
  }
  json_buf_add_char(L, b, '}');
  e->keys->len = kbase;
}

static void enc_value(encoder *e, int idx, int depth, const enc_path *at) {
  lua_State *L = e->L;
  char what[64];
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    json_buf_add(L, e->b, "null", 4);
    return;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) json_buf_add(L, e->b, "true", 4);
    else json_buf_add(L, e->b, "false", 5);
    return;
  case LUA_TNUMBER:
#if YP_INTEGER_SUBTYPE
    if (yp_isinteger(L, idx)) {
      json_buf_add_integer(L, e->b, lua_tointeger(L, idx));
      return;
    }
    if (!add_lua_float(L, e->b, (double)lua_tonumber(L, idx)))
      enc_error(e, at, "cannot encode NaN or infinity");
#else
    if (!json_buf_add_float(L, e->b, (double)lua_tonumber(L, idx)))
      enc_error(e, at, "cannot encode NaN or infinity");
#endif
    return;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (!json_utf8_valid(s, n)) enc_error(e, at, "string is not valid UTF-8");
    json_buf_add_string(L, e->b, s, n);
    return;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) {
      json_buf_add(L, e->b, "null", 4);
      return;
    }
    push_cjson_field(L, "empty_array"); /* lua-cjson's own marker for [] */
    if (lua_rawequal(L, -1, idx)) {
      lua_pop(L, 1);
      json_buf_add(L, e->b, "[]", 2);
      return;
    }
    lua_pop(L, 1);
    break;
  case LUA_TTABLE:
    enc_table(e, idx, depth + 1, at);
    return;
  default: { /* LuaJIT's int64_t/uint64_t cdata carry an ID's every digit */
    char digits[24];
    size_t n = yp_int64_cdata_digits(L, idx, digits);
    if (n > 0) {
      json_buf_add(L, e->b, digits, n);
      return;
    }
    break;
  }
  }
  snprintf(what, sizeof what, "cannot encode a %s value", luaL_typename(L, idx));
  enc_error(e, at, what);
}

void json_encode_value(lua_State *L, int idx, json_buf *b, int max_depth, const char *fname) {
  encoder e;
  idx = yp_absindex(L, idx);
  e.L = L;
  e.b = b;
  e.keys = NULL;
  e.max_depth = max_depth < 1 ? JSON_DEFAULT_DEPTH : max_depth;
  e.fname = fname;
  if (lua_type(L, idx) != LUA_TTABLE) {
    enc_value(&e, idx, 0, NULL);
    return;
  }
  luaL_checkstack(L, 4, fname);
  e.keys = json_buf_push(L);
  enc_value(&e, idx, 0, NULL);
  buf_release(L, e.keys);
  lua_pop(L, 1);
}

int json_l_encode(lua_State *L) {
  json_buf *b;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  b = json_buf_push(L);
  json_encode_value(L, 1, b, JSON_DEFAULT_DEPTH, "json_encode");
  lua_pushlstring(L, b->data, b->len);
  buf_release(L, b); /* free now rather than at some later GC cycle */
  return 1;
}
