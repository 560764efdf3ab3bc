#!/usr/bin/env bash
# cni-isolator end to end: `cni-isolator run --publish` (isolator/src/bin/
# cni-isolator) on a bridge + host-local + portmap network, with rcni's
# plugins behind logging wrappers, several rounds on the same host state.
#
#   scripts/e2e/isolator.sh [PLUGIN_DIR] [ISOLATOR_DIR] [ROUNDS]
#       (as root; defaults: target/debug for both, 3 rounds)
#
# ISOLATOR_DIR holds cni-isolator and cni-isolator-setup; both are copied
# into the temp dir first (a rebuild during the test cannot swap them). Runs
# in a private mount namespace with the temp dir bind-mounted over
# /var/lib/cni (host-local data); the isolator's --root-dir, --config-dir and
# --plugins-dir are in the temp dir, /usr/lib/cni is covered with tripwire
# wrappers. The network uses portmap's iptables backend and the bridge's
# default ipMasq backend (the podman and containerd tests cover the nftables
# ones). Each round, on the same host state (nothing reset in between):
#   `cni-isolator --json run --id ID --network NET --publish P:80 --
#   busybox httpd -f -p 80` in the background; from its status line: the
#   address (must be host-local's reservation for ID, and on eth0 of the
#   netns it names); `cni-isolator check ID` (CNI CHECK) and `list`; the host
#   pings the address and fetches from it directly, through 127.0.0.1:P and
#   through the gateway:P; then SIGTERM to cni-isolator (forwarded to httpd):
#   it must DEL and exit; nothing may be left (nft/iptables rules naming ID,
#   the address or P, reservations, the veth, the netns, the isolator's state
#   for ID, per-container CNI-* chains), the firewall objects must be those
#   after round 1 (nothing accumulates), and every plugin call must have been
#   rcni's.
# Prints PASS/FAIL per round; removes everything it made, also on failure.
#
# Environment: RCNI_E2E_KEEP=1 keeps the temp dir; RCNI_E2E_TRACE=1 traces;
# RCNI_E2E_BREAK=PLUGIN:COMMAND:fail|skip breaks one plugin on purpose (lib.sh).
set -euo pipefail

if [ "${1:-}" = "--inner" ]; then
  T=$2 src=$3 rounds=$4
  if [ "${RCNI_E2E_TRACE:-0}" = 1 ]; then PS4='+ $EPOCHREALTIME '; set -x; fi
  # shellcheck source=scripts/e2e/lib.sh
  . "$(dirname "$0")/lib.sh"
  e2e_init "$T" isolator
  log() { e2e_log "$@"; }
  fail() { e2e_fail "$@"; }
  id=${T##*.}
  id=$(printf '%s' "$id" | tr 'A-Z' 'a-z')

  mkdir -p "$T/var-lib-cni" "$T/plugins" "$T/net.d" "$T/root" "$T/www"
  mount --bind "$T/var-lib-cni" /var/lib/cni
  for p in $E2E_RCNI_PLUGINS; do e2e_wrap "$T/plugins" "$p" "$src/$p"; done
  e2e_tripwire_go_dir

  e2e_free_subnet
  subnet=$E2E_SUBNET pfx=$E2E_PFX gw=${E2E_PFX}1
  hport=$(e2e_free_port)
  br=rcniiso-$id
  net=rcni-e2e-iso-$id
  cat >"$T/net.d/10-rcni-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$net",
  "plugins": [
    {"type": "bridge", "bridge": "$br", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$subnet", "gateway": "$gw"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "backend": "iptables", "capabilities": {"portMappings": true}}
  ]
}
EOF
  jq -e . "$T/net.d/10-rcni-e2e.conflist" >/dev/null || fail "bad conflist"
  echo "rcni-e2e-$id" >"$T/www/index.html"
  ipam_dir=/var/lib/cni/networks/$net
  # An empty environment: the plugins' wrappers need none of the caller's.
  iso_cmd=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$T/iso/cni-isolator"
    --config-dir "$T/net.d" --plugins-dir "$T/plugins" --root-dir "$T/root")
  iso() { "${iso_cmd[@]}" "$@"; }
  [ "$(iso networks)" = "$net" ] || fail "cni-isolator networks: $(iso networks 2>&1)"
  log "network $net: bridge $br, $subnet, portmap backend iptables, host port $hport -> 80; cni-isolator $(iso --version 2>/dev/null || true)"

  ipid=""
  cleanup() {
    local rc=$? c
    set +e
    e2e_round_on_exit $rc
    if [ -n "$ipid" ] && kill -0 "$ipid" 2>/dev/null; then
      kill -TERM "$ipid"
      for c in $(seq 1 100); do kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
    fi
    for c in $(iso --json list 2>/dev/null | jq -r '.id // empty' 2>/dev/null); do iso detach "$c" >/dev/null 2>&1; done
    e2e_kill_namespace_procs
    ip link del "$br" >/dev/null 2>&1
    e2e_remove_new_tables
    exit $rc
  }
  trap cleanup EXIT

  for r in $(seq 1 "$rounds"); do
    e2e_round_begin "$r"
    cid=rcni-e2e-iso-$id-r$r
    : >"$T/run-$r.out"
    "${iso_cmd[@]}" --json run --id "$cid" --network "$net" --publish "$hport:80" -- /bin/busybox httpd -f -p 80 -h "$T/www" \
      >"$T/run-$r.out" 2>"$T/run-$r.err" &
    ipid=$!
    status=""
    for i in $(seq 1 200); do
      status=$(head -n 1 "$T/run-$r.out")
      [ -n "$status" ] && break
      kill -0 "$ipid" 2>/dev/null || e2e_round_fail "cni-isolator run exited: $(cat "$T/run-$r.err" "$T/run-$r.out" | tr '\n' ' ')"
      sleep 0.1
    done
    [ -n "$status" ] || e2e_round_fail "no status line from cni-isolator run within 20 s"
    jq -e --arg id "$cid" '.id == $id' <<<"$status" >/dev/null || e2e_round_fail "status line is not $cid's: $status"
    ns=$(jq -r '.netns' <<<"$status")
    ip4=$(jq -r '[.network_infos[0].ip_addresses[].ip_address] | map(select(contains("."))) | .[0] // empty' <<<"$status")
    ip4=${ip4%/*}
    [ -n "$ip4" ] && [ "${ip4#"$pfx"}" != "$ip4" ] || e2e_round_fail "no address in $subnet in the status: $status"
    [ -e "$ns" ] || e2e_round_fail "netns $ns from the status does not exist"
    nsenter --net="$ns" ip -o -4 addr show dev eth0 | e2e_has " $ip4/" || e2e_round_fail "eth0 in $ns lacks $ip4"
    [ -f "$ipam_dir/$ip4" ] && grep -q "^$cid" "$ipam_dir/$ip4" || e2e_round_fail "no host-local reservation of $ip4 for $cid"
    veth=$(ip -o link show master "$br" 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//')
    [ "$(wc -w <<<"$veth")" = 1 ] || e2e_round_fail "expected one link on $br, found: $veth"
    iso check "$cid" >/dev/null 2>"$T/check-$r.err" || e2e_round_fail "cni-isolator check $cid: $(cat "$T/check-$r.err")"
    iso list 2>/dev/null | e2e_has "^$cid " || e2e_round_fail "cni-isolator list lacks $cid"

    ping -c 1 -i 0.2 -w 3 "$ip4" >/dev/null || e2e_round_fail "the host cannot ping $ip4"
    want="rcni-e2e-$id"
    e2e_wait_http "$ip4" 80 "$want" || e2e_round_fail "host: http://$ip4/ failed"
    [ "$(e2e_get_host 127.0.0.1 "$hport")" = "$want" ] || e2e_round_fail "host: published port http://127.0.0.1:$hport/ failed"
    [ "$(e2e_get_host "$gw" "$hport")" = "$want" ] || e2e_round_fail "host: published port http://$gw:$hport/ failed"
    [ "$r" = 1 ] && log "$cid: $ip4 (= reservation, on eth0 of $ns), veth $veth on $br; check, list; host: ping, http://$ip4/, 127.0.0.1:$hport, $gw:$hport ok"

    # SIGTERM goes to the command; cni-isolator then DELs and exits.
    kill -TERM "$ipid"
    for i in $(seq 1 200); do kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$ipid" 2>/dev/null && e2e_round_fail "cni-isolator did not exit within 20 s of SIGTERM"
    rc=0
    wait "$ipid" || rc=$?
    ipid=""
    grep -qi 'error\|warning' "$T/run-$r.err" && e2e_round_fail "cni-isolator reported: $(tr '\n' ' ' <"$T/run-$r.err")"
    [ -z "$(iso list 2>/dev/null)" ] || e2e_round_fail "cni-isolator list still shows: $(iso list 2>&1 | tr '\n' ' ')"
    e2e_leftovers --cid "$cid" --ip "$ip4" --port "$hport" --veth "$veth" --path "$ns" --path "$T/root/isolators/network/cni/$cid" \
      --ipam "$ipam_dir" --bridge "$br" --no-container-chains || e2e_round_fail "state of $cid ($ip4, port $hport) left behind"
    e2e_no_growth "$r" || e2e_round_fail "firewall objects accumulate from round to round"
    for p in bridge host-local portmap; do
      e2e_require_call ADD "$p" "$cid"
      e2e_require_call DEL "$p" "$cid"
    done
    e2e_round_pass "command exit code $rc"
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
isodir=${2:-$PWD/target/debug}
rounds=${3:-3}

if [ "$(id -u)" -ne 0 ]; then
  echo "isolator e2e: skipped (needs root)" >&2
  exit 0
fi
missing=()
for c in unshare nsenter nft ip ss shuf jq ping; do command -v $c >/dev/null || missing+=("$c"); done
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
for p in bridge host-local loopback portmap; do
  grep -aq 'rcni CNI plugin' "$src/$p" 2>/dev/null || missing+=("rcni $p in $src")
done
for b in cni-isolator cni-isolator-setup; do [ -x "$isodir/$b" ] || missing+=("$isodir/$b (cargo build -p cni-isolator)"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "isolator e2e: missing ${missing[*]}" >&2
  exit 1
fi

made_dirs=()
for d in /var/lib/cni; do
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

T=$(mktemp -d /tmp/rcni-iso-e2e.XXXXXX)
mkdir -p "$T/iso"
cp "$isodir/cni-isolator" "$isodir/cni-isolator-setup" "$T/iso/"
start=$(date +%s.%N)
echo "== isolator e2e: $rounds rounds (plugins from $src, cni-isolator from $isodir)"
if unshare --mount --propagation private -- "$0" --inner "$T" "$src" "$rounds"; then
  awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "   isolator: PASS, %.1f s\n", e - s }'
else
  echo "== isolator e2e: FAILED" >&2
  exit 1
fi
