"""Pages of recorded runs, served by the Dask dashboard next to its own.

Distributed builds the scheduler's HTTP server from the modules named in the Dask setting
``distributed.scheduler.http.routes``; each module has a ``routes`` list of
``(url, tornado handler, kwargs)``. This module is one of them. Name it before the scheduler starts::

    import workbench.dashboard
    workbench.dashboard.enable()          # or: with dask.config.set(workbench.dashboard.routes_config()):
    with wb.cluster("local") as client:   # any scheduler started from now on in this process
        print(client.dashboard_link.replace("/status", "/workbench/runs"))

For a scheduler started with ``dask scheduler``, set the whole list in its environment, e.g.
``DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES='[..., "workbench.dashboard"]'`` (the default list plus
this module), and ``DASK_WORKBENCH__RUNS__DIR`` to the run store it should show.

The pages, under the dashboard's address:

- ``/workbench/runs``: the recorded runs, newest first, with their ROC AUC and PR AUC compared in a
  chart (``?status=succeeded``, ``?limit=N``; the newest 200 by default);
- ``/workbench/runs/<id>``: one run (an id prefix is enough): metrics, ROC and PR curves, training
  history, confusion matrix, data, timings, seeds, cluster, versions and pipeline spec;
- ``/workbench/runs.json``: the list as JSON, for scripts.

They read the run store in ``workbench.runs.dir`` (relative to the scheduler's working directory) at
every request and never write to it. Like the rest of the dashboard, **they have no
authentication**: anyone who can reach the dashboard address reads every recorded run, including
pipeline specs and file paths. The dashboard listens where the cluster's ``dashboard_address`` says,
``127.0.0.1`` (this machine only) in the workbench's cluster profiles; do not bind it to a public
interface on a shared network, or put an authenticating proxy in front of it.
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path
from urllib.parse import quote

import dask.config
import distributed.config  # noqa: F401  (registers the distributed.* defaults, the routes list among them)
import jinja2
from markupsafe import Markup
from tornado import web

from ..errors import WorkbenchError
from ..stores.runs import STATUSES, RunRecord, RunStore

__all__ = ["routes", "enable", "enable_dashboard", "routes_config", "MODULE"]

MODULE = "workbench.dashboard"
ROUTES_KEY = "distributed.scheduler.http.routes"
DEFAULT_LIMIT = 200
CHART_RUNS = 20  # runs compared in the chart of the list page


# ---------------------------------------------------------------- enabling the pages


def routes_config(routes: list[str] | None = None) -> dict[str, list[str]]:
    """The Dask setting that adds these pages to a scheduler's dashboard, for ``dask.config.set``.

    ``routes`` is the list to extend; by default the current ``distributed.scheduler.http.routes``.
    """
    current = list(dask.config.get(ROUTES_KEY) if routes is None else routes)
    return {ROUTES_KEY: current if MODULE in current else [*current, MODULE]}


def enable(config=dask.config) -> list[str]:
    """Add these pages to the dashboard of every scheduler started afterwards in this process.

    Appends ``"workbench.dashboard"`` to ``distributed.scheduler.http.routes`` (once) in ``config``
    (Dask's configuration module, or any object with its ``get`` and ``set``) and returns the list.
    A scheduler that is already running keeps the routes it started with.
    """
    routes = list(config.get(ROUTES_KEY))
    if MODULE not in routes:
        routes.append(MODULE)
        config.set({ROUTES_KEY: routes})
    return routes


enable_dashboard = enable  # the name ``import workbench`` exports


# ---------------------------------------------------------------- handlers


class _Handler(web.RequestHandler):
    """Renders in a thread (the store and matplotlib would block the scheduler's event loop)."""

    def initialize(self, directory: str | None = None) -> None:
        self.directory = directory

    def store(self) -> RunStore:
        directory = self.directory or dask.config.get("workbench.runs.dir", default="runs")
        return RunStore(directory)

    def query(self) -> tuple[str | None, int]:
        status = self.get_query_argument("status", None) or None
        if status is not None and status not in STATUSES:
            raise _Problem(400, f"unknown run status '{status}'; use one of {', '.join(STATUSES)}")
        limit = self.get_query_argument("limit", str(DEFAULT_LIMIT))
        if not limit.isdigit():
            raise _Problem(400, f"limit must be a whole number, got '{limit}'")
        return status, int(limit)

    def render_page(self, *args: str) -> tuple[str, str]:
        raise NotImplementedError

    async def get(self, *args: str) -> None:
        try:
            content_type, body = await asyncio.to_thread(self.render_page, *args)
        except _Moved as moved:
            self.redirect(moved.location)
            return
        except _Problem as problem:
            self.set_status(problem.status)
            content_type, body = "text/plain; charset=UTF-8", problem.message + "\n"
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.write(body)


class RunsPage(_Handler):
    """``/workbench/runs``: the recorded runs, newest first."""

    def render_page(self) -> tuple[str, str]:
        return _runs_page(self.store(), *self.query())


class RunsJSON(_Handler):
    """``/workbench/runs.json``: the recorded runs, newest first, as a JSON list."""

    def render_page(self) -> tuple[str, str]:
        return _runs_json(self.store(), *self.query())


class RunPage(_Handler):
    """``/workbench/runs/<id>``: one run; a unique id prefix redirects to the full id."""

    def render_page(self, run_id: str) -> tuple[str, str]:
        store = self.store()
        try:
            record = store.get(run_id)
        except WorkbenchError as exc:
            raise _Problem(404, f"{exc.problem}; the recorded runs are listed at workbench/runs") from None
        if record.id != run_id:
            raise _Moved(quote(record.id, safe=""))  # relative: works under any dashboard prefix
        return _run_page(record)


class _Redirect(web.RequestHandler):
    def get(self) -> None:
        self.redirect("../runs")  # relative, so it works under any dashboard prefix


routes: list[tuple] = [
    (r"workbench/runs", RunsPage, {}),
    (r"workbench/runs\.json", RunsJSON, {}),
    (r"workbench/runs/", _Redirect, {}),
    (r"workbench/runs/([^/]+)", RunPage, {}),
]


class _Problem(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Moved(Exception):
    def __init__(self, location: str):
        super().__init__(location)
        self.location = location


# ---------------------------------------------------------------- the JSON list


def _runs_json(store: RunStore, status: str | None, limit: int) -> tuple[str, str]:
    rows = [
        {
            "id": r.id,
            "name": r.name,
            "status": r.status,
            "created_at": r.created_at,
            "finished_at": r.finished_at,
            "roc_auc": r.metrics.get("roc_auc"),
            "pr_auc": r.metrics.get("pr_auc"),
            "error": r.error,
        }
        for r in _list(store, status, limit)
    ]
    return "application/json; charset=UTF-8", json.dumps(rows, indent=1)


def _list(store: RunStore, status: str | None, limit: int) -> list[RunRecord]:
    try:
        return store.list(status=status, limit=limit)
    except WorkbenchError as exc:
        raise _Problem(500, str(exc)) from None


# ---------------------------------------------------------------- the list page


def _runs_page(store: RunStore, status: str | None, limit: int) -> tuple[str, str]:
    from ..view import run_view
    from .charts import comparison_chart

    records = _list(store, status, limit)
    where = str(store.directory.absolute())
    context = {"runs": [run_view(r) for r in records], "where": where, "subtitle": where, "chart": None}
    if not records:
        context["empty"] = f"no {status} runs" if status else "no runs recorded yet"
        return _html("runs.html.j2", **context)
    total = len(store)
    shown = f"{len(records)} run{'s' if len(records) != 1 else ''}"
    if status or len(records) < total:
        shown += f" of {total}" + (f" (only {status})" if status else " (the newest)")
    context["subtitle"] = f"{shown} in {where}"
    succeeded = [r for r in records if r.status == "succeeded" and r.metrics.get("roc_auc") is not None]
    if succeeded:
        context["chart"] = Markup(comparison_chart(succeeded[:CHART_RUNS]))
        context["caption"] = "ROC AUC and PR AUC (average precision) of the exact test-set evaluation" + (
            f", the newest {CHART_RUNS} succeeded runs" if len(succeeded) > CHART_RUNS else "")
    context["best_roc"] = max((r.metrics.get("roc_auc") or -1 for r in records), default=None)
    context["best_pr"] = max((r.metrics.get("pr_auc") or -1 for r in records), default=None)
    return _html("runs.html.j2", **context)


# ---------------------------------------------------------------- the page of one run


def _run_page(record: RunRecord) -> tuple[str, str]:
    from ..view import run_view
    from .charts import calibration_chart, history_chart, pr_chart, roc_chart

    m = record.metrics
    charts = []
    curves = m.get("curves") or {}
    if curves.get("roc"):
        charts.append((Markup(roc_chart(m)), "ROC curve, exact on the test set"))
    if curves.get("pr"):
        charts.append((Markup(pr_chart(m)), "precision-recall curve, exact on the test set"))
    if (m.get("calibration") or {}).get("prob_pred"):
        charts.append((Markup(calibration_chart(m)), "calibration (reliability diagram) on the test set"))
    if any(values for metrics in record.history.values() for values in metrics.values()):
        sets = " and ".join(f"the {name} set" for name in record.history)
        charts.append((Markup(history_chart(record.history, record.data.get("best_iteration"))),
                       f"evaluation per boosting round on {sets}"))
    return _html("run.html.j2", run=run_view(record), charts=charts, has_metrics=bool(m),
                 spec=json.dumps(record.spec, indent=2, sort_keys=False))


# ---------------------------------------------------------------- templates
# The view, its model types and the charts are imported at the first request, not when the
# scheduler imports this module for its routes.


@cache
def _templates() -> jinja2.Environment:
    from ..view import number, value_text

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(statuses=STATUSES, number=number, value_text=value_text)
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    return env


def _html(template: str, **context) -> tuple[str, str]:
    return "text/html; charset=UTF-8", _templates().get_template(template).render(**context)
