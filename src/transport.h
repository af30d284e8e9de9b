/* transport.h: the one interface between the call logic and the HTTP stack.
 * transport_curl.c implements it with libcurl; a cosocket transport can implement it under nginx. */
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
  char *body;          /* owned by the transport, valid until the slot's next exchange */
  size_t body_len;
  double retry_after;  /* seconds from Retry-After, -1 when absent */
  yp_transport_error error;
  int maybe_sent;      /* some bytes of the request may have reached the server */
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
} yp_transport_config;

typedef struct yp_transport yp_transport;

/* NULL on failure, with a reason in err. The config's strings must outlive the transport. */
yp_transport *yp_transport_new(const yp_transport_config *config, char *err, size_t errlen);
void yp_transport_free(yp_transport *t);

/* Concurrent exchanges on slots 0..slots-1; slot 0 is reserved for yp_transport_perform.
 * submit starts one exchange on a free slot (it copies what it needs from req); wait drives
 * I/O until some exchange completes and returns its slot, or -1 when nothing is in flight. */
int yp_transport_start(yp_transport *t, int slots);
int yp_transport_submit(yp_transport *t, int slot, const yp_http_request *req);
int yp_transport_wait(yp_transport *t);
const yp_http_response *yp_transport_response(yp_transport *t, int slot);

/* Abandons every exchange in flight (used when a Lua error unwinds a batch). */
void yp_transport_cancel(yp_transport *t);

/* One exchange, blocking: submit on slot 0 and wait for it. */
const yp_http_response *yp_transport_perform(yp_transport *t, const yp_http_request *req);

/* Pause between retries; under nginx this would yield instead of blocking. */
void yp_transport_sleep(yp_transport *t, double seconds);

#endif
