#!/usr/bin/env bash
# The test command: style, lints, unit tests and root integration tests.
# Passes by itself on a fresh Debian 12 machine as root: it installs what the
# tests need when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v iptables >/dev/null || need_pkgs+=(iptables)
[ -x /usr/lib/cni/loopback ] || need_pkgs+=(containernetworking-plugins)
[ -x /usr/bin/time ] || need_pkgs+=(time)
command -v podman >/dev/null || need_pkgs+=(podman)        # scripts/e2e (issue 7)
command -v runc >/dev/null || need_pkgs+=(runc)            # scripts/e2e (issue 7)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static) # scripts/e2e (issue 7)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "== installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing ${need_pkgs[*]} and not root: root-only tests will be skipped" >&2
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build (debug binaries for the integration tests)"
cargo build --workspace --locked

echo "== tests (unit and integration)"
# Integration tests exec the binaries built above; they create their own
# uniquely named namespaces and remove them, even on panic.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

# --- e2e (issue 7): install.sh, the Debian package, Podman end to end -------
./scripts/e2e/run.sh
# --- end e2e ------------------------------------------------------------------

left=$(ip netns list 2>/dev/null | grep -c '^rcni-' || true)
if [ "$left" -ne 0 ]; then
  echo "tests left $left rcni-* network namespaces behind:" >&2
  ip netns list | grep '^rcni-' >&2
  exit 1
fi
echo "== fuzz every parser briefly (scripts/fuzz.sh)"
./scripts/fuzz.sh "${RCNI_FUZZ_SECONDS:-10}"

echo "== all tests passed"
