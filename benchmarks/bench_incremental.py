"""Out-of-core SGD over an export several times larger than the workers' memory, against a pyarrow scan.

On one local cluster (2 workers × 1 thread × 1 GiB by default) over a synthetic export of 40 million
rows (≈ 9 GiB as float64 features, generated on first use, reused afterwards), it runs
``workbench.train_incremental(SGDClassifier(loss="log_loss"))`` for a few epochs and reports:

- throughput of each training epoch (rows/s: read, split, scale, ``partial_fit``) against a plain
  pyarrow scan of the same files and columns (``pyarrow.dataset`` batches, all cores, in a
  separate process so that the client's memory figure is the workbench's own);
- the one-pass feature statistics (exact mean/std) the same way;
- peak RSS of each worker process against its memory limit, the client's peak RSS;
- whether any worker was restarted (worker process ids and addresses before and after, and the
  scheduler's and nannies' logs);
- exact ROC AUC and PR AUC on the test set after each epoch.

The test set (``--test-size``, 2 % by default) is persisted on the workers before training, so each
epoch's evaluation does not read the whole export again (``split`` selects test rows from every file).

    python benchmarks/bench_incremental.py                       # 40,000,000 rows
    python benchmarks/bench_incremental.py --rows 4000000        # a quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESTART_WORDS = ("Restarting worker", "Worker process", "was killed", "exceeded", "Remove worker")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000_000)
    parser.add_argument("--positive-rate", type=float, default=0.002)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--memory-limit", default="1GiB")
    parser.add_argument("--partition-size", default="32MiB", help="reader partition size (one training block)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--test-size", type=float, default=0.02)
    args = parser.parse_args(argv)

    from dask.utils import parse_bytes
    from sklearn.linear_model import SGDClassifier

    import workbench as wb

    path = args.data or HERE / "data" / f"btc-{args.rows}"
    profile = {"type": "local", "n_workers": args.workers, "threads_per_worker": args.threads,
               "memory_limit": args.memory_limit}
    limit = parse_bytes(args.memory_limit)
    with wb.cluster(profile) as client:
        if not any(path.glob("*.parquet")):
            print(f"generating {args.rows:,} rows into {path} …", flush=True)
            t = time.perf_counter()
            wb.synth_bitcoin_export(path, args.rows, positive_rate=args.positive_rate, seed=0,
                                    rows_per_shard=1_000_000, client=client)
            print(f"generated in {time.perf_counter() - t:.0f}s", flush=True)
        files = sorted(str(p) for p in path.glob("*.parquet"))
        client.run(lambda: __import__("workbench") and __import__("sklearn.linear_model"))
        before = _workers(client)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wb.WorkbenchWarning)
            data = wb.read_bigquery_export(files, target="is_miner", drop=["address"],
                                           partition_size=args.partition_size)
        columns = [*data.features, data.target]
        n_rows = data.info["rows_in_files"]
        in_memory = n_rows * len(columns) * 8
        total_limit = limit * args.workers
        print(f"{len(files)} shards, {sum(os.path.getsize(f) for f in files) / 2**30:.1f} GiB of Parquet, "
              f"{n_rows:,} rows × {len(data.features)} features = {in_memory / 2**30:.1f} GiB as float64; "
              f"{args.workers} workers × {args.threads} thread(s) × {args.memory_limit} = {in_memory / total_limit:.1f}× "
              f"the workers' memory; {data.npartitions} partitions", flush=True)

        scanned, t_scan = _pyarrow_scan(files, columns)
        assert scanned == n_rows
        print(f"pyarrow scan of the {len(columns)} columns      {t_scan:7.1f}s  {scanned / t_scan:12,.0f} rows/s",
              flush=True)

        t = time.perf_counter()
        train, test = wb.split(data, args.test_size, seed=0)
        test = test.persist(client)
        t_split = time.perf_counter() - t
        print(f"split (class counts) + persist {test.n_rows:,} test rows {t_split:5.1f}s", flush=True)

        def on_epoch(epoch, metrics):
            print(f"epoch {epoch} scored: ROC AUC {metrics.roc_auc:.4f}  PR AUC {metrics.pr_auc:.4f}", flush=True)

        result = wb.train_incremental(train, test, SGDClassifier(loss="log_loss", alpha=1e-5), epochs=args.epochs,
                                      seed=0, client=client, on_epoch=on_epoch)
        after = _workers(client)
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        logs = [line for _, line in client.get_scheduler_logs(n=10_000)]
        logs += [line for lines in client.get_worker_logs(n=10_000, nanny=True).values() for _, line in lines]
        restarts = [line for line in logs if any(word in line for word in RESTART_WORDS)]
        pauses = [line for line in logs if "Pausing worker" in line]

    t_stats = result.timings["preprocess"]
    print(f"feature statistics (one pass)        {t_stats:7.1f}s  {train.n_rows / t_stats:12,.0f} rows/s  "
          f"ratio to scan {t_scan / t_stats:5.2f}")
    for epoch, seconds, roc, pr in zip(*(result.history[k] for k in ("epoch", "seconds", "roc_auc", "pr_auc"))):
        print(f"epoch {epoch} training pass              {seconds:7.1f}s  {train.n_rows / seconds:12,.0f} rows/s  "
              f"ratio to scan {t_scan / seconds:5.2f}   ROC AUC {roc:.4f}  PR AUC {pr:.4f}")
    print(f"evaluation (all epochs)              {result.timings['evaluate']:7.1f}s")
    for address, peak in sorted(peaks.items()):
        print(f"worker {address}: peak RSS {peak / 2**20:6.0f} MiB = {peak / limit:4.0%} of its {args.memory_limit}")
    print(f"client peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    same = before == after
    print(f"workers before {len(before)}, after {len(after)}, same processes: {same}; "
          f"restart/kill lines in logs: {len(restarts)}; memory pauses: {len(pauses)}")
    for line in restarts[:5]:
        print("   ", line[:160])


SCAN = """
import sys, time, pyarrow.dataset as ds
files, columns = sys.argv[1].split("\\n"), sys.argv[2].split("\\n")
t = time.perf_counter()
rows = sum(batch.num_rows for batch in ds.dataset(files, format="parquet").to_batches(columns=columns))
print(rows, time.perf_counter() - t)
"""


def _pyarrow_scan(files: list[str], columns: list[str]) -> tuple[int, float]:
    """Rows and seconds of a pyarrow scan of ``columns``, in a separate process (all its cores)."""
    out = subprocess.run([sys.executable, "-c", SCAN, "\n".join(files), "\n".join(columns)],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1])


def _workers(client) -> dict:
    """Worker address → process id: a restarted worker gets another address and pid."""
    return client.run(os.getpid)


if __name__ == "__main__":
    main()
