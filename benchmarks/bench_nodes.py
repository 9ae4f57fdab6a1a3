"""Many nodes on the emulated SLURM cluster (clusters/dev/slurm-up.sh, 3 nodes by default):

1. **Bring-up**: the time from starting the cluster (its scheduler, then the worker jobs) to every
   worker connected, on 1, 2 and 3
   whole nodes (one job per node, ``workers_per_node: 1``), against the same number of workers
   packed as plain one-core jobs (the baseline: what the workers axis does).
2. **Per-cell overhead of the nodes axis**: the same small sweep over ``--nodes 1,2,3`` and over
   ``--workers 1,2,3`` (the baseline), each cell's time outside the pipeline, and the ratio.

Figures, not a test: run it as root with the emulated cluster up and nothing else in its queue.

    clusters/dev/slurm-up.sh
    python benchmarks/bench_nodes.py                  # 3 repeats per node count, sweeps with 2 trials
    python benchmarks/bench_nodes.py --repeats 1 --trials 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SHARED = Path(os.environ.get("WORKBENCH_BENCH_SHARED", "/var/tmp"))  # the nodes cannot see this host's /tmp


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--rows", type=int, default=200_000)
    return parser.parse_args(argv)


def profile(directory: Path, **keys) -> dict:
    return {"type": "slurm", "queue": "debug", "cores": 1, "memory": "1500MB", "walltime": "00:30:00",
            "interface": "wb0", "log_directory": str(directory / "logs"),
            "shared_temp_directory": str(directory / "tls"), "wait_timeout": "300s", "job_name": "wb-bench", **keys}


def bring_up(spec: dict, workers: int) -> float:
    """Seconds from starting the cluster (scheduler, then the job submissions) to every worker connected."""
    from workbench.cluster import make_cluster

    started = time.perf_counter()
    running = make_cluster(spec, workers=workers)
    seconds = time.perf_counter() - started
    running.close()
    return seconds


def hosts_of(spec: dict, workers: int) -> list[str]:
    from workbench.cluster import cluster, worker_hosts

    with cluster(spec, workers=workers) as client:
        return sorted(worker_hosts(client).values())


def sweep_overhead(directory: Path, export: Path, flag: str, counts: str, trials: int, cluster_file: Path) -> dict:
    """One sweep through the real command; per-cell time outside the cells, from the sweep store."""
    from workbench.sweep import sweep_table

    name = f"bench-{flag.strip('-')}"
    sweep = {
        "name": name,
        "pipeline": {
            "name": "cell",
            "data": {"path": str(export / "btc_addresses-*.parquet"), "target": "is_miner", "drop": ["address"]},
            "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
            "sampling": {"ratio": "1:5"},
            "model": {"params": {"max_depth": 4}, "num_boost_round": 30},
        },
        "axes": {"sampling.ratio": ["1:5"]}, "trials": trials, "metrics": ["roc_auc"],
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    runs = directory / f"runs-{name}"
    started = time.perf_counter()
    proc = subprocess.run(["workbench", "sweep", str(path), "--cluster", str(cluster_file), flag, counts,
                           "--runs-dir", str(runs)], cwd=directory, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"the sweep failed:\n{proc.stderr[-3000:]}")
    wall = time.perf_counter() - started
    table = sweep_table(name, runs)
    inside = float(table["pipeline_seconds"].sum())
    return {"cells": len(table), "wall": wall, "inside": inside, "per_cell_outside": (wall - inside) / len(table),
            "hosts": sorted(set(table["hosts"]))}


def main(argv=None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()[0]
    print(f"load average (1 min) before: {load:.2f} on {os.cpu_count()} cores"
          + ("  (busy: figures will be noisy)" if load > 0.5 else ""))
    queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()
    if queue:
        print(f"the queue is not empty; figures will include waiting for it:\n{queue}")
    nodes = [int(n) for n in args.nodes.split(",")]
    directory = Path(tempfile.mkdtemp(prefix="bench-nodes-", dir=SHARED))
    whole = profile(directory, workers_per_node=1)
    packed = profile(directory, processes=1)

    print(f"\n1. cluster start (scheduler + job submission) -> every worker connected, median of {args.repeats}, seconds")
    print(f"   {'workers':>7} {'whole nodes':>12} {'packed jobs':>12} {'ratio':>6}  nodes used (whole / packed)")
    for n in nodes:
        spread = statistics.median(bring_up(whole, n) for _ in range(args.repeats))
        together = statistics.median(bring_up(packed, n) for _ in range(args.repeats))
        where = f"{','.join(hosts_of(whole, n))} / {','.join(sorted(set(hosts_of(packed, n))))}"
        print(f"   {n:>7} {spread:>12.2f} {together:>12.2f} {spread / together:>6.2f}  {where}")

    print(f"\n2. sweep of {args.trials} trial(s) per count over {args.nodes}, through `workbench sweep`")
    export = directory / "export"
    subprocess.run(["workbench", "data", "synth", str(export), "--rows", str(args.rows), "--positive-rate", "0.02"],
                   check=True, stdout=subprocess.DEVNULL)
    cluster_file = directory / "slurm.yaml"
    cluster_file.write_text(yaml.safe_dump(profile(directory), sort_keys=False))
    by_nodes = sweep_overhead(directory, export, "--nodes", args.nodes, args.trials, cluster_file)
    by_workers = sweep_overhead(directory, export, "--workers", args.nodes, args.trials, cluster_file)
    for label, figures in (("--nodes", by_nodes), ("--workers (baseline)", by_workers)):
        print(f"   {label:<20} {figures['cells']} cells, wall {figures['wall']:.1f}s, inside the cells "
              f"{figures['inside']:.1f}s, outside per cell {figures['per_cell_outside']:.2f}s; hosts per cell: "
              f"{' | '.join(figures['hosts'])}")
    print(f"   per-cell overhead, nodes axis / workers axis: "
          f"{by_nodes['per_cell_outside'] / by_workers['per_cell_outside']:.2f}")
    print(f"\nload average (1 min) after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
