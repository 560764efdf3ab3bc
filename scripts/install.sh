#!/usr/bin/env bash
# Installs rcni's plugins into a CNI bin dir (default /opt/cni/bin).
#
#   scripts/install.sh [--force] [--no-build | --from SRC] [DIR]
#   scripts/install.sh --restore [DIR]
#
# Installs loopback, host-local, bridge, portmap and mesos-cni-port-mapper,
# built static and in release mode by scripts/build-release.sh (--no-build:
# take them from where it puts them as they are; --from SRC: from SRC).
# A binary of the same name that is not rcni's (for example Go's bridge) is
# left alone unless --force is given; with --force it is kept as NAME.orig
# (an existing, different NAME.orig is kept too, as NAME.orig.1, .2, ...),
# so switching back is one mv, or --restore: it puts every NAME.orig back
# in place of rcni's NAME.
#
# Exit status: 0 when every plugin was installed (or restored), 1 when one
# was skipped, 2 on a usage error.
set -euo pipefail
cd "$(dirname "$0")/.."

force=0 build=1 restore=0 dir=/opt/cni/bin src=""
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --no-build) build=0 ;;
    --from)
      [ $# -ge 2 ] || { echo "--from needs a directory" >&2; exit 2; }
      src=$2 build=0
      shift
      ;;
    --restore) restore=1 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) dir=$1 ;;
  esac
  shift
done

plugins=(loopback host-local bridge portmap mesos-cni-port-mapper)

# The CNI plugins carry this marker in their "about" text; the Mesos port
# mapper has no VERSION/about text, so every binary installed here is also
# recorded by checksum in DIR/.rcni-install.sha256 (sha256sum format), which
# recognises it (and older rcni builds) on the next run.
manifest=$dir/.rcni-install.sha256
is_ours() {
  [ -f "$1" ] || return 1
  grep -aq 'rcni CNI plugin' "$1" 2>/dev/null && return 0
  [ -f "$manifest" ] || return 1
  local sum
  sum=$(sha256sum <"$1" | cut -d' ' -f1)
  grep -q "^$sum  ${1##*/}\$" "$manifest"
}
record() { # name
  local sum
  sum=$(sha256sum <"$dir/$1" | cut -d' ' -f1)
  grep -qx "$sum  $1" "$manifest" 2>/dev/null || echo "$sum  $1" >>"$manifest"
}

if [ "$restore" -eq 1 ]; then
  restored=0 skipped=0
  for p in "${plugins[@]}"; do
    dst="$dir/$p"
    [ -e "$dst.orig" ] || continue
    if [ -e "$dst" ] && ! is_ours "$dst"; then
      echo "skip $p: $dst is not rcni's, leaving it and $dst.orig alone" >&2
      skipped=$((skipped + 1))
      continue
    fi
    mv -f "$dst.orig" "$dst"
    echo "restored $dst"
    restored=$((restored + 1))
  done
  echo "$restored restored, $skipped skipped in $dir"
  [ "$skipped" -eq 0 ]
  exit
fi

if [ -z "$src" ]; then
  if [ "$build" -eq 1 ]; then
    src=$(./scripts/build-release.sh)
  else
    src=$(./scripts/build-release.sh --dir)
  fi
fi
for p in "${plugins[@]}"; do
  if [ ! -x "$src/$p" ] || { [ "$p" != mesos-cni-port-mapper ] && ! grep -aq 'rcni CNI plugin' "$src/$p"; }; then
    echo "$src/$p is missing or not an rcni plugin (build with scripts/build-release.sh)" >&2
    exit 2
  fi
done
mkdir -p "$dir"

# A free backup name: NAME.orig, else NAME.orig.1, .2, ... (an identical
# backup is reused, so repeated --force runs do not pile up copies).
backup_of() {
  local b=$1.orig n=0
  while [ -e "$b" ]; do
    cmp -s "$b" "$1" && { echo ""; return; }
    n=$((n + 1))
    b=$1.orig.$n
  done
  echo "$b"
}

installed=0 skipped=0
for p in "${plugins[@]}"; do
  dst="$dir/$p"
  if [ -e "$dst" ] && ! is_ours "$dst"; then
    if [ "$force" -eq 0 ]; then
      echo "skip $p: $dst is not rcni's (use --force to replace it; it will be kept as $p.orig)" >&2
      skipped=$((skipped + 1))
      continue
    fi
    b=$(backup_of "$dst")
    if [ -n "$b" ]; then
      cp -p "$dst" "$b"
      echo "kept $dst as $b"
    fi
  fi
  # Copy then rename: a runtime exec'ing the plugin meanwhile never sees a
  # half-written file (and never gets "text file busy").
  install -m 0755 "$src/$p" "$dst.rcni-new"
  mv -f "$dst.rcni-new" "$dst"
  record "$p"
  echo "installed $dst"
  installed=$((installed + 1))
done
echo "$installed installed, $skipped skipped into $dir"
[ "$skipped" -eq 0 ]
