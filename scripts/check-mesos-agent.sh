#!/usr/bin/env bash
# Runs tasks through a real Mesos agent with rcni's isolator module
# (network/cni_rs) and rcni's plugins, and checks what each task saw and what
# it left on the host. Not part of CI or scripts/test.sh: it needs a built
# Mesos tree, which this repository does not contain (how to build one:
# docs/runtimes/mesos.md). Needs root, cgroups v1 (freezer) for the agent's
# linux launcher, iptables, nft, curl, jq and busybox.
#
#   sudo scripts/check-mesos-agent.sh --mesos-build=DIR [--scenarios=1,2,...]
#        [--work=DIR] [--keep-logs=DIR] [--master-port=N] [--agent-port=N]
#
# DIR is a Mesos build dir (configure's output dir) in which
#   make -C src mesos-agent mesos-master mesos-execute mesos-executor \
#        mesos-containerizer mesos-default-executor
# has run. Its source tree (configure's srcdir) must be the one it was built
# from.
#
# Steps:
#  - scripts/check-mesos-module.sh --no-load-test builds the module against
#    that source tree (with the system's protoc, which must be the one the
#    agent was built with) and libcni_isolator.so / cni-isolator-setup
#    (cargo --profile release-module); cargo --release builds the plugins.
#    Everything the agent runs is copied into the work dir first.
#  - A master and an agent on 127.0.0.1 (--launcher=linux,
#    --isolation=filesystem/linux,network/cni_rs, the module's parameters,
#    --http_command_executor --http_executor_domain_sockets), network configs
#    on 10.222.160.0/20 only, bridges named rm<random>N.
#  - Scenarios (mesos-execute as the framework), each PASS/FAIL with its time:
#     1 bridge + host-local, cniVersion 1.0.0 and 0.2.0
#     2 port mappings: conflist bridge+portmap and mesos-cni-port-mapper
#     3 two networks for one task, and a host-network task beside it
#     4 agent restarts (SIGTERM, SIGKILL) under a checkpointed task
#     5 switching network/cni -> network/cni_rs and back under a running task
#     6 faults: a failing plugin, a hanging plugin (plugin_timeout_ms), a
#       network config removed while its task runs
#     7 a task group (default executor) in a network
#    After every task: its final state, its sandbox output, the agent's
#    /state and /containers, and that nothing is left on the host (no bridge
#    port, host-local reservation, iptables/nft rule naming the task's
#    subnet, isolator container dir or mount, container cgroup).
#  - Exit status 0 only if every selected scenario passed. On exit (also on
#    SIGINT/SIGTERM) everything the script made is removed: frameworks are
#    torn down, processes killed by PID (agent, master, mesos-execute, and
#    the processes in the agent's own cgroups), mounts under the work dir
#    unmounted, bridges and leftover veths deleted, iptables rules naming
#    10.222.160.0/20 and the port mapper's chain removed, the work dir
#    deleted (logs are copied to --keep-logs=DIR first if given).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=
work=
keep_logs=
scenarios=1,2,3,4,5,6,7
mport=15050
aport=15051

usage() { sed -n '2,49p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --mesos-build=*) build=${1#*=} ;;
    --mesos-build) shift; build=${1:-} ;;
    --work=*) work=${1#*=} ;;
    --keep-logs=*) keep_logs=${1#*=} ;;
    --scenarios=*) scenarios=${1#*=} ;;
    --master-port=*) mport=${1#*=} ;;
    --agent-port=*) aport=${1#*=} ;;
    -h|--help) usage 0 ;;
    *) echo "check-mesos-agent: unknown argument $1" >&2; usage 2 ;;
  esac
  shift
done
die0() { echo "check-mesos-agent: $*" >&2; exit 2; }
[ -n "$build" ] || die0 "give --mesos-build=DIR (a Mesos build dir)"
build=$(cd "$build" && pwd) || die0 "no dir $build"
for b in mesos-agent mesos-master mesos-execute mesos-executor mesos-containerizer mesos-default-executor; do
  [ -x "$build/src/$b" ] || die0 "$build/src/$b missing (build it first)"
done
src=$(sed -n 's/^abs_top_srcdir = //p' "$build/Makefile")
[ -f "$src/include/mesos/module/isolator.hpp" ] || die0 "no Mesos source tree at '$src' (abs_top_srcdir of $build/Makefile)"
[ "$(id -u)" = 0 ] || die0 "needs root"
[ -d /sys/fs/cgroup/freezer ] || die0 "needs the cgroups v1 freezer hierarchy at /sys/fs/cgroup/freezer (the agent's linux launcher)"
for tool in cargo curl jq iptables-save nft busybox ip; do
  command -v "$tool" >/dev/null || die0 "$tool not found"
done
for p in "$mport" "$aport"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die0 "port $p is in use (--master-port/--agent-port)"; fi
done

[ -n "$work" ] || work=$(mktemp -d /tmp/rcni-mesos-agent.XXXXXX)
mkdir -p "$work"
work=$(cd "$work" && pwd)
tok=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
logs=$work/logs          # script, master, agent, mesos-execute outputs
conf=$work/conf          # the module's network configs
conf_builtin=$work/conf-builtin   # the built-in isolator's (scenario 5)
plugins=$work/plugins
ipam=$work/ipam          # host-local dataDir of every network
adir=$work/agent         # --work_dir
rt=$work/run             # --runtime_dir
cniroot=$rt/isolators/network/cni
tasks=$work/tasks
cgroot=rcni-mesos-e2e-$tok   # --cgroups_root
pmchain=RCNI-E2E-$tok    # mesos-cni-port-mapper's chain
mkdir -p "$logs" "$conf" "$conf_builtin" "$plugins" "$ipam" "$adir" "$rt" "$tasks" "$work/master" "$work/bin"
: >"$work/pids"
master_url=http://127.0.0.1:$mport
agent_url=http://127.0.0.1:$aport
export LIBPROCESS_IP=127.0.0.1
bridges=()
br() { echo "rm${tok}$1"; }   # bridge names: 9 characters, unique per run

say() { printf '%s\n' "$*" | tee -a "$logs/script.log"; }
note() { printf '%s %s\n' "$(date +%T)" "$*" >>"$logs/script.log"; }

# ---------------------------------------------------------------- cleanup
cleaned=
cleanup() {
  [ -n "$cleaned" ] && return
  cleaned=1
  trap '' INT TERM
  note "cleanup"
  # Frameworks first, so the agent's isolator cleans its containers.
  if agent_alive; then
    teardown_all
    wait_no_containers 60 || note "cleanup: containers still running"
  fi
  local pid
  for pid in $(tac "$work/pids" 2>/dev/null); do
    ours "$pid" && kill -TERM "$pid" 2>/dev/null
  done
  sleep 1
  for pid in $(tac "$work/pids" 2>/dev/null); do
    ours "$pid" && kill -KILL "$pid" 2>/dev/null
  done
  # Processes left in the agent's cgroups (executors, tasks).
  local cg
  for cg in /sys/fs/cgroup/*/"$cgroot"; do
    [ -d "$cg" ] || continue
    [ -f "$cg/freezer.state" ] && find "$cg" -name freezer.state -exec sh -c 'echo THAWED >"$1"' _ {} \; 2>/dev/null
    find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
      note "cleanup: killing $pid (in $cg)"
      kill -KILL "$pid" 2>/dev/null
    done
  done
  sleep 1
  for cg in /sys/fs/cgroup/*/"$cgroot"; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  # A hung plugin left behind (scenario 6) runs under a marker name.
  for pid in $(hung_pids); do
    kill -KILL "$pid" 2>/dev/null
  done
  # Mounts under the work dir, deepest first.
  local m
  for m in $(awk -v w="$work" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount -l "$m" 2>/dev/null || note "cleanup: umount $m failed"
  done
  # Bridges and whatever is still attached to them.
  local b port
  for b in "${bridges[@]}"; do
    for port in $(ip -o link show master "$b" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
      ip link del "$port" 2>/dev/null
    done
    ip link del "$b" 2>/dev/null
  done
  # iptables rules naming our subnets or the port mapper's chain.
  local t rule
  for t in nat filter; do
    iptables-save -t "$t" 2>/dev/null | grep -E '^-A ' | grep -E "10\.222\.1(6[0-9]|7[0-5])\.|$pmchain" |
      while read -r rule; do
        eval "iptables -w -t $t -D ${rule#-A }" 2>/dev/null
      done
  done
  iptables -w -t nat -F "$pmchain" 2>/dev/null && iptables -w -t nat -X "$pmchain" 2>/dev/null
  if [ -n "$keep_logs" ]; then
    mkdir -p "$keep_logs"
    cp -r "$logs/." "$keep_logs/" 2>/dev/null
    find "$adir" -name stdout -o -name stderr 2>/dev/null | while read -r f; do
      cp "$f" "$keep_logs/$(echo "${f#"$adir"/}" | tr / _)" 2>/dev/null
    done
    echo "logs kept in $keep_logs"
  fi
  rm -rf "$work"
}
on_signal() { echo "interrupted" >&2; cleanup; exit 130; }
trap on_signal INT TERM
trap cleanup EXIT

# ---------------------------------------------------------------- helpers
track() { echo "$1" >>"$work/pids"; }
# The hanging test plugin's processes (argv[0] is its marker).
hung_pids() {
  local f c
  for f in /proc/[0-9]*/cmdline; do
    c=$(tr '\0' ' ' <"$f" 2>/dev/null) || continue
    case $c in "rcni-e2e-hang-$tok "*) f=${f#/proc/}; echo "${f%/cmdline}" ;; esac
  done
}
# Whether PID is still a process this script started (a PID may be reused).
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF "$build/src/"; }
jget() { curl -sf --max-time 10 "$1"; }
agent_pid() { cat "$work/agent.pid" 2>/dev/null; }
agent_alive() { local p; p=$(agent_pid) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

start_master() {
  "$build/src/mesos-master" --ip=127.0.0.1 --port="$mport" --work_dir="$work/master" \
    --registry=in_memory --log_dir="$logs" --quiet \
    --agent_ping_timeout=30secs --max_agent_ping_timeouts=10 >"$logs/master.out" 2>&1 &
  echo $! >"$work/master.pid"
  track $!
  local i
  for i in $(seq 1 120); do
    jget "$master_url/state" >/dev/null && return 0
    kill -0 "$(cat "$work/master.pid")" 2>/dev/null || break
    sleep 1
  done
  say "the master did not answer on $master_url: $(tail -3 "$logs/master.out")"
  return 1
}

# start_agent rs|builtin: starts the agent with the module or with the
# built-in network/cni and waits until it has recovered and (re)registered.
start_agent() {
  local mode=$1 modules iso extra=() n
  # Counted from the files: scenarios run in subshells.
  n=$(($(find "$logs" -maxdepth 1 -name 'agent.*.log' | wc -l) + 1))
  local out=$logs/agent.$n.$mode.log
  if [ "$mode" = rs ]; then
    modules=$(jq -cn --arg so "$work/module/out/libmesos_rcni_isolator.so" --arg conf "$conf" \
      --arg plugins "$plugins" --arg rt "$rt" --arg helper "$work/bin/cni-isolator-setup" \
      '{libraries: [{file: $so, modules: [{name: "network/cni_rs", parameters: [
         {key: "network_cni_config_dir", value: $conf},
         {key: "network_cni_plugins_dir", value: $plugins},
         {key: "runtime_dir", value: $rt},
         {key: "setup_helper", value: $helper},
         {key: "plugin_timeout_ms", value: "15000"}]}]}]}')
    iso=filesystem/linux,network/cni_rs
    extra=(--modules="$modules")
  else
    iso=filesystem/linux,network/cni
    extra=(--network_cni_config_dir="$conf_builtin" --network_cni_plugins_dir="$plugins")
  fi
  "$build/src/mesos-agent" --master=127.0.0.1:"$mport" --ip=127.0.0.1 --port="$aport" \
    --work_dir="$adir" --runtime_dir="$rt" --launcher_dir="$build/src" --launcher=linux \
    --cgroups_root="$cgroot" --isolation="$iso" "${extra[@]}" \
    --systemd_enable_support=false --http_command_executor=true \
    --http_executor_domain_sockets=true --executor_reregistration_timeout=15secs \
    --executor_registration_timeout=3mins \
    --resources='cpus:8;mem:4096;disk:4096;ports:[31000-31099]' \
    --log_dir="$logs" >"$out" 2>&1 &
  local pid=$!
  echo "$pid" >"$work/agent.pid"
  echo "$out" >"$work/agent.log"
  track "$pid"
  note "agent $n ($mode) pid $pid, log $out"
  local i
  for i in $(seq 1 240); do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "the agent ($mode) exited at start: $(tail -3 "$out")"
      return 1
    fi
    if grep -q 'Finished recovery' "$out" && grep -qE '(Registered|Re-registered) with master' "$out"; then
      return 0
    fi
    sleep 1
  done
  say "the agent ($mode) did not recover and register in 240 s (see $out)"
  return 1
}

# stop_agent SIG: kills the agent (TERM or KILL) and waits for it to exit.
stop_agent() {
  local pid i
  pid=$(agent_pid) || return 0
  ours "$pid" || { rm -f "$work/agent.pid"; return 0; }
  kill -"$1" "$pid" 2>/dev/null
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$work/agent.pid"; return 0; }
    sleep 1
  done
  ours "$pid" && kill -KILL "$pid" 2>/dev/null
  sleep 1
  rm -f "$work/agent.pid"
}

# run_task NAME ARGS...: mesos-execute in the background.
run_task() {
  local name=$1
  shift
  timeout 600 "$build/src/mesos-execute" --master=127.0.0.1:"$mport" "$@" \
    >"$logs/exec.$name.out" 2>&1 &
  echo $! >"$work/exec.$name.pid"
  track $!
  note "mesos-execute $name: $*"
}
states() { grep -oE 'Received status update TASK_[A-Z_]+' "$logs/exec.$1.out" 2>/dev/null | awk '{print $4}'; }
last_state() { states "$1" | tail -1; }
messages() { grep -E "^  message: " "$logs/exec.$1.out" 2>/dev/null | sed "s/^  message: //"; }
framework_id() { sed -n 's/^Subscribed with ID \(.*\)$/\1/p' "$logs/exec.$1.out" | tail -1; }
# wait_state NAME STATE SECONDS
wait_state() {
  local i
  for i in $(seq 1 "$3"); do
    states "$1" | grep -qx "$2" && return 0
    is_terminal "$(last_state "$1")" && return 1
    sleep 1
  done
  return 1
}
is_terminal() { case $1 in TASK_FINISHED|TASK_FAILED|TASK_KILLED|TASK_LOST|TASK_ERROR|TASK_DROPPED|TASK_GONE) return 0 ;; *) return 1 ;; esac; }
# wait_exit NAME SECONDS: waits for mesos-execute to end.
wait_exit() {
  local pid i
  pid=$(cat "$work/exec.$1.pid")
  for i in $(seq 1 "$2"); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  return 1
}
teardown() {
  local fid
  fid=$(framework_id "$1")
  [ -n "$fid" ] && curl -sf --max-time 10 -X POST "$master_url/master/teardown" -d "frameworkId=$fid" >/dev/null
}
# kill_by_teardown NAME: ends a running task the way an operator would (the
# master's /teardown of its framework). mesos-execute then gets an error rather
# than the TASK_KILLED update, and the agent ignores the executor's terminal
# updates for a terminating framework ("Ignoring status update TASK_KILLED ...
# for terminating framework"), so its /state keeps the last state it had
# (TASK_RUNNING) under completed_frameworks. The task has ended when it is in no
# active framework's executor any more and its container is gone from
# /containers.
kill_by_teardown() {
  local pid i cid active
  cid=$(task_container "$1")
  teardown "$1" || fail "$1: teardown of framework '$(framework_id "$1")' failed"
  if ! wait_exit "$1" 60; then
    pid=$(cat "$work/exec.$1.pid")
    ours "$pid" && kill "$pid" 2>/dev/null
  fi
  for i in $(seq 1 120); do
    active=$(jget "$agent_url/state" | jq -r --arg t "$1" \
      '[.frameworks[]?.executors[]? | (.tasks[]?, .queued_tasks[]?) | select(.id == $t)] | length')
    if [ "$active" = 0 ] && { [ -z "$cid" ] || [ -z "$(container_json "$cid")" ]; }; then
      return 0
    fi
    sleep 1
  done
  fail "$1: 120 s after teardown the agent still runs it (active: $active, container ${cid:-?} still listed)"
}
teardown_all() {
  local fid
  for fid in $(jget "$master_url/frameworks" | jq -r '.frameworks[]?.id' 2>/dev/null); do
    curl -sf --max-time 10 -X POST "$master_url/master/teardown" -d "frameworkId=$fid" >/dev/null
  done
}
wait_no_containers() {
  local i n
  for i in $(seq 1 "$1"); do
    n=$(jget "$agent_url/containers" | jq length 2>/dev/null)
    [ "$n" = 0 ] && return 0
    sleep 1
  done
  return 1
}
# The task (any framework, running or done) in the agent's /state.
task_state() { jget "$agent_url/state" | jq -c --arg t "$1" '[.. | objects | select(.id? == $t and has("statuses"))] | last'; }
task_ips() { task_state "$1" | jq -r '[.statuses[]?.container_status.network_infos[]?.ip_addresses[]?.ip_address] | unique | .[]'; }
task_container() { task_state "$1" | jq -r '[.statuses[]?.container_status.container_id.value // empty] | last // empty'; }
container_json() { jget "$agent_url/containers" | jq -c --arg c "$1" '[.[] | select(.container_id == $c)] | first // empty'; }
# sandbox FILE TASK: the task's sandbox file (command task, or task group's task).
# A nested task's sandbox is reached through <executor run>/tasks/<task>, a
# symbolic link to its container's dir, which find does not descend into.
sandbox() {
  local f d
  f=$(find "$adir/slaves" -path "*/executors/$2/runs/*/$1" ! -path '*/latest/*' 2>/dev/null | head -1)
  if [ -z "$f" ]; then
    d=$(find "$adir/slaves" -path "*/tasks/$2" ! -path '*/latest/*' 2>/dev/null | head -1)
    [ -n "$d" ] && [ -e "$d/$1" ] && f=$d/$1
  fi
  [ -n "$f" ] && echo "$f"
}
sandbox_cat() { local f; f=$(sandbox "$1" "$2"); [ -n "$f" ] && cat "$f"; }

fail() { echo "$*" >>"$work/fail"; note "FAIL: $*"; exit 1; }
check() { local what=$1; shift; "$@" || fail "$what"; }
# want_final NAME STATE [SECONDS]
want_final() {
  wait_exit "$1" "${3:-300}" || fail "$1: mesos-execute still running after ${3:-300} s (states: $(states "$1" | tr '\n' ' '))"
  local s
  s=$(last_state "$1")
  [ "$s" = "$2" ] || fail "$1: final state ${s:-none}, want $2 (message: $(messages "$1" | tail -1); agent log: $(agent_log_tail))"
}
agent_log_tail() { grep -E '^[EW][0-9]{4} ' "$(cat "$work/agent.log")" 2>/dev/null | tail -3 | tr '\n' ' '; }
want_running() {
  wait_state "$1" TASK_RUNNING "${2:-180}" ||
    fail "$1: not TASK_RUNNING (states: $(states "$1" | tr '\n' ' '); message: $(messages "$1" | tail -1); agent: $(agent_log_tail))"
}

# Nothing of any container left on the host (all tasks have ended).
assert_clean() {
  local what=$1 i left
  for i in $(seq 1 30); do
    left=$(leftovers)
    [ -z "$left" ] && return 0
    sleep 1
  done
  fail "$what: left on the host: $left"
}
leftovers() {
  local b out=
  for b in "${bridges[@]}"; do
    ip link show "$b" >/dev/null 2>&1 || continue
    local ports
    ports=$(ip -o link show master "$b" 2>/dev/null | awk -F': ' '{print $2}' | tr '\n' ' ')
    [ -n "$ports" ] && out+="ports on $b: $ports; "
  done
  local r
  r=$(find "$ipam" -type f ! -name lock ! -name 'last_reserved_ip*' ! -name .rcni-index 2>/dev/null | sed "s|$ipam/||" | tr '\n' ' ')
  [ -n "$r" ] && out+="host-local reservations: $r; "
  r=$( (iptables-save 2>/dev/null; nft list ruleset 2>/dev/null) | grep -E "10\.222\.1(6[0-9]|7[0-5])\." | head -5 | tr '\n' '|')
  [ -n "$r" ] && out+="rules: $r; "
  r=$(iptables-save -t nat 2>/dev/null | grep -E "^-A $pmchain " | head -3 | tr '\n' '|')
  [ -n "$r" ] && out+="port mapper rules: $r; "
  if [ -d "$cniroot" ]; then
    r=$(find "$cniroot" -mindepth 1 -maxdepth 1 -type d -printf '%f ' 2>/dev/null)
    [ -n "$r" ] && out+="isolator container dirs: $r; "
  fi
  r=$(awk -v w="$cniroot/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | tr '\n' ' ')
  [ -n "$r" ] && out+="mounts: $r; "
  r=$(find /sys/fs/cgroup/freezer/"$cgroot" -mindepth 1 -type d 2>/dev/null | tr '\n' ' ')
  [ -n "$r" ] && out+="cgroups: $r; "
  r=$(hung_pids | tr '\n' ' ')
  [ -n "$r" ] && out+="hung plugin processes: $r; "
  printf '%s' "$out"
}

# The address a task printed for DEV (from `ip -o -4 addr show`).
printed_ip() { sandbox_cat stdout "$1" | awk -v d="$2" '$2 == d && $3 == "inet" {sub("/.*", "", $4); print $4; exit}'; }

# Checks of a finished networked task: eth0 address = /state address, in
# SUBNET_PREFIX; hostname = container id; /etc/hosts; /etc/resolv.conf.
check_net_task() {
  local name=$1 prefix=$2 ns=$3 ip sip cid out
  out=$(sandbox_cat stdout "$name") || fail "$name: no sandbox stdout"
  ip=$(printed_ip "$name" eth0)
  [ -n "$ip" ] || fail "$name: no IPv4 address on eth0 in the task's output: $(echo "$out" | head -5 | tr '\n' '|')"
  case $ip in "$prefix".*) ;; *) fail "$name: eth0 has $ip, not in $prefix.0/24" ;; esac
  sip=$(task_ips "$name")
  [ "$sip" = "$ip" ] || fail "$name: /state reports '${sip//$'\n'/ }', the task saw $ip"
  cid=$(task_container "$name")
  [ -n "$cid" ] || fail "$name: no container id in /state"
  echo "$out" | grep -qx "HOSTNAME=$cid" || fail "$name: hostname is not the container id $cid: $(echo "$out" | grep HOSTNAME=)"
  echo "$out" | grep -qE "^${ip}[[:space:]]+${cid}\$" || fail "$name: /etc/hosts has no '$ip $cid' line: $(echo "$out" | sed -n '/^--hosts/,/^--resolv/p' | tr '\n' '|')"
  echo "$out" | grep -qx "nameserver $ns" || fail "$name: /etc/resolv.conf lacks 'nameserver $ns': $(echo "$out" | sed -n '/^--resolv/,$p' | tr '\n' '|')"
  # /etc/resolv.conf is a plain bind of the isolator's file, as the built-in's:
  # its mount takes the flags of the mount it comes from, none added.
  local got want f
  got=$(echo "$out" | sed -n 's/^RESOLV_MOUNT=//p')
  want=$(findmnt -no VFS-OPTIONS -T "$rt/isolators/network/cni")
  for f in nosuid nodev noexec; do
    case ",$got," in *",$f,"*) case ",$want," in *",$f,"*) ;; *) fail "$name: /etc/resolv.conf is mounted '$got', with $f that its source's mount ('$want') lacks" ;; esac ;; esac
  done
  [ -n "$got" ] || fail "$name: /etc/resolv.conf is not a mount of its own in the task"
}
# What a networked task prints.
net_cmd='ip -o -4 addr show; echo HOSTNAME=$(hostname); echo --hosts; cat /etc/hosts; echo --resolv; cat /etc/resolv.conf; echo --end; awk '"'"'$5 == "/etc/resolv.conf" {print "RESOLV_MOUNT=" $6}'"'"' /proc/self/mountinfo'

# ---------------------------------------------------------------- configs
bridge_conf() { # NAME VERSION BRIDGE PREFIX
  jq -n --arg n "$1" --arg v "$2" --arg b "$3" --arg p "$4" --arg d "$ipam" '{
    cniVersion: $v, name: $n, type: "bridge", bridge: $b, isGateway: true, ipMasq: true,
    dns: {nameservers: [($p + ".53")], search: ["e2e.test"]},
    ipam: {type: "host-local", subnet: ($p + ".0/24"), routes: [{dst: "0.0.0.0/0"}], dataDir: $d}}'
}
write_configs() {
  local i f p
  for i in 1 2 3 4 5 6 7 8 9 10 11 12; do bridges+=("$(br "$i")"); done
  bridge_conf e2e-v1 1.0.0 "$(br 1)" 10.222.161 >"$conf/e2e-v1.conf"
  bridge_conf e2e-v02 0.2.0 "$(br 2)" 10.222.162 >"$conf/e2e-v02.conf"
  # 2: conflist with portmap; mesos-cni-port-mapper delegating to bridge.
  jq -n --arg b "$(br 3)" --arg d "$ipam" '{cniVersion: "1.0.0", name: "e2e-pmc", plugins: [
      {type: "bridge", bridge: $b, isGateway: true, ipMasq: true,
       ipam: {type: "host-local", subnet: "10.222.163.0/24", routes: [{dst: "0.0.0.0/0"}], dataDir: $d}},
      {type: "portmap", capabilities: {portMappings: true}}]}' >"$conf/e2e-pmc.conflist"
  jq -n --arg b "$(br 4)" --arg d "$ipam" --arg c "$pmchain" '{cniVersion: "0.3.1", name: "e2e-mpm",
      type: "mesos-cni-port-mapper", chain: $c, excludeDevices: [$b],
      delegate: {type: "bridge", bridge: $b, isGateway: true, ipMasq: true,
        ipam: {type: "host-local", subnet: "10.222.164.0/24", routes: [{dst: "0.0.0.0/0"}], dataDir: $d}}}' \
    >"$conf/e2e-mpm.conf"
  bridge_conf e2e-m1 1.0.0 "$(br 5)" 10.222.165 >"$conf/e2e-m1.conf"
  bridge_conf e2e-m2 0.4.0 "$(br 6)" 10.222.166 >"$conf/e2e-m2.conf"
  bridge_conf e2e-rs 1.0.0 "$(br 7)" 10.222.167 >"$conf/e2e-rs.conf"
  # 5: one 0.2.0 network in both isolators' dirs (the built-in reads no
  # result of cniVersion >= 0.3).
  bridge_conf e2e-sw 0.2.0 "$(br 8)" 10.222.168 >"$conf/e2e-sw.conf"
  cp "$conf/e2e-sw.conf" "$conf_builtin/e2e-sw.conf"
  # 6: bridge then a failing / hanging plugin; a network removed later.
  for f in fail:9:10.222.169 hang:10:10.222.170; do
    IFS=: read -r f i p <<<"$f"
    jq -n --arg n "e2e-$f" --arg b "$(br "$i")" --arg d "$ipam" --arg p "$p" --arg t "rcni-e2e-$f" \
      '{cniVersion: "1.0.0", name: $n, plugins: [
        {type: "bridge", bridge: $b, isGateway: true,
         ipam: {type: "host-local", subnet: ($p + ".0/24"), dataDir: $d}},
        {type: $t}]}' >"$conf/e2e-$f.conflist"
  done
  bridge_conf e2e-rm 1.0.0 "$(br 11)" 10.222.171 >"$conf/e2e-rm.conf"
  bridge_conf e2e-tg 1.0.0 "$(br 12)" 10.222.172 >"$conf/e2e-tg.conf"
  cat >"$plugins/rcni-e2e-fail" <<'EOF'
#!/bin/sh
# Fails ADD with a CNI error; passes the previous result through on DEL/CHECK.
cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  printf '{"cniVersion":"1.0.0","code":11,"msg":"rcni-e2e injected failure","details":"the test plugin always fails ADD"}\n'
  exit 1
fi
[ "$CNI_COMMAND" = VERSION ] && printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}\n'
exit 0
EOF
  cat >"$plugins/rcni-e2e-hang" <<EOF
#!/bin/bash
# Hangs on ADD (under a marker name the check looks for); DEL succeeds.
if [ "\$CNI_COMMAND" = ADD ]; then
  exec -a rcni-e2e-hang-$tok sleep 3600 </dev/null
fi
cat >/dev/null
[ "\$CNI_COMMAND" = VERSION ] && printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}\n'
exit 0
EOF
  chmod +x "$plugins/rcni-e2e-fail" "$plugins/rcni-e2e-hang"
}

# ---------------------------------------------------------------- scenarios
s1() {
  local name v
  for v in v1:10.222.161 v02:10.222.162; do
    name=s1-${v%%:*}
    run_task "$name" --name="$name" --networks="e2e-${v%%:*}" --resources='cpus:0.1;mem:64' --command="$net_cmd"
    want_final "$name" TASK_FINISHED
    check_net_task "$name" "${v#*:}" "${v#*:}.53"
    assert_clean "$name"
  done
}

s2() {
  local hostip name net hp body i
  hostip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  for net in e2e-pmc:31001 e2e-mpm:31002; do
    name=s2-${net%%:*}
    hp=${net#*:}
    jq -n --arg n "$name" --arg net "${net%%:*}" --argjson hp "$hp" --arg cmd \
      "mkdir -p www && echo hello-$name >www/index.html && ip -o -4 addr show eth0 && exec busybox httpd -f -p 8080 -h www" '{
      name: $n, task_id: {value: $n}, agent_id: {value: ""},
      resources: [{name: "cpus", type: "SCALAR", scalar: {value: 0.1}},
                  {name: "mem", type: "SCALAR", scalar: {value: 64}},
                  {name: "ports", type: "RANGES", ranges: {range: [{begin: $hp, end: $hp}]}}],
      command: {value: $cmd},
      container: {type: "MESOS", mesos: {}, network_infos: [{name: $net,
        port_mappings: [{host_port: $hp, container_port: 8080, protocol: "tcp"}]}]}}' >"$tasks/$name.json"
    run_task "$name" --task="$tasks/$name.json"
    want_running "$name"
    local ip
    ip=$(task_ips "$name")
    [ -n "$ip" ] || fail "$name: no address in /state"
    body=
    for i in $(seq 1 30); do
      body=$(curl -s --max-time 3 "http://${hostip:-127.0.0.1}:$hp/index.html") && [ -n "$body" ] && break
      sleep 1
    done
    [ "$body" = "hello-$name" ] || fail "$name: http://${hostip:-127.0.0.1}:$hp/ answered '$body', not hello-$name (rules for $ip: $( (iptables-save -t nat; nft list ruleset) 2>/dev/null | grep -F "$ip" | tr '\n' '|'))"
    # Also from another address of the host: the bridge's gateway.
    body=$(curl -s --max-time 3 "http://${ip%.*}.1:$hp/index.html")
    [ "$body" = "hello-$name" ] || fail "$name: via the gateway address ${ip%.*}.1:$hp: '$body'"
    kill_by_teardown "$name"
    assert_clean "$name"
  done
}

s3() {
  local out ip0 ip1 sips
  run_task s3-two --name=s3-two --networks=e2e-m1,e2e-m2 --resources='cpus:0.1;mem:64' --command="$net_cmd"
  run_task s3-host --name=s3-host --resources='cpus:0.1;mem:64' \
    --command='echo HOSTNAME=$(hostname); ip -o link show; ip -o -4 addr show'
  want_final s3-two TASK_FINISHED
  want_final s3-host TASK_FINISHED
  ip0=$(printed_ip s3-two eth0)
  ip1=$(printed_ip s3-two eth1)
  case "$ip0/$ip1" in 10.222.165.*/10.222.166.*) ;; *) fail "s3-two: eth0 '$ip0' eth1 '$ip1', want 10.222.165.x and 10.222.166.x" ;; esac
  sips=$(task_ips s3-two | sort | tr '\n' ' ')
  [ "$sips" = "$(printf '%s\n' "$ip0" "$ip1" | sort | tr '\n' ' ')" ] || fail "s3-two: /state has '$sips', the task saw $ip0 $ip1"
  out=$(sandbox_cat stdout s3-two)
  echo "$out" | grep -qE "^${ip0}[[:space:]]" || fail "s3-two: /etc/hosts lacks $ip0"
  echo "$out" | grep -qxE "nameserver 10\.222\.16[56]\.53" || fail "s3-two: resolv.conf has neither network's nameserver"
  out=$(sandbox_cat stdout s3-host)
  echo "$out" | grep -qx "HOSTNAME=$(hostname)" || fail "s3-host: hostname is not the host's: $(echo "$out" | grep HOSTNAME=)"
  echo "$out" | grep -qE "^[0-9]+: ${hostif}[:@]" || fail "s3-host: does not see the host's $hostif, not in the host netns?"
  hips=$(task_ips s3-host | grep -vx "127\.0\.0\.1" || true)
  # The agent reports its own address (--ip) for a task on the host network.
  [ -z "$hips" ] || fail "s3-host: /state reports $hips for a host-network task (only the agent's 127.0.0.1 is expected)"
  assert_clean s3
}

# Long checkpointed task, agent killed with SIG and restarted.
s4() {
  local name=s4 ip cid c sig
  run_task $name --name=$name --checkpoint --networks=e2e-rs --resources='cpus:0.1;mem:64' \
    --command='ip -o -4 addr show eth0; exec sleep 3600'
  want_running $name
  ip=$(task_ips $name)
  cid=$(task_container $name)
  [ -n "$ip" ] && [ -n "$cid" ] || fail "$name: no address or container in /state"
  [ -n "$(ip -o link show master "$(br 7)")" ] || fail "$name: no port on $(br 7) while running"
  for sig in TERM KILL; do
    stop_agent $sig
    # Traffic while the agent is away, counted afterwards.
    ping -c 3 -i 0.2 -W 1 "$ip" >/dev/null 2>&1 || fail "$name: $ip does not answer ping with the agent down (SIG$sig)"
    start_agent rs || fail "$name: agent restart after SIG$sig"
    grep -q 'network/cni_rs' "$(cat "$work/agent.log")" || fail "$name: the restarted agent does not use network/cni_rs"
    for _ in $(seq 1 30); do c=$(container_json "$cid"); [ -n "$c" ] && break; sleep 1; done
    [ -n "$c" ] || fail "$name: container $cid not in /containers after SIG$sig restart"
    echo "$c" | jq -e --arg ip "$ip" '[.status.network_infos[]?.ip_addresses[]?.ip_address] | index($ip)' >/dev/null ||
      fail "$name: /containers after SIG$sig restart lacks $ip: $(echo "$c" | jq -c .status)"
    echo "$c" | jq -e '(.statistics.net_rx_packets // 0) > 0 and (.statistics.net_tx_packets // 0) > 0' >/dev/null ||
      fail "$name: no net_* usage in /containers after SIG$sig restart: $(echo "$c" | jq -c .statistics)"
    [ "$(task_state $name | jq -r .state)" = TASK_RUNNING ] || fail "$name: not TASK_RUNNING in /state after SIG$sig restart"
    ! is_terminal "$(last_state $name)" || fail "$name: the framework saw $(last_state $name) after the SIG$sig restart"
    [ "$(task_ips $name)" = "$ip" ] || fail "$name: address changed after SIG$sig restart: $(task_ips $name)"
    ping -c 1 -W 2 "$ip" >/dev/null 2>&1 || fail "$name: $ip unreachable after SIG$sig restart"
  done
  [ "$(printed_ip $name eth0)" = "$ip" ] || fail "$name: the task printed $(printed_ip $name eth0), /state $ip"
  kill_by_teardown $name
  assert_clean $name
}

# A task started by FROM (rs|builtin), the agent restarted with TO.
switch_once() {
  local from=$1 to=$2 name=s5-$1-to-$2 ip cid c
  stop_agent TERM
  start_agent "$from" || fail "$name: agent ($from) start"
  run_task "$name" --name="$name" --checkpoint --networks=e2e-sw --resources='cpus:0.1;mem:64' \
    --command='ip -o -4 addr show eth0; exec sleep 3600'
  want_running "$name"
  ip=$(task_ips "$name")
  cid=$(task_container "$name")
  case $ip in 10.222.168.*) ;; *) fail "$name: /state address '$ip' under $from" ;; esac
  stop_agent TERM
  start_agent "$to" || fail "$name: agent ($to) start"
  for _ in $(seq 1 30); do c=$(container_json "$cid"); [ -n "$c" ] && break; sleep 1; done
  [ -n "$c" ] || fail "$name: container $cid not recovered by $to"
  if [ "$to" = rs ]; then
    grep -E 'network/cni_rs recovered: ' "$(cat "$work/agent.log")" | grep -qF "$cid" ||
      fail "$name: the module's recovery report does not list $cid: $(grep -E 'network/cni_rs recovered' "$(cat "$work/agent.log")" | tail -1)"
  fi
  echo "$c" | jq -e --arg ip "$ip" '[.status.network_infos[]?.ip_addresses[]?.ip_address] | index($ip)' >/dev/null ||
    fail "$name: /containers under $to lacks $ip: $(echo "$c" | jq -c .status)"
  [ "$(task_state "$name" | jq -r .state)" = TASK_RUNNING ] || fail "$name: not running after the switch"
  ping -c 1 -W 2 "$ip" >/dev/null 2>&1 || fail "$name: $ip unreachable after the switch"
  kill_by_teardown "$name"
  assert_clean "$name"
}
s5() {
  switch_once builtin rs
  switch_once rs builtin
  stop_agent TERM
  start_agent rs || fail "s5: agent (rs) start"
}

s6() {
  local t0 t1 msg
  # A plugin that fails after bridge did its part.
  run_task s6-fail --name=s6-fail --networks=e2e-fail --resources='cpus:0.1;mem:64' --command='true'
  want_final s6-fail TASK_FAILED
  msg=$(messages s6-fail | tr '\n' ' ')
  echo "$msg" | grep -q 'rcni-e2e injected failure' || fail "s6-fail: the message does not carry the plugin's error: $msg"
  assert_clean s6-fail
  # A plugin that hangs: killed after plugin_timeout_ms (15 s).
  t0=$(date +%s)
  run_task s6-hang --name=s6-hang --networks=e2e-hang --resources='cpus:0.1;mem:64' --command='true'
  want_final s6-hang TASK_FAILED 240
  t1=$(date +%s)
  msg=$(messages s6-hang | tr '\n' ' ')
  echo "$msg" | grep -qiE 'time(d)? ?out|timeout' || fail "s6-hang: the message does not say the plugin timed out: $msg"
  [ $((t1 - t0)) -lt 150 ] || fail "s6-hang: took $((t1 - t0)) s with a 15 s plugin timeout"
  assert_clean s6-hang
  # A network config removed while its task runs: the task keeps running,
  # is cleaned up when killed; a new task in that network fails.
  run_task s6-rm --name=s6-rm --networks=e2e-rm --resources='cpus:0.1;mem:64' --command='exec sleep 3600'
  want_running s6-rm
  [ -n "$(task_ips s6-rm)" ] || fail "s6-rm: no address in /state"
  mv "$conf/e2e-rm.conf" "$work/e2e-rm.conf.removed"
  kill_by_teardown s6-rm
  assert_clean s6-rm
  run_task s6-rm2 --name=s6-rm2 --networks=e2e-rm --resources='cpus:0.1;mem:64' --command='true'
  want_final s6-rm2 TASK_FAILED
  msg=$(messages s6-rm2 | tr '\n' ' ')
  echo "$msg" | grep -q 'e2e-rm' || fail "s6-rm2: the message does not name the network: $msg"
  assert_clean s6-rm2
  mv "$work/e2e-rm.conf.removed" "$conf/e2e-rm.conf"
  # A network whose plugin binary is missing: the task fails and says which
  # plugin (the built-in isolator names it too).
  jq -n '{cniVersion: "1.0.0", name: "e2e-noplug", type: "rcni-e2e-missing"}' >"$conf/e2e-noplug.conf"
  run_task s6-noplug --name=s6-noplug --networks=e2e-noplug --resources='cpus:0.1;mem:64' --command='true'
  want_final s6-noplug TASK_FAILED
  msg=$(messages s6-noplug | tr '\n' ' ')
  echo "$msg" | grep -q 'rcni-e2e-missing' || fail "s6-noplug: the message does not name the missing plugin: $msg"
  rm -f "$conf/e2e-noplug.conf"
  assert_clean s6-noplug
}

s7() {
  local ip1 ip2
  jq -n --arg cmd "$net_cmd" '{tasks: [("s7-a", "s7-b") | {
      name: ., task_id: {value: .}, agent_id: {value: ""},
      resources: [{name: "cpus", type: "SCALAR", scalar: {value: 0.1}},
                  {name: "mem", type: "SCALAR", scalar: {value: 32}}],
      command: {value: $cmd}}]}' >"$tasks/s7.json"
  run_task s7 --networks=e2e-tg --task_group="$tasks/s7.json"
  wait_exit s7 300 || fail "s7: mesos-execute still running"
  [ "$(grep -c 'Received status update TASK_FINISHED' "$logs/exec.s7.out")" = 2 ] ||
    fail "s7: states $(states s7 | tr '\n' ' '), want TASK_FINISHED twice (message: $(messages s7 | tail -1))"
  ip1=$(printed_ip s7-a eth0)
  ip2=$(printed_ip s7-b eth0)
  case $ip1 in 10.222.172.*) ;; *) fail "s7-a: eth0 '$ip1' not in 10.222.172.0/24 ($(sandbox s7-a stdout))" ;; esac
  [ "$ip1" = "$ip2" ] || fail "s7: the tasks of one group saw different addresses: $ip1 $ip2"
  # The nested tasks' statuses: the address if the agent reports one.
  local sip
  sip=$(task_ips s7-a)
  if [ -n "$sip" ]; then
    [ "$sip" = "$ip1" ] || fail "s7-a: /state reports '$sip', the task saw $ip1"
  else
    say "  s7: (no address in the nested tasks' statuses in /state)"
  fi
  sandbox_cat stdout s7-a | grep -qx "nameserver 10.222.172.53" || fail "s7-a: resolv.conf is not the network's"
  sandbox_cat stdout s7-a | grep -qE "^${ip1}[[:space:]]" || fail "s7-a: /etc/hosts lacks $ip1"
  assert_clean s7
}

# ---------------------------------------------------------------- main
say "== building (log: $logs/build.log)"
if ! { "$repo/scripts/check-mesos-module.sh" --mesos-src="$src" --work="$work/module" --no-load-test &&
       (cd "$repo" && cargo build --release -p bridge -p host-local -p loopback -p portmap -p mesos-cni-port-mapper); } \
     >"$logs/build.log" 2>&1; then
  tail -30 "$logs/build.log"
  say "check-mesos-agent: build failed"
  exit 1
fi
cp "$repo/target/release-module/libcni_isolator.so" "$work/module/out/"
cp "$repo/target/release-module/cni-isolator-setup" "$work/bin/"
for p in bridge host-local loopback portmap mesos-cni-port-mapper; do cp "$repo/target/release/$p" "$plugins/"; done
write_configs

mesos_version=$("$build/src/mesos-agent" --version 2>/dev/null | head -1)
say "== $mesos_version ($build), $(g++ --version | head -1), rcni $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)"
hostif=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2; exit}' | cut -d@ -f1)
start_master || exit 1
start_agent rs || { tail -20 "$(cat "$work/agent.log")"; exit 1; }
grep -m1 'Using isolation' "$(cat "$work/agent.log")" | sed 's/^.*\] //' | tee -a "$logs/script.log"

passed=0
failed=0
names=([1]="bridge+host-local, cniVersion 1.0.0 and 0.2.0" [2]="port mappings (portmap conflist, mesos-cni-port-mapper)"
  [3]="two networks + a host-network task" [4]="agent restart (SIGTERM, SIGKILL) under a checkpointed task"
  [5]="switch network/cni -> network/cni_rs and back" [6]="faults: failing plugin, hanging plugin, removed config"
  [7]="task group with the default executor")
for n in 1 2 3 4 5 6 7; do
  case ",$scenarios," in *,$n,*) ;; *) continue ;; esac
  rm -f "$work/fail"
  note "scenario $n"
  t0=$(date +%s.%N)
  (set +e; "s$n")
  rc=$?
  t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  if [ "$rc" = 0 ] && [ ! -s "$work/fail" ]; then
    say "PASS  $n  ${t}s  ${names[$n]}"
    passed=$((passed + 1))
  else
    say "FAIL  $n  ${t}s  ${names[$n]}: $(cat "$work/fail" 2>/dev/null || echo "exit $rc")"
    failed=$((failed + 1))
    # Back to a known state for the next scenario.
    for f in "$work"/exec.*.pid; do [ -f "$f" ] && ours "$(cat "$f")" && kill "$(cat "$f")" 2>/dev/null; done
    agent_alive || start_agent rs || { say "the agent cannot be restarted; stopping"; break; }
    grep -q 'network/cni_rs' "$(cat "$work/agent.log")" || { stop_agent TERM; start_agent rs || break; }
    teardown_all
    wait_no_containers 90 || say "  (containers still running after teardown)"
    [ -f "$work/e2e-rm.conf.removed" ] && mv "$work/e2e-rm.conf.removed" "$conf/e2e-rm.conf"
    left=$(leftovers)
    [ -n "$left" ] && say "  left on the host: $left"
  fi
done
say "$passed passed, $failed failed"
[ "$failed" = 0 ]
