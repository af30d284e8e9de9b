/* transport.h: the byte mover of the libcurl driver (driver_curl.c), and the request/response
 * records the call core speaks; transport_curl.c implements it. Under nginx, cosocket.lua moves bytes. */
#ifndef YP_TRANSPORT_H
#define YP_TRANSPORT_H

#include <stddef.h>

typedef enum {
  YP_TR_OK = 0,
  YP_TR_DNS,       /* the host name did not resolve */
  YP_TR_CONNECT,   /* refused or unreachable */
  YP_TR_TLS,       /* handshake failed or the certificate was rejected */
  YP_TR_TIMEOUT,   /* connect, whole-request or low-speed limit */
  YP_TR_LOST,      /* the connection broke while sending or receiving */
  YP_TR_TOO_LARGE, /* the response body is over the configured limit */
  YP_TR_PROTOCOL,  /* the reply is not HTTP/1.x: no or a broken status line, HTTP/0.9, huge headers */
  YP_TR_OTHER
} yp_transport_error;

typedef struct yp_http_request {
  const char *method; /* "GET" or "POST" */
  const char *url;
  const char *const *headers; /* "Name: value" lines, NULL-terminated */
  const char *body;           /* POST body, body_len bytes */
  size_t body_len;
  long timeout_ms;            /* whole exchange */
  int fresh_connection;       /* never use a pooled connection (see client.c on replays) */
} yp_http_request;

typedef struct yp_http_response {
  long status;         /* 0 when no status line arrived */
  char *body;          /* owned by the transport, valid until the slot is recycled */
  size_t body_len;
  double retry_after;  /* seconds from Retry-After, -1 when absent */
  yp_transport_error error;
  int maybe_sent;      /* a byte of the request may have left: set for every failure after the
                        * connection and TLS handshake were up, whatever libcurl calls it */
  double elapsed;      /* seconds */
  char detail[160];    /* the transport's one-line reason when error != YP_TR_OK */
} yp_http_response;

typedef struct yp_transport_config {
  const char *ca_file;      /* NULL: the system's CA store */
  int allow_http;           /* permit http:// (loopback tests); https is always verified */
  long connect_timeout_ms;
  long low_speed_limit;     /* bytes per second ... */
  long low_speed_time;      /* ... sustained for this many seconds, else a timeout */
  size_t max_response;      /* bytes */
  const char *proxy;        /* http:// or https:// proxy URL, for every request whatever NO_PROXY
                             * says; NULL: the environment's HTTPS_PROXY/ALL_PROXY/NO_PROXY, by
                             * libcurl's rules, read once by yp_transport_new */
} yp_transport_config;

typedef struct yp_transport yp_transport;

/* NULL on failure, with a reason in err. The config's strings must outlive the transport, except
 * proxy, which it copies (and wipes when freed: a proxy URL may hold user:password@). */
yp_transport *yp_transport_new(const yp_transport_config *config, char *err, size_t errlen);
void yp_transport_free(yp_transport *t);
/* The proxy option in force, or NULL (libcurl may still use one from the environment). */
const char *yp_transport_proxy(const yp_transport *t);

/* Slots are reserved like a stack: every call (a single call, a batch, a token exchange) takes
 * its own range above the current mark and gives it back with release_to(mark) when it ends,
 * so a call made from inside a callback of another call never touches the outer one's slots.
 * reserve returns the first slot of a range of n, or -1 when out of memory. */
int yp_transport_mark(const yp_transport *t);
int yp_transport_reserve(yp_transport *t, int n);
/* Abandons the exchanges still in flight above mark and frees their large buffers. */
void yp_transport_release_to(yp_transport *t, int mark);

/* submit starts one exchange on a reserved, idle slot (it copies what it needs from req);
 * wait drives all I/O until an exchange of the range [first, first+n) completes and returns its
 * slot, -1 when none of them is in flight, or -2 once the monotonic time `until` has passed
 * (HUGE_VAL: no limit), so that a batch can resume a retry whose pause is over while other
 * exchanges are still under way. Completions of other ranges wait, in order, for their caller. */
int yp_transport_submit(yp_transport *t, int slot, const yp_http_request *req);
int yp_transport_wait(yp_transport *t, int first, int n, double until);
/* The monotonic clock of every deadline and pause, in seconds (core.c). */
double yp_now_mono(void);
/* Wipes a secret's bytes, frees it and sets *p to NULL (core.c): tokens, proxy URLs. */
void yp_wipe_free(char **p);
const yp_http_response *yp_transport_response(yp_transport *t, int slot);
/* Called once the slot's response has been read: a large body is freed, not kept for reuse. */
void yp_transport_recycle(yp_transport *t, int slot);

/* One exchange on a reserved slot, blocking. */
const yp_http_response *yp_transport_perform(yp_transport *t, int slot, const yp_http_request *req);

/* Pause between retries, blocking (the cosocket driver pauses with ngx.sleep instead). */
void yp_transport_sleep(yp_transport *t, double seconds);

#endif
