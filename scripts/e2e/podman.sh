#!/usr/bin/env bash
# Podman end to end: Debian's Podman 4 with `--network-backend cni` runs
# containers on a network made by `podman network create`, with rcni's
# bridge, host-local, loopback and portmap as the only implementations of
# those plugins in its only CNI plugin dir. Podman also writes `firewall`
# and `tuning` into its conflists; those two are copied from Debian's Go
# plugins (/usr/lib/cni).
#
#   scripts/e2e/podman.sh [PLUGIN_DIR] [ROUNDS]   (as root; default target/debug, 3 rounds)
#
# Two scenarios, each in its own temporary root and private mount namespace,
# each running ROUNDS rounds on the same host state (firewall tables, the
# plugins' files, the CNI cache and the network are never reset in between):
#   ok      per round: a web container A publishing port P and a client C
#           with --ip/--mac-address; addresses, ping both ways, P from the
#           host and from C, `podman inspect` against the plugins' results;
#           restart of A (DEL + ADD) and P again; A killed (its DEL runs in
#           `podman container cleanup`, started by conmon) and removed:
#           nothing of A may be left; then a container B publishes the same
#           P and must answer through it; B and C removed: nothing of A, B
#           or C may be left (nft elements/rules/chains and iptables rules
#           naming their IDs, addresses or P, host-local reservations, CNI
#           cache entries, veths, netns, per-container CNI-* chains even
#           empty); from round 2 on, the firewall objects (nft tables,
#           chains, sets, maps and their element counts, iptables chains)
#           must be exactly those after round 1: nothing accumulates.
#   broken  the plugin dir's bridge is a script that exits 1: every round's
#           `podman run` must fail and leave nothing behind (proof that the
#           ok scenario can fail).
# Every plugin exec goes through a logging wrapper (paths baked into the
# wrapper, nothing read from the caller's environment); every bridge,
# host-local, loopback and portmap call must be rcni's, and /usr/lib/cni is
# covered with tripwire wrappers, so a DEL run by a process that fell back to
# Podman's default plugin dirs fails the test. Podman itself runs with an
# empty environment (`env -i`): its config comes from /etc/containers, which
# is bind-mounted with this test's containers.conf and storage.conf inside
# the private mount namespace, so `podman container cleanup` reads the same.
#
# Everything podman keeps (storage, runroot, containers.conf, storage.conf,
# the CNI config dir, /var/lib/cni = CNI cache and host-local data, /run/netns,
# /var/lib/containers, the /dev/shm lock; tmpfs over /run/runc and /run/cni,
# where runc and Go's tuning keep state) lives under one temp dir that is
# removed at the end, even on failure. The bridge and subnet are unique
# (cni-podmanN as Podman picks it, a free 10.222.N.0/24); all traffic goes to
# addresses inside containers made here or to the host's own published port.
#
# Environment: RCNI_E2E_KEEP=1 keeps the temp dir for a post-mortem;
# RCNI_E2E_SCENARIOS="ok" runs only those; RCNI_E2E_TRACE=1 traces with timestamps;
# RCNI_E2E_BREAK=PLUGIN:COMMAND:fail|skip breaks one plugin on purpose (lib.sh).
set -euo pipefail

# ---------------------------------------------------------------------------
# Inner part: runs in a private mount namespace (see the bottom of the file).
# ---------------------------------------------------------------------------
if [ "${1:-}" = "--inner" ]; then
  scenario=$2 T=$3 src=$4 rounds=$5
  if [ "${RCNI_E2E_TRACE:-0}" = 1 ]; then PS4='+ $EPOCHREALTIME '; set -x; fi
  # shellcheck source=scripts/e2e/lib.sh
  . "$(dirname "$0")/lib.sh"
  e2e_init "$T" "$scenario"
  log() { e2e_log "$@"; }
  fail() { e2e_fail "$@"; }
  id=${T##*.}
  id=$(printf '%s' "$id" | tr 'A-Z' 'a-z')

  # Private state: nothing below is visible outside this mount namespace,
  # and all of it disappears with the namespace.
  mkdir -p "$T/var-lib-cni" "$T/var-lib-containers" "$T/run" "$T/storage" "$T/conf/net.d" "$T/cni-bin"
  mount -t tmpfs -o size=16m rcni-e2e-shm /dev/shm
  mount -t tmpfs -o size=1m rcni-e2e-netns /run/netns
  # runc's state (Podman's default runtime root) and Go tuning's backups.
  mount -t tmpfs -o size=4m rcni-e2e-runc /run/runc
  mount -t tmpfs -o size=1m rcni-e2e-run-cni /run/cni
  mount --bind "$T/var-lib-cni" /var/lib/cni
  # containers/image's blob info cache has a fixed path for root.
  mount --bind "$T/var-lib-containers" /var/lib/containers

  # The plugin dir: a logging wrapper per plugin (see lib.sh).
  if [ "$scenario" = broken ]; then
    # Podman execs VERSION on every plugin when it loads a conflist and
    # hides networks whose plugins fail it; this bridge answers VERSION
    # (through rcni's) and fails every other command, so `podman run` gets
    # as far as the ADD.
    install -m 0755 "$src/bridge" "$T/bridge.real"
    cat >"$T/broken-bridge" <<EOF
#!/bin/sh
[ "\$CNI_COMMAND" = VERSION ] && exec "$T/bridge.real"
echo '{"cniVersion":"1.0.0","code":999,"msg":"deliberately broken bridge"}'
exit 1
EOF
    e2e_wrap "$T/cni-bin" bridge "$T/broken-bridge" broken
  else
    e2e_wrap "$T/cni-bin" bridge "$src/bridge"
  fi
  for p in host-local loopback portmap; do e2e_wrap "$T/cni-bin" "$p" "$src/$p"; done
  for p in firewall tuning; do e2e_wrap "$T/cni-bin" "$p" "/usr/lib/cni/$p"; done
  e2e_tripwire_go_dir
  log "plugin dir $T/cni-bin: $(for p in bridge host-local loopback portmap firewall tuning; do
    printf '%s=%s ' "$p" "$(sed -n 's/^# rcni e2e logging wrapper: [^ ]* -> \([^ ]*\) .*/\1/p' "$T/cni-bin/$p")"; done)"

  # Podman's whole config, in the place every podman process reads it.
  cp -a /etc/containers "$T/etc-containers"
  cat >"$T/etc-containers/containers.conf" <<EOF
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
  cat >"$T/etc-containers/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$T/storage"
runroot = "$T/run/storage"
EOF
  mount --bind "$T/etc-containers" /etc/containers
  pm() { env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root podman "$@" && E2E_FAILED_CMD="" || { local rc=$?; E2E_FAILED_CMD="podman $*"; return $rc; }; }

  net=rcni-e2e-$id
  img=localhost/rcni-e2e-busybox:$id
  br="" hport=""

  cleanup() {
    local rc=$?
    set +e
    e2e_round_on_exit $rc
    pm rm -af -t 0 >/dev/null 2>&1
    pm network rm -f "$net" >/dev/null 2>&1
    pm rmi -af >/dev/null 2>&1
    [ -n "$br" ] && ip link del "$br" >/dev/null 2>&1
    e2e_kill_namespace_procs
    e2e_remove_new_tables
    exit $rc
  }
  trap cleanup EXIT

  # A local image from Debian's busybox-static: no registry involved.
  e2e_rootfs "$T/rootfs" "rcni-e2e-$id"
  tar -C "$T/rootfs" -cf "$T/rootfs.tar" .
  pm import -q --change 'CMD ["/bin/sh"]' "$T/rootfs.tar" "$img" >/dev/null
  log "image $img imported from busybox-static"

  e2e_free_subnet
  subnet=$E2E_SUBNET pfx=$E2E_PFX
  hport=$(e2e_free_port)

  pm network create --subnet "$subnet" "$net" >/dev/null
  br=$(pm network inspect -f '{{.NetworkInterface}}' "$net")
  gw=$(pm network inspect -f '{{range .Subnets}}{{.Gateway}}{{end}}' "$net")
  conflist=$T/conf/net.d/$net.conflist
  [ -f "$conflist" ] || fail "podman wrote no $conflist"
  log "network $net: subnet $subnet gateway $gw bridge $br, host port $hport, conflist plugins: $(grep -o '"type": *"[^"]*"' "$conflist" | sed 's/.*"\([^"]*\)"$/\1/' | tr '\n' ' ')"
  ipam_dir=/var/lib/cni/networks/$net

  if [ "$scenario" = broken ]; then
    for r in $(seq 1 "$rounds"); do
      e2e_round_begin "$r"
      c=rcni-e2e-x$r-$id
      set +e
      out=$(pm run -d --name "$c" --network "$net" -p "$hport:80" "$img" sleep 600 2>&1)
      rc=$?
      set -e
      [ $rc -ne 0 ] || e2e_round_fail "podman run succeeded with a broken bridge plugin"
      grep -q 'deliberately broken bridge' <<<"$out" || e2e_round_fail "podman run failed, but not because of the bridge plugin: $out"
      [ "$r" = 1 ] && log "podman run failed as it must (rc $rc): $(grep '^Error' <<<"$out" | head -n 1 | cut -c1-200)"
      cid=$(pm inspect -f '{{.Id}}' "$c" 2>/dev/null || true)
      pm rm -af -t 0 >/dev/null
      ip link show "$br" >/dev/null 2>&1 && e2e_round_fail "bridge $br exists although bridge never ran"
      left=(--ipam "$ipam_dir" --cache /var/lib/cni/results --port "$hport" --no-container-chains)
      [ -n "$cid" ] && left+=(--cid "$cid")
      for f in /run/netns/*; do [ -e "$f" ] && left+=(--path "$f"); done
      e2e_leftovers "${left[@]}" || e2e_round_fail "state left behind after a failed run"
      e2e_no_growth "$r" || e2e_round_fail "firewall objects accumulate from round to round"
      e2e_round_pass
    done
    grep -q '^ADD bridge broken' "$E2E_LOG" || fail "the broken bridge was never called"
    pm network rm -f "$net" >/dev/null
    e2e_check_calls 1 broken
    log "PASS"
    exit 0
  fi

  # --- ok scenario -----------------------------------------------------------
  want="rcni-e2e-$id"
  # Traffic from inside a container: its network namespace, entered from the
  # host (what `podman exec` would reach, without its ~0.5 s per call).
  in_ns() { local c=$1; shift; local v=NS_$c; nsenter --net="${!v}" "$@"; }
  get_in() { e2e_http_get in_ns "$1" /bin/busybox nc -w 5 "$2" "$3"; }
  # A running container: podman inspect vs the kernel inside the container vs
  # the plugin's cached result vs host-local's reservation. Sets CID_<v>,
  # IP_<v>, VETH_<v>, NS_<v>.
  check_container() { # name var
    local c=$1 cid pip pgw plen pmac kaddr kmac kroute cache res_ip res_mac v ns
    read -r cid pip pgw plen pmac ns < <(pm inspect -f "{{.Id}} {{(index .NetworkSettings.Networks \"$net\").IPAddress}} {{(index .NetworkSettings.Networks \"$net\").Gateway}} {{(index .NetworkSettings.Networks \"$net\").IPPrefixLen}} {{(index .NetworkSettings.Networks \"$net\").MacAddress}} {{.NetworkSettings.SandboxKey}}" "$c")
    [ -e "$ns" ] || fail "$c: netns $ns does not exist"
    if [ "$r" = 1 ] && [ "$2" = a ]; then
      # Once through podman exec, the container's own view.
      kaddr=$(pm exec "$c" ip -o -4 addr show dev eth0 | awk '{print $4}')
      [ "$(nsenter --net="$ns" ip -o -4 addr show dev eth0 | awk '{print $4}')" = "$kaddr" ] ||
        fail "$c: podman exec and the netns $ns disagree on eth0's address"
    fi
    kaddr=$(nsenter --net="$ns" ip -o -4 addr show dev eth0 | awk '{print $4}')
    kmac=$(nsenter --net="$ns" ip -o link show dev eth0 | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
    kroute=$(nsenter --net="$ns" ip -4 route show default)
    cache=/var/lib/cni/results/$net-$cid-eth0
    [ -f "$cache" ] || fail "no CNI cache entry $cache"
    res_ip=$(jq -r '.result.ips[0].address' "$cache")
    res_mac=$(jq -r '.result.interfaces[] | select(.sandbox != null and .sandbox != "") | .mac' "$cache" | head -n 1)
    [ "$r" = 1 ] && log "$c: podman inspect $pip/$plen gw $pgw mac $pmac | eth0 $kaddr $kmac | cached result $res_ip $res_mac"
    [ "$pip/$plen" = "$kaddr" ] || fail "$c: podman inspect says $pip/$plen, eth0 has $kaddr"
    [ "$kaddr" = "$res_ip" ] || fail "$c: eth0 has $kaddr, the cached CNI result says $res_ip"
    [ "$pgw" = "$gw" ] || fail "$c: gateway $pgw, network has $gw"
    [ "$pmac" = "$kmac" ] || fail "$c: podman inspect mac $pmac, eth0 has $kmac"
    [ "$kmac" = "$res_mac" ] || fail "$c: eth0 mac $kmac, the cached result's container interface $res_mac"
    [ "${pip#"$pfx"}" != "$pip" ] || fail "$c: address $pip is not in $subnet"
    [ -f "$ipam_dir/$pip" ] || fail "$c: no host-local reservation for $pip"
    grep -q "^$cid" "$ipam_dir/$pip" || fail "$c: reservation $pip is not $cid's"
    grep -q "^default via $gw " <<<"$kroute " || fail "$c: no default route via $gw ($kroute)"
    v=$(jq -r '.result.interfaces[] | select((.sandbox // "") == "" and (.name | startswith("veth"))) | .name' "$cache" | head -n 1)
    [ -n "$v" ] || fail "$c: no host veth in the cached result"
    ip -o link show "$v" 2>/dev/null | e2e_has "master $br" || fail "$c: host veth $v not on $br"
    printf -v "CID_$2" '%s' "$cid"
    printf -v "IP_$2" '%s' "$pip"
    printf -v "VETH_$2" '%s' "$v"
    printf -v "NS_$2" '%s' "$ns"
  }
  require_lifecycle() { # cid
    local p
    for p in bridge host-local portmap; do
      e2e_require_call ADD "$p" "$1"
      e2e_require_call DEL "$p" "$1"
    done
  }

  cli_ip=${pfx}77 cli_mac=02:00:0a:de:00:77
  for r in $(seq 1 "$rounds"); do
    e2e_round_begin "$r"
    a=rcni-e2e-a$r-$id b=rcni-e2e-b$r-$id c=rcni-e2e-c$r-$id
    pm run -d --name "$a" --network "$net" -p "$hport:80" "$img" httpd -f -p 80 -h /www >/dev/null
    pm run -d --name "$c" --network "$net" --ip "$cli_ip" --mac-address "$cli_mac" --cap-add NET_RAW "$img" sleep 600 >/dev/null
    ip -d link show "$br" | e2e_has ' bridge ' || e2e_round_fail "$br is not a bridge"
    check_container "$a" a
    check_container "$c" c
    [ "$IP_c" = "$cli_ip" ] || e2e_round_fail "--ip $cli_ip was not honoured (got $IP_c)"
    [ "$(pm inspect -f "{{(index .NetworkSettings.Networks \"$net\").MacAddress}}" "$c")" = "$cli_mac" ] ||
      e2e_round_fail "--mac-address $cli_mac was not honoured"
    if [ "$r" = 1 ]; then
      ninspect=$(pm network inspect "$net")
      grep -q "\"subnet\": \"$subnet\"" <<<"$ninspect" || e2e_round_fail "network inspect lacks subnet $subnet"
      grep -q "\"network_interface\": \"$br\"" <<<"$ninspect" || e2e_round_fail "network inspect lacks $br"
      ip -4 addr show dev "$br" | e2e_has "inet $gw/24" || e2e_round_fail "bridge $br lacks gateway $gw/24"
    fi

    # Reachability: ping both ways and from the host, HTTP direct, through
    # the published port from the other container (via the gateway, a host
    # address) and from the host.
    in_ns c ping -c 1 -i 0.2 -w 3 "$IP_a" >/dev/null || e2e_round_fail "$c cannot ping $a ($IP_a)"
    in_ns a ping -c 1 -i 0.2 -w 3 "$IP_c" >/dev/null || e2e_round_fail "$a cannot ping $c ($IP_c)"
    ping -c 1 -i 0.2 -w 3 "$IP_a" >/dev/null || e2e_round_fail "the host cannot ping $a ($IP_a)"
    e2e_wait_http "$IP_a" 80 "$want" || e2e_round_fail "host: http://$IP_a/ failed"
    [ "$(get_in c "$IP_a" 80)" = "$want" ] || e2e_round_fail "$c: http://$IP_a/ failed"
    [ "$(get_in c "$gw" "$hport")" = "$want" ] || e2e_round_fail "$c: published port http://$gw:$hport/ failed"
    [ "$(e2e_get_host "$gw" "$hport")" = "$want" ] || e2e_round_fail "host: published port http://$gw:$hport/ failed"
    [ "$(e2e_get_host 127.0.0.1 "$hport")" = "$want" ] || e2e_round_fail "host: published port http://127.0.0.1:$hport/ failed"
    if [ "$r" = 1 ]; then
      log "ping $c <-> $a, host -> $a; http: direct, $c -> $gw:$hport, host -> $gw:$hport, host -> 127.0.0.1:$hport ok"
      log "nft tables holding this network's rules: $(nft list ruleset 2>/dev/null | awk -v p="$pfx" -v h="$hport" '
        /^table / { t = $2 " " $3 }
        index($0, p) || $0 ~ ("dport " h "([^0-9]|$)") || index($0, h " ") { seen[t] = 1 }
        END { for (t in seen) printf "%s; ", t }')"
      log "conflist as podman wrote it: $(tr -d ' \n' <"$conflist" | cut -c1-600)"
    fi

    # A restart is a DEL and a new ADD: the port must work again afterwards,
    # and the old attachment must be gone.
    old_ip=$IP_a old_veth=$VETH_a old_ns=$NS_a
    pm restart -t 0 "$a" >/dev/null
    check_container "$a" a
    e2e_wait_http "$IP_a" 80 "$want" || e2e_round_fail "host: http://$IP_a/ failed after restart"
    [ "$(e2e_get_host 127.0.0.1 "$hport")" = "$want" ] || e2e_round_fail "host: published port failed after restart"
    [ "$(get_in c "$gw" "$hport")" = "$want" ] || e2e_round_fail "$c: published port failed after restart"
    left=(--veth "$old_veth")
    [ "$old_ns" != "$NS_a" ] && left+=(--path "$old_ns")
    [ "$old_ip" != "$IP_a" ] && left+=(--ip "$old_ip")
    e2e_leftovers "${left[@]}" || e2e_round_fail "the attachment before the restart of $a was left behind"

    # A killed: conmon starts `podman container cleanup`, which runs the DEL.
    dels=$(awk -v id="$CID_a" '$1 == "DEL" && $2 == "portmap" && $5 == id' "$E2E_LOG" | wc -l)
    pm kill "$a" >/dev/null
    e2e_wait_call DEL bridge "$CID_a" $((dels + 1)) || e2e_round_fail "no DEL of $a within 10 s of its exit"
    e2e_wait_call DEL portmap "$CID_a" $((dels + 1)) || e2e_round_fail "no portmap DEL of $a within 10 s of its exit"
    log "round $r: DEL of killed $a run by: $(e2e_caller_of DEL bridge "$CID_a")"
    e2e_leftovers --cid "$CID_a" --ip "$IP_a" --port "$hport" --veth "$VETH_a" --path "$NS_a" ||
      e2e_round_fail "state of killed container $a (${CID_a:0:12}, $IP_a, port $hport) left behind"
    pm rm "$a" >/dev/null

    # B publishes the same port and must answer through it.
    pm run -d --name "$b" --network "$net" -p "$hport:80" "$img" httpd -f -p 80 -h /www-b >/dev/null
    check_container "$b" b
    e2e_wait_http "$IP_b" 80 "$want-b" || e2e_round_fail "host: http://$IP_b/ failed"
    [ "$(e2e_get_host 127.0.0.1 "$hport")" = "$want-b" ] || e2e_round_fail "host: port $hport does not reach $b after $a's removal"
    [ "$(e2e_get_host "$gw" "$hport")" = "$want-b" ] || e2e_round_fail "host: $gw:$hport does not reach $b after $a's removal"
    [ "$(get_in c "$gw" "$hport")" = "$want-b" ] || e2e_round_fail "$c: $gw:$hport does not reach $b after $a's removal"

    # Teardown of the round: nothing of A, B or C may be left.
    pm rm -f -t 0 "$b" "$c" >/dev/null
    e2e_leftovers --cid "$CID_a" --cid "$CID_b" --cid "$CID_c" --ip "$IP_a" --ip "$IP_b" --ip "$IP_c" --ip "$old_ip" \
      --port "$hport" --veth "$VETH_a" --veth "$VETH_b" --veth "$VETH_c" --path "$NS_a" --path "$NS_b" --path "$NS_c" \
      --ipam "$ipam_dir" --cache /var/lib/cni/results --cache /run/cni/tuning --bridge "$br" --no-container-chains ||
      e2e_round_fail "state left behind after podman rm"
    e2e_no_growth "$r" || e2e_round_fail "firewall objects accumulate from round to round"
    for x in "$CID_a" "$CID_b" "$CID_c"; do require_lifecycle "$x"; done
    e2e_round_pass
  done

  pm network rm "$net" >/dev/null
  ip link show "$br" >/dev/null 2>&1 && fail "bridge $br left after podman network rm"
  [ -e "$conflist" ] && fail "$conflist left after podman network rm"
  e2e_leftovers --ipam "$ipam_dir" --cache /var/lib/cni/results --port "$hport" || fail "state left behind after podman network rm"
  log "podman network rm: no link, rule, reservation, cache entry or netns left"
  e2e_check_calls
  awk '$1 == "DEL" && / container cleanup / { f = 1 } END { exit !f }' "$E2E_LOG" ||
    fail "no DEL was run by \`podman container cleanup\`: the conmon path was not exercised"
  grep -q ' loopback ' "$E2E_LOG" || log "loopback: not called (Podman brings lo up itself, it never execs the loopback plugin)"
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
  echo "podman e2e: skipped (needs root)" >&2
  exit 0
fi
missing=()
for c in podman runc unshare nft ip ss shuf jq ping; do command -v $c >/dev/null || missing+=("$c"); done
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
for d in /var/lib/cni /var/lib/containers /etc/containers /run/netns /run/runc /run/cni; do
  [ -d "$d" ] || { mkdir -p "$d"; made_dirs+=("$d"); }
done
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
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM

rc=0
for scenario in ${RCNI_E2E_SCENARIOS:-ok broken}; do
  T=$(mktemp -d /tmp/rcni-podman-e2e.XXXXXX)
  start=$(date +%s.%N)
  echo "== podman e2e: $scenario, $rounds rounds (plugins from $src)"
  if unshare --mount --propagation private -- "$0" --inner "$scenario" "$T" "$src" "$rounds"; then
    awk -v s="$start" -v e="$(date +%s.%N)" -v n="$scenario" 'BEGIN { printf "   %s: PASS, %.1f s\n", n, e - s }'
  else
    echo "== podman e2e: $scenario FAILED" >&2
    rc=1
  fi
  if [ "${RCNI_E2E_KEEP:-0}" = 1 ]; then echo "   kept $T" >&2; else rm -rf "$T"; fi
  T=""
done
exit $rc
