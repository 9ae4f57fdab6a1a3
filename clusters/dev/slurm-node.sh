#!/bin/bash
# One node of the emulated cluster of clusters/dev/slurm-up.sh. Run as root.
#   slurm-node.sh start NODE    start its slurmd in the node's namespaces (own hostname, address, /tmp)
#   slurm-node.sh kill NODE     kill -9 every process on the node: its slurmd and every job on it,
#                               as when a real node loses power (slurmctld marks it DOWN after
#                               SlurmdTimeout, 10 s here)
#   slurm-node.sh resume NODE   start it again and return it to service (scontrol ... state=resume)
#   slurm-node.sh pids NODE     the processes running on the node
set -euo pipefail
action=${1:?usage: slurm-node.sh start|kill|resume|pids NODE}
node=${2:?usage: slurm-node.sh start|kill|resume|pids NODE}
[ -e "/run/netns/$node" ] || { echo "slurm-node.sh: no node $node (is clusters/dev/slurm-up.sh up?)" >&2; exit 2; }

start() {
  # nsenter --net, not `ip netns exec`: the latter remounts /sys and slurmd's cgroup plugin fails.
  nsenter --net="/run/netns/$node" unshare --uts --mount --propagation private \
    sh -c "hostname $node && mount -t tmpfs -o mode=1777 tmpfs /tmp && exec slurmd -N $node"
}

case $action in
  start) start ;;
  pids) ip netns pids "$node" ;;
  kill)
    for i in $(seq 20); do
      pids=$(ip netns pids "$node")
      [ -z "$pids" ] && exit 0
      kill -9 $pids 2>/dev/null || true
      sleep 0.1
    done
    echo "slurm-node.sh: processes left on $node: $(ip netns pids "$node" | tr '\n' ' ')" >&2; exit 1 ;;
  resume)
    [ -n "$(ip netns pids "$node")" ] || start
    for i in $(seq 100); do
      state=$(sinfo -h -n "$node" -o '%T' 2>/dev/null || true)
      case $state in idle|mixed|allocated) exit 0 ;; esac
      scontrol update nodename="$node" state=resume 2>/dev/null || true
      sleep 0.3
    done
    echo "slurm-node.sh: $node did not come back: $(sinfo -h -n "$node" -o '%T %E')" >&2; exit 1 ;;
  *) echo "usage: slurm-node.sh start|kill|resume|pids NODE" >&2; exit 2 ;;
esac
