/* fuzz_json.c: libFuzzer target for the JSON codec. Any input must decode or fail cleanly; whatever
 * decodes must encode, and that text must decode and encode again to the same bytes. */
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

/* Runs under lua_pcall so that a Lua error is reported (and aborts) instead of escaping. */
static int round_trip(lua_State *L) {
  const input *in = (const input *)lua_touserdata(L, 1);
  char err[128];
  json_buf *first, *second;
  if (!json_decode(L, in->data, in->size, 64, err, sizeof err)) {
    if (strncmp(err, "invalid JSON: ", 14) != 0) fail("malformed error message", err);
    if (lua_gettop(L) != 1) fail("stack not restored after a failed decode", NULL);
    return 0;
  }
  if (lua_gettop(L) != 2) fail("decode pushed other than one value", NULL);
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
