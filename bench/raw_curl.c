/* raw_curl.c: the floor `make bench` measures the module against: the same GET as the module's
 * libcurl driver sends, from plain C, with nothing between libcurl and the loop (no Lua, no JSON).
 *
 * Usage: raw_curl seq   N            URL CA_FILE [HEADER...]
 *        raw_curl multi IN_FLIGHT M  URL CA_FILE [HEADER...]
 *        raw_curl serve seq          URL CA_FILE [HEADER...]
 *        raw_curl serve multi IN_FLIGHT URL CA_FILE [HEADER...]
 * seq: one reused easy handle, N GETs one after another. multi: curl_multi with IN_FLIGHT easy
 * handles, each re-added as it finishes, until M GETs are done. Both first run a warm-up (one GET,
 * resp. IN_FLIGHT GETs all at once) so that connections and TLS sessions exist before the clock
 * starts, as the bench also warms the module's client. Bodies are read and discarded. Prints the
 * elapsed seconds and the CPU seconds of the timed part on stdout ("WALL CPU"); exits 1 if any
 * request failed or was not a 200.
 * serve: the same handles, warmed up once, then kept for as long as stdin stays open, as the
 * module keeps its client: prints "ready" after the warm-up, then reads one count per line and
 * answers each with the "WALL CPU" of that many GETs (stdout flushed per line). The bench uses it
 * to interleave many short runs with the module's without a process start or a new connection
 * between them. A failed GET answers "FAIL" (the reason on stderr), then it waits for end of
 * input and exits 1, so the bench never writes into a pipe nobody reads. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void) { return clock_seconds(CLOCK_MONOTONIC); }

/* This process's CPU time (user + system): what the bench compares when other load on the
 * machine makes wall times jumpy. */
static double cpu(void) { return clock_seconds(CLOCK_PROCESS_CPUTIME_ID); }

static size_t discard(char *data, size_t size, size_t n, void *userdata) {
  (void)data;
  (void)userdata;
  return size * n;
}

/* The options the module's transport sets on every handle (src/transport_curl.c new_easy and
 * submit), with its defaults: verified TLS against the CA file, keepalive, HTTP/1.1 (nginx here
 * offers nothing else, so ALPN picks it for the module too). The rest stays at libcurl's defaults,
 * as a plain libcurl program has them, unless RAW_TUNED=1 is in the environment: then also the
 * module's own tuning (its buffer sizes, and the proxy variables read once instead of at every
 * transfer), so that the comparison shows the binding's cost alone (README: Benchmarks). */
static CURL *new_easy(const char *url, const char *ca_file, struct curl_slist *headers) {
  CURL *e = curl_easy_init();
  if (!e) return NULL;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  const char *tuned = getenv("RAW_TUNED");
  if (tuned && strcmp(tuned, "1") == 0) {
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* the bench sets no proxy variable */
    curl_easy_setopt(e, CURLOPT_NOPROXY, "");
  }
  return e;
}

static int ok_response(CURL *e, CURLcode rc) {
  long status = 0;
  if (rc != CURLE_OK) {
    fprintf(stderr, "raw_curl: %s\n", curl_easy_strerror(rc));
    return 0;
  }
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    fprintf(stderr, "raw_curl: HTTP %ld\n", status);
    return 0;
  }
  return 1;
}

/* One side of the comparison, kept across passes: width 0 is the sequential loop (one easy handle,
 * curl_easy_perform), width >= 1 is curl_multi with that many handles. */
struct runner {
  long width;
  CURL *easy;
  CURLM *multi;
  CURL **handles;
};

/* Runs `total` GETs with at most `width` in flight over the handles (already configured, not
 * added). Returns 0 when all succeeded. */
static int multi_pass(CURLM *m, CURL **handles, long width, long total) {
  long started = 0, done = 0;
  int failed = 0;
  for (long i = 0; i < width && started < total; i++, started++) curl_multi_add_handle(m, handles[i]);
  while (done < total) {
    int running = 0, queued = 0, added = 0;
    if (curl_multi_perform(m, &running) != CURLM_OK) return 1;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &queued))) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *e = msg->easy_handle;
      CURLcode rc = msg->data.result;
      curl_multi_remove_handle(m, e);
      if (!ok_response(e, rc)) failed = 1;
      done++;
      if (started < total) {
        curl_multi_add_handle(m, e);
        started++;
        added = 1;
      }
    }
    /* A re-added handle sends at once (perform again); otherwise wait for a socket. */
    if (!added && done < total && curl_multi_poll(m, NULL, 0, 1000, NULL) != CURLM_OK) return 1;
  }
  return failed;
}

/* n GETs on the runner's handles; 0 when all succeeded. */
static int runner_pass(struct runner *r, long n) {
  if (r->width > 0) return multi_pass(r->multi, r->handles, r->width, n);
  for (long i = 0; i < n; i++)
    if (!ok_response(r->easy, curl_easy_perform(r->easy))) return 1;
  return 0;
}

static void runner_close(struct runner *r) {
  if (r->easy) curl_easy_cleanup(r->easy);
  for (long i = 0; r->handles && i < r->width; i++)
    if (r->handles[i]) curl_easy_cleanup(r->handles[i]);
  free(r->handles);
  if (r->multi) curl_multi_cleanup(r->multi);
  memset(r, 0, sizeof *r);
}

/* Creates the handles and runs the warm-up (one GET, or `width` at once: one connection per
 * handle). Returns 0 on success; on failure the runner is closed. */
static int runner_open(struct runner *r, long width, const char *url, const char *ca_file,
                       struct curl_slist *headers) {
  memset(r, 0, sizeof *r);
  r->width = width;
  if (width == 0) {
    r->easy = new_easy(url, ca_file, headers);
  } else {
    r->multi = curl_multi_init();
    /* Keep a connection per handle between passes, as the module's transport does: libcurl's
     * default cache (4 per handle in the multi handle) shrinks as a pass's last transfers end, and
     * the next pass would handshake again. */
    if (r->multi) curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, width > 4 ? width : 4L);
    r->handles = calloc((size_t)width, sizeof *r->handles);
    for (long i = 0; r->multi && r->handles && i < width; i++)
      if (!(r->handles[i] = new_easy(url, ca_file, headers))) break;
  }
  int ready = width == 0 ? r->easy != NULL : r->multi && r->handles && r->handles[width - 1];
  if (!ready || runner_pass(r, width == 0 ? 1 : width)) {
    runner_close(r);
    return 1;
  }
  return 0;
}

/* One timed pass of n GETs, answered on stdout as "WALL CPU". */
static int timed_pass(struct runner *r, long n) {
  double t0 = now(), c0 = cpu();
  if (runner_pass(r, n)) return 1;
  double wall = now() - t0, used = cpu() - c0;
  printf("%.6f %.6f\n", wall, used);
  fflush(stdout);
  return 0;
}

/* serve: one count per line on stdin, one answer per line on stdout, until end of input. */
static int serve(struct runner *r) {
  char line[64];
  printf("ready\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
    char *end;
    long n = strtol(line, &end, 10);
    if (n < 1 || (*end != '\n' && *end != '\0')) {
      fprintf(stderr, "raw_curl: serve: not a positive count: %s", line);
      break;
    }
    if (timed_pass(r, n)) break;
  }
  if (feof(stdin)) return 0;
  printf("FAIL\n");
  fflush(stdout);
  while (fgets(line, sizeof line, stdin)) {
  }
  return 1;
}

static int usage(void) {
  fprintf(stderr, "usage: raw_curl seq N URL CA_FILE [HEADER...]\n"
                  "       raw_curl multi IN_FLIGHT M URL CA_FILE [HEADER...]\n"
                  "       raw_curl serve seq URL CA_FILE [HEADER...]\n"
                  "       raw_curl serve multi IN_FLIGHT URL CA_FILE [HEADER...]\n");
  return 2;
}

int main(int argc, char **argv) {
  /* Before URL: the program, "serve" if serving, seq or multi, the width (multi) and the count
   * (one-shot modes only). */
  int serving = argc > 1 && strcmp(argv[1], "serve") == 0;
  const char *kind = argc > 1 + serving ? argv[1 + serving] : "";
  int multi = strcmp(kind, "multi") == 0;
  if (!multi && strcmp(kind, "seq") != 0) return usage();
  int url_at = 2 + serving + multi + !serving, first_header = url_at + 2;
  if (argc < first_header) return usage();
  long width = multi ? strtol(argv[2 + serving], NULL, 10) : 0;
  long count = serving ? 1 : strtol(argv[2 + multi], NULL, 10);
  if ((multi && width < 1) || count < 1) {
    fprintf(stderr, "raw_curl: counts must be positive\n");
    return 2;
  }
  const char *url = argv[url_at], *ca_file = argv[url_at + 1];
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
  struct curl_slist *headers = NULL;
  for (int i = first_header; i < argc; i++)
    if (!(headers = curl_slist_append(headers, argv[i]))) return 1;
  struct runner r;
  int rc = runner_open(&r, width, url, ca_file, headers);
  if (rc == 0) {
    rc = serving ? serve(&r) : timed_pass(&r, count);
    runner_close(&r);
  }
  curl_slist_free_all(headers);
  curl_global_cleanup();
  return rc;
}
