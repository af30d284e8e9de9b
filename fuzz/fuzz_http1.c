/* fuzz_http1.c: libFuzzer target for the HTTP/1.1 response framer. The first 4 bytes pick the
 * body limit and how the stream is cut; the rest is the stream, fed whole and in those pieces,
 * then eof. Every cut must give the same verdict, and every result must keep the invariants. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http1: %s\n", what);
  abort();
}

typedef struct outcome {
  yp_h1_status st;
  size_t used;    /* bytes taken by feed, summed over the pieces */
  int keep_alive; /* as it was before eof */
} outcome;

/* Feeds the stream in pieces whose lengths come from a xorshift seeded by the header (max_piece
 * 0: whole), feeding on after DONE as a socket would deliver, then eof. */
static outcome run(yp_http1 *p, const char *s, size_t n, uint32_t seed, size_t max_piece) {
  outcome o = {YP_H1_MORE, 0, 0};
  size_t pos = 0;
  while (pos < n && o.st != YP_H1_ERROR) {
    size_t len = n - pos, used;
    if (max_piece) {
      seed ^= seed << 13;
      seed ^= seed >> 17;
      seed ^= seed << 5;
      len = seed % (max_piece + 1); /* 0 included: an empty read */
      if (len > n - pos) len = n - pos;
    }
    o.st = yp_http1_feed(p, s + pos, len, &used);
    if (used > len) fail("used more than it was given");
    if (o.st == YP_H1_MORE && used != len) fail("MORE without using every byte");
    if (o.st != YP_H1_ERROR) o.used += used;
    pos += len;
  }
  o.keep_alive = p->keep_alive;
  if (o.st != YP_H1_ERROR) o.st = yp_http1_eof(p);
  return o;
}

static void check(const yp_http1 *p, outcome o, size_t max_body, size_t n) {
  size_t i, dlen = strnlen(p->detail, sizeof p->detail);
  if (o.st == YP_H1_MORE) fail("eof left the response open");
  if (o.used > n) fail("used more than the stream");
  if (o.st == YP_H1_DONE) {
    if (p->status < 200 || p->status > 999) fail("final status out of range");
    if (p->body_len > max_body) fail("body over max_body");
    if (p->body_len && (!p->body || p->body[p->body_len] != '\0')) fail("body not NUL-terminated");
    if (p->keep_alive != 0) fail("keep_alive after eof");
    double ra = yp_http1_retry_after(p, 784111777.0);
    if (!(ra == -1 || (ra >= 0 && ra <= 2147483648.0))) fail("retry-after out of range");
  } else {
    if (p->error != YP_TR_PROTOCOL && p->error != YP_TR_TOO_LARGE && p->error != YP_TR_LOST)
      fail("unexpected error kind");
    if (dlen == 0 || dlen == sizeof p->detail) fail("detail empty or unterminated");
    for (i = 0; i < dlen; i++) /* our own words only: printable ASCII, one line */
      if (p->detail[i] < 0x20 || p->detail[i] > 0x7E) fail("detail is not one printable line");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t limits[] = {0, 16, 300, 100000};
  static const size_t pieces[] = {1, 3, 17, 200};
  yp_http1 whole, cut;
  if (size < 4) return 0;
  size_t max_body = limits[data[0] & 3], max_piece = pieces[(data[0] >> 2) & 3];
  /* A xorshift seed must not be 0. */
  uint32_t seed = (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3] | 1u;
  const char *s = (const char *)data + 4;
  size_t n = size - 4;

  yp_http1_init(&whole, max_body);
  yp_http1_init(&cut, max_body);
  outcome a = run(&whole, s, n, 0, 0), b = run(&cut, s, n, seed, max_piece);
  check(&whole, a, max_body, n);
  check(&cut, b, max_body, n);
  /* The framer cannot tell how the bytes arrived. */
  if (a.st != b.st) fail("the verdict depends on the cut");
  if (a.st == YP_H1_DONE) {
    if (a.used != b.used || a.keep_alive != b.keep_alive || whole.status != cut.status ||
        whole.body_len != cut.body_len ||
        (whole.body_len && memcmp(whole.body, cut.body, whole.body_len) != 0) ||
        whole.has_retry_after != cut.has_retry_after || strcmp(whole.retry_after, cut.retry_after))
      fail("the response depends on the cut");
  } else if (whole.error != cut.error || strcmp(whole.detail, cut.detail) != 0) {
    fail("the error depends on the cut");
  }
  yp_http1_free(&whole);
  yp_http1_free(&cut);
  yp_http1_free(&cut); /* idempotent */

  /* The Retry-After parser alone, on the raw stream, at a few clocks. */
  static const double clocks[] = {0, 784111777.0, 1700000000.5, -1e18, 1e18};
  for (size_t k = 0; k < sizeof clocks / sizeof *clocks; k++) {
    double r = yp_parse_retry_after(s, n, clocks[k]);
    if (!(r == -1 || (r >= 0 && r <= 2147483648.0))) fail("yp_parse_retry_after out of range");
  }
  return 0;
}
