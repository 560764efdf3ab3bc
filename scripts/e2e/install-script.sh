#!/usr/bin/env bash
# Exercises scripts/install.sh in a temporary bin dir: a fresh install, a
# second install over our own, a foreign binary skipped without --force and
# kept as NAME.orig with it, a second foreign one kept as NAME.orig.1, and
# --restore putting the original back. Needs no root.
#
#   scripts/e2e/install-script.sh [PLUGIN_DIR]   (default: scripts/build-release.sh --dir)
set -euo pipefail
cd "$(dirname "$0")/../.."
src=${1:-$(./scripts/build-release.sh --dir)}
plugins=(loopback host-local bridge portmap mesos-cni-port-mapper)

T=$(mktemp -d /tmp/rcni-install-e2e.XXXXXX)
trap 'rm -rf "$T"' EXIT
dir=$T/bin
fail() { echo "   FAIL: $*" >&2; exit 1; }
inst() { ./scripts/install.sh --from "$src" "$@" >"$T/out" 2>&1; }

# 1. Fresh install into a dir that does not exist yet.
inst "$dir" || fail "fresh install: $(cat "$T/out")"
for p in "${plugins[@]}"; do
  cmp -s "$src/$p" "$dir/$p" || fail "fresh install: $dir/$p differs from $src/$p"
  [ -x "$dir/$p" ] || fail "$dir/$p not executable"
done
out=$(CNI_COMMAND=VERSION "$dir/bridge" </dev/null)
grep -q '"supportedVersions"' <<<"$out" || fail "installed bridge answers VERSION with: $out"
echo "   fresh install: ${#plugins[@]} plugins, VERSION ok"

# 2. Again, over our own: replaced in place, no backup.
inst "$dir" || fail "install over our own: $(cat "$T/out")"
[ -z "$(find "$dir" -name '*.orig*' -o -name '*.rcni-new')" ] || fail "install over our own left backups/temp files: $(ls "$dir")"
echo "   install over our own: no backup, no temp file"

# 3. A foreign binary: skipped without --force (exit 1), others still installed.
printf '#!/bin/sh\necho foreign-bridge\n' >"$dir/bridge"
chmod 0755 "$dir/bridge"
cp "$dir/bridge" "$T/foreign1"
if inst "$dir"; then fail "install over a foreign bridge without --force succeeded"; fi
grep -q 'skip bridge' "$T/out" || fail "no skip message: $(cat "$T/out")"
cmp -s "$T/foreign1" "$dir/bridge" || fail "the foreign bridge was changed without --force"
[ ! -e "$dir/bridge.orig" ] || fail "a backup was made without --force"
grep -q '4 installed, 1 skipped' "$T/out" || fail "others not installed: $(cat "$T/out")"
echo "   foreign bridge without --force: skipped, untouched, exit 1"

# The Mesos port mapper has no marker text: ours is known by the checksum
# install.sh recorded, a foreign one is still left alone.
mv "$dir/mesos-cni-port-mapper" "$T/mcpm"
printf '#!/bin/sh\necho foreign-mapper\n' >"$dir/mesos-cni-port-mapper"
if inst "$dir"; then fail "install over a foreign mesos-cni-port-mapper without --force succeeded"; fi
grep -q 'skip mesos-cni-port-mapper' "$T/out" || fail "foreign mesos-cni-port-mapper not skipped: $(cat "$T/out")"
mv "$T/mcpm" "$dir/mesos-cni-port-mapper"
echo "   foreign mesos-cni-port-mapper without --force: skipped"

# 4. With --force: replaced, kept as bridge.orig; again: the backup stays.
inst --force "$dir" || fail "--force: $(cat "$T/out")"
cmp -s "$src/bridge" "$dir/bridge" || fail "--force did not install bridge"
cmp -s "$T/foreign1" "$dir/bridge.orig" || fail "--force did not keep the foreign bridge as bridge.orig"
inst --force "$dir" || fail "second --force: $(cat "$T/out")"
cmp -s "$T/foreign1" "$dir/bridge.orig" || fail "a second --force overwrote bridge.orig"
echo "   foreign bridge with --force: replaced, kept as bridge.orig (twice: backup kept)"

# 5. Another foreign bridge while bridge.orig exists: kept as bridge.orig.1.
printf '#!/bin/sh\necho foreign-bridge-2\n' >"$dir/bridge"
cp "$dir/bridge" "$T/foreign2"
inst --force "$dir" || fail "third --force: $(cat "$T/out")"
cmp -s "$T/foreign1" "$dir/bridge.orig" || fail "bridge.orig changed"
cmp -s "$T/foreign2" "$dir/bridge.orig.1" || fail "second foreign bridge not kept as bridge.orig.1"
echo "   a second foreign bridge: kept as bridge.orig.1"

# 6. --restore: the original is back, ours is gone.
./scripts/install.sh --restore "$dir" >"$T/out" 2>&1 || fail "--restore: $(cat "$T/out")"
cmp -s "$T/foreign1" "$dir/bridge" || fail "--restore did not put bridge.orig back"
[ ! -e "$dir/bridge.orig" ] || fail "bridge.orig still there after --restore"
cmp -s "$src/portmap" "$dir/portmap" || fail "--restore touched portmap, which had no backup"
echo "   --restore: bridge.orig back in place, others untouched"

# 7. Usage errors.
if ./scripts/install.sh --from "$T/nowhere" "$dir" >/dev/null 2>&1; then fail "--from a dir without plugins succeeded"; fi
echo "   install.sh: PASS"
