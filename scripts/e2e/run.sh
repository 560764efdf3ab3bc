#!/usr/bin/env bash
# The end-to-end tests (issue 7), run by scripts/test.sh: builds the static
# release plugins (scripts/build-release.sh), then
#   install-script.sh  scripts/install.sh into a temp dir (no root needed)
#   deb.sh             the Debian package: build with cargo-deb, inspect, dpkg --root install/remove
#   podman.sh          Podman 4 (CNI backend) with these plugins, 3 rounds on one dirty host
#                      (port reuse, DEL from `podman container cleanup`), and with a broken bridge (root)
#   containerd.sh      a private containerd, `ctr run --cni` (go-cni, /etc/cni/net.d + /opt/cni/bin
#                      bind-mounted privately), hand-made busybox image, 3 rounds (root)
#   isolator.sh        `cni-isolator run --publish` (debug build, as scripts/test.sh builds it),
#                      3 rounds (root)
# Each runtime round checks that nothing of its removed containers is left
# (nft/iptables, host-local, CNI cache, veth, netns) and that rcni's binaries
# served every bridge/host-local/loopback/portmap call; afterwards this script
# checks that the host (links, netns, nft tables, iptables rules, mounts, the
# CNI/Podman/containerd dirs) is as it was before them.
# Prints the time each step took. Runs every runtime step even when one fails;
# exits non-zero when any failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
failed=()
step() {
  local name=$1 s rc=0
  shift
  s=$(date +%s.%N)
  echo "== e2e: $name"
  "$@" || rc=$?
  awk -v s="$s" -v e="$(date +%s.%N)" -v n="$name" -v rc=$rc 'BEGIN { printf "== e2e: %s %s, took %.1f s\n", n, rc ? "FAILED" : "passed", e - s }'
  [ $rc -eq 0 ] || failed+=("$name")
  return 0
}
step "release build (static)" sh -c './scripts/build-release.sh >/dev/null'
[ ${#failed[@]} -eq 0 ] || exit 1
src=$(./scripts/build-release.sh --dir)
step "install.sh" ./scripts/e2e/install-script.sh "$src"
if [ "$(id -u)" -ne 0 ]; then
  echo "== e2e: Debian package, podman, containerd and cni-isolator skipped (need root)" >&2
  [ ${#failed[@]} -eq 0 ] || exit 1
  exit 0
fi
step "Debian package" ./scripts/e2e/deb.sh
# The same command as scripts/test.sh's build: nothing to do after it.
step "cni-isolator build (debug)" cargo build --workspace --locked --quiet

# shellcheck source=scripts/e2e/lib.sh
. ./scripts/e2e/lib.sh
E2E_TAG=e2e
lock=/run/lock/rcni-iptables.lock
lock_before=0
[ -e $lock ] && lock_before=1
before=$(e2e_host_snapshot)

step "podman" ./scripts/e2e/podman.sh "$src"
step "containerd" ./scripts/e2e/containerd.sh "$src"
if [ -x target/debug/cni-isolator ]; then
  step "cni-isolator" ./scripts/e2e/isolator.sh "$src" "$PWD/target/debug"
else
  echo "== e2e: no target/debug/cni-isolator" >&2
  failed+=("cni-isolator")
fi

# rcni's iptables lock file, made by the plugins when there was none: removed
# when no process holds it.
if [ $lock_before = 0 ] && [ -e $lock ]; then
  held=0
  for f in /proc/[0-9]*/fd/*; do [ "$(readlink "$f" 2>/dev/null)" = $lock ] && { held=1; break; }; done
  [ $held = 0 ] && rm -f $lock && echo "== e2e: removed $lock (made by the plugins during the e2e)"
fi
after=$(e2e_host_snapshot)
if [ "$before" != "$after" ]; then
  echo "== e2e: the host is not as before the runtime tests (< before, > after):" >&2
  diff <(echo "$before") <(echo "$after") | grep '^[<>]' | sed 's/^/     /' >&2
  failed+=("host state")
else
  echo "== e2e: host as before the runtime tests (links, netns, nft tables, iptables rules, mounts, CNI/Podman/containerd dirs)"
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "== e2e: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "== e2e: all passed"
