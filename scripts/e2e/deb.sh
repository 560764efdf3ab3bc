#!/usr/bin/env bash
# Builds the Debian package `rcni-cni-plugins` (metadata in
# packaging/deb/Cargo.toml) with cargo-deb from the static release binaries
# in target/<triple>/release (scripts/build-release.sh's), into target/debian/,
# then checks it:
#   - `dpkg-deb -c`: exactly the five plugins in /usr/lib/cni and /opt/cni/bin
#     (mode 755) plus the docs; `dpkg-deb -f`: the control fields;
#   - the packed binaries are the ones built;
#   - `dpkg --root` install and removal in a temporary root (scripts run
#     chrootless, dpkg-divert honours DPKG_ROOT): files already there are
#     diverted to NAME.orig (a taken NAME.orig: NAME.orig.N) and put back on
#     removal.
# Installs cargo-deb with `cargo install --locked` when it is missing.
#
#   scripts/e2e/deb.sh      (run scripts/build-release.sh first)
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO_DEB_VERSION=3.8.0
src=$(./scripts/build-release.sh --dir)
target=$(basename "$(dirname "$src")")
plugins=(bridge host-local loopback mesos-cni-port-mapper portmap)
fail() { echo "   FAIL: $*" >&2; exit 1; }

for p in "${plugins[@]}"; do [ -x "$src/$p" ] || fail "$src/$p missing: run scripts/build-release.sh"; done
if ! cargo deb --version >/dev/null 2>&1; then
  s=$(date +%s)
  echo "   installing cargo-deb $CARGO_DEB_VERSION (cargo install --locked)"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" --quiet
  echo "   cargo-deb installed in $(($(date +%s) - s)) s"
fi

T=$(mktemp -d /tmp/rcni-deb-e2e.XXXXXX)
trap 'rm -rf "$T"' EXIT

# --no-build: the binaries are scripts/build-release.sh's (static); with
# --target cargo-deb reads the assets' target/release/ from target/<triple>/release.
# --no-strip: the release profile strips already.
mkdir -p target/debian
deb=$(cargo deb -p rcni-plugins-deb --no-build --no-strip --target "$target" -o target/debian/ 2>"$T/cargo-deb.err" | tail -n 1) ||
  fail "cargo deb: $(cat "$T/cargo-deb.err")"
[ -f "$deb" ] || fail "cargo deb made no package: $(cat "$T/cargo-deb.err")"
echo "   built $deb ($(du -k "$deb" | cut -f1) KiB)"

# Contents: regular files with their modes.
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $1, $6 }' | sort >"$T/have"
{
  for d in usr/lib/cni opt/cni/bin; do
    for p in "${plugins[@]}"; do echo "-rwxr-xr-x ./$d/$p"; done
  done
  echo "-rw-r--r-- ./usr/share/doc/rcni-cni-plugins/copyright"
  for f in docs/runtimes/*.md; do echo "-rw-r--r-- ./usr/share/doc/rcni-cni-plugins/runtimes/${f##*/}"; done
} | sort >"$T/want"
diff -u "$T/want" "$T/have" >&2 || fail "dpkg-deb -c: unexpected contents (- expected, + packed)"
echo "   dpkg-deb -c: $(wc -l <"$T/have") files as expected"

field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = rcni-cni-plugins ] || fail "Package: $(field Package)"
[ "$(field Architecture)" = "$(dpkg --print-architecture)" ] || fail "Architecture: $(field Architecture)"
[ -z "$(field Depends)" ] || fail "Depends: $(field Depends) (the binaries are static)"
info=$(dpkg-deb -I "$deb")
grep -q ' preinst ' <<<"$info" || fail "no preinst"
grep -q ' postrm ' <<<"$info" || fail "no postrm"

dpkg-deb -x "$deb" "$T/x"
for d in usr/lib/cni opt/cni/bin; do
  for p in "${plugins[@]}"; do cmp -s "$src/$p" "$T/x/$d/$p" || fail "$d/$p differs from $src/$p"; done
done
echo "   control fields ok, packed binaries identical to the build"

# Install and remove in a temporary root that already has plugins of its own.
R=$T/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers" "$R/usr/lib/cni" "$R/opt/cni/bin"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
echo go-bridge >"$R/usr/lib/cni/bridge"              # Debian's Go plugin
echo foreign-portmap >"$R/opt/cni/bin/portmap"        # a tarball's plugin
echo old-loopback >"$R/opt/cni/bin/loopback.orig"     # install.sh --force was here before
echo newer-loopback >"$R/opt/cni/bin/loopback"
# What removal must leave: the state before, except that the taken
# loopback.orig is the one put back and the newer loopback stays as .orig.1.
mkdir -p "$T/after"
cp -a "$R/usr/lib/cni" "$R/opt/cni/bin" "$T/after/"
mv "$T/after/bin/loopback" "$T/after/bin/loopback.orig.1"
mv "$T/after/bin/loopback.orig" "$T/after/bin/loopback"
dpkg() { command dpkg --root="$R" --force-script-chrootless "$@" >"$T/dpkg.out" 2>&1 || fail "dpkg $*: $(cat "$T/dpkg.out")"; }
dpkg -i "$deb"
for d in usr/lib/cni opt/cni/bin; do
  for p in "${plugins[@]}"; do cmp -s "$src/$p" "$R/$d/$p" || fail "after install $d/$p is not rcni's"; done
done
[ "$(cat "$R/usr/lib/cni/bridge.orig")" = go-bridge ] || fail "Go's bridge not kept as bridge.orig"
[ "$(cat "$R/opt/cni/bin/portmap.orig")" = foreign-portmap ] || fail "the foreign portmap not kept as portmap.orig"
[ "$(cat "$R/opt/cni/bin/loopback.orig")" = old-loopback ] || fail "the existing loopback.orig was changed"
[ "$(cat "$R/opt/cni/bin/loopback.orig.1")" = newer-loopback ] || fail "the foreign loopback not kept as loopback.orig.1"
diversions=$(command dpkg-divert --root="$R" --list)
[ "$(grep -c 'by rcni-cni-plugins$' <<<"$diversions")" = 10 ] || fail "expected 10 diversions"
echo "   dpkg -i: installed into /usr/lib/cni and /opt/cni/bin, existing files diverted to NAME.orig"
dpkg -r rcni-cni-plugins
diff -r "$T/after/cni" "$R/usr/lib/cni" >&2 || fail "/usr/lib/cni not as before after dpkg -r"
diff -r "$T/after/bin" "$R/opt/cni/bin" >&2 || fail "/opt/cni/bin not as expected after dpkg -r"
[ -z "$(command dpkg-divert --root="$R" --list)" ] || fail "diversions left after dpkg -r"
echo "   dpkg -r: the diverted files are back, nothing of ours left"
echo "   Debian package: PASS"
