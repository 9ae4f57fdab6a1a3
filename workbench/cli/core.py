"""Commands of the first slice: run, data synth, runs, cluster, serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._app import (
    ClusterOption,
    RunsDirOption,
    WorkersOption,
    app,
    cluster_app,
    data_app,
    runs_app,
)
from ._app import echo_progress as _echo_progress


@app.command()
def run(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML file, e.g. pipelines/quickstart.yaml.")],
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    connect: Annotated[
        Optional[str],
        typer.Option("--connect", help="A running cluster: a scheduler address or the connection file `workbench serve` wrote."),
    ] = None,
    runs_dir: RunsDirOption = None,
):
    """Run a pipeline: data → split → RUS → train (any model type) → exact metrics, recorded in the run store."""
    from ..cluster import cluster as open_cluster
    from ..pipeline import load_pipeline, run_pipeline
    from ..view import format_text, run_view

    spec = load_pipeline(pipeline)
    say = _echo_progress()
    say(f"pipeline {spec.name} ({pipeline})")
    if connect:
        with open_cluster(address=connect) as client:
            result = run_pipeline(spec, client=client, runs_dir=runs_dir, progress=say)
    else:
        result = run_pipeline(spec, cluster=cluster, workers=workers, runs_dir=runs_dir, progress=say)
    typer.echo(format_text(run_view(result.record), details=False))


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="A recorded run's id (or prefix), or a model file (.json / .joblib).")],
    data: Annotated[str, typer.Argument(help="The export to score: a Parquet file, glob or directory (fsspec URLs too).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the Parquet files of scores.")] = Path("predictions"),
    target: Annotated[Optional[str], typer.Option(help="Label column, if the data has one (default: the run's).")] = None,
    drop: Annotated[Optional[list[str]], typer.Option(help="Columns not to read (default: the run's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the files in a non-empty OUT.")] = False,
    runs_dir: RunsDirOption = None,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
):
    """Score an export with a trained model, out of core: one Parquet file of scores per partition."""
    from ..cluster import cluster as open_cluster
    from ..pipeline.predict import predict as predict_export

    say = _echo_progress()
    with open_cluster(cluster, workers=workers) as client:
        say(f"scoring {data} with {model}")
        result = predict_export(model, data, out, target=target, drop=drop, runs_dir=runs_dir,
                                overwrite=overwrite, client=client)
    source = f"run {result.run_id} ({result.model})" if result.run_id else result.model
    typer.echo(f"scored {result.rows:,} rows with {source}")
    typer.echo(f"  written to    {result.out}/  (columns: row, score" + (f", {result.target})" if result.metrics else ")"))
    if result.metrics:
        m = result.metrics
        typer.echo(f"  ROC AUC       {m.roc_auc:.4f}  PR AUC {m.pr_auc:.4f}  (exact, the data has labels)")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Argument(help="Output directory for the Parquet shards.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="Number of rows.")] = 1_000_000,
    positive_rate: Annotated[float, typer.Option(help="Fraction of positive (is_miner) rows.")] = 0.005,
    signal: Annotated[float, typer.Option(help="Signal strength: 1.0 gives ROC AUC around 0.9-0.97, 0 none.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    rows_per_shard: Annotated[int, typer.Option(help="Rows per Parquet shard.")] = 250_000,
    table: Annotated[str, typer.Option(help="Shard name prefix.")] = "btc_addresses",
    overwrite: Annotated[bool, typer.Option(help="Replace existing shards in OUT.")] = False,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
):
    """Write a synthetic BigQuery-shaped Bitcoin-address export, generated in parallel on a cluster."""
    from ..cluster import cluster as open_cluster
    from ..data.synth import synth_bitcoin_export

    say = _echo_progress()
    with open_cluster(cluster, workers=workers) as client:
        say(f"generating {rows:,} rows into {out}/")
        files = synth_bitcoin_export(
            out, rows, positive_rate=positive_rate, signal=signal, seed=seed,
            rows_per_shard=rows_per_shard, table=table, client=client, overwrite=overwrite,
        )
    say(f"wrote {len(files)} shard(s)")
    typer.echo(f"{len(files)} shards in {out}/ ({files[0]} … {Path(files[-1]).name})")


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    runs_dir: RunsDirOption = None,
    status: Annotated[Optional[str], typer.Option(help="Only runs with this status.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="At most this many runs.")] = 20,
):
    """List recorded runs, newest first."""
    ctx.obj = {"runs_dir": runs_dir}
    if ctx.invoked_subcommand is not None:
        return
    from ..stores.runs import RunStore
    from ..view import number, run_view

    store = RunStore(runs_dir)
    records = store.list(status=status, limit=limit)
    if not records:
        typer.echo(f"no runs recorded in {store.database}")
        return
    typer.echo(f"{'id':<22} {'name':<18} {'status':<10} {'ROC AUC':>8} {'PR AUC':>8} {'wall time':>10}  created (UTC)")
    for view in map(run_view, records):
        auc, pr = number(view.roc_auc), number(view.pr_auc)
        typer.echo(f"{view.id:<22} {view.name[:18]:<18} {view.status:<10} {auc:>8} {pr:>8} {view.wall_time:>10}  "
                   f"{view.created_at[:19]}")


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole record as JSON.")] = False,
    runs_dir: RunsDirOption = None,
):
    """Show one recorded run."""
    from ..stores.runs import RunStore
    from ..view import format_text, run_view

    record = RunStore(runs_dir or (ctx.obj or {}).get("runs_dir")).get(run_id)
    if as_json:
        typer.echo(json.dumps(record.to_dict(), indent=2))
        return
    typer.echo(format_text(run_view(record)))


@cluster_app.command("show")
def cluster_show(
    profile: Annotated[str, typer.Argument(help="Profile name or YAML path.")] = "local",
    workers: WorkersOption = None,
):
    """Print the cluster a profile would start, without starting it."""
    from ..cluster import describe

    typer.echo(json.dumps(describe(profile, workers=workers), indent=2))


@cluster_app.command("script")
def cluster_script(
    profile: Annotated[str, typer.Argument(help="A slurm, pbs, sge or lsf profile: name or YAML path.")],
    workers: WorkersOption = None,
):
    """Print the job script one worker job would submit, without submitting anything."""
    from ..cluster import job_script

    typer.echo(job_script(profile, workers=workers))


@app.command()
def serve(
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    runs_dir: RunsDirOption = None,
    connection_file: Annotated[
        Path, typer.Option("--connection-file", help="Where to write the scheduler address and TLS credentials (mode 0600).")
    ] = Path("workbench-connection.json"),
):
    """Start a cluster and keep it up until Ctrl-C: dashboard, runs page, and a connection file."""
    from ..serve import serve as serve_cluster

    say = _echo_progress()
    say(f"starting the {cluster or 'local'} cluster" + (f" with {workers} worker(s)" if workers else ""))
    serve_cluster(cluster, workers=workers, runs_dir=runs_dir, connection_file=connection_file,
                  say=lambda line: typer.echo(line))
    say("stopped")


