# shellcheck shell=bash
# Several "hosts" on one machine, for tests of jobs that span hosts: sourced after ../lib.sh (it uses WORK,
# EXTRA_CLEANUP and harness_error).
#
#   mh_create N        N hosts 0..N-1: network namespace ${MH_TAG}h<k>, host name ${MH_NAME[k]} (a UTS namespace
#                      per command), address ${MH_ADDR[k]} in MH_CIDR, on an interface named differently on every
#                      host (${MH_IF[k]}), whose veth peer is a port of a bridge in a namespace of its own (the
#                      "switch", ${MH_TAG}sw; nothing is added to the root namespace). Exits 77 (skipped) when
#                      namespaces cannot be made here (no CAP_SYS_ADMIN / CAP_NET_ADMIN).
#   mh_on K CMD...     runs CMD on host K (its namespace, its host name), in the foreground.
#   mh_on_argv K       sets MH_ON to those words: "${MH_ON[@]}" CMD & is CMD itself in the background ($! its PID).
#   mh_hostfile SLOTS  writes $MH_HOSTFILE: every host's address with SLOTS slots.
#   mh_mpirun ARGS...  mpirun on host 0 over every host of $MH_HOSTFILE (MH_MCA: the settings below; -x OMP_NUM_THREADS).
#   mh_partition K     host K's cable pulled at the switch (its port of the bridge down); mh_reconnect K undoes it
#                      and waits until every host reaches every other (mh_wait_connected).
#   mh_pids K          the PIDs of every process in host K's namespace; mh_procs K "pid comm" of each, one a line.
#   mh_kill_all K      SIGKILL to each of them, by PID.
#   mh_destroy         every process of every namespace killed, the namespaces deleted (run by the exit trap).
#
# The hosts share the machine's file system (a shared file system on a cluster: run.dir is seen by every host).
# Remote commands go through netns_rsh.sh (the rsh agent of Open MPI), which reads the host map $MH_MAP.

MH_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MH_RSH="$MH_LIB_DIR/netns_rsh.sh"
MH_TAG="ddpmmh$$"            # unique per test run: namespace names, host names
MH_NET="10.231.0"            # hosts are $MH_NET.1, .2, ...; only ever inside the namespaces of this run
MH_CIDR="$MH_NET.0/24"
MH_MAP="$WORK/netns_rsh.map"
MH_HOSTFILE="$WORK/hostfile"
MH_SWITCH=""
MH_NS=()
MH_NAME=()
MH_ADDR=()
MH_IF=()
# Open MPI across the namespaces:
#   btl tcp,self              ranks on different hosts talk TCP (no shared memory between hosts; one rank per host).
#   btl_tcp_if_include CIDR   the interface names differ per host: only a subnet names the same network on every
#   oob_tcp_if_include CIDR   host (an interface list that does not exist on some host aborts the job); also keeps
#                             Open MPI off loopback.
#   plm_rsh_agent             the ssh stand-in that enters the host's namespace.
#   plm_rsh_no_tree_spawn 1   every daemon launched from host 0 (no daemon launches another through the agent).
# shellcheck disable=SC2054  # tcp,self is one word
#   orte_startup_timeout 60   a daemon that never calls back fails the start instead of holding mpirun forever.
MH_MCA=(--mca btl tcp,self --mca btl_tcp_if_include "$MH_CIDR" --mca oob_tcp_if_include "$MH_CIDR"
        --mca plm_rsh_agent "$MH_RSH" --mca plm_rsh_no_tree_spawn 1 --mca orte_startup_timeout 60)
MH_MPIRUN=(mpirun --hostfile "$MH_HOSTFILE" "${MH_MCA[@]}" -x OMP_NUM_THREADS)  # mh_mpirun's command

mh_destroy() {  # every process in the namespaces of this run killed by PID, then the namespaces deleted
  local ns pid
  for ns in "${MH_NS[@]}" "$MH_SWITCH"; do
    [[ -n "$ns" ]] || continue
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  done
  for ns in "${MH_NS[@]}" "$MH_SWITCH"; do
    [[ -n "$ns" ]] || continue
    for _ in $(seq 50); do [[ -z "$(ip netns pids "$ns" 2>/dev/null)" ]] && break; sleep 0.1; done
    ip netns del "$ns" 2>/dev/null
  done
  MH_NS=()
  MH_SWITCH=""
}

mh_create() {  # mh_create N: hosts 0..N-1 joined by a switch (see the top)
  local n="$1" k ns
  if ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
    echo "SKIP: needs iproute2 (ip) and util-linux (unshare)"
    exit 77
  fi
  # Can namespaces be made here at all? Otherwise the test is skipped, not failed.
  if ! ip netns add "${MH_TAG}sw" 2>"$WORK/netns.err"; then
    echo "SKIP: cannot create network namespaces here (needs root / CAP_SYS_ADMIN): $(cat "$WORK/netns.err")"
    exit 77
  fi
  MH_SWITCH="${MH_TAG}sw"
  EXTRA_CLEANUP="mh_destroy; $EXTRA_CLEANUP"
  if ! ip netns exec "$MH_SWITCH" unshare --uts true 2>"$WORK/netns.err"; then
    echo "SKIP: cannot create UTS namespaces here: $(cat "$WORK/netns.err")"
    exit 77
  fi
  ip -n "$MH_SWITCH" link add sw type bridge || harness_error "bridge in $MH_SWITCH"
  ip -n "$MH_SWITCH" link set sw up || harness_error "bridge up"
  : >"$MH_MAP"
  for ((k = 0; k < n; k++)); do
    ns="${MH_TAG}h$k"
    ip netns add "$ns" || harness_error "ip netns add $ns"
    MH_NS[k]="$ns"
    MH_NAME[k]="mhost$k"
    MH_ADDR[k]="$MH_NET.$((k + 1))"
    MH_IF[k]="net$k"
    # The pair is made in the switch namespace; one end becomes host k's interface.
    # shellcheck disable=SC2015  # any step failing is the harness error
    ip -n "$MH_SWITCH" link add "port$k" type veth peer name "${MH_IF[k]}" &&
      ip -n "$MH_SWITCH" link set "${MH_IF[k]}" netns "$ns" &&
      ip -n "$MH_SWITCH" link set "port$k" master sw &&
      ip -n "$MH_SWITCH" link set "port$k" up &&
      ip -n "$ns" link set lo up &&
      ip -n "$ns" addr add "${MH_ADDR[k]}/24" dev "${MH_IF[k]}" &&
      ip -n "$ns" link set "${MH_IF[k]}" up || harness_error "network of host $k ($ns)"
    echo "${MH_ADDR[k]} $ns ${MH_NAME[k]}" >>"$MH_MAP"
  done
  export NETNS_RSH_MAP="$MH_MAP"
  mh_wait_connected
}

mh_reaches() {  # mh_reaches I J: host I reaches host J (20 tries at most)
  # A TCP connection to a closed port is refused at once (an answer from the host's kernel) when the network works,
  # and times out or finds no route when it does not (no ping here).
  for _ in $(seq 20); do
    if [[ "$(ip netns exec "${MH_NS[$1]}" timeout 2 bash -c "exec 3<>/dev/tcp/${MH_ADDR[$2]}/9" 2>&1)" == *refused* ]]; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

mh_wait_connected() {  # every host reaches every other one; a harness error otherwise
  local i j
  for i in "${!MH_NS[@]}"; do
    # After a cut, neighbour entries of the lost host stay FAILED for a while: connections to it would fail with
    # "no route to host" (an orted that cannot call back, a job that never starts) though the link is up again.
    ip -n "${MH_NS[i]}" neigh flush all 2>/dev/null
  done
  for i in "${!MH_NS[@]}"; do
    for j in "${!MH_NS[@]}"; do
      ((i == j)) && continue
      mh_reaches "$i" "$j" || harness_error "host $i cannot reach host $j (${MH_ADDR[j]})"
    done
  done
}

mh_on_argv() {  # mh_on_argv K: MH_ON, the words that run a command on host K (one process: each word execs the next)
  # shellcheck disable=SC2016  # expanded by that sh
  MH_ON=(ip netns exec "${MH_NS[$1]}" unshare --uts sh -c 'hostname "$0" && exec "$@"' "${MH_NAME[$1]}")
}

mh_on() {  # mh_on K CMD...: CMD on host K (namespace and host name)
  mh_on_argv "$1"
  shift
  "${MH_ON[@]}" "$@"
}

mh_hostfile() {  # mh_hostfile SLOTS: every host's address, SLOTS slots each, in $MH_HOSTFILE
  local k
  : >"$MH_HOSTFILE"
  for k in "${!MH_NS[@]}"; do echo "${MH_ADDR[k]} slots=$1" >>"$MH_HOSTFILE"; done
}

mh_mpirun() {  # mh_mpirun ARGS...: mpirun on host 0 over $MH_HOSTFILE
  mh_on 0 "${MH_MPIRUN[@]}" "$@"
}

mh_partition() { ip -n "$MH_SWITCH" link set "port$1" down; }  # host K unreachable: its switch port down
mh_reconnect() { ip -n "$MH_SWITCH" link set "port$1" up && mh_wait_connected; }  # and every host reaches every other

mh_pids() { ip netns pids "${MH_NS[$1]}" 2>/dev/null; }

mh_procs() {  # mh_procs K: "pid comm" of every process on host K
  local pid comm
  for pid in $(mh_pids "$1"); do
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" && echo "$pid $comm"
  done
}

mh_kill_all() {  # mh_kill_all K: SIGKILL to every process on host K, by PID
  local pid
  for pid in $(mh_pids "$1"); do kill -KILL "$pid" 2>/dev/null; done
}
