# Shared helpers of the runtime e2e scripts (podman.sh, containerd.sh,
# isolator.sh); sourced, not run. Every helper works inside the private
# mount namespace the script's inner part runs in.
#
#   e2e_init T TAG            the scenario's temp dir and message tag; sets E2E_LOG
#   e2e_wrap DIR NAME REAL    a logging wrapper DIR/NAME that runs a copy of REAL
#   e2e_tripwire_go_dir       logging wrappers over /usr/lib/cni (Debian's Go plugins)
#   e2e_check_calls           every bridge/host-local/loopback/portmap call was rcni's
#   e2e_require_call CMD PLUGIN CID   such a call was logged (by rcni, exit 0)
#   e2e_leftovers ARGS        what is left of removed containers (see below)
#   e2e_objects               every nft table/chain/set/map (element counts) and iptables chain
#   e2e_no_growth ROUND       the firewall objects after this round are those after round 1
#   e2e_host_snapshot         the host state run.sh compares before and after the runtime tests
#   e2e_rootfs DIR CONTENT    a busybox-static root filesystem
#   e2e_free_subnet / e2e_free_port   a free 10.222.N.0/24 (sets E2E_N), a free TCP port
#   e2e_round_begin/_pass/_fail, e2e_round_on_exit   one PASS/FAIL line per round
#   e2e_wait_http ADDR PORT WANT   waits for a container's server
#   e2e_remove_new_tables     deletes the plugins' CNI-* iptables chains and nft tables made
#                             since e2e_init (tables only when nothing else is in them)
#   e2e_kill_namespace_procs  ends the processes left in the scenario's mount namespace
#
# The call log, one line per plugin exec, written by the wrapper itself with
# paths baked into the wrapper file (a runtime may run the DEL from a process
# that has none of the caller's environment, e.g. `podman container cleanup`
# started by conmon):
#   COMMAND PLUGIN IMPL EXIT-CODE CONTAINER-ID IFNAME PARENT-COMMAND-LINE
# IMPL is rcni (the binary carries rcni's marker), go (any other binary), or
# tripwire-go (Debian's Go plugin reached through /usr/lib/cni, a path no
# runtime here is configured to use).

# grep -q in a pipeline may exit before the writer is done, which then dies of
# SIGPIPE and, with pipefail, turns a match into a failure: read it all.
e2e_has() { grep "$@" >/dev/null; }
e2e_log() { printf '   [%s] %s\n' "$E2E_TAG" "$*"; }
# Inside a round (e2e_round_begin), also prints the round's FAIL line.
e2e_fail() {
  if [ -n "${E2E_ROUND:-}" ]; then
    printf '   [%s] round %s: FAIL (%s)\n' "$E2E_TAG" "$E2E_ROUND" "$*"
    printf '   [%s] FAIL: round %s: %s\n' "$E2E_TAG" "$E2E_ROUND" "$*" >&2
    E2E_ROUND=""
    exit 1
  fi
  printf '   [%s] FAIL: %s\n' "$E2E_TAG" "$*" >&2
  exit 1
}
e2e_now() { date +%s.%N; }
e2e_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }'; }

e2e_init() { # T TAG
  E2E_T=$1 E2E_TAG=$2
  E2E_LOG=$E2E_T/invocations.log
  : >"$E2E_LOG"
  E2E_TABLES_BEFORE=$(nft list tables 2>/dev/null || true)
  E2E_CHAINS_BEFORE=$(e2e_ipt_chains)
  E2E_OBJECTS_BEFORE=$(e2e_objects)
  E2E_ROUND="" E2E_LAST_ERR="" E2E_FAILED_CMD=""
  # The command that made `set -e` end the script, for the round's FAIL line.
  set -E
  trap 'E2E_LAST_ERR="line $LINENO: $BASH_COMMAND"' ERR
  # A signal ends the script through its EXIT trap (the cleanup).
  trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
}

# One PASS or FAIL line per round: e2e_round_begin N, then e2e_round_pass,
# or e2e_round_fail MESSAGE (exits); a command failing under `set -e` in
# between gets its FAIL line from e2e_round_on_exit (call it in the EXIT trap).
e2e_round_begin() { E2E_ROUND=$1 E2E_ROUND_START=$(e2e_now); }
e2e_round_pass() {
  printf '   [%s] round %s: PASS (%s%s)\n' "$E2E_TAG" "$E2E_ROUND" "$(e2e_since "$E2E_ROUND_START")" "${1:+, $1}"
  E2E_ROUND=""
}
e2e_round_fail() { e2e_fail "$@"; }
e2e_round_on_exit() { # EXIT-CODE
  [ "$1" -ne 0 ] && [ -n "$E2E_ROUND" ] &&
    printf '   [%s] round %s: FAIL (exit code %s at %s)\n' "$E2E_TAG" "$E2E_ROUND" "$1" "${E2E_FAILED_CMD:-${E2E_LAST_ERR:-?}}"
  E2E_ROUND=""
  return 0
}

e2e_impl_of() {
  if [ "$(head -c 2 "$1")" = '#!' ]; then echo script
  elif grep -aq 'rcni CNI plugin' "$1"; then echo rcni
  else echo go; fi
}

# A wrapper that runs a copy of REAL (stdin, stdout and arguments pass
# through), then appends one line to the call log. Nothing in it reads the
# caller's environment except the CNI_* variables it logs.
#
# RCNI_E2E_BREAK=PLUGIN:COMMAND:fail|skip (read when the wrapper is written,
# baked into it) breaks one plugin on purpose, to see the tests fail: `fail`
# answers COMMAND with a CNI error and exit code 1, `skip` answers it with
# success without running the plugin (a DEL that removes nothing).
e2e_wrap() { # DIR NAME REAL [IMPL]
  local dir=$1 name=$2 real=$3 impl=${4:-} run brk=${RCNI_E2E_BREAK:-}
  mkdir -p "$dir/.impl"
  install -m 0755 "$real" "$dir/.impl/$name"
  [ -n "$impl" ] || impl=$(e2e_impl_of "$real")
  run="\"$dir/.impl/$name\" \"\$@\""
  if [ "${brk%%:*}" = "$name" ]; then
    local bcmd=${brk#*:}
    case ${bcmd#*:} in
      fail) run="if [ \"\$CNI_COMMAND\" = ${bcmd%%:*} ]; then echo '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"rcni e2e: deliberately broken\"}'; false; else $run; fi" ;;
      skip) run="if [ \"\$CNI_COMMAND\" = ${bcmd%%:*} ]; then cat >/dev/null; else $run; fi" ;;
    esac
    impl=$impl-broken
  fi
  cat >"$dir/$name" <<EOF
#!/bin/sh
# rcni e2e logging wrapper: $name -> $impl ($real)
$run
rc=\$?
parent=\$(tr '\\0' ' ' </proc/\$PPID/cmdline 2>/dev/null | cut -c1-2000)
echo "\${CNI_COMMAND:--} $name $impl \$rc \${CNI_CONTAINERID:--} \${CNI_IFNAME:--} \$parent" >>"$E2E_LOG"
exit \$rc
EOF
  chmod 0755 "$dir/$name"
}

# Debian's Go plugins stay usable, but every call through /usr/lib/cni is
# logged as tripwire-go: a runtime that fell back to its default plugin dirs
# (a cleanup process without the config) shows up there.
e2e_tripwire_go_dir() {
  [ -d /usr/lib/cni ] || return 0
  local d=$E2E_T/tripwire-usr-lib-cni p
  mkdir -p "$d"
  for p in /usr/lib/cni/*; do
    [ -f "$p" ] && [ -x "$p" ] || continue
    e2e_wrap "$d" "${p##*/}" "$p" tripwire-go
  done
  mount --bind "$d" /usr/lib/cni
}

E2E_RCNI_PLUGINS="bridge host-local loopback portmap"

# Fails when any call of bridge/host-local/loopback/portmap was not rcni's,
# when anything went through the tripwire, or (unless ALLOW_FAIL) when one of
# rcni's calls exited non-zero. Prints the summary of all calls.
e2e_check_calls() { # [ALLOW_FAIL [ALLOWED_IMPL]]
  local allow_fail=${1:-0} allowed=${2:-rcni} bad
  e2e_log "plugin calls (count command plugin impl exit-code):"
  awk '{print $1, $2, $3, $4}' "$E2E_LOG" | sort | uniq -c | sort -k3,3 -k2,2 | sed 's/^/     /'
  e2e_log "DEL callers (count caller plugin): $(awk '$1 == "DEL" { print e2e_caller($0) " " $2 }'"$E2E_CALLER_AWK" "$E2E_LOG" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
  bad=$(awk -v p=" $E2E_RCNI_PLUGINS " -v a="$allowed" 'index(p, " " $2 " ") && $3 != "rcni" && $3 != a' "$E2E_LOG")
  [ -z "$bad" ] || { printf '%s\n' "$bad" | sed 's/^/     /' >&2; e2e_fail "bridge/host-local/loopback/portmap calls above were not served by rcni's binaries"; }
  bad=$(awk '$3 == "tripwire-go"' "$E2E_LOG")
  [ -z "$bad" ] || { printf '%s\n' "$bad" | sed 's/^/     /' >&2; e2e_fail "plugins were exec'd from /usr/lib/cni (Debian's Go plugins), not from the configured plugin dir"; }
  if [ "$allow_fail" != 1 ]; then
    bad=$(awk -v p=" $E2E_RCNI_PLUGINS " 'index(p, " " $2 " ") && $4 != 0' "$E2E_LOG")
    [ -z "$bad" ] || { printf '%s\n' "$bad" | sed 's/^/     /' >&2; e2e_fail "rcni plugin calls above exited non-zero"; }
  fi
  return 0
}

# awk function: the calling program and its subcommand, from a log line.
E2E_CALLER_AWK='
function e2e_caller(line,    w, n, i, name, verb) {
  n = split(line, w, " ")
  name = w[7]; sub(/.*\//, "", name)
  for (i = 8; i <= n; i++)
    if (w[i] ~ /^(run|rm|restart|kill|stop|start|create|cleanup|exec|network|container|task|attach|detach|delete)$/) {
      verb = verb " " w[i]
      if (w[i] != "container" && w[i] != "network" && w[i] != "task") break
    }
  return name verb
}'

# The caller of the last CMD of PLUGIN for CID.
e2e_caller_of() { # CMD PLUGIN CID
  awk -v c="$1" -v p="$2" -v id="$3" '$1 == c && $2 == p && $5 == id { l = e2e_caller($0) } END { print l }'"$E2E_CALLER_AWK" "$E2E_LOG"
}

e2e_require_call() { # CMD PLUGIN CID
  awk -v c="$1" -v p="$2" -v id="$3" '$1 == c && $2 == p && $3 == "rcni" && $4 == 0 && $5 == id { f = 1 } END { exit !f }' "$E2E_LOG" ||
    e2e_fail "no successful $1 of rcni's $2 logged for container $3"
}

# Waits (up to ~10 s) until the call log holds COUNT (default 1) calls CMD
# of PLUGIN for CID.
e2e_wait_call() { # CMD PLUGIN CID [COUNT]
  local i
  for i in $(seq 1 100); do
    awk -v c="$1" -v p="$2" -v id="$3" -v n="${4:-1}" '$1 == c && $2 == p && $5 == id { f++ } END { exit !(f >= n) }' "$E2E_LOG" && return 0
    sleep 0.1
  done
  return 1
}

# What is left of removed containers, from the kernel and the plugins' files.
#   --cid ID       no nft element/rule/chain, iptables rule, cache entry or
#                  host-local reservation names it (IDs longer than 32
#                  characters are matched by their first 32: comments get cut)
#   --ip ADDR      no nft element/rule and no iptables rule holds it, no reservation file is named so
#   --port P       no nft element/rule and no iptables rule matches port P
#   --veth NAME    no such link; --bridge BR: no link is enslaved to BR
#   --path PATH    PATH does not exist (netns bind mounts, state dirs)
#   --ipam DIR     DIR (host-local's dir of one network) holds no reservation
#   --cache DIR    DIR (a CNI cache results dir) holds no entry
# Prints one line per finding; returns 1 when there is any.
e2e_leftovers_once() {
  local cids=() ips=() ports=() veths=() paths=() ipams=() caches=() bridges=() nochains=0
  while [ $# -gt 0 ]; do
    case $1 in
      --cid) cids+=("${2:0:32}") ;;
      --ip) ips+=("$2") ;;
      --port) ports+=("$2") ;;
      --veth) veths+=("$2") ;;
      --path) paths+=("$2") ;;
      --ipam) ipams+=("$2") ;;
      --cache) caches+=("$2") ;;
      --bridge) bridges+=("$2") ;;
      --no-container-chains) nochains=1; shift; continue ;;
      *) echo "e2e_leftovers: bad argument $1" >&2; return 2 ;;
    esac
    shift 2
  done
  local found=() x f line
  # Per-container chains (bridge ipMasq's CNI-<24 hex>, portmap's
  # CNI-DN-<hex>), in any table of either family, even empty ones.
  if [ "$nochains" = 1 ]; then
    while IFS= read -r line; do [ -n "$line" ] && found+=("per-container chain $line"); done < <(e2e_objects | grep -E ' chain CNI-([0-9a-f]{24}|DN-[0-9a-f]+)$')
  fi
  # nftables: every rule (expressions and comment), every set/map element,
  # every chain name.
  local nj needles=()
  nj=$(nft -j list ruleset 2>/dev/null) || nj='{"nftables":[]}'
  for x in "${cids[@]}"; do needles+=("s:$x"); done
  for x in "${ips[@]}"; do needles+=("q:$x"); done
  while IFS= read -r line; do [ -n "$line" ] && found+=("nft $line"); done < <(
    jq -r --argjson ports "[$(IFS=,; echo "${ports[*]}")]" '
      def items: .nftables[] |
        if .rule then {w: "rule \(.rule.family) \(.rule.table) \(.rule.chain)", o: {expr: .rule.expr, comment: .rule.comment}}
        elif .set then .set as $s | ($s.elem // [])[] | {w: "set \($s.family) \($s.table) \($s.name) element", o: .}
        elif .map then .map as $s | ($s.elem // [])[] | {w: "map \($s.family) \($s.table) \($s.name) element", o: .}
        elif .chain then {w: "chain \(.chain.family) \(.chain.table)", o: .chain.name}
        else empty end;
      $ARGS.positional as $n |
      items | (.o | tojson) as $t |
      [ ($n[] | . as $x | select(($x | startswith("s:") and ($t | contains($x[2:]))) or ($x | startswith("q:") and ($t | contains("\"" + $x[2:] + "\""))))),
        ([.o | paths(numbers) as $p | getpath($p)] | map(select(. as $v | $ports | index($v))) | .[] | "port \(.)") ] as $hits |
      select($hits | length > 0) |
      "\(.w) [\($hits | map(sub("^[sq]:"; "")) | join(", "))]: \($t | .[0:300])"
    ' --args "${needles[@]}" <<<"$nj" 2>/dev/null)
  # iptables (nft-backed and legacy), every table.
  local save text
  for save in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save; do
    command -v $save >/dev/null || continue
    text=$($save 2>/dev/null | grep -v '^#') || continue
    [ -n "$text" ] || continue
    # One grep per kind of needle (each spawn counts on a loaded machine).
    local pat=()
    if [ ${#cids[@]} -gt 0 ]; then
      pat=()
      for x in "${cids[@]}"; do pat+=(-e "$x"); done
      while IFS= read -r line; do [ -n "$line" ] && found+=("$save [container ID]: $line"); done < <(grep -F "${pat[@]}" <<<"$text")
    fi
    if [ ${#ips[@]} -gt 0 ]; then
      pat=()
      for x in "${ips[@]}"; do pat+=(-e "(^| |,)${x//./\\.}(/(32|128))?( |:|,|$)"); done
      while IFS= read -r line; do [ -n "$line" ] && found+=("$save [address]: $line"); done < <(grep -E "${pat[@]}" <<<"$text")
    fi
    if [ ${#ports[@]} -gt 0 ]; then
      pat=()
      for x in "${ports[@]}"; do pat+=(-e "(--dport|--dports|--to-ports|dport) $x([^0-9]|$)"); done
      while IFS= read -r line; do [ -n "$line" ] && found+=("$save [port]: $line"); done < <(grep -E "${pat[@]}" <<<"$text")
    fi
  done
  for x in "${veths[@]}"; do
    ip link show dev "$x" >/dev/null 2>&1 && found+=("link $x still exists: $(ip -o link show dev "$x" | cut -c1-160)")
  done
  for x in "${bridges[@]}"; do
    while IFS= read -r line; do [ -n "$line" ] && found+=("link on bridge $x: $line"); done < <(ip -o link show master "$x" 2>/dev/null | cut -c1-160)
  done
  for x in "${paths[@]}"; do
    [ -e "$x" ] && found+=("$x still exists")
  done
  for x in "${ipams[@]}"; do
    for f in "$x"/*; do
      [ -e "$f" ] || continue
      case ${f##*/} in lock | last_reserved_ip.*) continue ;; esac
      found+=("host-local reservation $f ($(head -c 80 "$f" | tr '\n' ' '))")
    done
  done
  for x in "${caches[@]}"; do
    for f in "$x"/*; do [ -e "$f" ] && found+=("CNI cache entry $f"); done
  done
  # Reservations and cache entries that name a removed container or address,
  # in any network.
  for f in /var/lib/cni/networks/*/* /var/lib/cni/results/*; do
    [ -f "$f" ] || continue
    case ${f##*/} in lock | last_reserved_ip.*) continue ;; esac
    for x in "${cids[@]}"; do
      case ${f##*/} in *"$x"*) found+=("file $f names container $x"); continue 2 ;; esac
      [ "${f#/var/lib/cni/networks/}" != "$f" ] && head -n 1 "$f" | e2e_has -F -- "$x" && { found+=("host-local reservation $f is container $x's"); continue 2; }
    done
    for x in "${ips[@]}"; do
      [ "${f##*/}" = "$x" ] && found+=("host-local reservation $f of removed address $x")
    done
  done
  [ ${#found[@]} -eq 0 ] && return 0
  # Duplicates (an ipam dir check and the by-container check) once.
  printf '%s\n' "${found[@]}" | awk '!seen[$0]++' | sed 's/^/     left: /'
  return 1
}

# Every firewall object by name: nft tables, chains, sets, maps (with their
# element counts) and iptables chains of every table and family, one a line.
e2e_objects() {
  local s t
  nft -j list ruleset 2>/dev/null | jq -r '.nftables[] |
    if .table then "nft \(.table.family) \(.table.name) table"
    elif .chain then "nft \(.chain.family) \(.chain.table) chain \(.chain.name)"
    elif .set then "nft \(.set.family) \(.set.table) set \(.set.name) elements \(.set.elem // [] | length)"
    elif .map then "nft \(.map.family) \(.map.table) map \(.map.name) elements \(.map.elem // [] | length)"
    else empty end' 2>/dev/null | sort
  for s in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save; do
    command -v $s >/dev/null || continue
    $s 2>/dev/null | awk -v s="$s" '/^\*/ { t = substr($0, 2) } /^:/ { print s " " t " chain " substr($1, 2) }' | sort
  done
  return 0
}

# Rounds after the first must end with the same firewall objects as the
# first (nothing grows per round: no chain, set, map or element accumulates).
# Call after each round's teardown.
e2e_no_growth() { # ROUND
  local now
  now=$(e2e_objects)
  if [ "$1" = 1 ]; then
    printf '%s\n' "$now" >"$E2E_T/objects-after-round-1"
    return 0
  fi
  local d
  d=$(diff "$E2E_T/objects-after-round-1" <(printf '%s\n' "$now") | grep '^[<>]' || true)
  [ -z "$d" ] && return 0
  echo "     firewall objects differ from the end of round 1 (< round 1, > now):" >&2
  printf '%s\n' "$d" | sed 's/^/       /' >&2
  return 1
}

# e2e_leftovers_once, retried for up to ~5 s: a netns (and with it the
# veth) goes away asynchronously after its last user, and a runtime's
# cleanup process may still be running.
e2e_leftovers() {
  local i out
  for i in $(seq 1 20); do
    out=$(e2e_leftovers_once "$@") && return 0
    sleep 0.25
  done
  printf '%s\n' "$out" >&2
  return 1
}

# A root filesystem from Debian's busybox-static: /www/index.html says CONTENT,
# /www-b/index.html says CONTENT-b.
e2e_rootfs() { # DIR CONTENT
  local r=$1 a
  mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/www" "$r/www-b" "$r/proc" "$r/sys" "$r/dev" "$r/root"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"; done
  echo "root:x:0:0:root:/root:/bin/sh" >"$r/etc/passwd"
  echo "root:x:0:" >"$r/etc/group"
  echo "$2" >"$r/www/index.html"
  echo "$2-b" >"$r/www-b/index.html"
}

# A /24 in 10.222.0.0/16 that no route or address on this host uses: sets
# E2E_N (the third octet), E2E_SUBNET, E2E_PFX ("10.222.N.").
e2e_free_subnet() {
  local routes n
  routes=$(ip -4 route show table all; ip -4 addr show)
  E2E_N=""
  for n in $(shuf -i 1-254); do
    grep -q "10\.222\.$n\." <<<"$routes" && continue
    E2E_N=$n E2E_SUBNET=10.222.$n.0/24 E2E_PFX=10.222.$n.
    return 0
  done
  e2e_fail "no free /24 in 10.222.0.0/16"
}

e2e_free_port() {
  local p
  for p in $(shuf -i 20000-29999 -n 50); do
    ss -Htanu | awk '{print $5}' | e2e_has ":$p\$" && continue
    echo "$p"
    return 0
  done
  e2e_fail "no free port"
}

# HTTP/1.0 GET over busybox nc; prints the body's last line.
e2e_http_get() { printf 'GET / HTTP/1.0\r\n\r\n' | "$@" 2>&1 | tr -d '\r' | tail -n 1 || true; }
e2e_get_host() { e2e_http_get /bin/busybox nc -w 5 "$1" "$2"; }
# Waits (up to ~10 s) until ADDR:PORT answers WANT: the server in a container
# starts a moment after the runtime reports the container (cni-isolator
# prints its status before it lets the command run).
e2e_wait_http() { # ADDR PORT WANT
  local i
  for i in $(seq 1 50); do
    [ "$(e2e_get_host "$1" "$2")" = "$3" ] && return 0
    sleep 0.2
  done
  return 1
}

# The plugins keep their tables and shared chains once made (Go's do too);
# the ones that appeared during this scenario are removed at its end.
# A table is removed only when it holds nothing but the plugins' empty shared
# objects: no set or map element, no per-address masquerade rule, and in the
# iptables tables no chain but the built-in and the plugins' shared ones
# (so a table that someone else started using meanwhile stays).
e2e_table_only_shared() { # FAMILY NAME
  local j
  j=$(nft -j list table "$1" "$2" 2>/dev/null) || return 1
  jq -e '[.nftables[] | (.set // .map // empty) | (.elem // []) | length] | add // 0 | . == 0' <<<"$j" >/dev/null || return 1
  case $2 in
    nat | filter)
      jq -r '.nftables[] | .chain.name // empty' <<<"$j" |
        e2e_has -Evx 'PREROUTING|INPUT|OUTPUT|POSTROUTING|FORWARD|CNI-HOSTPORT-(DNAT|MASQ|SETMARK)|CNI-FORWARD|CNI-ADMIN' && return 1 ;;
    cni_plugins_masquerade)
      jq -e '[.nftables[] | .rule // empty | select(.chain == "masq_checks")] | length == 0' <<<"$j" >/dev/null || return 1 ;;
  esac
  return 0
}

# The plugins' iptables chains (CNI-*) that appeared during the scenario,
# also in tables that were there before: the rules of older chains that jump
# to them, then the chains themselves, in one iptables-restore --noflush per
# table (the same syntax as iptables-save, so quoting is kept).
e2e_ipt_chains() {
  local s
  for s in iptables ip6tables; do
    command -v $s-save >/dev/null || continue
    $s-save 2>/dev/null | awk -v s="$s" '/^\*/ { t = substr($0, 2) } /^:/ { print s " " t " " substr($1, 2) }'
  done
  return 0
}
e2e_remove_new_chains() {
  local s t text new script
  for s in iptables ip6tables; do
    command -v $s-save >/dev/null || continue
    text=$($s-save 2>/dev/null) || continue
    for t in $(awk '/^\*/ { print substr($0, 2) }' <<<"$text"); do
      new=$(awk -v s="$s" -v t="$t" '$1 == s && $2 == t && $3 ~ /^CNI-/ { print $3 }' <(e2e_ipt_chains) |
        grep -vxF -f <(awk -v s="$s" -v t="$t" '$1 == s && $2 == t { print $3 }' <<<"$E2E_CHAINS_BEFORE") || true)
      [ -n "$new" ] || continue
      script=$(awk -v t="$t" -v new="$new" '
        BEGIN { n = split(new, a, "\n"); for (i = 1; i <= n; i++) isnew[a[i]] = 1 }
        /^\*/ { cur = substr($0, 2); next }
        cur == t && $1 == "-A" && !($2 in isnew) {
          for (i = 3; i < NF; i++) if (($i == "-j" || $i == "-g") && ($(i + 1) in isnew)) { sub(/^-A/, "-D"); print; break }
        }
        END { for (c in isnew) print "-F " c; for (c in isnew) print "-X " c }' <<<"$text")
      if printf '*%s\n%s\nCOMMIT\n' "$t" "$script" | $s-restore --noflush 2>/dev/null; then
        e2e_log "removed $s $t chains made during this scenario: $(tr '\n' ' ' <<<"$new")"
      else
        e2e_log "could not remove $s $t chains $(tr '\n' ' ' <<<"$new")"
      fi
    done
  done
}

e2e_remove_new_tables() {
  local t
  e2e_remove_new_chains
  while read -r t; do
    [ -n "$t" ] || continue
    grep -qxF "$t" <<<"$E2E_TABLES_BEFORE" && continue
    case "$t" in
      "table ip nat" | "table ip filter" | "table ip6 nat" | "table ip6 filter" | "table ip cni_hostport" | \
        "table ip6 cni_hostport" | "table inet cni_plugins_masquerade")
        # shellcheck disable=SC2086
        if e2e_table_only_shared ${t#table }; then
          nft delete $t && e2e_log "removed $t (made during this scenario)"
        else
          e2e_log "kept $t (made during this scenario, but it holds objects the plugins did not make for it)"
        fi ;;
    esac
  done <<<"$(nft list tables 2>/dev/null)"
  # In nft tables that were there before, the plugins' shared objects for
  # this scenario's networks stay (empty): say which.
  local left
  left=$(diff <(printf '%s\n' "$E2E_OBJECTS_BEFORE" | grep '^nft ' | sed 's/ elements [0-9]*$//') \
    <(e2e_objects | grep '^nft ' | sed 's/ elements [0-9]*$//') | sed -n 's/^> //p' || true)
  [ -z "$left" ] || e2e_log "left in nft tables that were there before: $(tr '\n' ';' <<<"$left")"
  return 0
}

# Ends every process left in this mount namespace (all of them were started
# by this scenario: the namespace is its own) and their descendants, which
# may be in mount namespaces of their own (a container's init under conmon,
# containerd's shim or cni-isolator), by pid.
e2e_kill_namespace_procs() {
  local me p pp pids=() ppids
  me=$(readlink /proc/$$/ns/mnt)
  declare -A ours=()
  ppids=$(for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
    pp=$(awk '/^PPid:/ { print $2 }' /proc/$p/status 2>/dev/null) || continue
    [ -n "$pp" ] || continue
    if [ "$(readlink /proc/$p/ns/mnt 2>/dev/null)" = "$me" ]; then echo "$p $pp ours"; else echo "$p $pp"; fi
  done)
  while read -r p pp mark; do
    [ -n "$mark" ] && ours[$p]=1
  done <<<"$ppids"
  [ ${#ours[@]} -eq 0 ] && return 0
  # Descendants, to a fixed point.
  local grew=1
  while [ $grew = 1 ]; do
    grew=0
    while read -r p pp mark; do
      [ -n "$p" ] && [ -z "${ours[$p]:-}" ] && [ -n "${ours[$pp]:-}" ] && { ours[$p]=1; grew=1; }
    done <<<"$ppids"
  done
  for p in "${!ours[@]}"; do [ -d "/proc/$p" ] && pids+=("$p"); done
  [ ${#pids[@]} -eq 0 ] && return 0
  e2e_log "ending processes left by the scenario: $(for p in "${pids[@]}"; do printf '%s(%s) ' "$p" "$(cat /proc/$p/comm 2>/dev/null)"; done)"
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

# What the runtime e2e scripts must leave as they found it (scripts/e2e/run.sh
# compares this before and after them): the links they can make (Podman's
# cni-podmanN, the rcnictr-/rcniiso- bridges, veths), named netns (but the
# Rust integration tests' own rcni-*), nft tables, iptables rules, mounts on
# the paths they mount over, and the files of the CNI, Podman and containerd
# dirs. (Limited to those so that other tests running at the same time on a
# developer's machine do not show up.)
e2e_host_snapshot() {
  local s d
  echo "## links"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^(cni-podman|rcnictr-|rcniiso-|veth)' | sort || true
  echo "## netns"
  ip netns list 2>/dev/null | awk '{print $1}' | grep -v '^rcni-' | sort || true
  echo "## nft tables"
  nft list tables 2>/dev/null | sort || true
  for s in iptables-save ip6tables-save iptables-legacy-save ip6tables-legacy-save; do
    command -v $s >/dev/null || continue
    echo "## $s"
    $s 2>/dev/null | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//' || true
  done
  echo "## mounts"
  findmnt -rn -o TARGET | grep -E '^/(etc/cni|opt/cni|etc/containers|var/lib/cni|var/lib/containers|run/(cni|runc|containers|libpod|containerd|netns/)|dev/shm|tmp/rcni-(podman|ctr|iso)-e2e)' |
    grep -v '^/run/netns/rcni-' | sort || true
  echo "## files"
  for d in /etc/cni /opt/cni /var/lib/cni /run/cni /run/runc /run/containers /run/libpod /var/lib/containers \
    /etc/containers /run/containerd /var/lib/containerd /opt/containerd /run/lock/rcni-iptables.lock; do
    [ -e "$d" ] && find "$d" -printf '%p %M %s\n' | sort
  done
  return 0
}
