"""The Typer application, its sub-command groups and the options the commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._progress import say as say_line
from ._progress import started as command_started

app = typer.Typer(
    name="workbench",
    help="Out-of-core ML on Dask for imbalanced BigQuery exports: split, RUS, XGBoost, exact AUC, recorded runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Make and inspect datasets.", no_args_is_help=True)
runs_app = typer.Typer(help="List and show recorded runs.", invoke_without_command=True)
cluster_app = typer.Typer(help="Inspect cluster profiles and the job scripts they submit.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")
app.add_typer(cluster_app, name="cluster")

ClusterOption = Annotated[
    Optional[str], typer.Option("--cluster", "-c", help="Cluster profile: a name in ./clusters/, a YAML path, or 'local'.")
]
WorkersOption = Annotated[Optional[int], typer.Option("--workers", "-w", help="Number of workers (overrides the profile).")]
RunsDirOption = Annotated[Optional[Path], typer.Option("--runs-dir", help="Run store directory (default: ./runs).")]


def _print_version(value: bool) -> None:
    if value:
        from ..stores.runs import versions

        typer.echo(" ".join(f"{k} {v}" for k, v in versions().items()))
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (accepted anywhere on the line).")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the versions and exit.", is_eager=True, callback=_print_version)
    ] = False,
):
    """Out-of-core ML on Dask for imbalanced BigQuery exports."""


def echo_progress(started: float | None = None):
    """A progress printer: each line on stderr, prefixed with the seconds since ``started`` (default:
    since the command started), written through the console that draws the progress bars."""
    started = command_started() if started is None else started

    def say(message: str) -> None:
        say_line(message, started)

    return say
