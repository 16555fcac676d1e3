#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests of `bench run --executor slurm`.
#
#   tests/slurm/cluster.sh start    install slurm-wlm + munge if missing (apt-get), start munged,
#                                   slurmctld and slurmd, wait until the node takes jobs
#   tests/slurm/cluster.sh stop     stop the daemons again
#   tests/slurm/cluster.sh status   sinfo
#
# Needs root and no systemd (what CI and these machines have). State, spool and logs go under
# $BENCH_SLURM_DIR (default /tmp/bench-slurm). The cluster has no accounting database, so `sacct`
# cannot answer submitit; tests/slurm/sacct stands in for it (installed as /usr/local/bin/sacct)
# and answers from `scontrol`. Finished jobs stay visible to scontrol for a day (MinJobAge), and a
# cancelled job is killed after 5 s (KillWait). Without the stand-in the driver still ends: a job
# the scheduler no longer answers for is recorded failed after [executor] lost_after_s
# (tests/test_slurm.py runs a driver without it, and one whose job was purged).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${BENCH_SLURM_DIR:-/tmp/bench-slurm}"
conf=/etc/slurm/slurm.conf

install_packages() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
  echo "installing slurm-wlm and munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

stop() {
  for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  [ -f /run/munge/munged.pid ] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
  sleep 1
}

start() {
  [ "$(id -u)" = 0 ] || { echo "cluster.sh start needs root" >&2; exit 1; }
  install_packages
  stop
  mkdir -p "$dir/state" "$dir/spool" /run/munge /etc/slurm
  chown munge:munge /run/munge
  [ -f /etc/munge/munge.key ] || { /usr/sbin/mungekey -c 2>/dev/null || create-munge-key -f; }
  su -s /bin/sh munge -c /usr/sbin/munged
  host="$(hostname)"
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  cat > "$conf" <<CONF
ClusterName=bench
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
MinJobAge=86400
KillWait=5
SchedulerType=sched/backfill
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
NodeName=$host CPUs=$(nproc) RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  install -m 0755 "$here/sacct" /usr/local/bin/sacct
  slurmctld
  slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "slurm is up: $(sinfo -h -o '%P %D %t %c cpus')"
      return
    fi
    sleep 1
  done
  echo "slurm did not come up; see $dir/slurmctld.log and $dir/slurmd.log" >&2
  tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop; echo "slurm stopped" ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
