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
command -v containerd >/dev/null || need_pkgs+=(containerd)  # scripts/e2e/containerd.sh
command -v jq >/dev/null || need_pkgs+=(jq)                  # scripts/e2e (leftover checks)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
command -v gcc >/dev/null || need_pkgs+=(gcc)              # isolator/tests/c_abi.rs
command -v python3 >/dev/null || need_pkgs+=(python3)      # listeners in the root tests
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
# uniquely named namespaces and remove them, even on panic. Root-only tests
# are #[ignore = "needs root"]: as root they run too, and a test that did not
# run fails this script; otherwise the ignored ones are counted as not run.
as_root=$([ "$(id -u)" -eq 0 ] && echo 1 || echo 0)
ignored=()
listed="" ran="" status=0
test_log=$(mktemp)
if cargo nextest --version >/dev/null 2>&1; then
  if [ "$as_root" -eq 1 ]; then
    ignored=(--run-ignored all)
    listed=$(cargo nextest list --workspace --locked "${ignored[@]}" --message-format oneline | wc -l)
  fi
  cargo nextest run --workspace --locked --no-fail-fast "${ignored[@]}" 2>&1 | tee "$test_log" || status=$?
  # "Summary [ 1.2s] N tests run: N passed, M skipped": the skipped ones are the ignored ones.
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$test_log" | { grep -E '[0-9]+ tests? run:' || true; } | tail -n 1)
  ran=$(grep -oE '[0-9]+ tests? run' <<<"$summary" | grep -oE '^[0-9]+' || echo 0)
  not_run=$(grep -oE '[0-9]+ skipped' <<<"$summary" | grep -oE '^[0-9]+' || echo 0)
else
  if [ "$as_root" -eq 1 ]; then ignored=(-- --include-ignored); fi
  cargo test --workspace --locked --no-fail-fast "${ignored[@]}" 2>&1 | tee "$test_log" || status=$?
  summary=$({ grep -E '^test result:' "$test_log" || true; })
  not_run=$(grep -oE '[0-9]+ ignored' <<<"$summary" | awk '{n += $1} END {print n + 0}')
fi
rm -f "$test_log"
[ "$status" -eq 0 ] || exit "$status"
if [ -z "$summary" ]; then
  echo "cannot find the test summary in the output above" >&2
  exit 1
fi
if [ "$as_root" -eq 1 ]; then
  if [ "$not_run" -ne 0 ] || { [ -n "$listed" ] && [ "$ran" -ne "$listed" ]; }; then
    echo "as root every test must run: ${listed:-?} listed, ${ran:-?} run, $not_run not run" >&2
    exit 1
  fi
else
  echo "== NOTE: $not_run root-only tests (#[ignore = \"needs root\"]) were NOT run: not root"
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
