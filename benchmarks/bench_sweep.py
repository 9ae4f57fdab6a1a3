"""Sweep overhead, shared splits and client memory: a workers × ratios × trials sweep over a multi-GB
export on the local cluster, then its report, once with reuse (cells share one persisted split,
the default) and once cold (``reuse: false``), each in a process of its own.

Overhead is everything that is not a cell: starting, scaling and waiting for the cluster,
recording cells and attempts, the watchdog, progress, and the analysis and report at the end. It
is reported as a share of the whole (sweep + report) wall time. The in-cell non-training share is
the part of the cells' own time that is not boosting: sum(seconds - train_seconds) / sum(seconds).
The client's peak RSS is sampled every 20 ms; the local cluster's scheduler lives in the client
process and counts.

    python benchmarks/bench_sweep.py                       # 12,000,000 rows (~3 GiB of Parquet), 12 cells, both modes
    python benchmarks/bench_sweep.py --rows 1000000 --trials 1   # a quick look
    python benchmarks/bench_sweep.py --data benchmarks/data/btc-40000000 --modes reuse   # another export, one mode
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
MODES = ("cold", "reuse")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=12_000_000)
    parser.add_argument("--positive-rate", type=float, default=0.005)
    parser.add_argument("--data", type=Path, default=None, help="export directory (default benchmarks/data/sweep-<rows>)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--ratios", default="1:1,1:10,1:50")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--modes", default="cold,reuse", help="which sweeps to run, in this order: cold,reuse")
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    return parser.parse_args(argv)


def ensure_data(args) -> Path:
    path = args.data or HERE / "data" / f"sweep-{args.rows}"
    if not any(path.glob("*.parquet")):
        print(f"generating {args.rows:,} rows into {path} (in a separate process) …", flush=True)
        subprocess.run(["workbench", "data", "synth", str(path), "--rows", str(args.rows),
                        "--positive-rate", str(args.positive_rate), "--workers", "2"], check=True)
    return path


class PeakRSS:
    """The largest resident set size of this process, sampled in a thread."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_one(args, mode: str) -> dict:
    """One sweep (``mode`` cold or reuse) and its report in this process: the figures as a dict."""
    data = ensure_data(args)
    workers = [int(w) for w in args.workers.split(",")]
    ratios = [r.strip() for r in args.ratios.split(",")]
    import workbench.pipeline  # noqa: F401  (imports xgboost, dask, distributed: not the sweep's overhead)
    from workbench.report import write_report
    from workbench.sweep import run_sweep, sweep_table

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        sweep = {
            "name": "bench",
            "pipeline": {
                "name": "bench-cell",
                "data": {"path": str(data / "*.parquet"), "target": "is_miner", "drop": ["address"]},
                "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
                "model": {"params": {"max_depth": 6, "eta": 0.1}, "num_boost_round": args.rounds,
                          "early_stopping_rounds": 10},
            },
            "cluster": {"type": "local"},
            "axes": {"workers": workers, "sampling.ratio": ratios},
            "trials": args.trials,
            "timeout": "30m",
            "reuse": mode == "reuse",
        }
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump(sweep, sort_keys=False))
        with PeakRSS() as rss:
            started = time.perf_counter()
            result = run_sweep(path, runs_dir=Path(tmp) / "runs",
                               progress=lambda m: print(f"  [{mode} {time.perf_counter() - started:6.1f}s] {m}",
                                                        file=sys.stderr, flush=True))
            swept = time.perf_counter()
            report = write_report("bench", Path(tmp) / "report", runs_dir=Path(tmp) / "runs")
            ended = time.perf_counter()
        table = sweep_table("bench", Path(tmp) / "runs")
    ok = table[table["status"] == "succeeded"]
    phases = {c[:-8]: float(ok[c].sum()) for c in ok.columns
              if c.endswith("_seconds") and c not in ("fit_seconds", "pipeline_seconds") and ok[c].notna().any()}
    return {
        "mode": mode, "succeeded": result.succeeded, "failed": result.failed, "planned": result.planned,
        "total": ended - started, "sweep": swept - started, "analysis": ended - swept, "figures": len(report.figures),
        "cell_seconds": result.cell_seconds, "scaling_seconds": result.scaling_seconds,
        "cells_wall": float(ok["seconds"].sum()), "train": float(ok["train_seconds"].sum()), "phases": phases,
        "peak_rss": rss.peak, "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def show(figures: dict, size: float) -> None:
    f = figures
    overhead = f["sweep"] - f["cell_seconds"] + f["analysis"]
    other = overhead - f["scaling_seconds"] - f["analysis"]
    share = 100 * (f["cells_wall"] - f["train"]) / f["cells_wall"] if f["cells_wall"] else float("nan")
    cells = max(1, f["succeeded"] + f["failed"])
    print(f"[{f['mode']}]")
    print(f"cells                 {f['succeeded']} succeeded, {f['failed']} failed of {f['planned']}")
    print(f"total                 {f['total']:8.1f}s  (sweep {f['sweep']:.1f}s + report {f['analysis']:.1f}s, {f['figures']} figures)")
    print(f"in the cells          {f['cell_seconds']:8.1f}s  (run_pipeline, mean {f['cell_seconds'] / cells:.1f}s per cell)")
    print(f"  training (train)    {f['train']:8.1f}s")
    print("  phases, summed      " + ", ".join(f"{k} {v:.1f}s" for k, v in f["phases"].items()))
    print(f"in-cell non-training share: {share:.1f} %")
    print(f"overhead              {overhead:8.1f}s  = {100 * overhead / f['total']:.2f} % of the total  (target <= 5 %)")
    print(f"  cluster start/scale {f['scaling_seconds']:8.1f}s")
    print(f"  recording, watchdog {other:8.1f}s  (and progress, planning)")
    print(f"  analysis + report   {f['analysis']:8.1f}s")
    print(f"client peak RSS: {f['peak_rss'] / 2**20:.0f} MiB (sampled), {f['ru_maxrss'] / 2**20:.0f} MiB (ru_maxrss)"
          f"  (target < 600 MiB; the export is {size / 2**30:.2f} GiB on disk)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args, args.one)))
        return 0
    data = ensure_data(args)
    size = sum(f.stat().st_size for f in data.glob("*.parquet"))
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    load = os.getloadavg()
    print(f"{len(list(data.glob('*.parquet')))} shards, {size / 2**30:.2f} GiB of Parquet, {data.name}; "
          f"workers {args.workers} × ratios {args.ratios} × {args.trials} trials, {args.rounds} rounds; "
          f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)", flush=True)
    figures = {}
    own = [a for a in (argv if argv is not None else sys.argv[1:])]
    for mode in modes:  # each sweep in a process of its own: its own client peak, no warm state from the other
        proc = subprocess.run([sys.executable, __file__, *own, "--data", str(data), "--one", mode],
                              stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"the {mode} sweep failed (exit {proc.returncode})")
            return 1
        figures[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    print()
    for mode in modes:
        show(figures[mode], size)
        print()
    if {"cold", "reuse"} <= set(figures):
        ratio = figures["reuse"]["total"] / figures["cold"]["total"]
        print(f"whole sweep, reuse / cold: {figures['reuse']['total']:.1f}s / {figures['cold']['total']:.1f}s = {ratio:.2f}"
              f"  (target <= 0.70)")
    load = os.getloadavg()
    print(f"load average after    {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0 if all(f["failed"] == 0 for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
