"""A Zarr feature cache: the reader's normalisation done once, the features kept ready to load.

:func:`build_cache` runs :func:`~workbench.data.read_bigquery_export` on the workers and writes its
output as a Zarr (v3) group: the feature matrix as one 2-D array (feature × row) per dtype, chunked
along the rows and compressed with Blosc (byte shuffle + LZ4 by default), the int8 target, and
each row's index in its shard. Every partition of the source starts on a chunk boundary
(its rows are followed by unwritten padding up to the next one), so each write task owns whole
chunks, and :func:`read_cache` gives back one Dask partition per source partition with the same
partition keys: split, RUS and training see the same rows in the same places, and the same seed
gives the same model and metrics as reading the Parquet.

The group's attributes record what the cache was made from: every source file with its size and
modification time, the Arrow schema, the reader's arguments and what it did. :func:`cache_status`
compares them with the source as it is now; :func:`cache_export` rebuilds a stale cache instead of
using it. A cache is written to a temporary directory beside its final path and renamed into place
when complete, so a failed or interrupted build leaves no half-written cache behind.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.config
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import zarr
from dask.utils import format_bytes, format_time, parse_bytes
from zarr.codecs import BloscCodec, ZstdCodec

from ..errors import DataError, WorkbenchWarning, free_space, is_disk_full
from ..progress import task as progress_task
from .bigquery import read_bigquery_export
from .dataset import Dataset
from .files import put_in_place, temporary_beside
from .labels import label_counts
from .parquet import expand_paths, open_file

__all__ = [
    "COMPRESSORS",
    "build_cache",
    "write_store",
    "cache_export",
    "cache_status",
    "is_cache",
    "load_dataset",
    "read_cache",
    "refresh_cache",
]

CACHE_FORMAT = 1
DEFAULT_COMPRESSOR = "blosc-lz4"
MAX_CHUNK_ROWS = 1_048_576
ATTRIBUTE = "workbench_cache"

#: Compressors for numeric columns. Blosc splits each chunk into blocks and byte-shuffles them
#: (the high bytes of nearby numbers are alike), which is what makes numeric data compress.
COMPRESSORS: dict[str, Callable[[], list]] = {
    "blosc-lz4": lambda: [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
    "blosc-zstd": lambda: [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")],
    "zstd": lambda: [ZstdCodec(level=3)],
    "none": lambda: [],
}


def build_cache(
    path: str | os.PathLike | list,
    cache: str | os.PathLike,
    target: str,
    *,
    drop: list[str] | tuple[str, ...] = (),
    positive=None,
    infinite: str = "error",
    partition_size: str | int | None = None,
    storage_options: dict | None = None,
    compressor: str | None = None,
    chunk_rows: int | None = None,
    client=None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Read a BigQuery export with :func:`read_bigquery_export` and write it as a Zarr cache.

    The arguments from ``path`` to ``storage_options`` are the reader's. ``cache`` is a local (or
    shared) directory, replaced atomically if it exists. ``compressor`` is one of
    :data:`COMPRESSORS` (default: the Dask setting ``workbench.cache.compressor``). ``chunk_rows``
    is the number of rows per chunk (default: the longest partition, at most
    ``workbench.cache.max_chunk_rows``). The work runs on ``client`` (or the current Dask client).
    Returns the cache's path.
    """
    say = progress or (lambda message: None)
    final = _local_cache_path(cache)
    if compressor is not None and compressor not in COMPRESSORS:
        raise DataError(f"unknown cache compressor {compressor!r}", f"use one of {', '.join(COMPRESSORS)}")
    partition_size = partition_size or dask.config.get("workbench.read.partition_size")
    normalisation = _normalisation(target, drop, positive, partition_size, infinite)
    started = time.perf_counter()
    sources = _fingerprint(path, storage_options)
    data = read_bigquery_export(
        path, target, drop=list(drop), positive=positive, infinite=infinite, partition_size=partition_size,
        storage_options=storage_options,
    )
    say(f"cache: reading {len(sources)} shard(s), {data.npartitions} partition(s) into {final}")
    attrs = {"sources": sources, "schema": _schema(path, storage_options), "normalisation": normalisation}
    lengths = write_store(data, final, compressor=compressor, chunk_rows=chunk_rows, client=client, attrs=attrs)
    say(f"cache: wrote {sum(lengths):,} rows, {len(data.features)} features in "
        f"{format_time(time.perf_counter() - started)} ({format_bytes(disk_usage(final))} on disk)")
    return final


def write_store(
    data: Dataset,
    cache: str | os.PathLike,
    *,
    compressor: str | None = None,
    chunk_rows: int | None = None,
    client=None,
    attrs: dict | None = None,
) -> list[int]:
    """Write the partitions of ``data`` (computed on the workers) as a Zarr cache at ``cache``.

    Written to a temporary directory beside ``cache`` and renamed into place when complete.
    ``attrs`` (sources, schema, normalisation) are recorded with the layout. Returns the number of
    rows of each partition.
    """
    final = _local_cache_path(cache)
    compressor = compressor or dask.config.get("workbench.cache.compressor", DEFAULT_COMPRESSOR)
    if compressor not in COMPRESSORS:
        raise DataError(f"unknown cache compressor {compressor!r}", f"use one of {', '.join(COMPRESSORS)}")
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise DataError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    if final.exists() and _attrs(final) is None and (not final.is_dir() or any(final.iterdir())):
        raise DataError(f"{final} exists and is not a workbench cache",
                        "choose another cache directory, or remove it yourself if it may go")
    counts = label_counts(data)  # one pass over the target column: partition lengths and classes
    lengths = counts.sum(axis=1)
    chunk = int(chunk_rows or max(1, min(int(lengths.max()),
                                         dask.config.get("workbench.cache.max_chunk_rows", MAX_CHUNK_ROWS))))
    starts = np.concatenate([[0], np.cumsum(-(-lengths // chunk) * chunk)])
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(final)
    try:
        _create_store(temporary, data, int(starts[-1]), chunk, compressor)
        write = dask.delayed(_write_partition, pure=False)
        tasks = [
            write(part, str(temporary), data.features, data.target, int(start), int(length))
            for part, start, length in zip(data.frame.to_delayed(), starts[:-1], lengths)
        ]
        written = _compute(tasks, client, f"cache: writing {final.name}")
        if list(written) != [int(n) for n in lengths]:
            raise DataError("the source changed while the cache was being written", "build the cache again")
        layout = {
            "format": CACHE_FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "created_ns": f"{time.time_ns()}-{uuid.uuid4().hex[:8]}",
            "compressor": compressor,
            "chunk_rows": chunk,
            "sources": [],
            "schema": {},
            "normalisation": {},
            **(attrs or {}),
            "target": data.target,
            "features": list(data.features),
            "dtypes": {name: str(dtype) for name, dtype in data.frame.dtypes.items()},
            "partition_keys": list(data.partition_keys),
            "starts": [int(s) for s in starts[:-1]],
            "lengths": [int(n) for n in lengths],
            "class_counts": counts[:, :2].tolist() if not counts[:, 2].any() else None,
            "reader": _jsonable(data.info),
        }
        group = zarr.open_group(str(temporary), mode="r+")
        group.attrs[ATTRIBUTE] = layout
        put_in_place(temporary, final)
    except BaseException as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        if is_disk_full(exc):
            raise _disk_full(final) from None
        raise
    return [int(n) for n in lengths]


def _disk_full(final: Path) -> DataError:
    kept = "; the cache there is unchanged" if _attrs(final) is not None else ""
    return DataError(f"no space left in {final.parent} for the cache {final.name} ({free_space(final.parent)} free"
                     f" after removing the partial build){kept}",
                     "free space there, or build the cache on a larger disk (--to DIR, or data.cache)")


def read_cache(cache: str | os.PathLike, *, columns: list[str] | None = None) -> Dataset:
    """Open a Zarr cache as a lazy :class:`Dataset` with the source's partitions and keys.

    ``columns`` keeps only those features. Raises ``DataError`` if ``cache`` is not a cache.
    """
    path = _local_cache_path(cache)
    attrs = _attrs(path)
    if attrs is None:
        raise DataError(f"{path} is not a workbench Zarr cache", "build one with `workbench data cache PIPELINE`")
    features = tuple(attrs["features"])
    if columns is not None:
        unknown = [c for c in columns if c not in features]
        if unknown:
            raise DataError(f"columns {unknown} are not features of the cache", f"features are: {', '.join(features)}")
        features = tuple(c for c in features if c in columns)
    dtypes = {name: attrs["dtypes"][name] for name in (*features, attrs["target"])}
    reader = _CacheReader(str(path), dtypes, attrs["target"], attrs["created_ns"])
    parts = list(zip(attrs["starts"], attrs["lengths"]))
    frame = dd.from_map(reader, parts, meta=reader.meta(), label="read-zarr-cache", enforce_metadata=False)
    counts = attrs.get("class_counts")
    info = {**attrs["reader"], "cache": str(path), "cache_created": attrs["created"]}
    return Dataset(
        frame=frame, target=attrs["target"], features=features, partition_keys=tuple(attrs["partition_keys"]),
        class_counts=None if counts is None else np.asarray(counts, dtype="int64"), info=info,
    )


def cache_status(
    cache: str | os.PathLike,
    path: str | os.PathLike | list,
    target: str,
    *,
    drop=(),
    positive=None,
    infinite: str = "error",
    partition_size: str | int | None = None,
    storage_options: dict | None = None,
) -> str | None:
    """Why the cache at ``cache`` cannot stand in for this read of ``path`` now, or ``None`` if it can.

    Compares the source files' names, sizes and modification times and the reader's arguments with
    what the cache recorded; lists the source but reads no data. A source that cannot be listed
    raises :class:`~workbench.errors.DataError`, with or without a cache.
    """
    final = _local_cache_path(cache)
    now = {s["path"]: s for s in _fingerprint(path, storage_options)}
    attrs = _attrs(final)
    if attrs is None:
        return f"no cache at {final}" if not final.exists() else f"{final} is not a workbench cache"
    if attrs.get("format") != CACHE_FORMAT:
        return f"the cache has format {attrs.get('format')}, this workbench writes {CACHE_FORMAT}"
    partition_size = partition_size or dask.config.get("workbench.read.partition_size")
    wanted = {**_NORMALISATION_DEFAULTS, **_normalisation(target, drop, positive, partition_size, infinite)}
    recorded = {**_NORMALISATION_DEFAULTS, **attrs["normalisation"]}
    changed = [k for k in wanted if wanted[k] != recorded.get(k)]
    if changed:
        k = changed[0]
        return f"{k} changed ({recorded.get(k)!r} -> {wanted[k]!r})"
    then = {s["path"]: s for s in attrs["sources"]}
    added, removed = sorted(set(now) - set(then)), sorted(set(then) - set(now))
    if added or removed:
        what = "; ".join(x for x in (added and f"new shard(s) {_short(added)}", removed and f"shard(s) gone {_short(removed)}") if x)
        return f"the source changed: {what}"
    for name, entry in now.items():
        old = then[name]
        if entry["size"] != old["size"] or entry["modified"] != old["modified"] or entry.get("version") != old.get("version"):
            return (f"the source changed: {os.path.basename(name)} is now {entry['size']:,} bytes modified "
                    f"{_when(entry['modified'])} (cached: {old['size']:,} bytes modified {_when(old['modified'])})")
    return None


def cache_export(
    path: str | os.PathLike | list,
    cache: str | os.PathLike,
    target: str,
    *,
    drop=(),
    positive=None,
    infinite: str = "error",
    partition_size: str | int | None = None,
    storage_options: dict | None = None,
    compressor: str | None = None,
    rebuild: bool = False,
    client=None,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """The export at ``path`` read through the cache at ``cache``: built if missing or stale, then read.

    With ``rebuild=True`` the cache is rebuilt even if it is up to date.
    """
    say = progress or (lambda message: None)
    kwargs = dict(drop=drop, positive=positive, infinite=infinite, partition_size=partition_size,
                  storage_options=storage_options)
    reason = "rebuild requested" if rebuild else cache_status(cache, path, target, **kwargs)
    if reason is not None:
        say(f"cache: building ({reason})")
        build_cache(path, cache, target, compressor=compressor, client=client, progress=say, **kwargs)
    else:
        say(f"cache: {cache} is up to date")
    data = read_cache(cache)
    return data.with_frame(data.frame, data.class_counts, cache_built=reason is not None, cache_reason=reason)


def is_cache(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a local directory holding a workbench Zarr cache."""
    if isinstance(path, (list, tuple)) or "://" in os.fspath(path):
        return False
    return _attrs(Path(path)) is not None


def load_dataset(data_spec, client=None, progress: Callable[[str], None] | None = None) -> Dataset:
    """The :class:`Dataset` a pipeline's ``data:`` section names: through its cache, or from Parquet.

    ``data.cache`` set: the cache is built or rebuilt as needed and read (:func:`cache_export`).
    ``data.path`` a cache directory: read directly. Otherwise the Parquet export is read.
    """
    partition_size = data_spec.partition_size or dask.config.get("workbench.read.partition_size")
    if getattr(data_spec, "cache", None):
        if data_spec.keep_nested:
            raise DataError("a Zarr cache holds numeric features only, not REPEATED/STRUCT columns",
                            "set data.keep_nested: false or remove data.cache")
        return cache_export(
            data_spec.path, data_spec.cache, data_spec.target, drop=data_spec.drop, positive=data_spec.positive,
            infinite=getattr(data_spec, "infinite", "error"), partition_size=partition_size, storage_options=data_spec.storage_options, client=client,
            progress=progress,
        )
    if is_cache(data_spec.path):
        data = read_cache(data_spec.path)
        if data.target != data_spec.target:
            raise DataError(f"the cache at {data_spec.path} has target {data.target!r}, not {data_spec.target!r}",
                            "build a cache for this target (data.cache) or fix data.target")
        return refresh_cache(data_spec.path, storage_options=data_spec.storage_options, client=client,
                             progress=progress)
    return read_bigquery_export(
        data_spec.path, data_spec.target, drop=data_spec.drop, positive=data_spec.positive,
        keep_nested=data_spec.keep_nested, infinite=getattr(data_spec, "infinite", "error"),
        partition_size=partition_size,
        storage_options=data_spec.storage_options,
    )


def refresh_cache(cache: str | os.PathLike, *, storage_options: dict | None = None, client=None,
                  progress: Callable[[str], None] | None = None) -> Dataset:
    """A cache named on its own, checked against the source it recorded and rebuilt from it if stale.

    When the source cannot be listed any more (moved, no credentials here) the cache is used as it
    is, with a warning that says so.
    """
    attrs = _attrs(_local_cache_path(cache))
    sources = attrs["reader"].get("source") or []
    norm = attrs["normalisation"]
    if not sources or not norm:  # written by bench-io or by hand: nothing to check against
        return read_cache(cache)
    source = sources if len(sources) > 1 else sources[0]
    kwargs = dict(drop=norm["drop"], positive=norm["positive"], infinite=norm.get("infinite", "error"),
                  partition_size=norm["partition_size"],
                  storage_options=storage_options)
    try:
        reason = cache_status(cache, source, norm["target"], **kwargs)
    except DataError as exc:
        warnings.warn(f"cannot check the cache {cache} against its source ({exc.problem}); using it as it is",
                      WorkbenchWarning, stacklevel=2)
        return read_cache(cache)
    if reason is None:
        return read_cache(cache)
    say = progress or (lambda message: None)
    say(f"cache: {cache} is stale ({reason}); rebuilding it from its source")
    data = cache_export(source, cache, norm["target"], rebuild=True, client=client, progress=progress,
                        compressor=attrs.get("compressor"), **kwargs)
    return data.with_frame(data.frame, data.class_counts, cache_reason=reason)


# ---------------------------------------------------------------- writing


def _groups(data: Dataset) -> dict[str, list[str]]:
    """Feature names by dtype, in model order within each: one 2-D array per dtype."""
    groups: dict[str, list[str]] = {}
    for name in data.features:
        groups.setdefault(str(np.dtype(data.frame.dtypes[name])), []).append(name)
    return groups


def _create_store(directory: Path, data: Dataset, rows: int, chunk: int, compressor: str) -> None:
    group = zarr.open_group(str(directory), mode="w")
    features = group.create_group("features")
    for dtype, names in _groups(data).items():
        # (feature, row): each chunk holds every feature of a run of rows, one feature's values
        # contiguous, so Blosc's byte shuffle sees like numbers side by side
        features.create_array(
            dtype, shape=(len(names), rows), chunks=(len(names), chunk), dtype=dtype,
            compressors=COMPRESSORS[compressor](), fill_value=0, attributes={"names": names},
            dimension_names=["feature", "row"],
        )
    for name, dtype in (("target", "int8"), ("row", "int64")):
        group.create_array(
            name, shape=(rows,), chunks=(chunk,), dtype=dtype, compressors=COMPRESSORS[compressor](),
            fill_value=0, dimension_names=["row"],
        )


def _write_partition(frame: pd.DataFrame, directory: str, features, target: str, start: int, length: int) -> int:
    """Write one partition into rows ``[start, start + len(frame))`` of every array (on a worker)."""
    if len(frame) != length:
        return len(frame)
    if not length:
        return 0
    stop = start + length
    try:
        group = zarr.open_group(directory, mode="r+")
        for dtype, array in group["features"].arrays():
            names = array.attrs["names"]
            array[:, start:stop] = np.ascontiguousarray(frame[names].to_numpy(dtype=dtype).T)
        group["target"][start:stop] = frame[target].to_numpy(dtype="int8")
        group["row"][start:stop] = frame.index.to_numpy(dtype="int64")
    except OSError as exc:  # raised here as a workbench error: the client reports it, the worker logs nothing
        if is_disk_full(exc):
            raise DataError(f"no space left in {os.path.dirname(directory)} while writing the cache",
                            "free space there, or build the cache on a larger disk") from None
        raise
    return length


def _compute(tasks: list, client, description: str) -> list:
    """The results of ``tasks`` in order, reporting each finished one (on ``client``, else with Dask's default scheduler)."""
    with progress_task(description, len(tasks)) as bar:
        if client is None:
            results = list(dask.compute(*tasks))
            bar.advance(len(tasks))
            return results
        from distributed import as_completed

        futures = client.compute(tasks)
        try:
            for _ in as_completed(futures):
                bar.advance()
            return client.gather(futures)
        finally:
            client.cancel(futures)


# ---------------------------------------------------------------- reading


class _CacheReader:
    """Reads rows ``[start, start + length)`` of a cache's arrays into a DataFrame (on the workers)."""

    def __init__(self, directory: str, dtypes: dict[str, str], target: str, token: str):
        self.directory = directory
        self.dtypes = dtypes
        self.target = target
        self.token = token  # the build's timestamp: a rebuilt cache is opened afresh

    def meta(self) -> pd.DataFrame:
        data = {name: pd.Series([], dtype=dtype) for name, dtype in self.dtypes.items()}
        return pd.DataFrame(data, index=pd.RangeIndex(0, name="row"))

    def __call__(self, part, columns=None) -> pd.DataFrame:
        start, length = part
        stop = start + length
        wanted = [n for n in self.dtypes if columns is None or n in columns]
        try:
            arrays, target, rows = _open_arrays(self.directory, self.token)
            index = pd.Index(rows[start:stop], name="row")
            pieces = []
            for array, names in arrays:
                positions = [i for i, n in enumerate(names) if n in wanted]
                if not positions:
                    continue
                block = array[:, start:stop] if len(positions) == len(names) else array.get_orthogonal_selection(
                    (positions, slice(start, stop)))
                # (feature, row) in C order is exactly a pandas block: the frame wraps it, no copy
                pieces.append(pd.DataFrame(block.T, columns=[names[i] for i in positions], index=index, copy=False))
            if self.target in wanted:
                pieces.append(pd.DataFrame({self.target: target[start:stop]}, index=index))
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise DataError(f"the cache at {self.directory} is incomplete or corrupt ({exc})",
                            "rebuild it with `workbench data cache PIPELINE --rebuild`") from None
        if not pieces:
            return pd.DataFrame(index=index)
        return pd.concat(pieces, axis=1)[wanted]


@functools.lru_cache(maxsize=16)
def _open_arrays(directory: str, token: str):
    group = zarr.open_group(directory, mode="r")
    arrays = [(array, list(array.attrs["names"])) for _, array in group["features"].arrays()]
    return arrays, group["target"], group["row"]


def _attrs(path: Path) -> dict | None:
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    return attrs.get(ATTRIBUTE)


# ---------------------------------------------------------------- provenance


#: Reader arguments recorded only when they differ from these (caches written before them hold the default).
_NORMALISATION_DEFAULTS = {"infinite": "error"}


def _normalisation(target, drop, positive, partition_size, infinite="error") -> dict:
    recorded = {
        "target": target,
        "drop": sorted(drop),
        "positive": positive,
        "partition_size": int(parse_bytes(partition_size)) if isinstance(partition_size, str) else int(partition_size),
        "infinite": infinite,
    }
    return {k: v for k, v in recorded.items() if _NORMALISATION_DEFAULTS.get(k, object()) != v}


def _fingerprint(path, storage_options) -> list[dict]:
    """Every source file with its size and modification time (or its store's version tag)."""
    fs, files = expand_paths(path, storage_options)  # always a fresh listing

    def entry(name: str) -> dict:
        info = fs.info(name)
        modified = next((info[k] for k in ("mtime", "updated", "LastModified", "last_modified", "created")
                         if info.get(k) is not None), None)
        if hasattr(modified, "timestamp"):
            modified = modified.timestamp()
        # object stores also give a content tag, which changes even within the same second
        version = next((info[k] for k in ("ETag", "etag", "generation", "md5Hash", "crc32c") if info.get(k)), None)
        entry = {"path": str(name), "size": int(info.get("size") or 0), "modified": _jsonable(modified)}
        return {**entry, "version": _jsonable(version)} if version is not None else entry

    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
        return list(pool.map(entry, files))


def _schema(path, storage_options) -> dict[str, str]:
    fs, files = expand_paths(path, storage_options)
    schema = pq.read_schema(open_file(fs, files[0]))
    return {field.name: str(field.type) for field in schema}


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _local_cache_path(cache) -> Path:
    text = os.fspath(cache)
    if "://" in text and not text.startswith("file://"):
        raise DataError(
            f"the cache {text!r} is not a local path",
            "put the cache on a local or shared file system the workers can all reach",
        )
    return Path(text.removeprefix("file://")).expanduser().absolute()


def disk_usage(path: Path) -> int:
    """Bytes of every file below ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _when(modified) -> str:
    if isinstance(modified, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(modified)) + f".{int(modified % 1 * 1000):03d} UTC"
    return str(modified)


def _short(names: list[str]) -> str:
    shown = ", ".join(os.path.basename(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
