/* json.h: the JSON codec's interface: strict RFC 8259 decoding that keeps 64-bit IDs exact,
 * deterministic encoding into a GC-owned buffer, and partner.json_decode / partner.json_encode. */
#ifndef YP_JSON_H
#define YP_JSON_H

#include <stddef.h>
#include <string.h>
#include "compat.h"

/* Default nesting limit for decoding and encoding; also what a max_depth < 1 means. */
#define JSON_DEFAULT_DEPTH 512

/* Decoded arrays carry this metatable, so that they encode as arrays again even when empty
 * (partner.array_mt). Where lua-cjson with array_mt is loaded first, it is cjson's own. */
#define JSON_ARRAY_MT "yeastar.partner.array"
void json_push_array_mt(lua_State *L);

/* JSON null is the light userdata NULL (documented to users as partner.null; same value as cjson.null). */
void json_push_null(lua_State *L);

/* Decodes `len` bytes. On success pushes one value and returns 1. On failure pushes nothing,
 * writes a one-line reason with the 1-based byte offset into err (e.g. "invalid JSON: unexpected
 * character at byte 17", "invalid JSON: nesting deeper than 64 at byte 65") and returns 0.
 * Integers that fit lua_Integer become integers, larger ones the numeral's exact text.
 * It raises only on memory errors. Never echoes input bytes in the message. */
int json_decode(lua_State *L, const char *text, size_t len, int max_depth, char *err, size_t errlen);

/* The portal's envelope, {"code": ..., "detailMessage": ..., "requestId": ..., "result": ...},
 * decoded for the classifier without a table for the envelope itself: json_decode_envelope checks
 * the whole text exactly as json_decode does (same errors, limits and depth), pushes only the
 * `result` member's value, and locates four members in the text. As in a decoded table, a
 * repeated member counts by its last occurrence and keys are compared after unescaping. */
typedef struct json_member {
  const char *at; /* the value's JSON text inside the decoded text; NULL when absent */
  size_t len;     /* its length in bytes */
} json_member;
typedef struct json_envelope {
  int object; /* the document is an object; if not, every member is absent */
  json_member code, status, request_id, detail_message;
} json_envelope;

/* Like json_decode, but on success pushes the `result` member (nil when the document is not an
 * object or has none) and fills env. The members point into text: they live as long as it does. */
int json_decode_envelope(lua_State *L, const char *text, size_t len, int max_depth, char *err,
                         size_t errlen, json_envelope *env);
/* Pushes a member's value as json_decode makes it (nil when absent). Raises only on memory errors. */
void json_push_member(lua_State *L, const json_member *m);
/* A member that is a string without escapes: its bytes (not NUL-terminated) and count; else NULL. */
static inline const char *json_member_plain(const json_member *m, size_t *n) {
  if (m->at == NULL || m->at[0] != '"' || memchr(m->at, '\\', m->len) != NULL) return NULL;
  *n = m->len - 2;
  return m->at + 1;
}

/* A growable buffer owned by a full userdata with __gc, so nothing leaks when a Lua error
 * unwinds mid-build. Memory comes from the state's allocator. */
typedef struct json_buf {
  char *data;
  size_t len, cap;
} json_buf;
json_buf *json_buf_push(lua_State *L); /* pushes the box, returns the buffer */
void json_buf_add(lua_State *L, json_buf *b, const char *s, size_t n); /* raises on OOM */
void json_buf_add_char(lua_State *L, json_buf *b, char c);
/* Quoted and escaped; the caller guarantees valid UTF-8. */
void json_buf_add_string(lua_State *L, json_buf *b, const char *s, size_t n);
void json_buf_add_integer(lua_State *L, json_buf *b, lua_Integer v);
/* 0 for NaN/inf (nothing written); else the shortest of %.15g/%.16g/%.17g that reads back
 * equal, with '.' whatever the C locale; -0.0 is written "-0.0" so it stays a float. */
int json_buf_add_float(lua_State *L, json_buf *b, double d);
/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
int json_utf8_valid(const char *s, size_t n);

/* Generic encoder used for partner.json_encode and dry-run bodies; raises a Lua error naming
 * `fname` on unencodable values. max_depth < 1 means JSON_DEFAULT_DEPTH. */
void json_encode_value(lua_State *L, int idx, json_buf *b, int max_depth, const char *fname);

/* Lua-facing functions, registered by the module as partner.json_decode / partner.json_encode. */
int json_l_decode(lua_State *L); /* (text [, max_depth=512]) -> value | nil, message */
int json_l_encode(lua_State *L); /* (value) -> string; raises on unencodable values */

#endif
