"""XGBoost from external memory on workers whose memory cannot hold the training set, against in-memory
``xgboost.train`` in one process with enough memory, in one invocation.

- workbench: a local cluster of 2 workers × 1 thread whose memory limits add up to less than the
  training set's float32 size (1.6 GiB each: 0.72 of it; the issue's target, half of it, is
  ``--memory-limit target``) → ``read_bigquery_export`` (train and a separate held-out export)
  → ``train_xgboost(memory="external")``: each worker sketches a group of the features over every
  row, then one task pinned per worker streams its block of partitions into an ``ExtMemQuantileDMatrix`` (cache pages in the worker's local directory, read
  back through mmap), the ranks joined by ``xgboost.collective``; exact metrics on the test export.
- baseline (a separate process, so its memory is its own): pyarrow read of the same shards into one
  preallocated float32 array → ``xgboost.QuantileDMatrix`` → ``xgboost.train(nthread=2)`` →
  ``inplace_predict`` on the test export → scikit-learn ROC AUC.

Both train on every row of the training export (no split, no RUS) with the same parameters and 2
threads in all, and are scored on the same held-out rows. While the workbench runs, a thread of this
process reads every worker process's ``/proc/<pid>/status`` (VmRSS, RssAnon, RssFile) at ~10 Hz, and
each worker records every value its Dask memory monitor reads (``SystemMonitor.get_process_memory``,
what the pause at 80 % and the nanny's kill at 95 % act on): the two are printed side by side.

    python benchmarks/bench_xgb_external.py                              # 40,000,000 rows, 50 rounds
    python benchmarks/bench_xgb_external.py --rows 4000000 --rounds 20  # a quick look
"""

from __future__ import annotations

import argparse
import bisect
import glob
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import machine  # noqa: E402
RESTART_WORDS = ("Restarting", "exceeded", "Remove worker", "Worker process died", "Nanny asking worker to close",
                 "terminate", "killed")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000_000, help="rows of the training export")
    parser.add_argument("--test-rows", type=int, default=4_000_000, help="rows of the held-out export")
    parser.add_argument("--positive-rate", type=float, default=0.002)
    parser.add_argument("--data", type=Path, default=None, help="training export (default benchmarks/data/btc-<rows>)")
    parser.add_argument("--test-data", type=Path, default=None,
                        help="held-out export, generated with seed 1 if missing (default benchmarks/data/btc-test-<test-rows>)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1.6GiB",
                        help="per worker (default 1.6GiB: the smallest measured to train 20 M rows per worker "
                             "without a pause); 'target': half the training set's float32 size, shared by the workers, "
                             "which XGBoost's own per-row state does not fit in (benchmarks/README.md)")
    parser.add_argument("--threads", type=int, default=2, help="baseline threads (the workers get 1 each)")
    parser.add_argument("--partition-size", default="32MiB",
                        help="reader partition size (32MiB: one 100,000-row row group per partition)")
    parser.add_argument("--skip-baseline", action="store_true", help="workbench side only (development)")
    parser.add_argument("--baseline-only", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def params(args) -> dict:
    return {"objective": "binary:logistic", "tree_method": "hist", "max_depth": args.max_depth, "eta": 0.1,
            "max_bin": 256, "seed": 0}


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ensure_exports(args) -> tuple[Path, Path]:
    """The training export (seed 0) and the held-out one (seed 1: other rows), generated on first use
    by a cluster of their own, before anything is measured."""
    import workbench as wb

    train = args.data or HERE / "data" / f"btc-{args.rows}"
    test = args.test_data or HERE / "data" / f"btc-test-{args.test_rows}"
    todo = [(path, rows, seed) for path, rows, seed in ((train, args.rows, 0), (test, args.test_rows, 1))
            if not any(path.glob("*.parquet"))]
    if todo:
        with wb.cluster({"type": "local", "n_workers": 2, "threads_per_worker": 1}) as client:
            for path, rows, seed in todo:
                print(f"generating {rows:,} rows into {path} (seed {seed}) …", flush=True)
                t = time.perf_counter()
                wb.synth_bitcoin_export(path, rows, positive_rate=args.positive_rate, seed=seed,
                                        rows_per_shard=1_000_000, client=client)
                print(f"generated in {time.perf_counter() - t:.0f}s", flush=True)
    return train, test


# ---------------------------------------------------------------- memory, seen from outside and by Dask


def _proc_status(pid: int) -> tuple[int, int, int]:
    """VmRSS, RssAnon, RssFile of ``pid`` in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["RssAnon"], values["RssFile"]


class Sampler(threading.Thread):
    """Every worker process's /proc status at ``hz``, and the size of its XGBoost cache pages at 1 Hz."""

    def __init__(self, pids: dict[str, int], directories: dict[str, str], hz: float = 10.0):
        super().__init__(daemon=True)
        self.pids, self.directories, self.period = pids, directories, 1 / hz
        self.samples = {address: [] for address in pids}  # (time, VmRSS, RssAnon, RssFile)
        self.cache_peak = dict.fromkeys(pids, 0)
        self.vanished: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        last_disk = 0.0
        while not self.stop.is_set():
            now = time.time()
            for address, pid in self.pids.items():
                if address in self.vanished:
                    continue
                try:
                    self.samples[address].append((now, *_proc_status(pid)))
                except (FileNotFoundError, ProcessLookupError, KeyError):
                    self.vanished.append(address)
            if now - last_disk >= 1.0:
                last_disk = now
                for address, directory in self.directories.items():
                    size = 0
                    for path in glob.glob(os.path.join(directory, "xgboost-extmem-*")):
                        try:
                            size += os.path.getsize(path)
                        except OSError:
                            pass
                    self.cache_peak[address] = max(self.cache_peak[address], size)
            self.stop.wait(self.period)


def _install_probe(dask_worker, directory: str) -> None:
    """Record every value the worker's Dask memory monitor reads (the memory manager's every 100 ms,
    the system monitor's every 500 ms: the figures the pause at 80 % acts on; the nanny's restart at
    95 % reads the same RSS through psutil), with the worker's status, one line each in a file that
    outlives the worker. A transparent wrapper: it returns what Dask's own method returns."""
    monitor = dask_worker.monitor
    if getattr(monitor, "_bench_probe", None) is not None:
        return
    original = monitor.get_process_memory
    out = open(os.path.join(directory, f"{os.getpid()}.probe"), "a", buffering=1)  # noqa: SIM115

    def probed() -> int:
        rss = original()
        out.write(f"{time.time():.3f} {rss} {dask_worker.status.name}\n")
        return rss

    monitor.get_process_memory = probed
    monitor._bench_probe = out


def _read_probes(directory: str, pids: dict[str, int]) -> dict[str, list]:
    probes = {}
    for address, pid in pids.items():
        path = os.path.join(directory, f"{pid}.probe")
        lines = Path(path).read_text().split("\n") if os.path.exists(path) else []
        probes[address] = [(float(t), int(v), status) for t, v, status in
                           (line.split() for line in lines if line.count(" ") == 2)]
    return probes


class _Records(logging.Handler):
    """The scheduler's and the nannies' log records (they run in this process), kept even when
    the worker they are about is gone."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


def _worker_limits(dask_worker) -> dict:
    mm = dask_worker.memory_manager
    return {"limit": mm.memory_limit, "pause": mm.memory_pause_fraction, "local_directory": dask_worker.local_directory}


# ---------------------------------------------------------------- workbench


def open_exports(args, train_path: Path, test_path: Path):
    """Both exports as Datasets with exact class counts (no split: every training row trains)."""
    import workbench as wb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wb.WorkbenchWarning)
        train = wb.read_bigquery_export(str(train_path / "*.parquet"), target="is_miner", drop=["address"],
                                        partition_size=args.partition_size)
        test = wb.read_bigquery_export(str(test_path / "*.parquet"), target="is_miner", drop=["address"],
                                       partition_size=args.partition_size)
    return train, test


def memory_limit(args, train) -> int:
    from dask.utils import parse_bytes

    if args.memory_limit != "target":
        return parse_bytes(args.memory_limit)
    return train.info["rows_in_files"] * len(train.features) * 4 // 2 // args.workers


def run_workbench(args, train_path: Path, test_path: Path) -> dict:
    import workbench as wb

    train, test = open_exports(args, train_path, test_path)
    limit = memory_limit(args, train)
    profile = {"type": "local", "n_workers": args.workers, "threads_per_worker": 1, "memory_limit": limit}
    out: dict = {"timings": {}, "error": None}
    with wb.cluster(profile) as client:
        client.run(lambda: __import__("workbench.train._extmem") and None)
        pids = client.run(os.getpid)
        limits = client.run(_worker_limits)
        probe_dir = tempfile.mkdtemp(prefix="bench-xgb-external-")
        client.run(_install_probe, directory=probe_dir)
        records = _Records()
        logging.getLogger("distributed").addHandler(records)
        sampler = Sampler(pids, {a: v["local_directory"] for a, v in limits.items()})
        sampler.start()
        marks: list[tuple[float, str]] = []
        result = None
        try:
            t = time.perf_counter()
            train, test = open_exports(args, train_path, test_path)  # timed here, with the cluster up
            out["timings"]["open"] = time.perf_counter() - t
            # Exact class counts (one pass over the target column) give train_xgboost the row count
            # it checks the cache pages' disk space with.
            t = time.perf_counter()
            train = train.with_frame(train.frame, wb.class_counts(train))
            test = test.with_frame(test.frame, wb.class_counts(test))
            out["timings"]["class counts"] = time.perf_counter() - t
            marks.append((time.time(), "start"))
            # retries=0: a worker lost (killed over its memory limit) ends the run instead of
            # training again, and the report says so.
            result = wb.train_xgboost(train, test, memory="external", params=params(args),
                                      num_boost_round=args.rounds, retries=0, client=client,
                                      on_phase=lambda name, s: marks.append((time.time(), name)))
            marks.append((time.time(), "end"))
        except Exception as exc:  # noqa: BLE001 - reported with the memory figures
            out["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            marks.append((time.time(), "end"))
        finally:
            sampler.stop.set()
            sampler.join()
        after = client.run(os.getpid)
        # ru_maxrss: the lifetime peak of the workers that are still the same processes
        worker_maxrss = {address: rss for address, rss in client.run(
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024).items()
            if after.get(address) == pids.get(address)}
        info = client.scheduler_info(n_workers=-1)["workers"]
        statuses = {address: w.get("status") for address, w in info.items()}
        logs = [line for lines in client.get_worker_logs(n=10_000).values() for _, line in lines]
        logging.getLogger("distributed").removeHandler(records)  # before the cluster's own shutdown
    logs += records.lines
    probes = _read_probes(probe_dir, pids)
    shutil.rmtree(probe_dir, ignore_errors=True)
    out.update(
        features=list(train.features), train_rows=train.n_rows or train.info["rows_in_files"],
        test_rows=test.n_rows or test.info["rows_in_files"], train_npartitions=train.npartitions,
        limit=limit, limits=limits, pids=pids, after=after, statuses=statuses, worker_maxrss=worker_maxrss,
        samples=sampler.samples, probes=probes, vanished=sampler.vanished, cache_peak=sampler.cache_peak,
        marks=marks, restarts=[line for line in logs if any(w in line for w in RESTART_WORDS)],
        pauses=[line for line in logs if "Pausing worker" in line], client_peak=peak_rss(),
    )
    if result is not None:
        out.update(roc_auc=result.metrics.roc_auc, pr_auc=result.metrics.pr_auc, memory=result.memory,
                   attempts=result.attempts, rounds=result.booster.num_boosted_rounds())
        out["timings"].update(result.timings)
    return out


# ---------------------------------------------------------------- baseline


def run_baseline(args, train_path: Path, test_path: Path, features: list[str]) -> dict:
    spec = Path(tempfile.mkstemp(suffix=".json")[1])
    spec.write_text(json.dumps({"train": str(train_path), "test": str(test_path), "features": features}))
    cmd = [sys.executable, __file__, "--baseline-only", str(spec), "--rounds", str(args.rounds),
           "--max-depth", str(args.max_depth), "--threads", str(args.threads)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    spec.unlink()
    return json.loads(done.stdout.strip().splitlines()[-1])


def _read_float32(files: list[Path], features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every shard's features into one preallocated float32 array, one column of one file at a time
    (never the whole set in float64), with the workbench reader's conversions: decimals, timestamps
    and dates to float64 numbers, nulls to NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    X = np.empty((sum(rows), len(features)), dtype=np.float32)
    y = np.empty(sum(rows), dtype=np.float32)
    start = 0
    for f, n in zip(files, rows):
        table = pq.read_table(f, columns=[*features, "is_miner"])
        for j, name in enumerate(features):
            col = table.column(name)
            if pa.types.is_timestamp(col.type):
                col = pc.divide(pc.cast(col, pa.int64()), 1e6)
            elif pa.types.is_date(col.type):
                col = pc.multiply(pc.cast(pc.cast(col, pa.int32()), pa.float64()), 86400.0)
            else:
                col = pc.cast(col, pa.float64())
            X[start:start + n, j] = col.to_numpy(zero_copy_only=False)
        y[start:start + n] = table.column("is_miner").to_numpy(zero_copy_only=False)
        start += n
        del table
    return X, y


def baseline_main(args) -> None:
    import xgboost as xgb
    from sklearn.metrics import average_precision_score, roc_auc_score

    spec = json.loads(Path(args.baseline_only).read_text())
    timings = {}
    t0 = time.perf_counter()
    X, y = _read_float32(sorted(Path(spec["train"]).glob("*.parquet")), spec["features"])
    timings["read"] = time.perf_counter() - t0
    n_rows = len(y)
    t = time.perf_counter()
    dtrain = xgb.QuantileDMatrix(X, y, max_bin=256, nthread=args.threads, feature_names=spec["features"])
    timings["dmatrix"] = time.perf_counter() - t
    del X, y  # the quantised matrix holds what training needs
    t = time.perf_counter()
    booster = xgb.train({**params(args), "nthread": args.threads}, dtrain, args.rounds)
    timings["train"] = time.perf_counter() - t
    del dtrain
    t = time.perf_counter()
    X_test, y_test = _read_float32(sorted(Path(spec["test"]).glob("*.parquet")), spec["features"])
    timings["read test"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = booster.inplace_predict(X_test)
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    auc = roc_auc_score(y_test, scores)
    pr = average_precision_score(y_test, scores)
    timings["metrics"] = time.perf_counter() - t
    print(json.dumps({"timings": timings, "total": time.perf_counter() - t0, "roc_auc": auc, "pr_auc": pr,
                      "train_rows": n_rows, "test_rows": len(y_test), "peak": peak_rss(),
                      "rounds": booster.num_boosted_rounds()}))


# ---------------------------------------------------------------- report


def _phase_bounds(marks: list, timings: dict) -> list[tuple[str, float, float]]:
    """Wall-clock spans of the phases. train_xgboost reports dmatrix and train together once both
    are done, so the boundary between them is placed ``train`` seconds before that report."""
    at = {name: t for t, name in marks}
    if "dmatrix" not in at:
        return [("training (did not finish)", at["start"], at["end"])]
    start, trained = at["start"], at["dmatrix"]
    spans = [("dmatrix", start, trained - timings["train"]), ("train", trained - timings["train"], trained)]
    previous = trained
    for name in ("predict", "metrics"):
        if name in at:
            spans.append((name, previous, at[name]))
            previous = at[name]
    return spans


def _nearest_differences(times, values, ptimes, pvalues, within: float = 0.06) -> np.ndarray:
    """|Dask reading - /proc VmRSS| for each Dask reading with a /proc sample within ``within`` seconds."""
    diffs = []
    for t, v in zip(ptimes, pvalues):
        i = bisect.bisect_left(times, t)
        j = min((k for k in (i - 1, i) if 0 <= k < len(times)), key=lambda k: abs(times[k] - t))
        if abs(times[j] - t) <= within:
            diffs.append(abs(v - values[j]))
    return np.array(diffs) if diffs else np.array([np.nan])


def report(args, wbr: dict, base: dict | None, load_before: str, load_after: str) -> bool:
    MiB = 2**20
    limit, n_features = wbr["limit"], len(wbr["features"])
    float32 = wbr["train_rows"] * n_features * 4
    total_limit = limit * args.workers
    pause = next(iter(wbr["limits"].values()))["pause"] or 1.0
    print(f"\nexternal-memory XGBoost vs in-memory xgboost.train: {wbr['train_rows']:,} training rows × {n_features} "
          f"features = {float32 / 1e9:.2f} GB as float32, {wbr['train_npartitions']} partitions of "
          f"{args.partition_size}; held-out export {wbr['test_rows']:,} rows")
    print(f"{args.rounds} rounds, hist, depth {args.max_depth}, eta 0.1, max_bin 256, seed 0. workbench: "
          f"{args.workers} workers × 1 thread × {limit / MiB:.0f} MiB (sum {total_limit / 1e9:.2f} GB = "
          f"{total_limit / float32:.2f} of the float32 set); baseline: 1 process × {args.threads} threads, "
          "QuantileDMatrix")
    print(f"load average before {load_before}, after {load_after} (2 cores)")
    if wbr["error"]:
        print(f"\nWORKBENCH TRAINING FAILED: {wbr['error']}")

    wt = wbr["timings"]

    def fmt(v):
        return f"{v:9.2f}s" if v is not None else f"{'-':>10}"

    print(f"\n{'phase':<13} {'workbench':>10} {'baseline':>10}")
    for label, w, b in [("open", "open", None), ("class counts", "class counts", None), ("read", None, "read"),
                        ("dmatrix", "dmatrix", "dmatrix"), ("train", "train", "train"),
                        ("read test", None, "read test"), ("predict", "predict", "predict"),
                        ("metrics", "metrics", "metrics")]:
        print(f"{label:<13} {fmt(wt.get(w) if w else None)} {fmt(base['timings'].get(b) if base and b else None)}")
    print("  (workbench dmatrix: every partition read from Parquet, XGBoost's passes over them included)")

    ratio = auc_diff = None
    if "train" in wt:
        w_rate = wbr["train_rows"] * wbr["rounds"] / wt["train"]
        print(f"\ntraining throughput  workbench {w_rate:14,.0f} rows×rounds/s  ({wbr['train_rows']:,} × "
              f"{wbr['rounds']} / {wt['train']:.1f}s)")
        if base:
            b_rate = base["train_rows"] * base["rounds"] / base["timings"]["train"]
            ratio = w_rate / b_rate
            print(f"                     baseline  {b_rate:14,.0f} rows×rounds/s  ({base['train_rows']:,} × "
                  f"{base['rounds']} / {base['timings']['train']:.1f}s)")
            print(f"                     workbench / baseline {ratio:.2f}")
            w_all = wt["dmatrix"] + wt["train"]
            b_all = base["timings"]["read"] + base["timings"]["dmatrix"] + base["timings"]["train"]
            print(f"read + matrix + training: workbench {w_all:.1f}s, baseline {b_all:.1f}s, "
                  f"workbench / baseline speed {b_all / w_all:.2f}")
        if base:
            auc_diff = abs(wbr["roc_auc"] - base["roc_auc"])
            print(f"ROC AUC    workbench {wbr['roc_auc']:.4f}  baseline {base['roc_auc']:.4f}  difference {auc_diff:.4f}")
            print(f"PR AUC     workbench {wbr['pr_auc']:.4f}  baseline {base['pr_auc']:.4f}")
        else:
            print(f"ROC AUC    workbench {wbr['roc_auc']:.4f}  PR AUC {wbr['pr_auc']:.4f}  (no baseline)")

    # Memory: /proc at ~10 Hz from outside, and every value Dask's monitor read, per worker.
    spans = _phase_bounds(wbr["marks"], wt)
    print(f"\nworker memory: limit {limit / MiB:.0f} MiB; Dask pauses a worker above {pause:.0%} "
          f"({pause * limit / MiB:.0f} MiB), its nanny restarts it above 95 % ({0.95 * limit / MiB:.0f} MiB)")
    print(f"{'worker':<22} {'source':<26} {'readings':>8} {'peak MiB':>9} {'of limit':>8}")
    worker_peaks, agreements, paused_seen = {}, {}, []
    for address in sorted(wbr["samples"]):
        samples = np.array([s[:4] for s in wbr["samples"][address]], dtype="float64")
        if not len(samples):
            continue
        probes = wbr["probes"].get(address, [])
        ptimes = np.array([p[0] for p in probes], dtype="float64")
        pvalues = np.array([p[1] for p in probes], dtype="float64")
        paused_seen += [address for p in probes if p[2] != "running"][:1]
        times, vm, anon, file_ = samples.T
        window = (ptimes >= times[0]) & (ptimes <= times[-1])
        dask_peak = pvalues[window].max() if window.any() else float("nan")
        at_peak = int(vm.argmax())
        for k, (source, n, value) in enumerate([
            ("/proc VmRSS", len(vm), vm.max()),
            ("/proc RssAnon", len(vm), anon.max()),
            ("/proc RssFile (mapped files)", len(vm), file_.max()),
            ("Dask memory monitor", int(window.sum()), dask_peak),
            ("worker ru_maxrss (lifetime)", 1, wbr["worker_maxrss"].get(address, float("nan"))),
        ]):
            print(f"{address if k == 0 else '':<22} {source:<28} {n:>6} {value / MiB:9.0f} {value / limit:8.0%}")
        diffs = _nearest_differences(times, vm, ptimes[window], pvalues[window])
        agreements[address] = abs(dask_peak - vm.max())
        print(f"{'':<22} at the VmRSS peak: RssAnon {anon[at_peak] / MiB:.0f} + RssFile {file_[at_peak] / MiB:.0f} MiB; "
              f"cache pages on disk at most {wbr['cache_peak'][address] / MiB:,.0f} MiB")
        print(f"{'':<22} Dask vs /proc VmRSS: peaks {agreements[address] / MiB:.1f} MiB apart; the {len(diffs)} Dask "
              f"readings within 60 ms of a /proc sample differ by {np.median(diffs) / MiB:.1f} MiB (median), "
              f"{diffs.max() / MiB:.1f} MiB (max)")
        for name, lo, hi in spans:
            inside = (times >= lo) & (times < hi)
            pin = window & (ptimes >= lo) & (ptimes < hi)
            if inside.any():
                print(f"{'':<22}   {name:<9} VmRSS peak {vm[inside].max() / MiB:5.0f} MiB (RssAnon "
                      f"{anon[inside].max() / MiB:4.0f}, RssFile {file_[inside].max() / MiB:4.0f}); Dask peak "
                      f"{(pvalues[pin].max() if pin.any() else float('nan')) / MiB:5.0f} MiB")
        training = [(lo, hi) for name, lo, hi in spans if name == "train"]
        if training and ((times >= training[0][0]) & (times < training[0][1])).any():
            inside = (times >= training[0][0]) & (times < training[0][1])
            rows_here = wbr["train_rows"] / args.workers
            print(f"{'':<22} XGBoost's state while training: RssAnon {anon[inside][0] / MiB:.0f} MiB at its start, "
                  f"{anon[inside].max() / MiB:.0f} MiB at its peak; over the "
                  f"{(anon[inside].max() - anon[times < training[0][0]].min()) / MiB:.0f} MiB of a fresh worker that is "
                  f"{(anon[inside].max() - anon[times < training[0][0]].min()) / rows_here:.0f} B per training row")
        worker_peaks[address] = np.nanmax([vm.max(), dask_peak])
    lifetime = max(wbr["worker_maxrss"].values()) if wbr["worker_maxrss"] else 0  # of the surviving workers

    same = wbr["pids"] == wbr["after"] and not wbr["vanished"]
    client_peak = wbr["client_peak"]
    attempts = wbr.get("attempts", 0)
    print(f"\nworkers before {len(wbr['pids'])}, after {len(wbr['after'])}, same processes: {same}; "
          f"training attempts {attempts} (retries=0); statuses at the end {sorted(set(wbr['statuses'].values()))}")
    print(f"restart/kill lines in the logs: {len(wbr['restarts'])}; 'Pausing worker' lines: {len(wbr['pauses'])}; "
          f"workers seen paused by their monitor: {len(paused_seen)}")
    for line in (wbr["restarts"] + wbr["pauses"])[:6]:
        print("   ", line[:200])
    print(f"client peak RSS {client_peak / MiB:.0f} MiB (ru_maxrss; this process also runs the scheduler)")
    if base:
        print(f"baseline peak RSS {base['peak'] / MiB:.0f} MiB")

    peak = max(worker_peaks.values()) if worker_peaks else float("nan")
    agree = max(agreements.values()) if agreements else float("nan")
    no_loss = same and not wbr["restarts"] and not wbr["pauses"] and not paused_seen and attempts == 1
    targets = [
        ("memory limits sum <= half the float32 training set", f"{total_limit / 1e9:.2f} GB vs {float32 / 2e9:.2f} GB",
         total_limit <= float32 / 2),
        ("training finished", wbr["error"] or "yes", wbr["error"] is None),
        ("no worker killed, restarted or paused",
         f"same pids {same}, {len(wbr['restarts'])} kill/restart, {len(wbr['pauses']) + len(paused_seen)} pause",
         no_loss),
        ("worker peak RSS < limit (a nanny restarts a worker at 95 %)",
         f"{peak / MiB:.0f} MiB = {peak / limit:.0%}" + (f" (ru_maxrss {lifetime / limit:.0%})" if lifetime else ""),
         peak < 0.95 * limit and lifetime < 0.95 * limit),
        ("worker peak RSS < Dask's pause threshold", f"{peak / limit:.0%} vs {pause:.0%}",
         peak < pause * limit and lifetime < pause * limit),
        ("Dask's monitor and /proc VmRSS agree (peaks within 2 % of the limit)", f"{agree / MiB:.1f} MiB apart",
         agree <= 0.02 * limit),
        ("client peak RSS < 1 GB", f"{client_peak / 1e9:.2f} GB", client_peak < 1e9),
        ("training throughput >= 50 % of xgboost.train", "-" if ratio is None else f"{ratio:.2f}",
         ratio is not None and ratio >= 0.5),
        ("ROC AUC within 0.002 of the baseline", "-" if auc_diff is None else f"{auc_diff:.4f}",
         auc_diff is not None and auc_diff <= 0.002),
    ]
    print(f"\n{'target':<70} {'measured':<40} result")
    for name, measured, ok in targets:
        print(f"{name:<70} {measured[:40]:<40} {'PASS' if ok else 'FAIL'}")
    return all(ok for *_, ok in targets)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.baseline_only:
        baseline_main(args)
        return
    import dask

    # Client.scheduler_info(n_workers=-1) returns the client's cached identity, which the client's
    # own periodic refresh (every 2 s, asking for no workers) can overwrite between the fetch and the
    # return: train_external then sees no workers and aborts training as if one had died (seen twice
    # in one 40 M run on this loaded machine). No periodic refresh, no race.
    dask.config.set({"distributed.client.scheduler-info-interval": "1h"})
    train_path, test_path = ensure_exports(args)
    load_before = machine.load()
    print(f"load average {load_before} before the workbench", flush=True)
    print(machine.warm_memory(4 * 2**30), flush=True)
    wbr = run_workbench(args, train_path, test_path)
    print(f"workbench done ({wbr['error'] or 'trained'}); load average {machine.load()}", flush=True)
    base = None
    if not args.skip_baseline:
        # the baseline holds the float32 set and its quantised matrix: about 2.5x the float32 size
        print(machine.warm_memory(min(int(wbr["train_rows"] * len(wbr["features"]) * 4 * 2.5),
                                      int(machine.available_bytes() * 0.8))), flush=True)
        base = run_baseline(args, train_path, test_path, wbr["features"])
    ok = report(args, wbr, base, load_before, machine.load())
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
