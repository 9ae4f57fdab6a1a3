"""Parallel SGD by model averaging (Zinkevich, Weimer, Smola and Li, 2010), on the data each worker holds.

Every worker trains the same ``SGDClassifier`` from the same starting weights on the partitions
it holds, one ``partial_fit`` per partition; the coefficients (and intercepts) are then averaged,
weighted by the rows each worker saw. With ``average_every_epoch`` the average is the starting
point of every worker's next epoch (iterative parameter mixing); without it each worker continues
from its own model and only the reported model of each epoch is an average (one-shot averaging).
Only coefficients travel between epochs: the training partitions stay where they are.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from distributed import futures_of, get_client, wait
from sklearn.base import clone
from sklearn.linear_model import SGDClassifier
from sklearn.pipeline import Pipeline

from .. import progress
from ..data.dataset import Dataset
from ..errors import WorkbenchError
from ..metrics import Metrics
from .incremental import (
    Monitor,
    epoch_monitor,
    fit_preprocessor,
    new_history,
    record_epoch,
)

__all__ = ["AveragedSGDResult", "train_averaged_sgd", "average_models"]

# The arrays an SGDClassifier learns; the ASGD ones (average=True) exist only with averaging on.
_LEARNED = ("coef_", "intercept_", "_standard_coef", "_standard_intercept", "_average_coef", "_average_intercept")


@dataclass
class AveragedSGDResult:
    """What :func:`train_averaged_sgd` produced."""

    model: Pipeline  # the preprocessing (exact scaling, imputation) and the averaged SGDClassifier, step "model"
    history: dict  # {"epoch": [...], "seconds": [...]} (seconds of training), + "roc_auc", "pr_auc" when monitored
    metrics: Metrics | None  # what the monitor returned for the final averaged model (None without one)
    partitions: dict[str, list[int]]  # worker address -> the partitions of train it trained on
    timings: dict = field(default_factory=dict)  # preprocess, persist, train, evaluate


def train_averaged_sgd(
    train: Dataset,
    test: Dataset | None = None,
    *,
    monitor: Monitor | None = None,
    threshold: float = 0.5,
    epochs: int = 5,
    average_every_epoch: bool = True,
    scale: bool = True,
    seed: int = 0,
    client=None,
    **sgd_params,
) -> AveragedSGDResult:
    """Train an ``SGDClassifier`` on every worker's partitions of ``train`` and average the models.

    ``train`` is persisted on the workers (their joint memory must hold it); each worker then makes
    ``epochs`` passes over its own partitions, in an order shuffled from ``seed``, the epoch and
    the partitions. Which worker holds which partitions is Dask's choice, and the average depends
    on that grouping, so two runs can differ slightly. ``sgd_params`` go to ``SGDClassifier`` (default ``loss="log_loss"``,
    ``random_state=seed``). Features are standardised with their exact means and standard
    deviations and missing values imputed (:func:`workbench.train.incremental.fit_preprocessor`;
    ``scale=False`` only imputes). After every epoch the averaged model goes to ``monitor`` (or, given
    ``test``, is evaluated there at ``threshold``: :func:`workbench.train.incremental.epoch_monitor`).
    """
    client = client or get_client()
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise WorkbenchError(f"epochs {epochs!r} is not a positive integer", "give epochs as a whole number >= 1")
    if test is not None and train.features != test.features:
        raise WorkbenchError("train and test have different features", "read them with the same reader settings")
    if monitor is None and test is not None:
        monitor = epoch_monitor(test, train, threshold=threshold, client=client)
    base = SGDClassifier(**{"loss": "log_loss", "random_state": seed, **sgd_params})
    timings = {"preprocess": 0.0, "persist": 0.0, "train": 0.0, "evaluate": 0.0}
    history = new_history(monitor is not None)

    with client.as_current():
        started = time.perf_counter()
        preprocess = fit_preprocessor(train, scale=scale)
        timings["preprocess"] = time.perf_counter() - started
        started = time.perf_counter()
        frame = client.persist(train.frame[[*train.features, train.target]])
        wait(frame)
        futures = _partition_futures(frame)
        partitions = _partitions_by_worker(client, futures)
        timings["persist"] = time.perf_counter() - started
        [shared] = client.scatter([(preprocess, list(train.features), train.target)], broadcast=True, hash=False)
        states: dict[str, SGDClassifier | None] = {address: None for address in partitions}
        averaged, metrics = None, None
        for epoch in progress.track(range(1, epochs + 1), "epochs"):
            started = time.perf_counter()
            running = {
                address: client.submit(
                    _epoch, base if states[address] is None else states[address], shared,
                    [seed, epoch, *partitions[address]], *[futures[i] for i in partitions[address]],
                    workers=[address], allow_other_workers=True, pure=False,
                )
                for address in partitions
            }
            trained = client.gather(running)
            seen = [(m, rows) for m, rows in trained.values() if rows]  # a worker with empty partitions only: nothing to add
            averaged = average_models([m for m, _ in seen], [rows for _, rows in seen])
            seconds = time.perf_counter() - started
            timings["train"] += seconds
            states = {address: averaged if average_every_epoch else trained[address][0] for address in partitions}

            model = Pipeline([*preprocess.steps, ("model", averaged)])
            metrics = record_epoch(history, timings, epoch, seconds, model, monitor)
    return AveragedSGDResult(model=model, history=history, metrics=metrics, partitions=partitions, timings=timings)


def average_models(models: list[SGDClassifier], weights=None) -> SGDClassifier:
    """A copy of ``models[0]`` whose learned arrays (coefficients, intercepts) are the weighted means
    of the models' arrays; ``t_`` (the learning-rate clock) is their weighted mean too."""
    if not models:
        raise WorkbenchError("no model to average", "the training set has no rows")
    weights = np.ones(len(models)) if weights is None else np.asarray(weights, dtype="float64")
    averaged = copy.deepcopy(models[0])
    for name in (*_LEARNED, "t_"):
        if getattr(models[0], name, None) is not None:
            setattr(averaged, name, np.average(np.stack([np.asarray(getattr(m, name)) for m in models]), axis=0,
                                               weights=weights))
    averaged.t_ = float(averaged.t_)
    return averaged


def _partition_futures(frame) -> list:
    """The futures of a persisted frame's partitions, in partition order (keys are ``(name, i)``)."""
    futures = sorted(futures_of(frame), key=lambda f: f.key[1])
    if [f.key[1] for f in futures] != list(range(frame.npartitions)):
        raise WorkbenchError("the persisted training set does not have one future per partition", "persist it again")
    return futures


def _partitions_by_worker(client, futures) -> dict[str, list[int]]:
    """Worker address -> the numbers of the persisted partitions it holds (each partition once)."""
    who = client.who_has(futures)
    partitions: dict[str, list[int]] = {}
    for i, future in enumerate(futures):
        holders = who.get(future.key) or ()
        if not holders:
            raise WorkbenchError(f"partition {i} of the training set is on no worker", "check the cluster, then retry")
        partitions.setdefault(sorted(holders)[0], []).append(i)
    return dict(sorted(partitions.items()))


def _epoch(model, shared, order_seed, *parts: pd.DataFrame):
    """One pass of ``partial_fit`` over this worker's partitions, in a shuffled order."""
    preprocess, features, target = shared
    model = copy.deepcopy(model) if hasattr(model, "coef_") else clone(model)
    rows = 0
    for i in np.random.default_rng(order_seed).permutation(len(parts)):
        part = parts[i]
        if len(part) == 0:
            continue
        X = np.ascontiguousarray(preprocess.transform(part[features]), dtype="float64")
        model.partial_fit(X, part[target].to_numpy(dtype="int8"), classes=np.array([0, 1]))
        rows += len(part)
    return model, rows
