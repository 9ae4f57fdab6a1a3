"""The label column: how its values become 0/1, and how many of each class a :class:`Dataset` holds.

:func:`labels_to_01` is the one rule for turning an exported BOOL, INT64, FLOAT64, NUMERIC or
STRING label into int8 (1 positive, 0 negative, -1 neither); the reader applies it to every
partition and ``data inspect`` to count the class balance. :func:`label_counts` is the one pass
over a Dataset's target that tells, per partition, how many rows of each there are; the sampler
(split, RUS) and the cache (partition lengths) both start from it.
"""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .dataset import Dataset

__all__ = ["TRUE_STRINGS", "FALSE_STRINGS", "LABEL_KINDS", "bool_value", "labels_to_01", "label_counts"]

TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_STRINGS = frozenset({"false", "f", "no", "n", "0"})
#: The :func:`~workbench.data.parquet.arrow_kind` s a label column may have.
LABEL_KINDS = frozenset({"bool", "int", "float", "decimal", "string"})


def bool_value(value) -> bool | None:
    """``value`` as a BOOL label value (``True``, ``1``, ``"yes"``…), or None if it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in TRUE_STRINGS else False if text in FALSE_STRINGS else None


def labels_to_01(label: pa.Array | pa.ChunkedArray, kind: str, positive=None) -> np.ndarray:
    """int8 labels of non-null ``label`` values: 1 positive, 0 negative, -1 a value that is neither.

    ``kind`` is the column's :func:`~workbench.data.parquet.arrow_kind`; ``positive`` names the
    positive value (default: ``True``, ``1``, or one of :data:`TRUE_STRINGS` against
    :data:`FALSE_STRINGS` for strings).
    """
    if kind == "bool":
        values = label.to_numpy(zero_copy_only=False).astype(bool)
        return (values == (True if positive is None else bool_value(positive))).astype("int8")
    if kind == "string":
        lowered = np.asarray(pc.utf8_lower(pc.utf8_trim_whitespace(label)).to_numpy(zero_copy_only=False), dtype=object)
        if positive is not None:
            return (lowered == str(positive).lower()).astype("int8")
        out = np.full(len(lowered), -1, dtype="int8")
        out[np.isin(lowered, list(TRUE_STRINGS))] = 1
        out[np.isin(lowered, list(FALSE_STRINGS))] = 0
        return out
    values = pc.cast(label, pa.float64()).to_numpy(zero_copy_only=False)
    if positive is not None:
        return (values == float(positive)).astype("int8")
    out = np.full(len(values), -1, dtype="int8")
    out[values == 1] = 1
    out[values == 0] = 0
    return out


def label_counts(data: Dataset) -> np.ndarray:
    """Negatives, positives and other label values per partition, ``(npartitions, 3)``: one pass
    over the target column, on the workers."""
    meta = pd.DataFrame({"neg": pd.Series([], dtype="int64"), "pos": pd.Series([], dtype="int64"),
                         "other": pd.Series([], dtype="int64")})
    # One small result per partition, gathered as is: `.compute()` on the frame would first
    # concatenate the partitions on the cluster, which doubled the time of this pass (measured).
    parts = data.y.map_partitions(_count_labels, meta=meta).to_delayed()
    return pd.concat(dask.compute(*parts), ignore_index=True)[["neg", "pos", "other"]].to_numpy(dtype="int64")


def _count_labels(y: pd.Series) -> pd.DataFrame:
    values = y.to_numpy()
    return pd.DataFrame(
        {"neg": [int((values == 0).sum())], "pos": [int((values == 1).sum())], "other": [int((values < 0).sum())]}
    )
