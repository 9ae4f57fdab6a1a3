"""``workbench bench-io``: which storage format loads a feature table fastest, measured on the cluster.

The normalised features of an export (or of a synthetic one) are held in the workers' memory, then
written in each format, one file per partition by a task on the worker that holds it (Zarr: one
store, each partition in its own chunks), and read back into the workers' memory. Recorded for each
format: write time, read time, size on disk and compression ratio (bytes in memory / bytes on disk).

Then read throughput (MiB of features per second into worker memory) is measured over a grid of
partition size × selected columns × worker threads, reading the Parquet copy through
:func:`~workbench.data.read_bigquery_export`, and an ordinary least-squares regression of
throughput on the three parameters is fitted (statsmodels), coefficients and R² reported.

Results: a table, ``formats.csv``, ``throughput.csv``, ``regression.csv``, ``formats.png`` and
``throughput.png`` in ``out``, and a run in the run store (``workbench runs``) with those files as
artifacts.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
from dask.utils import parse_bytes

from .cluster import cluster_summary
from .data.bigquery import read_bigquery_export
from .data.cache import disk_usage, read_cache, write_store
from .data.dataset import Dataset
from .data.synth import synth_bitcoin_export
from .errors import DataError, WorkbenchWarning
from .progress import track
from .stores.runs import RunStore, versions

__all__ = ["FORMATS", "BenchReport", "bench_io", "format_report"]


@dataclass(frozen=True)
class Format:
    name: str
    kind: str  # parquet | feather | ipc | zarr | csv | pickle
    options: dict = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        return {"parquet": ".parquet", "feather": ".feather", "ipc": ".arrow", "csv": ".csv", "pickle": ".pkl"}.get(self.kind, "")


SMALL_ROW_GROUP, LARGE_ROW_GROUP = 16_384, 1_048_576

FORMATS = (
    Format("parquet-snappy-rg16k", "parquet", {"compression": "snappy", "row_group_size": SMALL_ROW_GROUP}),
    Format("parquet-snappy-rg1m", "parquet", {"compression": "snappy", "row_group_size": LARGE_ROW_GROUP}),
    Format("parquet-zstd-rg1m", "parquet", {"compression": "zstd", "row_group_size": LARGE_ROW_GROUP}),
    Format("parquet-gzip-rg1m", "parquet", {"compression": "gzip", "row_group_size": LARGE_ROW_GROUP}),
    Format("feather-lz4", "feather", {"compression": "lz4"}),
    Format("arrow-ipc", "ipc", {}),
    Format("zarr-blosc-lz4", "zarr", {"compressor": "blosc-lz4"}),
    Format("zarr-blosc-zstd", "zarr", {"compressor": "blosc-zstd"}),
    Format("csv", "csv", {}),
    Format("pickle", "pickle", {}),
)
THROUGHPUT_SOURCE = "parquet-snappy-rg16k"


@dataclass
class BenchReport:
    formats: pd.DataFrame
    throughput: pd.DataFrame
    regression: pd.DataFrame
    r2: float
    rows: int
    features: int
    memory_bytes: int
    files: dict[str, Path]
    run_id: str | None = None


def bench_io(
    path: str | os.PathLike | None = None,
    *,
    target: str = "is_miner",
    drop=None,
    rows: int = 400_000,
    out: str | os.PathLike = "bench-io",
    work_dir: str | os.PathLike | None = None,
    repeats: int = 2,
    formats: tuple[Format, ...] | None = None,
    partition_sizes: tuple[str, ...] | None = None,
    column_counts: tuple[int, ...] | None = None,
    client=None,
    runs_dir: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Measure the storage formats on ``path`` (default: a synthetic export of ``rows`` rows).

    ``drop`` lists columns of the export to leave out (default: the synthetic export's ``address``
    id without ``path``, none with it).

    Each read is done ``repeats`` times and the fastest counts (the first read of a format in a
    worker process also pays for opening its library). ``work_dir`` holds the copies (default: a temporary directory, removed afterwards); it must be
    visible to the workers. ``partition_sizes`` and ``column_counts`` set the throughput grid
    (default: three sizes from one small row group to most of a shard, and 4 / half / all features);
    the thread levels are 1 .. the cluster's threads, by using that many single-threaded workers
    (or the workers whose threads add up to it).
    """
    from distributed import get_client

    client = client or get_client()
    say = progress or (lambda message: None)
    if repeats < 1:
        raise DataError(f"repeats must be >= 1, got {repeats}")
    formats = formats or FORMATS
    drop = tuple(drop) if drop is not None else (("address",) if path is None else ())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    temporary = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="workbench-bench-io-")) if temporary else Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    store = RunStore(runs_dir)
    spec = {"path": None if path is None else str(path), "target": target, "drop": list(drop), "rows": rows,
            "repeats": repeats, "formats": [f.name for f in formats]}
    try:
        with store.start("bench-io", spec=spec, seeds={"synth": 0}, versions=versions(),
                         cluster={k: v for k, v in cluster_summary(client).items() if k != "dashboard"}) as run:
            if path is None:
                path = work / "source"
                say(f"bench-io: generating a synthetic export of {rows:,} rows")
                synth_bitcoin_export(path, rows, rows_per_shard=max(1, min(250_000, rows // 4 or 1)), client=client)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", WorkbenchWarning)
                data = read_bigquery_export(path, target, drop=list(drop))
            client.run(lambda: __import__("workbench.data.cache") and None)  # zarr's import costs no format
            data = data.persist(client)
            memory = int(sum(client.compute(data.frame.map_partitions(
                lambda df: pd.Series([int(df.memory_usage(index=True, deep=True).sum())]), meta=pd.Series([], dtype="int64")),
                sync=True)))
            n_rows = int(len(data.frame))
            say(f"bench-io: {n_rows:,} rows x {len(data.features)} features in worker memory "
                f"({memory / 2**20:.1f} MiB), {data.npartitions} partitions")

            table = []
            for fmt in track(formats, "bench-io: writing and reading each format"):
                target_dir = work / fmt.name
                shutil.rmtree(target_dir, ignore_errors=True)
                target_dir.mkdir(parents=True)
                started = time.perf_counter()
                written = _write(fmt, data, target_dir, client)
                write_seconds = time.perf_counter() - started
                read_seconds = min(_timed_read(fmt, written, data, client) for _ in range(repeats))
                size = disk_usage(target_dir)
                table.append({
                    "format": fmt.name, "write_s": write_seconds, "read_s": read_seconds, "size_mib": size / 2**20,
                    "compression_ratio": memory / size if size else float("nan"),
                    "read_mib_s": memory / 2**20 / read_seconds if read_seconds else float("nan"),
                })
                run.log_timing(f"write {fmt.name}", write_seconds)
                run.log_timing(f"read {fmt.name}", read_seconds)
                say(f"bench-io: {fmt.name}: write {write_seconds:.2f}s, read {read_seconds:.2f}s, "
                    f"{size / 2**20:.1f} MiB on disk")
            formats_frame = pd.DataFrame(table)

            source = work / THROUGHPUT_SOURCE
            if not source.exists():
                _write(FORMATS[0], data, source, client)
            grid = _throughput(source, target, data, client, partition_sizes, column_counts, repeats, say)
            regression, r2 = _regression(grid)
            client.cancel(data.frame)

            files = _save(out, formats_frame, grid, regression, r2)
            for name, file in files.items():
                run.save_artifact(name, file.name, lambda p, file=file: shutil.copyfile(file, p))
            run.log_data(rows=n_rows, features=len(data.features), memory_bytes=memory,
                         formats=formats_frame.to_dict("records"), throughput=grid.to_dict("records"),
                         regression=regression.to_dict("records"))
            best = formats_frame.loc[formats_frame["read_s"].idxmin()]
            record = run.succeed({"r2": r2, "fastest_read": best["format"], "fastest_read_s": float(best["read_s"])})
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    return BenchReport(formats=formats_frame, throughput=grid, regression=regression, r2=r2, rows=n_rows,
                       features=len(data.features), memory_bytes=memory, files=files, run_id=record.id)


def format_report(report: BenchReport) -> str:
    lines = [
        f"{report.rows:,} rows x {report.features} features, {report.memory_bytes / 2**20:.1f} MiB in memory",
        "",
        f"{'format':<22} {'write s':>8} {'read s':>8} {'MiB':>8} {'ratio':>7} {'read MiB/s':>11}",
    ]
    for r in report.formats.itertuples():
        lines.append(f"{r.format:<22} {r.write_s:>8.2f} {r.read_s:>8.2f} {r.size_mib:>8.1f} "
                     f"{r.compression_ratio:>7.2f} {r.read_mib_s:>11.1f}")
    lines += ["", f"read throughput ({THROUGHPUT_SOURCE} through the reader), {len(report.throughput)} reads:",
              f"{'partition MiB':>13} {'columns':>8} {'threads':>8} {'MiB/s':>8}"]
    for r in report.throughput.itertuples():
        lines.append(f"{r.partition_mib:>13.2f} {r.columns:>8d} {r.threads:>8d} {r.mib_s:>8.1f}")
    lines += ["", f"OLS: MiB/s ~ partition_mib + columns + threads   (R² = {report.r2:.3f})"]
    for r in report.regression.itertuples():
        lines.append(f"  {r.term:<14} {r.coefficient:>10.3f}  (std err {r.std_err:.3f}, p {r.p_value:.3g})")
    lines += ["", "files: " + ", ".join(str(p) for p in report.files.values())]
    if report.run_id:
        lines.append(f"recorded as run {report.run_id}")
    return "\n".join(lines)


# ---------------------------------------------------------------- writing and reading


def _write(fmt: Format, data: Dataset, directory: Path, client) -> list[str]:
    if fmt.kind == "zarr":
        write_store(data, directory / "store.zarr", compressor=fmt.options["compressor"], client=client)
        return [str(directory / "store.zarr")]
    write = dask.delayed(_write_part, pure=False)
    tasks = [write(part, str(directory / f"part-{i:05d}{fmt.suffix}"), fmt.kind, fmt.options)
             for i, part in enumerate(data.frame.to_delayed())]
    return list(client.compute(tasks, sync=True))


def _write_part(frame: pd.DataFrame, path: str, kind: str, options: dict) -> str:
    """Write one partition (on a worker)."""
    if kind == "parquet":
        pq.write_table(pa.Table.from_pandas(frame), path, **options)
    elif kind == "feather":
        feather.write_feather(frame, path, compression=options.get("compression"))
    elif kind == "ipc":
        table = pa.Table.from_pandas(frame)
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    elif kind == "csv":
        frame.to_csv(path)
    elif kind == "pickle":
        frame.to_pickle(path)
    else:
        raise ValueError(kind)
    return path


def _read_part(path: str, kind: str, dtypes: dict) -> pd.DataFrame:
    """Read one file back into a DataFrame (on a worker)."""
    if kind == "parquet":
        return pq.read_table(path).to_pandas()
    if kind == "feather":
        return feather.read_feather(path)
    if kind == "ipc":
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).read_all().to_pandas()
    if kind == "csv":
        return pd.read_csv(path, index_col="row", dtype=dtypes)
    if kind == "pickle":
        return pd.read_pickle(path)
    raise ValueError(kind)


def _timed_read(fmt: Format, written: list[str], data: Dataset, client) -> float:
    if fmt.kind == "zarr":
        frame = read_cache(written[0]).frame
    else:
        dtypes = {name: str(dtype) for name, dtype in data.frame.dtypes.items()}
        frame = dd.from_map(_read_part, written, kind=fmt.kind, dtypes=dtypes, meta=data.frame._meta,
                            enforce_metadata=False, label=f"read-{fmt.name}")
    return _persist_seconds(frame, client)


def _persist_seconds(frame: dd.DataFrame, client, workers=None) -> float:
    from distributed import wait

    # A fresh name for every read: the same graph read again would otherwise have the same keys,
    # and find them in memory or collide with their cancellation (the identity fuses into the read).
    frame = frame.map_partitions(_identity, meta=frame._meta, token=f"read-{uuid.uuid4().hex}")
    started = time.perf_counter()
    persisted = client.persist(frame, workers=workers, allow_other_workers=workers is None)
    wait(persisted)
    seconds = time.perf_counter() - started
    client.cancel(persisted)
    return seconds


def _identity(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


# ---------------------------------------------------------------- throughput model


def _throughput(source: Path, target, data: Dataset, client, partition_sizes, column_counts, repeats, say) -> pd.DataFrame:
    features = list(data.features)
    footer = pq.read_metadata(sorted(source.glob("*.parquet"))[0])
    group_bytes = max(1, footer.row_group(0).total_byte_size)
    if partition_sizes is None:
        shard_bytes = sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups))
        sizes = sorted({group_bytes, max(group_bytes, shard_bytes // 4), max(group_bytes, shard_bytes)})
    else:
        sizes = [parse_bytes(s) for s in partition_sizes]
    counts = sorted(set(column_counts or (min(4, len(features)), max(1, len(features) // 2), len(features))))
    workers = client.scheduler_info(n_workers=-1)["workers"]
    by_threads = sorted(workers.items(), key=lambda kv: kv[1]["nthreads"])
    levels = {}
    total = 0
    for address, info in by_threads:  # the first k workers give k levels of parallelism
        total += info["nthreads"]
        levels.setdefault(total, [a for a, _ in by_threads[: by_threads.index((address, info)) + 1]])
    rows = []
    dtypes = data.frame.dtypes
    n_rows = int(len(data.frame))
    grid = list(itertools.product(sizes, counts, sorted(levels.items())))
    for size, n_columns, (threads, addresses) in track(grid, "bench-io: read throughput grid"):
        columns = features[:n_columns]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", WorkbenchWarning)
            ds = read_bigquery_export(source, target, partition_size=int(size))
        frame = ds.frame[[*columns, target]]
        seconds = min(_persist_seconds(frame, client, workers=addresses) for _ in range(repeats))
        mib = n_rows * (sum(np.dtype(dtypes[c]).itemsize for c in columns) + 1 + 8) / 2**20
        rows.append({"partition_mib": size / 2**20, "partitions": ds.npartitions, "columns": n_columns,
                     "threads": threads, "seconds": seconds, "mib_s": mib / seconds})
    say(f"bench-io: throughput grid of {len(rows)} reads done")
    return pd.DataFrame(rows)


def _regression(grid: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    import statsmodels.api as sm

    X = grid[["partition_mib", "columns", "threads"]].astype(float)
    varying = [c for c in X.columns if X[c].nunique() > 1]
    fit = sm.OLS(grid["mib_s"].astype(float), sm.add_constant(X[varying], has_constant="add")).fit()
    terms = ["const", *varying]
    frame = pd.DataFrame({
        "term": terms,
        "coefficient": [float(fit.params[t]) for t in terms],
        "std_err": [float(fit.bse[t]) for t in terms],
        "p_value": [float(fit.pvalues[t]) for t in terms],
    })
    for missing in [c for c in X.columns if c not in varying]:  # a parameter that did not vary
        frame.loc[len(frame)] = [missing, 0.0, float("nan"), float("nan")]
    return frame, float(fit.rsquared)


# ---------------------------------------------------------------- output


def _save(out: Path, formats: pd.DataFrame, grid: pd.DataFrame, regression: pd.DataFrame, r2: float) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {"formats.csv": out / "formats.csv", "throughput.csv": out / "throughput.csv",
             "regression.csv": out / "regression.csv", "formats.png": out / "formats.png",
             "throughput.png": out / "throughput.png"}
    formats.to_csv(files["formats.csv"], index=False)
    grid.to_csv(files["throughput.csv"], index=False)
    regression.assign(r2=r2).to_csv(files["regression.csv"], index=False)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    for ax, column, label in zip(axes, ("write_s", "read_s", "size_mib"), ("write (s)", "read into worker memory (s)", "size on disk (MiB)")):
        ax.barh(formats["format"], formats[column], color="#4c72b0")
        ax.set_xlabel(label)
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    axes[2].set_yticklabels([])
    fig.suptitle("Storage formats: write, read and size")
    fig.tight_layout()
    fig.savefig(files["formats.png"], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True)
    coefficients = dict(zip(regression["term"], regression["coefficient"]))
    for ax, column, label in zip(axes, ("partition_mib", "columns", "threads"),
                                 ("partition size (MiB)", "selected columns", "worker threads")):
        ax.scatter(grid[column], grid["mib_s"], color="#4c72b0")
        xs = np.linspace(grid[column].min(), grid[column].max(), 20)
        others = sum(coefficients.get(c, 0.0) * grid[c].mean() for c in ("partition_mib", "columns", "threads") if c != column)
        ax.plot(xs, coefficients["const"] + others + coefficients.get(column, 0.0) * xs, color="#dd8452",
                label="OLS fit (others at their mean)")
        ax.set_xlabel(label)
    axes[0].set_ylabel("read throughput (MiB/s)")
    axes[0].legend()
    fig.suptitle(f"Read throughput vs parameters (OLS R² = {r2:.3f})")
    fig.tight_layout()
    fig.savefig(files["throughput.png"], dpi=100)
    plt.close(fig)
    return files

