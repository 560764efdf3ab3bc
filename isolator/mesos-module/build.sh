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
#   isolator/mesos-module/build.sh --mesos-src=/tmp/mesos --mesos-gen=/tmp/mesos-gen --werror
#
# --with-mesos=DIR: a Mesos install prefix (DIR/include holds mesos/, process/,
# stout/, the generated .pb.h files and mesos/version.hpp).
# --mesos-src=DIR --mesos-gen=GEN: a Mesos source tree instead (DIR/include,
# DIR/3rdparty/stout/include, DIR/3rdparty/libprocess/include) and GEN, a dir
# with what its build generates: mesos/**/*.pb.h from protoc and
# mesos/version.hpp (scripts/check-mesos-module.sh makes both).
# --with-X=DIR adds DIR/include to the include path (Debian's libboost-dev,
# libprotobuf-dev, libgoogle-glog-dev, libgflags-dev, rapidjson-dev, picojson-dev
# and libcurl4-openssl-dev are found without flags); --include=DIR adds DIR.
# --rcni-lib is where libcni_isolator.so is (default: target/release-module;
# build it with `cargo build --profile release-module -p cni-isolator`, which
# unwinds on a panic so the C ABI can report it instead of aborting mesos-agent).
# --werror turns warnings in the module's own code into errors (Mesos and
# third-party headers are included as system headers, so theirs are not shown).
# --std=c++NN (default c++11, Mesos's own). Extra flags: CXX, CXXFLAGS, LDFLAGS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mesos=${MESOS_HOME:-}
mesos_src=
mesos_gen=
rcni_lib=$repo/target/release-module
out=$here
std=c++11
werror=
includes=()

usage() { sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
for arg in "$@"; do
  case $arg in
    --with-mesos=*) mesos=${arg#*=} ;;
    --mesos-src=*) mesos_src=${arg#*=} ;;
    --mesos-gen=*) mesos_gen=${arg#*=} ;;
    --with-protobuf=*|--with-glog=*|--with-gflags=*|--with-boost=*|--with-rapidjson=*|--with-picojson=*)
      includes+=(-isystem "${arg#*=}/include") ;;
    --include=*) includes+=(-isystem "${arg#*=}") ;;
    --rcni-lib=*) rcni_lib=${arg#*=} ;;
    --out=*) out=${arg#*=} ;;
    --std=*) std=${arg#*=} ;;
    --werror) werror=-Werror ;;
    -h|--help) usage 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; usage 2 ;;
  esac
done

mesos_includes=()
if [ -n "$mesos_src" ]; then
  [ -n "$mesos_gen" ] || { echo "build.sh: --mesos-src needs --mesos-gen (the generated .pb.h and version.hpp)" >&2; exit 2; }
  [ -f "$mesos_src/include/mesos/module/isolator.hpp" ] ||
    { echo "build.sh: $mesos_src is no Mesos source tree (include/mesos/module/isolator.hpp)" >&2; exit 1; }
  [ -f "$mesos_gen/mesos/version.hpp" ] && [ -f "$mesos_gen/mesos/mesos.pb.h" ] ||
    { echo "build.sh: no mesos/version.hpp or mesos/mesos.pb.h in $mesos_gen" >&2; exit 1; }
  mesos_includes=(-isystem "$mesos_gen" -isystem "$mesos_src/include"
    -isystem "$mesos_src/3rdparty/stout/include" -isystem "$mesos_src/3rdparty/libprocess/include")
else
  [ -n "$mesos" ] || { echo "build.sh: give --with-mesos=DIR or MESOS_HOME (the Mesos install prefix), or --mesos-src and --mesos-gen" >&2; exit 2; }
  [ -f "$mesos/include/mesos/module/isolator.hpp" ] ||
    { echo "build.sh: no Mesos headers in $mesos/include (mesos/module/isolator.hpp)" >&2; exit 1; }
  mesos_includes=(-isystem "$mesos/include")
fi
[ -f "$rcni_lib/libcni_isolator.so" ] ||
  { echo "build.sh: no libcni_isolator.so in $rcni_lib (cargo build --profile release-module -p cni-isolator)" >&2; exit 1; }
rcni_lib=$(cd "$rcni_lib" && pwd)

mkdir -p "$out"
set -x
# Undefined symbols (libmesos's protobuf classes and libprocess, protobuf, glog)
# are resolved by the agent that loads the module: no -Wl,--no-undefined. The
# rpath looks next to the module first, then in --rcni-lib.
# shellcheck disable=SC2086,SC2016
${CXX:-g++} -std="$std" -O2 -fPIC -shared -Wall -Wextra $werror \
  -I"$repo/isolator/include" "${mesos_includes[@]}" ${includes[@]+"${includes[@]}"} \
  ${CXXFLAGS:-} \
  "$here/rcni_isolator_module.cpp" \
  -o "$out/libmesos_rcni_isolator.so" \
  -L"$rcni_lib" -Wl,-rpath,'$ORIGIN'":$rcni_lib" -lcni_isolator -lpthread ${LDFLAGS:-}
{ set +x; } 2>/dev/null
nm -D --defined-only "$out/libmesos_rcni_isolator.so" | grep -E ' [BDG] network/cni_rs$' >/dev/null ||
  { echo "build.sh: the module symbol network/cni_rs is missing" >&2; exit 1; }
echo "$out/libmesos_rcni_isolator.so"
