"""Read Parquet exported from BigQuery into a :class:`~workbench.data.Dataset`, out-of-core.

BigQuery writes NUMERIC as DECIMAL(38, 9), BIGNUMERIC as DECIMAL(76, 38), TIMESTAMP and DATETIME
as timestamps without a time zone, REPEATED and STRUCT fields as nested groups, and shards a large
table into ``name-000000000000.parquet`` files. The reader turns that into numeric features and a
0/1 target on the workers; the client only reads the Parquet footers.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dask.config
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dask.utils import parse_bytes

from ..errors import DataError, WorkbenchWarning
from .dataset import Dataset
from .remote import bucket_of, is_remote, missing_bucket_error, storage_error

__all__ = ["read_bigquery_export", "WorkbenchWarning", "TRUE_STRINGS", "FALSE_STRINGS"]

TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_STRINGS = frozenset({"false", "f", "no", "n", "0"})
NUMERIC_KINDS = frozenset({"int", "float", "decimal", "bool"})
TEMPORAL_KINDS = frozenset({"timestamp", "date", "time"})




@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # int | float | decimal | bool | timestamp | date | time | nested
    dtype: str  # pandas dtype written to the frame


def read_bigquery_export(
    path: str | os.PathLike | list,
    target: str | None,
    *,
    drop: list[str] | tuple[str, ...] = (),
    positive=None,
    keep_nested: bool = False,
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
    partition_size
        Target uncompressed size of one partition; whole row groups of one shard are combined.
        Default: the Dask config value ``workbench.read.partition_size``.
    storage_options
        Passed to fsspec (credentials, endpoint URLs).
    """
    fs, files = _expand(path, storage_options or {})
    footers = _read_footers(fs, files)
    drop = list(drop)
    schema = _check_schemas(files, footers, ignore=set(drop))
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

    null_counts, total_rows = _null_counts(footers, schema.names)
    columns, excluded, unknown_nulls = _plan_columns(schema, footers, target, drop, keep_nested, null_counts, total_rows)
    nested = [name for name, why in excluded.items() if why.startswith("REPEATED/STRUCT")]
    if nested:
        warnings.warn(
            f"dropping REPEATED/STRUCT columns {nested}: they cannot be model features "
            "(pass keep_nested=True to keep them in the frame)",
            WorkbenchWarning,
            stacklevel=2,
        )
    target_kind = _kind(schema.field(target).type) if target is not None else None
    if target is not None and target_kind not in {"bool", "int", "float", "decimal", "string"}:
        raise DataError(
            f"target column {target!r} has type {schema.field(target).type}, not BOOL, INT64, FLOAT64, NUMERIC or STRING",
            "choose a label column of one of those types",
        )
    if target_kind == "bool" and positive is not None and _bool_value(positive) is None:
        raise DataError(f"positive={positive!r} is not a BOOL value for target {target!r}", "use true or false")

    partition_size = partition_size or dask.config.get("workbench.read.partition_size")
    parts, keys = _plan_partitions(files, footers, [c.name for c in columns] + ([target] if target else []),
                                   parse_bytes(partition_size))
    reader = _PartitionReader(fs, tuple(columns), target, positive, target_kind)
    frame = dd.from_map(reader, parts, meta=reader.meta(), label="read-bigquery-export", enforce_metadata=False)
    if unknown_nulls:
        # Shards written without statistics: one pass over just those columns, on the workers,
        # decides which are all null and which integer columns can stay int64.
        non_null = frame[[*unknown_nulls, *([target] if target else [])]].count().compute()
        rows = int(non_null[target]) if target else total_rows
        excluded.update({name: "all values null" for name in unknown_nulls if non_null[name] == 0})
        columns = [
            _Column(c.name, c.kind, _dtype(c.kind, rows - int(non_null[c.name]))) if c.name in unknown_nulls else c
            for c in columns
            if c.name not in excluded
        ]
        reader = _PartitionReader(fs, tuple(columns), target, positive, target_kind)
        frame = dd.from_map(reader, parts, meta=reader.meta(), label="read-bigquery-export", enforce_metadata=False)
    features = tuple(c.name for c in columns if c.kind != "nested")
    info = {
        "source": [str(p) for p in (path if isinstance(path, list) else [path])],
        "files": len(files),
        "rows_in_files": total_rows,
        "rows_with_null_target": null_counts.get(target) if target else 0,  # None: shards without statistics
        "excluded": excluded,
        "conversions": {c.name: f"{c.kind} -> {c.dtype}" for c in columns if c.kind not in {"int", "float"}},
        "target_kind": target_kind,
    }
    return Dataset(frame=frame, target=target, features=features, partition_keys=tuple(keys), info=info)


def _names(names, limit: int = 12) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _expand(path, storage_options: dict):
    paths = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else [os.fspath(path)]
    try:
        fs, _ = fsspec.core.url_to_fs(paths[0], **storage_options)
    except ImportError as exc:
        protocol = paths[0].split("://")[0]
        extra = {"gs": "gcs", "gcs": "gcs", "s3": "s3"}.get(protocol)
        fix = f"pip install 'workbench[{extra}]'" if extra else "install the fsspec package for that protocol"
        raise DataError(f"reading {protocol}:// paths needs a package that is not installed ({exc})", fix) from None
    except ValueError as exc:
        raise DataError(f"cannot open {paths[0]!r}: {exc}", "check the URL and storage_options") from None
    fs.invalidate_cache()  # a cached file-system instance may hold listings from before a re-export
    files: list[str] = []
    for p in paths:
        try:
            if fs.isdir(p):
                found = [f for f in fs.find(p) if not os.path.basename(f).startswith(("_", "."))]
                parquet = [f for f in found if f.endswith(".parquet")]
                found = parquet or found  # BigQuery shards may be exported without an extension
            else:
                found = fs.glob(p) if any(ch in p for ch in "*?[") else ([p] if fs.exists(p) else [])
        except Exception as exc:  # noqa: BLE001 - object stores raise their own exception types
            known = storage_error(exc, p)
            if known is not None and known.problem.startswith("permission denied") and not _bucket_exists(fs, p):
                known = missing_bucket_error(p)  # a store may refuse a bucket that does not exist
            if known is not None:
                raise known from None
            if isinstance(exc, OSError):
                raise DataError(f"cannot list {p!r}: {exc}", "check the path and your credentials") from None
            raise
        files.extend(f for f in found if not fs.isdir(f))
    if not files:
        if is_remote(paths[0]) and not _bucket_exists(fs, paths[0]):
            raise missing_bucket_error(paths[0])
        raise DataError(
            f"no Parquet files found at {', '.join(repr(p) for p in paths)}",
            "check the path; a file, a glob like 'exports/btc-*.parquet' or a directory of shards is accepted",
        )
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local"):
        files = [fs.unstrip_protocol(f) if "://" not in f else f for f in files]
    return fs, sorted(set(files))


def _bucket_exists(fs, url: str) -> bool:
    """False only when the store says the bucket is not there (a refusal is not an answer)."""
    try:
        fs.invalidate_cache()
        fs.ls(bucket_of(url), detail=False)  # HEAD on a bucket is refused by some stores whether or not it exists
    except FileNotFoundError:
        return False
    except Exception:  # noqa: BLE001 - cannot tell: let the caller report what it saw
        return True
    return True


def _open(fs, path: str):
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else fs.open(path, "rb")


def _read_footer(fs, path: str) -> pq.FileMetaData:
    try:
        return pq.read_metadata(_open(fs, path))
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        known = storage_error(exc, path)
        if known is not None:
            raise known from None
        raise DataError(
            f"{os.path.basename(path)} is not a readable Parquet file ({str(exc).splitlines()[0]})",
            "re-export or remove the file (a truncated upload is the usual cause)",
        ) from None


def _read_footers(fs, files: list[str]) -> list[pq.FileMetaData]:
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
        return list(pool.map(lambda f: _read_footer(fs, f), files))


_KINDS = (
    ("bool", (pa.types.is_boolean,)),
    ("int", (pa.types.is_integer,)),
    ("float", (pa.types.is_floating,)),
    ("decimal", (pa.types.is_decimal,)),
    ("timestamp", (pa.types.is_timestamp,)),
    ("date", (pa.types.is_date,)),
    ("time", (pa.types.is_time,)),
    ("string", (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)),
    ("binary", (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_fixed_size_binary)),
    ("null", (pa.types.is_null,)),
    ("nested", (pa.types.is_nested, pa.types.is_dictionary)),
)


def _kind(t: pa.DataType) -> str:
    """What the reader does with an Arrow type: one of the names in ``_KINDS``, or "other"."""
    return next((kind for kind, tests in _KINDS if any(test(t) for test in tests)), "other")


def _check_schemas(files: list[str], footers: list[pq.FileMetaData], ignore: set[str] = frozenset()) -> pa.Schema:
    """The common schema of all shards; shards that differ are named, compatible numeric types unified.

    Columns in ``ignore`` (those the user drops) may differ freely.
    """
    base_name = os.path.basename(files[0])
    base = footers[0].schema.to_arrow_schema()
    unified = {f.name: f.type for f in base}
    for path, footer in zip(files[1:], footers[1:]):
        name = os.path.basename(path)
        schema = footer.schema.to_arrow_schema()
        missing = [c for c in base.names if c not in schema.names and c not in ignore]
        extra = [c for c in schema.names if c not in base.names and c not in ignore]
        if missing or extra:
            what = "; ".join(
                s for s in (missing and f"lacks {missing}", extra and f"has extra {extra}") if s
            )
            raise DataError(
                f"shard {name} {what} compared with {base_name}",
                "re-export the table in one job, or drop the differing columns with drop=",
            )
        for field in schema:
            if field.name in ignore or field.name not in unified:
                continue
            have, want = field.type, unified[field.name]
            if have.equals(want):
                continue
            k_have, k_want = _kind(have), _kind(want)
            if "null" in (k_have, k_want):
                unified[field.name] = want if k_have == "null" else have
            elif k_have in NUMERIC_KINDS and k_want in NUMERIC_KINDS:
                warnings.warn(
                    f"column {field.name!r} is {have} in {name} but {want} in {base_name}; both are read as float64",
                    WorkbenchWarning,
                    stacklevel=3,
                )
                unified[field.name] = pa.float64()
            elif k_have != k_want:
                raise DataError(
                    f"column {field.name!r} is {have} in shard {name} but {want} in {base_name}",
                    "re-export the table in one job, or drop the column with drop=",
                )
    return pa.schema([pa.field(n, t) for n, t in unified.items()])


def _null_counts(footers: list[pq.FileMetaData], names: list[str]) -> tuple[dict[str, int | None], int]:
    """Null count per top-level column from row-group statistics (None where statistics are missing)."""
    counts: dict[str, int | None] = {}
    total = sum(f.num_rows for f in footers)
    for name in names:
        n = 0
        for footer in footers:
            index = _leaf_index(footer, name)
            if index is None:
                n = None
                break
            for rg in range(footer.num_row_groups):
                stats = footer.row_group(rg).column(index).statistics
                if stats is None or not stats.has_null_count:
                    n = None
                    break
                n += stats.null_count
            if n is None:
                break
        counts[name] = n
    return counts, total


def _leaf_index(footer: pq.FileMetaData, name: str) -> int | None:
    """Column-chunk index of a flat top-level column (None for nested ones)."""
    for i in range(footer.num_columns):
        if footer.schema.column(i).path == name:
            return i
    return None


def _plan_columns(schema, footers, target, drop, keep_nested, null_counts, total_rows):
    columns: list[_Column] = []
    excluded: dict[str, str] = {}
    unknown_nulls: list[str] = []
    for field in schema:
        name, kind = field.name, _kind(field.type)
        if name == target:
            continue
        if name in drop:
            excluded[name] = "dropped by request"
        elif kind in ("string", "binary"):
            excluded[name] = f"{kind} (id/text column, not a feature)"
        elif kind == "nested":
            if keep_nested:
                columns.append(_Column(name, "nested", pd.ArrowDtype(field.type)))
            else:
                excluded[name] = "REPEATED/STRUCT (not a feature)"
        elif kind == "null" or (null_counts.get(name) is not None and null_counts[name] == total_rows):
            excluded[name] = "all values null"
        elif kind in NUMERIC_KINDS or kind in TEMPORAL_KINDS:
            nulls = null_counts.get(name)
            if nulls is None:
                unknown_nulls.append(name)
            columns.append(_Column(name, kind, _dtype(kind, nulls)))
        else:
            excluded[name] = f"unsupported type {field.type}"
    return columns, excluded, unknown_nulls


def _dtype(kind: str, nulls: int | None) -> str:
    """Feature dtype: integers and booleans stay integral unless they hold nulls (NaN needs float64)."""
    if nulls == 0 and kind == "int":
        return "int64"
    if nulls == 0 and kind == "bool":
        return "int8"
    return "float64"


def _plan_partitions(files, footers, columns, partition_bytes):
    parts, keys = [], []
    wanted = set(columns)
    for path, footer in zip(files, footers):
        leaves = [i for i in range(footer.num_columns) if footer.schema.column(i).path.split(".")[0] in wanted]
        group: list[int] = []
        size = first_row = row = 0
        for rg in range(footer.num_row_groups):
            meta = footer.row_group(rg)
            if meta.num_rows == 0:
                continue
            rg_size = sum(meta.column(i).total_uncompressed_size for i in leaves)
            if group and size + rg_size > partition_bytes:
                parts.append((path, tuple(group), first_row))
                group, size, first_row = [], 0, row
            group.append(rg)
            size += rg_size
            row += meta.num_rows
        if group:
            parts.append((path, tuple(group), first_row))
    for path, groups, _ in parts:
        keys.append(f"{os.path.basename(path)}:{groups[0]}-{groups[-1]}")
    if not parts:
        raise DataError("the export holds no rows", "check that the export query returned data")
    return parts, keys


class _PartitionReader:
    """Reads some row groups of one shard and normalises them (runs on the workers)."""

    def __init__(self, fs, columns: tuple[_Column, ...], target: str, positive, target_kind: str):
        self.fs = fs
        self.columns = columns
        self.target = target
        self.positive = positive
        self.target_kind = target_kind

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
        try:
            table = pq.ParquetFile(_open(self.fs, path)).read_row_groups(list(row_groups), columns=read)
        except (pa.ArrowInvalid, OSError) as exc:
            known = storage_error(exc, path)
            if known is not None:
                raise known from None
            raise DataError(
                f"{os.path.basename(path)} is corrupt ({str(exc).splitlines()[0]})",
                "re-export or remove the file",
            ) from None
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
        if label is not None:
            out[self.target] = _target_to_01(label, self.target_kind, self.positive)
        frame = pd.DataFrame(out, index=index)
        order = [c.name for c in wanted] + labels
        if columns is not None:
            order = [c for c in order if c in columns]
        return frame[order]


def _to_pandas(col: pa.ChunkedArray, c: _Column):
    kind = _kind(col.type)
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


def _bool_value(value) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    return True if text in TRUE_STRINGS else False if text in FALSE_STRINGS else None


def _target_to_01(label: pa.ChunkedArray, kind: str, positive) -> np.ndarray:
    """int8 labels: 1 positive, 0 negative, -1 a value that is neither (reported by the sampler)."""
    if kind == "bool":
        values = label.to_numpy(zero_copy_only=False).astype(bool)
        return (values == (True if positive is None else _bool_value(positive))).astype("int8")
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
