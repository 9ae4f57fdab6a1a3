"""Random-forest grid search on a RUS sample: the workbench against scikit-learn and plain dask-ml.

One invocation, the same ~200,000-row sample (a 1:30 under-sample of the training split of a
synthetic 4,000,000-row export), the same 8 candidates (max_depth × n_estimators × ccp_alpha), the
same folds (StratifiedKFold(3, shuffle=True, random_state=0)), scores (ROC AUC, average precision)
and refit (best ROC AUC, on the whole sample). Every fit is single-threaded; 2 cores in all.

- sklearn:     ``GridSearchCV(n_jobs=2)`` on numpy arrays in this process, then
               ``cross_validate(n_jobs=2)`` of the estimator's own parameters: the same work as
               ``workbench.search`` (which also scores "the default");
- dask-ml:     plain ``dask_ml.model_selection.GridSearchCV`` with numpy ``X, y`` on the cluster
               (grid and refit only, as usually written);
- workbench:   ``workbench.search`` on the persisted Dataset, on 2 workers × 1 thread and on
               1 worker × 1 thread.

Prints every time, the best parameters and scores, and the ratios workbench/sklearn (target ≤ 1.0)
and 1 worker/2 workers (target ≥ 1.8).

    python benchmarks/bench_search.py                    # 4,000,000-row export, 1:30 sample
    python benchmarks/bench_search.py --ratio 1:5        # a quick look (≈ 38,000 rows)
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = {"max_depth": [6, 12], "n_estimators": [10, 20], "ccp_alpha": [0.0, 1e-5]}
SCORING = ("roc_auc", "average_precision")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--positive-rate", type=float, default=0.002)
    parser.add_argument("--ratio", default="1:30", help="RUS ratio of the search sample")
    parser.add_argument("--skip", default="", help="comma-separated contenders to skip: sklearn,daskml,wb1")
    return parser.parse_args(argv)


def estimator():
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=15, max_depth=9, random_state=0, n_jobs=1)


def sample_on(client, path, ratio):
    """Read, split and under-sample on this cluster's workers; the sample is persisted there."""
    import workbench as wb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wb.WorkbenchWarning)
        data = wb.read_bigquery_export(str(path), target="is_miner", drop=["address"])
    train, _ = wb.split(data, test_size=0.2, seed=0)
    return wb.undersample(train, ratio, seed=0).persist(client)


def _cpu_seconds() -> tuple[float, dict[int, float]]:
    """CPU seconds so far: of the whole machine (busy), and of this process and each of its children
    (the cluster's workers, joblib's worker processes), by process id."""
    import psutil

    machine = psutil.cpu_times()
    busy = machine.user + machine.nice + machine.system + getattr(machine, "irq", 0.0) + \
        getattr(machine, "softirq", 0.0) + getattr(machine, "steal", 0.0)
    me = psutil.Process()
    ours = {me.pid: sum(me.cpu_times()[:2])}
    for child in me.children(recursive=True):
        try:
            ours[child.pid] = sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return busy, ours


OTHER_LOAD: dict[str, float] = {}


def timed(fn, name=None):
    """Wall time of ``fn()``; notes how many cores other processes on the machine used meanwhile."""
    busy, ours = _cpu_seconds()
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    busy2, ours2 = _cpu_seconds()
    if name:  # processes of ours that ended meanwhile are not counted as ours: shut them down between contenders
        mine = sum(cpu - ours.get(pid, 0.0) for pid, cpu in ours2.items())
        OTHER_LOAD[name] = max(0.0, (busy2 - busy) - mine) / seconds
    return seconds, out


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate

    import workbench as wb
    from workbench.train.search import search

    skip = set(filter(None, args.skip.split(",")))
    path = HERE / "data" / f"btc-{args.rows}"
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    times, best = {}, {}
    two = {"type": "local", "n_workers": 2, "threads_per_worker": 1, "memory_limit": "4GiB"}
    with wb.cluster(two) as client:
        if not any(path.glob("*.parquet")):
            print(f"generating {args.rows:,} rows into {path} …", flush=True)
            wb.synth_bitcoin_export(path, args.rows, positive_rate=args.positive_rate, seed=0, client=client)
        sample = sample_on(client, path, args.ratio)
        client.run(lambda: __import__("workbench.train.search"))  # import costs belong to no contender
        frame = sample.frame.compute()  # for sklearn and plain dask-ml (not timed)
        X = frame[list(sample.features)].to_numpy(dtype="float64", na_value=np.nan)
        y = frame[sample.target].to_numpy(dtype="int8")
        print(f"sample: {sample.n_rows:,} rows ({sample.n_positive:,} positive) x {len(sample.features)} features, "
              f"{len(GRID['max_depth']) * len(GRID['n_estimators']) * len(GRID['ccp_alpha'])} candidates, cv=3", flush=True)

        if "sklearn" not in skip:
            grid_cv = GridSearchCV(estimator(), GRID, scoring=SCORING, refit="roc_auc", cv=folds, n_jobs=2)
            times["sklearn grid"], _ = timed(lambda: grid_cv.fit(X, y), "sklearn grid")
            times["sklearn default cv"], default_cv = timed(
                lambda: cross_validate(estimator(), X, y, scoring=SCORING, cv=folds, n_jobs=2), "sklearn default cv")
            times["sklearn"] = times["sklearn grid"] + times["sklearn default cv"]
            best["sklearn"] = (grid_cv.best_params_, grid_cv.best_score_)
            from joblib.externals.loky import get_reusable_executor

            get_reusable_executor().shutdown(wait=True)  # joblib's idle workers would otherwise linger
            print(f"sklearn GridSearchCV(n_jobs=2)        {times['sklearn grid']:7.1f}s  best {grid_cv.best_params_} "
                  f"roc_auc {grid_cv.best_score_:.4f}", flush=True)
            print(f"  + cross_validate(default, n_jobs=2) {times['sklearn default cv']:7.1f}s  "
                  f"roc_auc {default_cv['test_roc_auc'].mean():.4f}", flush=True)

        if "daskml" not in skip:
            import dask_ml.model_selection as dms

            plain = dms.GridSearchCV(estimator(), GRID, scoring=list(SCORING), refit="roc_auc", cv=folds,
                                     scheduler=client)
            times["dask-ml"], _ = timed(lambda: plain.fit(X, y), "dask-ml")
            best["dask-ml"] = (plain.best_params_, plain.best_score_)
            print(f"plain dask-ml GridSearchCV, 2 workers {times['dask-ml']:7.1f}s  best {plain.best_params_} "
                  f"roc_auc {plain.best_score_:.4f}", flush=True)
        del frame, X, y

        times["workbench 2"], result = timed(lambda: search(estimator(), GRID, sample, cv=3, seed=0, client=client),
                                             "workbench 2")
        best["workbench"] = (result.best_params, result.best_scores["roc_auc"])
        print(f"workbench.search, 2 workers x 1 thread {times['workbench 2']:6.1f}s  best {result.best_params} "
              f"roc_auc {result.best_scores['roc_auc']:.4f}  "
              f"({', '.join(f'{k} {v:.1f}s' for k, v in result.timings.items())})", flush=True)
        print(result.best_vs_default().round(4).to_string(), flush=True)

    if "wb1" not in skip:
        one = {"type": "local", "n_workers": 1, "threads_per_worker": 1, "memory_limit": "8GiB"}
        with wb.cluster(one) as client:
            sample = sample_on(client, path, args.ratio)
            client.run(lambda: __import__("workbench.train.search"))
            times["workbench 1"], result1 = timed(lambda: search(estimator(), GRID, sample, cv=3, seed=0,
                                                                 client=client), "workbench 1")
            print(f"workbench.search, 1 worker x 1 thread  {times['workbench 1']:6.1f}s  best {result1.best_params} "
                  f"roc_auc {result1.best_scores['roc_auc']:.4f}", flush=True)

    print()
    print("cores used by other processes meanwhile (2 in all): "
          + ", ".join(f"{name} {load:.2f}" for name, load in OTHER_LOAD.items()))
    if "sklearn" in times:
        print(f"workbench (2 workers) / sklearn, same work (grid + default cv): "
              f"{times['workbench 2'] / times['sklearn']:.2f}   (target <= 1.0)")
        print(f"workbench (2 workers) / sklearn grid alone:                     "
              f"{times['workbench 2'] / times['sklearn grid']:.2f}")
    if "dask-ml" in times:
        print(f"plain dask-ml / sklearn grid alone:                             "
              f"{times['dask-ml'] / times['sklearn grid']:.2f}" if "sklearn grid" in times else "")
    if "workbench 1" in times:
        print(f"workbench speed-up, 1 worker -> 2 workers:                      "
              f"{times['workbench 1'] / times['workbench 2']:.2f}   (target >= 1.8)")


if __name__ == "__main__":
    main()
