/* classify.c: turns one exchange (transport outcome, status, body) into the call's result or an
 * error, decides what may happen next, and reads token responses. Owns the envelope rules, the
 * never-twice rule and the token lifetime bounds. */
#include <math.h>
#include <string.h>

#include "classify.h"
#include "errors.h"
#include "json.h"

/* Modelled access-token lifetime (Authorization Rules page): 30 minutes. A server's expiresIn is
 * believed within these bounds; not a positive number gets the model's, too long the longest. */
#define ACCESS_TOKEN_LIFETIME 1800.0
#define ACCESS_TOKEN_LIFETIME_MIN 1.0
#define ACCESS_TOKEN_LIFETIME_MAX (30 * 24 * 3600.0)
#define TOKEN_MAX 8192
#define TOKEN_HEAD_MAX 32

static const char *transport_kind(yp_transport_error e) {
  switch (e) {
    case YP_TR_TIMEOUT: return YP_KIND_TIMEOUT;
    case YP_TR_TOO_LARGE:
    case YP_TR_PROTOCOL: return YP_KIND_HTTP;
    default: return YP_KIND_NETWORK;
  }
}

static const char *transport_code(yp_transport_error e) {
  switch (e) {
    case YP_TR_DNS: return "dns_failed";
    case YP_TR_CONNECT: return "connect_failed";
    case YP_TR_TLS: return "tls_failed";
    case YP_TR_TIMEOUT: return "timeout";
    case YP_TR_LOST: return "connection_lost";
    case YP_TR_TOO_LARGE: return "response_too_large";
    case YP_TR_PROTOCOL: return "bad_response";
    default: return "transport_failed";
  }
}

/* Statuses after which the same call may succeed later. */
static int status_retryable(long status) {
  return status == 408 || status == 429 || status >= 500;
}

/* Pushes an envelope member as text when it is a string or a number (JSON lets a server send
 * either) and returns that text, else pushes nothing and returns NULL. The text stays anchored by
 * the pushed value. */
static const char *push_member_text(lua_State *L, const json_member *m) {
  if (m->at == NULL) return NULL;
  json_push_member(L, m);
  int t = lua_type(L, -1);
  if (t == LUA_TSTRING || t == LUA_TNUMBER) return lua_tostring(L, -1);
  lua_pop(L, 1);
  return NULL;
}

/* The envelope's `status` when it is an integer HTTP status, else 0. */
static long member_status(lua_State *L, const json_member *m) {
  long status = 0;
  size_t i;
  if (m->at == NULL) return 0; /* the usual case: only some errors carry one */
  /* Up to three plain digits (the portal's "status":200) are the integer they spell: the text
   * is already checked JSON, so no leading zero. Anything else is read as the decoder reads it. */
  for (i = 0; i < m->len && i < 4 && m->at[i] >= '0' && m->at[i] <= '9'; i++)
    status = status * 10 + (m->at[i] - '0');
  if (i == m->len && i <= 3) return status >= 100 && status <= 599 ? status : 0;
  status = 0;
  json_push_member(L, m);
  if (lua_type(L, -1) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, -1);
    if (n >= 100 && n <= 599 && n == (lua_Number)(long)n) status = (long)n;
  }
  lua_pop(L, 1);
  return status;
}

yp_outcome yp_classify(lua_State *L, const yp_endpoint *ep, const yp_http_response *r,
                       int max_depth, const char *const *secrets) {
  yp_error e = {NULL, NULL, NULL, r->status, NULL, 0, ep->name, secrets};
  int top = lua_gettop(L);
  int replay_safe = (ep->flags & YP_REPLAY_SAFE) != 0;
  /* `proof`: the answer shows the call was not applied, so sending it again cannot double it. */
  int proof = 0;
  long status = r->status;
  char reason[200];
  luaL_checkstack(L, 12, "yeastar.partner");

  if (r->error != YP_TR_OK) {
    e.kind = transport_kind(r->error);
    e.code = transport_code(r->error);
    e.status = 0;
    status = 0;
    proof = !r->maybe_sent;
    /* TLS failures and broken replies are not luck: retrying cannot help. */
    e.retryable = r->error == YP_TR_DNS || r->error == YP_TR_CONNECT ||
                  r->error == YP_TR_TIMEOUT || r->error == YP_TR_LOST;
    lua_pushstring(L, r->detail);
  } else {
    /* Only the result becomes a Lua value (at top + 1); the other members are read from the
     * text, and made Lua values only for an error. */
    json_envelope env;
    int decoded = json_decode_envelope(L, r->body ? r->body : "", r->body_len, max_depth, reason,
                                       sizeof reason, &env);
    size_t plain_len = 0;
    const char *plain = decoded ? json_member_plain(&env.code, &plain_len) : NULL;
    const char *code = plain || !decoded ? NULL : push_member_text(L, &env.code);
    if (plain || code) {
      /* strcmp for a decoded code: one with an escaped NUL compares as it always has. */
      int success = plain ? plain_len == 7 && memcmp(plain, "success", 7) == 0
                          : strcmp(code, "success") == 0;
      int http_ok = r->status >= 200 && r->status < 300;
      long env_status = member_status(L, &env.status);
      /* A 2xx whose envelope names an error status is that status (seen: 200 + "status": 500). */
      if (http_ok && env_status) status = env_status;
      if (status >= 200 && status < 300 && success) {
        if (lua_isnil(L, top + 1)) { /* no result member: say "done" rather than look like a failure */
          lua_pushboolean(L, 1);
          lua_replace(L, top + 1);
        }
        lua_settop(L, top + 1);
        return YP_OUT_DONE;
      }
      if (plain) {
        lua_pushlstring(L, plain, plain_len);
        code = lua_tostring(L, -1);
      }
      /* Only an error carries the request ID: a success never reads it. */
      e.request_id = push_member_text(L, &env.request_id);
      e.status = status;
      e.kind = status == 401 ? YP_KIND_AUTH : YP_KIND_API;
      /* "success" with an error status, or a 2xx with any other code: never a success. */
      e.code = strcmp(code, "success") == 0 ? "unexpected_status" : code;
      e.retryable = status_retryable(status);
      /* The portal's own refusal (4xx with its envelope) proves nothing was applied; a 408
       * (the server gave up reading) or a 5xx does not. */
      proof = status == 401 || status == 429 || (status >= 400 && status < 500 && status != 408);
      if (!push_member_text(L, &env.detail_message)) {
        lua_pushstring(L, e.code);
      } else if (yp_rawlen(L, -1) == 0) {
        lua_pop(L, 1);
        lua_pushstring(L, e.code);
      }
    } else if (r->status >= 200 && r->status < 300) {
      e.kind = YP_KIND_DECODE;
      e.code = decoded ? "bad_envelope" : "invalid_json";
      lua_pushstring(L, decoded ? "the response is JSON but not the portal's envelope" : reason);
    } else {
      e.kind = r->status == 401 ? YP_KIND_AUTH : YP_KIND_HTTP;
      e.code = r->status == 401 ? "unauthorized" : "http_error";
      e.retryable = status_retryable(status);
      proof = status == 401 || status == 429;
      lua_pushfstring(L, "HTTP status %d without a portal envelope", (int)r->status);
    }
  }

  yp_outcome out = YP_OUT_FAIL;
  if (!replay_safe && r->maybe_sent && !proof) {
    /* Bound the server's text first: the sentence around it must survive the cut. */
    size_t n;
    const char *detail = lua_tolstring(L, -1, &n);
    yp_push_safe_text(L, detail, n, 160, secrets);
    lua_pushfstring(L,
                    "%s may or may not have been applied (%s: %s); look it up before "
                    "sending it again",
                    ep->name, e.code, lua_tostring(L, -1));
    e.kind = YP_KIND_AMBIGUOUS;
    e.retryable = 0;
  } else if (status == 401) {
    out = YP_OUT_REAUTH;
  } else if (e.retryable && (replay_safe || proof || !r->maybe_sent)) {
    out = YP_OUT_RETRY;
  }
  e.message = lua_tostring(L, -1);
  yp_push_error(L, &e);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
  return out;
}

const char *yp_token_field(lua_State *L, int t, const char *name) {
  t = yp_absindex(L, t);
  lua_getfield(L, t, name);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  size_t n = s ? yp_rawlen(L, -1) : 0;
  lua_pop(L, 1); /* anchored in t */
  if (!s || n == 0 || n > TOKEN_MAX) return NULL;
  for (size_t i = 0; i < n; i++) /* a newline would forge a header; a space, a second value */
    if (s[i] <= ' ' || s[i] > '~') return NULL;
  return s;
}

double yp_number_field(lua_State *L, int t, const char *name, double min, double max, double def) {
  lua_getfield(L, t, name);
  double v = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v >= min && v <= max ? v : def; /* also def for NaN */
}

int yp_read_token(lua_State *L, int idx, yp_token_result *out) {
  idx = yp_absindex(L, idx);
  if (!lua_istable(L, idx) || !(out->token = yp_token_field(L, idx, "token"))) return 0;
  out->refresh_token = yp_token_field(L, idx, "refreshToken");
  out->token_head = yp_token_field(L, idx, "tokenHead");
  if (out->token_head && strlen(out->token_head) > TOKEN_HEAD_MAX) out->token_head = NULL;
  out->lifetime = yp_number_field(L, idx, "expiresIn", ACCESS_TOKEN_LIFETIME_MIN, HUGE_VAL,
                                  ACCESS_TOKEN_LIFETIME);
  if (out->lifetime > ACCESS_TOKEN_LIFETIME_MAX) out->lifetime = ACCESS_TOKEN_LIFETIME_MAX;
  return 1;
}
