#!/bin/bash
# Tear down what clusters/dev/slurm-up.sh started: cancel every job, stop the daemons, remove the
# nodes' namespaces, the bridge and their /etc/hosts lines. Run as root.
set -u
if pgrep -x slurmctld >/dev/null; then
  scancel --user="$(id -un)" 2>/dev/null || true
  for i in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  scontrol shutdown 2>/dev/null || true      # stops slurmctld and every slurmd cleanly
fi
wait_gone() { for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null; }
for f in /run/slurm/slurmd*.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  [ "$f" = /run/munge/munged.pid ] && kill "$pid" 2>/dev/null
  wait_gone "$pid"
  rm -f "$f"
done
for ns in $(ip netns list 2>/dev/null | awk '/^n[0-9]/ {print $1}'); do
  pids=$(ip netns pids "$ns" 2>/dev/null)
  [ -n "$pids" ] && kill -9 $pids 2>/dev/null
  ip netns delete "$ns" 2>/dev/null
done
ip link delete wb0 2>/dev/null
sed -i '/# workbench-emulated-slurm$/d' /etc/hosts 2>/dev/null
rm -rf /var/spool/slurmctld/* /var/spool/slurmd/* /var/spool/slurmctld-emulated/* /var/spool/slurmd-n*
true
