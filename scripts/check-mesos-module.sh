#!/usr/bin/env bash
# Compiles the Mesos module (isolator/mesos-module) against the headers of a
# Mesos source tree and checks what can be checked without a Mesos agent.
# Not part of CI or scripts/test.sh: it needs a Mesos checkout, which this
# repository does not contain and CI cannot fetch.
#
#   scripts/check-mesos-module.sh --mesos-src=/path/to/mesos [--work=DIR] [--no-load-test]
#
# Steps (all output under --work, default a new temp dir; nothing is written
# into the Mesos tree or this repository except target/):
#  1. protoc (the system's, e.g. Debian's protobuf-compiler) generates the C++
#     code of every include/mesos/**/*.proto into WORK/gen, and
#     WORK/gen/mesos/version.hpp is written with the version in configure.ac
#     (a Mesos build generates both; a source tree has neither).
#  2. cargo build --profile release-module -p cni-isolator (libcni_isolator.so).
#  3. isolator/mesos-module/build.sh --werror against the tree's include/,
#     3rdparty/stout/include, 3rdparty/libprocess/include and WORK/gen.
#  4. nm: the module defines the symbol "network/cni_rs", and every symbol it
#     leaves undefined is either in libcni_isolator.so, the C/C++ runtime,
#     protobuf or glog, or is a mesos::/process:: symbol (libmesos's).
#  5. Load test (unless --no-load-test): module_load_test.cpp, linked with the
#     generated protobuf classes of mesos.proto and its neighbours (not
#     libmesos), dlopens the module, checks the ModuleBase fields and the Mesos
#     version, and runs create/recover/prepare/status/cleanup. Step 5 needs no
#     root; it writes only into WORK.
# Needs: g++, protoc and the protobuf, glog, gflags, boost, rapidjson,
# picojson, curl, apr, svn and zlib development headers (on Debian:
#   apt-get install g++ protobuf-compiler libprotobuf-dev libgoogle-glog-dev \
#     libgflags-dev libboost-dev rapidjson-dev picojson-dev libcurl4-openssl-dev \
#     libapr1-dev libsvn-dev zlib1g-dev).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
module_dir=$repo/isolator/mesos-module
src=
work=
load_test=1

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --mesos-src=*) src=${1#*=} ;;
    --mesos-src) shift; src=${1:-} ;;
    --work=*) work=${1#*=} ;;
    --work) shift; work=${1:-} ;;
    --no-load-test) load_test= ;;
    -h|--help) usage 0 ;;
    *) echo "check-mesos-module: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done
[ -n "$src" ] || { echo "check-mesos-module: give --mesos-src=DIR (a Mesos source tree)" >&2; exit 2; }
src=$(cd "$src" && pwd)
[ -f "$src/include/mesos/module/isolator.hpp" ] && [ -f "$src/configure.ac" ] ||
  { echo "check-mesos-module: $src is not a Mesos source tree" >&2; exit 1; }
for tool in g++ protoc nm c++filt cargo; do
  command -v "$tool" >/dev/null || { echo "check-mesos-module: $tool not found" >&2; exit 1; }
done
[ -n "$work" ] || work=$(mktemp -d /tmp/rcni-mesos-module.XXXXXX)
mkdir -p "$work"
work=$(cd "$work" && pwd)
gen=$work/gen

step() { printf '\n== %s\n' "$*"; }

# 1. Generated headers.
version=$(sed -n 's/^AC_INIT(\[mesos\], *\[\([0-9][0-9.]*\)\]).*/\1/p' "$src/configure.ac")
[ -n "$version" ] || { echo "check-mesos-module: no version in $src/configure.ac" >&2; exit 1; }
commit=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo "not a git checkout")
step "Mesos $version ($commit), $(protoc --version), $(g++ --version | head -1)"
rm -rf "$gen"
mkdir -p "$gen/mesos"
(cd "$src/include" && find mesos -name '*.proto' -print0 | sort -z |
  xargs -0 protoc -I. --cpp_out="$gen")
IFS=. read -r major minor patch <<<"$version"
cat >"$gen/mesos/version.hpp" <<EOF
// Written by rcni's scripts/check-mesos-module.sh for Mesos $version (a Mesos
// build generates this file from include/mesos/version.hpp.in).
#ifndef __MESOS_VERSION_HPP__
#define __MESOS_VERSION_HPP__
#define MESOS_VERSION "$version"
#define MESOS_MAJOR_VERSION "$major"
#define MESOS_MAJOR_VERSION_NUM $major
#define MESOS_MINOR_VERSION "$minor"
#define MESOS_MINOR_VERSION_NUM $minor
#define MESOS_PATCH_VERSION "${patch:-0}"
#define MESOS_PATCH_VERSION_NUM ${patch:-0}
#endif
EOF
echo "$(find "$gen" -name '*.pb.h' | wc -l) protobuf headers and mesos/version.hpp in $gen"

# 2. The C ABI library.
step "cargo build --profile release-module -p cni-isolator"
(cd "$repo" && cargo build --profile release-module -p cni-isolator)
rcni_lib=$repo/target/release-module

# 3. The module.
step "build.sh"
"$module_dir/build.sh" --mesos-src="$src" --mesos-gen="$gen" --werror \
  --rcni-lib="$rcni_lib" --out="$work/out"
module=$work/out/libmesos_rcni_isolator.so

# 4. Symbols.
step "symbols of $module"
nm -D --defined-only "$module" | grep -E ' [BDGR] network/cni_rs$' ||
  { echo "check-mesos-module: the module does not define network/cni_rs" >&2; exit 1; }
# Where each undefined symbol may come from: the libraries the module needs
# (libcni_isolator.so, the C/C++ runtime), protobuf and glog (which libmesos
# loads), else libmesos itself (mesos:: and process:: only).
# ldd lists the first group (and the dynamic loader), g++ finds the others.
mapfile -t providers < <(ldd "$module" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
for lib in libprotobuf.so libglog.so; do
  path=$(g++ -print-file-name="$lib")
  [ -e "$path" ] && providers+=("$(readlink -f "$path")")
done
printf '%s\n' "${providers[@]}" | grep -q '/libcni_isolator\.so$' ||
  { echo "check-mesos-module: ldd does not find libcni_isolator.so for the module" >&2; exit 1; }
for p in "${providers[@]}"; do
  nm -D --defined-only "$p" | awk '{print $NF}' | sed 's/@.*//'
done | sort -u >"$work/provided.txt"
nm -D --undefined-only "$module" | awk '$1 == "U" {print $2}' | sed 's/@.*//' | sort -u \
  >"$work/undefined.txt"
comm -23 "$work/undefined.txt" "$work/provided.txt" >"$work/from-libmesos.txt"
c++filt <"$work/from-libmesos.txt" >"$work/from-libmesos.demangled.txt"
unexpected=$(grep -Ev '^((typeinfo|typeinfo name|vtable|VTT) for )?(mesos|process)::|^(mesos|process)::' \
  "$work/from-libmesos.demangled.txt" | grep -Ev '^[^(]* (mesos|process)::' || true)
echo "undefined: $(wc -l <"$work/undefined.txt"), of which left for libmesos: $(wc -l <"$work/from-libmesos.txt") (list: $work/from-libmesos.demangled.txt)"
if [ -n "$unexpected" ]; then
  echo "check-mesos-module: undefined symbols no known library provides:" >&2
  echo "$unexpected" >&2
  exit 1
fi
nm -D --undefined-only "$module" | grep -q ' rcni_isolator_create$' ||
  { echo "check-mesos-module: the module does not call the C ABI?" >&2; exit 1; }

# 5. Load test.
if [ -n "$load_test" ]; then
  step "load test"
  pbdir=$work/pb
  mkdir -p "$pbdir"
  objects=()
  for proto in mesos/mesos mesos/appc/spec mesos/docker/v1 mesos/seccomp/seccomp mesos/slave/containerizer; do
    object=$pbdir/$(echo "$proto" | tr / _).o
    g++ -std=c++11 -O0 -fPIC -w -I"$gen" -c "$gen/$proto.pb.cc" -o "$object" &
    objects+=("$object")
  done
  wait
  g++ -shared -o "$pbdir/libmesos_protos.so" "${objects[@]}" -lprotobuf
  g++ -std=c++11 -O1 -Wall -Wextra -Werror \
    -isystem "$gen" -isystem "$src/include" \
    -isystem "$src/3rdparty/stout/include" -isystem "$src/3rdparty/libprocess/include" \
    "$module_dir/module_load_test.cpp" -o "$work/module_load_test" -rdynamic \
    -L"$pbdir" -Wl,-rpath,"$pbdir" -Wl,--no-as-needed -lmesos_protos -lprotobuf -lglog -ldl -lpthread
  rm -rf "$work/load"
  mkdir -p "$work/load/root" "$work/load/conf" "$work/load/plugins"
  printf '#!/bin/sh\nexit 0\n' >"$work/load/plugins/rcni-load-test-noop"
  chmod +x "$work/load/plugins/rcni-load-test-noop"
  echo '{"cniVersion":"1.0.0","name":"rcni-load-test","type":"rcni-load-test-noop"}' \
    >"$work/load/conf/10-rcni-load-test.conf"
  "$work/module_load_test" "$module" "$work/load/root" "$work/load/conf" "$work/load/plugins"
fi

step "OK: $module (Mesos $version)"
