"""Out-of-core training of any ``partial_fit`` estimator, one pass over the Parquet files per epoch.

The training set is never persisted. It becomes lazy dask arrays with one block per partition, and
each epoch dask-ml's :class:`~dask_ml.wrappers.Incremental` (``shuffle_blocks=True``, a random state
derived from ``(seed, epoch)``) chains the estimator's ``partial_fit`` over the blocks in a shuffled
order. Reading, selecting and preprocessing a partition is one task, so Dask reads each partition
just before its block is fitted: with 2 worker threads at most 3 blocks were in memory at once
(80 blocks of 24 MB, measured with a scheduler plugin; 6 with root-task queuing turned off).
Features are standardised with exact means and standard deviations from one pass of per-partition
moments reduced on the workers, and missing values are imputed with the mean; the fitted
preprocessing and the estimator come back together as one scikit-learn ``Pipeline``. A ``monitor``
(or a ``test`` set) sees the model after every epoch, for a learning curve; scoring itself is
:func:`workbench.metrics.score`'s job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask_ml.wrappers import Incremental
from distributed import get_client
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from .. import progress
from ..data.dataset import Dataset
from ..errors import DataError, WorkbenchError
from ..metrics import Metrics, evaluate_model, score
from ..sampling import class_counts

__all__ = [
    "IncrementalResult", "train_incremental", "fit_preprocessor", "dataset_arrays", "epoch_random_state",
    "block_order", "epoch_monitor",
]


@dataclass
class IncrementalResult:
    """What :func:`train_incremental` produced."""

    model: Pipeline  # preprocessing (scale and/or impute) followed by the fitted estimator, step "model"
    history: dict  # {"epoch": [...], "seconds": [...]} (seconds of training), + "roc_auc", "pr_auc" when monitored
    metrics: Metrics | None  # what the monitor returned for the final model (None without one)
    timings: dict = field(default_factory=dict)
    block_orders: list = field(default_factory=list)  # per epoch, the partitions of train in the order fitted
    features: tuple = ()

    def predict_scores(self, data: Dataset, client=None) -> dd.DataFrame:
        """A lazy frame of ``label`` and ``score`` on ``data`` (:func:`workbench.metrics.score`)."""
        return score(self.model, data, client=client)


Monitor = Callable[[object], Metrics]


def epoch_monitor(test: Dataset, train: Dataset, *, threshold: float = 0.5, correct_probabilities: bool = True,
                  client=None) -> Monitor:
    """A monitor that evaluates a model exactly on ``test`` (:func:`workbench.metrics.evaluate_model`),
    at ``threshold`` and corrected for the under-sampling of ``train``."""
    undersampling = train.info.get("undersample") if correct_probabilities else None
    return lambda model: evaluate_model(model, test, threshold, undersampling=undersampling, client=client)


def train_incremental(
    train: Dataset,
    test: Dataset | None,
    estimator,
    *,
    epochs: int = 5,
    scale: bool = True,
    classes=(0, 1),
    seed: int = 0,
    threshold: float = 0.5,
    client=None,
    monitor: Monitor | None = None,
    on_epoch: Callable[[int, Metrics], None] | None = None,
) -> IncrementalResult:
    """Train ``estimator`` block by block on ``train`` for ``epochs`` passes.

    Parameters
    ----------
    estimator
        Any classifier with ``partial_fit`` (``SGDClassifier(loss="log_loss")``, ``MLPClassifier``,
        ``GaussianNB``, ...). It is cloned; if it has a ``random_state`` parameter left at ``None``,
        the clone gets ``seed``, so that the same seed gives the same model.
    epochs
        Passes over the training files. Each pass reads every partition once, in an order shuffled
        with a random state derived from ``(seed, epoch)`` (:func:`epoch_random_state`).
    scale
        Standardise the features with their exact mean and standard deviation (missing values become
        0, the mean). With ``scale=False`` missing values are still imputed with the mean.
    classes
        Passed to every ``partial_fit`` call.
    test, threshold, monitor
        ``monitor(model) -> Metrics`` is called after every epoch and its ROC AUC and PR AUC go into
        ``history``; ``test`` is a shorthand for :func:`epoch_monitor` on it at ``threshold``.
    on_epoch
        Called with ``(epoch, metrics)`` after each monitored epoch.
    """
    client = client or get_client()
    if not hasattr(estimator, "partial_fit"):
        raise WorkbenchError(
            f"{type(estimator).__name__} has no partial_fit", "use an incremental estimator such as SGDClassifier"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise WorkbenchError(f"epochs {epochs!r} is not a positive integer", "give the number of passes, e.g. 5")
    if test is not None and train.features != test.features:
        raise WorkbenchError("train and test have different features", "read them with the same reader settings")
    if monitor is None and test is not None:
        monitor = epoch_monitor(test, train, threshold=threshold, client=client)
    estimator = clone(estimator)
    if "random_state" in estimator.get_params(deep=False) and estimator.get_params()["random_state"] is None:
        estimator.set_params(random_state=seed)
    timings: dict[str, float] = {"preprocess": 0.0, "train": 0.0, "evaluate": 0.0}
    history = new_history(monitor is not None)
    block_orders: list[list[int]] = []

    with client.as_current():
        started = time.perf_counter()
        preprocess = fit_preprocessor(train, scale=scale)
        X, y, partitions = dataset_arrays(train, preprocess)
        timings["preprocess"] = time.perf_counter() - started
        wrapper = Incremental(estimator, shuffle_blocks=True)
        metrics = None
        for epoch in progress.track(range(1, epochs + 1), "epochs"):
            state = epoch_random_state(seed, epoch)
            block_orders.append([partitions[i] for i in block_order(len(partitions), state)])
            started = time.perf_counter()
            wrapper.set_params(random_state=state)
            wrapper.partial_fit(X, y, classes=np.asarray(classes))
            seconds = time.perf_counter() - started
            timings["train"] += seconds
            model = Pipeline([*preprocess.steps, ("model", wrapper.estimator_)])
            metrics = record_epoch(history, timings, epoch, seconds, model, monitor)
            if metrics is not None and on_epoch:
                on_epoch(epoch, metrics)
    return IncrementalResult(model=model, history=history, metrics=metrics, timings=timings,
                             block_orders=block_orders, features=train.features)


def new_history(monitored: bool) -> dict[str, list]:
    """The per-epoch history: epoch, then the monitor's ROC AUC and PR AUC, then training seconds."""
    return {"epoch": [], **({"roc_auc": [], "pr_auc": []} if monitored else {}), "seconds": []}


def record_epoch(history: dict, timings: dict, epoch: int, seconds: float, model, monitor: Monitor | None):
    """Append one epoch to ``history``; with a monitor, evaluate ``model`` (timed) and return its Metrics."""
    history["epoch"].append(epoch)
    history["seconds"].append(seconds)
    if monitor is None:
        return None
    started = time.perf_counter()
    metrics = monitor(model)
    timings["evaluate"] += time.perf_counter() - started
    history["roc_auc"].append(metrics.roc_auc)
    history["pr_auc"].append(metrics.pr_auc)
    return metrics


def block_order(n_blocks: int, random_state: int) -> list[int]:
    """The order in which dask-ml's ``Incremental(shuffle_blocks=True, random_state=...)`` visits blocks."""
    order = list(range(n_blocks))
    check_random_state(random_state).shuffle(order)
    return order


def epoch_random_state(seed: int, epoch: int) -> int:
    """The block-shuffling random state of one epoch: independent across epochs, fixed by ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def fit_preprocessor(data: Dataset, *, scale: bool = True) -> Pipeline:
    """A fitted ``Pipeline`` that standardises (``scale``) and imputes the features of ``data``.

    One pass over the feature columns: each partition's count, mean and sum of squared deviations
    per column (NaN skipped) are computed on the workers and merged pairwise in a tree (Chan et al.),
    so only one ``(3, features)`` array reaches the client. The scaler is scikit-learn's
    ``StandardScaler`` holding these exact statistics (population variance, as scikit-learn's);
    missing values are then imputed with the mean.
    """
    features = list(data.features)
    meta = pd.DataFrame({name: pd.Series([], dtype="float64") for name in features})
    # map_partitions fuses the moments into the read task: no partition is held waiting for them.
    parts = data.frame[features].map_partitions(_moments, features, meta=meta).to_delayed()
    while len(parts) > 1:
        parts = [dask.delayed(_merge)(*parts[i:i + 2]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    n, mean, m2 = np.asarray(dask.compute(parts[0])[0], dtype="float64")
    var = np.divide(m2, n, out=np.zeros_like(m2), where=n > 0)
    names = np.asarray(features, dtype=object)
    if not scale:
        imputer = SimpleImputer(strategy="mean", keep_empty_features=True)
        return Pipeline([("impute", imputer.fit(pd.DataFrame([mean], columns=features)))])
    scaler = StandardScaler()
    std = np.sqrt(var)
    scaler.n_features_in_, scaler.feature_names_in_ = len(features), names
    scaler.n_samples_seen_, scaler.mean_, scaler.var_ = n.astype("int64"), mean, var
    scaler.scale_ = np.where(std < 10 * np.finfo(std.dtype).eps, 1.0, std)  # as scikit-learn: constant -> 1
    imputer = SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True)
    return Pipeline([("scale", scaler), ("impute", imputer.fit(np.zeros((1, len(features)))))])


def _moments(part: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Rows ``n``, ``mean``, ``m2`` (sum of squared deviations) of each feature, NaN skipped."""
    # Changed in place below: a copy, never a (read-only, copy-on-write) view of the partition.
    X = np.require(part[features].to_numpy(dtype="float64", na_value=np.nan), requirements=["W"])
    missing = np.isnan(X)
    n = (len(X) - missing.sum(axis=0)).astype("float64")
    some_missing = bool((n < len(X)).any())
    if some_missing:
        X[missing] = 0.0
    mean = np.divide(X.sum(axis=0), n, out=np.zeros(X.shape[1]), where=n > 0)
    X -= mean
    if some_missing:
        X[missing] = 0.0
    m2 = np.einsum("ij,ij->j", X, X)
    return pd.DataFrame([n, mean, m2], columns=features, index=["n", "mean", "m2"])


def _merge(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The moments of two parts together (Chan, Golub and LeVeque's pairwise update)."""
    (na, ma, m2a), (nb, mb, m2b) = a.to_numpy(), b.to_numpy()
    n = na + nb
    delta = mb - ma
    weight = np.divide(nb, n, out=np.zeros_like(n), where=n > 0)
    return pd.DataFrame([n, ma + delta * weight, m2a + m2b + delta**2 * na * weight], columns=a.columns,
                        index=a.index)


def dataset_arrays(data: Dataset, preprocess: Pipeline | None = None) -> tuple[da.Array, da.Array, list[int]]:
    """Lazy ``X`` (float64, C-ordered, preprocessed) and ``y`` (int8) dask arrays, one block per
    non-empty partition of ``data``, and the partition number of each block.

    The block lengths come from the class counts (one pass over the target column if they are
    unknown), so nothing is computed to learn the chunk sizes. A block is read from the files, and
    preprocessed, by the task that needs it; nothing is persisted.
    """
    lengths = class_counts(data).sum(axis=1)
    partitions = [int(i) for i in np.flatnonzero(lengths)]  # partial_fit refuses empty blocks
    if not partitions:
        raise DataError("the dataset has no rows", "check the split and under-sampling that made it")
    features = list(data.features)
    parts_frame = data.frame[[*features, data.target]]
    if parts_frame.npartitions != len(lengths):
        raise WorkbenchError(
            f"the frame has {parts_frame.npartitions} partitions but its class counts {len(lengths)}",
            "build the Dataset with workbench.read_bigquery_export, split or undersample",
        )
    # Read, select and preprocess fuse into one task per partition, so a raw partition is never held
    # beside its preprocessed copy; the two extractions below are views of that task's output.
    meta = pd.DataFrame({**{name: pd.Series([], dtype="float64") for name in features},
                         data.target: pd.Series([], dtype="int8")})
    design = parts_frame.map_partitions(_design_frame, preprocess, features, data.target, meta=meta).to_delayed()
    X_blocks, y_blocks = [], []
    for i in partitions:
        n = int(lengths[i])
        X_blocks.append(da.from_delayed(_features_of(design[i], len(features)), (n, len(features)), dtype="float64"))
        y_blocks.append(da.from_delayed(_target_of(design[i]), (n,), dtype="int8"))
    return da.concatenate(X_blocks), da.concatenate(y_blocks), partitions


def _design_frame(part: pd.DataFrame, preprocess, features, target) -> pd.DataFrame:
    # C order is what partial_fit wants; the frame keeps it as one block, so _features_of is a view.
    X = np.require(part[features].to_numpy(dtype="float64", na_value=np.nan), requirements=["C", "W"])
    if preprocess is not None:
        _transform_in_place(preprocess, X)
    frame = pd.DataFrame(X, columns=features, index=part.index, copy=False)
    frame[target] = part[target].to_numpy(dtype="int8")
    return frame


def _transform_in_place(preprocess: Pipeline, X: np.ndarray) -> None:
    """What ``preprocess.transform`` computes (the same operations, so the same floats), in place:
    without the Pipeline's validation and copies, twice as fast on a 100,000 x 30 block."""
    steps = preprocess.named_steps
    if "scale" in steps:
        X -= steps["scale"].mean_
        X /= steps["scale"].scale_
    missing = np.isnan(X)
    if missing.any():
        X[missing] = np.broadcast_to(steps["impute"].statistics_, X.shape)[missing]


@dask.delayed(pure=True)
def _features_of(frame: pd.DataFrame, k: int) -> np.ndarray:
    return frame.iloc[:, :k].to_numpy()


@dask.delayed(pure=True)
def _target_of(frame: pd.DataFrame) -> np.ndarray:
    return frame.iloc[:, -1].to_numpy()
