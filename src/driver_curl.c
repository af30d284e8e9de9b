/* driver_curl.c: the libcurl driver. It moves the call core's requests through transport_curl.c,
 * blocking, and runs the callbacks (logger, token store, on_result) between the core's steps. */
#include <math.h>
#include <string.h>

#include "driver_curl.h"

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

/* A lane carries one item at a time from its build to its end: in flight on the lane's transport
 * slot, or paused before a retry. A paused item keeps its lane, so a batch never holds more than
 * `concurrency` calls, and a server that asked for a pause gets no extra requests meanwhile. */
enum { LANE_FREE, LANE_FLIGHT, LANE_PAUSED };
#define LANE_URL 512 /* most URLs fit: those cost no allocation and leave no garbage */
typedef struct lane {
  yp_call call;
  int item, state; /* item: 1-based */
  char url[LANE_URL];
} lane;

/* The driver's own values, above the method's arguments. */
#define BATCH_LANES (BATCH_BASE_URL + 1)   /* the lanes (userdata) */
#define BATCH_ANCHORS (BATCH_BASE_URL + 2) /* lane l's url and body, at 2l+1 and 2l+2 */
#define BATCH_RESULTS (BATCH_BASE_URL + 3) /* the results list, or nil when none are kept */

/* What a batch counts as it runs. */
typedef struct tally {
  int next;              /* the next item of the list to build, 1-based */
  int in_flight, paused; /* lanes in those states */
  int failed, heap_kb;   /* heap_kb: see bound_garbage */
} tally;

/* keep_results = false promises memory bounded by the concurrency, not by the list. The batch
 * holds nothing once an item has ended, but the collector's pause is proportional to the whole
 * heap, the caller's list included: with a large list, garbage (each request's strings, each
 * decoded result once on_result has returned) would pile up to the list's own size before a cycle
 * starts. So the batch collects whenever the heap has grown by this much since its last look. */
#define GARBAGE_BUDGET_KB (8 * 1024)
static void bound_garbage(lua_State *L, tally *t) {
  int kb = lua_gc(L, LUA_GCCOUNT, 0);
  if (kb - t->heap_kb < GARBAGE_BUDGET_KB) return;
#ifdef LUA_GCISRUNNING
  if (!lua_gc(L, LUA_GCISRUNNING, 0)) return; /* the caller stopped the collector: theirs to run */
#endif
  lua_gc(L, LUA_GCCOLLECT, 0);
  t->heap_kb = lua_gc(L, LUA_GCCOUNT, 0); /* what stays is live: the caller's, not the batch's */
}

/* Item i ends with the value on top (popped): filed as {result=} or {err=} when results are kept,
 * then handed to on_result. An error raised by on_result ends the batch (see guarded in client.c:
 * the exchanges still in flight are abandoned). */
static void batch_finish(lua_State *L, int i, int ok, tally *t) {
  int keep = !lua_isnil(L, BATCH_RESULTS);
  if (!ok) t->failed++;
  if (keep) {
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, ok ? "result" : "err");
    lua_rawseti(L, BATCH_RESULTS, i);
  }
  if (!lua_isnil(L, BATCH_ON_RESULT)) {
    lua_pushvalue(L, BATCH_ON_RESULT);
    lua_pushinteger(L, i);
    lua_pushvalue(L, -3);
    lua_pushnil(L);
    if (!ok) lua_insert(L, -2); /* (i, nil, err) */
    lua_call(L, 3, 0);
  }
  lua_pop(L, 1);
  if (!keep) bound_garbage(L, t);
}

/* Takes lane w's call as far as it goes without waiting: returns LANE_FLIGHT (submitted on slot),
 * LANE_PAUSED (a retry's pause is not over), or LANE_FREE with the call's error pushed. */
static int lane_step(lua_State *L, yp_client *c, lane *w, int slot) {
  yp_attempt a;
  double pause;
  yp_next step;
  while ((step = yp_core_next(L, c, &w->call, &a, &pause)) == YP_NEXT_TOKEN)
    if (!ensure_token(L, c, w->call.deadline)) return LANE_FREE;
  if (step == YP_NEXT_PAUSE) return LANE_PAUSED;
  if (step == YP_NEXT_FAIL) return LANE_FREE;
  int ok = yp_transport_submit(c->transport, slot, &a.request);
  yp_attempt_end(&a);
  if (!ok) luaL_error(L, "batch: out of memory");
  return LANE_FLIGHT;
}

/* Fills lane w (number l): sends its paused call again once the pause is over, or builds the
 * next item of the list into a free lane, and ends at once every item that fails before it is
 * sent. Once the client is closed, nothing is built or sent: each item not yet sent fails with
 * kind closed, and no metamethod of the caller's items runs any more. */
static void lane_fill(lua_State *L, yp_client *c, const yp_batch *b, lane *w, int l, int first,
                      tally *t) {
  while (w->state != LANE_FLIGHT) {
    if (w->state == LANE_PAUSED) {
      if (!c->closed && w->call.not_before > yp_now_mono()) return;
      t->paused--;
    } else {
      if (t->next > b->n) return;
      int i = t->next++;
      if (c->closed) {
        yp_push_closed_error(L, b->ep->name);
        batch_finish(L, i, 0, t);
        continue;
      }
      if (!b->build(L, c, b, i, &w->call, w->url, sizeof w->url)) { /* kind invalid: alone */
        batch_finish(L, i, 0, t);
        continue;
      }
      lua_rawseti(L, BATCH_ANCHORS, 2 * l + 2);
      lua_rawseti(L, BATCH_ANCHORS, 2 * l + 1);
      w->item = i;
    }
    w->state = lane_step(L, c, w, first + l);
    if (w->state == LANE_PAUSED) t->paused++;
    else if (w->state == LANE_FREE) batch_finish(L, w->item, 0, t);
  }
  t->in_flight++;
}

/* Fills every lane that is not in flight (all of them at the start, the paused ones later). */
static void fill_all(lua_State *L, yp_client *c, const yp_batch *b, lane *lanes, int first,
                     tally *t) {
  for (int l = 0; l < b->concurrency; l++)
    if (lanes[l].state != LANE_FLIGHT) lane_fill(L, c, b, &lanes[l], l, first, t);
}

/* Runs the items on the batch's own range of transport slots, so that a callback may start
 * another batch, or any call, on the same client. */
int yp_curl_batch(lua_State *L, yp_client *c, yp_batch *b) {
  int nl = b->concurrency;
  tally t = {1, 0, 0, 0, lua_gc(L, LUA_GCCOUNT, 0)};
  lua_settop(L, BATCH_BASE_URL);
  lane *lanes = (lane *)yp_newuserdata(L, (size_t)nl * sizeof *lanes); /* BATCH_LANES */
  lua_createtable(L, 2 * nl, 0);                                        /* BATCH_ANCHORS */
  if (b->keep_results) lua_createtable(L, b->n, 0);                     /* BATCH_RESULTS */
  else lua_pushnil(L);
  for (int l = 0; l < nl; l++) lanes[l].state = LANE_FREE;
  int first = yp_transport_reserve(c->transport, nl);
  if (first < 0) luaL_error(L, "batch: out of memory");

  fill_all(L, c, b, lanes, first, &t);
  while (t.in_flight || t.paused) { /* once both are 0, every lane is free: the list is done */
    double wake = HUGE_VAL; /* when the first pause is over */
    for (int l = 0; t.paused && l < nl; l++)
      if (lanes[l].state == LANE_PAUSED && lanes[l].call.not_before < wake)
        wake = lanes[l].call.not_before;
    if (!t.in_flight) { /* only pauses left: sleep until the first is over */
      yp_transport_sleep(c->transport, wake - yp_now_mono());
      fill_all(L, c, b, lanes, first, &t);
      continue;
    }
    /* A pause that ends while exchanges are under way resumes then, not at their next end. */
    int slot = yp_transport_wait(c->transport, first, nl, wake);
    if (slot == -2) {
      fill_all(L, c, b, lanes, first, &t);
      continue;
    }
    if (slot < 0) break; /* cannot happen: a lane is in flight */
    int l = slot - first;
    lane *w = &lanes[l];
    t.in_flight--;
    yp_fed fed = yp_core_feed(L, c, &w->call, yp_transport_response(c->transport, slot));
    yp_transport_recycle(c->transport, slot);
    yp_emit(L, c);
    if (fed == YP_FED_RETRY) {
      w->state = LANE_PAUSED;
      t.paused++;
    } else {
      w->state = LANE_FREE;
      batch_finish(L, w->item, fed == YP_FED_DONE, &t);
    }
    /* Only this lane is free, unless others are pausing: each pause ends in its own time. */
    if (t.paused) fill_all(L, c, b, lanes, first, &t);
    else lane_fill(L, c, b, w, l, first, &t);
  }
  if (b->keep_results) {
    lua_pushvalue(L, BATCH_RESULTS);
    return 1;
  }
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, b->n);
  lua_setfield(L, -2, "total");
  lua_pushinteger(L, t.failed);
  lua_setfield(L, -2, "failed");
  return 1;
}
