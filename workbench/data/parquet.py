"""Parquet shards as the workbench sees them before reading any data: files, footers and plans.

Everything here runs on the client and reads only listings and footers, except
:func:`read_row_groups`, which the workers call to read one planned partition. The reader
(:mod:`~workbench.data.bigquery`), ``data inspect`` (:mod:`~workbench.data.summary`) and the cache
(:mod:`~workbench.data.cache`) all find, open and plan an export through these functions, so they
agree on which files an export is, what its schema is and how it is cut into partitions.

- :func:`expand_paths`: a file, glob, directory of shards or a list of them (fsspec URLs too) ->
  the file system and the sorted shard paths;
- :func:`open_file`, :func:`read_footers`, :func:`read_row_groups`: open and read, with one-line
  errors for unreadable shards and object-storage refusals;
- :func:`common_schema`: the schema every shard shares (compatible numeric types unified);
- :func:`arrow_kind`, :func:`null_counts`: what a column is and how many nulls the footers know of;
- :func:`infinite_suspects`: the float columns whose footers show (or cannot rule out) infinities;
- :func:`plan_columns`, :func:`plan_partitions`: which columns become features (and their dtype),
  and which runs of whole row groups make one partition.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, WorkbenchWarning
from .remote import bucket_of, is_remote, missing_bucket_error, storage_error

__all__ = [
    "NUMERIC_KINDS",
    "TEMPORAL_KINDS",
    "Column",
    "Partition",
    "arrow_kind",
    "common_schema",
    "expand_paths",
    "feature_dtype",
    "infinite_suspects",
    "is_local",
    "null_counts",
    "open_file",
    "plan_columns",
    "plan_partitions",
    "read_footer",
    "read_footers",
    "read_row_groups",
]

NUMERIC_KINDS = frozenset({"int", "float", "decimal", "bool"})
TEMPORAL_KINDS = frozenset({"timestamp", "date", "time"})

#: ``(path, row-group indices, index of the partition's first row in its shard)``
Partition = tuple[str, tuple[int, ...], int]


@dataclass(frozen=True)
class Column:
    """A column the reader keeps: its name, :func:`arrow_kind` and the pandas dtype it becomes."""

    name: str
    kind: str  # int | float | decimal | bool | timestamp | date | time | nested
    dtype: object  # "int64" | "int8" | "float64", or a pd.ArrowDtype for a kept nested column


# ---------------------------------------------------------------- files


def expand_paths(path, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """The file system and the sorted shard files ``path`` names.

    ``path`` is a file, a glob (``exports/btc-*.parquet``), a directory of shards (files starting
    with ``_`` or ``.`` are skipped; ``.parquet`` files are preferred when there are any) or a list
    of these. Remote files keep their protocol (``gs://…``). The listing is always fresh.
    """
    paths = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else [os.fspath(path)]
    try:
        fs, _ = fsspec.core.url_to_fs(paths[0], **(storage_options or {}))
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
    if not is_local(fs):
        files = [fs.unstrip_protocol(f) if "://" not in f else f for f in files]
    else:  # a file named as such stays as given; absolute, like a directory's or a glob's: workers may run elsewhere
        files = [fs._strip_protocol(f) for f in files]
    return fs, sorted(set(files))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def open_file(fs: fsspec.AbstractFileSystem, path: str):
    """What pyarrow should open: the path itself for a local file, else an fsspec file object."""
    return path if is_local(fs) else fs.open(path, "rb")


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


# ---------------------------------------------------------------- footers and row groups


def read_footer(fs: fsspec.AbstractFileSystem, path: str) -> pq.FileMetaData:
    """The footer of one shard; a file that is not Parquet is named in a one-line error."""
    try:
        return pq.read_metadata(open_file(fs, path))
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise _unreadable(exc, path, "is not a readable Parquet file",
                          "re-export or remove the file (a truncated upload is the usual cause)") from None


def read_footers(fs: fsspec.AbstractFileSystem, files: list[str]) -> list[pq.FileMetaData]:
    """The footers of ``files``, read in parallel threads (each is a small ranged read)."""
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
        return list(pool.map(lambda f: read_footer(fs, f), files))


def read_row_groups(fs: fsspec.AbstractFileSystem, path: str, row_groups, columns: list[str]) -> pa.Table:
    """``columns`` of some row groups of one shard (on a worker); a corrupt page is a one-line error."""
    try:
        return pq.ParquetFile(open_file(fs, path)).read_row_groups(list(row_groups), columns=list(columns))
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(exc, path, "is corrupt", "re-export or remove the file") from None


def _unreadable(exc: BaseException, path: str, problem: str, fix: str) -> DataError:
    """The storage's own error for ``path`` if it is one (missing bucket, no access), else ``problem``."""
    return storage_error(exc, path) or DataError(
        f"{os.path.basename(path)} {problem} ({str(exc).splitlines()[0]})", fix)


# ---------------------------------------------------------------- schema


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


def arrow_kind(t: pa.DataType) -> str:
    """What the reader does with an Arrow type: bool, int, float, decimal, timestamp, date, time,
    string, binary, null, nested, or "other"."""
    return next((kind for kind, tests in _KINDS if any(test(t) for test in tests)), "other")


def common_schema(files: list[str], footers: list[pq.FileMetaData], ignore=frozenset()) -> pa.Schema:
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
            k_have, k_want = arrow_kind(have), arrow_kind(want)
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


def null_counts(footers: list[pq.FileMetaData], names: list[str]) -> tuple[dict[str, int | None], int]:
    """Null count per top-level column from row-group statistics (None where statistics are
    missing, and for nested columns), and the number of rows of all shards."""
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


def infinite_suspects(footers: list[pq.FileMetaData], names: list[str]) -> list[str]:
    """The columns of ``names`` that may hold +inf or -inf: a row group's min/max statistics are
    infinite, or missing for a row group that is not all null. Parquet writers keep infinities in
    the statistics of float columns (only NaN is left out), so the footers rule out most columns."""
    suspects = []
    for name in names:
        for footer in footers:
            index = _leaf_index(footer, name)
            if index is None or any(_may_be_infinite(footer.row_group(rg), index) for rg in range(footer.num_row_groups)):
                suspects.append(name)
                break
    return suspects


def _may_be_infinite(row_group, index: int) -> bool:
    stats = row_group.column(index).statistics
    if stats is None or not stats.has_min_max:
        return stats is None or not stats.has_null_count or stats.null_count < row_group.num_rows
    try:
        return math.isinf(float(stats.min)) or math.isinf(float(stats.max))
    except (TypeError, ValueError):  # statistics of a type that is not a number
        return True


def _leaf_index(footer: pq.FileMetaData, name: str) -> int | None:
    """Column-chunk index of a flat top-level column (None for nested ones)."""
    for i in range(footer.num_columns):
        if footer.schema.column(i).path == name:
            return i
    return None


# ---------------------------------------------------------------- plans


def plan_columns(
    schema: pa.Schema,
    target: str | None,
    drop,
    keep_nested: bool,
    nulls: dict[str, int | None],
    total_rows: int,
) -> tuple[list[Column], dict[str, str], list[str]]:
    """Which columns the reader keeps, which it leaves out and why, and which need a null count.

    Returns ``(columns, excluded, unknown_nulls)``: the kept :class:`Column` s in schema order
    (the target is not among them), ``{name: reason}`` for the others, and the kept columns whose
    footers hold no null count (their dtype is float64 until a pass over the data says otherwise).
    """
    columns: list[Column] = []
    excluded: dict[str, str] = {}
    unknown_nulls: list[str] = []
    for field in schema:
        name, kind = field.name, arrow_kind(field.type)
        if name == target:
            continue
        if name in drop:
            excluded[name] = "dropped by request"
        elif kind in ("string", "binary"):
            excluded[name] = f"{kind} (id/text column, not a feature)"
        elif kind == "nested":
            if keep_nested:
                columns.append(Column(name, "nested", pd.ArrowDtype(field.type)))
            else:
                excluded[name] = "REPEATED/STRUCT (not a feature)"
        elif kind == "null" or (nulls.get(name) is not None and nulls[name] == total_rows):
            excluded[name] = "all values null"
        elif kind in NUMERIC_KINDS or kind in TEMPORAL_KINDS:
            count = nulls.get(name)
            if count is None:
                unknown_nulls.append(name)
            columns.append(Column(name, kind, feature_dtype(kind, count)))
        else:
            excluded[name] = f"unsupported type {field.type}"
    return columns, excluded, unknown_nulls


def feature_dtype(kind: str, nulls: int | None) -> str:
    """Feature dtype: integers and booleans stay integral unless they hold nulls (NaN needs float64)."""
    if nulls == 0 and kind == "int":
        return "int64"
    if nulls == 0 and kind == "bool":
        return "int8"
    return "float64"


def plan_partitions(
    files: list[str], footers: list[pq.FileMetaData], columns: list[str], partition_bytes: int
) -> tuple[list[Partition], list[str]]:
    """Runs of whole row groups of one shard, each up to ``partition_bytes`` of ``columns``
    uncompressed, and one stable key per partition (``shard-name:first-last`` row group)."""
    parts: list[Partition] = []
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
    if not parts:
        raise DataError("the export holds no rows", "check that the export query returned data")
    keys = [f"{os.path.basename(path)}:{groups[0]}-{groups[-1]}" for path, groups, _ in parts]
    return parts, keys
