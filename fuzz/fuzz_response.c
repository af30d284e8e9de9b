/* fuzz_response.c: libFuzzer target for the response side: arbitrary transport outcome, status
 * and body bytes into the classifier (envelope, status rules, never-twice rule, redaction) and
 * the token reader. Whatever comes in, the result is one value, and every error's text fields
 * are bounded, one line, valid UTF-8 and free of the secrets. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classify.h"
#include "errors.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const secrets[] = {"yp-fuzz-secret-5f2b9c", "AT.0123456789abcdef", NULL};

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_response: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  abort();
}

static void check_text(lua_State *L, int err, const char *field, size_t max) {
  lua_getfield(L, err, field);
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (n > max) fail("field too long", field);
    if (!json_utf8_valid(s, n)) fail("field not UTF-8", field);
    if (memchr(s, '\n', n) || memchr(s, '\r', n)) fail("field has a line break", field);
    for (int i = 0; secrets[i]; i++)
      if (strstr(s, secrets[i])) fail("secret in field", field);
  }
  lua_pop(L, 1);
}

static int run(lua_State *L) {
  const input *in = (const input *)lua_touserdata(L, 1);
  const uint8_t *p = in->data;
  if (in->size < 4) return 0;
  /* byte 0: endpoint; bytes 1-2: status; byte 3: transport error and maybe_sent. */
  const yp_endpoint *ep = &yp_endpoints[p[0] % yp_endpoint_count];
  yp_http_response r;
  memset(&r, 0, sizeof r);
  r.status = (long)((p[1] << 8 | p[2]) % 1000);
  r.error = (yp_transport_error)((p[3] & 0x7F) % (YP_TR_OTHER + 1));
  r.maybe_sent = p[3] >> 7;
  r.retry_after = -1;
  snprintf(r.detail, sizeof r.detail, "detail with yp-fuzz-secret-5f2b9c\nsecond line");
  r.body = (char *)(uintptr_t)(p + 4); /* never written through */
  r.body_len = in->size - 4;

  int top = lua_gettop(L);
  yp_outcome out = yp_classify(L, ep, &r, 64, secrets);
  if (lua_gettop(L) != top + 1) fail("classify pushed other than one value", NULL);
  if (out != YP_OUT_DONE) {
    if (!lua_istable(L, -1)) fail("an error that is not a table", NULL);
    int err = lua_gettop(L);
    check_text(L, err, "message", YP_MESSAGE_MAX);
    check_text(L, err, "code", YP_CODE_MAX);
    check_text(L, err, "request_id", YP_REQUEST_ID_MAX);
    lua_getfield(L, err, "kind");
    const char *kind = lua_tostring(L, -1);
    if (!kind) fail("error without a kind", NULL);
    /* The never-twice rule: a call that must not run twice is never retried after its bytes
     * may have left, unless the answer proved it was not applied (401, 429, a refusal). The
     * 429 may be the envelope's status inside an HTTP 2xx: the error's status is the one that
     * counted (see classify.c). */
    lua_getfield(L, err, "status");
    long counted = lua_isnumber(L, -1) ? (long)lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    if (!(ep->flags & YP_REPLAY_SAFE) && r.maybe_sent && out == YP_OUT_RETRY && counted != 429)
      fail("a money-moving call would be re-sent", NULL);
    if (strcmp(kind, "ambiguous") == 0 && out != YP_OUT_FAIL) fail("ambiguous but continued", NULL);
    lua_pop(L, 1);
  } else {
    yp_token_result t;
    if (yp_read_token(L, -1, &t) &&
        !(t.lifetime >= 1 && t.lifetime <= 30 * 24 * 3600.0 && strlen(t.token) <= 8192))
      fail("token result out of bounds", NULL);
  }
  lua_settop(L, top);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = luaL_newstate();
  input in;
  if (L == NULL) return 0;
  yp_errors_register(L);
  in.data = data;
  in.size = size;
  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, &in);
  if (lua_pcall(L, 1, 0, 0) != YP_LUA_OK) fail("Lua error", lua_tostring(L, -1));
  lua_close(L);
  return 0;
}
