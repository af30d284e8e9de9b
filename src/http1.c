/* http1.c: the HTTP/1.1 response framer of http1.h (status line, fields, Content-Length, chunked
 * and close-delimited bodies, limits), the Retry-After parser, and the framer's Lua object. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "http1.h"

#define HTTP1_MT "yeastar.partner.Http1"

enum {
  S_STATUS,      /* a status line, of an interim or the final response */
  S_FIELDS,      /* the field lines after it */
  S_BODY_LENGTH, /* `remaining` bytes of a Content-Length body */
  S_BODY_CLOSE,  /* a body that ends when the peer closes */
  S_CHUNK_SIZE,  /* a chunk-size line */
  S_CHUNK_DATA,  /* `remaining` bytes of a chunk */
  S_CHUNK_END,   /* the line break after a chunk's data */
  S_TRAILERS,    /* the trailer section's field lines */
  S_DONE,
  S_ERROR
};

#define CHUNK_LINE_MAX 4096 /* a chunk-size line with its (ignored) extensions */
#define DELTA_MAX 2147483648.0 /* RFC 9111 section 1.2.2: a larger delta-seconds means 2^31 */
#define LINE_FIRST_CAP 256
#define BODY_FIRST_CAP 4096

/* ---- results ---------------------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static yp_h1_status fail(yp_http1 *p, yp_transport_error e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->detail, sizeof p->detail, fmt, ap);
  va_end(ap);
  p->state = S_ERROR;
  p->error = e;
  p->keep_alive = 0;
  return YP_H1_ERROR;
}

static yp_h1_status done(yp_http1 *p) {
  p->state = S_DONE;
  return YP_H1_DONE;
}

/* What a new status line starts from: nothing of an interim response carries over. */
static void new_head(yp_http1 *p) {
  p->status = 0;
  p->http10 = p->conn_close = p->conn_keep_alive = 0;
  p->te_chunked = p->te_other = p->has_length = 0;
  p->length = 0;
  p->fields = 0;
  p->has_retry_after = 0;
  p->retry_after[0] = '\0';
}

void yp_http1_init(yp_http1 *p, size_t max_body) {
  memset(p, 0, sizeof *p);
  p->body = p->line = NULL;
  p->error = YP_TR_OK;
  p->state = S_STATUS;
  /* Halved so that body_len + n + 1 can never wrap, whatever the caller asks for. */
  p->max_body = max_body < SIZE_MAX / 2 ? max_body : SIZE_MAX / 2;
  p->budget = YP_H1_HEAD_MAX;
  new_head(p);
}

void yp_http1_free(yp_http1 *p) {
  free(p->body);
  free(p->line);
  p->body = p->line = NULL;
  p->body_len = p->body_cap = p->line_len = p->line_cap = 0;
  /* A finalized Lua object can still be reached (resurrected); it must not allocate again. */
  fail(p, YP_TR_OTHER, "the parser was released");
}

/* ---- lines ------------------------------------------------------------------------------ */

/* Gathers the line at data[*pos..len) into p->line, across calls, charging its bytes to
 * p->budget (its LF included). 1: the line is complete, without its LF and a CR before it;
 * 0: the input ran out first; -1: it cannot end within the budget; -2: out of memory.
 * The budget check comes before the LF is seen, so every split of the stream fails alike. */
static int take_line(yp_http1 *p, const char *data, size_t len, size_t *pos) {
  const char *start = data + *pos;
  size_t avail = len - *pos;
  const char *lf = memchr(start, '\n', avail);
  size_t n = lf ? (size_t)(lf - start) + 1 : avail;
  size_t keep = lf ? n - 1 : n;
  if (lf ? n > p->budget : n >= p->budget) return -1;
  if (keep > p->line_cap - p->line_len) {
    size_t cap = p->line_cap ? p->line_cap : LINE_FIRST_CAP;
    char *q;
    while (cap - p->line_len < keep) cap *= 2; /* bounded by the budget, at most 64 KiB */
    if (!(q = realloc(p->line, cap))) return -2;
    p->line = q;
    p->line_cap = cap;
  }
  if (keep) memcpy(p->line + p->line_len, start, keep);
  p->line_len += keep;
  p->budget -= n;
  *pos += n;
  if (!lf) return 0;
  if (p->line_len && p->line[p->line_len - 1] == '\r') p->line_len--;
  return 1;
}

/* ---- fields ----------------------------------------------------------------------------- */

static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_ows(char c) {
  return c == ' ' || c == '\t';
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* ASCII case-insensitive s[0..n) == lower (field names and tokens; no locale may interfere). */
static int ieq(const char *s, size_t n, const char *lower) {
  size_t i;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c == '\0' || lower[i] != c) return 0; /* so lower's own NUL ends the walk */
  }
  return lower[n] == '\0';
}

/* Steps through a comma-separated list, OWS trimmed, empty members skipped (RFC 9110 5.6.1). */
typedef struct list_iter {
  const char *s;
  size_t n, pos;
} list_iter;

static int list_next(list_iter *it, const char **m, size_t *mlen) {
  while (it->pos < it->n) {
    size_t a = it->pos, b;
    const char *comma = memchr(it->s + a, ',', it->n - a);
    size_t end = comma ? (size_t)(comma - it->s) : it->n;
    it->pos = comma ? end + 1 : it->n;
    while (a < end && is_ows(it->s[a])) a++;
    for (b = end; b > a && is_ows(it->s[b - 1]); b--) {}
    if (b > a) {
      *m = it->s + a;
      *mlen = b - a;
      return 1;
    }
  }
  return 0;
}

/* Content-Length: one value, or a list of equal ones, also equal to any earlier field line. */
static yp_h1_status content_length(yp_http1 *p, const char *v, size_t n) {
  list_iter it = {v, n, 0};
  const char *m;
  size_t mlen, i;
  int members = 0;
  while (list_next(&it, &m, &mlen)) {
    unsigned long long x = 0;
    for (i = 0; i < mlen; i++) {
      unsigned d = (unsigned)(m[i] - '0');
      if (!is_digit(m[i])) return fail(p, YP_TR_PROTOCOL, "malformed Content-Length");
      if (x > (ULLONG_MAX - d) / 10) return fail(p, YP_TR_PROTOCOL, "Content-Length out of range");
      x = x * 10 + d;
    }
    if (p->has_length && x != p->length)
      return fail(p, YP_TR_PROTOCOL, "conflicting Content-Length values");
    p->has_length = 1;
    p->length = x;
    members++;
  }
  if (!members) return fail(p, YP_TR_PROTOCOL, "malformed Content-Length");
  return YP_H1_MORE;
}

/* Only chunked, once: we send no TE or Accept-Encoding, so any other coding is not ours to undo. */
static void transfer_encoding(yp_http1 *p, const char *v, size_t n) {
  list_iter it = {v, n, 0};
  const char *m;
  size_t mlen;
  int members = 0;
  while (list_next(&it, &m, &mlen)) {
    if (ieq(m, mlen, "chunked")) p->te_chunked++;
    else p->te_other = 1;
    members++;
  }
  if (!members) p->te_other = 1; /* present but naming nothing: not a framing we can trust */
}

static void connection(yp_http1 *p, const char *v, size_t n) {
  list_iter it = {v, n, 0};
  const char *m;
  size_t mlen;
  while (list_next(&it, &m, &mlen)) {
    if (ieq(m, mlen, "close")) p->conn_close = 1;
    else if (ieq(m, mlen, "keep-alive")) p->conn_keep_alive = 1;
  }
}

static int no_body_status(long status) {
  return status < 200 || status == 204 || status == 304;
}

/* One field line of a head or of the trailer section (whose fields are checked, then dropped). */
static yp_h1_status field_line(yp_http1 *p, const char *s, size_t n, int trailer) {
  size_t i = 0, v, e;
  if (++p->fields > YP_H1_FIELDS_MAX)
    return fail(p, YP_TR_PROTOCOL, "%s too large (over %d fields)",
                trailer ? "trailer section" : "headers", YP_H1_FIELDS_MAX);
  if (is_ows(s[0])) /* obs-fold, or whitespace before the first field: RFC 9112 5.2 and 2.2 */
    return fail(p, YP_TR_PROTOCOL, "folded or indented field line");
  while (i < n && is_tchar((unsigned char)s[i])) i++;
  if (i == 0 || i == n || s[i] != ':') return fail(p, YP_TR_PROTOCOL, "malformed field line");
  for (v = i + 1; v < n && is_ows(s[v]); v++) {}
  for (e = n; e > v && is_ows(s[e - 1]); e--) {}
  if (memchr(s + v, '\0', e - v)) return fail(p, YP_TR_PROTOCOL, "NUL in a field value");
  if (trailer) return YP_H1_MORE;

  /* Framing fields of a response that has no body cannot frame anything (RFC 9112 6.3). */
  if (ieq(s, i, "content-length")) {
    if (!no_body_status(p->status)) return content_length(p, s + v, e - v);
  } else if (ieq(s, i, "transfer-encoding")) {
    transfer_encoding(p, s + v, e - v);
  } else if (ieq(s, i, "connection")) {
    connection(p, s + v, e - v);
  } else if (ieq(s, i, "retry-after")) {
    if (e - v > YP_H1_RETRY_AFTER_MAX) {
      p->has_retry_after = -1;
    } else {
      memcpy(p->retry_after, s + v, e - v);
      p->retry_after[e - v] = '\0';
      p->has_retry_after = 1;
    }
  }
  return YP_H1_MORE;
}

/* ---- the head --------------------------------------------------------------------------- */

/* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ], the last SP optional as many servers
 * leave it out with an empty reason. HTTP/1.x above 1.1 reads as 1.1 (RFC 9112 2.5). The same
 * message as the early prefix check in feed, so that every split of the stream fails alike. */
static yp_h1_status status_line(yp_http1 *p, const char *s, size_t n) {
  static const char bad[] = "no HTTP/1.x status line";
  size_t i;
  if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !is_digit(s[7]) || s[8] != ' ' ||
      s[9] < '1' || s[9] > '9' || !is_digit(s[10]) || !is_digit(s[11]) || (n > 12 && s[12] != ' '))
    return fail(p, YP_TR_PROTOCOL, "%s", bad);
  for (i = 13; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c < 0x20 && c != '\t') || c == 0x7F)
      return fail(p, YP_TR_PROTOCOL, "control character in the reason phrase");
  }
  p->http10 = s[7] == '0';
  p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
  p->state = S_FIELDS;
  return YP_H1_MORE;
}

static int reserve_body(yp_http1 *p, size_t n);

/* The empty line after the fields: decides how the body is framed (RFC 9112 6.3). */
static yp_h1_status head_end(yp_http1 *p) {
  if (p->status < 200) {
    if (p->status == 101) return fail(p, YP_TR_PROTOCOL, "101 Switching Protocols, not requested");
    new_head(p); /* an interim response: the final one follows, on the same budget */
    p->state = S_STATUS;
    return YP_H1_MORE;
  }
  p->keep_alive = p->http10 ? p->conn_keep_alive && !p->conn_close : !p->conn_close;
  if (no_body_status(p->status)) {
    /* A chunked body may follow anyway; it is not read, so the connection is not reused. */
    if (p->te_chunked || p->te_other) p->keep_alive = 0;
    return done(p);
  }
  if (p->te_chunked || p->te_other) {
    if (p->http10) return fail(p, YP_TR_PROTOCOL, "Transfer-Encoding in an HTTP/1.0 response");
    if (p->te_other || p->te_chunked != 1)
      return fail(p, YP_TR_PROTOCOL, "unsupported Transfer-Encoding");
    /* Both framings: chunked wins, but the sender is confused or hostile (RFC 9112 6.3). */
    if (p->has_length) p->keep_alive = 0;
    p->state = S_CHUNK_SIZE;
    p->budget = CHUNK_LINE_MAX;
    return YP_H1_MORE;
  }
  if (p->has_length) {
    if (p->length > p->max_body)
      return fail(p, YP_TR_TOO_LARGE, "Content-Length over the limit of %zu bytes", p->max_body);
    if (p->length == 0) return done(p);
    /* Sized once for an ordinary reply; a large claim is only believed as bytes arrive. */
    if (!reserve_body(p, p->length < BODY_FIRST_CAP * 16 ? (size_t)p->length : BODY_FIRST_CAP))
      return fail(p, YP_TR_OTHER, "out of memory");
    p->remaining = p->length;
    p->state = S_BODY_LENGTH;
    return YP_H1_MORE;
  }
  p->keep_alive = 0; /* close-delimited: the end of the body is the end of the connection */
  p->state = S_BODY_CLOSE;
  return YP_H1_MORE;
}

/* ---- the body --------------------------------------------------------------------------- */

/* Room for n more bytes and the NUL; callers have checked body_len + n <= max_body. */
static int reserve_body(yp_http1 *p, size_t n) {
  size_t need = p->body_len + n + 1;
  if (need > p->body_cap) {
    size_t cap = p->body_cap ? p->body_cap : BODY_FIRST_CAP;
    char *q;
    while (cap < need) cap *= 2; /* cannot wrap: need <= SIZE_MAX / 2 + 1 */
    if (cap > p->max_body + 1) cap = p->max_body + 1;
    if (!(q = realloc(p->body, cap))) return 0;
    p->body = q;
    p->body_cap = cap;
  }
  return 1;
}

static yp_h1_status append_body(yp_http1 *p, const char *s, size_t n) {
  if (n > p->max_body - p->body_len)
    return fail(p, YP_TR_TOO_LARGE, "response body over the limit of %zu bytes", p->max_body);
  if (!reserve_body(p, n)) return fail(p, YP_TR_OTHER, "out of memory");
  memcpy(p->body + p->body_len, s, n);
  p->body_len += n;
  p->body[p->body_len] = '\0';
  return YP_H1_MORE;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* chunk-size [ BWS ";" extensions ]; the extensions mean nothing to us and are skipped. */
static yp_h1_status chunk_size_line(yp_http1 *p, const char *s, size_t n) {
  unsigned long long size = 0;
  size_t i, j;
  int d;
  for (i = 0; i < n && (d = hex_value(s[i])) >= 0; i++) {
    if (size > (ULLONG_MAX >> 4)) return fail(p, YP_TR_PROTOCOL, "chunk size out of range");
    size = size * 16 + (unsigned)d;
  }
  for (j = i; j < n && is_ows(s[j]); j++) {}
  if (i == 0 || (j < n ? s[j] != ';' : j != i))
    return fail(p, YP_TR_PROTOCOL, "malformed chunk size");
  if (size == 0) { /* the last chunk; the trailer section has its own limits */
    p->state = S_TRAILERS;
    p->budget = YP_H1_HEAD_MAX;
    p->fields = 0;
    return YP_H1_MORE;
  }
  if (size > p->max_body - p->body_len) /* known now, before the chunk's bytes */
    return fail(p, YP_TR_TOO_LARGE, "response body over the limit of %zu bytes", p->max_body);
  p->remaining = size;
  p->state = S_CHUNK_DATA;
  return YP_H1_MORE;
}

/* ---- feeding ---------------------------------------------------------------------------- */

/* A complete line in the state that asked for it. */
static yp_h1_status line(yp_http1 *p, const char *s, size_t n) {
  if (n && memchr(s, '\r', n)) /* RFC 9112 2.2: a bare CR is invalid; we refuse rather than mend */
    return fail(p, YP_TR_PROTOCOL, "bare CR in the %s",
                p->state == S_STATUS || p->state == S_FIELDS ? "headers" : "chunked body");
  switch (p->state) {
    case S_STATUS: return status_line(p, s, n);
    case S_FIELDS: return n == 0 ? head_end(p) : field_line(p, s, n, 0);
    case S_CHUNK_SIZE: return chunk_size_line(p, s, n);
    case S_CHUNK_END:
      if (n != 0) return fail(p, YP_TR_PROTOCOL, "chunk data not followed by CRLF");
      p->state = S_CHUNK_SIZE;
      p->budget = CHUNK_LINE_MAX;
      return YP_H1_MORE;
    default: /* S_TRAILERS */
      return n == 0 ? done(p) : field_line(p, s, n, 1);
  }
}

static const char *too_long(int state) {
  switch (state) {
    case S_STATUS:
    case S_FIELDS: return "headers too large (over 65536 bytes)";
    case S_TRAILERS: return "trailer section too large (over 65536 bytes)";
    case S_CHUNK_SIZE: return "chunk-size line too long";
    default: return "chunk data not followed by CRLF";
  }
}

yp_h1_status yp_http1_feed(yp_http1 *p, const char *data, size_t len, size_t *used) {
  yp_h1_status st = YP_H1_MORE;
  size_t pos = 0, n;
  *used = 0;
  if (p->state == S_DONE) {
    if (len) p->keep_alive = 0; /* the peer sent more than the response: not ours to read */
    return YP_H1_DONE;
  }
  if (p->state == S_ERROR) return YP_H1_ERROR;
  while (st == YP_H1_MORE && pos < len) {
    switch (p->state) {
      case S_BODY_LENGTH:
      case S_CHUNK_DATA:
        n = len - pos < p->remaining ? len - pos : (size_t)p->remaining;
        st = append_body(p, data + pos, n);
        pos += n;
        p->remaining -= n;
        if (st == YP_H1_MORE && p->remaining == 0) {
          if (p->state == S_BODY_LENGTH) {
            st = done(p);
          } else {
            p->state = S_CHUNK_END;
            p->budget = 2;
          }
        }
        break;
      case S_BODY_CLOSE:
        st = append_body(p, data + pos, len - pos);
        pos = len;
        break;
      default: {
        int r;
        if (p->state == S_STATUS) {
          /* Refuse an HTTP/0.9 body or HTTP/2 at its first wrong byte, not 64 KiB later. */
          size_t i;
          for (i = 0; p->line_len + i < 7 && pos + i < len; i++)
            if (data[pos + i] != "HTTP/1."[p->line_len + i])
              return fail(p, YP_TR_PROTOCOL, "no HTTP/1.x status line");
        }
        r = take_line(p, data, len, &pos);
        if (r == -1) st = fail(p, YP_TR_PROTOCOL, "%s", too_long(p->state));
        else if (r == -2) st = fail(p, YP_TR_OTHER, "out of memory");
        else if (r == 1) {
          st = line(p, p->line, p->line_len);
          p->line_len = 0;
        }
      }
    }
  }
  *used = pos;
  if (st == YP_H1_DONE && pos < len) p->keep_alive = 0;
  return st;
}

yp_h1_status yp_http1_eof(yp_http1 *p) {
  switch (p->state) {
    case S_DONE: p->keep_alive = 0; return YP_H1_DONE;
    case S_ERROR: return YP_H1_ERROR;
    case S_BODY_CLOSE: return done(p);
    case S_STATUS:
      if (p->line_len == 0 && p->budget == YP_H1_HEAD_MAX)
        return fail(p, YP_TR_LOST, "connection closed before a response");
      return fail(p, YP_TR_LOST, "connection closed in the headers");
    case S_FIELDS: return fail(p, YP_TR_LOST, "connection closed in the headers");
    case S_BODY_LENGTH: return fail(p, YP_TR_LOST, "connection closed before the end of the body");
    default: return fail(p, YP_TR_LOST, "connection closed in the chunked body");
  }
}

/* ---- Retry-After ------------------------------------------------------------------------ */

typedef struct cursor {
  const char *s;
  size_t n, i;
} cursor;

static int lit(cursor *c, const char *t) {
  size_t k = strlen(t);
  if (c->n - c->i < k || memcmp(c->s + c->i, t, k) != 0) return 0;
  c->i += k;
  return 1;
}

/* Index of the first of words found at the cursor (consumed), or -1. */
static int one_of(cursor *c, const char *const *words, int count) {
  int k;
  for (k = 0; k < count; k++)
    if (lit(c, words[k])) return k;
  return -1;
}

/* Exactly `digits` decimal digits. */
static int num(cursor *c, int digits, int *out) {
  int k, v = 0;
  if (c->n - c->i < (size_t)digits) return 0;
  for (k = 0; k < digits; k++) {
    char ch = c->s[c->i + (size_t)k];
    if (!is_digit(ch)) return 0;
    v = v * 10 + (ch - '0');
  }
  c->i += (size_t)digits;
  *out = v;
  return 1;
}

static int clock_time(cursor *c, int *h, int *m, int *s) {
  return num(c, 2, h) && lit(c, ":") && num(c, 2, m) && lit(c, ":") && num(c, 2, s) && *h <= 23 &&
         *m <= 59 && *s <= 60; /* 60: a leap second */
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (H. Hinnant's algorithm). */
static long days_from_civil(long y, int m, int d) {
  long era, yoe, doy, doe;
  y -= m <= 2;
  era = (y >= 0 ? y : y - 399) / 400;
  yoe = y - era * 400;
  doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static long year_of(double t) {
  long z, era, doe, yoe, doy, mp;
  if (!(t > -1e12 && t < 1e12)) return 1970; /* NaN or absurd: any year serves */
  z = (long)floor(t / 86400) + 719468;
  era = (z >= 0 ? z : z - 146096) / 146097;
  doe = z - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  return yoe + era * 400 + (mp >= 10);
}

/* An HTTP-date (RFC 9110 5.6.7) as seconds since the epoch; 0 when s is none of the formats. */
static int http_date(const char *s, size_t n, double now, double *out) {
  static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  static const char *const long_days[] = {"Monday", "Tuesday", "Wednesday", "Thursday",
                                          "Friday", "Saturday", "Sunday"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  cursor c = {s, n, 0};
  int mday = 0, mon = -1, year = 0, h = 0, m = 0, sec = 0, ok, leap;
  long y;
  /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
  ok = one_of(&c, days, 7) >= 0 && lit(&c, ", ") && num(&c, 2, &mday) && lit(&c, " ") &&
       (mon = one_of(&c, months, 12)) >= 0 && lit(&c, " ") && num(&c, 4, &year) &&
       lit(&c, " ") && clock_time(&c, &h, &m, &sec) && lit(&c, " GMT") && c.i == n;
  if (!ok) { /* rfc850-date: Sunday, 06-Nov-94 08:49:37 GMT */
    c.i = 0;
    ok = one_of(&c, long_days, 7) >= 0 && lit(&c, ", ") && num(&c, 2, &mday) && lit(&c, "-") &&
         (mon = one_of(&c, months, 12)) >= 0 && lit(&c, "-") && num(&c, 2, &year) &&
         lit(&c, " ") && clock_time(&c, &h, &m, &sec) && lit(&c, " GMT") && c.i == n;
    if (ok) { /* RFC 9110: a year over 50 years ahead is the most recent past one */
      long now_year = year_of(now), full = now_year - now_year % 100 + year;
      if (full > now_year + 50) full -= 100;
      year = (int)full;
    }
  }
  if (!ok) { /* asctime-date: Sun Nov  6 08:49:37 1994 */
    c.i = 0;
    ok = one_of(&c, days, 7) >= 0 && lit(&c, " ") && (mon = one_of(&c, months, 12)) >= 0 &&
         lit(&c, " ") && ((lit(&c, " ") && num(&c, 1, &mday)) || num(&c, 2, &mday)) &&
         lit(&c, " ") && clock_time(&c, &h, &m, &sec) && lit(&c, " ") && num(&c, 4, &year) &&
         c.i == n;
  }
  if (!ok) return 0;
  y = year;
  leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  if (mday < 1 || mday > month_days[mon] + (mon == 1 && leap)) return 0;
  *out = (double)days_from_civil(y, mon + 1, mday) * 86400.0 + h * 3600 + m * 60 + sec;
  return 1;
}

double yp_parse_retry_after(const char *value, size_t len, double now) {
  size_t i;
  double t;
  if (len == 0) return -1;
  for (i = 0; i < len && is_digit(value[i]); i++) {}
  if (i == len) { /* delta-seconds = 1*DIGIT */
    double secs = 0;
    for (i = 0; i < len && secs < DELTA_MAX; i++) secs = secs * 10 + (value[i] - '0');
    return secs < DELTA_MAX ? secs : DELTA_MAX;
  }
  if (!http_date(value, len, now, &t)) return -1;
  t -= now;
  if (!(t > 0)) return 0; /* in the past, or now is NaN */
  return t < DELTA_MAX ? t : DELTA_MAX;
}

double yp_http1_retry_after(const yp_http1 *p, double now) {
  if (p->state != S_DONE || p->has_retry_after != 1) return -1;
  return yp_parse_retry_after(p->retry_after, strlen(p->retry_after), now);
}

/* ---- the Lua object --------------------------------------------------------------------- */

static yp_http1 *check_http1(lua_State *L) {
  return (yp_http1 *)luaL_checkudata(L, 1, HTTP1_MT);
}

/* "more"|"done", used; or nil, code, detail. Running out of memory (or using a finalized object)
 * is not the peer's doing: it raises, as Lua's own allocation failures do. */
static int push_result(lua_State *L, const yp_http1 *p, yp_h1_status st, size_t used,
                       const char *fname) {
  const char *code;
  if (st != YP_H1_ERROR) {
    lua_pushstring(L, st == YP_H1_DONE ? "done" : "more");
    lua_pushinteger(L, (lua_Integer)used);
    return 2;
  }
  switch (p->error) {
    case YP_TR_PROTOCOL: code = "protocol"; break;
    case YP_TR_TOO_LARGE: code = "too_large"; break;
    case YP_TR_LOST: code = "lost"; break;
    default: return luaL_error(L, "%s: %s", fname, p->detail);
  }
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushstring(L, p->detail);
  return 3;
}

static int http1_feed(lua_State *L) {
  yp_http1 *p = check_http1(L);
  size_t len, used;
  const char *s = luaL_checklstring(L, 2, &len);
  yp_h1_status st = yp_http1_feed(p, s, len, &used);
  return push_result(L, p, st, used, "feed");
}

static int http1_eof(lua_State *L) {
  yp_http1 *p = check_http1(L);
  return push_result(L, p, yp_http1_eof(p), 0, "eof");
}

static int http1_response(lua_State *L) {
  yp_http1 *p = check_http1(L);
  lua_Number now = luaL_checknumber(L, 2);
  double ra;
  if (p->state != S_DONE) return luaL_error(L, "response: the response is not complete");
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)p->status);
  lua_setfield(L, -2, "status");
  lua_pushlstring(L, p->body ? p->body : "", p->body_len);
  lua_setfield(L, -2, "body");
  lua_pushboolean(L, p->keep_alive);
  lua_setfield(L, -2, "keep_alive");
  ra = yp_http1_retry_after(p, (double)now);
  if (ra >= 0) {
    if (ra == floor(ra)) lua_pushinteger(L, (lua_Integer)ra); /* <= 2^31: exact */
    else lua_pushnumber(L, (lua_Number)ra);
    lua_setfield(L, -2, "retry_after");
  }
  return 1;
}

/* The final response's status once its status line was read (even if the body then failed), or nil. */
static int http1_status(lua_State *L) {
  yp_http1 *p = check_http1(L);
  if (p->status < 200) return 0;
  lua_pushinteger(L, (lua_Integer)p->status);
  return 1;
}

static int http1_gc(lua_State *L) {
  yp_http1_free(check_http1(L));
  return 0;
}

static int http1_tostring(lua_State *L) {
  const yp_http1 *p = check_http1(L);
  lua_pushfstring(L, HTTP1_MT " (%s)",
                  p->state == S_DONE ? "done" : p->state == S_ERROR ? "failed" : "reading");
  return 1;
}

int yp_http1_lua_new(lua_State *L) {
  static const luaL_Reg meta[] = {{"__gc", http1_gc}, {"__tostring", http1_tostring}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"feed", http1_feed},
                                     {"eof", http1_eof},
                                     {"response", http1_response},
                                     {"status", http1_status},
                                     {NULL, NULL}};
  lua_Number max = luaL_checknumber(L, 1);
  yp_http1 *p;
  luaL_argcheck(L, max >= 0 && max == floor(max), 1, "max_body must be a whole number >= 0");
  /* Created in its closed state (nothing allocated yet), so __gc is safe from the start. */
  p = (yp_http1 *)yp_newuserdata(L, sizeof *p);
  yp_http1_init(p, max < (lua_Number)(SIZE_MAX / 2) ? (size_t)max : SIZE_MAX / 2);
  if (luaL_newmetatable(L, HTTP1_MT)) {
    yp_setfuncs(L, meta);
    lua_pushliteral(L, HTTP1_MT);
    lua_setfield(L, -2, "__name");
    lua_newtable(L);
    yp_setfuncs(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_setmetatable(L, -2);
  return 1;
}
