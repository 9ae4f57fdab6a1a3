#!/bin/bash
# Tear down what clusters/dev/slurm-up.sh started: cancel every job, stop the daemons. Run as root.
set -u
scancel --user="$(id -un)" 2>/dev/null || true
for i in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
scontrol shutdown 2>/dev/null || true        # stops slurmctld and slurmd cleanly
wait_gone() { for i in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null; }
for f in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  [ "$f" = /run/munge/munged.pid ] && kill "$pid" 2>/dev/null
  wait_gone "$pid"
  rm -f "$f"
done
rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
