#!/usr/bin/env bash
# Builds the plugin binaries for installation and benchmarks: release
# profile, statically linked.
#
#   scripts/build-release.sh          build; print the directory holding the binaries
#   scripts/build-release.sh --dir    only print that directory (what a build would use)
#
# Why static: a plugin is exec'd once per container and verb, so process
# start is a large share of its cost. Static linking skips the dynamic
# loader (libc, libgcc_s, relocations): measured ~0.3 ms less per exec.
#
# Why musl when its Rust target is installed (or can be, through rustup):
# glibc's start-up probes the CPU with a few dozen CPUID instructions, and
# each one traps to the hypervisor in a VM (about 8 us here): 0.5-0.7 ms of
# every exec, twice on a bridge ADD's critical path (bridge, then its IPAM
# plugin). musl's start-up does none of that. Without the musl target the
# build falls back to glibc with crt-static. RCNI_TARGET=<triple> forces one.
set -euo pipefail
cd "$(dirname "$0")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
musl=${host%-gnu}-musl

pick_target() {
  if [ -n "${RCNI_TARGET:-}" ]; then echo "$RCNI_TARGET"; return; fi
  [ "$musl" != "$host" ] || { echo "$host"; return; }
  if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then echo "$musl"; return; fi
  echo "$host"
}

if [ "${1:-}" = --dir ]; then
  echo "$PWD/target/$(pick_target)/release"
  exit 0
fi

if [ -z "${RCNI_TARGET:-}" ] && [ "$musl" != "$host" ] &&
   ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  # Best effort: offline or without rustup this fails and glibc is used.
  rustup target add "$musl" >&2 2>/dev/null || echo "build-release: no $musl target, building for $host (glibc, static)" >&2
fi
target=$(pick_target)
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" \
  -p loopback -p host-local -p bridge -p portmap -p mesos-cni-port-mapper >&2
echo "$PWD/target/$target/release"
