#!/usr/bin/env bash
# Podman end to end: Debian's Podman 4 with `--network-backend cni` runs
# containers on a network made by `podman network create`, with rcni's
# bridge, host-local, loopback and portmap as the only implementations of
# those plugins in its only CNI plugin dir. Podman also writes `firewall`
# and `tuning` into its conflists; those two are copied from Debian's Go
# plugins (/usr/lib/cni), and the test prints which implementation ran
# every plugin call.
#
#   scripts/e2e/podman.sh [PLUGIN_DIR]     (as root; default target/debug)
#
# Two scenarios, each in its own temporary root and private mount namespace:
#   ok      addresses, ping between two containers, a published port from the
#           host and from the other container, `podman inspect` and
#           `podman network inspect` against the plugins' results, restart
#           (DEL + ADD), then `podman rm` / `podman network rm` must leave no
#           link, firewall rule, host-local reservation, CNI cache entry or netns.
#   broken  the plugin dir's bridge is a script that exits 1: `podman run`
#           must fail (proof that the ok scenario can fail).
#
# Everything podman keeps (storage, runroot, containers.conf, storage.conf,
# the CNI config dir, /var/lib/cni = CNI cache and host-local data, /run/netns,
# /var/lib/containers, the /dev/shm lock) lives under one temp dir that is removed at the end, even
# on failure. The bridge and subnet are unique (cni-podmanN as Podman picks it,
# a free 10.222.N.0/24); all traffic goes to addresses inside containers made
# here or to the host's own published port.
#
# Environment: RCNI_E2E_KEEP=1 keeps the temp dir for a post-mortem.
set -euo pipefail

# ---------------------------------------------------------------------------
# Inner part: runs in a private mount namespace (see the bottom of the file).
# ---------------------------------------------------------------------------
if [ "${1:-}" = "--inner" ]; then
  scenario=$2 T=$3 src=$4
  [ "${RCNI_E2E_TRACE:-0}" = 1 ] && set -x
  id=${T##*.}
  id=$(printf '%s' "$id" | tr 'A-Z' 'a-z')
  log() { printf '   [%s] %s\n' "$scenario" "$*"; }
  fail() { printf '   [%s] FAIL: %s\n' "$scenario" "$*" >&2; exit 1; }

  # Private state: nothing below is visible outside this mount namespace,
  # and all of it disappears with the namespace.
  mkdir -p "$T/var-lib-cni" "$T/var-lib-containers" "$T/run" "$T/storage" "$T/conf/net.d" "$T/cni-bin/.impl"
  mount -t tmpfs -o size=16m rcni-e2e-shm /dev/shm
  mount -t tmpfs -o size=1m rcni-e2e-netns /run/netns
  mount --bind "$T/var-lib-cni" /var/lib/cni
  # containers/image's blob info cache has a fixed path for root.
  mount --bind "$T/var-lib-containers" /var/lib/containers

  # The plugin dir: a logging wrapper per plugin that execs the real binary,
  # so the test can say which implementation ran which command.
  ilog=$T/invocations.log
  : >"$ilog"
  impl_of() {
    if [ "$(head -c 2 "$1")" = '#!' ]; then echo broken
    elif grep -aq 'rcni CNI plugin' "$1"; then echo rcni
    else echo go; fi
  }
  add_plugin() { # name real-binary
    install -m 0755 "$2" "$T/cni-bin/.impl/$1"
    local impl
    impl=$(impl_of "$2")
    cat >"$T/cni-bin/$1" <<EOF
#!/bin/sh
echo "\${CNI_COMMAND:-?} $1 $impl \${CNI_CONTAINERID:-} \${CNI_IFNAME:-}" >>"$ilog"
exec "$T/cni-bin/.impl/$1" "\$@"
EOF
    chmod 0755 "$T/cni-bin/$1"
  }
  if [ "$scenario" = broken ]; then
    # Podman execs VERSION on every plugin when it loads a conflist and
    # hides networks whose plugins fail it; this bridge answers VERSION
    # (through rcni's) and fails every other command, so `podman run` gets
    # as far as the ADD.
    install -m 0755 "$src/bridge" "$T/cni-bin/.impl/bridge.real"
    cat >"$T/broken-bridge" <<EOF
#!/bin/sh
[ "\$CNI_COMMAND" = VERSION ] && exec "$T/cni-bin/.impl/bridge.real"
echo '{"cniVersion":"1.0.0","code":999,"msg":"deliberately broken bridge"}'
exit 1
EOF
    add_plugin bridge "$T/broken-bridge"
  else
    add_plugin bridge "$src/bridge"
  fi
  for p in host-local loopback portmap; do add_plugin "$p" "$src/$p"; done
  for p in firewall tuning; do add_plugin "$p" "/usr/lib/cni/$p"; done
  log "plugin dir $T/cni-bin:"
  for p in bridge host-local loopback portmap firewall tuning; do
    log "  $p -> $(impl_of "$T/cni-bin/.impl/$p")"
  done

  cat >"$T/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"
netns = "bridge"

[network]
network_backend = "cni"
cni_plugin_dirs = ["$T/cni-bin"]
network_config_dir = "$T/conf/net.d"
default_network = "rcni-e2e-default-$id"
default_subnet = "10.222.255.0/24"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/events.log"
tmp_dir = "$T/run/libpod"
volume_path = "$T/storage/volumes"
EOF
  cat >"$T/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$T/storage"
runroot = "$T/run/storage"
EOF
  export CONTAINERS_CONF=$T/containers.conf CONTAINERS_STORAGE_CONF=$T/storage.conf
  unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY
  pm() { podman --network-backend cni --runtime runc "$@"; }

  net=rcni-e2e-$id
  img=localhost/rcni-e2e-busybox:$id
  web=rcni-e2e-web-$id
  cli=rcni-e2e-cli-$id
  br="" subnet="" pfx="" hport=""
  veths=()

  # Kernel/firewall/state leftovers that mention this test's network.
  leftovers() {
    local bad=0 f
    for v in "${veths[@]}"; do
      if ip link show "$v" >/dev/null 2>&1; then echo "link $v still exists"; bad=1; fi
    done
    if [ -n "$pfx" ]; then
      if nft list ruleset 2>/dev/null | grep -nE "(${pfx//./\\.}[0-9]|dport $hport\b|\"$br\")" ; then
        echo "nft ruleset still mentions $subnet/$hport/$br"; bad=1
      fi
      for save in iptables-save ip6tables-save iptables-legacy-save; do
        command -v $save >/dev/null || continue
        if $save 2>/dev/null | grep -nE "(${pfx//./\\.}[0-9]|--dport $hport\b| $br )"; then
          echo "$save still mentions $subnet/$hport/$br"; bad=1
        fi
      done
    fi
    for f in /var/lib/cni/networks/*/*; do
      [ -e "$f" ] || continue
      case ${f##*/} in lock | last_reserved_ip.*) ;; *) echo "host-local reservation left: $f"; bad=1 ;; esac
    done
    for f in /var/lib/cni/results/*; do
      [ -e "$f" ] && { echo "CNI cache entry left: $f"; bad=1; }
    done
    for f in /run/netns/*; do
      [ -e "$f" ] && { echo "netns left: $f"; bad=1; }
    done
    return $bad
  }

  # The plugins (Go's and rcni's alike) keep their tables and shared chains
  # once made; the ones this test brought into being are removed at the end.
  tables_before=$(nft list tables 2>/dev/null || true)
  cleanup() {
    local rc=$?
    set +e
    pm rm -af -t 0 >/dev/null 2>&1
    pm network rm -f "$net" >/dev/null 2>&1
    pm rmi -af >/dev/null 2>&1
    [ -n "$br" ] && ip link del "$br" >/dev/null 2>&1
    local t
    while read -r t; do
      [ -n "$t" ] || continue
      grep -qxF "$t" <<<"$tables_before" && continue
      case "$t" in
        "table ip nat" | "table ip filter" | "table ip6 nat" | "table ip6 filter" | "table ip cni_hostport" | \
          "table ip6 cni_hostport" | "table inet cni_plugins_masquerade")
          nft delete $t && log "removed ${t} (made during this test, no rule of its own left)" ;;
      esac
    done <<<"$(nft list tables 2>/dev/null)"
    if [ -s "$ilog" ]; then
      log "plugin calls (command plugin implementation):"
      awk '{print $1, $2, $3}' "$ilog" | sort | uniq -c | sort -k3,3 -k2,2 | sed 's/^/     /'
    fi
    exit $rc
  }
  trap cleanup EXIT

  # A local image from Debian's busybox-static: no registry involved.
  mkdir -p "$T/rootfs/bin" "$T/rootfs/etc" "$T/rootfs/tmp" "$T/rootfs/www" "$T/rootfs/proc" "$T/rootfs/sys" "$T/rootfs/dev"
  cp /bin/busybox "$T/rootfs/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$T/rootfs/bin/$a"; done
  echo "root:x:0:0:root:/:/bin/sh" >"$T/rootfs/etc/passwd"
  echo "root:x:0:" >"$T/rootfs/etc/group"
  echo "rcni-e2e-$id" >"$T/rootfs/www/index.html"
  tar -C "$T/rootfs" -cf "$T/rootfs.tar" .
  pm import -q --change 'CMD ["/bin/sh"]' "$T/rootfs.tar" "$img" >/dev/null
  log "image $img imported from busybox-static"

  # A subnet in 10.222.0.0/16 that nothing on this host uses, and a free port.
  routes=$(ip -4 route show table all; ip -4 addr show)
  for n in $(shuf -i 0-254); do
    grep -q "10\.222\.$n\." <<<"$routes" && continue
    subnet=10.222.$n.0/24 pfx=10.222.$n.
    break
  done
  [ -n "$subnet" ] || fail "no free /24 in 10.222.0.0/16"
  for p in $(shuf -i 20000-29999 -n 50); do
    ss -Htanu | awk '{print $5}' | grep -q ":$p\$" && continue
    hport=$p
    break
  done

  pm network create --subnet "$subnet" "$net" >/dev/null
  br=$(pm network inspect -f '{{.NetworkInterface}}' "$net")
  gw=$(pm network inspect -f '{{range .Subnets}}{{.Gateway}}{{end}}' "$net")
  conflist=$T/conf/net.d/$net.conflist
  [ -f "$conflist" ] || fail "podman wrote no $conflist"
  log "network $net: subnet $subnet gateway $gw bridge $br, conflist plugins: $(grep -o '"type": *"[^"]*"' "$conflist" | sed 's/.*"\([^"]*\)"$/\1/' | tr '\n' ' ')"

  if [ "$scenario" = broken ]; then
    set +e
    out=$(pm run -d --name "$web" --network "$net" "$img" sleep 600 2>&1)
    rc=$?
    set -e
    [ $rc -ne 0 ] || fail "podman run succeeded with a broken bridge plugin"
    grep -q 'deliberately broken bridge' <<<"$out" || fail "podman run failed, but not because of the bridge plugin: $out"
    log "podman run failed as it must (rc $rc): $(tr '\n' ' ' <<<"$out" | cut -c1-200)"
    grep -q '^ADD bridge' "$ilog" || fail "the broken bridge was never called"
    pm rm -af -t 0 >/dev/null
    pm network rm -f "$net" >/dev/null
    ip link show "$br" >/dev/null 2>&1 && fail "bridge $br exists although bridge never ran"
    leftovers || fail "state left behind after a failed run"
    log "PASS"
    exit 0
  fi

  # --- ok scenario -----------------------------------------------------------
  pm run -d --name "$web" --network "$net" -p "$hport:80" "$img" httpd -f -p 80 -h /www >/dev/null
  cli_ip=${pfx}77 cli_mac=02:00:0a:de:00:77
  pm run -d --name "$cli" --network "$net" --ip "$cli_ip" --mac-address "$cli_mac" --cap-add NET_RAW "$img" sleep 600 >/dev/null
  log "containers $web (port $hport->80) and $cli (--ip $cli_ip --mac-address $cli_mac) running"

  ip -d link show "$br" | grep -q ' bridge ' || fail "$br is not a bridge"

  # podman inspect vs the kernel inside the container vs the plugin's cached result.
  check_container() { # name -> sets ip_<var>
    local c=$1 cid pip pgw plen pmac kaddr kmac cache res_ip res_mac
    cid=$(pm inspect -f '{{.Id}}' "$c")
    pip=$(pm inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$c")
    pgw=$(pm inspect -f "{{(index .NetworkSettings.Networks \"$net\").Gateway}}" "$c")
    plen=$(pm inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPPrefixLen}}" "$c")
    pmac=$(pm inspect -f "{{(index .NetworkSettings.Networks \"$net\").MacAddress}}" "$c")
    kaddr=$(pm exec "$c" ip -o -4 addr show dev eth0 | awk '{print $4}')
    kmac=$(pm exec "$c" cat /sys/class/net/eth0/address)
    cache=/var/lib/cni/results/$net-$cid-eth0
    [ -f "$cache" ] || fail "no CNI cache entry $cache"
    res_ip=$(grep -o '"address":"[^"]*"' "$cache" | head -1 | cut -d'"' -f4)
    res_mac=$(grep -o '"mac":"[^"]*"' "$cache" | tail -1 | cut -d'"' -f4)
    log "$c: podman inspect $pip/$plen gw $pgw mac $pmac | eth0 $kaddr $kmac | cached result $res_ip $res_mac"
    [ "$pip/$plen" = "$kaddr" ] || fail "$c: podman inspect says $pip/$plen, eth0 has $kaddr"
    [ "$kaddr" = "$res_ip" ] || fail "$c: eth0 has $kaddr, the cached CNI result says $res_ip"
    [ "$pgw" = "$gw" ] || fail "$c: gateway $pgw, network has $gw"
    [ "$pmac" = "$kmac" ] || fail "$c: podman inspect mac $pmac, eth0 has $kmac"
    [ "$kmac" = "$res_mac" ] || fail "$c: eth0 mac $kmac, the cached result's container interface $res_mac"
    [ -f "/var/lib/cni/networks/$net/$pip" ] || fail "$c: no host-local reservation for $pip"
    grep -q "^$cid" "/var/lib/cni/networks/$net/$pip" || fail "$c: reservation $pip is not $cid's"
    pm exec "$c" ip -4 route show | grep -q "^default via $gw" || fail "$c: no default route via $gw"
    local v
    v=$(grep -o '"name":"veth[0-9a-f]*"' "$cache" | head -1 | cut -d'"' -f4)
    [ -n "$v" ] && veths+=("$v")
    [ -n "$v" ] && { ip -o link show "$v" | grep -q "master $br" || fail "$c: host veth $v not on $br"; }
    printf -v "ip_${2}" '%s' "$pip"
  }
  check_container "$web" web
  check_container "$cli" cli
  [ "$ip_cli" = "$cli_ip" ] || fail "--ip $cli_ip was not honoured (got $ip_cli)"
  [ "$(pm inspect -f "{{(index .NetworkSettings.Networks \"$net\").MacAddress}}" "$cli")" = "$cli_mac" ] ||
    fail "--mac-address $cli_mac was not honoured"
  # The network as podman reports it.
  ninspect=$(pm network inspect "$net")
  grep -q "\"subnet\": \"$subnet\"" <<<"$ninspect" || fail "network inspect lacks subnet $subnet"
  grep -q "\"network_interface\": \"$br\"" <<<"$ninspect" || fail "network inspect lacks $br"
  ip -4 addr show dev "$br" | grep -q "inet $gw/24" || fail "bridge $br lacks gateway $gw/24"

  # Reachability: ping both ways, HTTP direct, through the published port from
  # the other container (via the gateway, a host address) and from the host.
  pm exec "$cli" ping -c 2 -W 2 "$ip_web" >/dev/null || fail "$cli cannot ping $web ($ip_web)"
  pm exec --privileged "$web" ping -c 2 -W 2 "$ip_cli" >/dev/null || fail "$web cannot ping $cli ($ip_cli)"
  log "ping $cli <-> $web ok"
  want="rcni-e2e-$id"
  # HTTP/1.0 over busybox nc (busybox-static's wget crashes in a container
  # without glibc's NSS libraries); the body is the last line.
  http_get() { printf 'GET / HTTP/1.0\r\n\r\n' | "$@" 2>&1 | tr -d '\r' | tail -n 1 || true; }
  get_in() { http_get pm exec -i "$cli" nc -w 5 "$1" "$2"; }
  get_host() { http_get /bin/busybox nc -w 5 "$1" "$2"; }
  [ "$(get_in "$ip_web" 80)" = "$want" ] || fail "$cli: http://$ip_web/ failed"
  [ "$(get_in "$gw" "$hport")" = "$want" ] || fail "$cli: published port http://$gw:$hport/ failed"
  [ "$(get_host "$gw" "$hport")" = "$want" ] || fail "host: published port http://$gw:$hport/ failed"
  [ "$(get_host 127.0.0.1 "$hport")" = "$want" ] || fail "host: published port http://127.0.0.1:$hport/ failed"
  log "http: direct, $cli -> $gw:$hport, host -> $gw:$hport, host -> 127.0.0.1:$hport ok"
  # Where the rules went (portmap's and bridge's backend choice on this host).
  log "nft tables holding this network's rules: $(nft list ruleset | awk -v p="$pfx" -v h="$hport" '
    /^table / { t = $2 " " $3 }
    index($0, p) || $0 ~ ("dport " h "([^0-9]|$)") { seen[t] = 1 }
    END { for (t in seen) printf "%s; ", t }')"
  log "conflist as podman wrote it: $(tr -d ' \n' <"$conflist" | cut -c1-600)"

  # A restart is a DEL and a new ADD: the port must work again afterwards.
  pm restart -t 0 "$web" >/dev/null
  check_container "$web" web
  [ "$(get_host 127.0.0.1 "$hport")" = "$want" ] || fail "host: published port failed after restart"
  [ "$(get_in "$gw" "$hport")" = "$want" ] || fail "$cli: published port failed after restart"
  log "restart of $web: address, port ok"

  # Teardown: podman rm, podman network rm; nothing may be left.
  pm rm -f -t 0 "$web" "$cli" >/dev/null
  leftovers || fail "state left behind after podman rm"
  pm network rm "$net" >/dev/null
  ip link show "$br" >/dev/null 2>&1 && fail "bridge $br left after podman network rm"
  [ -e "$conflist" ] && fail "$conflist left after podman network rm"
  leftovers || fail "state left behind after podman network rm"
  log "podman rm + network rm: no link, rule, reservation, cache entry or netns left"

  for p in bridge host-local portmap; do
    grep -q "^ADD $p rcni" "$ilog" || fail "rcni's $p never ran an ADD"
    grep -q "^DEL $p rcni" "$ilog" || fail "rcni's $p never ran a DEL"
    grep -q "^[A-Z]* $p go" "$ilog" && fail "a Go $p ran"
  done
  grep -q ' loopback ' "$ilog" || log "loopback: not called (Podman brings lo up itself, it never execs the loopback plugin)"
  log "PASS"
  exit 0
fi

# ---------------------------------------------------------------------------
# Outer part.
# ---------------------------------------------------------------------------
cd "$(dirname "$0")/../.."
src=${1:-${RCNI_PLUGIN_DIR:-$PWD/target/debug}}
src=$(cd "$src" && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "podman e2e: skipped (needs root)" >&2
  exit 0
fi
missing=()
for c in podman runc unshare nft ip ss shuf; do command -v $c >/dev/null || missing+=("$c"); done
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
for p in firewall tuning; do [ -x /usr/lib/cni/$p ] || missing+=("/usr/lib/cni/$p"); done
for p in bridge host-local loopback portmap; do
  grep -aq 'rcni CNI plugin' "$src/$p" 2>/dev/null || missing+=("rcni $p in $src")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "podman e2e: missing ${missing[*]}" >&2
  exit 1
fi

# Mount points for the private state (removed again when made here).
made_dirs=()
for d in /var/lib/cni /var/lib/containers; do
  [ -d "$d" ] || { mkdir -p "$d"; made_dirs+=("$d"); }
done
[ -d /run/netns ] || mkdir -p /run/netns
T=""
outer_cleanup() {
  local rc=$?
  if [ -n "$T" ] && [ -d "$T" ]; then
    if [ "${RCNI_E2E_KEEP:-0}" = 1 ]; then echo "   kept $T" >&2; else rm -rf "$T"; fi
  fi
  for d in "${made_dirs[@]}"; do rmdir "$d" 2>/dev/null || echo "   $d not empty, left in place" >&2; done
  exit $rc
}
trap outer_cleanup EXIT

rc=0
for scenario in ok broken; do
  T=$(mktemp -d /tmp/rcni-podman-e2e.XXXXXX)
  start=$(date +%s.%N)
  echo "== podman e2e: $scenario (plugins from $src)"
  if unshare --mount --propagation private -- "$0" --inner "$scenario" "$T" "$src"; then
    awk -v s="$start" -v e="$(date +%s.%N)" -v n="$scenario" 'BEGIN { printf "   %s: %.1f s\n", n, e - s }'
  else
    echo "== podman e2e: $scenario FAILED" >&2
    rc=1
  fi
  if [ "${RCNI_E2E_KEEP:-0}" = 1 ]; then echo "   kept $T" >&2; else rm -rf "$T"; fi
  T=""
done
exit $rc
