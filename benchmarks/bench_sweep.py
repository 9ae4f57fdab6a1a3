"""Sweep overhead and client memory: a workers × ratios × trials sweep over a multi-GB export on
the local cluster, then its report.

Overhead is everything that is not a cell: starting, scaling and waiting for the cluster,
recording cells and attempts, the watchdog, progress, and the analysis and report at the end. It
is reported as a share of the whole (sweep + report) wall time, next to the client's peak RSS
(sampled every 20 ms; the local cluster's scheduler lives in the client process and counts).

    python benchmarks/bench_sweep.py                       # 12,000,000 rows (~3 GiB of Parquet), 12 cells
    python benchmarks/bench_sweep.py --rows 1000000 --trials 1   # a quick look
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=12_000_000)
    parser.add_argument("--positive-rate", type=float, default=0.005)
    parser.add_argument("--data", type=Path, default=None, help="export directory (default benchmarks/data/sweep-<rows>)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--ratios", default="1:1,1:10,1:50")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=50)
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


def main(argv=None) -> int:
    args = parse_args(argv)
    data = ensure_data(args)
    size = sum(f.stat().st_size for f in data.glob("*.parquet"))
    workers = [int(w) for w in args.workers.split(",")]
    ratios = [r.strip() for r in args.ratios.split(",")]
    import workbench.pipeline  # noqa: F401  (imports xgboost, dask, distributed: not the sweep's overhead)
    from workbench.report import write_report
    from workbench.sweep import run_sweep

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
        }
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump(sweep, sort_keys=False))
        print(f"{len(list(data.glob('*.parquet')))} shards, {size / 2**30:.2f} GiB of Parquet, {args.rows:,} rows; "
              f"workers {workers} × ratios {ratios} × {args.trials} trials, {args.rounds} rounds", flush=True)
        with PeakRSS() as rss:
            started = time.perf_counter()
            result = run_sweep(path, runs_dir=Path(tmp) / "runs",
                               progress=lambda m: print(f"  [{time.perf_counter() - started:6.1f}s] {m}", flush=True))
            swept = time.perf_counter()
            report = write_report("bench", Path(tmp) / "report", runs_dir=Path(tmp) / "runs")
            ended = time.perf_counter()
    total = ended - started
    analysis = ended - swept
    overhead = (swept - started) - result.cell_seconds + analysis
    other = overhead - result.scaling_seconds - analysis
    print()
    print(f"cells                 {result.succeeded} succeeded, {result.failed} failed of {result.planned}")
    print(f"total                 {total:8.1f}s  (sweep {swept - started:.1f}s + report {analysis:.1f}s, {len(report.figures)} figures)")
    print(f"in the cells          {result.cell_seconds:8.1f}s  (run_pipeline, mean {result.cell_seconds / max(1, result.succeeded + result.failed):.1f}s per cell)")
    print(f"overhead              {overhead:8.1f}s  = {100 * overhead / total:.2f} % of the total  (target <= 5 %)")
    print(f"  cluster start/scale {result.scaling_seconds:8.1f}s")
    print(f"  recording, watchdog {other:8.1f}s  (and progress, planning)")
    print(f"  analysis + report   {analysis:8.1f}s")
    print(f"client peak RSS       {rss.peak / 2**20:8.0f} MiB (sampled), {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (ru_maxrss)"
          f"  (target < 1024 MiB; the export is {size / 2**30:.2f} GiB on disk)")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
