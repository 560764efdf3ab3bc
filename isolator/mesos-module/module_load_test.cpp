// A load test for libmesos_rcni_isolator.so without a Mesos agent: dlopen the
// module the way an agent's module manager would (the symbol named after the
// module), check the ModuleBase fields an agent verifies, then create the
// isolator through the module's create() and run recover() on an empty root
// dir, then prepare(), status() and cleanup() for a container without
// networks: every call goes through the C ABI's callback variant
// (rcni_isolator_X_async, whose completion sets the module's Promise) and
// every answer through the module's JSON conversions. Then the callback ABI
// itself, looked up through the module's dependencies (dlsym): many calls in
// flight, each callback exactly once, and destroy with calls in flight.
//
// What an agent would supply is supplied here instead: the Mesos protobuf
// classes come from the .pb.cc files protoc generates (linked in by
// scripts/check-mesos-module.sh), protobuf and glog from Debian, and the one
// libprocess function the module calls, process::Clock::now(), is a stand-in
// below. The executable is linked with -rdynamic so the module binds to them.
//
//   module_load_test MODULE.so ROOT_DIR [CONFIG_DIR PLUGINS_DIR]
//
// ROOT_DIR is an empty scratch dir for the isolator's state. The first
// isolator gets no config or plugins dir (host-network-only mode); with
// CONFIG_DIR and PLUGINS_DIR a second one prepares a container in the
// network "rcni-load-test" (see preparesNetwork()).

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include <mesos/mesos.hpp>
#include <mesos/module.hpp>
#include <mesos/module/isolator.hpp>
#include <mesos/slave/isolator.hpp>
#include <mesos/version.hpp>

#include <process/clock.hpp>
#include <process/future.hpp>

#include <stout/hashset.hpp>
#include <stout/nothing.hpp>
#include <stout/option.hpp>

// The header beside the library, relative to this file (the load test is
// compiled without the module's include path).
#include "../include/rcni_isolator.h"

namespace process {

// The module uses Clock::now() only for ResourceStatistics.timestamp in
// usage(), which this test does not call; libmesos has the real one.
Time Clock::now()
{
  return Time();
}

} // namespace process

namespace {

int failures = 0;

void check(bool ok, const std::string& what)
{
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what.c_str());
  if (!ok) {
    failures++;
  }
}

// Waits for a future completed by another thread, without libprocess (no
// Future::await here: that needs a running libprocess).
template <typename T>
bool settle(const process::Future<T>& future)
{
  for (int i = 0; i < 3000 && future.isPending(); i++) {
    usleep(10 * 1000);
  }
  return !future.isPending();
}

// With a CNI config dir defining the network "rcni-load-test" (its plugin
// only has to exist: prepare() and cleanup() of a container that was never
// isolated run no plugin): prepare() answers with the launch info of a
// container in a network of its own.
void preparesNetwork(
    const mesos::modules::Module<mesos::slave::Isolator>* module,
    const std::string& rootDir,
    const std::string& configDir,
    const std::string& pluginsDir)
{
  mesos::Parameters parameters;
  const std::pair<std::string, std::string> pairs[] = {
    {"root_dir", rootDir},
    {"network_cni_config_dir", configDir},
    {"network_cni_plugins_dir", pluginsDir},
  };
  for (const auto& pair : pairs) {
    mesos::Parameter* parameter = parameters.add_parameter();
    parameter->set_key(pair.first);
    parameter->set_value(pair.second);
  }
  mesos::slave::Isolator* isolator = module->create(parameters);
  check(isolator != nullptr, "create() with a config dir returned an isolator");
  if (isolator == nullptr) {
    return;
  }

  mesos::ContainerID containerId;
  containerId.set_value("rcni-module-load-test-net");
  mesos::slave::ContainerConfig config;
  mesos::ContainerInfo* info = config.mutable_container_info();
  info->set_type(mesos::ContainerInfo::MESOS);
  info->set_hostname("rcni-load-test");
  info->add_network_infos()->set_name("rcni-load-test");

  process::Future<Option<mesos::slave::ContainerLaunchInfo>> prepared =
    isolator->prepare(containerId, config);
  check(settle(prepared), "prepare() with a network completed");
  bool newNet = false;
  bool newUts = false;
  bool libprocessIp = false;
  prepared.onReady([&](const Option<mesos::slave::ContainerLaunchInfo>& launch) {
    if (launch.isNone()) {
      return;
    }
    for (int kind : launch->clone_namespaces()) {
      newNet = newNet || kind == CLONE_NEWNET;
      newUts = newUts || kind == CLONE_NEWUTS;
    }
    for (const mesos::Environment::Variable& variable : launch->environment().variables()) {
      libprocessIp = libprocessIp ||
        (variable.name() == "LIBPROCESS_IP" && variable.value() == "0.0.0.0");
    }
  });
  check(
      prepared.isReady() && newNet && newUts,
      "prepare() clones a network and a UTS namespace" +
        (prepared.isFailed() ? ": " + prepared.failure() : std::string()));
  check(libprocessIp, "prepare() sets LIBPROCESS_IP=0.0.0.0");

  process::Future<Nothing> cleaned = isolator->cleanup(containerId);
  check(settle(cleaned), "cleanup() after prepare() completed");
  check(
      cleaned.isReady(),
      "cleanup() after prepare() succeeded" +
        (cleaned.isFailed() ? ": " + cleaned.failure() : std::string()));
  delete isolator;
}

// The callback ABI without the module: the entry points the module's
// libcni_isolator.so exports, found through the module's handle.
struct CallbackAbi
{
  decltype(&rcni_isolator_create) create;
  decltype(&rcni_isolator_destroy) destroy;
  decltype(&rcni_isolator_free_string) freeString;
  decltype(&rcni_isolator_status_async) statusAsync;
  decltype(&rcni_isolator_prepare_async) prepareAsync;
};

// Counts the completions of one call each: answers[i] must end at 1.
struct Completions
{
  CallbackAbi* abi;
  std::atomic<int> answers[40];
  std::atomic<int> codes[40];
  std::atomic<int> total{0};
};

struct CallContext
{
  Completions* completions;
  int index;
};

void completed(void* ctx, int32_t code, char* out)
{
  CallContext* call = static_cast<CallContext*>(ctx);
  call->completions->answers[call->index]++;
  call->completions->codes[call->index] = code;
  call->completions->abi->freeString(out);
  call->completions->total++;
  delete call;
}

void callbackAbi(void* library, const std::string& rootDir)
{
  CallbackAbi abi;
  abi.create = reinterpret_cast<decltype(abi.create)>(dlsym(library, "rcni_isolator_create"));
  abi.destroy = reinterpret_cast<decltype(abi.destroy)>(dlsym(library, "rcni_isolator_destroy"));
  abi.freeString =
    reinterpret_cast<decltype(abi.freeString)>(dlsym(library, "rcni_isolator_free_string"));
  abi.statusAsync =
    reinterpret_cast<decltype(abi.statusAsync)>(dlsym(library, "rcni_isolator_status_async"));
  abi.prepareAsync =
    reinterpret_cast<decltype(abi.prepareAsync)>(dlsym(library, "rcni_isolator_prepare_async"));
  check(
      abi.create != nullptr && abi.destroy != nullptr && abi.freeString != nullptr &&
        abi.statusAsync != nullptr && abi.prepareAsync != nullptr,
      "the callback ABI's symbols are found through the module");
  if (abi.create == nullptr || abi.destroy == nullptr || abi.freeString == nullptr ||
      abi.statusAsync == nullptr || abi.prepareAsync == nullptr) {
    return;
  }

  const std::string options = "{\"root_dir\":\"" + rootDir + "\"}";
  rcni_isolator* handle = nullptr;
  char* out = nullptr;
  check(abi.create(options.c_str(), &handle, &out) == RCNI_OK, "rcni_isolator_create");
  abi.freeString(out);
  if (handle == nullptr) {
    return;
  }

  Completions completions;
  completions.abi = &abi;
  for (int i = 0; i < 40; i++) {
    completions.answers[i] = 0;
    completions.codes[i] = -1;
  }
  // 20 calls in flight at once; a bad argument is answered through the callback.
  bool submitted = true;
  for (int i = 0; i < 20; i++) {
    const int32_t code = i % 2 == 0
      ? abi.statusAsync(handle, "\"rcni-abi\"", completed, new CallContext{&completions, i})
      : abi.prepareAsync(handle, "\"rcni-abi\"", "{not json", completed, new CallContext{&completions, i});
    submitted = submitted && code == RCNI_OK;
  }
  check(submitted, "20 _async calls submitted");
  check(
      abi.statusAsync(handle, "\"rcni-abi\"", nullptr, nullptr) == RCNI_ERR_ARGUMENT,
      "a NULL callback is refused at the submit");
  for (int i = 0; i < 3000 && completions.total < 20; i++) {
    usleep(1000);
  }
  bool once = true;
  bool codes = true;
  for (int i = 0; i < 20; i++) {
    once = once && completions.answers[i] == 1;
    codes = codes && completions.codes[i] == (i % 2 == 0 ? RCNI_OK : RCNI_ERR_ARGUMENT);
  }
  check(once, "every callback called exactly once");
  check(codes, "status answers RCNI_OK, a bad config RCNI_ERR_ARGUMENT");

  // Destroy with calls in flight: it returns after their callbacks.
  for (int i = 20; i < 40; i++) {
    abi.statusAsync(handle, "\"rcni-abi\"", completed, new CallContext{&completions, i});
  }
  abi.destroy(handle);
  bool after = true;
  for (int i = 20; i < 40; i++) {
    after = after && completions.answers[i] == 1;
  }
  check(after, "destroy with 20 calls in flight returned after each callback ran once");
}

} // namespace

int main(int argc, char** argv)
{
  if (argc != 3 && argc != 5) {
    std::fprintf(stderr, "usage: %s MODULE.so ROOT_DIR [CONFIG_DIR PLUGINS_DIR]\n", argv[0]);
    return 2;
  }
  const char* const name = "network/cni_rs";

  void* library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    std::fprintf(stderr, "dlopen %s: %s\n", argv[1], dlerror());
    return 1;
  }
  void* symbol = dlsym(library, name);
  check(symbol != nullptr, std::string("dlsym(\"") + name + "\")");
  if (symbol == nullptr) {
    return 1;
  }

  const mesos::modules::ModuleBase* base =
    static_cast<const mesos::modules::ModuleBase*>(symbol);
  check(
      base->moduleApiVersion != nullptr &&
        std::strcmp(base->moduleApiVersion, MESOS_MODULE_API_VERSION) == 0,
      std::string("moduleApiVersion is ") + MESOS_MODULE_API_VERSION);
  check(
      base->mesosVersion != nullptr && std::strcmp(base->mesosVersion, MESOS_VERSION) == 0,
      std::string("mesosVersion is ") + MESOS_VERSION + " (" +
        (base->mesosVersion != nullptr ? base->mesosVersion : "null") + ")");
  check(
      base->kind != nullptr && std::strcmp(base->kind, "Isolator") == 0,
      "kind is Isolator");
  check(
      base->authorName != nullptr && base->authorEmail != nullptr &&
        base->description != nullptr,
      "author and description are set");
  check(base->compatible != nullptr && base->compatible(), "compatible() is true");

  const mesos::modules::Module<mesos::slave::Isolator>* module =
    static_cast<const mesos::modules::Module<mesos::slave::Isolator>*>(symbol);
  check(module->create != nullptr, "create is set");
  if (failures > 0 || module->create == nullptr) {
    return 1;
  }

  mesos::Parameters parameters;
  mesos::Parameter* root = parameters.add_parameter();
  root->set_key("root_dir");
  root->set_value(argv[2]);
  mesos::slave::Isolator* isolator = module->create(parameters);
  check(isolator != nullptr, "create() returned an isolator");
  if (isolator == nullptr) {
    return 1;
  }
  check(isolator->supportsNesting(), "supportsNesting()");
  check(!isolator->supportsStandalone(), "!supportsStandalone()");

  process::Future<Nothing> recovered =
    isolator->recover({}, hashset<mesos::ContainerID>());
  check(settle(recovered), "recover() completed");
  check(
      recovered.isReady(),
      "recover() of an empty root dir succeeded" +
        (recovered.isFailed() ? ": " + recovered.failure() : std::string()));

  mesos::ContainerID containerId;
  containerId.set_value("rcni-module-load-test");
  mesos::slave::ContainerConfig config;
  config.mutable_container_info()->set_type(mesos::ContainerInfo::MESOS);

  process::Future<Option<mesos::slave::ContainerLaunchInfo>> prepared =
    isolator->prepare(containerId, config);
  check(settle(prepared), "prepare() completed");
  // onReady() rather than get(): get() may await, which needs libprocess.
  bool none = false;
  prepared.onReady([&none](const Option<mesos::slave::ContainerLaunchInfo>& info) {
    none = info.isNone();
  });
  check(
      prepared.isReady() && none,
      "prepare() of a container without networks is None (host network)" +
        (prepared.isFailed() ? ": " + prepared.failure() : std::string()));

  process::Future<mesos::ContainerStatus> status = isolator->status(containerId);
  check(settle(status), "status() completed");
  bool noNetworks = false;
  status.onReady([&noNetworks](const mesos::ContainerStatus& s) {
    noNetworks = s.network_infos_size() == 0;
  });
  check(
      status.isReady() && noNetworks,
      "status() of a host-network container has no network_infos" +
        (status.isFailed() ? ": " + status.failure() : std::string()));

  process::Future<Nothing> cleaned = isolator->cleanup(containerId);
  check(settle(cleaned), "cleanup() completed");
  check(
      cleaned.isReady(),
      "cleanup() succeeded" + (cleaned.isFailed() ? ": " + cleaned.failure() : std::string()));

  if (argc == 5) {
    delete isolator;
    preparesNetwork(module, argv[2], argv[3], argv[4]);
  } else {
    delete isolator;
  }
  callbackAbi(library, argv[2]);
  std::printf("%s\n", failures == 0 ? "PASS" : "FAIL");
  return failures == 0 ? 0 : 1;
}
