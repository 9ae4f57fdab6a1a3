"""Commands of the sweeps: sweep, sweeps, report, recommend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from dask.utils import format_time

from ..errors import WorkbenchError
from ._app import ClusterOption, RunsDirOption, app
from ._app import echo_progress as _echo_progress

TimeOption = Annotated[
    str, typer.Option("--time", help="Time column to analyse: train_seconds, fit_seconds (DMatrix + train), pipeline_seconds, seconds.")
]
ColumnOption = Annotated[
    Optional[list[str]], typer.Option("--column", help="Read a table's column as one of ours: OURS=THEIRS, e.g. workers=nodes (repeatable).")
]


def _values(text: str, what: str) -> list:
    """A comma-separated list of axis values: numbers and JSON as such, anything else as text."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise WorkbenchError(f"{what} {text!r} lists no values", f"give comma-separated values, e.g. {what} 1,2,4")
    values = []
    for item in items:
        try:
            values.append(json.loads(item))
        except ValueError:
            values.append(item)
    return values


def _columns(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        ours, sep, theirs = pair.partition("=")
        if not sep or not ours or not theirs:
            raise WorkbenchError(f"--column {pair!r} is not OURS=THEIRS", "e.g. --column workers=nodes")
        out[ours.strip()] = theirs.strip()
    return out


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML file, e.g. pipelines/rus_sweep.yaml.")],
    cluster: ClusterOption = None,
    workers: Annotated[Optional[str], typer.Option("--workers", "-w", help="Worker counts, e.g. 1,2,4,8,16 (replaces axes.workers).")] = None,
    nodes: Annotated[Optional[str], typer.Option("--nodes", help="Node counts, e.g. 1,2,4: whole nodes, one job each (replaces axes.nodes).")] = None,
    workers_per_node: Annotated[Optional[int], typer.Option("--workers-per-node", help="Workers on each node of the nodes axis (default: the profile's, else 1).")] = None,
    ratios: Annotated[Optional[str], typer.Option("--ratios", help="RUS ratios, e.g. 1:1,1:10,1:100 (replaces axes.sampling.ratio).")] = None,
    axis: Annotated[Optional[list[str]], typer.Option("--axis", help="Another axis: KEY=V1,V2 with KEY a dotted pipeline key (repeatable).")] = None,
    trials: Annotated[Optional[int], typer.Option("--trials", help="Trials per cell.")] = None,
    timeout: Annotated[Optional[str], typer.Option("--timeout", help="Watchdog per attempt, e.g. 600 or 10m.")] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", help="Attempts after a failed one (not for bad input).")] = None,
    seeds: Annotated[Optional[str], typer.Option("--seeds", help="First seed (trial t gets it + t), or one seed per trial: 0 or 11,12,13.")] = None,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Metrics kept per cell, e.g. roc_auc,pr_auc,recall.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a sweep started before (re-running the same command does too).")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run the cells recorded as failed again.")] = False,
    connect: Annotated[Optional[str], typer.Option("--connect", help="A running cluster (address or connection file); it must be scalable.")] = None,
    report: Annotated[bool, typer.Option("--report", help="Write the report when the sweep ends.")] = False,
    no_reuse: Annotated[bool, typer.Option("--no-reuse", help="Every cell reads and splits its data itself (reuse: false): the full pipeline time of each cell.")] = False,
    runs_dir: RunsDirOption = None,
):
    """Run a sweep: every cell of workers × ratios × trials (or any axis), recorded as it ends; resumable."""
    from ..sweep import run_sweep

    overrides: dict = {}
    if workers:
        overrides["axes.workers"] = _values(workers, "--workers")
    if nodes:
        overrides["axes.nodes"] = _values(nodes, "--nodes")
    if workers_per_node is not None:
        overrides["workers_per_node"] = workers_per_node
    if ratios:
        overrides["axes.sampling.ratio"] = [r.strip() for r in ratios.split(",") if r.strip()]
    for item in axis or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.replace(",", "").strip():
            raise WorkbenchError(f"--axis {item!r} is not KEY=V1,V2", "e.g. --axis model.params.max_depth=4,6,8")
        overrides[f"axes.{key.strip()}"] = _values(text, "--axis")
    for key, value in (("trials", trials), ("timeout", timeout), ("retries", retries)):
        if value is not None:
            overrides[key] = value
    if seeds:
        values = _values(seeds, "--seeds")
        overrides["seeds"] = values[0] if len(values) == 1 else values
    if metrics:
        overrides["metrics"] = [m.strip() for m in metrics.split(",") if m.strip()]
    if no_reuse:
        overrides["reuse"] = False
    say = _echo_progress()  # on the command's clock, like the bars' lines
    if connect:
        from ..cluster import cluster as open_cluster

        with open_cluster(address=connect) as client:
            result = run_sweep(sweep_file, client=client, runs_dir=runs_dir, resume=resume, retry_failed=retry_failed,
                               overrides=overrides, progress=say)
    else:
        result = run_sweep(sweep_file, cluster=cluster, runs_dir=runs_dir, resume=resume, retry_failed=retry_failed,
                           overrides=overrides, progress=say)
    typer.echo(f"sweep {result.sweep_id}: {result.planned} cells; {result.succeeded} succeeded and {result.failed} failed "
               f"in this run, {result.skipped} recorded before; {format_time(result.seconds)} "
               f"({format_time(result.overhead_seconds)} outside the cells)")
    typer.echo(f"  recorded in   {Path(result.runs_dir) / 'runs.sqlite'}")
    if report:
        from ..report import write_report

        written = write_report(result.sweep_id, runs_dir=result.runs_dir)
        typer.echo(f"  report        {written.html}")
    else:
        typer.echo(f"  report        workbench report {result.sweep_id}" + (f" --runs-dir {runs_dir}" if runs_dir else ""))


@app.command("sweeps")
def sweeps_list(runs_dir: RunsDirOption = None):
    """List recorded sweeps, newest first."""
    from ..stores.sweeps import SweepStore

    store = SweepStore(runs_dir)
    rows = store.list()
    if not rows:
        typer.echo(f"no sweeps recorded in {store.database}")
        return
    typer.echo(f"{'sweep':<28} {'planned':>7} {'succeeded':>9} {'failed':>6}  updated (UTC)")
    for row in rows:
        typer.echo(f"{row['id'][:28]:<28} {row['planned']:>7} {row['succeeded']:>9} {row['failed']:>6}  {row['updated_at'][:19]}")


@app.command("report")
def report_command(
    source: Annotated[str, typer.Argument(help="A sweep id (or unique prefix), or a CSV/Parquet table of results.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report directory (default: reports/<sweep id>).")] = None,
    time_column: TimeOption = "train_seconds",
    column: ColumnOption = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level of the Tukey HSD tests.")] = 0.05,
    runs_dir: RunsDirOption = None,
):
    """Write the HTML and Markdown report of a sweep (or of a results table), with PNG figures."""
    from ..report import write_report

    if not 0 < alpha < 1:
        raise WorkbenchError(f"--alpha {alpha} is not between 0 and 1", "e.g. --alpha 0.05")
    written = write_report(source, out, runs_dir=runs_dir, time=time_column, columns=_columns(column), alpha=alpha)
    typer.echo(f"report {written.html}")
    typer.echo(f"       {written.markdown}")
    typer.echo(f"       {len(written.figures)} figures in {written.directory / 'figures'}")


@app.command()
def recommend(
    rows: Annotated[int, typer.Option("--rows", "-n", help="Training rows (after RUS) to plan for.")],
    sweep_id: Annotated[Optional[str], typer.Option("--sweep", help="Sweep whose cells fit the model (default: the latest).")] = None,
    table: Annotated[Optional[Path], typer.Option("--table", help="Fit on a CSV/Parquet table of results instead.")] = None,
    workers: Annotated[Optional[str], typer.Option("--workers", "-w", help="Worker (or, for a sweep over nodes, node) counts to choose from (default: those measured).")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="The cheapest choice may be this much slower than the fastest.")] = 0.10,
    time_column: TimeOption = "train_seconds",
    column: ColumnOption = None,
    runs_dir: RunsDirOption = None,
):
    """Recommend a cluster size for N rows from the Ernest model fitted to a sweep's cells."""
    from ..analysis import fit_ernest, load_results
    from ..analysis import recommend as recommend_workers

    if tolerance < 0:
        raise WorkbenchError(f"--tolerance {tolerance} is negative", "e.g. --tolerance 0.1 for 10 %")
    if table is not None:
        results = load_results(table, columns=_columns(column), time=time_column)
        source = str(table)
    else:
        from ..stores.sweeps import SweepStore

        store = SweepStore(runs_dir)
        if sweep_id is None:
            recorded = store.list()
            if not recorded:
                raise WorkbenchError(f"no sweeps recorded in {store.database}", "run `workbench sweep FILE` first, or give --table")
            sweep_id = recorded[0]["id"]
        results = load_results(sweep_id, runs_dir=runs_dir, columns=_columns(column), time=time_column)
        source = f"sweep {results.attrs['sweep']['id']}"
    candidates = [int(w) for w in _values(workers, "--workers")] if workers else None
    if candidates is not None and any(w < 1 for w in candidates):
        raise WorkbenchError(f"--workers {workers} lists a count below 1", "give worker counts of at least 1")
    model = fit_ernest(results, time_column)
    advice = recommend_workers(model, rows, candidates, tolerance=tolerance)
    q = model.quality()
    unit = results.attrs.get("unit", "workers")  # a sweep over nodes is fitted and advised in nodes
    one = unit[:-1]
    typer.echo(f"Ernest model from {source}: {q['cells']} cells, R² {q['R²']:.3f}, RMSE {q['RMSE (s)']:.3g}s, "
               f"MAPE {q['MAPE (%)']:.1f}%; measured {model.rows_measured[0]:,}-{model.rows_measured[1]:,} rows on "
               f"{', '.join(map(str, model.workers_measured))} {one}(s)")
    t = model.theta
    typer.echo(f"  {time_column} ≈ {t[0]:.4g} + {t[1]:.4g}·rows/{unit} + {t[2]:.4g}·log({unit}) + {t[3]:.4g}·{unit}")
    typer.echo(f"  {unit:>7} {'predicted':>10} {'95% interval':>20} {one + '-s':>9}")
    for row in advice.table.itertuples(index=False):
        mark = " <- fastest" if row.workers == advice.fastest else ""
        mark += " <- cheapest within {:.0%}".format(tolerance) if row.workers == advice.cheapest else ""
        typer.echo(f"  {row.workers:>7} {row[1]:>9.3g}s {f'{row[2]:.3g}-{row[3]:.3g}s':>20} {row[4]:>9.3g}{mark}")
    if not model.rows_measured[0] <= rows <= model.rows_measured[1]:
        typer.echo(f"  note: {rows:,} rows is outside the measured range; the prediction extrapolates")
    typer.echo(f"recommend: {advice.fastest} {one}(s) for {rows:,} rows (fastest); "
               f"{advice.cheapest} {one}(s) is the cheapest within {tolerance:.0%} of it")
