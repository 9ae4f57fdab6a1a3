"""Ensembles of scikit-learn classifiers whose members are fitted at the same time on different workers.

:func:`train_ensemble` holds the training set (a RUS sample) in memory on every worker, fits every
member there in parallel, and combines them two ways:

- **soft voting**: the mean of the members' probabilities (scikit-learn's ``VotingClassifier``);
- **stacking**: a logistic regression on out-of-fold probabilities, from one fit per member and
  ``StratifiedKFold`` fold, in parallel too (scikit-learn's ``StackingClassifier``).

The returned ensembles are genuine scikit-learn objects built from the fitted members (wrapped in
``sklearn.frozen.FrozenEstimator``, so ``fit`` on them only records the classes). Given a test set,
every model is scored on it in one pass on the workers (:func:`workbench.metrics.evaluate_models`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from distributed import get_client, get_worker, wait
from sklearn.base import clone
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from ..data.dataset import Dataset
from ..errors import WorkbenchError
from ..metrics import Metrics, evaluate_models
from ..metrics.scoring import model_scores
from ._inmemory import check_in_memory, in_memory_arrays, single_threaded

__all__ = ["EnsembleResult", "train_ensemble"]

METHODS = ("soft", "stacking", "both", "none")


@dataclass
class EnsembleResult:
    """What :func:`train_ensemble` produced."""

    members: dict  # name -> member fitted on all of the training set
    soft: VotingClassifier | None
    stacking: StackingClassifier | None
    metrics: dict[str, Metrics]  # exact, on the test set if one was given: each member, then "soft" and/or "stacking"
    workers: dict[str, str]  # member -> address of the worker that fitted it
    fit_seconds: dict[str, float]  # member -> seconds of its fit on all of the training set
    timings: dict = field(default_factory=dict)  # collect, parallel, serial, score (see train_ensemble)

    def table(self) -> pd.DataFrame:
        """ROC AUC and PR AUC of every model on the test set, members first."""
        return pd.DataFrame(
            {name: {"roc_auc": m.roc_auc, "pr_auc": m.pr_auc} for name, m in self.metrics.items()}
        ).T

    @property
    def models(self) -> dict:
        """Every fitted model by name: the members, then "soft" and/or "stacking"."""
        return {**self.members, **{name: m for name, m in (("soft", self.soft), ("stacking", self.stacking))
                                   if m is not None}}


def train_ensemble(
    members: dict,
    train: Dataset,
    test: Dataset | None = None,
    *,
    method: str = "both",
    cv: int = 5,
    client=None,
    seed: int = 0,
    threshold: float = 0.5,
) -> EnsembleResult:
    """Fit ``members`` in parallel on ``train`` and combine them; with ``test``, evaluate every model there.

    ``train`` (usually a RUS sample, small) is held in memory: assembled into numpy ``X`` (float64,
    NaN for missing) and ``y`` on a worker and replicated to every worker once; a Dataset larger than
    ``workbench.in_memory.max_bytes`` raises :class:`~workbench.errors.WorkbenchError`. ``test`` is
    never collected: it is scored partition by partition on the workers.

    Parameters
    ----------
    members
        Name -> scikit-learn classifier with ``predict_proba``. Each is cloned, with any ``n_jobs``
        parameter set to 1 (the members run side by side, one per worker thread). Member ``i`` is
        placed on worker ``i mod n_workers`` (workers sorted by address).
    method
        ``"soft"``, ``"stacking"`` or ``"both"``; ``"none"`` fits and scores the members only (a
        side-by-side comparison of classifiers trained at the same time).
    cv
        Folds of ``StratifiedKFold(shuffle=True, random_state=seed)`` for the out-of-fold
        probabilities the stacking meta-learner (``LogisticRegression``) is trained on.

    ``timings``: ``collect`` (data to the workers), ``parallel`` (wall time of every fit: members,
    out-of-fold fits and the meta-learner), ``serial`` (the sum of those fits' own times: what one
    worker would take) and, with ``test``, ``score`` (test set and metrics at ``threshold``).
    """
    client = client or get_client()
    _check_args(members, train, test, method, cv)
    soft, stack = method in ("soft", "both"), method in ("stacking", "both")
    names = list(members)
    models = {name: single_threaded(clone(est)) for name, est in members.items()}

    started = time.perf_counter()
    totals = check_in_memory(train, "train_ensemble")
    if stack and totals.min() < cv:
        raise WorkbenchError(f"the minority class has {int(totals.min())} rows, fewer than cv={cv} folds",
                             "use fewer folds or more data")
    X, y = in_memory_arrays(train, client)
    timings = {"collect": time.perf_counter() - started}

    started = time.perf_counter()
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    token = uuid.uuid4().hex[:8]
    fits = {
        name: client.submit(_fit, models[name], X, y, key=f"ensemble-member-{name}-{token}",
                            workers=[workers[i % len(workers)]], allow_other_workers=True, priority=1)
        for i, name in enumerate(names)
    }
    meta = None
    if stack:
        folds = client.submit(_folds, y, cv, seed, key=f"ensemble-folds-{token}")
        oof = [client.submit(_fit_fold, models[name], X, y, folds, k, key=f"ensemble-oof-{name}-{k}-{token}")
               for name in names for k in range(cv)]
        meta = client.submit(_fit_meta, oof, len(names), y, seed, key=f"ensemble-meta-{token}")
    wait([*fits.values(), *([meta] if meta is not None else [])])
    timings["parallel"] = time.perf_counter() - started
    fitted = client.gather(fits)
    meta_result = meta.result() if meta is not None else None
    serial = sum(seconds for _, seconds, _ in fitted.values())
    if meta_result is not None:
        serial += meta_result["fold_seconds"] + meta_result["seconds"]
    timings["serial"] = serial

    fitted_members = {name: model for name, (model, _, _) in fitted.items()}
    setup_X, setup_y = client.submit(_one_row_per_class, X, y).result()
    soft_model = stack_model = None
    if soft:
        soft_model = VotingClassifier([(n, FrozenEstimator(m)) for n, m in fitted_members.items()],
                                      voting="soft").fit(setup_X, setup_y)
    if stack:
        stack_model = StackingClassifier([(n, FrozenEstimator(m)) for n, m in fitted_members.items()],
                                         final_estimator=FrozenEstimator(meta_result["meta"]), cv="prefit",
                                         stack_method="predict_proba").fit(setup_X, setup_y)

    result = EnsembleResult(
        members=fitted_members, soft=soft_model, stacking=stack_model, metrics={},
        workers={name: address for name, (_, _, address) in fitted.items()},
        fit_seconds={name: seconds for name, (_, seconds, _) in fitted.items()},
        timings=timings,
    )
    if test is not None:
        started = time.perf_counter()
        result.metrics = evaluate_models(result.models, test, threshold, undersampling=train.info.get("undersample"),
                                         client=client)
        timings["score"] = time.perf_counter() - started
    return result


def _check_args(members, train, test, method, cv) -> None:
    if method not in METHODS:
        raise WorkbenchError(f"method {method!r} is not an ensemble method", "use 'soft', 'stacking', 'both' or 'none'")
    if not isinstance(members, dict) or not members:
        raise WorkbenchError("train_ensemble needs members", "pass a dict of name -> scikit-learn classifier")
    for name, est in members.items():
        if not isinstance(name, str) or not name or "__" in name or name in ("soft", "stacking"):
            raise WorkbenchError(f"member name {name!r} is not usable",
                                 "use a non-empty string without '__', other than 'soft' and 'stacking'")
        if not hasattr(est, "fit") or not hasattr(est, "predict_proba"):
            raise WorkbenchError(f"member {name!r} ({type(est).__name__}) has no predict_proba",
                                 "use classifiers that predict probabilities")
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 2:
        raise WorkbenchError(f"cv {cv!r} is not a number of folds", "give cv as a whole number >= 2")
    if test is not None and train.features != test.features:
        raise WorkbenchError("train and test have different features", "read them with the same reader settings")


def _fit(model, X, y):
    started = time.perf_counter()
    _fit_or_say_why(model, X, y)
    return model, time.perf_counter() - started, get_worker().address


def _fit_or_say_why(model, X, y) -> None:
    """``model.fit(X, y)``; an estimator refusing missing values is a one-line WorkbenchError."""
    try:
        model.fit(X, y)
    except ValueError as exc:
        if "contains NaN" not in str(exc):
            raise
        name = type(model.steps[-1][1] if hasattr(model, "steps") else model).__name__
        raise WorkbenchError(f"{name} does not accept missing values, and the features have some",
                             "add preprocess: [impute] to the model, or choose an estimator that handles them "
                             "(e.g. HistGradientBoostingClassifier)") from None


def _folds(y, cv: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return list(StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def _fit_fold(model, X, y, folds, k: int):
    """Out-of-fold probabilities of one member on fold ``k``: fitted on the other folds."""
    started = time.perf_counter()
    train_rows, test_rows = folds[k]
    _fit_or_say_why(model, X[train_rows], y[train_rows])
    return test_rows, model_scores(model, X[test_rows]), time.perf_counter() - started


def _fit_meta(oof, n_members: int, y, seed: int) -> dict:
    """The stacking meta-learner, fitted on the out-of-fold probabilities (one column per member)."""
    started = time.perf_counter()
    Z = np.full((len(y), n_members), np.nan)
    n_folds = len(oof) // n_members
    for i, (rows, proba, _) in enumerate(oof):
        Z[rows, i // n_folds] = proba
    meta = LogisticRegression(random_state=seed).fit(Z, y)
    return {"meta": meta, "seconds": time.perf_counter() - started,
            "fold_seconds": sum(seconds for _, _, seconds in oof)}


def _one_row_per_class(X, y):
    rows = [int(np.flatnonzero(y == c)[0]) for c in (0, 1)]
    return X[rows], y[rows]
