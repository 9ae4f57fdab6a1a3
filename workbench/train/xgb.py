"""Distributed XGBoost on a :class:`~workbench.data.Dataset`: early stopping on a validation set,
training started over when a worker is lost. Scoring is :func:`workbench.metrics.score`'s job."""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import dask
import dask.dataframe as dd
import pandas as pd
import xgboost as xgb
from dask.utils import parse_timedelta
from distributed import get_client, get_worker, wait
from xgboost import dask as dxgb
from xgboost.collective import Config as CollConfig

from ..cluster import cluster_summary, wait_for_workers
from ..data.dataset import Dataset
from ..errors import SamplingError, WorkbenchError, WorkbenchWarning
from ..metrics import Metrics, evaluate_model, score
from ._extmem import WorkerLost, rank_order, train_external
from ._inmemory import stack_partitions
from ._tracker import install as _install_tracker
from ._xgb_params import DEFAULT_PARAMS, check_xgboost_params

_install_tracker()  # XGBoost's tracker in a child process: a dying worker cannot abort this one

__all__ = ["XGBoostResult", "train_xgboost", "DEFAULT_PARAMS", "MEMORY_MODES", "memory_mode"]

MEMORY_MODES = ("auto", "in-memory", "external")



@dataclass
class XGBoostResult:
    """What :func:`train_xgboost` produced."""

    booster: xgb.Booster
    params: dict
    history: dict
    best_iteration: int  # the booster holds rounds 0..best_iteration only
    num_boosted_rounds: int  # rounds trained before early stopping picked the best
    metrics: Metrics | None  # of ``booster`` on ``test``, if train_xgboost was given one
    timings: dict = field(default_factory=dict)
    attempts: int = 1  # more than 1 if training started over after losing a worker
    memory: str = "in-memory"  # where the training matrices lived: "in-memory" or "external"

    def predict_scores(self, data: Dataset, client=None) -> dd.DataFrame:
        """A lazy frame of ``label`` and ``score`` on ``data`` (:func:`workbench.metrics.score`)."""
        return score(self.booster, data, client=client)


def train_xgboost(
    train: Dataset,
    test: Dataset | None = None,
    *,
    valid: Dataset | None = None,
    params: dict | None = None,
    num_boost_round: int = 200,
    early_stopping_rounds: int | None = None,
    scale_pos_weight: float | str | None = None,
    seed: int = 0,
    threshold: float = 0.5,
    correct_probabilities: bool = True,
    eval_train: bool = False,
    retries: int = 2,
    memory: str = "auto",
    client=None,
    on_phase: Callable[[str, float], None] | None = None,
) -> XGBoostResult:
    """Train a booster with ``xgboost.dask`` on ``train``; with ``test``, evaluate it exactly there.

    Parameters
    ----------
    train, valid, test
        Datasets with the same features. ``valid`` is the early-stopping set (never under-sampled);
        ``test``, if given, is scored through :func:`workbench.metrics.evaluate_model`: exact ROC AUC,
        PR AUC and the confusion matrix at ``threshold`` (a pipeline run passes none and evaluates
        every model type the same way afterwards).
    params
        XGBoost parameters, merged over :data:`DEFAULT_PARAMS`.
    scale_pos_weight
        The alternative to under-sampling: a weight for positives, or ``"auto"`` for
        negatives / positives of ``train``.
    correct_probabilities
        If ``train`` was under-sampled, also evaluate probabilities corrected for it.
    eval_train
        Also record the per-round metrics on the training set. Off by default: every round then
        scores and sorts the whole training set twice (AUC, PR AUC), which tripled training time
        on 3.2 M rows (measured).
    memory
        ``"in-memory"``: ``xgboost.dask`` on the training set persisted in the workers' memory.
        ``"external"``: XGBoost's external memory on every worker (cache pages on disk in the
        workers' ``local_directory``; the set is streamed from its source and never held whole).
        ``"auto"``: external when the training set's float32 size exceeds
        ``workbench.train.external_memory_fraction`` of the workers' memory.
    retries
        Times to start training over when a worker is lost mid-training (xgboost.dask cannot
        continue on a changed set of workers). Lost data partitions are recomputed by Dask.
    on_phase
        Called with ``(phase, seconds)`` as each of ``dmatrix``, ``train`` and, with ``test``, ``predict`` and ``metrics`` ends.
    """
    check_xgboost_params(params)
    client = client or get_client()
    if early_stopping_rounds and valid is None:
        raise WorkbenchError("early stopping needs a validation set", "pass valid= or set early_stopping_rounds=None")
    if train.features != (test or train).features or train.features != (valid or train).features:
        raise WorkbenchError("train, valid and test have different features", "read them with the same reader settings")
    unnamed = [f for f in train.features if any(c in str(f) for c in "[]<")]
    if unnamed:
        shown = ", ".join(repr(f) for f in unnamed[:5]) + (f" and {len(unnamed) - 5} more" if len(unnamed) > 5 else "")
        raise WorkbenchError(f"XGBoost cannot take feature names holding '[', ']' or '<': {shown}",
                             "rename those columns in the export, or leave them out with data.drop")
    params = {**DEFAULT_PARAMS, "seed": seed, **(params or {})}
    if scale_pos_weight is not None:
        params["scale_pos_weight"] = _scale_pos_weight(train, scale_pos_weight)
    timings: dict[str, float] = {}

    def record(name: str, seconds: float) -> None:
        timings[name] = seconds
        if on_phase:
            on_phase(name, seconds)

    memory = memory_mode(memory, train, client)
    started = time.perf_counter()
    train_frame = valid_frame = None
    if memory == "in-memory":
        train_frame = client.persist(train.frame)
        valid_frame = client.persist(valid.frame) if valid is not None else None
        wait([train_frame] + ([valid_frame] if valid_frame is not None else []))
    for attempt in range(retries + 1):
        before = _worker_addresses(client)
        try:
            if memory == "external":
                output, dmatrix_seconds = train_external(
                    client, train, valid, params, num_boost_round, early_stopping_rounds, eval_train,
                )
            else:
                output, dmatrix_seconds = _fit(
                    client, train, train_frame, valid_frame, params, num_boost_round, early_stopping_rounds,
                    eval_train, started,
                )
            break
        except Exception as exc:  # noqa: BLE001 - re-raised unless a worker was lost mid-training
            if attempt == retries or isinstance(exc, WorkbenchError) or (
                _worker_addresses(client) == before and not _looks_like_worker_loss(exc)
            ):
                raise
            warnings.warn(WorkbenchWarning(
                f"a worker was lost during training ({' '.join(str(exc).split())[:160]}); training again"
            ), stacklevel=2)
            # xgboost.dask cannot continue with a changed worker set; start over once the cluster
            # is back to its size (a batch cluster replaces lost jobs), or with the survivors when
            # the replacement does not come soon (a dead node's job waits for a free node).
            wait_for_workers(client, len(before), timeout=dask.config.get("workbench.train.replacement_wait", "30s"),
                             minimum=1)
            started = time.perf_counter()
    record("dmatrix", dmatrix_seconds)
    train_seconds = output["train_seconds"]
    del train_frame, valid_frame
    booster: xgb.Booster = output["booster"]
    history = {name: {metric: [float(v) for v in values] for metric, values in metrics.items()}
               for name, metrics in output["history"].items()}
    trained = booster.num_boosted_rounds()
    best = int(booster.best_iteration) if early_stopping_rounds else trained - 1
    if best + 1 < trained:
        # Keep the trees up to the best round only, so the saved model predicts like the evaluated one.
        booster = booster[: best + 1]
    record("train", train_seconds)

    metrics = None
    if test is not None:
        undersampling = train.info.get("undersample") if correct_probabilities else None
        metrics = evaluate_model(booster, test, threshold, undersampling=undersampling, client=client, on_phase=record)
    return XGBoostResult(
        booster=booster, params=params, history=history, best_iteration=best,
        num_boosted_rounds=trained, metrics=metrics, timings=timings, attempts=attempt + 1, memory=memory,
    )


def memory_mode(memory: str, train: Dataset, client) -> str:
    """``"in-memory"`` or ``"external"``: what ``memory`` (one of :data:`MEMORY_MODES`) means for ``train``."""
    if memory not in MEMORY_MODES:
        raise WorkbenchError(f"memory {memory!r} is not one of {', '.join(MEMORY_MODES)}",
                             "use auto, in-memory or external")
    if memory != "auto":
        return memory
    limit = cluster_summary(client)["memory_limit"]
    rows = train.n_rows if train.n_rows is not None else train.info.get("rows_in_files")
    if not limit or rows is None:
        return "in-memory"
    fraction = float(dask.config.get("workbench.train.external_memory_fraction", 0.25))
    return "external" if rows * len(train.features) * 4 > fraction * limit else "in-memory"


def _fit(client, train, train_frame, valid_frame, params, num_boost_round, early_stopping_rounds, eval_train, started):
    """Build the matrices and train; returns XGBoost's output (with ``train_seconds``) and the DMatrix time."""
    if len(client.scheduler_info(n_workers=-1)["workers"]) == 1:
        # Every partition already lives on the one worker: train there with XGBoost's single-node
        # trainer. xgboost.dask on one worker was 2.7-4.6x slower than xgboost.train on the same
        # data and threads (measured; benchmarks/README.md).
        task = dask.delayed(_train_on_this_worker, pure=False)(
            train_frame.to_delayed(), None if valid_frame is None else valid_frame.to_delayed(),
            list(train.features), train.target, params, num_boost_round, early_stopping_rounds, eval_train,
        )
        output = client.compute(task).result()
        return output, time.perf_counter() - started - output["train_seconds"]
    train_frame = _in_rank_order(client, train_frame)
    valid_frame = _in_rank_order(client, valid_frame) if valid_frame is not None else None
    dtrain = dxgb.DaskQuantileDMatrix(
        client, train_frame[list(train.features)], train_frame[train.target], max_bin=params.get("max_bin")
    )
    evals = [(dtrain, "train")] if eval_train else []
    if valid_frame is not None:
        dvalid = dxgb.DaskQuantileDMatrix(
            client, valid_frame[list(train.features)], valid_frame[train.target], ref=dtrain,
            max_bin=params.get("max_bin"),
        )
        evals.append((dvalid, "valid"))
    dmatrix_seconds = time.perf_counter() - started
    started = time.perf_counter()
    # When a peer's node dies, the survivors would wait in the allreduce for it forever (its socket
    # is not always closed): past this timeout they fail, and training starts over without it.
    timeout = int(parse_timedelta(dask.config.get("workbench.train.collective_timeout", "120s")))
    output = dxgb.train(
        client, params, dtrain, num_boost_round=num_boost_round, evals=evals,
        early_stopping_rounds=early_stopping_rounds, verbose_eval=False, coll_cfg=CollConfig(timeout=timeout),
    )
    return {**output, "train_seconds": time.perf_counter() - started}, dmatrix_seconds


def _in_rank_order(client, frame: dd.DataFrame) -> dd.DataFrame:
    """``frame``'s partitions placed in contiguous blocks on the workers, in XGBoost's rank order.

    xgboost.dask ranks the workers by name and address, and each rank sketches and sums the
    histograms of the partitions it holds; which partitions a rank holds is left to the scheduler.
    Placing block k of the partitions on rank k makes the model the same, bit for bit, on any
    layout of the same number of workers: one node or several, local or batch jobs.
    """
    ranks = rank_order(client)
    parts = frame.to_delayed(optimize_graph=False)
    # A preference the scheduler keeps while the worker lives: if it dies, the block goes elsewhere
    # (and the training that follows starts over) instead of waiting for it forever.
    futures = [
        client.compute(part, workers=[ranks[i * len(ranks) // len(parts)]], allow_other_workers=True)
        for i, part in enumerate(parts)
    ]
    wait(futures)
    return dd.from_delayed(futures, meta=frame._meta, divisions=frame.divisions, verify_meta=False)


def _worker_addresses(client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


def _looks_like_worker_loss(exc: BaseException) -> bool:
    from distributed import KilledWorker
    from distributed.comm import CommClosedError

    text = str(exc)
    return isinstance(exc, (KilledWorker, CommClosedError, WorkerLost)) or any(
        words in text for words in ("Resilience is not yet supported", "worker died", "Connection reset", "Socket")
    )


class _Partitions(xgb.DataIter):
    """The partitions a worker holds, fed to a QuantileDMatrix one at a time (no concatenated copy)."""

    def __init__(self, parts: list[pd.DataFrame], features: list[str], target: str):
        self.parts, self.features, self.target, self.i = parts, features, target, 0
        super().__init__(release_data=True)

    def next(self, input_data) -> bool:
        if self.i == len(self.parts):
            return False
        part = self.parts[self.i]
        input_data(data=part[self.features], label=part[self.target])
        self.i += 1
        return True

    def reset(self) -> None:
        self.i = 0


def _train_on_this_worker(
    train_parts, valid_parts, features, target, params, num_boost_round, early_stopping_rounds, eval_train
):
    worker = get_worker()
    nthread = worker.state.nthreads
    max_bin = params.get("max_bin", 256)
    dtrain = _local_matrix(train_parts, features, target, max_bin, nthread, worker.memory_manager.memory_limit)
    evals = [(dtrain, "train")] if eval_train else []
    if valid_parts is not None:
        if isinstance(dtrain, xgb.QuantileDMatrix):
            dvalid = xgb.QuantileDMatrix(_Partitions(valid_parts, features, target), ref=dtrain, max_bin=max_bin,
                                         nthread=nthread)
        else:
            dvalid = xgb.DMatrix(*_float32_block(valid_parts, features, target), nthread=nthread,
                                 feature_names=list(features))
        evals.append((dvalid, "valid"))
    started = time.perf_counter()
    history: dict = {}
    with _glibc_heap_for_training():
        booster = xgb.train(
            {**params, "nthread": nthread}, dtrain, num_boost_round, evals=evals, evals_result=history,
            early_stopping_rounds=early_stopping_rounds, verbose_eval=False,
        )
    return {"booster": booster, "history": history, "train_seconds": time.perf_counter() - started,
            "matrix": type(dtrain).__name__}


def _local_matrix(parts, features, target, max_bin, nthread, memory_limit):
    """A ``DMatrix`` over one float32 block when it fits comfortably, else a ``QuantileDMatrix``.

    On the benchmark export, ``DMatrix`` plus the sketch inside the first round took 11 s where
    ``QuantileDMatrix`` took 17 s (3.25 M rows x 28, 2 threads; benchmarks/README.md), but it holds
    the raw block as well as the histogram index, so it is used only below a fifth of the worker's memory.
    """
    rows = sum(len(p) for p in parts)
    block_bytes = rows * len(features) * 4
    if memory_limit and block_bytes * 5 > memory_limit:
        return xgb.QuantileDMatrix(_Partitions(parts, features, target), max_bin=max_bin, nthread=nthread)
    return xgb.DMatrix(*_float32_block(parts, features, target), nthread=nthread, feature_names=list(features))


@contextlib.contextmanager
def _glibc_heap_for_training():
    """glibc's own adaptive heap thresholds while XGBoost trains, Dask's settings again after.

    Dask starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting a threshold turns off glibc's
    adaptive mmap threshold, so every buffer XGBoost allocates above 128 KiB in a round (gradients,
    row partitions, predictions: about 14 MB a round on 3.2 M rows) is a fresh mmap, faulted in page
    by page and unmapped when freed. 200 rounds on the benchmark made 815,000 page faults and 3.3 s
    of system time against 170,000 and 0.8 s without the setting (measured; benchmarks/README.md).
    The thresholds below are those glibc adapts to on its own (mmap at most 32 MiB, trim at twice
    that); afterwards the worker's thresholds are set back and the freed heap returned to the system.
    """
    trim, mmap = os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("MALLOC_MMAP_THRESHOLD_")
    try:
        libc = ctypes.CDLL("libc.so.6") if (trim or mmap) else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):  # not glibc: nothing to undo
        mallopt = None
    if mallopt is None:
        yield
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 64 * 2**20)
    try:
        yield
    finally:
        mallopt(m_mmap_threshold, int(mmap) if mmap and mmap.isdigit() else 128 * 2**10)
        mallopt(m_trim_threshold, int(trim) if trim and trim.isdigit() else 128 * 2**10)
        libc.malloc_trim(0)


def _float32_block(parts, features, target):
    # Fortran order: filled a column at a time with contiguous writes, and XGBoost reads it through
    # its strides with no copy; the DMatrix (and the model) are the same as from a C-order block.
    return stack_partitions(parts, features, target, dtype="float32", label_dtype="float32", order="F")


def _scale_pos_weight(train: Dataset, value: float | str) -> float:
    if value == "auto":
        if train.class_counts is None:
            raise SamplingError("scale_pos_weight='auto' needs the class counts of train", "split the data first")
        return train.n_negative / max(train.n_positive, 1)
    if isinstance(value, str) or value <= 0:
        raise WorkbenchError(f"scale_pos_weight {value!r} is not a positive number", "give a number or 'auto'")
    return float(value)
