"""Load time, from "start" to "features in the workers' memory": Parquet export vs the Zarr cache.

On one local cluster (2 workers × 1 thread by default), over the 4-million-row synthetic export
(generated on first use), in the same run:

- parquet: ``read_bigquery_export(export)`` then ``Dataset.persist`` — footers, normalisation
           (decimals, timestamps, nulls) and the rows in worker memory; what every load costs
           without a cache;
- build:   ``build_cache(export, cache)`` — one normalising read of the export plus the Zarr write
           (paid once, by the first load);
- cache:   ``read_cache(cache)`` then ``Dataset.persist`` — what every later load costs.

Each contender starts from nothing on the client (no Dataset, nothing persisted) and ends when the
partitions are in the workers' memory. Prints the medians, the ratio cache/parquet, and the
break-even: the cache pays for itself within n loads when build + (n - 1) × cache <= n × parquet
(the first load builds, the others read the cache).

    python benchmarks/bench_cache.py                  # 4,000,000 rows
    python benchmarks/bench_cache.py --rows 400000    # a quick look
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="take the median of this many runs")
    parser.add_argument("--compressor", default=None, help="cache compressor (default: blosc-lz4)")
    args = parser.parse_args(argv)

    import workbench as wb
    from workbench.data.cache import build_cache, disk_usage, read_cache

    warnings.simplefilter("ignore", wb.WorkbenchWarning)
    path = args.data or HERE / "data" / f"btc-{args.rows}"
    cache = path.with_name(path.name + ".zarr")
    profile = {"type": "local", "n_workers": args.workers, "threads_per_worker": args.threads, "memory_limit": "6GiB"}
    with wb.cluster(profile) as client:
        if not any(path.glob("*.parquet")):
            print(f"generating {args.rows:,} rows into {path} …", flush=True)
            wb.synth_bitcoin_export(path, args.rows, seed=0, client=client)
        client.run(lambda: (__import__("workbench.data.cache"), __import__("zarr")) and None)  # imports belong to no contender

        def load(open_dataset) -> float:
            started = time.perf_counter()
            data = open_dataset().persist(client)
            seconds = time.perf_counter() - started
            rows = data.n_rows if data.n_rows is not None else int(len(data.frame))
            client.cancel(data.frame)
            del data
            assert rows == args.rows, rows
            return seconds

        def parquet():
            return wb.read_bigquery_export(path, "is_miner", drop=["address"])

        builds, parquet_loads, cache_loads = [], [], []
        for _ in range(args.repeat):
            parquet_loads.append(load(parquet))
            shutil.rmtree(cache, ignore_errors=True)
            started = time.perf_counter()
            build_cache(path, cache, "is_miner", drop=["address"], compressor=args.compressor, client=client)
            builds.append(time.perf_counter() - started)
            cache_loads.append(load(lambda: read_cache(cache)))
            print(f"  parquet {parquet_loads[-1]:.2f}s  build {builds[-1]:.2f}s  cache {cache_loads[-1]:.2f}s", flush=True)

        p, b, c = (statistics.median(x) for x in (parquet_loads, builds, cache_loads))
        parquet_bytes = sum(f.stat().st_size for f in path.glob("*.parquet"))
        print(f"\n{args.rows:,} rows, {args.workers} worker(s) x {args.threads} thread(s), median of {args.repeat}")
        print(f"  export on disk   {parquet_bytes / 2**20:8.1f} MiB (Parquet, snappy, with ids and nested columns)")
        print(f"  cache on disk    {disk_usage(cache) / 2**20:8.1f} MiB (Zarr, {args.compressor or 'blosc-lz4'}, features and target only)")
        print(f"  parquet load     {p:8.2f} s")
        print(f"  cache build      {b:8.2f} s (paid once)")
        print(f"  cache load       {c:8.2f} s")
        print(f"  ratio cache/parquet load: {c / p:.2f}")
        # n loads without the cache cost n*p; with it b + (n-1)*c
        n = 1 if b <= p else (math.inf if c >= p else math.ceil((b - c) / (p - c)))
        print(f"  break-even: the cache pays for itself within {n} load(s) "
              f"(two loads: {b + c:.2f}s with the cache vs {2 * p:.2f}s without)")


if __name__ == "__main__":
    main()
