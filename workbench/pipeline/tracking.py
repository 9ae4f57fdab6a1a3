"""A pipeline file's ``tracking:`` section: the run exported to MLflow when it ends.

``tracking: {mlflow: URI}`` (and optionally ``experiment:``) has :func:`run_pipeline` export the
run, succeeded or failed, through :mod:`workbench.stores.mlflow_export`. MLflow and the URI are
checked before the cluster starts; an export that fails at the end is one warning line, and the run
stays recorded in the run store (``workbench runs export`` exports it later).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import WorkbenchWarning
from ..stores.mlflow_export import check_tracking, export_runs
from ..stores.runs import RunStore, describe_error

__all__ = ["check_tracked", "exported_when_done"]


def check_tracked(spec) -> None:
    """MLflow installed and the file's URI one MLflow accepts, or a one-line error before anything runs."""
    if spec.tracking is not None:
        check_tracking(spec.tracking.mlflow)


@contextmanager
def exported_when_done(spec, store: RunStore, say: Callable[[str], None]) -> Iterator[Callable[[object], None]]:
    """Yields ``track(run)``; when the block ends (the run succeeded, or failed with an exception
    that is not an interrupt) the tracked run is exported to the file's MLflow URI."""
    runs: list = []
    try:
        yield runs.append
    except Exception:
        _export(spec, store, runs, say)
        raise
    _export(spec, store, runs, say)


def _export(spec, store: RunStore, runs: list, say: Callable[[str], None]) -> None:
    if spec.tracking is None or not runs:
        return
    uri, run_id = spec.tracking.mlflow, runs[-1].id
    try:
        (exported,) = export_runs([run_id], uri, runs_dir=store.directory, experiment=spec.tracking.experiment)
    except Exception as exc:  # noqa: BLE001 - whatever MLflow raised, the run stays recorded
        warnings.warn(WorkbenchWarning(
            f"run {run_id} is recorded in {store.database} but was not exported to MLflow ({describe_error(exc)}); "
            f"export it later with `workbench runs export --mlflow {uri} {run_id}`"), stacklevel=2)
        return
    say(f"mlflow: {exported.describe()}")
