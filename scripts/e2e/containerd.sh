#!/usr/bin/env bash
# containerd end to end: Debian's containerd 1.6 and `ctr run --cni`, which
# uses go-cni with the FIRST conflist in /etc/cni/net.d and the plugins in
# /opt/cni/bin. Here those two dirs hold only this test's conflist (bridge +
# host-local + portmap, dual stack when the host has IPv6) and logging
# wrappers around rcni's plugins.
#
#   scripts/e2e/containerd.sh [PLUGIN_DIR] [ROUNDS]   (as root; default target/debug, 3 rounds)
#
# A private containerd (its own root, state, sockets and config under a temp
# dir, CRI disabled) runs in a private mount namespace in which the temp dir
# is bind-mounted over /etc/cni/net.d, /opt/cni/bin and /var/lib/cni (CNI
# cache and host-local data) and a tmpfs over /run/containerd (shim sockets,
# runc state), so nothing of the host's is read or changed; /usr/lib/cni is
# covered with tripwire wrappers. The image is assembled by hand from Debian's
# busybox-static (a docker-archive tar: layer, config, manifest.json) and
# `ctr image import`ed. Each round, on the same host state (nothing reset in
# between):
#   `ctr run --rm --cni` a busybox httpd; the address on eth0 must be the one
#   in the cached CNI result and host-local's reservation; the host pings it
#   (v4, and v6 when there), fetches from it directly and through the
#   published port (a static runtimeConfig.portMappings in the conflist:
#   go-cni passes no capability args, so the plugin sees the file's); then
#   `ctr task kill -s SIGKILL`: ctr runs the DEL and removes the task and the
#   container; nothing may be left (nft elements/rules/chains and iptables
#   rules naming the container or its addresses or the port, reservations,
#   cache entries, veth, per-container CNI-* chains), the firewall objects
#   must be those after round 1 (nothing accumulates), and every plugin call
#   must be rcni's.
# Prints PASS/FAIL per round. Everything made here is removed at the end, also
# on failure: containerd and its shims (by pid: the processes of the private
# mount namespace), the bridge, the nft tables that appeared, the temp dir,
# and the mount points made for it (/opt/cni/bin, /etc/cni/net.d, /var/lib/cni,
# /run/containerd when they did not exist).
#
# Environment: RCNI_E2E_KEEP=1 keeps the temp dir; RCNI_E2E_TRACE=1 traces;
# RCNI_E2E_BREAK=PLUGIN:COMMAND:fail|skip breaks one plugin on purpose (lib.sh).
set -euo pipefail

if [ "${1:-}" = "--inner" ]; then
  T=$2 src=$3 rounds=$4
  if [ "${RCNI_E2E_TRACE:-0}" = 1 ]; then PS4='+ $EPOCHREALTIME '; set -x; fi
  # shellcheck source=scripts/e2e/lib.sh
  . "$(dirname "$0")/lib.sh"
  e2e_init "$T" containerd
  log() { e2e_log "$@"; }
  fail() { e2e_fail "$@"; }
  id=${T##*.}
  id=$(printf '%s' "$id" | tr 'A-Z' 'a-z')

  mkdir -p "$T/opt-cni-bin" "$T/net.d" "$T/var-lib-cni" "$T/root" "$T/state" "$T/opt"
  mount -t tmpfs -o size=16m rcni-e2e-containerd /run/containerd
  mount --bind "$T/var-lib-cni" /var/lib/cni
  mount --bind "$T/opt-cni-bin" /opt/cni/bin
  mount --bind "$T/net.d" /etc/cni/net.d
  for p in $E2E_RCNI_PLUGINS; do e2e_wrap "$T/opt-cni-bin" "$p" "$src/$p"; done
  e2e_tripwire_go_dir

  e2e_free_subnet
  subnet=$E2E_SUBNET pfx=$E2E_PFX gw=${E2E_PFX}1
  v6=0
  [ "$(cat /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null || echo 1)" = 0 ] && v6=1
  subnet6=fd00:222:$E2E_N::/64 gw6=fd00:222:$E2E_N::1
  hport=$(e2e_free_port)
  br=rcnictr-$id
  net=rcni-e2e-ctr-$id
  ranges="[{\"subnet\":\"$subnet\",\"gateway\":\"$gw\"}]"
  routes='{"dst":"0.0.0.0/0"}'
  if [ $v6 = 1 ]; then
    ranges="$ranges,[{\"subnet\":\"$subnet6\",\"gateway\":\"$gw6\"}]"
    routes="$routes,{\"dst\":\"::/0\"}"
  fi
  cat >"$T/net.d/10-rcni-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$net",
  "plugins": [
    {"type": "bridge", "bridge": "$br", "isGateway": true, "ipMasq": true, "ipMasqBackend": "nftables", "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [$ranges], "routes": [$routes]}},
    {"type": "portmap", "runtimeConfig": {"portMappings": [{"hostPort": $hport, "containerPort": 80, "protocol": "tcp"}]}}
  ]
}
EOF
  jq -e . "$T/net.d/10-rcni-e2e.conflist" >/dev/null || fail "bad conflist"
  ipam_dir=/var/lib/cni/networks/$net
  nets=$subnet
  [ $v6 = 1 ] && nets="$nets + $subnet6"
  log "network $net: bridge $br, $nets, host port $hport -> 80; plugins in /opt/cni/bin: $(ls /opt/cni/bin | tr '\n' ' ')"

  cat >"$T/config.toml" <<EOF
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$T/containerd.sock"
[ttrpc]
  address = "$T/containerd.sock.ttrpc"
[debug]
  address = "$T/containerd-debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$T/opt"
EOF
  envi() { env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
  c() { envi ctr --address "$T/containerd.sock" --namespace rcni-e2e --connect-timeout 5s "$@"; }
  cpid="" pid="" img=localhost/rcni-e2e-busybox:$id

  cleanup() {
    local rc=$? n
    set +e
    e2e_round_on_exit $rc
    if [ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null; then
      for n in $(c tasks ls -q 2>/dev/null); do c tasks kill -s SIGKILL "$n" >/dev/null 2>&1; done
      sleep 0.2
      for n in $(c tasks ls -q 2>/dev/null); do c tasks delete -f "$n" >/dev/null 2>&1; done
      for n in $(c containers ls -q 2>/dev/null); do c containers delete "$n" >/dev/null 2>&1; done
      c images rm "$img" >/dev/null 2>&1
      kill -TERM "$cpid" 2>/dev/null
      for n in $(seq 1 50); do kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
    fi
    # The container's init runs in mount namespaces of its own: without
    # containerd to kill it, it is ended by its pid (its netns, veth with it).
    [ -n "$cpid" ] && kill -KILL "$cpid" 2>/dev/null
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    e2e_kill_namespace_procs
    ip link del "$br" >/dev/null 2>&1
    e2e_remove_new_tables
    if [ $rc -ne 0 ] && [ -s "$T/containerd.log" ]; then
      log "containerd log (last warnings):"; grep -E 'level=(warning|error|fatal)' "$T/containerd.log" | tail -n 8 | cut -c1-300 | sed 's/^/     /'
    fi
    exit $rc
  }
  trap cleanup EXIT

  s=$(e2e_now)
  # Its own session: a signal to this script's process group does not end it
  # before the cleanup has used it.
  setsid env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    containerd --config "$T/config.toml" --log-level warn >"$T/containerd.log" 2>&1 &
  cpid=$!
  for i in $(seq 1 100); do
    c version >/dev/null 2>&1 && break
    kill -0 "$cpid" 2>/dev/null || fail "containerd exited: $(tail -n 5 "$T/containerd.log")"
    sleep 0.1
  done
  c version >/dev/null 2>&1 || fail "containerd did not answer within 10 s"
  log "containerd $(containerd --version | awk '{print $3}') up in $(e2e_since "$s") (pid $cpid, socket $T/containerd.sock)"

  # The image: a docker-archive tar made by hand (one layer).
  s=$(e2e_now)
  e2e_rootfs "$T/rootfs" "rcni-e2e-$id"
  mkdir -p "$T/img"
  tar -C "$T/rootfs" --numeric-owner --owner=0 --group=0 -cf "$T/layer.tar" .
  diff=$(sha256sum "$T/layer.tar" | cut -d' ' -f1)
  case $(dpkg --print-architecture) in
    amd64) arch=amd64 ;; arm64) arch=arm64 ;; i386) arch=386 ;; ppc64el) arch=ppc64le ;; s390x) arch=s390x ;;
    *) arch=$(dpkg --print-architecture) ;;
  esac
  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"rcni e2e: busybox-static"}]}' \
    "$arch" "$diff" >"$T/config.json"
  cfg=$(sha256sum "$T/config.json" | cut -d' ' -f1)
  mkdir -p "$T/img/$diff"
  mv "$T/layer.tar" "$T/img/$diff/layer.tar"
  mv "$T/config.json" "$T/img/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfg" "$img" "$diff" >"$T/img/manifest.json"
  tar -C "$T/img" -cf "$T/image.tar" manifest.json "$cfg.json" "$diff/layer.tar"
  c images import --snapshotter native "$T/image.tar" >/dev/null || fail "ctr images import failed"
  c images ls -q | e2e_has -xF "$img" || fail "image $img not in containerd after import"
  log "image $img (docker-archive, layer sha256:${diff:0:12}) imported in $(e2e_since "$s")"

  for r in $(seq 1 "$rounds"); do
    e2e_round_begin "$r"
    name=r$r-$id
    cid=rcni-e2e-$name # go-cni's container ID: <namespace>-<container>
    c run --rm --cni --snapshotter native --null-io "$img" "$name" httpd -f -p 80 -h /www </dev/null >"$T/ctr-run-$r.log" 2>&1 &
    runpid=$!
    cache=/var/lib/cni/results/$net-$cid-eth0
    pid=""
    for i in $(seq 1 200); do
      kill -0 "$runpid" 2>/dev/null || e2e_round_fail "ctr run exited: $(tr '\n' ' ' <"$T/ctr-run-$r.log")"
      if [ -f "$cache" ]; then
        pid=$(c tasks ls 2>/dev/null | awk -v n="$name" '$1 == n && $3 == "RUNNING" { print $2 }')
        [ -n "$pid" ] && break
      fi
      sleep 0.1
    done
    [ -n "$pid" ] || e2e_round_fail "container $name not running with a CNI result within 20 s"
    ns=/proc/$pid/ns/net task_pid=$pid

    # The address: eth0 in the container, the cached result, host-local's reservation.
    ip4=$(jq -r '.result.ips[] | .address | select(contains(".") )' "$cache")
    kaddr=$(nsenter --net="$ns" ip -o -4 addr show dev eth0 | awk '{print $4}')
    [ -n "$ip4" ] && [ "$ip4" = "$kaddr" ] || e2e_round_fail "eth0 has $kaddr, the cached result says $ip4"
    ip4=${ip4%/*}
    [ "${ip4#"$pfx"}" != "$ip4" ] || e2e_round_fail "address $ip4 not in $subnet"
    [ -f "$ipam_dir/$ip4" ] && grep -q "^$cid" "$ipam_dir/$ip4" || e2e_round_fail "no host-local reservation of $ip4 for $cid"
    ip6=""
    if [ $v6 = 1 ]; then
      ip6=$(jq -r '.result.ips[] | .address | select(contains(":"))' "$cache")
      k6=$(nsenter --net="$ns" ip -o -6 addr show dev eth0 scope global | awk '{print $4}')
      [ -n "$ip6" ] && [ "$ip6" = "$k6" ] || e2e_round_fail "eth0 has v6 $k6, the cached result says $ip6"
      ip6=${ip6%/*}
      [ -f "$ipam_dir/$ip6" ] || e2e_round_fail "no host-local reservation of $ip6"
    fi
    veth=$(jq -r '.result.interfaces[] | select((.sandbox // "") == "" and (.name | startswith("veth"))) | .name' "$cache" | head -n 1)
    [ -n "$veth" ] && ip -o link show "$veth" 2>/dev/null | e2e_has "master $br" || e2e_round_fail "host veth '$veth' not on $br"
    nsenter --net="$ns" ip -4 route show default | e2e_has "via $gw " || e2e_round_fail "no default route via $gw"

    # From the host: ping, HTTP direct and through the published port.
    ping -c 1 -i 0.2 -w 3 "$ip4" >/dev/null || e2e_round_fail "the host cannot ping $ip4"
    if [ -n "$ip6" ]; then
      ok6=0
      ping -6 -c 1 -i 0.2 -w 5 "$ip6" >/dev/null 2>&1 && ok6=1
      [ $ok6 = 1 ] || e2e_round_fail "the host cannot ping $ip6"
    fi
    want="rcni-e2e-$id"
    e2e_wait_http "$ip4" 80 "$want" || e2e_round_fail "host: http://$ip4/ failed"
    [ "$(e2e_get_host 127.0.0.1 "$hport")" = "$want" ] || e2e_round_fail "host: published port http://127.0.0.1:$hport/ failed"
    [ "$(e2e_get_host "$gw" "$hport")" = "$want" ] || e2e_round_fail "host: published port http://$gw:$hport/ failed"
    [ "$r" = 1 ] && log "$name: eth0 $ip4${ip6:+ $ip6} (= cached result = reservation), veth $veth on $br; host: ping${ip6:+ and ping -6}, http://$ip4/, 127.0.0.1:$hport, $gw:$hport ok"

    # Removal: the task dies, ctr runs the DEL, deletes the task and the container.
    c tasks kill -s SIGKILL "$name" >/dev/null
    for i in $(seq 1 200); do kill -0 "$runpid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$runpid" 2>/dev/null && e2e_round_fail "ctr run did not end within 20 s of the kill"
    wait "$runpid" || true
    pid=""
    c containers ls -q | e2e_has -xF "$name" && e2e_round_fail "container $name still in containerd after ctr run --rm ended"
    left=(--cid "$cid" --ip "$ip4" --port "$hport" --veth "$veth" --path "/proc/$task_pid" --ipam "$ipam_dir" --cache /var/lib/cni/results
      --bridge "$br" --no-container-chains)
    [ -n "$ip6" ] && left+=(--ip "$ip6")
    e2e_leftovers "${left[@]}" || e2e_round_fail "state of $name ($cid, $ip4${ip6:+ $ip6}, port $hport) left behind"
    e2e_no_growth "$r" || e2e_round_fail "firewall objects accumulate from round to round"
    for p in bridge host-local portmap; do
      e2e_require_call ADD "$p" "$cid"
      e2e_require_call DEL "$p" "$cid"
    done
    [ "$r" = 1 ] && log "DEL run by: $(e2e_caller_of DEL bridge "$cid")"
    e2e_round_pass
  done
  e2e_check_calls
  log "PASS"
  exit 0
fi

# ---------------------------------------------------------------------------
# Outer part.
# ---------------------------------------------------------------------------
cd "$(dirname "$0")/../.."
src=${1:-${RCNI_PLUGIN_DIR:-$PWD/target/debug}}
src=$(cd "$src" && pwd)
rounds=${2:-3}

if [ "$(id -u)" -ne 0 ]; then
  echo "containerd e2e: skipped (needs root)" >&2
  exit 0
fi
missing=()
for c in containerd ctr containerd-shim-runc-v2 runc unshare nsenter nft ip ss shuf jq ping sha256sum; do
  command -v $c >/dev/null || missing+=("$c")
done
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
for p in bridge host-local loopback portmap; do
  grep -aq 'rcni CNI plugin' "$src/$p" 2>/dev/null || missing+=("rcni $p in $src")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "containerd e2e: missing ${missing[*]}" >&2
  exit 1
fi

# The host's CNI dirs must look the same afterwards; mount points made here
# are removed again (deepest first).
snapshot() { ls -la --time-style=+%s /etc/cni/net.d /opt/cni/bin /opt/cni /opt/containerd /var/lib/containerd /run/containerd 2>&1 | grep -v ' \.\.$' || true; }
before=$(snapshot)
made_dirs=()
for d in /opt/cni/bin /etc/cni/net.d /var/lib/cni /run/containerd; do
  p=$d
  new=()
  while [ ! -d "$p" ]; do new=("$p" "${new[@]}"); p=$(dirname "$p"); done
  for n in "${new[@]}"; do mkdir "$n"; made_dirs=("$n" "${made_dirs[@]}"); done
done
T=""
outer_cleanup() {
  local rc=$?
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ "${RCNI_E2E_KEEP:-0}" = 1 ]; then echo "   kept $T" >&2; else rm -rf "$T"; fi
  fi
  for d in "${made_dirs[@]}"; do rmdir "$d" 2>/dev/null || echo "   $d not empty, left in place" >&2; done
  if [ "$(snapshot)" != "$before" ]; then
    echo "   containerd e2e: the host's CNI/containerd dirs changed:" >&2
    diff <(echo "$before") <(snapshot) | sed 's/^/     /' >&2
    rc=1
  fi
  exit $rc
}
trap outer_cleanup EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM

T=$(mktemp -d /tmp/rcni-ctr-e2e.XXXXXX)
start=$(date +%s.%N)
echo "== containerd e2e: $rounds rounds (plugins from $src)"
if unshare --mount --propagation private -- "$0" --inner "$T" "$src" "$rounds"; then
  awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "   containerd: PASS, %.1f s\n", e - s }'
else
  echo "== containerd e2e: FAILED" >&2
  exit 1
fi
