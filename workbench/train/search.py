"""Hyper-parameter search with cross-validation on the workers, random under-sampling inside each fold.

:func:`search` runs dask-ml's ``GridSearchCV`` or ``RandomizedSearchCV`` on a small Dataset (usually
a RUS sample). What it adds to plain dask-ml, each measured in ``benchmarks/bench_search.py``:

- The data is assembled once on a worker from the Dataset's partitions and replicated to every
  worker before the search; plain dask-ml puts a numpy ``X`` into the task graph, so it travels
  client → scheduler → worker → worker.
- The scorers share one ``predict_proba`` per fold (dask-ml calls each scorer on its own, so two
  scores cost two predictions), and estimators train with ``n_jobs=1``: the parallelism is one
  fit per worker thread.
- The estimator's own parameters (the "default") are cross-validated with the same folds, submitted
  when a worker has no candidate left and placed on such workers: they fill the wait for the last
  candidates and run beside the refit of the best candidate, which would otherwise run alone. The
  refit uses every worker thread of its host (joblib's threading backend, OpenMP); the model is
  the same as a single-threaded fit.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field

import dask
import numpy as np
import pandas as pd
from dask_ml.model_selection import GridSearchCV, RandomizedSearchCV
from distributed import as_completed, get_client, get_worker
from sklearn.base import clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import StratifiedKFold

from ..data.dataset import Dataset
from ..errors import WorkbenchError
from ._inmemory import check_in_memory, in_memory_arrays, single_threaded
from .rus import RUSClassifier

__all__ = ["SearchResult", "search"]

# Task priorities: candidates first, then the default's folds; the refit jumps the queue.
_PRIORITY = {"default": 0, "candidates": 1, "refit": 2}


@dataclass
class SearchResult:
    """What :func:`search` found.

    ``candidates`` has one row per candidate, best first: its parameters (as given), ``mean_<score>``
    and ``std_<score>`` over the folds for every score, ``mean_fit_time`` and ``std_fit_time`` (seconds
    per fold), ``mean_score_time`` and ``rank`` (by the ``refit`` score). ``default`` holds the same
    figures for the estimator's own parameters, cross-validated on the same folds.
    """

    best_params: dict
    best_scores: dict[str, float]
    best_estimator: object | None  # refitted on all the search data; None with refit=False
    candidates: pd.DataFrame
    default: dict | None
    tuning_seconds: float  # wall time of the whole search: data, folds, default, refit
    timings: dict = field(default_factory=dict)  # seconds: collect, search (candidates, wall), refit (the fit), total
    scoring: tuple[str, ...] = ()
    refit: str | bool = "roc_auc"
    n_splits: int = 3

    def best_vs_default(self) -> pd.DataFrame:
        """Two rows, ``best`` and ``default``: mean score of each scorer and mean fit time per fold."""
        columns = [*(f"mean_{name}" for name in self.scoring), "mean_fit_time"]
        best = self.candidates.iloc[0][columns]
        rows = {"best": best} if self.default is None else {"best": best, "default": pd.Series(self.default)[columns]}
        return pd.DataFrame(rows).T.astype(float)


def search(
    estimator,
    param_grid_or_distributions: dict | list[dict],
    data: Dataset,
    *,
    kind: str = "grid",
    n_iter: int | None = None,
    cv: int = 3,
    ratio: str | float | None = None,
    scoring=("roc_auc", "average_precision"),
    refit: str | bool = "roc_auc",
    seed: int = 0,
    compare_default: bool = True,
    client=None,
) -> SearchResult:
    """Cross-validated search over ``param_grid_or_distributions`` on ``data``, on the workers.

    The data is held in memory: ``data`` (usually a RUS sample, small) is assembled into one numpy
    ``X`` (float64, NaN for missing values) and ``y`` on a worker and replicated to every worker; it
    never reaches the client. A Dataset larger than ``workbench.in_memory.max_bytes`` (512 MiB by
    default) raises :class:`~workbench.errors.WorkbenchError`.

    Parameters
    ----------
    estimator
        A scikit-learn classifier. Any ``n_jobs`` parameter is set to 1 for the cross-validation
        fits (the search runs one fit per worker thread); the refit uses every worker thread of
        its host, and the refitted estimator gets the given ``n_jobs`` back.
    param_grid_or_distributions
        A grid (``kind="grid"``) or distributions (``kind="random"``), as for scikit-learn.
    kind, n_iter
        ``"grid"`` tries every combination; ``"random"`` draws ``n_iter`` candidates with ``seed``.
    cv
        Folds of ``StratifiedKFold(shuffle=True, random_state=seed)``.
    ratio
        Under-sample the majority class to ``ratio`` inside each training fold (``RUSClassifier``);
        validation folds keep their natural ratio. A ``ratio`` key in the grid searches it; the
        estimator's own parameters may then be written plainly (``max_depth``) or as
        ``estimator__max_depth``.
    scoring
        Names of scikit-learn scorers, or a dict of name to scorer.
    refit
        The score that ranks the candidates; the best is refitted on all of ``data``. ``False``:
        rank by the first score and do not refit.
    compare_default
        Also cross-validate ``estimator`` with its own parameters (``SearchResult.default``).
    """
    client = client or get_client()
    names, scorer = _scorers(estimator, scoring)
    rank_by = _rank_by(refit, names)
    _check_search_args(kind, n_iter, cv, param_grid_or_distributions)
    model, params, user_names, forced = _prepare(estimator, param_grid_or_distributions, ratio, seed)

    started = time.perf_counter()
    totals = check_in_memory(data, "search")
    if totals.min() < cv:
        raise WorkbenchError(f"the minority class has {int(totals.min())} rows, fewer than cv={cv} folds",
                             "use fewer folds or more data")
    X, y = in_memory_arrays(data, client)
    timings = {"collect": time.perf_counter() - started}
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    common = dict(scoring=scorer, refit=False, cv=folds, iid=False, cache_cv=False, error_score="raise",
                  return_train_score=False)
    runs = {"candidates": _Submitter(client, _PRIORITY["candidates"])}
    if kind == "grid":
        main = GridSearchCV(model, params, scheduler=runs["candidates"], **common)
    else:
        main = RandomizedSearchCV(model, params, n_iter=n_iter, random_state=seed, scheduler=runs["candidates"],
                                  **common)
    default = None
    if compare_default:
        runs["default"] = _Submitter(client, _PRIORITY["default"])
        default = GridSearchCV(model, {}, scheduler=runs["default"], **common)
    Xd, yd = dask.delayed(X), dask.delayed(y)

    with ThreadPoolExecutor(2, thread_name_prefix="workbench-search") as pool:
        try:
            main_done = pool.submit(main.fit, Xd, yd)
            runs["candidates"].wait_submitted(main_done)
            default_done = None
            if default is not None:
                # Held back until a worker thread has no candidate left, then placed on the workers
                # that have none: they fill the wait for the last candidates and run beside the refit,
                # which then finds the last candidate's worker free.
                _wait_until_draining(runs["candidates"].futures, sum(client.nthreads().values()) - 1)
                runs["default"].workers = _idle_workers(client, runs["candidates"].futures)
                default_done = pool.submit(default.fit, Xd, yd)
            main_done.result()
            timings["search"] = time.perf_counter() - started - timings["collect"]
            table = _table(main.cv_results_, names, rank_by, user_names)
            best_model_params = main.cv_results_["params"][int(table.index[0])]
            refitted = None
            if refit:
                best_model = clone(model).set_params(**best_model_params, **{k: None for k in forced})
                refitted = client.submit(_refit, best_model, X, y, _threads_per_host(client),
                                         priority=_PRIORITY["refit"], pure=False)
            default_row = None
            if default_done is not None:
                default_done.result()
                row = _table(default.cv_results_, names, rank_by, user_names).iloc[0]
                default_row = {k: float(v) for k, v in row.items() if k.startswith(("mean_", "std_"))}
            best_estimator = None
            if refitted is not None:
                best_estimator, timings["refit"] = refitted.result()
                best_estimator.set_params(**forced)  # the n_jobs the caller gave
        except BaseException:
            for run in runs.values():
                run.cancel()
            raise
    timings["total"] = time.perf_counter() - started
    best = table.iloc[0]
    return SearchResult(
        best_params={user_names[k]: _plain(v) for k, v in best_model_params.items()},
        best_scores={name: float(best[f"mean_{name}"]) for name in names},
        best_estimator=best_estimator,
        candidates=table.reset_index(drop=True),
        default=default_row,
        tuning_seconds=timings["total"],
        timings=timings,
        scoring=tuple(names),
        refit=refit,
        n_splits=cv,
    )


def _check_search_args(kind, n_iter, cv, params) -> None:
    if kind not in ("grid", "random"):
        raise WorkbenchError(f"kind {kind!r} is not a search kind", "use kind='grid' or kind='random'")
    if kind == "random" and (isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1):
        raise WorkbenchError(f"a random search needs n_iter >= 1, not {n_iter!r}", "pass n_iter=<candidates>")
    if kind == "grid" and n_iter is not None:
        raise WorkbenchError("n_iter is for kind='random'", "drop n_iter, or use kind='random'")
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise WorkbenchError(f"cv {cv!r} is not a number of folds", "give cv as a whole number >= 2")
    if not isinstance(params, (dict, list)) or not params:
        raise WorkbenchError("the search needs a parameter grid or distributions", "pass a dict such as {'max_depth': [4, 8]}")


def _prepare(estimator, params, ratio, seed):
    """The estimator to search (wrapped in RUSClassifier if sampling is asked for), the parameters
    in its names, and a map from those names back to the names the user wrote."""
    grids = params if isinstance(params, list) else [params]
    wanted_ratio = ratio is not None or any("ratio" in grid for grid in grids)
    model = clone(estimator)
    wrap = wanted_ratio and not isinstance(model, RUSClassifier)
    if wrap:
        model = RUSClassifier(model, ratio="1:1" if ratio is None else ratio, random_state=seed)
    elif ratio is not None:
        model.set_params(ratio=ratio)
    before = model.get_params(deep=True)
    single_threaded(model)
    after = model.get_params(deep=True)
    forced = {k: v for k, v in before.items() if not _same(after[k], v)}
    user_names: dict[str, str] = {}

    def translate(key: str) -> str:
        inner = key if not wrap or key == "ratio" or key.startswith("estimator__") else f"estimator__{key}"
        if inner not in model.get_params(deep=True):
            raise WorkbenchError(f"{type(estimator).__name__} has no parameter {key!r}",
                                 "check the names in the parameter grid")
        user_names[inner] = key
        return inner

    translated = [{translate(k): v for k, v in grid.items()} for grid in grids]
    return model, translated if isinstance(params, list) else translated[0], user_names, forced


def _same(a, b) -> bool:
    """Parameter equality where NaN equals NaN (``SimpleImputer(missing_values=np.nan)``)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a is b or a == b if not hasattr(a, "get_params") else a is b


def _scorers(estimator, scoring):
    if isinstance(scoring, str):
        scoring = (scoring,)
    if not isinstance(scoring, (list, tuple, dict)) or not scoring:
        raise WorkbenchError(f"scoring {scoring!r} is not a list of scorer names", "e.g. ('roc_auc', 'average_precision')")
    names = list(scoring)
    try:
        multi = check_scoring(estimator, scoring=scoring if isinstance(scoring, dict) else list(scoring))
    except ValueError as exc:
        raise WorkbenchError(f"bad scoring {scoring!r}: {' '.join(str(exc).split())[:200]}",
                             "use scikit-learn scorer names") from exc
    return names, {name: _SharedScore(multi, name) for name in names}


def _rank_by(refit, names) -> str:
    if refit is False:
        return names[0]
    if refit not in names:
        raise WorkbenchError(f"refit {refit!r} is not one of the scores {names}", "name one of them, or refit=False")
    return refit


_LAST = threading.local()


class _SharedScore:
    """One score of a multi-metric scorer. dask-ml calls each score separately; this computes all of
    them (one ``predict_proba`` shared, as in scikit-learn) on the first call and hands them out."""

    def __init__(self, scorer, name: str):
        self.scorer, self.name = scorer, name

    def __call__(self, estimator, X, y):
        last = getattr(_LAST, "value", None)
        if last is None or last[0] is not estimator or last[1] is not X or self.name not in last[2]:
            last = (estimator, X, dict(self.scorer(estimator, X, y)))
        value = last[2].pop(self.name)
        _LAST.value = last if last[2] else None  # drop the references once every score is handed out
        return value


class _Submitter:
    """dask-ml's ``scheduler=`` hook: runs the search graph on the client at a task priority."""

    def __init__(self, client, priority: int):
        self.client, self.priority = client, priority
        self.workers: list[str] | None = None  # where to run (loosely: others may take over)
        self.futures: list = []
        self.submitted = threading.Event()
        self.cancelled = False

    def __call__(self, dsk, keys, **_):
        if self.cancelled:
            raise CancelledError("the search was stopped")
        self.futures = self.client.get(dsk, keys, sync=False, priority=self.priority, workers=self.workers,
                                       allow_other_workers=self.workers is not None)
        self.submitted.set()
        return self.client.gather(self.futures)

    def wait_submitted(self, running) -> None:
        while not self.submitted.wait(0.05) and not running.done():
            pass
        if running.done():
            running.result()  # re-raise a failure that came before submission

    def cancel(self) -> None:
        self.cancelled = True
        if self.futures:
            self.client.cancel(self.futures)


def _wait_until_draining(futures: list, threads: int) -> None:
    """Return once no more than ``threads`` of ``futures`` are unfinished (or one has failed)."""
    remaining = len(futures)
    if remaining <= threads:
        return
    for future in as_completed(futures):
        remaining -= 1
        if remaining <= threads or future.status != "finished":
            return


def _idle_workers(client, futures) -> list[str] | None:
    """Workers running none of the unfinished ``futures`` (None: no such worker, use any)."""
    running = {f.key for f in futures if not f.done()}
    idle = [w for w, keys in client.processing().items() if not running.intersection(keys)]
    return idle or None


def _threads_per_host(client) -> dict[str, int]:
    threads: dict[str, int] = {}
    for info in client.scheduler_info(n_workers=-1)["workers"].values():
        threads[info["host"]] = threads.get(info["host"], 0) + info["nthreads"]
    return threads


def _refit(model, X, y, threads_per_host: dict[str, int]):
    """Fit the best candidate with every worker thread of this host: nothing else is left to run but
    the default's last folds. joblib (forests) and OpenMP (histogram boosting, XGBoost) use them."""
    from distributed.comm import get_address_host
    from joblib import parallel_config
    from threadpoolctl import threadpool_limits

    threads = max(1, threads_per_host.get(get_address_host(get_worker().address), 1))
    started = time.perf_counter()
    with parallel_config(backend="threading", n_jobs=threads), threadpool_limits(threads, user_api="openmp"):
        model.fit(X, y)
    return model, time.perf_counter() - started


def _table(results: dict, names: list[str], rank_by: str, user_names: dict[str, str]) -> pd.DataFrame:
    table = pd.DataFrame([{user_names[k]: v for k, v in p.items()} for p in results["params"]],
                         columns=list(user_names.values()), dtype=object)  # object: None stays None
    for name in names:
        table[f"mean_{name}"] = results[f"mean_test_{name}"]
        table[f"std_{name}"] = results[f"std_test_{name}"]
    for what in ("fit_time", "score_time"):
        table[f"mean_{what}"] = results[f"mean_{what}"]
        table[f"std_{what}"] = results[f"std_{what}"]
    table["rank"] = results[f"rank_test_{rank_by}"]
    return table.sort_values("rank", kind="stable")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
