/* fuzz_request.c: libFuzzer target for the request builder. The input's first byte picks an
 * endpoint, the rest is decoded as JSON into the parameter table (whatever shape it has). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "endpoints.h"
#include "json.h"
#include "request.h"

static const char *BASE = "https://portal.test";

static int build(lua_State *L) {
  const yp_endpoint *ep = (const yp_endpoint *)lua_touserdata(L, 2);
  yp_request req;
  yp_build_request(L, BASE, ep, 1, &req);
  /* Whatever was accepted must be a clean URL and, for POSTs, valid JSON. */
  for (const char *p = req.url; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == '#') abort();
  if (strncmp(req.url, BASE, strlen(BASE)) != 0 || req.path[0] != '/') abort();
  if (req.body) {
    char err[128];
    if (!json_decode(L, req.body, req.body_len, 64, err, sizeof err)) abort();
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const yp_endpoint *ep = &yp_endpoints[data[0] % yp_endpoint_count];
  lua_State *L = luaL_newstate();
  if (!L) return 0;
  char err[128];
  if (json_decode(L, (const char *)data + 1, size - 1, 16, err, sizeof err)) {
    lua_pushcfunction(L, build);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, (void *)(uintptr_t)ep);
    lua_pcall(L, 2, 0, 0); /* a raised error is a rejected input: fine */
  }
  lua_close(L);
  return 0;
}
