#!/usr/bin/env bash
# Builds the Mesos module libmesos_rcni_isolator.so (module name network/cni_rs)
# over rcni's C ABI. Needs the headers of the Mesos the agent runs (the exact
# version: Mesos checks it when loading the module) and the protobuf/glog
# headers that Mesos was built with (a module built against other protobuf
# headers compiles but may not load; see README.md).
#
#   isolator/mesos-module/build.sh --with-mesos=/usr/local            # or MESOS_HOME=...
#   isolator/mesos-module/build.sh --with-mesos=/opt/mesos \
#       --with-protobuf=/opt/mesos/lib/mesos/3rdparty --with-glog=/opt/mesos/lib/mesos/3rdparty \
#       --with-boost=/usr --rcni-lib=target/release-module --out=/opt/rcni/lib
#
# --with-X=DIR adds DIR/include to the include path (Debian's libboost-dev,
# libprotobuf-dev, libgoogle-glog-dev, libgflags-dev, rapidjson-dev, picojson-dev
# and libcurl4-openssl-dev are found without flags). --rcni-lib is where
# libcni_isolator.so is (default: target/release-module; build it with
# `cargo build --profile release-module -p cni-isolator`, which unwinds on a
# panic so the C ABI can report it instead of aborting mesos-agent). Extra flags: CXX, CXXFLAGS, LDFLAGS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mesos=${MESOS_HOME:-}
rcni_lib=$repo/target/release-module
out=$here
std=c++11
includes=()

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
for arg in "$@"; do
  case $arg in
    --with-mesos=*) mesos=${arg#*=} ;;
    --with-protobuf=*|--with-glog=*|--with-gflags=*|--with-boost=*|--with-rapidjson=*|--with-picojson=*)
      includes+=("-I${arg#*=}/include") ;;
    --include=*) includes+=("-I${arg#*=}") ;;
    --rcni-lib=*) rcni_lib=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    --std=*) std=${arg#*=} ;;
    -h|--help) usage 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; usage 2 ;;
  esac
done

[ -n "$mesos" ] || { echo "build.sh: give --with-mesos=DIR or MESOS_HOME (the Mesos install prefix)" >&2; exit 2; }
[ -f "$mesos/include/mesos/module/isolator.hpp" ] ||
  { echo "build.sh: no Mesos headers in $mesos/include (mesos/module/isolator.hpp)" >&2; exit 1; }
[ -f "$rcni_lib/libcni_isolator.so" ] ||
  { echo "build.sh: no libcni_isolator.so in $rcni_lib (cargo build --profile release-module -p cni-isolator)" >&2; exit 1; }
rcni_lib=$(cd "$rcni_lib" && pwd)

mkdir -p "$out"
set -x
# Undefined symbols (libmesos's protobuf classes, protobuf, glog) are resolved by
# the agent that loads the module: no -Wl,--no-undefined.
${CXX:-g++} -std="$std" -O2 -fPIC -shared -Wall \
  -I"$mesos/include" "${includes[@]}" -I"$repo/isolator/include" \
  ${CXXFLAGS:-} \
  "$here/rcni_isolator_module.cpp" \
  -o "$out/libmesos_rcni_isolator.so" \
  -L"$rcni_lib" -Wl,-rpath,"$rcni_lib" -lcni_isolator -lpthread ${LDFLAGS:-}
{ set +x; } 2>/dev/null
nm -D "$out/libmesos_rcni_isolator.so" | grep -F 'network/cni_rs' >/dev/null ||
  { echo "build.sh: the module symbol network/cni_rs is missing" >&2; exit 1; }
echo "$out/libmesos_rcni_isolator.so"
