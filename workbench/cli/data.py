"""Data-engineering commands: data cache, data inspect, data export-bigquery, bench-io."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import (
    ClusterOption,
    RunsDirOption,
    WorkersOption,
    app,
    data_app,
    echo_progress,
)

ConnectOption = Annotated[
    Optional[str],
    typer.Option("--connect", help="A running cluster: a scheduler address or the connection file `workbench serve` wrote."),
]


@contextmanager
def _cluster(cluster, workers, connect):
    from ..cluster import cluster as open_cluster

    with (open_cluster(address=connect) if connect else open_cluster(cluster, workers=workers)) as client:
        yield client


@data_app.command("cache")
def data_cache(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file whose data section names the export (and data.cache).")],
    to: Annotated[Optional[Path], typer.Option("--to", help="Cache directory (default: the pipeline's data.cache).")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild even if the cache is up to date.")] = False,
    compressor: Annotated[Optional[str], typer.Option(help="blosc-lz4 (default), blosc-zstd, zstd or none.")] = None,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    connect: ConnectOption = None,
):
    """Normalise a pipeline's export once and keep it as a Zarr feature cache; rebuilt when stale.

    A pipeline whose export does not exist yet (data.synth or data.example) has it written first,
    as `workbench run` would.
    """
    from ..data.cache import COMPRESSORS, build_cache, cache_status, read_cache
    from ..data.ensure import ensure_export, export_missing
    from ..errors import DataError
    from ..pipeline import load_pipeline

    spec = load_pipeline(pipeline)
    data = spec.data
    target = to or data.cache
    if target is None:
        raise DataError(f"{pipeline} names no cache", "add `cache: <directory>` to its data section, or pass --to DIR")
    if data.keep_nested:
        raise DataError("a Zarr cache holds numeric features only, not REPEATED/STRUCT columns",
                        "set data.keep_nested: false")
    if compressor is not None and compressor not in COMPRESSORS:
        raise DataError(f"unknown cache compressor {compressor!r}", f"use one of {', '.join(COMPRESSORS)}")
    say = echo_progress()
    kwargs = dict(drop=data.drop, positive=data.positive, infinite=data.infinite,
                  partition_size=data.partition_size, storage_options=data.storage_options)
    missing = export_missing(data)
    reason = "--rebuild" if rebuild else "no export yet" if missing else cache_status(target, data.path, data.target, **kwargs)
    if reason is None:
        typer.echo(f"cache {target} is up to date with {data.path}")
        return
    with _cluster(cluster, workers, connect) as client:
        ensure_export(data.model_copy(update={"cache": str(target)}), client, say)  # --to is checked too
        say(f"building the cache ({reason})")
        path = build_cache(data.path, target, data.target, compressor=compressor, client=client, progress=say, **kwargs)
    cached = read_cache(path)
    typer.echo(f"cache {path}: {cached.n_rows:,} rows, {len(cached.features)} features, "
               f"{cached.npartitions} partitions (built: {reason})")
    named = data.cache is not None and Path(target) == Path(data.cache)
    typer.echo(f"`workbench run {pipeline}` reads it (data.cache)" if named
               else f"use it: add `cache: {target}` to the data section of {pipeline}")


@data_app.command("inspect")
def data_inspect(
    path: Annotated[str, typer.Argument(help="An export: a file, glob, directory or gs:// / s3:// URL.")],
    target: Annotated[Optional[str], typer.Option("--target", "-t", help="Label column whose class balance to show.")] = None,
    positive: Annotated[Optional[str], typer.Option(help="The positive label value (default: true/1/yes).")] = None,
    drop: Annotated[Optional[list[str]], typer.Option("--drop", help="Columns to leave out of the features.")] = None,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    connect: ConnectOption = None,
):
    """Shards, rows, size, per-column BigQuery / Arrow / feature types, null fractions, class balance."""
    from ..data.summary import format_summary, summarize_export

    with _cluster(cluster, workers, connect) as client:
        summary = summarize_export(path, target=target, positive=positive, drop=drop or (), client=client)
    typer.echo(format_summary(summary))


@data_app.command("export-bigquery")
def data_export_bigquery(
    to: Annotated[str, typer.Option("--to", help="gs://bucket/prefix/ to write the Parquet shards under.")],
    query: Annotated[Optional[str], typer.Option("--query", help="A SELECT statement to export (EXPORT DATA).")] = None,
    table: Annotated[Optional[str], typer.Option("--table", help="project.dataset.table to export (extract job).")] = None,
    project: Annotated[Optional[str], typer.Option(help="Project to run the job in (default: the credentials').")] = None,
    location: Annotated[Optional[str], typer.Option(help="BigQuery location (US, EU, ...).")] = None,
    compression: Annotated[str, typer.Option(help="SNAPPY, GZIP, ZSTD or NONE.")] = "SNAPPY",
    overwrite: Annotated[bool, typer.Option(help="Replace files already under the prefix.")] = False,
    target: Annotated[Optional[str], typer.Option(help="Label column, for the pipeline snippet printed at the end.")] = None,
):
    """Export a query or table from BigQuery to sharded Parquet in Cloud Storage (needs the bigquery extra)."""
    from ..data.export import export_bigquery, training_hint

    say = echo_progress()
    result = export_bigquery(to, query=query, table=table, project=project, location=location,
                             compression=compression, overwrite=overwrite, progress=say)
    typer.echo(f"job {result.job_id}: {len(result.shards)} shard(s) under {result.uri_prefix}")
    for shard in result.shards:
        typer.echo(f"  {shard}")
    typer.echo(training_hint(result, target))


@app.command("bench-io")
def bench_io(
    path: Annotated[Optional[str], typer.Argument(help="An export to measure on (default: a synthetic one).")] = None,
    target: Annotated[str, typer.Option(help="Label column of PATH.")] = "is_miner",
    drop: Annotated[Optional[list[str]], typer.Option("--drop", help="Columns of PATH to leave out.")] = None,
    rows: Annotated[int, typer.Option("--rows", "-n", help="Rows of the synthetic export (without PATH).")] = 400_000,
    out: Annotated[Path, typer.Option("--out", help="Directory for the CSV files and PNG plots.")] = Path("bench-io"),
    work_dir: Annotated[Optional[Path], typer.Option(help="Where to write the format copies (default: a temporary directory).")] = None,
    repeats: Annotated[int, typer.Option(help="Reads per format and grid point (the fastest counts).")] = 2,
    partition_size: Annotated[Optional[list[str]], typer.Option(
        "--partition-size", help="Partition sizes of the throughput grid (repeatable; default: 3 from one row group to a shard).")] = None,
    columns: Annotated[Optional[list[int]], typer.Option(
        "--columns", help="Numbers of selected columns in the throughput grid (repeatable; default: 4, half, all).")] = None,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    connect: ConnectOption = None,
    runs_dir: RunsDirOption = None,
):
    """Write/read time, size and compression of Parquet, Feather, Zarr, CSV and pickle; read throughput model."""
    import os

    from ..benchio import bench_io as run_bench
    from ..benchio import format_report

    say = echo_progress()
    # one single-threaded worker per core by default, so the throughput grid can vary the threads
    workers = workers if workers is not None or connect or cluster else (os.cpu_count() or 1)
    with _cluster(cluster, workers, connect) as client:
        report = run_bench(path, target=target, drop=drop or None, rows=rows, out=out, work_dir=work_dir,
                           repeats=repeats, partition_sizes=tuple(partition_size) if partition_size else None,
                           column_counts=tuple(columns) if columns else None, client=client, runs_dir=runs_dir,
                           progress=say)
    typer.echo(format_report(report))
