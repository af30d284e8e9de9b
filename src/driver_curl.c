/* driver_curl.c: the libcurl driver. It moves the call core's requests through transport_curl.c,
 * blocking, and runs the callbacks (logger, token store, on_result) between the core's steps. */
#include <math.h>
#include <string.h>

#include "driver_curl.h"

#define MAX_CONCURRENCY 256

/* A broken logger must never break a call that moves money, so its errors are dropped. */
void yp_emit(lua_State *L, yp_client *c) {
  if (lua_isnil(L, -1) || !yp_has_logger(c)) {
    lua_pop(L, 1);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->logger_ref);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 0, 0) != YP_LUA_OK) lua_pop(L, 1);
}

/* ---- token store ------------------------------------------------------------------------ */

static void log_store_failure(lua_State *L, yp_client *c, const char *op) {
  yp_core_store_failure_event(L, c, op);
  yp_emit(L, c);
}

/* Calls store[op] with nargs arguments below it on the stack; leaves one result. Returns 1 when
 * the store answered (its result on top), else logs why and returns 0 with nothing left. A
 * store that fails costs a login, never the call. */
static int store_call(lua_State *L, yp_client *c, const char *op, int nargs) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->store_ref);
  lua_getfield(L, -1, op);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  if (lua_pcall(L, nargs, 2, 0) != YP_LUA_OK) {
    log_store_failure(L, c, op);
    return 0;
  }
  if (lua_isnil(L, -2) && !lua_isnil(L, -1)) { /* the nil, message convention */
    lua_remove(L, -2);
    log_store_failure(L, c, op);
    return 0;
  }
  lua_pop(L, 1);
  return 1;
}

static void store_load(lua_State *L, yp_client *c) {
  c->store_loaded = 1;
  if (!yp_has_store(c) || !store_call(L, c, "load", 0)) return;
  if (lua_istable(L, -1)) {
    yp_core_token_load(L, c, -1);
  } else if (!lua_isnil(L, -1)) {
    lua_pushfstring(L, "load returned a %s, not a table", luaL_typename(L, -1));
    lua_remove(L, -2);
    log_store_failure(L, c, "load");
    return;
  }
  lua_pop(L, 1);
}

static void store_save(lua_State *L, yp_client *c) {
  if (!yp_has_store(c)) return;
  yp_core_push_token_record(L, c);
  if (store_call(L, c, "save", 1)) lua_pop(L, 1);
}

/* ---- tokens ----------------------------------------------------------------------------- */

int yp_curl_token_exchange(lua_State *L, yp_client *c, int refresh, double deadline) {
  yp_call k;
  yp_core_token_call(L, c, refresh, deadline, &k);
  int ok = yp_curl_run(L, c, &k);
  lua_replace(L, -3); /* the value replaces the url and body that anchored the exchange */
  lua_pop(L, 1);
  if (!ok || !yp_core_token_accept(L, c, k.ep)) return 0;
  store_save(L, c);
  return 1;
}

/* A store that closes the client needs no check here: the exchange then fails unsent with the
 * closed error (yp_core_next), and a valid token is still allocated until the release. */
static int ensure_token(lua_State *L, yp_client *c, double deadline) {
  if (!c->store_loaded) store_load(L, c);
  if (yp_core_token_valid(c)) return 1;
  if (yp_core_can_refresh(c)) {
    if (yp_curl_token_exchange(L, c, 1, deadline)) return 1;
    lua_pop(L, 1);
    yp_core_refresh_failed(c);
  }
  return yp_curl_token_exchange(L, c, 0, deadline);
}

/* ---- one call --------------------------------------------------------------------------- */

int yp_curl_run(lua_State *L, yp_client *c, yp_call *k) {
  int mark = yp_transport_mark(c->transport), slot = yp_transport_reserve(c->transport, 1);
  if (slot < 0) luaL_error(L, "%s: out of memory", k->ep->name);
  for (;;) {
    yp_attempt a;
    double pause;
    switch (yp_core_next(L, c, k, &a, &pause)) {
    case YP_NEXT_TOKEN:
      if (ensure_token(L, c, k->deadline)) continue;
      yp_transport_release_to(c->transport, mark);
      return 0;
    case YP_NEXT_PAUSE:
      yp_transport_sleep(c->transport, pause);
      continue;
    case YP_NEXT_FAIL:
      yp_transport_release_to(c->transport, mark);
      return 0;
    case YP_NEXT_SEND:
      break;
    }
    const yp_http_response *r = yp_transport_perform(c->transport, slot, &a.request);
    yp_attempt_end(&a);
    yp_fed fed = yp_core_feed(L, c, k, r);
    yp_transport_recycle(c->transport, slot);
    yp_emit(L, c);
    if (fed != YP_FED_RETRY) {
      yp_transport_release_to(c->transport, mark);
      return fed == YP_FED_DONE;
    }
  }
}

/* ---- batch ------------------------------------------------------------------------------ */

/* Stores the value on top as item i's {result=} or {err=}, tells on_result, pops the value.
 * An error raised by on_result ends the batch (see guarded: nothing stays in flight). */
static void batch_finish(lua_State *L, const yp_batch *b, int i, int ok) {
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, ok ? "result" : "err");
  lua_rawseti(L, BATCH_RESULTS, i + 1);
  if (b->has_callback) {
    lua_getfield(L, BATCH_OPTS, "on_result");
    lua_pushinteger(L, i + 1);
    lua_pushvalue(L, -3);
    lua_pushnil(L);
    if (!ok) lua_insert(L, -2); /* (i, nil, err) */
    lua_call(L, 3, 0);
  }
  lua_pop(L, 1);
}

/* Runs every item on the batch's own range of transport slots, so that a callback may start
 * another batch, or any call, on the same client. */
int yp_curl_batch(lua_State *L, yp_client *c, yp_batch *b) {
  yp_call *calls = b->calls;
  int *waiting = b->waiting, n = b->n, concurrency = b->concurrency;
  int first = yp_transport_reserve(c->transport, concurrency);
  if (first < 0) luaL_error(L, "batch: out of memory");

  /* on_slot[s]: the item running on slot first + s. */
  int on_slot[MAX_CONCURRENCY], next = 0, in_flight = 0, finished = 0, nwaiting = 0;
  for (int s = 0; s < concurrency; s++) on_slot[s] = -1;
  while (finished < n) {
    /* Fill free slots: retries whose pause is over first, then new items. Once the client is
     * closed, every item not yet in flight fails at once, unsent. */
    for (int s = 0; s < concurrency && finished < n; s++) {
      if (on_slot[s] >= 0) continue;
      int pick = -1;
      double now = yp_now_mono();
      for (int w = 0; w < nwaiting && pick < 0; w++)
        if (calls[waiting[w]].not_before <= now || c->closed) {
          pick = waiting[w];
          waiting[w] = waiting[--nwaiting];
        }
      if (pick < 0 && next < n) pick = next++;
      if (pick < 0) break;
      yp_attempt a;
      double pause;
      yp_next step;
      while ((step = yp_core_next(L, c, &calls[pick], &a, &pause)) == YP_NEXT_TOKEN)
        if (!ensure_token(L, c, calls[pick].deadline)) break;
      if (step == YP_NEXT_PAUSE) { /* cannot happen (picked only once due), but never spin */
        waiting[nwaiting++] = pick;
        break;
      }
      if (step != YP_NEXT_SEND) { /* the token's error, or the call's own */
        finished++;
        batch_finish(L, b, pick, 0);
        s--; /* the slot is still free */
        continue;
      }
      int ok = yp_transport_submit(c->transport, first + s, &a.request);
      yp_attempt_end(&a);
      if (!ok) luaL_error(L, "batch: out of memory");
      on_slot[s] = pick;
      in_flight++;
    }
    if (finished >= n) break;
    if (in_flight == 0) { /* only paused retries left */
      double wake = HUGE_VAL;
      for (int w = 0; w < nwaiting; w++)
        if (calls[waiting[w]].not_before < wake) wake = calls[waiting[w]].not_before;
      yp_transport_sleep(c->transport, wake - yp_now_mono());
      continue;
    }
    int slot = yp_transport_wait(c->transport, first, concurrency);
    if (slot < 0) continue;
    int i = on_slot[slot - first];
    on_slot[slot - first] = -1;
    in_flight--;
    yp_fed fed = yp_core_feed(L, c, &calls[i], yp_transport_response(c->transport, slot));
    yp_transport_recycle(c->transport, slot);
    yp_emit(L, c);
    if (fed == YP_FED_RETRY) {
      waiting[nwaiting++] = i;
      continue;
    }
    finished++;
    batch_finish(L, b, i, fed == YP_FED_DONE);
  }
  lua_pushvalue(L, BATCH_RESULTS);
  return 1;
}
