"""Adaptive hyper-parameter search: dask-ml's Hyperband and successive halving, and successive
halving for XGBoost with boosting rounds as the budget.

dask-ml 2025.1's incremental searches (``HyperbandSearchCV``, ``SuccessiveHalvingSearchCV``,
``IncrementalSearchCV``) fail on dask >= 2025.3 with ``RuntimeError: Attempting to use an
asynchronous Client in a synchronous context of dask.compute`` (dask/dask-ml#1016): their driver is
a coroutine running on the client's event loop, and it calls ``dask.persist``, which on the current
dask tries to block on that same loop. :func:`dask_ml_search_fix` routes those calls to
``Client.persist`` (which only submits) for the duration of one search; nothing is patched at import.
docs/training.md records why this shim was chosen over pinning an older dask.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import xgboost as xgb
from distributed import default_client, get_client, wait
from sklearn.metrics import average_precision_score, roc_auc_score
from xgboost import dask as dxgb

from ..data.dataset import Dataset
from ..errors import WorkbenchError
from ..metrics import evaluate, evaluate_model
from ..metrics.scoring import model_scores
from ._xgb_params import DEFAULT_PARAMS, check_xgboost_params

__all__ = [
    "dask_ml_search_fix", "hyperband_search", "successive_halving_search", "roc_auc_scorer", "pr_auc_scorer",
    "HalvingResult", "xgboost_successive_halving", "rung_rounds",
]


# --- scorers ---------------------------------------------------------------------------------------

def _score_with(metric: str, estimator, X, y) -> float:
    if dask.is_dask_collection(X) or dask.is_dask_collection(y):
        # Exact on the workers: per-score counts, as for the test set (workbench.metrics).
        X, y = da.asarray(X), da.asarray(y)
        scores = X.map_blocks(lambda block: model_scores(estimator, block), drop_axis=1, dtype="float64")
        pairs = da.stack([y.astype("float64"), scores], axis=1)
        scored = dd.from_dask_array(pairs, columns=["label", "score"]).astype({"label": "int8"})
        return float(getattr(evaluate(scored), metric))
    score = model_scores(estimator, X)
    return float((roc_auc_score if metric == "roc_auc" else average_precision_score)(np.asarray(y), score))


def roc_auc_scorer(estimator, X, y) -> float:
    """ROC AUC of ``estimator`` on ``X, y`` (NumPy or dask arrays), exactly: a scikit-learn scorer callable.

    Pass it as ``scoring=`` where dask-ml's scorer table refuses ``"roc_auc"`` on dask arrays.
    """
    return _score_with("roc_auc", estimator, X, y)


def pr_auc_scorer(estimator, X, y) -> float:
    """PR AUC (average precision) of ``estimator`` on ``X, y`` (NumPy or dask arrays), exactly."""
    return _score_with("pr_auc", estimator, X, y)


# --- the dask-ml shim ------------------------------------------------------------------------------

class _DaskWithClientPersist:
    """Stands in for the ``dask`` module inside ``dask_ml.model_selection._incremental``.

    Everything is the real ``dask`` except ``persist``, which submits to the default client instead
    of blocking on its event loop. dask-ml calls it with collections and with dicts of delayed
    objects, and with a ``priority=`` it only uses to favour non-speculative work (dropped here).
    """

    def __getattr__(self, name):
        return getattr(dask, name)

    @staticmethod
    def persist(*args, **kwargs):
        kwargs.pop("priority", None)
        flat, shape = [], []
        for arg in args:
            if isinstance(arg, dict):
                shape.append(list(arg))
                flat.extend(arg.values())
            else:
                shape.append(None)
                flat.append(arg)
        persisted = iter(default_client().persist(flat, **kwargs) if flat else [])
        out = []
        for keys in shape:
            out.append(next(persisted) if keys is None else {key: next(persisted) for key in keys})
        return tuple(out)


@contextlib.contextmanager
def dask_ml_search_fix():
    """Within the block, dask-ml's incremental searches run on dask >= 2025.3 (dask/dask-ml#1016).

    Replaces the ``dask`` name inside ``dask_ml.model_selection._incremental`` with a stand-in
    whose ``persist`` goes through ``distributed.default_client().persist``; restored on exit.
    """
    from dask_ml.model_selection import _incremental

    if _incremental.dask is not dask:
        raise WorkbenchError(
            "dask_ml.model_selection._incremental is already patched", "do not nest dask_ml_search_fix()"
        )
    _incremental.dask = _DaskWithClientPersist()
    try:
        yield
    finally:
        _incremental.dask = dask


def _run_search(search, X, y, client, fit_params):
    client = client or get_client()
    with client.as_current(), dask_ml_search_fix():
        return search.fit(X, y, **fit_params)


def hyperband_search(estimator, params, X, y, *, max_iter, scoring=roc_auc_scorer, aggressiveness=3,
                     test_size=None, patience=False, tol=1e-3, random_state=None, client=None,
                     **fit_params):
    """dask-ml's ``HyperbandSearchCV`` fitted on ``X, y`` with the shim; returns the fitted search.

    ``estimator`` needs ``partial_fit``; ``params`` are distributions or lists as for
    ``HyperbandSearchCV``; ``max_iter`` is the most ``partial_fit`` calls any model gets (one call
    per block). ``fit_params`` (e.g. ``classes=[0, 1]``) go to every ``partial_fit``. Note that
    dask-ml persists the training blocks and gathers its validation split (``test_size``, by default
    one block's worth) on one worker: the data must fit in the cluster's memory.
    """
    from dask_ml.model_selection import HyperbandSearchCV

    search = HyperbandSearchCV(
        estimator, params, max_iter=max_iter, aggressiveness=aggressiveness, test_size=test_size,
        patience=patience, tol=tol, random_state=random_state, scoring=scoring,
    )
    return _run_search(search, X, y, client, fit_params)


def successive_halving_search(estimator, params, X, y, *, n_initial_parameters=10, n_initial_iter=None,
                              max_iter=None, aggressiveness=3, scoring=roc_auc_scorer, test_size=None,
                              patience=False, tol=1e-3, random_state=None, client=None, **fit_params):
    """dask-ml's ``SuccessiveHalvingSearchCV`` fitted on ``X, y`` with the shim; returns the fitted search."""
    from dask_ml.model_selection import SuccessiveHalvingSearchCV

    search = SuccessiveHalvingSearchCV(
        estimator, params, n_initial_parameters=n_initial_parameters, n_initial_iter=n_initial_iter,
        max_iter=max_iter, aggressiveness=aggressiveness, test_size=test_size, patience=patience, tol=tol,
        random_state=random_state, scoring=scoring,
    )
    return _run_search(search, X, y, client, fit_params)


# --- successive halving for XGBoost, boosting rounds as the budget --------------------------------

@dataclass
class HalvingResult:
    """What :func:`xgboost_successive_halving` produced."""

    best_params: dict  # the winning candidate merged over DEFAULT_PARAMS
    best_booster: xgb.Booster
    best_score: float  # its validation PR AUC after its last rung
    table: pd.DataFrame  # one row per (candidate, rung): rounds, pr_auc, roc_auc, seconds, promoted
    rungs: list = field(default_factory=list)  # total rounds at each rung
    timings: dict = field(default_factory=dict)


def rung_rounds(min_rounds: int, max_rounds: int, eta: float) -> list[int]:
    """Total boosting rounds at each rung: ``min_rounds * eta**k`` below ``max_rounds``, then ``max_rounds``.

    >>> rung_rounds(10, 100, 3)
    [10, 30, 90, 100]
    """
    rounds, r = [], float(min_rounds)
    while round(r) < max_rounds:
        rounds.append(int(round(r)))
        r *= eta
    return [*rounds, int(max_rounds)]


def xgboost_successive_halving(
    train: Dataset,
    valid: Dataset,
    candidates: list[dict],
    *,
    min_rounds: int,
    max_rounds: int,
    eta: float = 3,
    seed: int = 0,
    client=None,
) -> HalvingResult:
    """Successive halving over XGBoost parameter candidates, with boosting rounds as the budget.

    Every candidate trains ``min_rounds`` rounds on ``train``; the best ``1/eta`` of them by exact
    PR AUC on ``valid`` (ties broken by ROC AUC, then by candidate order) continue from their boosters
    (``xgb_model=``) to ``eta`` times as many rounds, and so on up to ``max_rounds``; the last survivor
    is trained to ``max_rounds``. ``train`` is held in the workers' memory as one
    ``DaskQuantileDMatrix`` (one per distinct ``max_bin``) for the whole search.
    """
    client = client or get_client()
    if not candidates:
        raise WorkbenchError("no candidates to search", "give a list of XGBoost parameter dicts")
    if not 1 <= min_rounds <= max_rounds:
        raise WorkbenchError(
            f"rounds {min_rounds}..{max_rounds} are not 1 <= min_rounds <= max_rounds", "raise max_rounds"
        )
    if not eta > 1:
        raise WorkbenchError(f"eta {eta!r} is not greater than 1", "use eta=3 (keep the best third each rung)")
    if train.features != valid.features:
        raise WorkbenchError("train and valid have different features", "read them with the same reader settings")
    for candidate in candidates:
        check_xgboost_params(candidate)
    started = time.perf_counter()
    params = [{**DEFAULT_PARAMS, "seed": seed, **candidate} for candidate in candidates]
    train_frame = client.persist(train.frame)
    valid = valid.persist(client)
    wait(train_frame)
    matrices: dict = {}

    def matrix(max_bin):
        if max_bin not in matrices:
            matrices[max_bin] = dxgb.DaskQuantileDMatrix(
                client, train_frame[list(train.features)], train_frame[train.target], max_bin=max_bin
            )
        return matrices[max_bin]

    rungs = rung_rounds(min_rounds, max_rounds, eta)
    boosters: dict[int, xgb.Booster | None] = dict.fromkeys(range(len(params)))
    alive = list(range(len(params)))
    rows = []
    timings = {"setup": time.perf_counter() - started, "train": 0.0, "score": 0.0}
    done = 0
    for rung, rounds in enumerate(rungs):
        scores = {}
        for i in alive:
            t = time.perf_counter()
            output = dxgb.train(
                client, params[i], matrix(params[i].get("max_bin")), num_boost_round=rounds - done,
                xgb_model=boosters[i], verbose_eval=False,
            )
            boosters[i] = output["booster"]
            seconds = time.perf_counter() - t
            t = time.perf_counter()
            metrics = evaluate_model(boosters[i], valid, client=client)
            scores[i] = (metrics.pr_auc, metrics.roc_auc)
            timings["train"] += seconds
            timings["score"] += time.perf_counter() - t
            rows.append({"candidate": i, "rung": rung, "rounds": rounds, "pr_auc": metrics.pr_auc,
                         "roc_auc": metrics.roc_auc, "seconds": seconds})
        done = rounds
        ranked = sorted(alive, key=lambda i: (-scores[i][0], -scores[i][1], i))
        keep = ranked[: max(1, math.floor(len(alive) / eta))] if rung + 1 < len(rungs) else ranked[:1]
        for row in rows[-len(alive):]:
            row["promoted"] = row["candidate"] in keep
        for i in set(alive) - set(keep):
            boosters[i] = None  # free the boosters of candidates that stop here
        alive = keep
    [best] = alive
    table = pd.DataFrame(rows, columns=["candidate", "rung", "rounds", "pr_auc", "roc_auc", "seconds", "promoted"])
    table["params"] = [candidates[i] for i in table["candidate"]]
    best_score = float(table.loc[(table["candidate"] == best) & (table["rounds"] == rungs[-1]), "pr_auc"].iloc[0])
    return HalvingResult(best_params=params[best], best_booster=boosters[best], best_score=best_score,
                         table=table, rungs=rungs, timings=timings)
