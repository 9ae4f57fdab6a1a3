"""Histogram cuts that do not depend on the number of workers (workbench.train._cuts): a reference
matrix that gives XGBoost exactly the cuts it is handed, and a column group's sketch equal to the
same columns' sketch over the whole matrix."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xgboost as xgb

from workbench.train._cuts import column_groups, cuts_matrix, join_cuts, same_cuts


def _columns(rng, n: int) -> np.ndarray:
    """Columns of the shapes that trip a rebuild: wide ranges, negatives only, a constant, all
    missing, zeros, small integers with heavy ties, ratios of small integers, and missing values."""
    makers = [
        lambda: rng.normal(size=n) * 10 ** rng.uniform(-3, 6),
        lambda: -np.abs(rng.normal(size=n)) - rng.uniform(0, 100),
        lambda: np.full(n, rng.normal()),
        lambda: np.full(n, np.nan),
        lambda: np.zeros(n),
        lambda: rng.integers(0, rng.integers(1, 600), n).astype(float),
        lambda: rng.integers(0, 5, n) / rng.integers(1, 5, n),
        lambda: np.abs(rng.normal(size=n)),
    ]
    columns = []
    for make in makers:
        column = make()
        column[rng.random(n) < rng.uniform(0, 0.5)] = np.nan
        columns.append(column)
    return np.column_stack(columns).astype("float32")


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_bin", [2, 16, 256])
def test_a_cuts_matrix_gives_xgboost_exactly_the_cuts_it_is_handed(seed, max_bin):
    rng = np.random.default_rng(seed)
    X = _columns(rng, int(rng.integers(5, 40_000)))
    y = (rng.random(len(X)) < 0.5).astype("float32")
    cuts = xgb.QuantileDMatrix(X, y, max_bin=max_bin).get_quantile_cut()
    rebuilt = xgb.QuantileDMatrix(X, y, max_bin=max_bin, ref=cuts_matrix(cuts, max_bin))
    assert same_cuts(rebuilt.get_quantile_cut(), cuts)


def test_cuts_xgboost_cannot_rebuild_are_refused():
    indptr, values = np.array([0, 3]), np.array([-1e-5, 5.0, 2.0], dtype="float32")  # cuts out of order
    with pytest.raises(ValueError, match="did not rebuild"):
        cuts_matrix((indptr, values), 256)


class _Batches(xgb.DataIter):
    def __init__(self, X, y, columns, n_batches, directory):
        self.X, self.y, self.columns, self.i = X, y, columns, 0
        self.bounds = np.linspace(0, len(y), n_batches + 1).astype(int)
        super().__init__(cache_prefix=os.path.join(directory, "pages"), on_host=False)

    def next(self, input_data) -> bool:
        if self.i == len(self.bounds) - 1:
            return False
        rows = slice(self.bounds[self.i], self.bounds[self.i + 1])
        input_data(data=np.ascontiguousarray(self.X[rows][:, self.columns]), label=self.y[rows])
        self.i += 1
        return True

    def reset(self) -> None:
        self.i = 0


def test_a_column_group_sketched_in_batches_has_the_cuts_of_the_whole_matrix(tmp_path):
    """What lets each worker sketch a group of columns: one column's cuts depend on its values in
    row order only, not on the batches, the threads or the other columns."""
    rng = np.random.default_rng(0)
    X = _columns(rng, 60_000)
    y = (rng.random(len(X)) < 0.1).astype("float32")
    whole = xgb.QuantileDMatrix(X, y, max_bin=64, nthread=2).get_quantile_cut()
    groups = column_groups(X.shape[1], 3)
    parts = []
    for k, group in enumerate(groups):
        directory = tmp_path / str(k)
        directory.mkdir()
        batches = _Batches(X, y, group, n_batches=2 + k, directory=str(directory))
        parts.append(xgb.ExtMemQuantileDMatrix(batches, max_bin=64, nthread=1).get_quantile_cut())
    assert same_cuts(join_cuts(parts), whole)


def test_column_groups_cover_every_column_once_in_order():
    assert column_groups(7, 3) == [[0, 1], [2, 3], [4, 5, 6]]
    assert column_groups(2, 5) == [[0], [1]]
    assert column_groups(4, 1) == [[0, 1, 2, 3]]
