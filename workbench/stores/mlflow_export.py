"""Recorded runs and sweeps exported to MLflow, through MLflow's own client (``MlflowClient``).

A run becomes one MLflow run in the experiment named after its pipeline (see
:mod:`workbench.stores.mlflow_fields` for its parameters, metrics and tags) with every file of its
artifacts; a sweep becomes a parent run (tagged ``workbench.kind = sweep``) whose children are the
runs of its cells (``mlflow.parentRunId``). Exporting again adds nothing twice: the MLflow run of a
workbench run is found again by its ``workbench.run_id`` tag (a sweep's by ``workbench.sweep_id``),
and only what it lacks is logged: parameters it does not have, metric steps it does not have, files
it does not have (or has at another size); tags and the run's status are brought up to date.

MLflow is an optional extra (``pip install 'workbench[mlflow]'``), imported only here and only
when something is exported.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import WorkbenchError
from .mlflow_fields import (
    KIND_TAG,
    RUN_ID_TAG,
    STATUS_OF,
    SWEEP_ID_TAG,
    Series,
    cell_name,
    experiment_of,
    flatten_params,
    millis,
    run_metrics,
    run_name,
    run_params,
    run_tags,
    sweep_status,
    sweep_tags,
)
from .runs import RunRecord, RunStore
from .sweeps import SweepStore

__all__ = ["DEFAULT_URI", "INSTALL", "Exported", "check_tracking", "export", "export_runs", "export_sweep"]

DEFAULT_URI = "sqlite:///mlflow.db"
INSTALL = "pip install 'workbench[mlflow]'"
PARENT_RUN_TAG = "mlflow.parentRunId"
PROBE_SECONDS = 10  # a tracking server that does not answer /health in this time is not there


@dataclass(frozen=True)
class Exported:
    """One MLflow run written (or found up to date) by an export."""

    kind: str  # "run" or "sweep"
    workbench_id: str  # the run id, or the sweep id
    run_id: str  # MLflow's
    experiment: str
    experiment_id: str
    tracking_uri: str
    created: bool
    added: dict = field(default_factory=dict)  # params, metric values, artifacts logged by this export
    parent_run_id: str | None = None

    @property
    def page(self) -> str:
        """The run's page in MLflow's UI for a tracking server, else the tracking URI."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return self.tracking_uri

    def describe(self) -> str:
        what = "new" if self.created else ("updated" if any(self.added.values()) else "unchanged")
        counts = ", ".join(f"{n} {name}" for name, n in self.added.items() if n)
        child = " (child of the sweep's run)" if self.parent_run_id else ""
        return (f"{self.kind} {self.workbench_id} -> MLflow run {self.run_id}{child}, {what}"
                + (f" ({counts})" if counts else "") + f", experiment {self.experiment!r}: {self.page}")


# ---------------------------------------------------------------- the entry points


def check_tracking(uri: str) -> None:
    """Refuse, before anything runs, a missing MLflow or a URI MLflow does not accept."""
    _client(uri, probe=False)


def export(uri: str = DEFAULT_URI, *, run_ids: Iterable[str] = (), sweep: str | None = None,
           runs_dir: str | os.PathLike | None = None, experiment: str | None = None) -> list[Exported]:
    """Export a sweep (a parent run, its cells' runs as children) and runs (ids or unique prefixes);
    with neither, everything the runs directory holds. Every id is resolved before anything is written."""
    run_ids = list(run_ids)
    sweeps = SweepStore(runs_dir)
    records = _records(sweeps.runs, run_ids)
    recorded = [sweeps.get(sweep)] if sweep else []
    if not run_ids and not sweep:
        records = [r for r in reversed(sweeps.runs.list()) if not (r.data.get("sweep") or {}).get("id")]
        recorded = list(reversed(sweeps.list()))  # oldest first, as the runs
        if not records and not recorded:
            raise WorkbenchError(f"no runs recorded in {sweeps.database}",
                                 "run a pipeline first, or give --runs-dir the directory that holds them")
    cells = {s["id"]: [(cell, sweeps.runs.get(cell["run_id"])) for cell in sweeps.cells(s["id"]) if cell["run_id"]]
             for s in recorded}
    exporter = _Exporter(_client(uri), uri, experiment)
    exported = [e for s in recorded for e in exporter.sweep(sweeps, s, cells[s["id"]])]
    done = {e.workbench_id for e in exported if e.kind == "run"}  # a cell's run named too: exported once, as the child
    return exported + [exporter.run(record) for record in records if record.id not in done]


def export_runs(run_ids: Iterable[str], uri: str = DEFAULT_URI, *, runs_dir: str | os.PathLike | None = None,
                experiment: str | None = None) -> list[Exported]:
    """Export these runs (ids or unique prefixes), each on its own."""
    return export(uri, run_ids=list(run_ids), runs_dir=runs_dir, experiment=experiment) if run_ids else []


def export_sweep(sweep_id: str, uri: str = DEFAULT_URI, *, runs_dir: str | os.PathLike | None = None,
                 experiment: str | None = None) -> list[Exported]:
    """Export a sweep: its parent run first, then the run of each recorded cell as its child."""
    return export(uri, sweep=sweep_id, runs_dir=runs_dir, experiment=experiment)


def _records(store: RunStore, run_ids: Iterable[str]) -> list[RunRecord]:
    """The runs of these ids or prefixes, each once, in the order given."""
    return list({record.id: record for record in (store.get(run_id) for run_id in run_ids)}.values())


# ---------------------------------------------------------------- MLflow


def _client(uri: str, *, probe: bool = True):
    """An ``MlflowClient`` for ``uri``: one line naming the fix if MLflow is missing, refuses the
    URI, or (``probe``) no tracking server answers at an http(s) URI."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise WorkbenchError("MLflow is not installed", f"install it with {INSTALL}") from None
    try:
        client = MlflowClient(tracking_uri=uri)
    except MlflowException as exc:
        raise WorkbenchError(f"MLflow refuses the tracking URI {uri!r}: {_first_sentence(exc)}",
                             f"give a database such as {DEFAULT_URI} or a tracking server's http://host:port") from None
    if probe and uri.startswith(("http://", "https://")):
        _probe(uri)
    return client


def _probe(uri: str) -> None:
    """One request to the server's /health, without MLflow's minutes of retries for a server that is not there."""
    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    try:
        http_request(MlflowHostCreds(uri), "/health", "GET", max_retries=0, timeout=PROBE_SECONDS,
                     raise_on_status=False)
    except Exception as exc:  # noqa: BLE001 - requests' and MLflow's errors alike: the server is not reachable
        raise WorkbenchError(f"no MLflow tracking server answers at {uri} ({_reason(exc)})",
                             "start it (mlflow server --host 127.0.0.1 --port 5000) or give another --mlflow URI") from None


def _reason(exc: BaseException) -> str:
    """What the operating system said (``Connection refused``, ``Name or service not known``, a time-out)
    rather than the chain of urllib3's and MLflow's wrappers around it."""
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    if "timed out" in text:
        return f"no answer in {PROBE_SECONDS} s"
    found = re.search(r"\[Errno -?\d+\] ([^'\"()\]]+)", text)
    return found.group(1).strip().rstrip(".") if found else _first_sentence(exc)


def _first_sentence(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return text.split(". ")[0].rstrip(".")[:300] or type(exc).__name__


class _Exporter:
    """Writes runs into one tracking URI, remembering the experiments it has found or created."""

    def __init__(self, client, uri: str, experiment: str | None):
        from mlflow.utils import validation

        self.client, self.uri, self.experiment = client, uri, experiment
        self.value_limit = validation.MAX_PARAM_VAL_LENGTH
        self.tag_limit = validation.MAX_TAG_VAL_LENGTH
        self.key_limit = validation.MAX_ENTITY_KEY_LENGTH
        self.metrics_per_batch = validation.MAX_METRICS_PER_BATCH
        self.params_per_batch = validation.MAX_PARAMS_TAGS_PER_BATCH
        self.ids: dict[str, str] = {}  # experiment name -> id
        self.steps: dict[tuple[str, str], set[int]] = {}  # (MLflow run id, metric key) -> steps it has

    # -------------------------------------------------------- what a run and a sweep become

    def run(self, record: RunRecord, *, parent: Exported | None = None, name: str | None = None) -> Exported:
        experiment = parent.experiment if parent else (self.experiment or experiment_of(record))
        tags = run_tags(record, value_limit=self.tag_limit)
        tags["mlflow.runName"] = name or run_name(record)
        if parent is not None:
            tags[PARENT_RUN_TAG] = parent.run_id
        return self._write(
            "run", record.id, experiment, f"tags.`{RUN_ID_TAG}` = '{record.id}'", tags=tags,
            params=run_params(record, value_limit=self.value_limit, key_limit=self.key_limit),
            metrics=run_metrics(record), files=_artifact_files(record),
            start=millis(record.created_at), end=millis(record.finished_at), status=STATUS_OF[record.status],
            parent=parent)

    def sweep(self, sweeps: SweepStore, sweep: dict, cells: list[tuple[dict, RunRecord]]) -> list[Exported]:
        experiment = self.experiment or (experiment_of(cells[0][1]) if cells else _pipeline_name(sweep))
        spec = {key: value for key, value in sweep["spec"].items() if key != "name"}
        with tempfile.TemporaryDirectory(prefix="workbench-mlflow-") as scratch:
            table = Path(scratch) / "cells.csv"
            sweeps.table(sweep["id"]).to_csv(table, index=False)
            parent = self._write(
                "sweep", sweep["id"], experiment,
                f"tags.`{SWEEP_ID_TAG}` = '{sweep['id']}' AND tags.`{KIND_TAG}` = 'sweep'",
                tags={**sweep_tags(sweep), "mlflow.runName": sweep["id"]},
                params=flatten_params(spec, value_limit=self.value_limit, key_limit=self.key_limit),
                metrics={}, files=[(table, None)], start=millis(sweep["created_at"]),
                end=millis(sweep["updated_at"]), status=sweep_status(sweep))
        return [parent, *(self.run(record, parent=parent, name=cell_name(cell)) for cell, record in cells)]

    # -------------------------------------------------------- writing what the MLflow run lacks

    def _write(self, kind: str, workbench_id: str, experiment: str, find: str, *, tags: dict, params: dict,
               metrics: Series, files: list, start: int | None, end: int | None, status: str,
               parent: Exported | None = None) -> Exported:
        from mlflow.entities import Metric, Param, RunTag, ViewType
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            experiment_id = self._experiment_id(experiment)
            found = client.search_runs([experiment_id], find, run_view_type=ViewType.ACTIVE_ONLY, max_results=1,
                                       order_by=["attributes.start_time ASC"])
            if found:
                run, created = found[0], False
            else:
                run = client.create_run(experiment_id, start_time=start, tags=tags, run_name=tags["mlflow.runName"])
                created = True
            run_id = run.info.run_id
            have_params = run.data.params
            new_params = [Param(k, v) for k, v in params.items() if k not in have_params]
            if not created and parent is None and kind == "run":  # a cell's run exported alone keeps its cell's name
                tags = {k: v for k, v in tags.items() if k != "mlflow.runName"}
            new_tags = [RunTag(k, v) for k, v in tags.items() if run.data.tags.get(k) != v]
            stamp = end or start or 0
            new_metrics = [Metric(key, value, stamp, step) for key, points in metrics.items()
                           for step, value in points if step not in self._steps(run, key, points)]
            for i in range(0, len(new_params), self.params_per_batch):
                client.log_batch(run_id, params=new_params[i:i + self.params_per_batch])
            for i in range(0, len(new_tags), self.params_per_batch):
                client.log_batch(run_id, tags=new_tags[i:i + self.params_per_batch])
            for i in range(0, len(new_metrics), self.metrics_per_batch):
                client.log_batch(run_id, metrics=new_metrics[i:i + self.metrics_per_batch])
            uploaded = self._upload(run_id, files)
            if status != "RUNNING" and (run.info.status != status or run.info.end_time != end):
                with _no_url_printed():
                    client.set_terminated(run_id, status, end_time=end)
        except MlflowException as exc:
            raise WorkbenchError(f"MLflow at {self.uri} refused the export of {kind} {workbench_id}: "
                                 f"{_first_sentence(exc)}",
                                 "fix what MLflow names and export again (nothing is exported twice)") from None
        return Exported(kind, workbench_id, run_id, experiment, experiment_id, self.uri, created,
                        {"params": len(new_params), "metric values": len(new_metrics), "artifacts": uploaded},
                        parent.run_id if parent else None)

    def _experiment_id(self, name: str) -> str:
        if name not in self.ids:
            found = self.client.get_experiment_by_name(name)
            if found is not None and found.lifecycle_stage != "active":
                raise WorkbenchError(
                    f"experiment {name!r} is deleted in MLflow at {self.uri}",
                    f"restore it (mlflow experiments restore --experiment-id {found.experiment_id}) "
                    "or export into another with --experiment")
            self.ids[name] = found.experiment_id if found is not None else self.client.create_experiment(name)
        return self.ids[name]

    def _steps(self, run, key: str, points: list[tuple[int, float]]) -> set[int]:
        """The steps the MLflow run already has for ``key`` (none if it has no value for it at all).
        A metric of one value at step 0 that the run has is that value: no request for its history
        (most metrics, so a second export to a tracking server is a handful of requests, not hundreds)."""
        where = (run.info.run_id, key)
        if where not in self.steps:
            if key not in run.data.metrics:
                self.steps[where] = set()
            elif [step for step, _ in points] == [0]:
                self.steps[where] = {0}
            else:
                self.steps[where] = {metric.step for metric in self.client.get_metric_history(run.info.run_id, key)}
        return self.steps[where]

    def _upload(self, run_id: str, files: list[tuple[Path, str | None]]) -> int:
        """Upload the files the run lacks (or has at another size); the number uploaded."""
        have = dict(self._artifacts(run_id, None)) if files else {}
        uploaded = 0
        for path, directory in files:
            name = str(PurePosixPath(directory, path.name)) if directory else path.name
            if have.get(name) != path.stat().st_size:
                self.client.log_artifact(run_id, str(path), directory)
                uploaded += 1
        return uploaded

    def _artifacts(self, run_id: str, directory: str | None):
        for entry in self.client.list_artifacts(run_id, directory):
            if entry.is_dir:
                yield from self._artifacts(run_id, entry.path)
            else:
                yield entry.path, entry.file_size


@contextmanager
def _no_url_printed() -> Iterator[None]:
    """MLflow prints a run's page to stdout when it ends the run on a tracking server; the export's
    own line already names it (and MLflow's costs one more request per run)."""
    from mlflow.environment_variables import MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT

    name = MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT.name
    before = os.environ.get(name)
    os.environ[name] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _artifact_files(record: RunRecord) -> list[tuple[Path, str | None]]:
    """Every file of the run's artifacts (a directory artifact: each file in it) and the artifact
    directory it goes to in MLflow; files no longer on disk are left out."""
    root = Path(record.path)
    files = []
    for relative in sorted(set(record.artifacts.values())):
        path = root / relative
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
        for file in found:
            parent = PurePosixPath(file.relative_to(root).as_posix()).parent
            files.append((file, None if str(parent) == "." else str(parent)))
    return files


def _pipeline_name(sweep: dict) -> str:
    pipeline = sweep["spec"].get("pipeline")
    return pipeline["name"] if isinstance(pipeline, dict) and pipeline.get("name") else sweep["id"]
