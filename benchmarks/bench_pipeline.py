"""The workbench pipeline against a hand-written single-process baseline, in one invocation.

Both train the same rows with the same XGBoost parameters and threads and score the same test set:

- workbench: local cluster → read_bigquery_export → split → (no RUS) → xgboost.dask on a
  DaskQuantileDMatrix → exact metrics on the workers;
- baseline (a separate process): pyarrow read of every shard → pandas → numpy → xgboost.DMatrix →
  xgboost.train → predict → sklearn ROC AUC.

The baseline is given the workbench's test-set membership (computed outside both timings), so the
two AUCs are comparable to the third decimal. Prints each phase's time, the ratio
workbench/baseline, both AUCs, and the peak memory of the client, the workers and the baseline.

    python benchmarks/bench_pipeline.py                 # 4,000,000 rows (generated on first use)
    python benchmarks/bench_pipeline.py --rows 400000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import machine  # noqa: E402

WARM = 6 * 2**30  # more than either contender's peak (benchmarks/machine.py says why)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--positive-rate", type=float, default=0.002)
    parser.add_argument("--data", type=Path, default=None, help="export directory (default benchmarks/data/btc-<rows>)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="threads for both contenders")
    parser.add_argument("--workers", type=int, default=1, help="workbench workers (threads are split between them)")
    parser.add_argument("--baseline-only", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


PARAMS = {"objective": "binary:logistic", "tree_method": "hist", "eta": 0.1, "seed": 0}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ensure_data(args) -> Path:
    import workbench as wb

    path = args.data or HERE / "data" / f"btc-{args.rows}"
    if not any(path.glob("*.parquet")):
        print(f"generating {args.rows:,} rows into {path} …", flush=True)
        with wb.cluster("local", workers=2) as client:
            wb.synth_bitcoin_export(path, args.rows, positive_rate=args.positive_rate, seed=0, client=client)
    return path


def run_workbench(args, path: Path) -> dict:
    import workbench as wb

    # The workbench's modules imported before the clock starts, as the baseline imports pyarrow,
    # pandas, XGBoost and scikit-learn before its clock starts (its workers' imports stay timed).
    for name in ("cluster", "read_bigquery_export", "split", "train_xgboost"):
        getattr(wb, name)
    params = {**PARAMS, "max_depth": args.max_depth}
    t0 = time.perf_counter()
    profile = {"type": "local", "n_workers": args.workers, "threads_per_worker": max(1, args.threads // args.workers)}
    with wb.cluster(profile) as client:
        t_cluster = time.perf_counter() - t0
        timings = {"cluster": t_cluster}
        t = time.perf_counter()
        data = wb.read_bigquery_export(str(path / "*.parquet"), target="is_miner", drop=["address"])
        data = data.persist(client)
        timings["read"] = time.perf_counter() - t
        t = time.perf_counter()
        train, test = wb.split(data, test_size=0.2, seed=0)
        timings["split"] = time.perf_counter() - t
        result = wb.train_xgboost(train, test, params=params, num_boost_round=args.rounds, client=client)
        timings.update(result.timings)
        total = time.perf_counter() - t0
        members = test_membership(test, client)
        worker_peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {
        "timings": timings,
        "total": total,
        "roc_auc": result.metrics.roc_auc,
        "pr_auc": result.metrics.pr_auc,
        "train_rows": train.n_rows,
        "test_rows": test.n_rows,
        "client_peak_mib": peak_rss_mib(),
        "worker_peak_mib": sum(worker_peak.values()),
        "members": members,
    }


def test_membership(test, client) -> dict[str, list[int]]:
    """Row positions of the test set in each shard (harness only: not part of any timing)."""
    positions = test.frame.map_partitions(
        lambda df, partition_info=None: df.index.to_frame(index=False).assign(part=partition_info["number"]),
        meta={"row": "int64", "part": "int64"},
    ).compute()
    members: dict[str, list[int]] = {}
    for part, group in positions.groupby("part"):
        shard = test.partition_keys[part].split(":")[0]
        members.setdefault(shard, []).extend(group["row"].tolist())
    return members


def run_baseline(args, path: Path, members_file: Path) -> dict:
    """The single-process contender, run in its own process so its memory is its own."""
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    cmd = [sys.executable, __file__, "--baseline-only", str(members_file), "--data", str(path),
           "--rounds", str(args.rounds), "--max-depth", str(args.max_depth), "--threads", str(args.threads),
           "--rows", str(args.rows)]
    subprocess.run(cmd, check=True, stdout=open(out, "w"))
    return json.loads(out.read_text())


def baseline_main(args) -> None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import xgboost as xgb
    from sklearn.metrics import average_precision_score, roc_auc_score

    members = json.loads(Path(args.baseline_only).read_text())
    timings = {}
    t0 = time.perf_counter()
    files = sorted(args.data.glob("*.parquet"))
    frames, test_masks = [], []
    for f in files:
        table = pq.read_table(f)
        drop = [n for n, t in zip(table.schema.names, table.schema.types)
                if pa.types.is_string(t) or pa.types.is_nested(t)]
        table = table.drop_columns(drop)
        columns = {}
        for name, col in zip(table.column_names, table.columns):
            if pa.types.is_decimal(col.type):
                col = pc.cast(col, pa.float64())
            elif pa.types.is_timestamp(col.type):
                col = pc.divide(pc.cast(col, pa.int64()), 1e6)
            elif pa.types.is_date(col.type):
                col = pc.multiply(pc.cast(pc.cast(col, pa.int32()), pa.float64()), 86400.0)
            columns[name] = col
        frames.append(pa.table(columns).to_pandas())
        mask = np.zeros(table.num_rows, dtype=bool)
        mask[members.get(f.name, [])] = True
        test_masks.append(mask)
    df = pd.concat(frames, ignore_index=True)
    is_test = np.concatenate(test_masks)
    y = df.pop("is_miner").to_numpy(dtype="int8")
    X = df.to_numpy(dtype="float32")
    timings["read"] = time.perf_counter() - t0
    t = time.perf_counter()
    dtrain = xgb.DMatrix(X[~is_test], y[~is_test], nthread=args.threads)
    timings["dmatrix"] = time.perf_counter() - t
    t = time.perf_counter()
    booster = xgb.train({**PARAMS, "max_depth": args.max_depth, "nthread": args.threads}, dtrain, args.rounds)
    timings["train"] = time.perf_counter() - t
    t = time.perf_counter()
    scores = booster.inplace_predict(X[is_test])
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    auc = roc_auc_score(y[is_test], scores)
    pr = average_precision_score(y[is_test], scores)
    timings["metrics"] = time.perf_counter() - t
    json.dump({"timings": timings, "total": time.perf_counter() - t0, "roc_auc": auc, "pr_auc": pr,
               "train_rows": int((~is_test).sum()), "test_rows": int(is_test.sum()), "peak_mib": peak_rss_mib()},
              sys.stdout)


def report(wb_result: dict, base: dict, args) -> None:
    print(f"\nworkbench vs single-process baseline: {args.rows:,} rows, {args.rounds} rounds, depth {args.max_depth}, "
          f"{args.threads} threads ({args.workers} worker(s) × {max(1, args.threads // args.workers)} threads)")
    print(f"train rows {wb_result['train_rows']:,} / {base['train_rows']:,}; test rows {wb_result['test_rows']:,} / {base['test_rows']:,}")
    print(f"{'phase':<10} {'workbench':>10} {'baseline':>10} {'ratio':>7}")
    phases = ["cluster", "read", "split", "dmatrix", "train", "predict", "metrics"]
    for phase in phases:
        w = wb_result["timings"].get(phase)
        b = base["timings"].get(phase)
        ratio = f"{w / b:.2f}" if w is not None and b else "-"
        print(f"{phase:<10} {w if w is not None else float('nan'):>9.2f}s {b if b is not None else float('nan'):>9.2f}s {ratio:>7}")
    print(f"{'total':<10} {wb_result['total']:>9.2f}s {base['total']:>9.2f}s {wb_result['total'] / base['total']:>7.2f}"
          "   (workbench total includes starting the cluster)")
    no_cluster = wb_result["total"] - wb_result["timings"]["cluster"]
    print(f"{'total-cl':<10} {no_cluster:>9.2f}s {base['total']:>9.2f}s {no_cluster / base['total']:>7.2f}"
          "   (without cluster start-up)")
    print(f"ROC AUC    workbench {wb_result['roc_auc']:.4f}  baseline {base['roc_auc']:.4f}  "
          f"difference {abs(wb_result['roc_auc'] - base['roc_auc']):.4f}")
    print(f"PR AUC     workbench {wb_result['pr_auc']:.4f}  baseline {base['pr_auc']:.4f}")
    print(f"peak RSS   workbench client {wb_result['client_peak_mib']:.0f} MiB, workers {wb_result['worker_peak_mib']:.0f} MiB; "
          f"baseline {base['peak_mib']:.0f} MiB")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.baseline_only:
        baseline_main(args)
        return
    path = ensure_data(args)
    print(f"load average {machine.load()} before the workbench")
    print(machine.warm_memory(WARM), flush=True)
    wb_result = run_workbench(args, path)
    members_file = Path(tempfile.mkstemp(suffix=".json")[1])
    members_file.write_text(json.dumps(wb_result.pop("members")))
    print(f"load average {machine.load()} before the baseline")
    print(machine.warm_memory(WARM), flush=True)
    base = run_baseline(args, path, members_file)
    report(wb_result, base, args)


if __name__ == "__main__":
    main()
