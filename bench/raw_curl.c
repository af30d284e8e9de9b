/* raw_curl.c: the floor `make bench` measures the module against: the same GET as the module's
 * libcurl driver sends, from plain C, with nothing between libcurl and the loop (no Lua, no JSON).
 *
 * Usage: raw_curl seq   N            URL CA_FILE [HEADER...]
 *        raw_curl multi IN_FLIGHT M  URL CA_FILE [HEADER...]
 * seq: one reused easy handle, N GETs one after another. multi: curl_multi with IN_FLIGHT easy
 * handles, each re-added as it finishes, until M GETs are done. Both first run a warm-up (one GET,
 * resp. IN_FLIGHT GETs all at once) so that connections and TLS sessions exist before the clock
 * starts, as the bench also warms the module's client. Bodies are read and discarded. Prints the
 * elapsed seconds and the CPU seconds of the timed part on stdout ("WALL CPU"); exits 1 if any
 * request failed or was not a 200. */
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
 * offers nothing else, so ALPN picks it for the module too). */
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

static int run_seq(long n, const char *url, const char *ca_file, struct curl_slist *headers) {
  CURL *e = new_easy(url, ca_file, headers);
  if (!e || !ok_response(e, curl_easy_perform(e))) return 1;
  double t0 = now(), c0 = cpu();
  for (long i = 0; i < n; i++)
    if (!ok_response(e, curl_easy_perform(e))) return 1;
  printf("%.6f %.6f\n", now() - t0, cpu() - c0);
  curl_easy_cleanup(e);
  return 0;
}

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

static int run_multi(long width, long total, const char *url, const char *ca_file,
                     struct curl_slist *headers) {
  CURLM *m = curl_multi_init();
  CURL **handles = calloc((size_t)width, sizeof *handles);
  if (!m || !handles) return 1;
  for (long i = 0; i < width; i++)
    if (!(handles[i] = new_easy(url, ca_file, headers))) return 1;
  if (multi_pass(m, handles, width, width)) return 1; /* warm-up: one connection per handle */
  double t0 = now(), c0 = cpu();
  if (multi_pass(m, handles, width, total)) return 1;
  printf("%.6f %.6f\n", now() - t0, cpu() - c0);
  for (long i = 0; i < width; i++) curl_easy_cleanup(handles[i]);
  free(handles);
  curl_multi_cleanup(m);
  return 0;
}

int main(int argc, char **argv) {
  int multi = argc > 1 && strcmp(argv[1], "multi") == 0;
  int first_header = multi ? 6 : 5;
  if (argc < first_header || (!multi && strcmp(argv[1], "seq") != 0)) {
    fprintf(stderr, "usage: raw_curl seq N URL CA_FILE [HEADER...]\n"
                    "       raw_curl multi IN_FLIGHT M URL CA_FILE [HEADER...]\n");
    return 2;
  }
  long a = strtol(argv[2], NULL, 10), b = multi ? strtol(argv[3], NULL, 10) : 0;
  if (a < 1 || (multi && b < 1)) {
    fprintf(stderr, "raw_curl: counts must be positive\n");
    return 2;
  }
  const char *url = argv[first_header - 2], *ca_file = argv[first_header - 1];
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return 1;
  struct curl_slist *headers = NULL;
  for (int i = first_header; i < argc; i++)
    if (!(headers = curl_slist_append(headers, argv[i]))) return 1;
  int rc = multi ? run_multi(a, b, url, ca_file, headers) : run_seq(a, url, ca_file, headers);
  curl_slist_free_all(headers);
  curl_global_cleanup();
  return rc;
}
