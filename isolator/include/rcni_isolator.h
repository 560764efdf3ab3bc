/*
 * rcni_isolator.h: the C ABI of rcni's network/cni isolator (the Apache
 * Mesos network/cni isolator rewritten in Rust). Library: libcni_isolator.so,
 * built by `cargo build [--release] -p cni-isolator` (isolator/src/ffi.rs).
 *
 * Conventions
 * - Every payload is JSON in a NUL-terminated UTF-8 string, shaped like the
 *   Mesos protobuf messages as JSON::protobuf prints them (snake_case keys):
 *   ContainerID   {"value":"c2","parent":{"value":"c1"}}  or the dotted string "c1.c2"
 *   ContainerConfig {"container_class":"DEFAULT"|"DEBUG",
 *                    "container_info":{"type":"MESOS","hostname":"h",
 *                      "network_infos":[{"name":"net1","labels":{"labels":[{"key":"k","value":"v"}]},
 *                                        "port_mappings":[{"host_port":8080,"container_port":80,"protocol":"tcp"}],
 *                                        "groups":["g"]}]},
 *                    "rootfs":"/path"}
 *   ContainerState  {"container_id":<ContainerID>,"network_infos":[...]}
 * - Every call answers RCNI_OK or an error code, and a string to free with
 *   rcni_isolator_free_string(): the JSON answer on success, the error
 *   message (the whole chain of causes, one line per failure for
 *   RCNI_ERR_MANY) on failure.
 * - Two ways to call, with the same answers:
 *   rcni_isolator_X_async(..., done, ctx) returns at once. RCNI_OK means the
 *     call was submitted and done(ctx, code, out) will be called exactly
 *     once, on one of the isolator's runtime threads, never from inside the
 *     submitting call (also when submitted from inside a callback). Bad
 *     arguments (a NULL or non-UTF-8 string, bad JSON) are answered through
 *     done as well. Only a NULL handle or a NULL done make the submit return
 *     RCNI_ERR_ARGUMENT, and then done is never called. The strings passed
 *     are copied before the submit returns; ctx is passed back untouched and
 *     must be usable from another thread. done owns out (free it) and should
 *     return quickly: it runs on one of few runtime threads. It may submit
 *     more calls and may call rcni_isolator_destroy (see there).
 *   rcni_isolator_X(..., &out) blocks the calling thread until done and
 *     stores the answer in *out (when out is not NULL). Not from inside a
 *     done callback: there it answers RCNI_ERR_INVALID at once.
 * - Threads: a handle owns a small tokio runtime (2 worker threads by
 *   default), tokio's blocking pool (capped, 8 by default) and at most 4
 *   short-lived threads at a time that enter container namespaces; no thread
 *   per call, whatever the number of calls in flight. The runtime's threads
 *   start in the namespaces of the thread that calls rcni_isolator_create.
 *   Plugins are child processes of this process, each waited for through a
 *   pidfd (Linux >= 5.3; on older kernels tokio installs a SIGCHLD handler
 *   that chains to any previous one), and only that child is reaped.
 * - Calls for different containers run concurrently; one container's
 *   isolate and cleanup never overlap. A cleanup submitted while an isolate
 *   of the same container is running cancels that isolate (its plugins are
 *   killed; its done gets RCNI_ERR_CANCELLED, "... cancelled by its
 *   cleanup"), waits for it to stop, then detaches every network it attached
 *   or was attaching.
 * - No panic or exception crosses this boundary.
 * - Needs root for everything but the degraded mode (no config/plugins dir).
 */
#ifndef RCNI_ISOLATOR_H
#define RCNI_ISOLATOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RCNI_OK 0
#define RCNI_ERR_ARGUMENT 1        /* NULL pointer, bad UTF-8 or JSON, unknown option */
#define RCNI_ERR_INVALID 2         /* the isolator refused the request */
#define RCNI_ERR_UNKNOWN_NETWORK 3 /* no usable config defines the network */
#define RCNI_ERR_PLUGIN 4          /* a CNI plugin failed or timed out */
#define RCNI_ERR_SYSTEM 5          /* syscall, file, netlink or setup helper failure */
#define RCNI_ERR_CORRUPT 6         /* checkpointed state cannot be read */
#define RCNI_ERR_MANY 7            /* several steps failed */
#define RCNI_ERR_CANCELLED 8       /* cancelled: an isolate by its container's cleanup, or by destroy */
#define RCNI_ERR_PANIC 99          /* a bug in the isolator; the handle stays usable */

typedef struct RcniIsolator rcni_isolator;

/*
 * The completion callback of the _async calls: ctx as given to the submit,
 * the code, and the answer, which the callback owns (rcni_isolator_free_string).
 */
typedef void (*rcni_isolator_done)(void *ctx, int32_t code, char *out);

/*
 * Creates an isolator. options_json is an object; values may be strings (as
 * Mesos module parameters are), booleans or numbers:
 *   network_cni_config_dir, network_cni_plugins_dir (":"-separated),
 *   runtime_dir (default /var/run/mesos), work_dir, network_cni_root_dir_persist,
 *   network_cni_metrics (default true), default_container_dns (the agent flag's JSON),
 *   and rcni's: root_dir (overrides the three above), plugin_timeout_ms (0: none),
 *   durable_checkpoints, setup_helper (path of cni-isolator-setup),
 *   worker_threads (default 2), max_blocking_threads (default 8),
 *   max_namespace_threads (default 4).
 * With neither dir it runs degraded (host network only), like Mesos.
 * On success *isolator is the handle; *out is {"root_dir":...,"skipped":[...]}.
 */
int32_t rcni_isolator_create(const char *options_json, rcni_isolator **isolator, char **out);

/*
 * Destroys the handle (NULL is ignored). Containers and their state stay on
 * disk for the next isolator's recover. Safe with calls in flight: they are
 * cancelled (plugins killed; each done is still called exactly once, with
 * RCNI_ERR_CANCELLED, or with its answer if it finished first), and destroy
 * returns only after every done has returned and every blocking call on the
 * handle has ended; then the runtime stops and the handle is freed. Called
 * from inside a done callback it returns at once and a thread of its own
 * does the waiting. No call may be submitted with the handle once destroy
 * has begun.
 */
void rcni_isolator_destroy(rcni_isolator *isolator);

/* Frees a string returned through `out` (NULL is ignored). */
void rcni_isolator_free_string(char *s);

/*
 * Rebuilds state from the root dir. states_json: array of ContainerState (the
 * containers the agent knows are alive); orphans_json: array of ContainerID the
 * agent will destroy itself (NULL: none). Every other container dir is an
 * unknown orphan and is cleaned up here.
 * *out: {"recovered":[ids],"cleaned":[ids],"failed":[{"container","message"}],"warnings":[...]}.
 */
int32_t rcni_isolator_recover(const rcni_isolator *isolator, const char *states_json,
                              const char *orphans_json, char **out);

/*
 * Decides the container's networks and namespaces. *out is "null" (stay in
 * the host's namespaces) or the launch info:
 * {"environment":[["LIBPROCESS_IP","0.0.0.0"]],"clone_namespaces":["mount","net","uts"],
 *  "enter_namespaces":[...],"clone_flags":<CLONE_NEW* bits>,"enter_flags":<bits>}.
 */
int32_t rcni_isolator_prepare(const rcni_isolator *isolator, const char *container_id,
                              const char *config_json, char **out);

/* Attaches the container whose first process is pid (ADD of every network,
 * hostname, /etc files). *out: "null". */
int32_t rcni_isolator_isolate(const rcni_isolator *isolator, const char *container_id, int32_t pid,
                              char **out);

/* *out: ContainerStatus, {"network_infos":[{...,"ip_addresses":[{"protocol":"IPv4","ip_address":"..."}]}]}. */
int32_t rcni_isolator_status(const rcni_isolator *isolator, const char *container_id, char **out);

/* *out: the net_* fields of ResourceStatistics ({} when metrics are off or no networks). */
int32_t rcni_isolator_usage(const rcni_isolator *isolator, const char *container_id, char **out);

/* Detaches the container (DEL of every network) and removes its state. *out: "null".
 * On failure the state stays for a later cleanup or recovery. */
int32_t rcni_isolator_cleanup(const rcni_isolator *isolator, const char *container_id, char **out);

/* The same calls, answered through done (see Conventions). */
int32_t rcni_isolator_recover_async(const rcni_isolator *isolator, const char *states_json,
                                    const char *orphans_json, rcni_isolator_done done, void *ctx);
int32_t rcni_isolator_prepare_async(const rcni_isolator *isolator, const char *container_id,
                                    const char *config_json, rcni_isolator_done done, void *ctx);
int32_t rcni_isolator_isolate_async(const rcni_isolator *isolator, const char *container_id,
                                    int32_t pid, rcni_isolator_done done, void *ctx);
int32_t rcni_isolator_status_async(const rcni_isolator *isolator, const char *container_id,
                                   rcni_isolator_done done, void *ctx);
int32_t rcni_isolator_usage_async(const rcni_isolator *isolator, const char *container_id,
                                  rcni_isolator_done done, void *ctx);
int32_t rcni_isolator_cleanup_async(const rcni_isolator *isolator, const char *container_id,
                                    rcni_isolator_done done, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* RCNI_ISOLATOR_H */
