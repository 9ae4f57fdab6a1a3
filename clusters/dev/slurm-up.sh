#!/bin/bash
# Bring up an emulated multi-node SLURM cluster on one Debian 12 machine without systemd, for the
# tests and for trying the SLURM and PBS profiles before a real cluster. Run as root;
# clusters/dev/slurm-down.sh undoes all of it.
#
# Each node (n1, n2, ... ; SLURM_NODES, default 3) is a slurmd in its own network namespace, UTS
# namespace and mount namespace: its own hostname, its own address on the bridge (10.77.0.11, .12,
# ...) and its own empty /tmp, as on a real cluster. Everything else (/work, /root, /var/tmp, the
# Python installation) is shared, as a cluster's shared filesystem is. This host plays the login
# node: slurmctld, munged and the Dask scheduler run here, at 10.77.0.1 on the bridge. The bridge
# and every node's end of its link are all called `wb0`, so `interface: wb0` in a profile is right
# for the scheduler here and for the workers on the nodes (as `ib0` is on a real cluster).
#
# Also installs slurm-wlm-torque, whose qsub/qstat/qdel wrappers let PBS profiles submit to it.
#   SLURM_NODES  nodes (default 3)        SLURM_CPUS  CPUs each node declares (default 4: more
#   than the real cores, so several one-core worker jobs run at once on a 2-core machine)
set -euo pipefail

NODES=${SLURM_NODES:-3}
NCPU=${SLURM_CPUS:-4}
NET=10.77.0
IFACE=wb0
(( NODES >= 1 && NODES <= 9 )) || { echo "slurm-up.sh: SLURM_NODES must be 1..9" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v qsub >/dev/null || ! command -v ip >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client slurm-wlm-torque \
    iproute2 util-linux >/dev/null
fi

# Start clean: a previous bring-up (single- or multi-node) is torn down first.
"$(dirname "$0")/slurm-down.sh" >/dev/null 2>&1 || true

# --- munge -------------------------------------------------------------------
# One munged on the host serves every node: its socket is on the shared filesystem.
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

# --- the network: a bridge on the host, one namespace per node ----------------
ip link add "$IFACE" type bridge
ip addr add "$NET.1/24" dev "$IFACE"
ip link set "$IFACE" up
for i in $(seq "$NODES"); do
  node=n$i
  ip netns add "$node"
  ip link add "wbv$i" type veth peer name "$IFACE" netns "$node"
  ip link set "wbv$i" master "$IFACE" up
  ip -n "$node" addr add "$NET.1$i/24" dev "$IFACE"
  ip -n "$node" link set lo up
  ip -n "$node" link set "$IFACE" up
  ip -n "$node" route add default via "$NET.1"
done
# Names for the nodes, as a cluster's DNS would give them (removed by slurm-down.sh).
sed -i '/# workbench-emulated-slurm$/d' /etc/hosts
for i in $(seq "$NODES"); do echo "$NET.1$i n$i # workbench-emulated-slurm" >> /etc/hosts; done

# --- slurm.conf ----------------------------------------------------------------
HOST=$(hostname -s)
MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$(( MEM * 90 / 100 ))     # every node declares the machine's memory: they share it
install -d -m 0755 /var/spool/slurmctld-emulated /var/log/slurm /run/slurm
for i in $(seq "$NODES"); do install -d -m 0755 "/var/spool/slurmd-n$i"; done
rm -f /var/spool/slurmctld-emulated/clustername   # "CLUSTER NAME MISMATCH" after another configuration
{
cat <<EOF
ClusterName=ci
SlurmctldHost=${HOST}($NET.1)
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
StateSaveLocation=/var/spool/slurmctld-emulated
SlurmdSpoolDir=/var/spool/slurmd-%n
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
KillWait=5
SlurmdParameters=config_overrides
MinJobAge=30
InactiveLimit=0
# A node whose slurmd stops answering is marked DOWN after 10 s (a real site uses minutes).
SlurmdTimeout=10
EOF
for i in $(seq "$NODES"); do
  echo "NodeName=n$i NodeAddr=$NET.1$i CPUs=${NCPU} RealMemory=${MEM} State=UNKNOWN"
done
echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=1000"
} > /etc/slurm/slurm.conf

# --- daemons -------------------------------------------------------------------
slurmctld -c      # daemonizes; -c starts with empty job/node state
for i in $(seq "$NODES"); do
  "$(dirname "$0")/slurm-node.sh" start "n$i"
done
for i in $(seq 150); do
  [ "$(sinfo -h -N -o '%T' 2>/dev/null | grep -cx idle)" = "$NODES" ] && break
  sleep 0.2
done
if [ "$(sinfo -h -N -o '%T' | grep -cx idle)" != "$NODES" ]; then
  sinfo -N; tail -n 30 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd-n*.log; exit 1
fi
sinfo -N -o '%N %T %c %m'
