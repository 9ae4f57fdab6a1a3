"""Helpers of the in-memory trainers (search, ensembles): a small Dataset as one pair of numpy arrays
held by every worker, and estimators made single-threaded."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
from dask.utils import format_bytes, parse_bytes

from ..data.dataset import Dataset
from ..errors import WorkbenchError
from ..sampling import class_counts

__all__ = ["in_memory_arrays", "check_in_memory", "single_threaded"]


def check_in_memory(data: Dataset, what: str) -> np.ndarray:
    """Negatives and positives of ``data``; raises :class:`WorkbenchError` if its arrays would exceed
    ``workbench.in_memory.max_bytes``."""
    totals = class_counts(data).sum(axis=0)
    rows = int(totals.sum())
    size = rows * (8 * len(data.features) + 1)
    limit = parse_bytes(dask.config.get("workbench.in_memory.max_bytes"))
    if size > limit:
        raise WorkbenchError(
            f"{what} holds its data in memory, and {rows:,} rows x {len(data.features)} features is "
            f"{format_bytes(size)}, more than workbench.in_memory.max_bytes ({format_bytes(limit)})",
            "under-sample it first (workbench.undersample) or raise the limit with dask.config.set",
        )
    return totals


def in_memory_arrays(data: Dataset, client):
    """Futures of ``X`` (float64, NaN for missing) and ``y`` (int8), built on a worker from the
    partitions and replicated to every worker: the data is moved once, never to the client.
    Call :func:`check_in_memory` first."""
    parts = data.frame[[*data.features, data.target]].to_delayed()
    X, y = dask.delayed(_stack, nout=2, pure=True)(parts, list(data.features), data.target)
    fx, fy = client.compute([X, y])
    client.replicate([fx, fy])
    return fx, fy


def _stack(parts: list[pd.DataFrame], features: list[str], target: str) -> tuple[np.ndarray, np.ndarray]:
    return stack_partitions(parts, features, target, dtype="float64", label_dtype="int8")


def stack_partitions(parts, features, target, *, dtype, label_dtype, order="C") -> tuple[np.ndarray, np.ndarray]:
    """One ``(rows, features)`` array and its labels from a list of partitions; missing values become NaN.

    The block is filled one column at a time through a contiguous ``(features, rows)`` buffer (no
    intermediate copy of a whole partition in another dtype). ``order="F"`` returns the transpose of
    that buffer, with no further copy; ``order="C"`` transposes each partition's slice into a C-order
    array. Writing a column straight into a C-order array is a strided write per value, 5-9x slower
    (3.2 M x 30 float32: 1.9 s of CPU against 0.2 s in Fortran order, measured; benchmarks/README.md).
    """
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', not {order!r}")
    rows = sum(len(p) for p in parts)
    y = np.empty(rows, dtype=label_dtype)
    if order == "F":
        columns = np.empty((len(features), rows), dtype=dtype)
        X = columns.T
    else:
        columns = np.empty((len(features), max((len(p) for p in parts), default=0)), dtype=dtype)
        X = np.empty((rows, len(features)), dtype=dtype)
    start = 0
    for part in parts:
        end = start + len(part)
        into = columns[:, start:end] if order == "F" else columns[:, : end - start]
        for j, name in enumerate(features):
            _column_into(into[j], part[name])
        if order == "C":
            X[start:end] = into.T
        y[start:end] = part[target].to_numpy(dtype=label_dtype)
        start = end
    return X, y


def _column_into(out: np.ndarray, column: pd.Series) -> None:
    """``column`` cast into ``out`` (one contiguous row of the buffer), NaN for missing values."""
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
        np.copyto(out, column.to_numpy(), casting="unsafe")  # numpy's cast, as to_numpy(dtype=...) does
    else:
        out[:] = column.to_numpy(dtype=out.dtype, na_value=np.nan)


def single_threaded(estimator):
    """``estimator`` with every explicit ``n_jobs`` (other than None and 1) set to 1, in place.

    The workers already run one fit per thread; a forest with ``n_jobs=-1`` inside each would
    oversubscribe the cores. ``None`` is left alone: it means 1, and setting it makes some
    estimators warn (LogisticRegression in scikit-learn 1.8+).
    """
    params = estimator.get_params(deep=True)
    extra = {k: 1 for k, v in params.items() if (k == "n_jobs" or k.endswith("__n_jobs")) and v not in (None, 1)}
    return estimator.set_params(**extra)
