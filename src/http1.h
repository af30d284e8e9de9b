/* http1.h: a sans-I/O HTTP/1.1 response framer (RFC 9112) for a transport that moves the bytes
 * itself (a cosocket driver), and the Retry-After parser shared with transport_curl.c. */
#ifndef YP_HTTP1_H
#define YP_HTTP1_H

#include <stddef.h>

#include "transport.h"

/* RFC 9112 sets no limits; these are ours, and a reply over either is YP_TR_PROTOCOL. */
#define YP_H1_HEAD_MAX (64 * 1024) /* status lines and fields of the interim and final heads */
#define YP_H1_FIELDS_MAX 100       /* field lines in one head, or in the trailer section */
#define YP_H1_RETRY_AFTER_MAX 63   /* longer Retry-After values are invalid */

typedef enum { YP_H1_MORE, YP_H1_DONE, YP_H1_ERROR } yp_h1_status;

typedef struct yp_http1 {
  /* The result, valid once feed or eof said YP_H1_DONE (error and detail on YP_H1_ERROR). */
  long status;    /* of the final response, 200..999 */
  char *body;     /* NUL-terminated; NULL when body_len is 0; owned, freed by yp_http1_free */
  size_t body_len;
  int keep_alive; /* the connection may carry the next request: 0 after Connection: close, an
                   * HTTP/1.0 reply without keep-alive, a close-delimited body, contradictory
                   * framing, or bytes beyond the end of this response (fed or still to come) */
  yp_transport_error error; /* YP_TR_PROTOCOL, YP_TR_TOO_LARGE, YP_TR_LOST, or YP_TR_OTHER when
                             * out of memory or used after yp_http1_free */
  char detail[160];         /* one line of ours; never the peer's bytes */
  char retry_after[YP_H1_RETRY_AFTER_MAX + 1]; /* the final response's value, OWS trimmed */
  int has_retry_after;      /* 1: the value above; -1: one was present but too long */

  /* Private: the parser's position. */
  int state;
  int http10;             /* the response is HTTP/1.0 */
  int conn_close, conn_keep_alive; /* Connection tokens seen */
  int te_chunked, te_other;        /* Transfer-Encoding codings seen, by kind */
  int has_length;
  unsigned long long length;       /* Content-Length */
  unsigned long long remaining;    /* bytes of the fixed body or of the chunk still to come */
  size_t max_body;
  size_t body_cap;
  size_t budget;          /* bytes left for the current head (all heads) or trailer section */
  int fields;             /* field lines in the current head or trailer section */
  char *line;             /* the line being assembled, across calls to feed */
  size_t line_len, line_cap;
} yp_http1;

/* Ready to read one response whose body may hold at most max_body bytes. Allocates nothing. */
void yp_http1_init(yp_http1 *p, size_t max_body);

/* Consumes bytes of the stream, split anywhere. MORE: all len bytes were used and the response
 * is not complete yet. DONE: the response ended after *used bytes; with *used < len the rest
 * belongs to no response of ours, so keep_alive is 0. ERROR: see error and detail; the
 * connection must be closed. After DONE or ERROR, feed changes nothing but keep_alive (any
 * further byte clears it) and says the same again with *used = 0. */
yp_h1_status yp_http1_feed(yp_http1 *p, const char *data, size_t len, size_t *used);

/* The peer closed the connection: completes a close-delimited body (DONE); any other unfinished
 * response is YP_TR_LOST. After DONE it clears keep_alive and says DONE. */
yp_h1_status yp_http1_eof(yp_http1 *p);

/* Seconds to wait before the next request, from the final response's Retry-After at the time
 * now (seconds since the epoch, for an HTTP-date); -1 when absent or invalid, or before DONE. */
double yp_http1_retry_after(const yp_http1 *p, double now);

/* Frees the buffers; idempotent. The parser then says YP_TR_OTHER until yp_http1_init. */
void yp_http1_free(yp_http1 *p);

/* A Retry-After value (without surrounding whitespace): delta-seconds, or an HTTP-date in any of
 * RFC 9110's three formats (IMF-fixdate, obsolete RFC 850, asctime), which a recipient must all
 * accept. Returns seconds from now (a date in the past gives 0; a huge delta saturates at 2^31,
 * RFC 9111's rule), never negative, or -1 when the value is neither. */
double yp_parse_retry_after(const char *value, size_t len, double now);

/* partner._http1(max_body): the framer as a Lua object, for the cosocket driver and the specs. */
struct lua_State;
int yp_http1_lua_new(struct lua_State *L);

#endif
