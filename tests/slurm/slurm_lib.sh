# shellcheck shell=bash
# A real one-node Slurm cluster of the test's own, everything under $WORK: munged (its own key and socket),
# slurmctld and slurmd as root, slurm.conf and cgroup.conf written here. Sourced after ../lib.sh:
#   slurm_start             starts the cluster (exit 77, "SKIP: ..." where Slurm cannot run here) and waits until
#                           its node is idle; its cleanup is added to EXTRA_CLEANUP
#   sl COMMAND...           runs COMMAND against the cluster: SLURM_CONF=$WORK/slurm.conf, in its network namespace
#   job_field JOB KEY       a field of `scontrol show job` (JobState, ExitCode, Restarts, EligibleTime, ...)
#   wait_job JOB REGEX SECS returns 0 once the job's state matches REGEX, 1 after SECS seconds
#   wait_lines FILE N SECS  returns 0 once FILE has N lines, 1 after SECS seconds
#   last_logged_step RUN_DIR the step of the last line of RUN_DIR/train_log.jsonl (0 when none)
#   now                     seconds since the epoch, with decimals; elapsed T0: seconds since T0, one decimal
#
# Where the daemons run: in a network namespace of the test's own (ip netns) when it can make one, so that their
# ports are private to it and clash with nothing (a system Slurm included); it gets a veth pair with addresses
# private to it (10.213.255.1/30, .2), because slurmctld cannot listen with only a loopback interface
# (getaddrinfo(NULL, AI_ADDRCONFIG) finds no address: 'Unable to resolve "(null)"'). Every address the cluster
# uses is 127.0.0.1. Without network namespaces, the root namespace when it has a non-loopback IPv4 address (then
# the ports are chosen free). DDPM_SLURM_NETNS=yes|no forces the choice.

SLURM_NODE="$(hostname -s)"  # the node is this host: mpirun starts the ranks of its own node itself (no orted)
SLURM_NETNS=""
SLURM_PIDS=()
SL=()

sl() { "${SL[@]}" "$@"; }

slurm_skip() {  # slurm_skip REASON: Slurm cannot run on this machine; the test is skipped (77)
  echo "SKIP: no Slurm cluster here: $*"
  exit 77
}

now() { date +%s.%N; }
elapsed() { awk -v t0="$1" -v t1="$(now)" 'BEGIN { printf "%.1f", t1 - t0 }'; }

job_field() {  # job_field JOB KEY: the value of KEY=... in `scontrol show job` (nothing once the job is forgotten)
  sl scontrol --oneliner show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

wait_job() {  # wait_job JOB REGEX SECONDS: 0 once the job's state matches the extended regex, 1 after SECONDS
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    [[ "$(job_field "$1" JobState)" =~ ^($2)$ ]] && return 0
    sleep 0.2
  done
  return 1
}

wait_lines() {  # wait_lines FILE N SECONDS: 0 once FILE has at least N lines, 1 after SECONDS
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    [[ -f "$1" && $(wc -l <"$1") -ge $2 ]] && return 0
    sleep 0.1
  done
  return 1
}

last_logged_step() {  # last_logged_step RUN_DIR: "step" of the last line of RUN_DIR/train_log.jsonl, 0 when none
  local step
  step="$(tail -n 1 "$1/train_log.jsonl" 2>/dev/null | grep -o '"step":[0-9]*' | cut -d: -f2)"
  echo "${step:-0}"
}

slurm_free_port() {  # slurm_free_port FROM: the first port from FROM on that nothing listens on, in the namespace
  local port="$1"
  while [[ -n "$(sl ss -Htln "sport = :$port" 2>/dev/null)" || -n "$(sl ss -Htln "sport = :$((port + 1))" 2>/dev/null)" ]]; do
    port=$((port + 2))
  done
  echo "$port"
}

slurm_cleanup() {  # EXTRA_CLEANUP: every process of the cluster, then its namespace (lib.sh removes $WORK after)
  local pid dir
  for pid in "${SLURM_PIDS[@]}"; do
    # lib.sh has killed what names $WORK on its command line (the daemons); a pid not ours any more is left alone
    grep -qF -- "$WORK/" "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  done
  # What slurmd started (slurmstepd, batch shells, srun, ranks) carries the cluster's SLURM_CONF in its environment.
  for dir in /proc/[0-9]*; do
    grep -qzx -- "SLURM_CONF=$WORK/slurm.conf" "$dir/environ" 2>/dev/null && kill -KILL "${dir#/proc/}" 2>/dev/null
  done
  if [[ -n "$SLURM_NETNS" ]]; then ip netns delete "$SLURM_NETNS" 2>/dev/null; fi
  return 0
}

slurm_network() {  # chooses where the daemons run (above) and sets SL
  local mode="${DDPM_SLURM_NETNS:-auto}" name="ddpmslurm$$"
  SL=(env "SLURM_CONF=$WORK/slurm.conf")
  if [[ "$mode" != no ]] && command -v ip >/dev/null && ip netns add "$name" 2>/dev/null; then
    SLURM_NETNS="$name"
    if ! { ip -n "$name" link set lo up && ip -n "$name" link add sl0 type veth peer name sl1 &&
      ip -n "$name" addr add 10.213.255.1/30 dev sl0 && ip -n "$name" addr add 10.213.255.2/30 dev sl1 &&
      ip -n "$name" link set sl0 up && ip -n "$name" link set sl1 up; }; then
      harness_error "could not set up the network namespace $name (lo, a veth pair)"
    fi
    SL+=(nsenter "--net=/run/netns/$name" --)
    SLURM_WHERE="network namespace $name (lo + veth 10.213.255.1-2/30)"
  elif [[ "$mode" == yes ]]; then
    slurm_skip "DDPM_SLURM_NETNS=yes, but no network namespace could be made (ip netns add)"
  elif ip -4 -o addr show scope global 2>/dev/null | grep -q inet; then
    SLURM_WHERE="root network namespace"
  else
    slurm_skip "no network namespace (ip netns add failed) and no non-loopback IPv4 address for slurmctld"
  fi
}

slurm_daemon_died() {  # slurm_daemon_died NAME PID LOG: skips (77) with the log's last error when PID is gone
  kill -0 "$2" 2>/dev/null && return 1
  slurm_skip "$1 did not start: $(grep -hiE 'error|fatal' "$3" "$3.stderr" 2>/dev/null | tail -n 2 | tr '\n' ' ')"
}

# The slurm.conf lines both clusters share (KILLWAIT: KillWait); slurm_start says why each is there.
slurm_conf_common() {
  cat <<EOF
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=pmix
KillWait=$1
SchedulerParameters=sched_interval=1,bf_interval=1
MinJobAge=600
ReturnToService=2
JobRequeue=0
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
EOF
}

# munged_start DIR PREFIX...: munged with a key and a socket of its own under DIR/munge, run through PREFIX (a
# namespace), until a credential round-trips (10 s at most; skipped otherwise). -f: $WORK (mktemp -d, 0700) is not
# searchable by other users, which munged refuses for a socket other users' clients need; every client here is root.
munged_start() {
  local dir="$1" i
  shift
  if ! { head -c 1024 /dev/urandom >"$dir/munge/munge.key" && chmod 400 "$dir/munge/munge.key"; }; then
    harness_error "could not write the munge key $dir/munge/munge.key"
  fi
  "$@" munged -F -f --key-file="$dir/munge/munge.key" --socket="$dir/munge/socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" \
    >"$dir/log/munged.log.stderr" 2>&1 &
  SLURM_PIDS+=($!)
  disown  # killed at the end by slurm_cleanup: no "Killed" report from bash
  for i in $(seq 50); do
    munge -S "$dir/munge/socket" -n 2>/dev/null | unmunge -S "$dir/munge/socket" >/dev/null 2>&1 && break
    slurm_daemon_died munged "${SLURM_PIDS[-1]}" "$dir/log/munged.log"
    sleep 0.2
  done
  ((i < 50)) || slurm_skip "munged does not answer on $dir/munge/socket"
}

# slurmctld_start DIR PREFIX...: slurmctld of $WORK/slurm.conf, run through PREFIX (a namespace), until it answers
# (20 s at most; skipped otherwise, with its log).
slurmctld_start() {
  local dir="$1" i
  shift
  "$@" slurmctld -D -c -f "$WORK/slurm.conf" >"$dir/log/slurmctld.log.stderr" 2>&1 &
  SLURM_PIDS+=($!)
  disown  # killed at the end by slurm_cleanup: no "Killed" report from bash
  for i in $(seq 100); do
    sl scontrol ping 2>/dev/null | grep -q 'is UP' && break
    slurm_daemon_died slurmctld "${SLURM_PIDS[-1]}" "$dir/log/slurmctld.log"
    sleep 0.2
  done
  ((i < 100)) || slurm_skip "slurmctld does not answer: $(tail -n 2 "$dir/log/slurmctld.log" | tr '\n' ' ')"
}

slurm_start() {
  local tool
  for tool in munged munge slurmctld slurmd sbatch scontrol squeue scancel sinfo ss nsenter; do
    command -v "$tool" >/dev/null || slurm_skip "$tool is not installed (Debian: munge slurm-wlm slurm-client iproute2)"
  done
  [[ $(id -u) -eq 0 ]] || slurm_skip "the daemons run as root (SlurmUser=root), and this is uid $(id -u)"
  EXTRA_CLEANUP+="; slurm_cleanup"
  slurm_network
  local dir="$WORK/slurm"
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/tmp" || harness_error "mkdir under $dir"
  chmod 700 "$dir/munge"

  munged_start "$dir" "${SL[@]}"
  local i

  local port
  if [[ -n "$SLURM_NETNS" ]]; then port=6817; else port="$(slurm_free_port $((20000 + RANDOM % 20000)))"; fi
  local host
  host="$(hostname -s)"
  # Every key, and why:
  #   SlurmctldHost=<this host's name>(127.0.0.1): slurmctld runs only where the name is this host's; the address
  #     spares a name lookup. NodeName=<this host's name> NodeAddr=127.0.0.1: a node named otherwise works for
  #     srun, but mpirun then takes it for another host and starts its ranks under an orted in a job step.
  #   SlurmctldPort/SlurmdPort: the namespace's own ports (or free ones of the root namespace).
  #   AuthType/CredType munge, AuthInfo=socket=<ours>: our munged. cred_expire=10: a requeued job waits
  #     cred_expire + 1 s before it may start again (121 s by default); the minimum is 5.
  #   SlurmUser=root, SlurmdUser=root: the test runs as root.
  #   SelectType=select/cons_tres, CR_CPU: jobs get CPUs (2 tasks of 1 CPU fill the node); CPUs=2 with
  #     SlurmdParameters=config_overrides: the node's configured size, whatever the machine has (no drain).
  #   ProctrackType=proctrack/linuxproc, TaskPlugin=task/none: no cgroup v2 delegation needed; cgroup.conf
  #     CgroupPlugin=cgroup/v1 all the same, or slurmd stops ("Unable to initialize cgroup plugin").
  #   MpiDefault=pmix: Debian's Open MPI has PMIx but no PMI-1/2.
  #   KillWait=30: SIGTERM to SIGKILL when a job ends (Slurm's default, what a checkpoint must fit in).
  #   SchedulerParameters=sched_interval=1, bf_interval=1: a requeued job starts as soon as it is eligible (the
  #     main scheduler runs every 60 s by default). MinJobAge=600: finished jobs stay visible to scontrol.
  #   ReturnToService=2: the node is idle once slurmd registers. Accounting, job accounting gather: none.
  #   JobRequeue=0: only jobs submitted with --requeue (the launch scripts say so) may be requeued.
  #   TmpFS under the work directory: slurmstepd's PMIx plugin makes spmix_appdir_<uid>_<job>.<step> there, and
  #     every test cluster starts again at job 1: a directory left in /tmp by an earlier run would fail the step.
  cat >"$WORK/slurm.conf" <<EOF || harness_error "could not write $WORK/slurm.conf"
ClusterName=ddpmtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
TmpFS=$dir/tmp
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$(slurm_conf_common 30)
NodeName=$SLURM_NODE NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=ddpm Nodes=$SLURM_NODE Default=YES MaxTime=INFINITE State=UP
EOF
  echo "CgroupPlugin=cgroup/v1" >"$WORK/cgroup.conf"

  slurmctld_start "$dir" "${SL[@]}"

  "${SL[@]}" slurmd -D -N "$SLURM_NODE" -f "$WORK/slurm.conf" >"$dir/log/slurmd.log.stderr" 2>&1 &
  SLURM_PIDS+=($!)
  disown  # killed at the end by slurm_cleanup: no "Killed" report from bash
  local state=""
  for i in $(seq 150); do
    state="$(sl sinfo --noheader --nodes "$SLURM_NODE" --format %T 2>/dev/null)"
    [[ "$state" == idle ]] && break
    slurm_daemon_died slurmd "${SLURM_PIDS[-1]}" "$dir/log/slurmd.log"
    sleep 0.2
  done
  [[ "$state" == idle ]] || slurm_skip "node $SLURM_NODE is '$state', not idle: $(tail -n 2 "$dir/log/slurmd.log" | tr '\n' ' ')"
  echo "Slurm $(sl scontrol --version | cut -d' ' -f2) up in the $SLURM_WHERE: slurmctld on 127.0.0.1:$port," \
    "node $SLURM_NODE idle (2 CPUs), SLURM_CONF=$WORK/slurm.conf"
}

# ---- Several nodes: a Slurm cluster over the simulated hosts of tests/multihost/hosts.sh ---------------------------
#   slurm_multinode_start   (after mh_create N) node mhostK = host K: its own slurmd (-N mhostK) in host K's network
#                           namespace under its host name; munged and slurmctld on host 0; waits until every node is
#                           idle. Sets SL (sl runs on host 0). SLURM_KILLWAIT (default 5) is KillWait.
# The nodes share the file system (run.dir, the munge socket: a path, reachable from every network namespace) and
# each has its own SlurmdSpoolDir, TmpFS, pid and log file (%n: the node's name). Debian's slurmd lacks
# --enable-multiple-slurmd; it needs none: each slurmd is alone in its namespace, on the standard ports, and its
# host name is its node's name.
SLURM_KILLWAIT="${SLURM_KILLWAIT:-5}"

slurm_multinode_start() {
  local tool k i n="${#MH_NS[@]}" dir="$WORK/slurm" nodes=""
  ((n > 0)) || harness_error "slurm_multinode_start: no hosts (mh_create first)"
  for tool in munged munge slurmctld slurmd srun scontrol sinfo; do
    command -v "$tool" >/dev/null || slurm_skip "$tool is not installed (Debian: munge slurm-wlm slurm-client)"
  done
  [[ $(id -u) -eq 0 ]] || slurm_skip "the daemons run as root (SlurmUser=root), and this is uid $(id -u)"
  EXTRA_CLEANUP+="; slurm_cleanup"
  mkdir -p "$dir/munge" "$dir/state" "$dir/log" || harness_error "mkdir under $dir"
  for ((k = 0; k < n; k++)); do
    mkdir -p "$dir/spool/${MH_NAME[k]}" "$dir/tmp/${MH_NAME[k]}" || harness_error "mkdir under $dir"
    nodes+="${nodes:+,}${MH_NAME[k]}"
  done
  chmod 700 "$dir/munge"
  mh_on_argv 0
  munged_start "$dir" "${MH_ON[@]}"
  # The keys of slurm_start (see there), and what several nodes need beyond them:
  #   SlurmctldHost=mhost0(<host 0's address>): slurmctld runs on host 0, whose host name that is.
  #   NodeName=mhostK NodeAddr=<host K's address>: slurmctld, srun and the other slurmstepds reach node K there.
  #   SlurmdSpoolDir, SlurmdPidFile, SlurmdLogFile with %n: one of each per node on the shared file system.
  #   TmpFS=.../tmp/%n: the PMIx plugin of slurmstepd makes its client directory spmix_appdir_<uid>_<job>.<step>
  #     under TmpFS (/tmp by default): on a shared /tmp the second node's fails ("File exists"), and so the step.
  #   KillWait=$SLURM_KILLWAIT: after MPI_Abort srun waits KillWait + 2 s for the tasks of every node; those of a
  #     node cut off never report, so srun ends only then ("Timed out waiting for job step to complete").
  cat >"$WORK/slurm.conf" <<EOC || harness_error "could not write $WORK/slurm.conf"
ClusterName=ddpmmultinode
SlurmctldHost=${MH_NAME[0]}(${MH_ADDR[0]})
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=debug
$(slurm_conf_common "$SLURM_KILLWAIT")
EOC
  for ((k = 0; k < n; k++)); do
    echo "NodeName=${MH_NAME[k]} NodeAddr=${MH_ADDR[k]} CPUs=2 RealMemory=1000 State=UNKNOWN" >>"$WORK/slurm.conf"
  done
  echo "PartitionName=ddpm Nodes=$nodes Default=YES MaxTime=INFINITE State=UP" >>"$WORK/slurm.conf"
  echo "CgroupPlugin=cgroup/v1" >"$WORK/cgroup.conf"
  mh_on_argv 0
  SL=(env "SLURM_CONF=$WORK/slurm.conf" "${MH_ON[@]}")
  slurmctld_start "$dir" "${MH_ON[@]}"
  for ((k = 0; k < n; k++)); do
    mh_on_argv "$k"
    "${MH_ON[@]}" slurmd -D -N "${MH_NAME[k]}" -f "$WORK/slurm.conf" >"$dir/log/slurmd.${MH_NAME[k]}.log.stderr" 2>&1 &
    SLURM_PIDS+=($!)
    disown
  done
  local idle=0
  for i in $(seq 150); do
    idle="$(sl sinfo --noheader --format '%n %T' 2>/dev/null | grep -c ' idle$')"
    ((idle == n)) && break
    for ((k = 0; k < n; k++)); do
      slurm_daemon_died "slurmd of ${MH_NAME[k]}" "${SLURM_PIDS[-n + k]}" "$dir/log/slurmd.${MH_NAME[k]}.log"
    done
    sleep 0.2
  done
  ((idle == n)) || slurm_skip "$idle of $n nodes idle: $(sl sinfo --noheader --format '%n %T' 2>&1 | paste -sd' ' -)"
  mh_on_argv 0
  echo "Slurm $(sl scontrol --version | cut -d' ' -f2) up: slurmctld on ${MH_NAME[0]} (${MH_ADDR[0]}:6817)," \
    "$n nodes idle ($nodes), KillWait=$SLURM_KILLWAIT, SLURM_CONF=$WORK/slurm.conf"
}
