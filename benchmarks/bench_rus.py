"""Random under-sampling at 1:1 and 1:100 against one plain scan of the target column.

On one local cluster (2 workers × 1 thread by default), over a synthetic export of about 40 million
rows (generated on first use, ≈ 7 GB), it times:

- scan:  ``dd.read_parquet(files, columns=[target])`` and the class counts — the floor any exact
         sampler has to pay, since it must know how many rows of each class there are;
- rus:   ``workbench.undersample(data, ratio)`` — counts per partition, the exact allocation, and the
         per-partition selection plan; the sample's size is then known exactly without another pass;
- check: (outside the ratio) one pass over the selected rows' target column, confirming the sample
         has exactly the planned counts.

Prints each time, the ratio rus/scan, and the client's peak memory.

    python benchmarks/bench_rus.py                     # 40,000,000 rows
    python benchmarks/bench_rus.py --rows 4000000      # a quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000_000)
    parser.add_argument("--positive-rate", type=float, default=0.002)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="take the median of this many runs")
    args = parser.parse_args(argv)

    import dask.dataframe as dd
    import numpy as np

    import workbench as wb

    path = args.data or HERE / "data" / f"btc-{args.rows}"
    profile = {"type": "local", "n_workers": args.workers, "threads_per_worker": args.threads, "memory_limit": "4GiB"}
    with wb.cluster(profile) as client:
        if not any(path.glob("*.parquet")):
            print(f"generating {args.rows:,} rows into {path} …", flush=True)
            t = time.perf_counter()
            wb.synth_bitcoin_export(path, args.rows, positive_rate=args.positive_rate, seed=0,
                                    rows_per_shard=1_000_000, client=client)
            print(f"generated in {time.perf_counter() - t:.0f}s", flush=True)
        files = sorted(str(p) for p in path.glob("*.parquet"))
        size = sum(os.path.getsize(f) for f in files)
        client.run(lambda: __import__("workbench"))  # import costs belong to no contender

        def scan() -> None:
            counts = dd.read_parquet(files, columns=["is_miner"])["is_miner"].value_counts(split_out=1).compute()
            assert counts.sum() > 0

        def rus(ratio):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", wb.WorkbenchWarning)
                data = wb.read_bigquery_export(files, target="is_miner", drop=["address"])
            return wb.undersample(data, ratio, seed=0)

        def median_time(fn, *a) -> tuple[float, object]:
            times, out = [], None
            for _ in range(args.repeat):
                t = time.perf_counter()
                out = fn(*a)
                times.append(time.perf_counter() - t)
            return float(np.median(times)), out

        print(f"{len(files)} shards, {size / 2**30:.1f} GiB, {args.rows:,} rows; "
              f"{args.workers} worker(s) × {args.threads} thread(s); median of {args.repeat}")
        t_scan, _ = median_time(scan)
        print(f"scan of the target column          {t_scan:7.2f}s")
        for ratio in ("1:1", "1:100"):
            t_rus, sample = median_time(rus, ratio)
            t = time.perf_counter()
            got = sample.y.value_counts(split_out=1).compute().sort_index().to_numpy()
            t_check = time.perf_counter() - t
            exact = (got == [sample.n_negative, sample.n_positive]).all()
            print(f"rus {ratio:<6} → {sample.n_rows:>11,} rows ({sample.n_positive:,} positive) "
                  f"{t_rus:7.2f}s   ratio to scan {t_rus / t_scan:5.2f}   "
                  f"(check pass {t_check:.2f}s: counts {'exact' if exact else 'WRONG'})")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"client peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
