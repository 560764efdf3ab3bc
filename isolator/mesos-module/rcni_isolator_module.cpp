// A Mesos isolator module over rcni's C ABI (../include/rcni_isolator.h):
// `network/cni_rs`, an Isolator that forwards every call to the Rust
// network/cni isolator in libcni_isolator.so.
//
// Each call converts the protobufs it gets to the JSON the C ABI reads (the
// JSON::protobuf shape, reduced to the fields the isolator looks at) and
// submits it with the C ABI's callback variant (rcni_isolator_X_async): the
// submit returns at once, the Rust isolator runs the call on its own small,
// bounded set of threads (a tokio runtime owned by the handle), and the
// completion callback, called exactly once on one of those threads, sets or
// fails the call's Promise and frees the call's heap context. No thread per
// call, no libprocess worker ever blocks. watch() and update() keep
// Isolator's defaults (a pending future; nothing to update).
//
// The destructor destroys the handle, which cancels the calls still in flight
// (their promises fail with RCNI_ERR_CANCELLED) and returns once every
// callback has run, so no callback outlives the module's isolator.
//
// Not compiled in rcni's CI (no Mesos headers there); compiled with -Wall
// -Wextra -Werror and load-tested without an agent by
// scripts/check-mesos-module.sh against the headers of Mesos 1.11.0 and
// 1.12.0 (master); see README.md.

#include <sched.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <glog/logging.h>

#include <mesos/mesos.hpp>
#include <mesos/module.hpp>
#include <mesos/module/isolator.hpp>
#include <mesos/slave/containerizer.hpp>
#include <mesos/slave/isolator.hpp>
#include <mesos/type_utils.hpp>

#include <process/clock.hpp>
#include <process/future.hpp>

#include <stout/error.hpp>
#include <stout/foreach.hpp>
#include <stout/hashset.hpp>
#include <stout/json.hpp>
#include <stout/none.hpp>
#include <stout/nothing.hpp>
#include <stout/option.hpp>
#include <stout/protobuf.hpp>
#include <stout/stringify.hpp>
#include <stout/try.hpp>

#include "rcni_isolator.h"

using mesos::ContainerID;
using mesos::ContainerInfo;
using mesos::ContainerStatus;
using mesos::NetworkInfo;
using mesos::Parameter;
using mesos::Parameters;
using mesos::ResourceStatistics;
using mesos::slave::ContainerConfig;
using mesos::slave::ContainerLaunchInfo;
using mesos::slave::ContainerState;
using mesos::slave::Isolator;

using process::Future;
using process::Promise;

namespace {

// The string the C ABI stored in *out (freed here), or the error it reported
// with its code. Callers write answer(rcni_isolator_x(..., &out), &out):
// `out` is read here, after the call has stored into it. (Passing `out` by
// value there would read it before the call, argument order being
// unspecified; GCC does, and every answer was lost and leaked.)
Try<std::string> answer(int32_t code, char** out)
{
  std::string text = *out != nullptr ? *out : "";
  rcni_isolator_free_string(*out);
  *out = nullptr;
  if (code != RCNI_OK) {
    return Error("rcni network/cni isolator (code " + stringify(code) + "): " + text);
  }
  return text;
}

// One call in flight: its promise and how its answer becomes a T. Made on
// the heap by submit(), owned by the C ABI until the callback, which deletes
// it.
template <typename T>
struct Call
{
  explicit Call(const std::function<Try<T>(const std::string&)>& convert)
    : convert(convert) {}

  Promise<T> promise;
  std::function<Try<T>(const std::string&)> convert;
};

// The completion callback (rcni_isolator_done): called exactly once per
// submitted call, on one of the isolator's runtime threads. No exception may
// leave it (the caller is Rust).
template <typename T>
void completed(void* ctx, int32_t code, char* out)
{
  std::unique_ptr<Call<T>> call(static_cast<Call<T>*>(ctx));
  try {
    Try<std::string> text = answer(code, &out);
    if (text.isError()) {
      call->promise.fail(text.error());
      return;
    }
    Try<T> result = call->convert(text.get());
    if (result.isError()) {
      call->promise.fail(result.error());
    } else {
      call->promise.set(result.get());
    }
  } catch (const std::exception& e) {
    call->promise.fail(std::string("rcni network/cni isolator: ") + e.what());
  } catch (...) {
    call->promise.fail("rcni network/cni isolator: unknown exception in a completion");
  }
}

// Submits one call: `send(done, ctx)` is the C ABI's _async function with
// its arguments bound. A refused submit (code != RCNI_OK: the callback will
// not be called) fails the future at once.
template <typename T>
Future<T> submit(
    const std::function<int32_t(rcni_isolator_done, void*)>& send,
    const std::function<Try<T>(const std::string&)>& convert)
{
  Call<T>* call = new Call<T>(convert);
  Future<T> future = call->promise.future();
  const int32_t code = send(&completed<T>, call);
  if (code != RCNI_OK) {
    call->promise.fail(
        "rcni network/cni isolator (code " + stringify(code) + "): the call was not submitted");
    delete call;
  }
  return future;
}

std::string containerIdJson(const ContainerID& containerId)
{
  return stringify(JSON::protobuf(containerId));
}

JSON::Array networkInfosJson(
    const google::protobuf::RepeatedPtrField<NetworkInfo>& networkInfos)
{
  JSON::Array array;
  foreach (const NetworkInfo& networkInfo, networkInfos) {
    array.values.push_back(JSON::protobuf(networkInfo));
  }
  return array;
}

// The fields of ContainerConfig the isolator reads.
std::string containerConfigJson(const ContainerConfig& config)
{
  JSON::Object object;
  if (config.has_container_class()) {
    object.values["container_class"] =
      mesos::slave::ContainerClass_Name(config.container_class());
  }
  if (config.has_container_info()) {
    const ContainerInfo& info = config.container_info();
    JSON::Object container;
    container.values["type"] = ContainerInfo::Type_Name(info.type());
    if (info.has_hostname()) {
      container.values["hostname"] = info.hostname();
    }
    container.values["network_infos"] = networkInfosJson(info.network_infos());
    object.values["container_info"] = container;
  }
  if (config.has_rootfs()) {
    object.values["rootfs"] = config.rootfs();
  }
  return stringify(object);
}

// ContainerState as the C ABI reads it: the ID and the networks from
// executor_info.container (top level) or container_info (nested).
JSON::Object containerStateJson(const ContainerState& state)
{
  JSON::Object object;
  object.values["container_id"] = JSON::protobuf(state.container_id());
  if (state.has_executor_info() && state.executor_info().has_container()) {
    object.values["network_infos"] =
      networkInfosJson(state.executor_info().container().network_infos());
  } else if (state.has_container_info()) {
    object.values["network_infos"] =
      networkInfosJson(state.container_info().network_infos());
  }
  return object;
}

// The member `key` of `object` if it has type T. Plain map lookups rather
// than JSON::Object::find: no key here is a dotted path, and GCC 12 at -O2
// reports a maybe-uninitialized false positive inside find's subscript
// handling, which would break -Werror builds of this file.
template <typename T>
Option<T> member(const JSON::Object& object, const std::string& key)
{
  std::map<std::string, JSON::Value>::const_iterator entry = object.values.find(key);
  if (entry == object.values.end() || !entry->second.is<T>()) {
    return None();
  }
  return entry->second.as<T>();
}

Try<Option<ContainerLaunchInfo>> launchInfoFromJson(const std::string& text)
{
  Try<JSON::Value> value = JSON::parse(text);
  if (value.isError()) {
    return Error("Invalid launch info from the rcni isolator: " + value.error());
  }
  if (value->is<JSON::Null>()) {
    return None();
  }
  if (!value->is<JSON::Object>()) {
    return Error("Invalid launch info from the rcni isolator: not an object: " + text);
  }
  const JSON::Object& object = value->as<JSON::Object>();

  ContainerLaunchInfo launchInfo;
  Option<JSON::Array> environment = member<JSON::Array>(object, "environment");
  if (environment.isSome()) {
    foreach (const JSON::Value& pair, environment->values) {
      if (!pair.is<JSON::Array>() || pair.as<JSON::Array>().values.size() != 2 ||
          !pair.as<JSON::Array>().values[0].is<JSON::String>() ||
          !pair.as<JSON::Array>().values[1].is<JSON::String>()) {
        return Error(
            "Invalid launch info from the rcni isolator: an environment entry is not"
            " [name, value]: " + text);
      }
      const std::vector<JSON::Value>& nameValue = pair.as<JSON::Array>().values;
      mesos::Environment::Variable* variable =
        launchInfo.mutable_environment()->add_variables();
      variable->set_name(nameValue[0].as<JSON::String>().value);
      variable->set_value(nameValue[1].as<JSON::String>().value);
    }
  }

  const int kinds[] = {CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUTS};
  Option<JSON::Number> cloneFlags = member<JSON::Number>(object, "clone_flags");
  Option<JSON::Number> enterFlags = member<JSON::Number>(object, "enter_flags");
  for (int kind : kinds) {
    if (cloneFlags.isSome() && (cloneFlags->as<int64_t>() & kind) != 0) {
      launchInfo.add_clone_namespaces(kind);
    }
    if (enterFlags.isSome() && (enterFlags->as<int64_t>() & kind) != 0) {
      launchInfo.add_enter_namespaces(kind);
    }
  }
  return launchInfo;
}

Try<Nothing> nothing(const std::string&)
{
  return Nothing();
}

Try<ResourceStatistics> statisticsFromJson(const std::string& text)
{
  Try<JSON::Object> object = JSON::parse<JSON::Object>(text);
  if (object.isError()) {
    return Error("Invalid usage from the rcni isolator: " + object.error());
  }
  ResourceStatistics statistics;
  // A required field the isolator does not own.
  statistics.set_timestamp(process::Clock::now().secs());
  const std::vector<std::pair<std::string, void (ResourceStatistics::*)(uint64_t)>> fields = {
    {"net_rx_packets", &ResourceStatistics::set_net_rx_packets},
    {"net_rx_bytes", &ResourceStatistics::set_net_rx_bytes},
    {"net_rx_errors", &ResourceStatistics::set_net_rx_errors},
    {"net_rx_dropped", &ResourceStatistics::set_net_rx_dropped},
    {"net_tx_packets", &ResourceStatistics::set_net_tx_packets},
    {"net_tx_bytes", &ResourceStatistics::set_net_tx_bytes},
    {"net_tx_errors", &ResourceStatistics::set_net_tx_errors},
    {"net_tx_dropped", &ResourceStatistics::set_net_tx_dropped},
  };
  for (const auto& field : fields) {
    Option<JSON::Number> value = member<JSON::Number>(object.get(), field.first);
    if (value.isSome()) {
      (statistics.*(field.second))(value->as<uint64_t>());
    }
  }
  return statistics;
}

class RcniCniIsolator : public Isolator
{
public:
  explicit RcniCniIsolator(rcni_isolator* handle) : handle(handle) {}

  ~RcniCniIsolator() override
  {
    rcni_isolator_destroy(handle);
  }

  bool supportsNesting() override { return true; }
  bool supportsStandalone() override { return false; }

  Future<Nothing> recover(
      const std::vector<ContainerState>& states,
      const hashset<ContainerID>& orphans) override
  {
    JSON::Array statesJson;
    foreach (const ContainerState& state, states) {
      statesJson.values.push_back(containerStateJson(state));
    }
    JSON::Array orphansJson;
    foreach (const ContainerID& orphan, orphans) {
      orphansJson.values.push_back(JSON::protobuf(orphan));
    }
    const std::string s = stringify(statesJson);
    const std::string o = stringify(orphansJson);
    rcni_isolator* h = handle;
    // The C ABI copies the strings before the submit returns.
    return submit<Nothing>(
        [h, &s, &o](rcni_isolator_done done, void* ctx) {
          return rcni_isolator_recover_async(h, s.c_str(), o.c_str(), done, ctx);
        },
        [](const std::string& report) -> Try<Nothing> {
          // Containers that could not be recovered stay on disk and are
          // listed here; they do not fail the agent's recovery.
          LOG(INFO) << "network/cni_rs recovered: " << report;
          return Nothing();
        });
  }

  Future<Option<ContainerLaunchInfo>> prepare(
      const ContainerID& containerId,
      const ContainerConfig& containerConfig) override
  {
    const std::string id = containerIdJson(containerId);
    const std::string config = containerConfigJson(containerConfig);
    rcni_isolator* h = handle;
    return submit<Option<ContainerLaunchInfo>>(
        [h, &id, &config](rcni_isolator_done done, void* ctx) {
          return rcni_isolator_prepare_async(h, id.c_str(), config.c_str(), done, ctx);
        },
        launchInfoFromJson);
  }

  Future<Nothing> isolate(const ContainerID& containerId, pid_t pid) override
  {
    const std::string id = containerIdJson(containerId);
    rcni_isolator* h = handle;
    return submit<Nothing>(
        [h, &id, pid](rcni_isolator_done done, void* ctx) {
          return rcni_isolator_isolate_async(h, id.c_str(), static_cast<int32_t>(pid), done, ctx);
        },
        nothing);
  }

  Future<ResourceStatistics> usage(const ContainerID& containerId) override
  {
    const std::string id = containerIdJson(containerId);
    rcni_isolator* h = handle;
    return submit<ResourceStatistics>(
        [h, &id](rcni_isolator_done done, void* ctx) {
          return rcni_isolator_usage_async(h, id.c_str(), done, ctx);
        },
        statisticsFromJson);
  }

  Future<ContainerStatus> status(const ContainerID& containerId) override
  {
    const std::string id = containerIdJson(containerId);
    rcni_isolator* h = handle;
    return submit<ContainerStatus>(
        [h, &id](rcni_isolator_done done, void* ctx) {
          return rcni_isolator_status_async(h, id.c_str(), done, ctx);
        },
        [](const std::string& status) -> Try<ContainerStatus> {
          Try<JSON::Value> json = JSON::parse(status);
          if (json.isError()) {
            return Error("Invalid status from the rcni isolator: " + json.error());
          }
          return ::protobuf::parse<ContainerStatus>(json.get());
        });
  }

  Future<Nothing> cleanup(const ContainerID& containerId) override
  {
    const std::string id = containerIdJson(containerId);
    rcni_isolator* h = handle;
    return submit<Nothing>(
        [h, &id](rcni_isolator_done done, void* ctx) {
          return rcni_isolator_cleanup_async(h, id.c_str(), done, ctx);
        },
        nothing);
  }

private:
  rcni_isolator* handle;
};

// Module parameters are the C ABI's options, every value a string
// (network_cni_config_dir, network_cni_plugins_dir, runtime_dir, work_dir,
// network_cni_root_dir_persist, network_cni_metrics, default_container_dns,
// setup_helper, plugin_timeout_ms, ...; see ../include/rcni_isolator.h).
Isolator* createIsolator(const Parameters& parameters)
{
  JSON::Object options;
  foreach (const Parameter& parameter, parameters.parameter()) {
    options.values[parameter.key()] = parameter.value();
  }
  const std::string text = stringify(options);

  rcni_isolator* handle = nullptr;
  char* out = nullptr;
  Try<std::string> created = answer(rcni_isolator_create(text.c_str(), &handle, &out), &out);
  if (created.isError()) {
    LOG(ERROR) << "Failed to create the network/cni_rs isolator: " << created.error();
    return nullptr;
  }
  LOG(INFO) << "network/cni_rs isolator created: " << created.get();
  return new RcniCniIsolator(handle);
}

bool compatible()
{
  return true;
}

} // namespace

// The symbol is the module's name and its --isolation token. It starts with
// "network/" (else the containerizer adds the built-in network/cni too) and
// contains "network/cni" (network/ports then leaves these containers alone).
// A slash is no C++ identifier, hence the quoted assembler label.
mesos::modules::Module<Isolator> rcni_network_cni_module __asm__("\"network/cni_rs\"") =
  mesos::modules::Module<Isolator>(
      MESOS_MODULE_API_VERSION,
      MESOS_VERSION,
      "rcni",
      "rcni@example.invalid",
      "The Mesos network/cni isolator in Rust (rcni), over libcni_isolator.so.",
      compatible,
      createIsolator);
