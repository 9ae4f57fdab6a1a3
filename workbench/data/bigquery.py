"""Read Parquet exported from BigQuery into a :class:`~workbench.data.Dataset`, out-of-core.

BigQuery writes NUMERIC as DECIMAL(38, 9), BIGNUMERIC as DECIMAL(76, 38), TIMESTAMP and DATETIME
as timestamps without a time zone, REPEATED and STRUCT fields as nested groups, and shards a large
table into ``name-000000000000.parquet`` files. The reader turns that into numeric features and a
0/1 target on the workers; the client only reads the Parquet footers.
"""

from __future__ import annotations

import os
import warnings

import dask
import dask.config
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dask.utils import parse_bytes

from ..errors import DataError, WorkbenchWarning
from .dataset import Dataset
from .labels import LABEL_KINDS, bool_value, labels_to_01
from .parquet import (
    Column,
    arrow_kind,
    common_schema,
    expand_paths,
    feature_dtype,
    infinite_suspects,
    null_counts,
    plan_columns,
    plan_partitions,
    read_footers,
    read_row_groups,
)

__all__ = ["INFINITE", "read_bigquery_export"]

#: What the reader does with +inf and -inf in FLOAT64 columns: refuse them in one line that names
#: the columns and counts, or read them as missing values (NaN).
INFINITE = ("error", "missing")


def read_bigquery_export(
    path: str | os.PathLike | list,
    target: str | None,
    *,
    drop: list[str] | tuple[str, ...] = (),
    positive=None,
    keep_nested: bool = False,
    infinite: str = "error",
    partition_size: str | int | None = None,
    storage_options: dict | None = None,
) -> Dataset:
    """Open a BigQuery Parquet export as a lazy, normalised :class:`Dataset`.

    Parameters
    ----------
    path
        A file, a glob (``exports/btc-*.parquet``), a directory of shards, or a list of these;
        fsspec URLs (``gs://``, ``s3://``) work when the matching fsspec package is installed.
    target
        The label column. BOOL, INT64 and STRING labels become int8 0/1; rows whose label is null
        are left out. ``None``: unlabelled data (to score with a trained model), features only.
    drop
        Columns never to read (ids, leaky columns).
    positive
        The label value of the positive class. Default: ``True`` / ``1`` / ``"true"``, ``"yes"``…
    keep_nested
        Keep REPEATED and STRUCT columns in the frame (never as features) instead of dropping them.
    infinite
        ``"error"`` (default): a FLOAT64 feature holding +inf or -inf is refused with a
        :class:`~workbench.errors.DataError` naming the columns and counts (the footers' statistics
        rule most columns out; the others are counted on the workers). ``"missing"``: infinities
        are read as missing values (NaN), as nulls are.
    partition_size
        Target uncompressed size of one partition; whole row groups of one shard are combined.
        Default: the Dask config value ``workbench.read.partition_size``.
    storage_options
        Passed to fsspec (credentials, endpoint URLs).
    """
    if infinite not in INFINITE:
        raise DataError(f"infinite={infinite!r} is not one of {', '.join(INFINITE)}",
                        "use 'error' (refuse +inf and -inf) or 'missing' (read them as NaN)")
    fs, files = expand_paths(path, storage_options)
    footers = read_footers(fs, files)
    drop = list(drop)
    schema = common_schema(files, footers, ignore=set(drop))
    every_name = set().union(*(f.schema.to_arrow_schema().names for f in footers))
    missing = [c for c in drop if c not in every_name]
    if missing:
        raise DataError(f"cannot drop {missing}: not columns of the export", f"columns are: {_names(schema.names)}")
    if target is not None and target not in schema.names:
        raise DataError(
            f"target column {target!r} is not in the export",
            f"pass the label column as target (columns are: {_names(schema.names)})",
        )
    if target in drop:
        raise DataError(f"target column {target!r} is also listed in drop", "remove it from drop")

    nulls, total_rows = null_counts(footers, schema.names)
    if target is not None and nulls.get(target) == total_rows:
        raise _null_target(target, total_rows)
    columns, excluded, unknown_nulls = plan_columns(schema, target, drop, keep_nested, nulls, total_rows)
    nested = [name for name, why in excluded.items() if why.startswith("REPEATED/STRUCT")]
    if nested:
        warnings.warn(
            f"dropping REPEATED/STRUCT columns {nested}: they cannot be model features "
            "(pass keep_nested=True to keep them in the frame)",
            WorkbenchWarning,
            stacklevel=2,
        )
    target_kind = arrow_kind(schema.field(target).type) if target is not None else None
    if target is not None and target_kind not in LABEL_KINDS:
        raise DataError(
            f"target column {target!r} has type {schema.field(target).type}, not BOOL, INT64, FLOAT64, NUMERIC or STRING",
            "choose a label column of one of those types",
        )
    if target_kind == "bool" and positive is not None and bool_value(positive) is None:
        raise DataError(f"positive={positive!r} is not a BOOL value for target {target!r}", "use true or false")

    partition_size = partition_size or dask.config.get("workbench.read.partition_size")
    parts, keys = plan_partitions(files, footers, [c.name for c in columns] + ([target] if target else []),
                                   parse_bytes(partition_size))
    reader = _PartitionReader(fs, tuple(columns), target, positive, target_kind, infinite)
    frame = dd.from_map(reader, parts, meta=reader.meta(), label="read-bigquery-export", enforce_metadata=False)
    if unknown_nulls:
        # Shards written without statistics: one pass over just those columns, on the workers,
        # decides which are all null and which integer columns can stay int64.
        non_null = frame[[*unknown_nulls, *([target] if target else [])]].count().compute()
        rows = int(non_null[target]) if target else total_rows
        if target and rows == 0:
            raise _null_target(target, total_rows)
        excluded.update({name: "all values null" for name in unknown_nulls if non_null[name] == 0})
        columns = [
            Column(c.name, c.kind, feature_dtype(c.kind, rows - int(non_null[c.name]))) if c.name in unknown_nulls else c
            for c in columns
            if c.name not in excluded
        ]
        reader = _PartitionReader(fs, tuple(columns), target, positive, target_kind, infinite)
        frame = dd.from_map(reader, parts, meta=reader.meta(), label="read-bigquery-export", enforce_metadata=False)
    if infinite == "error":
        _refuse_infinities(frame, infinite_suspects(footers, [c.name for c in columns if c.kind == "float"]))
    features = tuple(c.name for c in columns if c.kind != "nested")
    if not features:
        why = ", ".join(f"{name} ({reason})" for name, reason in excluded.items() if name != target) or "none"
        raise DataError(f"the export has no feature column: besides the target, its columns are {why}",
                        "export numeric, BOOL, NUMERIC or date/time columns next to the target")
    info = {
        "source": [str(p) for p in (path if isinstance(path, list) else [path])],
        "files": len(files),
        "rows_in_files": total_rows,
        "rows_with_null_target": nulls.get(target) if target else 0,  # None: shards without statistics
        "excluded": excluded,
        "conversions": {c.name: f"{c.kind} -> {c.dtype}" for c in columns if c.kind not in {"int", "float"}},
        "target_kind": target_kind,
        "infinite": infinite,
    }
    return Dataset(frame=frame, target=target, features=features, partition_keys=tuple(keys), info=info)


def _null_target(target: str, rows: int) -> DataError:
    return DataError(f"target column {target!r} is null in every row ({rows:,} rows)",
                     "check the export query, or name the label column as target")


def _refuse_infinities(frame: dd.DataFrame, suspects: list[str]) -> None:
    """Count +inf and -inf in the ``suspects`` columns on the workers (one pass over those columns
    only); any found is a one-line DataError naming the columns and counts."""
    if not suspects:
        return
    meta = pd.DataFrame({name: pd.Series([], dtype="int64") for name in suspects})
    # one small table per partition, gathered as is (see labels.label_counts)
    parts = frame[suspects].map_partitions(_count_infinities, meta=meta).to_delayed()
    counts = pd.concat(dask.compute(*parts)).groupby(level=0).sum()
    found = [(name, int(counts.at["+inf", name]), int(counts.at["-inf", name]))
             for name in suspects if counts[name].any()]
    if not found:
        return
    shown = "; ".join(
        f"{name}: " + ", ".join(f"{n:,} {sign}" for n, sign in ((pos, "+inf"), (neg, "-inf")) if n)
        for name, pos, neg in found[:8]
    ) + (f"; and {len(found) - 8} more column(s)" if len(found) > 8 else "")
    raise DataError(
        f"feature column(s) hold infinite values ({shown})",
        "read them as missing values (NaN) with data.infinite: missing (Python: infinite='missing'), "
        "or remove them from the export",
    )


def _count_infinities(df: pd.DataFrame) -> pd.DataFrame:
    values = df.to_numpy(dtype="float64", na_value=np.nan)
    return pd.DataFrame([(values == np.inf).sum(axis=0), (values == -np.inf).sum(axis=0)],
                        index=["+inf", "-inf"], columns=df.columns, dtype="int64")


def _names(names, limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


class _PartitionReader:
    """Reads some row groups of one shard and normalises them (runs on the workers)."""

    def __init__(self, fs, columns: tuple[Column, ...], target: str, positive, target_kind: str,
                 infinite: str = "error"):
        self.fs = fs
        self.columns = columns
        self.target = target
        self.positive = positive
        self.target_kind = target_kind
        self.infinite = infinite

    def meta(self) -> pd.DataFrame:
        data = {c.name: pd.Series([], dtype=c.dtype) for c in self.columns}
        if self.target is not None:
            data[self.target] = pd.Series([], dtype="int8")
        return pd.DataFrame(data, index=pd.RangeIndex(0, name="row"))

    def __call__(self, part, columns=None) -> pd.DataFrame:
        path, row_groups, first_row = part
        wanted = [c for c in self.columns if columns is None or c.name in columns]
        labels = [self.target] if self.target is not None else []
        read = [c.name for c in wanted] + labels
        table = read_row_groups(self.fs, path, row_groups, read)
        # The index is each row's position in its shard, so results can be joined back to the source.
        index = pd.RangeIndex(first_row, first_row + table.num_rows, name="row")
        out = {}
        label = table.column(self.target) if labels else None
        if label is not None and label.null_count:
            keep = pc.is_valid(label)
            table = table.filter(keep)
            index = index[keep.to_numpy(zero_copy_only=False)]
            label = table.column(self.target)
        out = {c.name: _to_pandas(table.column(c.name), c) for c in wanted}
        if self.infinite == "missing":
            out.update({c.name: _infinite_as_nan(out[c.name]) for c in wanted if c.kind == "float"})
        if label is not None:
            out[self.target] = labels_to_01(label, self.target_kind, self.positive)
        frame = pd.DataFrame(out, index=index, copy=False)  # each column its own block: no consolidating copy
        order = [c.name for c in wanted] + labels
        if columns is not None:
            order = [c for c in order if c in columns]
        return frame[order]


def _to_pandas(col: pa.ChunkedArray, c: Column):
    kind = arrow_kind(col.type)
    if c.kind == "nested":
        return pd.arrays.ArrowExtensionArray(col)
    if kind == "timestamp":
        seconds = pc.divide(pc.cast(pc.cast(col, pa.timestamp("us", tz=col.type.tz)), pa.int64()), 1e6)
        return seconds.to_numpy(zero_copy_only=False).astype("float64")
    if kind == "date":
        days = pc.cast(pc.cast(col, pa.date32()), pa.int32())
        return pc.multiply(pc.cast(days, pa.float64()), 86400.0).to_numpy(zero_copy_only=False)
    if kind == "time":
        micros = pc.cast(pc.cast(col, pa.time64("us")), pa.int64())
        return pc.divide(pc.cast(micros, pa.float64()), 1e6).to_numpy(zero_copy_only=False)
    if kind == "null":
        return np.full(len(col), np.nan)
    if kind == "decimal":
        return _decimal_to_float64(col)
    if c.dtype == "float64":
        return pc.cast(col, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return pc.cast(col, pa.from_numpy_dtype(np.dtype(c.dtype))).to_numpy(zero_copy_only=False)


def _infinite_as_nan(values: np.ndarray) -> np.ndarray:
    """``values`` with +inf and -inf as NaN (a copy only when there are any)."""
    infinite = np.isinf(values)
    if not infinite.any():
        return values
    values = values.copy()
    values[infinite] = np.nan
    return values


def _decimal_to_float64(col: pa.ChunkedArray) -> np.ndarray:
    """The float64 nearest to each decimal, as ``float(Decimal(...))`` gives.

    Arrow's decimal-to-float cast is not correctly rounded (19.99 becomes 19.990000000000002). An
    unscaled integer below 2**53 divided by an exact power of ten is: IEEE division of two exact
    operands rounds correctly. Other values go through Arrow's exact decimal-to-text conversion.
    """
    out = np.empty(len(col), dtype="float64")
    start = 0
    for chunk in col.chunks:
        out[start:start + len(chunk)] = _decimal_chunk_to_float64(chunk)
        start += len(chunk)
    return out


def _decimal_chunk_to_float64(chunk: pa.Array) -> np.ndarray:
    scale = chunk.type.scale
    if not pa.types.is_decimal128(chunk.type) or not 0 <= scale <= 22 or len(chunk) == 0:
        return pc.cast(pc.cast(chunk, pa.string()), pa.float64()).to_numpy(zero_copy_only=False)
    words = np.frombuffer(chunk.buffers()[1], dtype="<i8")[2 * chunk.offset:2 * (chunk.offset + len(chunk))]
    low, high = words[0::2], words[1::2]
    exact = ((high == 0) & (low >= 0) & (low < 2**53)) | ((high == -1) & (low < 0) & (low > -(2**53)))
    values = low.astype("float64") / 10.0**scale
    if chunk.null_count:
        exact &= chunk.is_valid().to_numpy(zero_copy_only=False)
    if not exact.all():
        rest = pc.cast(pc.cast(chunk.filter(pa.array(~exact)), pa.string()), pa.float64())
        values[~exact] = rest.to_numpy(zero_copy_only=False)
    return values
