"""Model averaging and parallel ensembles as the cluster grows, each against its single-worker form.

On a synthetic export (2,000,000 rows by default, generated on first use), for each worker count
(1 thread each):

- **model averaging** (``workbench.train_averaged_sgd``, Zinkevich et al.: one SGD per worker on its
  own partitions, coefficients averaged every epoch) against the single-model incremental fit
  (``workbench.train_incremental``: one SGD visiting every block in turn) on the same training set:
  training seconds and exact test ROC AUC / PR AUC of both;
- **parallel ensemble** (``train_ensemble``: RandomForest, ExtraTrees, LDA and Gaussian NB fitted at
  the same time on different workers on one RUS sample, stacked): wall time of the fits against the
  sum of the fits' own times (what one worker does serially), and every member's AUC beside the
  stacking's.

    python benchmarks/bench_models.py                      # workers 1 2 4
    python benchmarks/bench_models.py --workers 1 2 --rows 400000
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--positive-rate", type=float, default=0.005)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ratio", default="1:10", help="RUS ratio of the ensemble's training sample")
    parser.add_argument("--alpha", type=float, default=1e-4, help="SGD regularisation (1e-5 made the averages erratic)")
    args = parser.parse_args(argv)

    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import SGDClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import workbench as wb
    from workbench.train.averaging import train_averaged_sgd
    from workbench.train.ensemble import train_ensemble

    warnings.simplefilter("ignore", wb.WorkbenchWarning)
    path = HERE / "data" / f"btc-{args.rows}-p{args.positive_rate}"
    if not any(path.glob("*.parquet")):
        print(f"generating {args.rows:,} rows into {path} …", flush=True)
        with wb.cluster({"type": "local", "n_workers": 2, "threads_per_worker": 1}) as client:
            wb.synth_bitcoin_export(path, args.rows, positive_rate=args.positive_rate, seed=0,
                                    rows_per_shard=125_000, client=client)
    members = {
        "random_forest": RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=0),
        "extra_trees": ExtraTreesClassifier(n_estimators=100, min_samples_leaf=2, random_state=0),
        "lda": make_pipeline(SimpleImputer(keep_empty_features=True), LinearDiscriminantAnalysis()),
        "gaussian_nb": make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler(), GaussianNB()),
    }
    rows = []
    for n in args.workers:
        profile = {"type": "local", "n_workers": n, "threads_per_worker": 1, "memory_limit": "4GiB"}
        with wb.cluster(profile) as client:
            data = wb.read_bigquery_export(str(path / "*.parquet"), target="is_miner", drop=["address"]).persist(client)
            train, test = wb.split(data, 0.2, seed=0)
            train, test = train.persist(client), test.persist(client)
            single = wb.train_incremental(train, test, SGDClassifier(loss="log_loss", alpha=args.alpha),
                                          epochs=args.epochs, seed=0, client=client)
            averaged = train_averaged_sgd(train, test, epochs=args.epochs, seed=0, alpha=args.alpha, client=client)
            sample = wb.undersample(train, args.ratio, seed=0).persist(client)
            t = time.perf_counter()
            ensemble = train_ensemble(members, sample, test, method="stacking", cv=3, seed=0, client=client)
            wall = time.perf_counter() - t
        rows.append((n, single, averaged, ensemble, wall))
        print(f"{n} worker(s): incremental {single.timings['train']:6.1f}s ROC {single.metrics.roc_auc:.4f} | "
              f"averaged {averaged.timings['train']:6.1f}s ROC {averaged.metrics.roc_auc:.4f} | "
              f"ensemble fits {ensemble.timings['parallel']:6.1f}s wall for {ensemble.timings['serial']:6.1f}s",
              flush=True)

    print(f"\nSGD (alpha {args.alpha:g}) on {train.n_rows:,} training rows, {args.epochs} epochs; test {test.n_rows:,} rows")
    print(f"{'workers':>7}  {'incremental s':>13} {'ROC AUC':>8} {'PR AUC':>7}   {'averaged s':>10} {'ROC AUC':>8} "
          f"{'PR AUC':>7}   {'time ratio avg/inc':>18}")
    for n, single, averaged, _, _ in rows:
        print(f"{n:>7}  {single.timings['train']:13.1f} {single.metrics.roc_auc:8.4f} {single.metrics.pr_auc:7.4f}   "
              f"{averaged.timings['train']:10.1f} {averaged.metrics.roc_auc:8.4f} {averaged.metrics.pr_auc:7.4f}   "
              f"{averaged.timings['train'] / single.timings['train']:18.2f}")
    print(f"\nensemble ({', '.join(members)} + stacking, cv=3) on a {args.ratio} RUS sample of {sample.n_rows:,} rows")
    first_wall = rows[0][3].timings["parallel"]
    print(f"{'workers':>7}  {'fits wall s':>11} {'sum of fits s':>13} {'sum/wall':>8} {'vs first':>8}   "
          + "  ".join(f"{name[:12]:>12}" for name in [*members, "stacking"]))
    for n, _, _, ensemble, _ in rows:
        t = ensemble.timings
        print(f"{n:>7}  {t['parallel']:11.1f} {t['serial']:13.1f} {t['serial'] / t['parallel']:8.2f} "
              f"{first_wall / t['parallel']:8.2f}   "
              + "  ".join(f"{ensemble.metrics[name].roc_auc:12.4f}" for name in [*members, "stacking"]))
    print("(sum/wall: the fits' own times over the wall time; with more workers than cores each fit runs slower,\n"
          " so 'vs first' - the wall time against the first worker count's - is the real speed-up.\n"
          " The model columns are the exact test ROC AUC of each member and of the stacking.)")


if __name__ == "__main__":
    main()
