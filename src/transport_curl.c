/* transport_curl.c: the libcurl implementation of transport.h. Blocking exchanges share one easy
 * handle and its connections; concurrent ones run on a multi handle with a connection per slot. */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http1.h"
#include "transport.h"

#define RETRY_AFTER_MAX 3600.0 /* the client caps it lower; this only bounds parsing */

/* A libcurl handle and what was last set on it: sequential calls send the same URL and headers,
 * which are then not set again (libcurl parses a URL each time it is set). */
typedef struct handle {
  CURL *easy;
  struct curl_slist *headers;
  char *url;
} handle;

typedef struct slot {
  struct yp_transport *owner;
  handle h;     /* its exchanges through the multi handle */
  int index;    /* in the transport's slots */
  int busy;     /* added to the multi handle; once completed, on the done list until taken */
  int too_large;
  size_t body_cap;
  yp_http_response resp;
  char errbuf[CURL_ERROR_SIZE];
} slot;

/* A proxy variable of the environment: which one libcurl would use, and its value (NULL: none). */
typedef struct env_proxy {
  const char *var;
  char *url; /* may hold user:password@ */
} env_proxy;

struct yp_transport {
  CURLM *multi;
  /* Blocking exchanges, when nothing is in flight on the multi handle, run with curl_easy_perform
   * on this one handle, whose callbacks write into the slot solo_for. Its private pool is sized
   * for one transfer: a multi handle sweeps its 71-bucket DNS cache and 97-bucket connection cache
   * after every transfer, some 1.4k instructions a call. One handle, not one per slot, so that a
   * call and the login nested in it (on another slot) share the connection. */
  handle solo;
  slot *solo_for;
  yp_transport_config config;
  /* Without the proxy option: the environment's proxy rules, read once (see read_env_proxies). */
  env_proxy env_https, env_http;
  char *env_no_proxy;
  slot **slots; /* each slot allocated once, so libcurl's pointers to it stay valid */
  int nslots;    /* allocated */
  int top;       /* reserved: slots [0, top) belong to calls under way */
  int *done;     /* finished slots in completion order, ndone of them: wait takes from here
                  * instead of looking at every slot of a wide batch for each completion */
  int ndone;
  int in_multi; /* handles added to the multi handle */
  int unsent; /* handles were added since libcurl last ran: run it before waiting on sockets */
};

#define KEEP_BODY_MAX (64 * 1024) /* a larger response buffer is freed once it has been read */

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
  slot *s = userdata;
  size_t len = size * n, need = s->resp.body_len + len + 1;
  if (need - 1 > s->owner->config.max_response) {
    s->too_large = 1; /* returning short makes libcurl stop with CURLE_WRITE_ERROR */
    return 0;
  }
  if (need > s->body_cap) {
    size_t cap = s->body_cap ? s->body_cap : 4096;
    while (cap < need) cap *= 2;
    char *p = realloc(s->resp.body, cap);
    if (!p) return 0;
    s->resp.body = p;
    s->body_cap = cap;
  }
  memcpy(s->resp.body + s->resp.body_len, data, len);
  s->resp.body_len += len;
  s->resp.body[s->resp.body_len] = '\0';
  return len;
}

/* The last Retry-After of the final response (libcurl keeps every header of a transfer), or -1.
 * Read from every answer, as the cosocket driver does: an envelope may ask for a retry under a
 * 200, and the core decides whether the pause applies. */
static double retry_after(CURL *e) {
  struct curl_header *h;
  if (curl_easy_header(e, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK) return -1;
  if (h->amount > 1 && curl_easy_header(e, "Retry-After", h->amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK)
    return -1;
  size_t len = strlen(h->value);
  if (len > YP_H1_RETRY_AFTER_MAX) return -1; /* the cosocket driver's bound too */
  double secs = yp_parse_retry_after(h->value, len, (double)time(NULL));
  return secs > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : secs;
}

/* Makes e's callbacks and error text go to slot s. */
static void point_at(CURL *e, slot *s) {
  curl_easy_setopt(e, CURLOPT_PRIVATE, s);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
}

static CURL *new_easy(yp_transport *t, slot *s) {
  CURL *e = curl_easy_init();
  if (!e) return NULL;
  const yp_transport_config *c = &t->config;
  point_at(e, s);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, c->allow_http ? "http,https" : "https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (c->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, c->low_speed_time);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  /* libcurl 7.x allocates this receive buffer at every transfer's start and frees it at its end.
   * At its default of 16 KiB, the allocations of a few transfers in flight, interleaved with the
   * Lua values of their results, make glibc grow and trim its heap again and again: measured, 1.6
   * page faults a request at 8 in flight against 0.6 with 4 KiB (raw libcurl: 0.7), some 10 % of
   * the client's CPU. The portal answers small JSON envelopes; a large page takes more reads. */
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
  /* Likewise the upload buffer, into which libcurl 7.x copies every HTTPS request before sending
   * it: 64 KiB by default, allocated and freed per transfer. Its minimum, 16 KiB, halved the page
   * faults of a batch at 8 in flight (1.55 to 0.78 a request) and took its throughput from 0.91x
   * to 1.08x a default raw curl_multi loop's. A larger body is sent in more pieces. */
  curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
  if (c->proxy) {
    /* The option is explicit: every request goes through it, NO_PROXY notwithstanding (an empty
     * no-proxy list makes libcurl ignore the variable), and always as a CONNECT tunnel. */
    curl_easy_setopt(e, CURLOPT_PROXY, c->proxy);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    curl_easy_setopt(e, CURLOPT_HTTPPROXYTUNNEL, 1L);
  } else {
    curl_easy_setopt(e, CURLOPT_NOPROXY, t->env_no_proxy ? t->env_no_proxy : ""); /* proxy: per URL */
  }
  return e;
}

/* The first of names set to a non-empty value, as libcurl picks one: *var and a copy of the value
 * (both NULL when none is set). Returns 0 when out of memory. */
static int env_pick(const char *const *names, const char **var, char **value) {
  *var = NULL;
  *value = NULL;
  for (; *names; names++) {
    const char *v = getenv(*names);
    if (v && *v) {
      *var = *names;
      return (*value = strdup(v)) != NULL;
    }
  }
  return 1;
}

/* Without a proxy option libcurl reads six proxy variables at every transfer, each getenv a walk
 * of the whole environment: some 1.9k instructions a request. They are read once, here, by
 * libcurl's rules (no_proxy, else NO_PROXY, decides first; then, for https, the first of
 * https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY; for http, http_proxy has no upper-case twin),
 * and handed to it as options, which skip its reading. A Lua program cannot change its own
 * environment, so it sees no difference; spec/15 holds the rules to libcurl's. */
static int read_env_proxies(yp_transport *t) {
  static const char *const no_proxy[] = {"no_proxy", "NO_PROXY", NULL};
  static const char *const https[] = {"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL};
  static const char *const http[] = {"http_proxy", "all_proxy", "ALL_PROXY", NULL};
  const char *unused;
  return env_pick(no_proxy, &unused, &t->env_no_proxy) &&
         env_pick(https, &t->env_https.var, &t->env_https.url) &&
         env_pick(http, &t->env_http.var, &t->env_http.url);
}

/* The environment's proxy for url's scheme (url NULL: http). */
static const env_proxy *env_proxy_for(const yp_transport *t, const char *url) {
  return url && strncmp(url, "https:", 6) == 0 ? &t->env_https : &t->env_http;
}

yp_transport *yp_transport_new(const yp_transport_config *config, char *err, size_t errlen) {
  yp_transport *t = calloc(1, sizeof *t);
  if (t) t->multi = curl_multi_init();
  if (!t || !t->multi) {
    snprintf(err, errlen, "cannot initialise libcurl");
    free(t);
    return NULL;
  }
  t->config = *config;
  t->config.proxy = NULL; /* the copy, below: freeing t must never free the caller's string */
  if (config->proxy ? !(t->config.proxy = strdup(config->proxy)) : !read_env_proxies(t)) {
    snprintf(err, errlen, "out of memory");
    yp_transport_free(t);
    return NULL;
  }
  return t;
}

const char *yp_transport_proxy(const yp_transport *t) {
  return t->config.proxy;
}

static void handle_free(handle *h) {
  if (h->easy) curl_easy_cleanup(h->easy);
  curl_slist_free_all(h->headers);
  free(h->url);
}

void yp_transport_free(yp_transport *t) {
  if (!t) return;
  for (int i = 0; i < t->nslots; i++) {
    slot *s = t->slots[i];
    if (s->busy) curl_multi_remove_handle(t->multi, s->h.easy);
    handle_free(&s->h);
    free(s->resp.body);
    free(s);
  }
  handle_free(&t->solo);
  free(t->slots);
  free(t->done);
  curl_multi_cleanup(t->multi);
  char *proxy = (char *)(uintptr_t)t->config.proxy; /* our copy (yp_transport_new) */
  yp_wipe_free(&proxy); /* proxy URLs may hold a password */
  yp_wipe_free(&t->env_https.url);
  yp_wipe_free(&t->env_http.url);
  yp_wipe_free(&t->env_no_proxy);
  free(t);
}

int yp_transport_mark(const yp_transport *t) {
  return t->top;
}

int yp_transport_reserve(yp_transport *t, int n) {
  int need = t->top + n;
  if (need > t->nslots) {
    slot **p = realloc(t->slots, (size_t)need * sizeof *p);
    if (!p) return -1;
    t->slots = p;
    int *done = realloc(t->done, (size_t)need * sizeof *done); /* a slot is on it at most once */
    if (!done) return -1;
    t->done = done;
    for (; t->nslots < need; t->nslots++) {
      if (!(p[t->nslots] = calloc(1, sizeof **p))) return -1;
      p[t->nslots]->owner = t;
      p[t->nslots]->index = t->nslots;
    }
    /* The pool keeps a connection per slot: libcurl's default (4 per easy handle in the multi
     * handle) shrinks as a batch's last transfers end, and the next batch would handshake again. */
    curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, (long)(t->nslots > 4 ? t->nslots : 4));
  }
  t->top = need;
  return need - n;
}

void yp_transport_recycle(yp_transport *t, int index) {
  slot *s = t->slots[index];
  if (s->body_cap > KEEP_BODY_MAX) {
    free(s->resp.body);
    s->resp.body = NULL;
    s->resp.body_len = s->body_cap = 0;
  }
}

void yp_transport_release_to(yp_transport *t, int mark) {
  int kept = 0;
  for (int i = 0; i < t->ndone; i++)
    if (t->done[i] < mark) t->done[kept++] = t->done[i];
  t->ndone = kept;
  for (int i = mark; i < t->top; i++) {
    slot *s = t->slots[i];
    if (s->busy) {
      curl_multi_remove_handle(t->multi, s->h.easy);
      t->in_multi--;
    }
    s->busy = 0;
    yp_transport_recycle(t, i);
  }
  if (mark < t->top) t->top = mark;
}

/* Whether list holds exactly the lines of `lines`: sequential calls
 * send the same headers, so the slot's list is kept rather than rebuilt with two allocations per
 * line. A new token or another Content-Type rebuilds it. */
static int same_headers(const struct curl_slist *list, const char *const *lines) {
  for (; list && *lines; list = list->next, lines++)
    if (strcmp(list->data, *lines) != 0) return 0;
  return !list && !*lines;
}

/* Sets handle h up for req, its response going to slot s: all but starting the transfer. */
static int prepare(yp_transport *t, handle *h, slot *s, const yp_http_request *req) {
  if (!h->easy && !(h->easy = new_easy(t, s))) return 0;
  s->resp.status = 0;
  s->resp.body_len = 0;
  s->resp.error = YP_TR_OK;
  s->resp.maybe_sent = 0;
  s->resp.detail[0] = s->errbuf[0] = '\0';
  s->too_large = 0;

  CURL *e = h->easy;
  int post = strcmp(req->method, "POST") == 0;
  int has_expect = h->headers && strcmp(h->headers->data, "Expect:") == 0;
  if (has_expect != post || !same_headers(has_expect ? h->headers->next : h->headers, req->headers)) {
    curl_slist_free_all(h->headers);
    /* "Expect:" stops libcurl from adding Expect: 100-continue to larger bodies. Only bodies need
     * it: libcurl compares each line with every header it may add, about 1k instructions a line. */
    h->headers = post ? curl_slist_append(NULL, "Expect:") : NULL;
    int ok = !post || h->headers;
    for (const char *const *line = req->headers; ok && *line; line++) {
      struct curl_slist *n = curl_slist_append(h->headers, *line);
      if (!n) curl_slist_free_all(h->headers);
      h->headers = n;
      ok = n != NULL;
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h->headers); /* also when NULL: never a freed list */
    if (!ok) return 0;
  }
  /* libcurl parses a URL again each time it is set: a batch of the same endpoint and
   * parameters, or sequential status checks, set it once. */
  if (!h->url || strcmp(h->url, req->url) != 0) {
    free(h->url);
    if (!(h->url = strdup(req->url))) return 0;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    if (!t->config.proxy) {
      const char *proxy = env_proxy_for(t, req->url)->url;
      curl_easy_setopt(e, CURLOPT_PROXY, proxy ? proxy : ""); /* "": none, and no env lookup */
    }
  }
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 1L);
  curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, req->fresh_connection ? 1L : 0L);
  if (post) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ? req->body : "");
  } else {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  return 1;
}

int yp_transport_submit(yp_transport *t, int index, const yp_http_request *req) {
  slot *s = t->slots[index];
  if (!prepare(t, &s->h, s, req) || curl_multi_add_handle(t->multi, s->h.easy) != CURLM_OK) return 0;
  t->in_multi++;
  s->busy = 1;
  t->unsent = 1;
  return 1;
}

/* Maps libcurl's result to ours, and decides whether a request byte may have left. The rule is
 * the send boundary, not the error's name: once the connection (and TLS) were up, any failure may
 * come after the server read the request, so it counts as maybe sent.
 * Through a proxy the boundary is the tunnel: REQUEST_SIZE then counts the CONNECT request too,
 * and a failure before the tunnel (and TLS inside it) was up never reached the portal. Those
 * failures say "proxy", so that the proxy, not the portal, gets looked at. */
static void classify(slot *s, CURL *e, CURLcode code) {
  yp_http_response *r = &s->resp;
  if (code == CURLE_OK) { /* the common case needs none of the timings below */
    r->error = YP_TR_OK;
    r->maybe_sent = 1;
    return;
  }
  const char *proxy = s->owner->config.proxy;
  curl_off_t pretransfer = 0, appconnect = 0;
  long request_size = 0, connect_code = 0;
  curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
  curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &appconnect);
  curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_getinfo(e, CURLINFO_HTTP_CONNECTCODE, &connect_code);
  int tunnel = proxy != NULL || connect_code != 0; /* a CONNECT was (or was to be) sent */
  int tunnel_up = connect_code >= 200 && connect_code < 300;
  int started = pretransfer > 0 || (!tunnel && request_size > 0);
  /* Still at the proxy: nothing of the portal's request can have left. */
  int at_proxy = tunnel && !tunnel_up && pretransfer == 0 && appconnect == 0;
  const char *prefix = "";
  char why[96] = "";
  r->maybe_sent = 1;
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: r->error = YP_TR_DNS; r->maybe_sent = 0; break;
    case CURLE_COULDNT_CONNECT: r->error = YP_TR_CONNECT; r->maybe_sent = 0; break;
#if LIBCURL_VERSION_NUM >= 0x074900 /* 7.73.0: CURLE_PROXY, a failed proxy handshake */
    case CURLE_PROXY: r->error = YP_TR_CONNECT; r->maybe_sent = 0; prefix = "proxy handshake failed: "; break;
#endif
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND: r->error = YP_TR_TLS; r->maybe_sent = started; break;
    case CURLE_URL_MALFORMAT: r->error = YP_TR_OTHER; r->maybe_sent = 0; break;
    case CURLE_UNSUPPORTED_PROTOCOL: /* also "Received HTTP/0.9", after the request went out */
      r->error = started ? YP_TR_PROTOCOL : YP_TR_OTHER;
      r->maybe_sent = started;
      break;
    case CURLE_WEIRD_SERVER_REPLY: r->error = YP_TR_PROTOCOL; break;
    case CURLE_OPERATION_TIMEDOUT: r->error = YP_TR_TIMEOUT; r->maybe_sent = started; break;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
      r->error = s->too_large || code == CURLE_FILESIZE_EXCEEDED ? YP_TR_TOO_LARGE : YP_TR_OTHER;
      break;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: r->error = YP_TR_LOST; break;
    case CURLE_OUT_OF_MEMORY: /* libcurl's answer to a giant header line, among others */
    default: r->error = started ? YP_TR_PROTOCOL : YP_TR_OTHER; r->maybe_sent = started; break;
  }
  if (connect_code >= 300) { /* the proxy answered the CONNECT with a refusal (403, 502, ...) */
    r->error = YP_TR_CONNECT;
    r->maybe_sent = 0;
    snprintf(why, sizeof why, "the proxy refused the tunnel (CONNECT answered %ld): ", connect_code);
    prefix = why;
  } else if (at_proxy) {
    r->maybe_sent = 0;
    if (proxy && code != CURLE_COULDNT_RESOLVE_PROXY && !*prefix)
      prefix = code == CURLE_COULDNT_CONNECT ? "cannot reach the proxy: " : "cannot get through the proxy: ";
  } else if (!proxy && code == CURLE_COULDNT_CONNECT) {
    char *url = NULL;
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &url);
    const char *var = env_proxy_for(s->owner, url)->var;
    if (var) {
      snprintf(why, sizeof why, "(%.20s is set: is that proxy reachable?) ", var);
      prefix = why;
    }
  }
  int room = (int)(sizeof r->detail - 1 - strlen(prefix)); /* libcurl's words, cut to fit */
  snprintf(r->detail, sizeof r->detail, "%s%.*s", prefix, room,
           s->errbuf[0] ? s->errbuf : curl_easy_strerror(code));
}

/* Fills s's response from e, whose transfer ended with code. */
static void finish(slot *s, CURL *e, CURLcode code) {
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &s->resp.status);
  curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &s->resp.elapsed);
  s->resp.retry_after = retry_after(e);
  classify(s, e, code);
}

/* Moves completed transfers from libcurl's queue to the done list. */
static void collect(yp_transport *t) {
  CURLMsg *m;
  int queued;
  while ((m = curl_multi_info_read(t->multi, &queued))) {
    if (m->msg != CURLMSG_DONE) continue;
    slot *s;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    finish(s, s->h.easy, m->data.result);
    curl_multi_remove_handle(t->multi, s->h.easy);
    t->in_multi--;
    s->busy = 0;
    t->done[t->ndone++] = s->index;
  }
}

static void drive(yp_transport *t) {
  int running;
  t->unsent = 0;
  curl_multi_perform(t->multi, &running);
  collect(t);
}

/* Takes the first finished slot of [first, first+n) off the done list, or returns -1. Other
 * ranges' completions stay on it, in order, for the call that owns them. */
static int take_done(yp_transport *t, int first, int n) {
  for (int i = 0; i < t->ndone; i++) {
    int index = t->done[i];
    if (index < first || index >= first + n) continue;
    memmove(t->done + i, t->done + i + 1, (size_t)(t->ndone - i - 1) * sizeof *t->done);
    t->ndone--;
    return index;
  }
  return -1;
}

int yp_transport_wait(yp_transport *t, int first, int n, double until) {
  for (;;) {
    int index = take_done(t, first, n), busy = 0;
    if (index >= 0) return index;
    for (int i = first; i < first + n && i < t->top && !busy; i++) busy = t->slots[i]->busy;
    if (!busy) return -1;
    if (t->unsent) { /* new handles send at once; polling first would only return at once */
      drive(t);
      continue;
    }
    int wait_ms = 250;
    if (until != HUGE_VAL) {
      double left = until - yp_now_mono();
      if (left <= 0) return -2;
      if (left * 1000 < wait_ms) wait_ms = (int)(left * 1000) + 1;
    }
    curl_multi_poll(t->multi, NULL, 0, wait_ms, NULL);
    drive(t);
  }
}

const yp_http_response *yp_transport_response(yp_transport *t, int index) {
  return &t->slots[index]->resp;
}

const yp_http_response *yp_transport_perform(yp_transport *t, int index,
                                             const yp_http_request *req) {
  static const yp_http_response no_memory = {0, NULL, 0, -1, YP_TR_OTHER, 0, 0, "out of memory"};
  slot *s = t->slots[index];
  if (t->in_multi == 0) { /* see solo in struct yp_transport */
    if (t->solo.easy && t->solo_for != s) point_at(t->solo.easy, s);
    t->solo_for = s;
    if (!prepare(t, &t->solo, s, req)) return &no_memory;
    finish(s, t->solo.easy, curl_easy_perform(t->solo.easy));
    return &s->resp;
  }
  if (!yp_transport_submit(t, index, req)) return &no_memory;
  if (yp_transport_wait(t, index, 1, HUGE_VAL) != index) return &no_memory; /* cannot happen: it was busy */
  return &s->resp;
}

void yp_transport_sleep(yp_transport *t, double seconds) {
  (void)t;
  if (seconds <= 0) return;
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}
