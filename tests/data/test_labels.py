"""How a label column becomes 0/1, and the one pass that counts the classes per partition."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from workbench.data import Dataset
from workbench.data.labels import bool_value, label_counts, labels_to_01


@pytest.mark.parametrize(
    "values, kind, positive, expected",
    [
        (pa.array([True, False, True]), "bool", None, [1, 0, 1]),
        (pa.array([True, False, True]), "bool", "no", [0, 1, 0]),
        (pa.array([1, 0, 2]), "int", None, [1, 0, -1]),
        (pa.array([1, 0, 2]), "int", 2, [0, 0, 1]),
        (pa.array([" Yes", "n", "maybe", "TRUE"]), "string", None, [1, 0, -1, 1]),
        (pa.array(["pool", "Miner", "miner"]), "string", "MINER", [0, 1, 1]),
        (pa.chunked_array([[1.0, 0.0], [0.5]]), "float", None, [1, 0, -1]),
    ],
)
def test_labels_become_zero_one_or_neither(values, kind, positive, expected):
    out = labels_to_01(values, kind, positive)
    assert out.dtype == np.int8 and out.tolist() == expected


def test_bool_values():
    assert [bool_value(v) for v in (True, 0, "Y", " false ", "maybe", 2)] == [True, False, True, False, None, None]


def test_label_counts_per_partition(client):
    frame = pd.DataFrame({"x": np.arange(9.0), "y": np.array([0, 1, 0, -1, 0, 0, 1, 1, 0], dtype="int8")})
    data = Dataset(frame=dd.from_pandas(frame, npartitions=3, sort=False), target="y", features=("x",),
                   partition_keys=("a", "b", "c"))
    assert label_counts(data).tolist() == [[2, 1, 0], [2, 0, 1], [1, 2, 0]]  # negatives, positives, neither
