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

/* Inline so that the common case (room left) costs one comparison at each append. */
static inline void buf_reserve(lua_State *L, json_buf *b, size_t extra) {
  if (b->cap - b->len < extra) buf_grow(L, b, extra);
}

static inline void buf_put(lua_State *L, json_buf *b, const char *s, size_t n) {
  buf_reserve(L, b, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

static inline void buf_putc(lua_State *L, json_buf *b, char c) {
  buf_reserve(L, b, 1);
  b->data[b->len++] = c;
}

void json_buf_add(lua_State *L, json_buf *b, const char *s, size_t n) {
  if (n == 0) return;
  buf_put(L, b, s, n);
}

void json_buf_add_char(lua_State *L, json_buf *b, char c) {
  buf_putc(L, b, c);
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

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
/* Nonzero when some byte of w is zero (exact as a yes/no; the classic word-at-a-time test). */
#define HAS_ZERO(w) (((w) - ONES) & ~(w) & HIGHS)

/* Nonzero when one of the eight bytes at p needs a closer look when writing a JSON string:
 * a control byte, '"', '\\', or a byte >= 0x80 (start or middle of a UTF-8 sequence). */
static inline uint64_t word_special(const unsigned char *p) {
  uint64_t w;
  memcpy(&w, p, 8); /* alignment-safe; compiles to one load */
  return (w & HIGHS) | ((w - ONES * 0x20) & ~w & HIGHS) | HAS_ZERO(w ^ (ONES * '"')) |
         HAS_ZERO(w ^ (ONES * '\\'));
}

/* Writes s quoted and escaped. With `check`, returns 0 (the buffer then holds a partial string,
 * which the caller discards by raising) when s is not valid UTF-8; else 1. Runs of bytes that
 * need nothing are found eight at a time and copied at once; the room for the plain case is
 * reserved up front, escapes reserve their extra bytes when they occur. */
static int put_string(lua_State *L, json_buf *b, const char *s, size_t n, int check) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *end = p + n;
  char *o;
  buf_reserve(L, b, n + 2);
  o = b->data + b->len;
  *o++ = '"';
  if (n < 8) { /* short (most keys): test a padded copy at once */
    unsigned char t[8] = {'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a'};
    memcpy(t, s, n);
    if (!word_special(t)) {
      memcpy(o, s, n);
      o[n] = '"';
      b->len += n + 2;
      return 1;
    }
  }
  /* Invariant: the room left at o is at least (end - p) + 1, for the rest and the closing quote. */
  while (p < end) {
    unsigned c;
    while (end - p >= 8 && !word_special(p)) {
      memcpy(o, p, 8);
      o += 8;
      p += 8;
    }
    if (p >= end) break;
    if (end - p < 8 && n >= 8 && !word_special(end - 8)) {
      /* A plain tail: the last eight bytes, of which those before p were copied as they are,
       * so they land where they already are. */
      memcpy(o - (8 - (end - p)), end - 8, 8);
      o += end - p;
      break;
    }
    c = *p;
    if (c >= 0x80) {
      size_t k = check ? utf8_seq(p, (size_t)(end - p)) : 1;
      if (k == 0) return 0;
      memcpy(o, p, k);
      o += k;
      p += k;
    } else if (escape_of[c] == 0) {
      *o++ = (char)c;
      p++;
    } else {
      size_t used = (size_t)(o - b->data);
      b->len = used;
      buf_reserve(L, b, (size_t)(end - p) + 6); /* this byte becomes up to 6, plus the quote */
      o = b->data + used;
      *o++ = '\\';
      *o++ = escape_of[c];
      if (escape_of[c] == 'u') {
        *o++ = '0';
        *o++ = '0';
        *o++ = hex[c >> 4];
        *o++ = hex[c & 15];
      }
      p++;
    }
  }
  *o++ = '"';
  b->len = (size_t)(o - b->data);
  return 1;
}

void json_buf_add_string(lua_State *L, json_buf *b, const char *s, size_t n) {
  put_string(L, b, s, n, 0);
}

static const char digit_pairs[] =
  "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
  "8081828384858687888990919293949596979899";

/* Writes u's digits so that they end just before `end`; returns where they start. */
static char *put_digits(char *end, unsigned long long u) {
  while (u >= 100) {
    unsigned r = (unsigned)(u % 100);
    u /= 100;
    end -= 2;
    memcpy(end, digit_pairs + 2 * r, 2);
  }
  if (u >= 10) {
    end -= 2;
    memcpy(end, digit_pairs + 2 * u, 2);
  } else {
    *--end = (char)('0' + (int)u);
  }
  return end;
}

/* long long, not lua_Integer: where lua_Integer is 32 bits (5.1 on 32-bit hosts) integral
 * doubles still need all 64. */
static void buf_add_ll(lua_State *L, json_buf *b, long long v) {
  char tmp[24], *q;
  /* Unsigned negation so that the most negative value needs no special case. */
  unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
  q = put_digits(tmp + sizeof tmp, u);
  if (v < 0) *--q = '-';
  buf_put(L, b, q, (size_t)(tmp + sizeof tmp - q));
}

void json_buf_add_integer(lua_State *L, json_buf *b, lua_Integer v) {
  buf_add_ll(L, b, (long long)v);
}

static int add_shortest(lua_State *L, json_buf *b, double d);

int json_buf_add_float(lua_State *L, json_buf *b, double d) {
  if (isnan(d) || isinf(d)) return 0;
  if (d == 0 && signbit(d)) {
    /* "-0" would come back as the integer 0; "-0.0" keeps the value (and is Lua's own spelling). */
    buf_put(L, b, "-0.0", 4);
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
      buf_put(L, b, big, (size_t)n);
    }
    return 1;
  }
  return add_shortest(L, b, d);
}

/* Exact powers of ten: every one up to 1e22 is a double without rounding. */
static const double pow10_exact[] = {
  1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* The common case of add_shortest without printf and strtod: a non-integral d that some decimal
 * T = m / 10^k with at most 15 significant digits reads back as. Then T is what "%.15g" prints:
 * d lies within half an ulp (~1.1e-16 relative) of T, far inside the half unit of T's 15th digit
 * (>= 5e-16 relative), so rounding d's exact value to 15 digits gives T back; and T >= 1e-4 with
 * fewer than 15 integer digits is where "%g" uses plain notation. "Reads back" is tested exactly:
 * m and 10^k are exact doubles, so m / 10^k is the correctly rounded T, as strtod would give.
 * Writes the text into out and returns its length, or 0 to leave d to the general path. */
static size_t shortest_fast(double d, char out[40]) {
  double a = fabs(d), m = 0;
  int k;
  char digits[24], *q, *end = digits + sizeof digits, *o = out;
  size_t nd;
  if (!(a >= 1e-4 && a < 1e15)) return 0;
  for (k = 1; k <= 17; k++) {
    m = a * pow10_exact[k];
    if (m >= 1e15) return 0; /* more than 15 digits */
    if (m == floor(m) && m / pow10_exact[k] == a) break;
  }
  if (k > 17) return 0;
  {
    unsigned long long u = (unsigned long long)m;
    while (u % 10 == 0 && k > 0) { /* "%g" drops trailing zeros */
      u /= 10;
      k--;
    }
    if (k == 0) return 0; /* integral: not a case this path serves */
    q = put_digits(end, u);
  }
  nd = (size_t)(end - q);
  if ((int)nd - 1 - k < -4) return 0; /* T < 1e-4: "%g" would use an exponent */
  if (d < 0) *o++ = '-';
  if (nd > (size_t)k) { /* ddd.ddd */
    memcpy(o, q, nd - (size_t)k);
    o += nd - (size_t)k;
    *o++ = '.';
    memcpy(o, q + nd - (size_t)k, (size_t)k);
    o += k;
  } else { /* 0.000ddd */
    *o++ = '0';
    *o++ = '.';
    memset(o, '0', (size_t)k - nd);
    o += (size_t)k - nd;
    memcpy(o, q, nd);
    o += nd;
  }
  return (size_t)(o - out);
}

/* The shortest of %.15g/%.16g/%.17g that reads back equal, with '.' whatever the locale. */
static int add_shortest(lua_State *L, json_buf *b, double d) {
  char tmp[40], out[40];
  int prec, n = 0, i, j = 0, in_sep = 0;
  size_t fast = shortest_fast(d, out);
  if (fast > 0) {
    buf_put(L, b, out, fast);
    return 1;
  }
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
  buf_put(L, b, out, (size_t)j);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------------------------- */

/* Between calls each Lua state keeps, in the registry, a table T: T[2..KC_SIZE+1] recently
 * decoded strings (object keys in the first half, short values in the second), T[KC_SIZE+2] the
 * dec_state below, and T[1] the array metatable (read afresh by each call that makes an array:
 * partner.c may adopt lua-cjson's array_mt). Objects in one document, and in one API's
 * responses, repeat the same few keys and many short values ("success", "", "USD"); pushing a
 * cached string from T costs less than making Lua hash and intern the bytes again.
 * A decode marks T's state busy while it runs. A decode that finds it busy (one started by a
 * __gc that the collector runs in the middle of another decode, or after a decode that raised a
 * memory error and never cleared the mark) makes a private T and, when it ends, leaves that one
 * in the registry instead; an abandoned T is then simply garbage. */
#define KC_SIZE 256       /* entries: two halves of a power of two */
#define KC_KEY_MAXLEN 40   /* longer keys are not cached (5.4 does not intern them either) */
#define KC_VALUE_MAXLEN 16 /* longer values are mostly unique (IDs, UUIDs, names) */
#define T_ARRAY_MT 1
#define T_STATE (KC_SIZE + 2)

/* Per open container: where its table is and how many values it already holds. */
typedef struct dec_frame {
  size_t count;   /* values stored in the table so far (an array's last index) */
  size_t pending; /* values waiting above the table (saved while a child is open) */
  int tpos;     /* stack index of the table, or of the nil that stands for it until it is made */
  int kind;     /* FR_* bits */
} dec_frame;
enum { FR_ARRAY = 0, FR_OBJECT = 1, FR_MADE = 2, FR_ENVELOPE = 4 };

typedef struct kc_entry {
  const char *s; /* bytes of the string at T[2 + slot], alive while T is */
  size_t n;
} kc_entry;

typedef struct dec_state {
  int busy;
  kc_entry kc[KC_SIZE];
  json_buf frames; /* frames past the FIXED_FRAMES on the C stack */
} dec_state;
#define DEC_STATE_MT "yeastar.partner.json_dec_state"
static char dec_state_key; /* only its address is used: the registry key */

typedef struct decoder {
  lua_State *L;
  const unsigned char *start, *end;
  char *err;
  size_t errlen;
  dec_state *st; /* NULL until the first container */
  int cache;     /* stack index of T */
  int shared;    /* T is the registry's */
  int have_mt;   /* T[1] was set by this call */
} decoder;

/* Always returns NULL so that callers can `return dec_fail(...)`. The message carries a position
 * and never input bytes: responses may contain secrets. */
static const unsigned char *dec_fail(decoder *d, const char *reason, const unsigned char *at) {
  if (d->errlen > 0)
    snprintf(d->err, d->errlen, "invalid JSON: %s at byte %lu", reason,
             (unsigned long)(at - d->start) + 1);
  return NULL;
}

static int dec_state_gc(lua_State *L) {
  dec_state *st = (dec_state *)lua_touserdata(L, 1);
  buf_release(L, &st->frames);
  return 0;
}

/* Pushes a usable T (the registry's, or a new private one) and marks its state busy. */
static void dec_state_take(decoder *d) {
  lua_State *L = d->L;
  dec_state *st = NULL;
  lua_pushlightuserdata(L, (void *)&dec_state_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_istable(L, -1)) {
    lua_rawgeti(L, -1, T_STATE);
    st = (dec_state *)lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  d->shared = st != NULL && !st->busy;
  if (!d->shared) {
    lua_pop(L, 1);
    lua_createtable(L, T_STATE, 0);
    st = (dec_state *)yp_newuserdata(L, sizeof *st);
    memset(st, 0, sizeof *st);
    if (luaL_newmetatable(L, DEC_STATE_MT)) {
      lua_pushcfunction(L, dec_state_gc);
      lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_rawseti(L, -2, T_STATE);
  }
  st->busy = 1;
  d->st = st;
  d->have_mt = 0;
}

/* Ends the use of T (at d->cache; needs two free slots): a private T becomes the registry's. */
static void dec_state_done(decoder *d) {
  lua_State *L = d->L;
  dec_state *st = d->st;
  st->busy = 0;
  if (st->frames.cap > 4096) buf_release(L, &st->frames); /* a very deep document's */
  if (!d->shared) {
    lua_pushlightuserdata(L, (void *)&dec_state_key);
    lua_pushvalue(L, d->cache);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
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

/* Slot of a key in the cache: its length and first and last (up to) eight bytes, mixed. */
static unsigned kc_slot(const unsigned char *s, size_t n) {
  uint64_t a = 0, b = 0, h;
  if (n >= 8) {
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
  } else if (n >= 4) {
    uint32_t x, y;
    memcpy(&x, s, 4);
    memcpy(&y, s + n - 4, 4);
    a = x;
    b = y;
  } else if (n > 0) {
    a = (uint64_t)s[0] | (uint64_t)s[n / 2] << 8 | (uint64_t)s[n - 1] << 16;
  }
  h = (a ^ (b * UINT64_C(0x9E3779B97F4A7C15)) ^ n) * UINT64_C(0xFF51AFD7ED558CCD);
  return (unsigned)(h >> 57) & (KC_SIZE / 2 - 1);
}

/* Pushes the string s[0..n) (no escapes in it), from the cache when it was seen lately. */
static void push_cached(decoder *d, const unsigned char *s, size_t n, int is_key) {
  lua_State *L = d->L;
  kc_entry *e;
  unsigned slot;
  if (n > (is_key ? KC_KEY_MAXLEN : KC_VALUE_MAXLEN) || d->st == NULL) {
    lua_pushlstring(L, (const char *)s, n);
    return;
  }
  slot = kc_slot(s, n) + (is_key ? 0 : KC_SIZE / 2);
  e = &d->st->kc[slot];
  if (e->s != NULL && e->n == n && memcmp(e->s, s, n) == 0) {
    lua_rawgeti(L, d->cache, (int)slot + 2);
    return;
  }
  lua_pushlstring(L, (const char *)s, n);
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->cache, (int)slot + 2);
  e->s = lua_tostring(L, -1);
  e->n = n;
}

/* What dec_string does with the string: push it as a value or as an object key (they are cached
 * apart), or only check it (an envelope member that json_decode_envelope reports by position). */
enum { DS_VALUE, DS_KEY, DS_CHECK };

/* Decodes the string whose opening quote is at p and pushes it (unless DS_CHECK). Returns the
 * byte after the closing quote, or NULL once the error is written. Strings without escapes
 * (nearly all) are pushed straight from the input; a luaL_Buffer is only started at the first
 * backslash. */
static const unsigned char *dec_string(decoder *d, const unsigned char *p, int mode) {
  lua_State *L = d->L;
  const unsigned char *end = d->end, *run = ++p;
  luaL_Buffer lb;
  int buffered = 0;
  for (;;) {
    unsigned cls = SC_PLAIN;
    /* Plain bytes eight at a time, then one by one up to the byte that stopped the words. */
    while (end - p >= 8 && !word_special(p)) p += 8;
    while (p < end && (cls = string_class[*p]) == SC_PLAIN) p++;
    if (p >= end) return dec_fail(d, "unexpected end of input", p);
    switch (cls) {
    case SC_QUOTE:
      if (mode == DS_CHECK) return p + 1;
      if (buffered) {
        luaL_addlstring(&lb, (const char *)run, (size_t)(p - run));
        luaL_pushresult(&lb);
      } else {
        push_cached(d, run, (size_t)(p - run), mode == DS_KEY);
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
      if (mode == DS_CHECK) {
        p += 2;
        break;
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

/* dec_string(d, p, DS_CHECK), with the usual string (ASCII, no escape, no control byte) read here
 * rather than through the full reader's setup. */
static const unsigned char *check_string(decoder *d, const unsigned char *p) {
  const unsigned char *q = p + 1, *end = d->end;
  while (end - q >= 8 && !word_special(q)) q += 8;
  while (q < end && string_class[*q] == SC_PLAIN) q++;
  if (q < end && *q == '"') return q + 1;
  return dec_string(d, p, DS_CHECK); /* escapes, UTF-8 and every error */
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
  int neg = 0, is_int = 1, nd = 0, frac = 0, exact = 1;
  long ex = 0;
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
    nd = (int)(p - digits);
    if (nd > 19) exact = 0; /* u wrapped */
  } else {
    return dec_fail(d, "invalid number", p);
  }
  if (p < end && *p == '.') {
    p++;
    if (p >= end || !is_digit(*p)) return dec_fail(d, "invalid number", p);
    /* Digits go on into u while they fit 19 (for the exact path below); leading zeros of a
     * number below 1 add nothing to u, so they are not counted. */
    do {
      if (nd < 19) {
        u = u * 10 + (unsigned)(*p - '0');
        frac++;
        if (u != 0) nd++;
      } else {
        exact = 0;
      }
      p++;
    } while (p < end && is_digit(*p));
    is_int = 0;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    int eneg = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-')) eneg = *p++ == '-';
    if (p >= end || !is_digit(*p)) return dec_fail(d, "invalid number", p);
    do {
      if (ex < 100000) ex = ex * 10 + (*p - '0');
      p++;
    } while (p < end && is_digit(*p));
    if (eneg) ex = -ex;
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
  ex -= frac;
  if (exact && u <= (uint64_t)1 << 53 && ex >= -22 && ex <= 22) {
    /* The value is u * 10^ex with u and 10^|ex| exact doubles: one multiplication or division,
     * correctly rounded, gives the double nearest the numeral, which is what strtod returns. */
    double v = (double)u;
    v = ex < 0 ? v / pow10_exact[-ex] : v * pow10_exact[ex];
    lua_pushnumber(L, (lua_Number)(neg ? -v : v));
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

static const unsigned char *skip_ws_run(const unsigned char *p, const unsigned char *end) {
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
    p++;
    /* Indented documents: a run of spaces, eight at a time. */
    while (end - p >= 8 && memcmp(p, "        ", 8) == 0) p += 8;
  }
  return p;
}

/* Compact documents (a server's usual) have no whitespace between tokens: that test is inlined. */
static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end) {
  return p < end && *p > ' ' ? p : skip_ws_run(p, end);
}

/* Per open container the stack holds the table and, in an object, the pending key; the rest is
 * room for the value being built and for lua_stringtonumber. */
#define STACK_PER_LEVEL 6
#define FIXED_FRAMES 32
/* The values of the innermost container wait on the stack until it closes, so that its table is
 * made once at its final size instead of growing (and rehashing) as members arrive. At most
 * PEND_MAX wait at once; to keep more than the first member waiting there must be PEND_ROOM free
 * slots above them (a luaL_Buffer's and a member's needs), else they go into the table at once, as
 * they would without waiting: waiting values never make a document fail for lack of stack. */
#define PEND_MAX 256
#define PEND_ROOM (LUA_MINSTACK + STACK_PER_LEVEL)
#define PEND_CHUNK 64
/* Beyond this many slots a parent's waiting values are not kept (the stack would grow too far
 * for a document that has not asked for it). */
#define KEEP_PARENT_MAX 4096

/* Moves the waiting values of f (n of them, above its table slot; for an object, key-value
 * pairs, with one more key on top when `keyed`) into its table, making the table first. Needs
 * two free slots. */
static void dec_flush(decoder *d, dec_frame *f, size_t n, int keyed) {
  lua_State *L = d->L;
  int t = f->tpos, i;
  if (!(f->kind & FR_MADE)) {
    if (f->kind & FR_OBJECT) {
      lua_createtable(L, 0, (int)n);
    } else {
      lua_createtable(L, (int)n, 0);
      if (!d->have_mt) {
        json_push_array_mt(L);
        lua_rawseti(L, d->cache, T_ARRAY_MT);
        d->have_mt = 1;
      }
      lua_rawgeti(L, d->cache, T_ARRAY_MT);
      lua_setmetatable(L, -2);
    }
    lua_replace(L, t);
    f->kind |= FR_MADE;
  }
  if (n == 0) return;
  if (f->kind & FR_OBJECT) {
    for (i = 1; i <= (int)n; i++) { /* in order: with duplicate keys the last one wins */
      lua_pushvalue(L, t + 2 * i - 1);
      lua_pushvalue(L, t + 2 * i);
      lua_rawset(L, t);
    }
    if (keyed) {
      lua_replace(L, t + 1);
      lua_settop(L, t + 1);
    } else {
      lua_settop(L, t);
    }
  } else {
    for (i = 1; i <= (int)n; i++) {
      lua_pushvalue(L, t + i);
      lua_rawseti(L, t, (lua_Integer)f->count + i);
    }
    lua_settop(L, t);
  }
  f->count += n;
}

/* The envelope's top-level object (FR_ENVELOPE) is never made: its table slot holds the
 * `result` member (nil until one is read), the other members are checked and then dropped, and
 * the four that json_decode_envelope reports are only checked and located. While a member's value
 * is read, its key's slot holds the key or a nil, so that the stack is as deep as json_decode's
 * at the same byte and the stack checks fail where they would there. */
enum { ENV_DROP, ENV_RESULT, ENV_MEMBER };

/* Reads the key at p (its opening quote) of a member of the envelope, leaves a value in the key's
 * slot and says what becomes of the member's value. */
static const unsigned char *envelope_key(decoder *d, const unsigned char *p, json_envelope *env,
                                         json_member **member, int *act) {
  static const struct {
    const char *name;
    size_t len;
  } names[] = {{"result", 6}, {"code", 4}, {"status", 6}, {"requestId", 9}, {"detailMessage", 13}};
  json_member *members[5];
  size_t i, avail = (size_t)(d->end - p);
  members[0] = NULL;
  members[1] = &env->code;
  members[2] = &env->status;
  members[3] = &env->request_id;
  members[4] = &env->detail_message;
  /* Nearly always one of the names, unescaped: then the bytes say it without decoding them. Its
   * first letters pick the one name it can be (result and requestId differ at the third). */
  switch (avail >= 4 ? p[1] : 0) {
  case 'r': i = p[3] == 's' ? 0 : 3; break;
  case 'c': i = 1; break;
  case 's': i = 2; break;
  case 'd': i = 4; break;
  default: i = 5;
  }
  if (i < 5) {
    size_t n = names[i].len;
    if (avail >= n + 2 && p[n + 1] == '"' && memcmp(p + 1, names[i].name, n) == 0) {
      lua_pushnil(d->L);
      p += n + 2;
    } else {
      i = 5;
    }
  }
  if (i == 5) { /* any other key, or one of the names spelt with escapes */
    size_t klen;
    const char *k;
    if ((p = dec_string(d, p, DS_KEY)) == NULL) return NULL;
    k = lua_tolstring(d->L, -1, &klen);
    for (i = 0; i < 5; i++)
      if (klen == names[i].len && memcmp(k, names[i].name, klen) == 0) break;
  }
  *member = i < 5 ? members[i] : NULL;
  *act = i == 0 ? ENV_RESULT : i < 5 ? ENV_MEMBER : ENV_DROP;
  return p;
}

/* json_decode's parser; with env, json_decode_envelope's (see there). */
static int decode(lua_State *L, const char *text, size_t len, int max_depth, char *err,
                  size_t errlen, json_envelope *env) {
  decoder d;
  json_member *member = NULL; /* the envelope member whose value is being read */
  int act = ENV_DROP;
  const unsigned char *p = (const unsigned char *)text, *end = p + len;
  int base = lua_gettop(L), depth = 0, reserved;
  /* The parser is a loop, not recursion, so depth costs no C stack. Each open container saves
   * its parent's frame here; frames beyond the fixed ones live in the state's buffer. */
  dec_frame fixed[FIXED_FRAMES], *frames = fixed, cur;
  size_t nframes = FIXED_FRAMES, pending = 0;

  d.L = L;
  d.start = p;
  d.end = end;
  d.err = err;
  d.errlen = errlen;
  d.st = NULL;
  d.cache = base + 1;
  cur.count = cur.pending = 0;
  cur.tpos = 0;
  cur.kind = FR_ARRAY;
  if (max_depth < 1) max_depth = JSON_DEFAULT_DEPTH;
  if (!lua_checkstack(L, STACK_PER_LEVEL)) {
    dec_fail(&d, "Lua stack exhausted", p);
    return 0;
  }
  reserved = base + STACK_PER_LEVEL;

value:
  p = skip_ws(p, end);
  if (p >= end) goto eoi;
  if (member != NULL && (cur.kind & FR_ENVELOPE)) {
    member->at = (const char *)p;
    if (*p == '"') { /* located, not pushed */
      if ((p = check_string(&d, p)) == NULL) goto fail;
      goto after;
    }
  }
  switch (*p) {
  case '{':
  case '[': {
    int top;
    if (depth >= max_depth) {
      if (errlen > 0)
        snprintf(err, errlen, "invalid JSON: nesting deeper than %d at byte %lu", max_depth,
                 (unsigned long)(p - d.start) + 1);
      goto fail;
    }
    if (d.st == NULL) dec_state_take(&d); /* at base + 1 */
    /* The parent's waiting values may stay on the stack while this child is built only if the
     * stack has room for them and for every level down to max_depth as it would be without
     * them (two slots a level and a member's needs): then the checks below fail exactly where
     * they would if every value went straight into its table. Else they go in now. */
    if (pending > 0) {
      long need = (long)PEND_ROOM + STACK_PER_LEVEL + 2L * (max_depth - depth);
      if (need <= KEEP_PARENT_MAX && lua_checkstack(L, (int)need)) {
        int t = lua_gettop(L) + (int)need;
        if (t > reserved) reserved = t;
      } else {
        dec_flush(&d, &cur, pending, cur.kind & FR_OBJECT);
        pending = 0;
      }
    }
    /* The count is one less than the per-level need while T (the cache) is on the stack and the
     * frames have not spilled over: then the earlier design held a spill box instead of T. */
    /* Checked, not raised: a deep document is bad input, not a reason to throw. */
    if (!lua_checkstack(L, depth <= FIXED_FRAMES ? STACK_PER_LEVEL - 1 : STACK_PER_LEVEL)) {
      dec_fail(&d, "nesting too deep for the Lua stack", p);
      goto fail;
    }
    top = lua_gettop(L);
    if (top + STACK_PER_LEVEL - 1 > reserved) reserved = top + STACK_PER_LEVEL - 1;
    if ((size_t)depth == nframes) {
      json_buf *fb = &d.st->frames;
      if (frames == fixed) {
        fb->len = 0;
        json_buf_add(L, fb, (const char *)fixed, sizeof fixed);
      }
      buf_reserve(L, fb, fb->len); /* doubles */
      frames = (dec_frame *)(void *)fb->data;
      nframes = fb->cap / sizeof *frames;
      fb->len = nframes * sizeof *frames;
    }
    cur.pending = pending;
    frames[depth++] = cur;
    pending = 0;
    lua_pushnil(L); /* the table's place, until its size is known */
    cur.tpos = top + 1;
    cur.count = 0;
    if (*p++ == '{') {
      cur.kind = FR_OBJECT;
      if (env != NULL && depth == 1) {
        cur.kind |= FR_ENVELOPE;
        env->object = 1;
      }
      p = skip_ws(p, end);
      if (p < end && *p == '}') {
        p++;
        goto close;
      }
      goto key;
    }
    cur.kind = FR_ARRAY;
    p = skip_ws(p, end);
    if (p < end && *p == ']') {
      p++;
      goto close;
    }
    goto value;
  }
  case '"':
    if ((p = dec_string(&d, p, DS_VALUE)) == NULL) goto fail;
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

after: /* a complete value is on top of the stack (above its key, in an object) */
  if (depth == 0) goto done;
  if (cur.kind & FR_ENVELOPE) {
    if (act == ENV_RESULT) {
      lua_replace(L, cur.tpos); /* a repeated member: the last one wins, as in a table */
      lua_pop(L, 1);
    } else if (member != NULL && *member->at == '"') {
      member->len = (size_t)(p - (const unsigned char *)member->at);
      lua_pop(L, 1);
    } else {
      if (member != NULL) member->len = (size_t)(p - (const unsigned char *)member->at);
      lua_pop(L, 2);
    }
    member = NULL;
    p = skip_ws(p, end);
    if (p >= end) goto eoi;
    if (*p == ',') {
      p++;
      goto key;
    }
    if (*p != '}') goto unexpected;
    p++;
    goto close;
  }
  pending++;
  p = skip_ws(p, end);
  if (p >= end) goto eoi;
  if (*p == ',') {
    int top = cur.tpos + (int)pending * ((cur.kind & FR_OBJECT) ? 2 : 1);
    p++;
    if (pending >= PEND_MAX) {
      dec_flush(&d, &cur, pending, 0);
      pending = 0;
    } else if (top + PEND_ROOM > reserved) {
      if (lua_checkstack(L, PEND_ROOM + 2 * PEND_CHUNK)) {
        reserved = top + PEND_ROOM + 2 * PEND_CHUNK;
      } else {
        dec_flush(&d, &cur, pending, 0);
        pending = 0;
      }
    }
    if (cur.kind & FR_OBJECT) goto key;
    goto value;
  }
  if (*p != ((cur.kind & FR_OBJECT) ? '}' : ']')) goto unexpected;
  p++;
  goto close;

key:
  p = skip_ws(p, end);
  if (p >= end) goto eoi;
  if (*p != '"') goto unexpected;
  if (cur.kind & FR_ENVELOPE) p = envelope_key(&d, p, env, &member, &act);
  else p = dec_string(&d, p, DS_KEY);
  if (p == NULL) goto fail;
  p = skip_ws(p, end);
  if (p >= end) goto eoi;
  if (*p != ':') goto unexpected;
  p++;
  goto value;

close: /* the finished table on top is now the value (the envelope's: its result) */
  if (!(cur.kind & FR_ENVELOPE)) dec_flush(&d, &cur, pending, 0);
  cur = frames[--depth];
  pending = cur.pending;
  goto after;

done:
  p = skip_ws(p, end);
  if (p < end) {
    dec_fail(&d, "unexpected data after the value", p);
    goto fail;
  }
  if (env != NULL && !env->object) { /* not an envelope: nothing to hand back */
    lua_pushnil(L);
    lua_replace(L, -2);
  }
  if (d.st != NULL) {
    dec_state_done(&d);
    lua_remove(L, d.cache);
  }
  return 1;

eoi:
  dec_fail(&d, "unexpected end of input", p);
  goto fail;
unexpected:
  dec_fail(&d, "unexpected character", p);
fail:
  if (d.st != NULL) {
    lua_settop(L, d.cache); /* frees the slots that dec_state_done needs */
    dec_state_done(&d);
  }
  lua_settop(L, base);
  return 0;
}

int json_decode(lua_State *L, const char *text, size_t len, int max_depth, char *err,
                size_t errlen) {
  return decode(L, text, len, max_depth, err, errlen, NULL);
}

int json_decode_envelope(lua_State *L, const char *text, size_t len, int max_depth, char *err,
                         size_t errlen, json_envelope *env) {
  memset(env, 0, sizeof *env);
  return decode(L, text, len, max_depth, err, errlen, env);
}

void json_push_member(lua_State *L, const json_member *m) {
  /* The text was checked as part of the whole document, so decoding it alone cannot fail (it
   * nests less deeply than its own length); a member not read stays absent. */
  int depth = m->len < INT_MAX ? (int)m->len + 1 : INT_MAX;
  if (m->at == NULL || !decode(L, m->at, m->len, depth, NULL, 0, NULL)) lua_pushnil(L);
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

/* One string key of the object being written. `pre` is the key's first eight bytes read
 * big-endian (zero-padded), so that two different prefixes order the keys as memcmp would. */
typedef struct key_ref {
  const char *s;
  size_t n;
  uint64_t pre;
  int slot; /* stack index of the value, kept there since the key walk; 0: look it up again */
} key_ref;

/* Objects of up to SORT_SMALL keys are ordered through an index array, and the order found for
 * one object is tried first on the next object of the same depth and size: the records of a
 * list share their keys, and then checking the order (one comparison per key) replaces sorting. */
#define SORT_SMALL 32
#define ORDER_DEPTHS 16

typedef struct key_orders {
  unsigned char n[ORDER_DEPTHS]; /* 0: nothing remembered at that depth */
  unsigned char order[ORDER_DEPTHS][SORT_SMALL];
} key_orders;

typedef struct encoder {
  lua_State *L;
  json_buf *b;
  json_buf *keys; /* scratch for key_refs: each object level uses a slice past its parent's */
  int max_depth;
  const char *fname;
  key_orders *orders; /* only ever a hint: each use is checked */
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

static uint64_t key_prefix(const char *s, size_t n) {
  unsigned char t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  memcpy(t, s, n < 8 ? n : 8);
  return (uint64_t)t[0] << 56 | (uint64_t)t[1] << 48 | (uint64_t)t[2] << 40 |
         (uint64_t)t[3] << 32 | (uint64_t)t[4] << 24 | (uint64_t)t[5] << 16 |
         (uint64_t)t[6] << 8 | (uint64_t)t[7];
}

/* Bytewise order, shorter first on a common prefix. Keys of one table are distinct strings,
 * so this is a strict total order on them. */
static int key_less(const key_ref *x, const key_ref *y) {
  int c;
  if (x->pre != y->pre) return x->pre < y->pre;
  c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  return c != 0 ? c < 0 : x->n < y->n;
}

static int key_cmp(const void *a, const void *b) {
  const key_ref *x = (const key_ref *)a, *y = (const key_ref *)b;
  return key_less(x, y) ? -1 : key_less(y, x);
}

/* Fills order[0..n) with the indices of refs in key order (n <= SORT_SMALL). */
static void order_keys(encoder *e, const key_ref *refs, size_t n, int depth,
                       unsigned char *order) {
  size_t i, j;
  int slot = depth < ORDER_DEPTHS ? depth : -1;
  if (slot >= 0 && e->orders->n[slot] == n) {
    const unsigned char *o = e->orders->order[slot];
    for (i = 1; i < n && key_less(&refs[o[i - 1]], &refs[o[i]]); i++) {}
    if (i >= n) {
      memcpy(order, o, n);
      return;
    }
  }
  for (i = 0; i < n; i++) { /* insertion sort: few keys, often nearly in order */
    unsigned char v = (unsigned char)i;
    for (j = i; j > 0 && key_less(&refs[v], &refs[order[j - 1]]); j--) order[j] = order[j - 1];
    order[j] = v;
  }
  if (slot >= 0) {
    memcpy(e->orders->order[slot], order, n);
    e->orders->n[slot] = (unsigned char)n;
  }
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
    buf_put(L, b, ".0", 2);
    return 1;
  }
  if (d == floor(d) && d != 0) return add_shortest(L, b, d);
  return json_buf_add_float(L, b, d);
}
#endif

/* Values kept on the stack during the key walk are added in chunks of this many (two slots
 * each); where the stack cannot grow further the rest are looked up again by key instead. */
#define KEEP_CHUNK 64

static void enc_table(encoder *e, int idx, int depth, const enc_path *at) {
  lua_State *L = e->L;
  json_buf *b = e->b;
  size_t kbase = e->keys->len, nkeys, i;
  lua_Integer count = 0, max = 0;
  int top, kept = 0, room = 0, keep = 1;
  enum { EMPTY, ARRAY, OBJECT } kind = EMPTY;

  if (depth > e->max_depth) {
    char what[64];
    snprintf(what, sizeof what, "tables nested deeper than %d (a cycle?)", e->max_depth);
    enc_error(e, at, what);
  }
  if (!lua_checkstack(L, 4)) enc_error(e, at, "Lua stack exhausted");
  top = lua_gettop(L);

  /* One pass decides the shape: keys exactly 1..n make an array, all-string keys an object.
   * An object's values stay on the stack (each above its key) so that writing them needs no
   * second lookup by key; the walk goes on from a copy of the key. */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_Integer k;
    if (kind != ARRAY && lua_type(L, -2) == LUA_TSTRING) {
      key_ref r;
      r.s = lua_tolstring(L, -2, &r.n);
      r.pre = key_prefix(r.s, r.n);
      r.slot = 0;
      kind = OBJECT;
      if (keep && kept == room) {
        /* Room for the chunk and for every deeper level's own needs (at most max_depth levels,
         * one slot each, as when nothing is kept), so keeping never makes a deep table fail
         * where looking values up again would not. */
        if (lua_checkstack(L, 2 * KEEP_CHUNK + 8 + (e->max_depth - depth))) room += KEEP_CHUNK;
        else keep = 0;
      }
      if (keep) {
        r.slot = top + 2 + 2 * kept++;
        lua_pushvalue(L, -2);
      } else {
        lua_pop(L, 1);
      }
      buf_put(L, e->keys, (const char *)&r, sizeof r);
      continue;
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
    buf_put(L, b, marked_array(L, idx) ? "[]" : "{}", 2);
    return;
  }

  if (kind == ARRAY) {
    enc_path here;
    lua_Integer n;
    if (count != max) enc_error(e, at, "array has holes (use partner.null for null)");
    here.up = at;
    here.key = NULL;
    here.klen = 0;
    buf_putc(L, b, '[');
    for (n = 1; n <= max; n++) {
      if (n > 1) buf_putc(L, b, ',');
      here.index = n;
      lua_rawgeti(L, idx, n);
      enc_value(e, top + 1, depth, &here);
      lua_pop(L, 1);
    }
    buf_putc(L, b, ']');
    return;
  }

  /* Sorted keys make the output deterministic (signatures, logs, tests). Key strings stay alive
   * while they are keys of the table, which is anchored on the stack (and the kept ones are on
   * the stack themselves); the slice is re-read by index because nested objects may move the
   * scratch buffer. */
  nkeys = (e->keys->len - kbase) / sizeof(key_ref);
  {
    unsigned char order[SORT_SMALL];
    int small = nkeys <= SORT_SMALL;
    if (small) order_keys(e, (const key_ref *)(void *)(e->keys->data + kbase), nkeys, depth, order);
    else qsort(e->keys->data + kbase, nkeys, sizeof(key_ref), key_cmp);
    buf_putc(L, b, '{');
    for (i = 0; i < nkeys; i++) {
      key_ref r;
      enc_path here;
      memcpy(&r, e->keys->data + kbase + (small ? order[i] : i) * sizeof r, sizeof r);
      if (i > 0) buf_putc(L, b, ',');
      if (!put_string(L, b, r.s, r.n, 1)) enc_error(e, at, "key is not valid UTF-8");
      buf_putc(L, b, ':');
      here.up = at;
      here.key = r.s;
      here.klen = r.n;
      here.index = 0;
      if (r.slot != 0) {
        enc_value(e, r.slot, depth, &here);
      } else {
        lua_pushlstring(L, r.s, r.n);
        lua_rawget(L, idx);
        enc_value(e, lua_gettop(L), depth, &here);
        lua_pop(L, 1);
      }
    }
    buf_putc(L, b, '}');
  }
  lua_settop(L, top);
  e->keys->len = kbase;
}

static void enc_value(encoder *e, int idx, int depth, const enc_path *at) {
  lua_State *L = e->L;
  char what[64];
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    buf_put(L, e->b, "null", 4);
    return;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx)) buf_put(L, e->b, "true", 4);
    else buf_put(L, e->b, "false", 5);
    return;
  case LUA_TNUMBER:
#if YP_INTEGER_SUBTYPE
    if (yp_isinteger(L, idx)) {
      buf_add_ll(L, e->b, (long long)lua_tointeger(L, idx));
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
    if (!put_string(L, e->b, s, n, 1)) enc_error(e, at, "string is not valid UTF-8");
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

static void encode_with(lua_State *L, int idx, json_buf *b, json_buf *keys, key_orders *orders,
                        int max_depth, const char *fname) {
  encoder e;
  e.L = L;
  e.b = b;
  e.keys = keys;
  e.orders = orders;
  e.max_depth = max_depth < 1 ? JSON_DEFAULT_DEPTH : max_depth;
  e.fname = fname;
  enc_value(&e, idx, 0, NULL);
}

void json_encode_value(lua_State *L, int idx, json_buf *b, int max_depth, const char *fname) {
  json_buf *keys;
  key_orders orders;
  memset(orders.n, 0, sizeof orders.n);
  idx = yp_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) {
    encode_with(L, idx, b, NULL, &orders, max_depth, fname);
    return;
  }
  luaL_checkstack(L, 4, fname);
  keys = json_buf_push(L);
  encode_with(L, idx, b, keys, &orders, max_depth, fname);
  buf_release(L, keys);
  lua_pop(L, 1);
}

/* partner.json_encode reuses one pair of buffers (output and key scratch) per Lua state, kept in
 * the registry: small documents then cost no allocation besides the result string. The pair is
 * marked busy while in use; an encode that finds it busy (one nested in it through a cdata
 * __tostring, or any encode after one that raised and never cleared the mark) uses a new pair
 * and leaves that one in the registry instead. Capacity beyond KEEP_BYTES is freed after use, so
 * that one big document does not pin its memory. */
typedef struct enc_bufs {
  json_buf out, keys;
  key_orders orders; /* so that requests of one shape are not sorted again call after call */
  int busy;
} enc_bufs;
#define ENC_BUFS_MT "yeastar.partner.json_enc_bufs"
#define KEEP_BYTES 65536
static char enc_bufs_key; /* only its address is used: the registry key */

static int enc_bufs_gc(lua_State *L) {
  enc_bufs *eb = (enc_bufs *)lua_touserdata(L, 1);
  buf_release(L, &eb->out);
  buf_release(L, &eb->keys);
  return 0;
}

/* Pushes a pair that is not busy and marks it busy; *fresh says it is new (not the registry's). */
static enc_bufs *enc_bufs_take(lua_State *L, int *fresh) {
  enc_bufs *eb;
  lua_pushlightuserdata(L, (void *)&enc_bufs_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  eb = (enc_bufs *)lua_touserdata(L, -1);
  *fresh = eb == NULL || eb->busy;
  if (*fresh) {
    lua_pop(L, 1);
    /* Closed first (no memory, __gc set), acquire later, as for json_buf. */
    eb = (enc_bufs *)yp_newuserdata(L, sizeof *eb);
    memset(eb, 0, sizeof *eb);
    if (luaL_newmetatable(L, ENC_BUFS_MT)) {
      lua_pushcfunction(L, enc_bufs_gc);
      lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
  }
  eb->busy = 1;
  return eb;
}

int json_l_encode(lua_State *L) {
  enc_bufs *eb;
  int fresh;
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  eb = enc_bufs_take(L, &fresh); /* at 2 */
  encode_with(L, 1, &eb->out, &eb->keys, &eb->orders, JSON_DEFAULT_DEPTH, "json_encode");
  lua_pushlstring(L, eb->out.data != NULL ? eb->out.data : "", eb->out.len);
  eb->out.len = eb->keys.len = 0;
  if (eb->out.cap > KEEP_BYTES) buf_release(L, &eb->out);
  if (eb->keys.cap > KEEP_BYTES) buf_release(L, &eb->keys);
  eb->busy = 0;
  if (fresh) {
    lua_pushlightuserdata(L, (void *)&enc_bufs_key);
    lua_pushvalue(L, 2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  return 1;
}
