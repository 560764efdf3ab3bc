// A Mesos isolator module over rcni's C ABI (../include/rcni_isolator.h):
// `network/cni_rs`, an Isolator that forwards every call to the Rust
// network/cni isolator in libcni_isolator.so.
//
// Each call converts the protobufs it gets to the JSON the C ABI reads (the
// JSON::protobuf shape, reduced to the fields the isolator looks at), runs
// the blocking Rust call on a thread of its own (never on a libprocess
// worker) and completes a Promise with the answer. watch() and update() keep
// Isolator's defaults (a pending future; nothing to update).
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
#include <thread>
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

// Runs `f` on a new thread and returns its result as a future: the C ABI
// blocks (plugin execs, mounts), and libprocess workers must not.
template <typename T>
Future<T> offload(const std::function<Try<T>()>& f)
{
  std::shared_ptr<Promise<T>> promise(new Promise<T>());
  Future<T> future = promise->future();
  std::thread([promise, f]() {
    Try<T> result = f();
    if (result.isError()) {
      promise->fail(result.error());
    } else {
      promise->set(result.get());
    }
  }).detach();
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
    return offload<Nothing>([h, s, o]() -> Try<Nothing> {
      char* out = nullptr;
      Try<std::string> report =
        answer(rcni_isolator_recover(h, s.c_str(), o.c_str(), &out), &out);
      if (report.isError()) {
        return Error(report.error());
      }
      // Containers that could not be recovered stay on disk and are listed
      // here; they do not fail the agent's recovery.
      LOG(INFO) << "network/cni_rs recovered: " << report.get();
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
    return offload<Option<ContainerLaunchInfo>>(
        [h, id, config]() -> Try<Option<ContainerLaunchInfo>> {
          char* out = nullptr;
          Try<std::string> launch =
            answer(rcni_isolator_prepare(h, id.c_str(), config.c_str(), &out), &out);
          if (launch.isError()) {
            return Error(launch.error());
          }
          return launchInfoFromJson(launch.get());
        });
  }

  Future<Nothing> isolate(const ContainerID& containerId, pid_t pid) override
  {
    const std::string id = containerIdJson(containerId);
    rcni_isolator* h = handle;
    return offload<Nothing>([h, id, pid]() -> Try<Nothing> {
      char* out = nullptr;
      Try<std::string> result =
        answer(rcni_isolator_isolate(h, id.c_str(), static_cast<int32_t>(pid), &out), &out);
      if (result.isError()) {
        return Error(result.error());
      }
      return Nothing();
    });
  }

  Future<ResourceStatistics> usage(const ContainerID& containerId) override
  {
    const std::string id = containerIdJson(containerId);
    rcni_isolator* h = handle;
    return offload<ResourceStatistics>([h, id]() -> Try<ResourceStatistics> {
      char* out = nullptr;
      Try<std::string> usage = answer(rcni_isolator_usage(h, id.c_str(), &out), &out);
      if (usage.isError()) {
        return Error(usage.error());
      }
      return statisticsFromJson(usage.get());
    });
  }

  Future<ContainerStatus> status(const ContainerID& containerId) override
  {
    const std::string id = containerIdJson(containerId);
    rcni_isolator* h = handle;
    return offload<ContainerStatus>([h, id]() -> Try<ContainerStatus> {
      char* out = nullptr;
      Try<std::string> status = answer(rcni_isolator_status(h, id.c_str(), &out), &out);
      if (status.isError()) {
        return Error(status.error());
      }
      Try<JSON::Value> json = JSON::parse(status.get());
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
    return offload<Nothing>([h, id]() -> Try<Nothing> {
      char* out = nullptr;
      Try<std::string> result = answer(rcni_isolator_cleanup(h, id.c_str(), &out), &out);
      if (result.isError()) {
        return Error(result.error());
      }
      return Nothing();
    });
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
