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
 * - Every call returns RCNI_OK or an error code, and stores in *out (when out
 *   is not NULL) a string to free with rcni_isolator_free_string(): the JSON
 *   answer on success, the error message (the whole chain of causes, one line
 *   per failure for RCNI_ERR_MANY) on failure.
 * - Calls block until done: run them on a thread of their own, not on an
 *   event loop. A handle may be used by many threads at once (for different
 *   containers); destroy it only when no call is running.
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
#define RCNI_ERR_PANIC 99          /* a bug in the isolator; the handle stays usable */

typedef struct RcniIsolator rcni_isolator;

/*
 * Creates an isolator. options_json is an object; values may be strings (as
 * Mesos module parameters are), booleans or numbers:
 *   network_cni_config_dir, network_cni_plugins_dir (":"-separated),
 *   runtime_dir (default /var/run/mesos), work_dir, network_cni_root_dir_persist,
 *   network_cni_metrics (default true), default_container_dns (the agent flag's JSON),
 *   and rcni's: root_dir (overrides the three above), plugin_timeout_ms (0: none),
 *   durable_checkpoints, setup_helper (path of cni-isolator-setup).
 * With neither dir it runs degraded (host network only), like Mesos.
 * On success *isolator is the handle; *out is {"root_dir":...,"skipped":[...]}.
 */
int32_t rcni_isolator_create(const char *options_json, rcni_isolator **isolator, char **out);

/* Destroys the handle (NULL is ignored). Containers and their state stay. */
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

#ifdef __cplusplus
}
#endif

#endif /* RCNI_ISOLATOR_H */
