#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_slurm.py (run as root).
#
# Installs Debian's slurm-wlm (slurmctld, slurmd, client tools) and munge, writes a
# minimal slurm.conf for this host (all its CPUs, its memory, one partition `debug`),
# starts munged, slurmctld and slurmd, and waits until `sinfo` reports the node idle.
#
# Choices that make it work in a container without systemd, cgroups or a database:
# - ProctrackType=proctrack/linuxproc, TaskPlugin=task/none: no cgroup hierarchy needed.
# - AccountingStorageType=accounting_storage/none, JobAcctGatherType=jobacct_gather/none:
#   no slurmdbd. `sacct` then answers nothing, so the Snakemake SLURM executor must query
#   job states with `squeue` (`--slurm-status-command squeue`), which works only while
#   finished jobs stay in slurmctld's memory: MinJobAge=600 keeps them for ten minutes
#   (the plugin recommends >= 120 s).
# - SelectType=select/cons_tres with CR_Core_Memory: jobs are packed by CPU and memory,
#   so `mem_mb` and `threads` requests are enforced the way a real cluster does.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
# Leave 1 GiB to the system; slurmd refuses to start if RealMemory exceeds what it sees.
memory_mb=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1024 ))

# ----------------------------------------------------------------------------- munge
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
    su -s /bin/sh munge -c "/usr/sbin/munged --force"
fi
munge -n </dev/null | unmunge >/dev/null

# ----------------------------------------------------------------------------- slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
chown slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true
cat >/etc/slurm/slurm.conf <<EOF
# Single-node test cluster written by .ci/slurm_setup.sh.
ClusterName=brainalign-ci
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${memory_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
# No cgroup plugin is used; an explicit file stops slurmd from probing the hierarchy.
cat >/etc/slurm/cgroup.conf <<EOF
CgroupPlugin=cgroup/v1
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
EOF

# ----------------------------------------------------------------------------- daemons
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 60); do
    state=$(sinfo --noheader --nodes="${host}" --format=%T 2>/dev/null || true)
    case "$state" in
        idle*|mixed*|allocated*)
            echo "SLURM ready: node ${host} is ${state} (${cpus} CPUs, ${memory_mb} MB)"
            exit 0
            ;;
    esac
    sleep 1
done
echo "SLURM did not come up; node state: '${state:-none}'. Logs: /var/log/slurm/" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
