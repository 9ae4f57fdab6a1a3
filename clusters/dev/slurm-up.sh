#!/bin/bash
# Bring up a real single-node SLURM cluster on Debian 12 without systemd, for the tests and for
# trying the SLURM and PBS profiles on one machine. Run as root; clusters/dev/slurm-down.sh undoes it.
# Also installs slurm-wlm-torque, whose qsub/qstat/qdel wrappers let PBS profiles submit to it.
# SLURM_CPUS (default 8) is the node's declared CPU count: more than the real cores, so tests can
# run several one-core worker jobs at once on a 2-core machine.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v qsub >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client slurm-wlm-torque >/dev/null
fi

# --- munge -------------------------------------------------------------------
# Debian's munge postinst already creates /etc/munge/munge.key; create one if missing.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged     # daemonizes; pid in /run/munge/munged.pid
fi
for i in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null

# --- slurm.conf ----------------------------------------------------------------
HOST=$(hostname -s)
NCPU=${SLURM_CPUS:-8}   # may exceed real cores (see config_overrides below)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$(( MEM * 90 / 100 ))     # a bit under what slurmd -C reports
install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=ci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=5
SlurmdParameters=config_overrides
MinJobAge=30
InactiveLimit=0
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${NCPU} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1000
EOF

# --- daemons -------------------------------------------------------------------
pgrep -x slurmctld >/dev/null && scontrol shutdown 2>/dev/null && sleep 1 || true
slurmctld -c      # daemonizes; -c starts with empty job/node state
slurmd            # daemonizes
for i in $(seq 100); do
  sinfo -h -o '%T' 2>/dev/null | grep -qx idle && break
  sleep 0.2
done
if ! sinfo -h -o '%T' | grep -qx idle; then
  sinfo; tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; exit 1
fi
sinfo
