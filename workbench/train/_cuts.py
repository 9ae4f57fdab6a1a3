"""Histogram cuts that do not depend on the number of workers: those of ``xgboost.train`` in one process.

XGBoost's ``hist`` bins each feature at cuts from a quantile sketch. In distributed training, each
rank sketches its own rows and the ranks merge their summaries, so the cuts depend on how the rows
are shared among the ranks. Measured on 4,000,000 rows of the benchmark export: on 2 workers the
ratio features with heavy ties got 229 bins instead of the 174 of one process, and ROC AUC after 50
rounds was 0.9037 against 0.9054; a single process trained on the 2-worker cuts gave 0.9037 again,
to the 5th decimal, so the cuts were the whole difference (benchmarks/README.md).

One feature's sketch in one process depends only on that column's values in row order: not on the
batches they come in, the threads, or the other columns (tested). So each worker sketches a group
of columns over every row, in the order of the partitions, and the groups are joined: the cuts of
``xgboost.train`` in one process, whatever the number of workers. XGBoost takes cuts only from a
reference matrix (``ref=``), so :func:`cuts_matrix` builds a small one whose own sketch gives
exactly these cuts (checked on every build), and every rank builds its matrix on it.
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb

__all__ = ["Cuts", "column_groups", "join_cuts", "cuts_matrix", "same_cuts"]

#: ``(indptr, values)`` as ``DMatrix.get_quantile_cut`` gives them: feature ``j`` has
#: ``values[indptr[j]:indptr[j + 1]]``, its minimum bound first, then its cuts in increasing order.
Cuts = tuple[np.ndarray, np.ndarray]

_EPS = np.float32(1e-5)  # XGBoost's margin below the minimum and above the maximum (src/common/quantile.cc)


def column_groups(n_features: int, n_groups: int) -> list[list[int]]:
    """``n_features`` column indices in at most ``n_groups`` contiguous groups of near-equal size."""
    n = max(1, min(n_groups, n_features))
    return [list(range(k * n_features // n, (k + 1) * n_features // n)) for k in range(n)]


def join_cuts(parts: list[Cuts]) -> Cuts:
    """The cuts of column groups, given in column order, as the cuts of all columns."""
    sizes = np.concatenate([np.diff(indptr) for indptr, _ in parts])
    indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(parts[0][0].dtype)
    return indptr, np.concatenate([values for _, values in parts]).astype("float32")


def same_cuts(a: Cuts, b: Cuts) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def cuts_matrix(cuts: Cuts, max_bin: int, feature_names: list[str] | None = None) -> xgb.QuantileDMatrix:
    """A small ``QuantileDMatrix`` whose cuts are ``cuts``, to pass as ``ref=`` to another matrix.

    Each column holds its own minimum, its cuts but the last, and, where the sketch had more values
    than bins, the maximum (XGBoost derives the last cut from it): with at most ``max_bin`` distinct
    values, XGBoost's sketch keeps every value and the cuts come back exactly. They are compared
    with ``cuts`` before the matrix is returned; :class:`ValueError` if they differ.
    """
    indptr, values = np.asarray(cuts[0]), np.asarray(cuts[1], dtype="float32")
    columns = [_column_values(values[indptr[j]:indptr[j + 1]], max_bin) for j in range(len(indptr) - 1)]
    X = np.full((max(1, max(len(c) for c in columns)), len(columns)), np.nan, dtype="float32")
    for j, column in enumerate(columns):
        X[:len(column), j] = column
    ref = xgb.QuantileDMatrix(X, np.zeros(len(X), dtype="float32"), max_bin=max_bin, nthread=1,
                              feature_names=feature_names)
    if not same_cuts(ref.get_quantile_cut(), (indptr, values)):
        raise ValueError("XGBoost did not rebuild the given quantile cuts")
    return ref


def _column_values(feature: np.ndarray, max_bin: int) -> np.ndarray:
    """Values whose sketch gives ``feature`` (its minimum bound, then its cuts)."""
    lowest, cuts = feature[0], feature[1:]
    if len(cuts) == 0 or lowest == _EPS:  # a feature with no value: XGBoost's bounds of nothing
        return np.empty(0, dtype="float32")
    if len(cuts) == 1:  # one distinct value: both bounds come from it
        only = _inverse(lowest, below=True) if lowest != -_EPS else _inverse(cuts[0], below=False)
        return np.asarray([only], dtype="float32")
    values = [_inverse(lowest, below=True), *cuts[:-1]]
    if len(cuts) >= max_bin:  # pruned: the maximum was not among the cuts
        values.append(_inverse(cuts[-1], below=False, floor=cuts[-2]))
    return np.asarray(values, dtype="float32")


def _bound(value: np.float32, below: bool) -> np.float32:
    """XGBoost's bound below a minimum (``v - (|v| + eps)``) or above a maximum (``v + (|v| + eps)``)."""
    value = np.float64(value)  # XGBoost adds its margin in double precision, then rounds to float
    margin = abs(value) + 1e-5
    return np.float32(value - margin) if below else np.float32(value + margin)


def _inverse(bound: np.float32, *, below: bool, floor=None) -> np.float32:
    """A value whose bound is ``bound``: for a minimum, 0 stands for every value >= 0 (all give
    ``-eps``); for a maximum, any negative value above ``floor`` stands for every negative value."""
    bound = np.float32(bound)
    if below and bound == -_EPS:
        return np.float32(0.0)
    if not below and bound == _EPS and floor is not None and floor < 0:
        return np.float32(floor / 2)
    guess = np.float32((bound + _EPS) / 2) if below else np.float32((bound - _EPS) / 2)
    for candidate in _around(guess):
        if _bound(candidate, below) == bound:
            return candidate
    raise ValueError(f"no value has the bound {bound!r}")


def _around(value: np.float32, ulps: int = 4):
    yield value
    up = down = value
    for _ in range(ulps):
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        yield up
        yield down
