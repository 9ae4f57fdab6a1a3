"""Commands of the first slice: run, data synth, runs, cluster, serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError
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
    model: Annotated[str, typer.Argument(help="A recorded run's id (or prefix), or a model file (.json / .skops).")],
    data: Annotated[str, typer.Argument(help="The export to score: a Parquet file, glob or directory (fsspec URLs too).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the Parquet files of scores.")] = Path("predictions"),
    target: Annotated[Optional[str], typer.Option(help="Label column, if the data has one (default: the run's).")] = None,
    drop: Annotated[Optional[list[str]], typer.Option(help="Columns not to read (default: the run's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the files in a non-empty OUT.")] = False,
    infinite: Annotated[Optional[str], typer.Option(
        help="+inf/-inf in features: error, or missing (read as NaN). Default: the run's data.infinite, else error.")] = None,
    trust: Annotated[bool, typer.Option(
        "--trust", help="Load a pickle/joblib model file, which can run any code it holds: only files you trust.")] = False,
    runs_dir: RunsDirOption = None,
    cluster: ClusterOption = None,
    workers: WorkersOption = None,
    connect: Annotated[
        Optional[str],
        typer.Option("--connect", help="A running cluster: a scheduler address or the connection file `workbench serve` wrote."),
    ] = None,
):
    """Score an export with a trained model, out of core: one Parquet file of scores per partition."""
    from ..cluster import cluster as open_cluster
    from ..data.bigquery import INFINITE
    from ..pipeline.predict import predict as predict_export
    from ..pipeline.predict import resolve_model

    if infinite is not None and infinite not in INFINITE:
        raise ConfigError(f"--infinite {infinite} is not one of {', '.join(INFINITE)}",
                          "give --infinite error or --infinite missing")
    resolve_model(model, runs_dir, trust=trust)  # a failed run or an untrusted file: refused before a cluster starts
    say = _echo_progress()
    with (open_cluster(address=connect) if connect else open_cluster(cluster, workers=workers)) as client:
        say(f"scoring {data} with {model}")
        result = predict_export(model, data, out, target=target, drop=drop, runs_dir=runs_dir,
                                overwrite=overwrite, infinite=infinite, trust=trust, client=client)
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


@runs_app.command("export")
def runs_export(
    ctx: typer.Context,
    run_ids: Annotated[Optional[list[str]], typer.Argument(
        help="Run ids (or unique prefixes); none and no --sweep: every run, sweep cells under their sweep.",
        show_default=False)] = None,
    mlflow: Annotated[str, typer.Option("--mlflow", help="MLflow tracking URI: a database or http://host:port.")]
        = "sqlite:///mlflow.db",
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="A sweep id: a parent run with its cells as children.")]
        = None,
    experiment: Annotated[Optional[str], typer.Option(help="MLflow experiment (default: the pipeline's name).")] = None,
    runs_dir: RunsDirOption = None,
):
    """Export recorded runs to MLflow: parameters, metrics with their steps, tags, artifacts. Again: nothing twice."""
    from ..stores.mlflow_export import export

    exported = export(mlflow, run_ids=run_ids or (), sweep=sweep, runs_dir=runs_dir or (ctx.obj or {}).get("runs_dir"),
                      experiment=experiment)
    for run in exported:
        typer.echo(run.describe())


@cluster_app.command("show")
def cluster_show(
    profile: Annotated[str, typer.Argument(help="Profile name or YAML path.")] = "local",
    workers: WorkersOption = None,
):
    """Print the cluster a profile would start, without starting it."""
    from ..cluster import describe

    typer.echo(json.dumps(describe(profile, workers=workers), indent=2))


# ---- cluster script / cluster submit: a worker job's script, or a whole one-allocation job (slurm-allocation)

CommandArgument = Annotated[
    Optional[list[str]],
    typer.Argument(help="For a slurm-allocation profile, after `--`: the workbench command the job runs, e.g. "
                        "-- run pipelines/quickstart.yaml (default: the profile's command:); "
                        "--cluster PROFILE is added unless given.", show_default=False),
]
NodesOption = Annotated[
    Optional[int], typer.Option("--nodes", "-N", min=1, help="slurm-allocation only: nodes to ask for (overrides nodes:).")
]


@cluster_app.command("script")
def cluster_script(
    profile: Annotated[str, typer.Argument(help="A slurm, pbs, sge, lsf or slurm-allocation profile: name or YAML path.")],
    command: CommandArgument = None,
    workers: WorkersOption = None,
    nodes: NodesOption = None,
):
    """Print the job script a profile submits, without submitting anything: one worker job's, or for a
    slurm-allocation profile the whole job's (scheduler, the command as the client, and the workers)."""
    from ..cluster import job_script

    typer.echo(job_script(profile, workers=workers, command=_allocation_command(command), nodes=nodes).rstrip("\n"))


@cluster_app.command("submit")
def cluster_submit(
    profile: Annotated[str, typer.Argument(help="A slurm-allocation profile: name or YAML path.")],
    command: CommandArgument = None,
    nodes: NodesOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job to end, print the command's output, "
                                                      "exit with its status (Ctrl-C cancels the job).")] = False,
):
    """Submit one SLURM job that runs a workbench command with its scheduler and workers inside it
    (for sites where nothing may keep running on a login node). Runs in the current directory."""
    from ..cluster import allocation, load_profile

    loaded = load_profile(profile)
    if not isinstance(loaded, allocation.AllocationProfile):
        raise ConfigError(f"{profile} is a {loaded.type} profile; `cluster submit` submits {allocation.TYPE} jobs",
                          f"give a {allocation.TYPE} profile, or run the command here with --cluster {profile}")
    workdir = allocation.check_submit_directory()
    args = allocation.job_command(loaded, _allocation_command(command), profile)
    script = allocation.job_script(loaded, args, nodes=nodes, workdir=workdir)
    job_id = allocation.submit(loaded, script, workdir=workdir)
    settings = loaded.settings()
    out = Path(settings["log_directory"]) / f"{settings['job_name']}-{job_id}"
    typer.echo(f"submitted job {job_id}: workbench {' '.join(args)}")
    typer.echo(f"  nodes         {nodes or settings['nodes']} × {settings['workers_per_node']} worker(s), in {workdir}")
    typer.echo(f"  output        {out}.out  (progress and errors: {out}.err)")
    if not wait:
        typer.echo(f"  follow        squeue -j {job_id}; tail -f {out}.err")
        return
    end = allocation.wait_for_job(job_id, say=_echo_progress())
    stdout = Path(end.get("stdout") or f"{out}.out")
    if stdout.is_file() and stdout.read_text().strip():
        typer.echo(stdout.read_text().rstrip("\n"))
    if not end.ok:
        stderr = Path(end.get("stderr") or f"{out}.err")
        lines = stderr.read_text().splitlines() if stderr.is_file() else []
        said = next((line for line in reversed(lines) if line.startswith("error:")), None)
        typer.echo(f"error: job {job_id} failed: {said[len('error: '):]}; read {stderr}" if said else
                   f"error: job {job_id} ended {end['state']} (exit code {end['exit_code']}); read {stderr}", err=True)
        # a workbench error in the job is exit status 2, whatever srun made of the tasks it then stopped
        raise typer.Exit(2 if said else (end["exit_code"] or 1))


def _allocation_command(command: list[str] | None) -> list[str] | None:
    """The job's workbench command, refused in one line unless it is a command that starts a cluster."""
    if not command:
        return None
    args = command[1:] if command[0] == "workbench" else command
    starting = _cluster_commands()
    name = next((n for n in (" ".join(args[:2]), args[0] if args else "") if n in starting), None)
    if name is None:
        raise ConfigError(f"`workbench {' '.join(args[:2]) or '(nothing)'}` starts no cluster, so it cannot be the "
                          "allocation's command", f"give one of: {', '.join(sorted(starting))}")
    return args


def _cluster_commands() -> set[str]:
    """The workbench commands that take --cluster ("run", "sweep", "data synth", ...)."""
    import click

    found: set[str] = set()

    def walk(group, prefix):
        for name, sub in group.commands.items():
            if isinstance(sub, click.Group):
                walk(sub, f"{prefix}{name} ")
            elif any("--cluster" in getattr(p, "opts", ()) for p in sub.params):
                found.add(prefix + name)

    walk(typer.main.get_command(app), "")
    return found


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


