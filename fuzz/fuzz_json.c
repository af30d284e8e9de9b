/* fuzz_json.c: libFuzzer target for the JSON codec. Any input must decode or fail cleanly, and the
 * envelope decoder must agree; whatever decodes must encode, and that text must decode and encode
 * again to the same bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct input {
  const char *data;
  size_t size;
} input;

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_json: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  abort();
}

/* Encodes the value at idx (a decoded one: always encodable) into a new buffer on the stack. */
static json_buf *encoded(lua_State *L, int idx) {
  json_buf *b;
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  b = json_buf_push(L);
  json_encode_value(L, idx, b, 512, "fuzz");
  return b;
}

static int same_value(lua_State *L, int a, int b) {
  json_buf *x, *y;
  if (lua_type(L, a) != lua_type(L, b)) return 0;
#if LUA_VERSION_NUM >= 503
  if (lua_type(L, a) == LUA_TNUMBER && lua_isinteger(L, a) != lua_isinteger(L, b)) return 0;
#endif
  if (!lua_istable(L, a)) return lua_rawequal(L, a, b);
  x = encoded(L, a);
  y = encoded(L, b < 0 ? b - 1 : b);
  return x->len == y->len && memcmp(x->data, y->data, x->len) == 0;
}

/* json_decode_envelope must agree with json_decode on the same text: the same verdict and
 * message, the result member and the four located members as the decoded table holds them.
 * On entry the stack is (input, json_decode's value or nothing); it is left so. */
static void check_envelope(lua_State *L, int decoded, const char *err) {
  const input *in = (const input *)lua_touserdata(L, 1);
  static const char *const names[] = {"code", "status", "requestId", "detailMessage"};
  char err2[128];
  json_envelope env;
  int top = lua_gettop(L), i, object;
  const json_member *members[4];
  if (json_decode_envelope(L, in->data, in->size, 64, err2, sizeof err2, &env) != decoded)
    fail("envelope decoding disagrees with json_decode", decoded ? "fails" : "succeeds");
  if (!decoded) {
    if (strcmp(err, err2) != 0) fail("envelope decoding fails otherwise", err2);
    if (lua_gettop(L) != top) fail("stack not restored after a failed envelope decode", NULL);
    return;
  }
  if (lua_gettop(L) != top + 1) fail("envelope decode pushed other than one value", NULL);
  /* An object is a table without the array metatable. */
  object = lua_istable(L, 2) && !lua_getmetatable(L, 2);
  if (lua_istable(L, 2) && !object) lua_pop(L, 1);
  if (env.object != object) fail("envelope decoding mistakes the document's kind", NULL);
  if (object) lua_getfield(L, 2, "result");
  else lua_pushnil(L);
  if (!same_value(L, -1, -2)) fail("envelope result differs from the decoded member", NULL);
  lua_settop(L, top);
  members[0] = &env.code;
  members[1] = &env.status;
  members[2] = &env.request_id;
  members[3] = &env.detail_message;
  for (i = 0; i < 4; i++) {
    if (object) lua_getfield(L, 2, names[i]);
    else lua_pushnil(L);
    json_push_member(L, members[i]);
    if (!same_value(L, -1, -2)) fail("envelope member differs from the decoded one", names[i]);
    lua_settop(L, top);
  }
}

/* Runs under lua_pcall so that a Lua error is reported (and aborts) instead of escaping. */
static int round_trip(lua_State *L) {
  const input *in = (const input *)lua_touserdata(L, 1);
  char err[128];
  json_buf *first, *second;
  if (!json_decode(L, in->data, in->size, 64, err, sizeof err)) {
    if (strncmp(err, "invalid JSON: ", 14) != 0) fail("malformed error message", err);
    if (lua_gettop(L) != 1) fail("stack not restored after a failed decode", NULL);
    check_envelope(L, 0, err);
    return 0;
  }
  if (lua_gettop(L) != 2) fail("decode pushed other than one value", NULL);
  check_envelope(L, 1, err);
  first = json_buf_push(L);                 /* 3 */
  json_encode_value(L, 2, first, 512, "fuzz");
  if (!json_decode(L, first->data, first->len, 64, err, sizeof err)) /* 4 */
    fail("our own output does not decode", err);
  second = json_buf_push(L);                /* 5 */
  json_encode_value(L, 4, second, 512, "fuzz");
  if (first->len != second->len || memcmp(first->data, second->data, first->len) != 0)
    fail("encode(decode(encode(decode(x)))) differs from encode(decode(x))", NULL);
  if (!json_utf8_valid(first->data, first->len)) fail("output is not valid UTF-8", NULL);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  input in;
  if (L == NULL) return 0;
  in.data = (const char *)data;
  in.size = size;
  lua_pushcfunction(L, round_trip);
  lua_pushlightuserdata(L, &in);
  if (lua_pcall(L, 1, 0, 0) != YP_LUA_OK) fail("Lua error", lua_tostring(L, -1));
  lua_close(L);
  return 0;
}
