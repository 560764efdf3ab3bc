/*
 * A C host of libcni_isolator.so, run by tests/c_abi.rs:
 *   abi_smoke OPTIONS_JSON PID NETWORK
 * creates an isolator, checks an error path, then prepare/isolate/status/
 * usage/cleanup of container "cabi1" (whose first process is PID; status
 * also through the completion-callback form) on
 * NETWORK, printing "<call> <code> <out>" per call. Exit 0 when every code
 * is as expected.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcni_isolator.h"

static int failures = 0;

static void report(const char *call, int32_t code, int32_t want, char *out) {
  printf("%s %d %s\n", call, code, out ? out : "(null)");
  if (code != want) {
    fprintf(stderr, "%s: code %d, want %d: %s\n", call, code, want, out ? out : "");
    failures++;
  }
  rcni_isolator_free_string(out);
}

/* One _async call's answer, handed over by the completion callback. */
struct pending {
  pthread_mutex_t lock;
  pthread_cond_t done;
  int finished;
  int32_t code;
  char *out;
};

static void completed(void *ctx, int32_t code, char *out) {
  struct pending *p = ctx;
  pthread_mutex_lock(&p->lock);
  p->finished++;
  p->code = code;
  p->out = out;
  pthread_cond_signal(&p->done);
  pthread_mutex_unlock(&p->lock);
}

/* Waits for the callback of a submitted call and reports it. */
static void await_report(const char *call, int32_t submitted, struct pending *p, int32_t want) {
  if (submitted != RCNI_OK) {
    report(call, submitted, want, NULL);
    return;
  }
  pthread_mutex_lock(&p->lock);
  while (!p->finished) pthread_cond_wait(&p->done, &p->lock);
  pthread_mutex_unlock(&p->lock);
  if (p->finished != 1) failures++;
  report(call, p->code, want, p->out);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s OPTIONS_JSON PID NETWORK\n", argv[0]);
    return 2;
  }
  int32_t pid = (int32_t)atoi(argv[2]);
  char config[512];
  snprintf(config, sizeof config,
           "{\"container_info\":{\"type\":\"MESOS\",\"hostname\":\"cabi\","
           "\"network_infos\":[{\"name\":\"%s\"}]}}",
           argv[3]);

  rcni_isolator *iso = NULL;
  char *out = NULL;
  int32_t code = rcni_isolator_create(argv[1], &iso, &out);
  report("create", code, RCNI_OK, out);
  if (code != RCNI_OK) return 1;

  /* Errors are codes with a message, never a crash. */
  out = NULL;
  code = rcni_isolator_prepare(iso, "{\"value\":\"cabi0\"}",
                               "{\"container_info\":{\"network_infos\":[{\"name\":\"no-such-net\"}]}}", &out);
  report("prepare-unknown", code, RCNI_ERR_UNKNOWN_NETWORK, out);
  out = NULL;
  code = rcni_isolator_status(iso, "{not json", &out);
  report("status-bad-json", code, RCNI_ERR_ARGUMENT, out);
  code = rcni_isolator_status(NULL, "\"cabi1\"", NULL);
  report("status-null-handle", code, RCNI_ERR_ARGUMENT, NULL);

  out = NULL;
  code = rcni_isolator_recover(iso, "[]", NULL, &out);
  report("recover", code, RCNI_OK, out);
  out = NULL;
  code = rcni_isolator_prepare(iso, "{\"value\":\"cabi1\"}", config, &out);
  report("prepare", code, RCNI_OK, out);
  out = NULL;
  code = rcni_isolator_isolate(iso, "\"cabi1\"", pid, &out);
  report("isolate", code, RCNI_OK, out);
  out = NULL;
  code = rcni_isolator_status(iso, "\"cabi1\"", &out);
  report("status", code, RCNI_OK, out);
  out = NULL;
  code = rcni_isolator_usage(iso, "\"cabi1\"", &out);
  report("usage", code, RCNI_OK, out);
  struct pending p = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};
  await_report("status-async", rcni_isolator_status_async(iso, "\"cabi1\"", completed, &p), &p,
               RCNI_OK);
  out = NULL;
  code = rcni_isolator_cleanup(iso, "{\"value\":\"cabi1\"}", &out);
  report("cleanup", code, RCNI_OK, out);

  rcni_isolator_destroy(iso);
  return failures ? 1 : 0;
}
