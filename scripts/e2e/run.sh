#!/usr/bin/env bash
# The end-to-end tests (issue 7), run by scripts/test.sh: builds the static
# release plugins (scripts/build-release.sh), then
#   install-script.sh  scripts/install.sh into a temp dir (no root needed)
#   deb.sh             the Debian package: build with cargo-deb, inspect, dpkg --root install/remove
#   podman.sh          Podman 4 (CNI backend) with these plugins, and with a broken bridge (root)
# Prints the time each step took.
set -euo pipefail
cd "$(dirname "$0")/../.."
step() {
  local name=$1 s
  shift
  s=$(date +%s.%N)
  echo "== e2e: $name"
  "$@"
  awk -v s="$s" -v e="$(date +%s.%N)" -v n="$name" 'BEGIN { printf "== e2e: %s took %.1f s\n", n, e - s }'
}
step "release build (static)" sh -c './scripts/build-release.sh >/dev/null'
src=$(./scripts/build-release.sh --dir)
step "install.sh" ./scripts/e2e/install-script.sh "$src"
if [ "$(id -u)" -ne 0 ]; then
  echo "== e2e: Debian package and podman skipped (need root)" >&2
  exit 0
fi
step "Debian package" ./scripts/e2e/deb.sh
step "podman" ./scripts/e2e/podman.sh "$src"
