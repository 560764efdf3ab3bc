#!/usr/bin/env bash
# rcni demo: two containers on a bridge network, run by cni-isolator (the Mesos
# network/cni isolator in Rust) with rcni's own plugins only (bridge, host-local,
# portmap, loopback). Needs root and a Linux host (written for Debian 12).
#
#   sudo ./scripts/demo.sh            release build: plugins by scripts/build-release.sh
#                                     (static, target/<host-triple>/release), the isolator
#                                     by cargo build --release (target/release); then the demo
#   sudo RCNI_PROFILE=debug ./scripts/demo.sh   use target/debug (faster to build)
#
# It only uses 10.222.99.0/24, a bridge named rcnidemo<pid>, port 18080 on the host, and
# namespaces, files and rules it creates. The bridge and the port mapping live in the host's
# network namespace (it shows the real thing); everything is removed at the end (also on
# Ctrl-C), every host setting it changed (net.ipv4.ip_forward) is put back, and the script
# shows that nothing is left.
set -euo pipefail

PROFILE=${RCNI_PROFILE:-release}
SUBNET=10.222.99.0/24
GATEWAY=10.222.99.1
HOST_PORT=18080
BRIDGE=rcnidemo$(( $$ % 100000 ))
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/rcni-demo.XXXXXX)
BIN=$WORK/bin CONF=$WORK/net.d STATE=$WORK/run IPAM=$WORK/ipam
PIDS=()

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
step() { STEP_NAME=$1; STEP_T0=$(date +%s%N); bold "==> $1"; }
done_step() { printf '    (%s ms)\n' "$(ms_since "$STEP_T0")"; }

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (sudo $0)" >&2; exit 1; }
# Sets up what it needs on a fresh Debian 12 machine, as scripts/test.sh does: the Debian
# packages of the tools it runs. Rust itself is not a Debian package here (rustup).
need_pkgs=()
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v iptables >/dev/null || need_pkgs+=(iptables)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v unshare >/dev/null || need_pkgs+=(util-linux)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "demo.sh: needs ${need_pkgs[*]} (no apt-get to install them)" >&2; exit 1; }
  bold "==> installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "demo.sh: needs cargo (Rust, from https://rustup.rs)" >&2; exit 1; }
PY=$(command -v python3)
# portmap's backend: nftables (its own table, ip cni_hostport) when nft is there to list and
# remove it, else iptables (Go's CNI-HOSTPORT-* chains in the nat table).
# RCNI_PORTMAP_BACKEND=iptables|nftables overrides.
if command -v nft >/dev/null; then PORTMAP_BACKEND=nftables; else PORTMAP_BACKEND=iptables; fi
PORTMAP_BACKEND=${RCNI_PORTMAP_BACKEND:-$PORTMAP_BACKEND}

# What the host had before, so that teardown removes exactly what the demo added.
FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
NFT_TABLES_BEFORE=$(nft list tables 2>/dev/null || true)
IPT_CHAINS_BEFORE=$( (iptables-save -t nat 2>/dev/null || true) | sed -n 's/^:\(CNI-HOSTPORT-[A-Z]*\) .*/\1/p')

# Removes the host-wide things the plugins made and the demo owns: the bridge, portmap's
# table or chains (only when they did not exist before), and ip_forward's old value.
restore_host() {
  ip link del "$BRIDGE" 2>/dev/null || true
  for t in "ip cni_hostport" "ip6 cni_hostport"; do
    if ! grep -qx "table $t" <<< "$NFT_TABLES_BEFORE" && nft list table $t >/dev/null 2>&1; then
      nft delete table $t
    fi
  done
  for c in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ; do
    grep -qx "$c" <<< "$IPT_CHAINS_BEFORE" && continue
    iptables -w -t nat -S "$c" >/dev/null 2>&1 || continue
    { iptables-save -t nat | grep -E "^-A [A-Z]+ .*-j $c( |\$)" || true; } | sed 's/^-A /-D /' |
      while read -r rule; do eval "iptables -w -t nat $rule"; done
    iptables -w -t nat -F "$c"; iptables -w -t nat -X "$c"
  done
  # iptables-nft made the nat table for those chains: drop it if it is new and now empty.
  if ! grep -qx "table ip nat" <<< "$NFT_TABLES_BEFORE" && nft list table ip nat >/dev/null 2>&1 &&
     ! iptables-save -t nat 2>/dev/null | grep -q '^-A'; then
    nft delete table ip nat
  fi
  echo "$FORWARD_BEFORE" > /proc/sys/net/ipv4/ip_forward
}

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -x "$BIN/cni-isolator" ] && "$BIN/cni-isolator" --config-dir "$CONF" --plugins-dir "$BIN" \
      --root-dir "$STATE" gc >/dev/null 2>&1
  umount -l "$STATE/isolators/network/cni" 2>/dev/null
  restore_host
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

step "build ($PROFILE)"
if [ "$PROFILE" = release ]; then
  PLUGIN_DIR=$(cd "$REPO" && ./scripts/build-release.sh 2> "$WORK/build.log") ||
    { cat "$WORK/build.log" >&2; exit 1; }
  (cd "$REPO" && cargo build --release -q -p cni-isolator)
  ISOLATOR_DIR=$REPO/target/release
else
  (cd "$REPO" && cargo build -q -p bridge -p host-local -p portmap -p loopback -p cni-isolator)
  PLUGIN_DIR=$REPO/target/debug ISOLATOR_DIR=$REPO/target/debug
fi
echo "    plugins from $PLUGIN_DIR, isolator from $ISOLATOR_DIR"
done_step

step "install into a temporary CNI bin dir"
mkdir -p "$BIN" "$CONF" "$STATE" "$IPAM"
for b in bridge host-local portmap loopback; do install -m 0755 "$PLUGIN_DIR/$b" "$BIN/$b"; done
for b in cni-isolator cni-isolator-setup; do install -m 0755 "$ISOLATOR_DIR/$b" "$BIN/$b"; done
ls -l "$BIN" | awk 'NR > 1 { printf "    %-20s %8d bytes\n", $9, $5 }'
done_step

step "write the network config ($CONF/demo.conflist)"
cat > "$CONF/demo.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "demo",
  "plugins": [
    { "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "subnet": "$SUBNET", "gateway": "$GATEWAY", "dataDir": "$IPAM" } },
    { "type": "portmap", "backend": "$PORTMAP_BACKEND", "capabilities": { "portMappings": true } }
  ]
}
EOF
sed 's/^/    /' "$CONF/demo.conflist"
done_step

ISO=("$BIN/cni-isolator" --config-dir "$CONF" --plugins-dir "$BIN" --root-dir "$STATE")

step "start container 'web' (python3 http.server on :80, published as host port $HOST_PORT)"
mkdir -p "$WORK/www"
echo "hello from the web container, served through rcni portmap" > "$WORK/www/index.html"
"${ISO[@]}" run --id web --hostname web --network demo --publish "$HOST_PORT:80/tcp" -- \
  "$PY" -m http.server 80 --bind 0.0.0.0 --directory "$WORK/www" > "$WORK/web.out" 2> "$WORK/web.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'eth0=' "$WORK/web.out" 2>/dev/null && break; sleep 0.05; done
WEB_IP=$(sed -n 's/.*eth0=demo:\([0-9.]*\).*/\1/p' "$WORK/web.out" | head -1)
[ -n "$WEB_IP" ] || { cat "$WORK/web.err" >&2; exit 1; }
grep -h 'attached in' "$WORK/web.err" | sed 's/^/    /'
echo "    web: $WEB_IP"
done_step

step "start container 'client': show its address, hostname and /etc/hosts, ping web"
"${ISO[@]}" run --id client --hostname client --network demo -- sh -c "
  echo \"    hostname: \$(hostname)\"
  ip -4 -o addr show dev eth0 | awk '{print \"    eth0: \" \$4}'
  sed 's/^/    hosts: /' /etc/hosts
  ping -c 3 -i 0.2 -W 1 $WEB_IP | sed 's/^/    /'
" 2> "$WORK/client.err" | grep -v '^client  eth0='
grep -h 'attached in\|detached in' "$WORK/client.err" | sed 's/^/    /'
done_step

step "fetch a page from the host through the published port ($GATEWAY:$HOST_PORT -> $WEB_IP:80)"
for _ in $(seq 50); do
  PAGE=$("$PY" -c "import urllib.request,sys; print(urllib.request.urlopen('http://$GATEWAY:$HOST_PORT/', timeout=1).read().decode().strip())" 2>/dev/null) && break
  sleep 0.1
done
echo "    $PAGE"
[ -n "${PAGE:-}" ] || { echo "demo.sh: no answer through the port mapping" >&2; exit 1; }
done_step

step "status and traffic counters of 'web'"
"${ISO[@]}" status web | sed 's/^/    /'
"${ISO[@]}" usage web | sed 's/^/    /'
done_step

step "stop 'web' (SIGTERM to cni-isolator: it stops the server, then DELs)"
kill -TERM "${PIDS[0]}"; wait "${PIDS[0]}" || true; PIDS=()
grep -h 'detached in' "$WORK/web.err" | sed 's/^/    /'
done_step

step "check that nothing is left"
LEFT=0
check() { if [ -n "$2" ]; then echo "    LEFT: $1: $2"; LEFT=1; else echo "    ok: no $1"; fi; }
check "container state" "$(ls -A "$STATE/isolators/network/cni")"
check "netns handle mounts" "$(grep "$STATE" /proc/self/mountinfo | grep nsfs || true)"
check "veth on $BRIDGE" "$(ip -o link show master "$BRIDGE" 2>/dev/null || true)"
check "host-local reservations" "$(ls "$IPAM/demo" 2>/dev/null | grep -v -e '^lock$' -e '^last_reserved_ip' || true)"
check "nftables rules for the containers" "$(nft list ruleset 2>/dev/null | grep -F -e "$WEB_IP" -e "$HOST_PORT" || true)"
check "iptables rules for the containers" "$( (iptables-save 2>/dev/null || true) | grep -F -e "$WEB_IP" -e "dport $HOST_PORT" || true)"
echo "    the bridge plugin keeps $BRIDGE and portmap its table by design (as Go's); the demo removes them:"
restore_host
check "bridge $BRIDGE" "$(ip -o link show "$BRIDGE" 2>/dev/null || true)"
check "new nftables tables" "$(diff <(echo "$NFT_TABLES_BEFORE") <(nft list tables 2>/dev/null || true) | grep '^>' || true)"
check "new CNI-HOSTPORT chains" "$(comm -13 <(echo "$IPT_CHAINS_BEFORE" | sort) \
  <( (iptables-save -t nat 2>/dev/null || true) | sed -n 's/^:\(CNI-HOSTPORT-[A-Z]*\) .*/\1/p' | sort) || true)"
check "changed net.ipv4.ip_forward (was $FORWARD_BEFORE)" \
  "$( [ "$(cat /proc/sys/net/ipv4/ip_forward)" = "$FORWARD_BEFORE" ] || cat /proc/sys/net/ipv4/ip_forward)"
done_step
[ "$LEFT" = 0 ] && bold "demo finished: everything was removed" || { bold "demo finished with leftovers"; exit 1; }
