#!/usr/bin/env bash
# Installs rcni's plugins into a CNI bin dir (default /opt/cni/bin).
#
#   scripts/install.sh [--force] [--no-build] [DIR]
#
# A binary of the same name that is not rcni's (for example Go's bridge) is
# left alone unless --force is given; with --force it is kept as NAME.orig
# (the first backup is never overwritten), so switching back is one mv.
set -euo pipefail
cd "$(dirname "$0")/.."

force=0 build=1 dir=/opt/cni/bin
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) dir=$1 ;;
  esac
  shift
done

plugins=(loopback host-local bridge portmap mesos-cni-port-mapper)
if [ "$build" -eq 1 ]; then
  src=$(./scripts/build-release.sh)
else
  src=target/$(rustc -vV | sed -n 's/^host: //p')/release
fi
mkdir -p "$dir"

# Every rcni plugin carries this marker in its "about" text.
is_ours() { grep -aq 'rcni CNI plugin' "$1" 2>/dev/null; }

installed=0 skipped=0
for p in "${plugins[@]}"; do
  [ -x "$src/$p" ] || continue
  dst="$dir/$p"
  if [ -e "$dst" ] && ! is_ours "$dst"; then
    if [ "$force" -eq 0 ]; then
      echo "skip $p: $dst is not rcni's (use --force to replace it; it will be kept as $p.orig)" >&2
      skipped=$((skipped + 1))
      continue
    fi
    [ -e "$dst.orig" ] || cp -p "$dst" "$dst.orig"
  fi
  # Copy then rename: a runtime exec'ing the plugin meanwhile never sees a
  # half-written file (and never gets "text file busy").
  install -m 0755 "$src/$p" "$dst.rcni-new"
  mv -f "$dst.rcni-new" "$dst"
  echo "installed $dst"
  installed=$((installed + 1))
done
echo "$installed installed, $skipped skipped into $dir"
[ "$skipped" -eq 0 ]
