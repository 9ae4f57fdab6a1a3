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
import html
import io
import json
import math
import threading
from datetime import datetime
from typing import Any
from urllib.parse import quote

import dask.config
import distributed.config  # noqa: F401  (registers the distributed.* defaults, the routes list among them)
from tornado import web

from workbench.errors import WorkbenchError
from workbench.stores.runs import STATUSES, RunRecord, RunStore

__all__ = ["routes", "enable", "enable_dashboard", "routes_config", "MODULE"]

MODULE = "workbench.dashboard"
ROUTES_KEY = "distributed.scheduler.http.routes"
DEFAULT_LIMIT = 200
CHART_RUNS = 20  # runs compared in the chart of the list page

ROC_COLOR = "#2563eb"
PR_COLOR = "#d9480f"
HISTORY_COLORS = ("#2563eb", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#495057")


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
        return _run_page(store, record)


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
    records = _list(store, status, limit)
    where = str(store.directory.absolute())
    links = '<a href="../status">Dask dashboard</a> · <a href="runs.json">JSON</a>'
    if not records:
        what = f"no {status} runs" if status else "no runs recorded yet"
        body = f'<p class="empty">{_e(what)} in <code>{_e(where)}</code></p>'
        return "text/html; charset=UTF-8", _document("workbench runs", _header("workbench runs", links, where), body)

    total = len(store)
    shown = f"{len(records)} run{'s' if len(records) != 1 else ''}"
    if status or len(records) < total:
        shown += f" of {total}" + (f" (only {status})" if status else " (the newest)")
    succeeded = [r for r in records if r.status == "succeeded" and r.metrics.get("roc_auc") is not None]
    parts = []
    if succeeded:
        chart = _comparison_chart(succeeded[:CHART_RUNS])
        caption = "ROC AUC and PR AUC (average precision) of the exact test-set evaluation"
        if len(succeeded) > CHART_RUNS:
            caption += f", the newest {CHART_RUNS} succeeded runs"
        parts.append(f'<figure class="card wide">{chart}<figcaption>{_e(caption)}</figcaption></figure>')
    parts.append(_runs_table(records))
    header = _header("workbench runs", links, f"{shown} in {where}")
    return "text/html; charset=UTF-8", _document("workbench runs", header, "\n".join(parts))


def _runs_table(records: list[RunRecord]) -> str:
    head = (
        "<tr><th>run</th><th>name</th><th>status</th><th>created (UTC)</th>"
        '<th class="n" title="workers × threads in all">workers</th>'
        '<th class="n" title="training rows before and after random under-sampling">train rows → RUS</th>'
        '<th class="n" title="class ratio after random under-sampling">ratio</th>'
        '<th class="n">ROC AUC</th><th class="n">PR AUC</th><th class="n">wall time</th></tr>'
    )
    best_roc = max((r.metrics.get("roc_auc") or -1 for r in records), default=None)
    best_pr = max((r.metrics.get("pr_auc") or -1 for r in records), default=None)
    rows = []
    for r in records:
        d, m, c = r.data, r.metrics, r.cluster
        train, sampled = _get(d, "train", "rows"), _get(d, "sampled", "rows")
        rows_cell = "–" if train is None else f"{_int(train)} → {_int(sampled)}"
        workers = "–" if c.get("workers") is None else f"{_int(c.get('workers'))} × {_int(c.get('threads'))}"
        name = f'<div class="name" title="{_e(r.name)}">{_e(r.name)}</div>'
        if r.error:
            name += f'<div class="error-line" title="{_e(r.error)}">{_e(r.error)}</div>'
        roc, pr = m.get("roc_auc"), m.get("pr_auc")
        rows.append(
            "<tr>"
            f'<td class="id"><a href="runs/{_e(quote(r.id, safe=""))}">{_e(r.id)}</a></td>'
            f"<td>{name}</td>"
            f"<td>{_badge(r.status)}</td>"
            f'<td title="{_e(r.created_at)}">{_e(_when(r.created_at)[:16])}</td>'
            f'<td class="n">{workers}</td>'
            f'<td class="n">{rows_cell}</td>'
            f'<td class="n">{_e(_get(d, "class_ratio", "after") or "–")}</td>'
            f'<td class="n{" best" if roc is not None and roc == best_roc else ""}">{_float(roc)}</td>'
            f'<td class="n{" best" if pr is not None and pr == best_pr else ""}">{_float(pr)}</td>'
            f'<td class="n">{_e(_duration(_wall_seconds(r)))}</td>'
            "</tr>"
        )
    return f'<div class="card wide scroll"><table class="runs">{head}{"".join(rows)}</table></div>'


# ---------------------------------------------------------------- the page of one run


def _run_page(store: RunStore, record: RunRecord) -> tuple[str, str]:
    r, m, d = record, record.metrics, record.data
    links = '<a href="../runs">all runs</a> · <a href="../../status">Dask dashboard</a>'
    subtitle = f"{_badge(r.status)} <span>{_e(r.name)}</span> · created {_e(_when(r.created_at))} UTC"
    if r.finished_at:
        subtitle += f" · wall time {_e(_duration(_wall_seconds(r)))}"
    header = _header(f"run {r.id}", links, subtitle, subtitle_is_html=True)
    parts = []
    if r.error:
        parts.append(f'<div class="card wide failure"><b>failed:</b> {_e(r.error)}</div>')
    if m.get("roc_auc") is not None:
        parts.append(_headline(m, d))
    charts = []
    curves = m.get("curves") or {}
    if curves.get("roc"):
        charts.append(_figure(_roc_chart(m), "ROC curve, exact on the test set"))
    if curves.get("pr"):
        charts.append(_figure(_pr_chart(m), "precision-recall curve, exact on the test set"))
    if any(values for metrics in r.history.values() for values in metrics.values()):
        sets = " and ".join(f"the {name} set" for name in r.history)
        charts.append(_figure(_history_chart(r.history, d.get("best_iteration")), f"evaluation per boosting round on {sets}"))
    if charts:
        parts.append(f'<div class="charts">{"".join(charts)}</div>')
    elif m:
        parts.append('<p class="note">no curves or history recorded for this run</p>')

    sections = []
    if "tp" in m:
        sections.append(_section("confusion matrix", _confusion(m)))
    if d:
        sections.append(_section("data", _data_table(d)))
    if isinstance(d.get("models"), dict):
        sections.append(_section(f"models (the run's metrics are {d.get('primary', '?')}'s)", _models_table(d["models"])))
    if isinstance(d.get("candidates"), list) and d["candidates"]:
        sections.append(_section(f"search: {len(d['candidates'])} candidate rows", _records_table(d["candidates"])))
    if isinstance(d.get("importances"), list) and d["importances"]:
        sections.append(_section(f"feature importances ({d.get('importances_of', 'model')})", _records_table(d["importances"])))
    if r.timings:
        sections.append(_section("timings", _timings(r.timings)))
    sections.append(_section("seeds", _pairs(r.seeds)))
    sections.append(_section("cluster", _pairs(r.cluster)))
    if r.artifacts:
        sections.append(_section("artifacts", _pairs({k: f"{r.path}/{v}" for k, v in r.artifacts.items()})))
    sections.append(_section("versions", _pairs(r.versions)))
    parts.append(f'<div class="columns">{"".join(sections)}</div>')
    spec = json.dumps(r.spec, indent=2, sort_keys=False)
    parts.append(
        f'<details class="card wide" open><summary>pipeline spec</summary><pre>{_e(spec)}</pre></details>'
    )
    refresh = '<meta http-equiv="refresh" content="15">' if r.status == "running" else ""
    return "text/html; charset=UTF-8", _document(f"run {r.id} · workbench runs", header, "\n".join(parts), refresh)


def _headline(m: dict, d: dict) -> str:
    test = d.get("test") or {}
    n, positive = m.get("n", test.get("rows")), m.get("n_positive", test.get("positive"))
    items = [
        ("ROC AUC", _float(m.get("roc_auc")), "exact, test set"),
        ("PR AUC", _float(m.get("pr_auc")), "average precision"),
        ("test rows", _int(n), f"{_int(positive)} positive ({_percent(positive, n)})"),
        (f"precision @ {_e(_num(m.get('threshold')))}", _float(m.get("precision"), 3), ""),
        (f"recall @ {_e(_num(m.get('threshold')))}", _float(m.get("recall"), 3), ""),
        ("F1", _float(m.get("f1"), 3), ""),
        ("Brier", _float(m.get("brier")), "lower is better"),
    ]
    if "best_iteration" in d:
        items.append(("trees kept", _int(d["best_iteration"] + 1), f"of {_int(d.get('boosted_rounds'))} trained"))
    cells = "".join(
        f'<div class="stat"><div class="label">{label}</div><div class="value">{value}</div>'
        f'<div class="hint">{_e(hint)}</div></div>'
        for label, value, hint in items
    )
    return f'<div class="stats">{cells}</div>'


def _confusion(m: dict) -> str:
    def matrix(c: dict, title: str) -> str:
        return (
            f'<table class="confusion"><caption>{_e(title)}</caption>'
            '<tr><th></th><th>predicted 0</th><th>predicted 1</th></tr>'
            f'<tr><th>actual 0</th><td>{_int(c["tn"])}<small>TN</small></td><td>{_int(c["fp"])}<small>FP</small></td></tr>'
            f'<tr><th>actual 1</th><td>{_int(c["fn"])}<small>FN</small></td><td>{_int(c["tp"])}<small>TP</small></td></tr>'
            "</table>"
        )

    threshold = _num(m.get("threshold"))
    out = matrix(m, f"score ≥ {threshold}")
    corrected = m.get("corrected")
    if corrected and "tp" in corrected:
        out += matrix(corrected, f"corrected for RUS (Dal Pozzolo), ≥ {threshold}")
        out += (
            f'<p class="note">corrected: precision {_float(corrected.get("precision"), 3)}, '
            f'recall {_float(corrected.get("recall"), 3)}, F1 {_float(corrected.get("f1"), 3)}, '
            f'Brier {_float(corrected.get("brier"))}</p>'
        )
    return f'<div class="matrices">{out}</div>'


def _data_table(d: dict) -> str:
    rows = []
    if "rows_in_files" in d:
        rows.append(("rows in files", _int(d["rows_in_files"])))
    if d.get("rows_with_null_target"):
        rows.append(("rows with a null target", _int(d["rows_with_null_target"])))
    for key, label in (("train", "train"), ("valid", "validation"), ("sampled", "train after RUS"), ("test", "test")):
        part = d.get(key)
        if isinstance(part, dict) and "rows" in part:
            rows.append((label, f'{_int(part["rows"])} <span class="muted">({_int(part.get("positive"))} positive, '
                                f'{_percent(part.get("positive"), part["rows"])})</span>'))
    ratio = d.get("class_ratio")
    if isinstance(ratio, dict):
        rows.append(("class ratio", f'{_e(ratio.get("before", "–"))} → {_e(ratio.get("after", "–"))} after RUS'))
    if isinstance(d.get("features"), list):
        rows.append(("features", f'{len(d["features"])} <span class="muted">{_e(", ".join(map(str, d["features"][:8])))}'
                                 f'{" …" if len(d["features"]) > 8 else ""}</span>'))
    if d.get("excluded"):
        rows.append(("not features", _e(", ".join(map(str, d["excluded"])))))
    if "persisted" in d:
        rows.append(("persisted", "yes" if d["persisted"] else "no"))
    known = {"rows_in_files", "rows_with_null_target", "train", "valid", "sampled", "test", "class_ratio",
             "features", "excluded", "persisted", "best_iteration", "boosted_rounds", "models", "candidates",
             "importances", "epochs"}
    for key, value in d.items():
        if key not in known:
            rows.append((_e(key), _e(_short(value))))
    return _table(rows)


def _models_table(models: dict) -> str:
    head = "<tr><th>model</th><th>ROC AUC</th><th>PR AUC</th><th>fit</th><th>worker</th></tr>"
    body = "".join(
        f"<tr><th>{_e(name)}</th><td>{_float(row.get('roc_auc'))}</td><td>{_float(row.get('pr_auc'))}</td>"
        f"<td>{_e(_duration(row['fit_seconds'])) if _is_number(row.get('fit_seconds')) else '–'}</td>"
        f"<td>{_e(row.get('worker') or '–')}</td></tr>"
        for name, row in models.items())
    return f'<table class="grid">{head}{body}</table>'


def _records_table(rows: list[dict], limit: int = 50) -> str:
    columns = list(dict.fromkeys(k for row in rows[:limit] for k in row))
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_float(row.get(c)) if isinstance(row.get(c), float) else _e(_short(row.get(c)))}</td>"
                         for c in columns) + "</tr>"
        for row in rows[:limit])
    more = f'<p class="muted">… {len(rows) - limit} more in runs.json</p>' if len(rows) > limit else ""
    return f'<div class="scroll"><table class="grid"><tr>{head}</tr>{body}</table></div>{more}'


def _timings(timings: dict) -> str:
    numbers = {k: v for k, v in timings.items() if isinstance(v, (int, float))}
    longest = max(numbers.values(), default=0) or 1
    rows = [
        (_e(phase), f'<span class="bar" style="width:{100 * seconds / longest:.1f}%"></span>'
                    f'<span class="secs">{_e(_duration(seconds))}</span>')
        for phase, seconds in numbers.items()
    ]
    rows.append(("sum", f'<span class="secs"><b>{_e(_duration(sum(numbers.values())))}</b></span>'))
    return _table(rows, cls="timings")


def _pairs(values: dict) -> str:
    if not values:
        return '<p class="muted">none recorded</p>'
    return _table([(_e(k), _e(_bytes(v) if "memory" in str(k) else _short(v))) for k, v in values.items()])


def _table(rows: list[tuple[str, str]], cls: str = "pairs") -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _section(title: str, body: str) -> str:
    return f'<section class="card"><h2>{_e(title)}</h2>{body}</section>'


def _figure(svg: str, caption: str) -> str:
    return f'<figure class="card">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


# ---------------------------------------------------------------- charts (matplotlib, inline SVG)

_RENDER_LOCK = threading.Lock()


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#adb5bd")
    ax.tick_params(labelsize=8, colors="#495057", length=3)
    ax.grid(True, color="#e9ecef", linewidth=0.8)
    ax.set_axisbelow(True)


def _svg(fig) -> str:
    buffer = io.StringIO()
    with _RENDER_LOCK:
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    svg = text[text.index("<svg"):]
    start, end = svg.find("<metadata>"), svg.find("</metadata>")
    if start >= 0 and end > start:  # matplotlib's RDF block: namespaces and the creator, not needed
        svg = svg[:start] + svg[end + len("</metadata>"):]
    return svg.replace("<svg ", '<svg role="img" ', 1)


def _roc_chart(m: dict) -> str:
    roc = m["curves"]["roc"]
    fig = _new_figure(3.6, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    ax.plot([0, 1], [0, 1], color="#adb5bd", linestyle="--", linewidth=1, label="chance")
    ax.fill_between(roc["fpr"], roc["tpr"], color=ROC_COLOR, alpha=0.08, linewidth=0)
    ax.plot(roc["fpr"], roc["tpr"], color=ROC_COLOR, linewidth=1.8, label=f"ROC AUC {m['roc_auc']:.4f}")
    negatives, positives = m.get("tn", 0) + m.get("fp", 0), m.get("tp", 0) + m.get("fn", 0)
    if negatives and positives:
        ax.plot(m["fp"] / negatives, m["tp"] / positives, "o", color="#212529", markersize=5,
                label=f"threshold {_num(m.get('threshold'))}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("false positive rate", fontsize=9)
    ax.set_ylabel("true positive rate (recall)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg(fig)


def _pr_chart(m: dict) -> str:
    pr = m["curves"]["pr"]
    fig = _new_figure(3.6, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    if m.get("n"):
        prevalence = m["n_positive"] / m["n"]
        ax.axhline(prevalence, color="#adb5bd", linestyle="--", linewidth=1,
                   label=f"prevalence {prevalence:.2%}")
    ax.fill_between(pr["recall"], pr["precision"], color=PR_COLOR, alpha=0.08, linewidth=0)
    ax.plot(pr["recall"], pr["precision"], color=PR_COLOR, linewidth=1.8, label=f"PR AUC {m['pr_auc']:.4f}")
    if m.get("tp", 0) + m.get("fp", 0) and m.get("tp", 0) + m.get("fn", 0):
        ax.plot(m["recall"], m["precision"], "o", color="#212529", markersize=5,
                label=f"threshold {_num(m.get('threshold'))}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("recall", fontsize=9)
    ax.set_ylabel("precision", fontsize=9)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return _svg(fig)


def _history_chart(history: dict, best_iteration: int | None) -> str:
    fig = _new_figure(4.6, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    several = len(history) > 1
    lines = [(f"{name} {metric}" if several else metric, values)
             for name, metrics in history.items() for metric, values in metrics.items() if values]
    for i, (label, values) in enumerate(lines):
        rounds = range(1, len(values) + 1)
        color = HISTORY_COLORS[i % len(HISTORY_COLORS)]
        ax.plot(rounds, [math.nan if v is None else v for v in values], color=color, linewidth=1.6, label=label)
    if isinstance(best_iteration, int):
        ax.axvline(best_iteration + 1, color="#868e96", linestyle=":", linewidth=1.2,
                   label=f"best round {best_iteration + 1}")
    ax.set_xlabel("boosting round", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=min(len(lines) + 1, 4),
              borderaxespad=0.3, handlelength=1.6, columnspacing=1.2)
    return _svg(fig)


def _comparison_chart(records: list[RunRecord]) -> str:
    """Two dot plots side by side, one row per run (newest on top), each axis zoomed on its metric."""
    n = len(records)
    fig = _new_figure(11, 0.75 + 0.26 * max(n, 2))
    axes = fig.subplots(1, 2, sharey=True)
    labels = [f"{r.name[:24]}  {r.id}" for r in records]
    ys = list(range(n))[::-1]  # newest first from the top
    for ax, key, title, color in ((axes[0], "roc_auc", "ROC AUC", ROC_COLOR), (axes[1], "pr_auc", "PR AUC", PR_COLOR)):
        _style(ax)
        ax.grid(True, axis="x", color="#e9ecef")
        ax.grid(True, axis="y", color="#f1f3f5", linewidth=4)
        values = [r.metrics.get(key) for r in records]
        known = [v for v in values if v is not None]
        best = max(known) if known else None
        for y, v in zip(ys, values):
            if v is None:
                continue
            ax.plot(v, y, "o", color=color, markersize=6.5 if v == best else 5,
                    markeredgecolor="#212529" if v == best else color)
            ax.annotate(f"{v:.4f}", (v, y), xytext=(7, 0), textcoords="offset points", va="center",
                        fontsize=8, color="#212529", fontweight="bold" if v == best else "normal")
        if known:
            low, high = min(known), max(known)
            pad = max((high - low) * 0.15, 0.01)
            ax.set_xlim(max(0.0, low - pad), high + 3 * pad)  # room on the right for the labels
            ax.set_xticks([t for t in ax.get_xticks() if t <= 1 + 1e-9 and t >= ax.get_xlim()[0] - 1e-9])
        ax.set_title(title, fontsize=10, loc="left", color="#212529", fontweight="bold")
        ax.set_ylim(-0.7, n - 0.3)
        ax.tick_params(axis="y", length=0)
    axes[0].set_yticks(ys, labels, fontsize=8, fontfamily="monospace")
    return _svg(fig)


# ---------------------------------------------------------------- HTML helpers

_CSS = """
:root { --fg:#212529; --muted:#6c757d; --line:#dee2e6; --bg:#f6f7f9; --card:#fff; --link:#1c64d1; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1240px; margin:0 auto; padding:20px 24px 40px; }
header { display:flex; justify-content:space-between; align-items:baseline; gap:16px; flex-wrap:wrap;
  margin-bottom:14px; }
h1 { font-size:20px; margin:0 0 2px; font-weight:650; letter-spacing:-0.01em; }
h2 { font-size:12px; margin:0 0 8px; text-transform:uppercase; letter-spacing:0.06em; color:var(--muted);
  font-weight:600; }
.sub { color:var(--muted); font-size:13px; display:flex; gap:6px; align-items:center; flex-wrap:wrap; }
.links { font-size:13px; white-space:nowrap; }
a { color:var(--link); text-decoration:none; } a:hover { text-decoration:underline; }
code, pre, td.id, .mono { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace; font-size:12.5px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 16px; margin:0 0 14px; }
.scroll { overflow-x:auto; padding:4px 0; }
figure { margin:0 0 14px; }
figure svg { display:block; width:100%; height:auto; }
figcaption { color:var(--muted); font-size:12px; margin-top:4px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:6px 9px; vertical-align:top; }
table.runs th { font-size:12px; color:var(--muted); font-weight:600; border-bottom:1px solid var(--line);
  white-space:nowrap; }
table.runs td { border-bottom:1px solid #f1f3f5; white-space:nowrap; font-size:13px; }
table.runs td.id { font-size:12px; }
table.runs tr:last-child td { border-bottom:0; }
table.runs tr:hover td { background:#f8f9fa; }
.n { text-align:right; font-variant-numeric:tabular-nums; }
td.best { font-weight:650; }
.name, .error-line { max-width:240px; overflow:hidden; text-overflow:ellipsis; }
.error-line { color:#c92a2a; font-size:12px; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; }
.succeeded { background:#ebfbee; color:#2b8a3e; } .failed { background:#fff5f5; color:#c92a2a; }
.running { background:#e7f5ff; color:#1864ab; }
.failure { border-color:#ffc9c9; background:#fff5f5; color:#862e2e; }
.stats { display:grid; grid-template-columns:repeat(auto-fill,minmax(140px,1fr)); gap:10px; margin-bottom:14px; }
.stat { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
.stat .label { font-size:12px; color:var(--muted); }
.stat .value { font-size:20px; font-weight:650; font-variant-numeric:tabular-nums; }
.stat .hint { font-size:11.5px; color:var(--muted); min-height:1em; }
.charts { display:grid; grid-template-columns:1fr 1fr 1.28fr; gap:14px; }
.charts figure { margin:0 0 14px; }
.columns { column-count:2; column-gap:14px; }
.columns > section { break-inside:avoid; display:inline-block; width:100%; }
table.pairs th, table.timings th { color:var(--muted); font-weight:500; width:34%; padding-left:0; white-space:nowrap; }
table.pairs td, table.timings td { font-variant-numeric:tabular-nums; overflow-wrap:anywhere; }
table.pairs tr + tr > *, table.timings tr + tr > * { border-top:1px solid #f1f3f5; }
table.timings td { display:flex; align-items:center; gap:8px; }
table.grid { border-collapse:collapse; font-size:12.5px; font-variant-numeric:tabular-nums; }
table.grid th, table.grid td { padding:3px 8px; text-align:left; white-space:nowrap; border-top:1px solid #f1f3f5; }
table.grid tr:first-child th { color:var(--muted); font-weight:500; border-top:0; }
.bar { display:inline-block; height:8px; background:#a5d8ff; border-radius:2px; min-width:2px; max-width:70%; }
.secs { white-space:nowrap; }
.muted { color:var(--muted); }
.matrices { display:flex; gap:18px; flex-wrap:wrap; }
table.confusion { width:auto; font-variant-numeric:tabular-nums; }
table.confusion caption { text-align:left; font-size:12px; color:var(--muted); padding-bottom:4px; }
table.confusion th { font-size:12px; color:var(--muted); font-weight:500; }
table.confusion td { border:1px solid var(--line); text-align:right; min-width:110px; font-size:15px; }
table.confusion td small { display:block; font-size:10.5px; color:var(--muted); }
table.confusion tr:nth-child(2) td:nth-child(2), table.confusion tr:nth-child(3) td:nth-child(3) { background:#f4fbf5; }
.note { color:var(--muted); font-size:12.5px; }
.empty { color:var(--muted); font-size:15px; padding:40px 0; text-align:center; }
details summary { cursor:pointer; font-size:12px; text-transform:uppercase; letter-spacing:0.06em;
  color:var(--muted); font-weight:600; }
pre { margin:10px 0 0; overflow-x:auto; background:#f8f9fa; padding:10px 12px; border-radius:6px; }
@media (max-width:900px) { .charts { grid-template-columns:1fr; } .columns { column-count:1; } }
"""


def _document(title: str, header: str, body: str, head_extra: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head_extra}<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{header}\n{body}</main></body></html>\n"
    )


def _header(title: str, links: str, subtitle: str, *, subtitle_is_html: bool = False) -> str:
    sub = subtitle if subtitle_is_html else _e(subtitle)
    return (
        f'<header><div><h1>{_e(title)}</h1><div class="sub">{sub}</div></div>'
        f'<nav class="links">{links}</nav></header>'
    )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(status: str) -> str:
    cls = status if status in STATUSES else ""
    return f'<span class="badge {cls}">{_e(status)}</span>'


def _get(d: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> str:
    return f"{value:,.0f}" if _is_number(value) else "–"


def _float(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else "–"


def _num(value: Any) -> str:
    return f"{value:g}" if _is_number(value) else "–"


def _percent(part: Any, whole: Any) -> str:
    if not (_is_number(part) and _is_number(whole)) or not whole:
        return "–"
    share = 100 * part / whole
    return f"{share:.2f}%" if share < 10 else f"{share:.1f}%"


def _short(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "–"
    return str(value)


def _bytes(value: Any) -> str:
    if not _is_number(value) or value < 1024:
        return _short(value)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(iso)


def _wall_seconds(record: RunRecord) -> float | None:
    if not record.finished_at:
        return None
    try:
        finished = datetime.fromisoformat(record.finished_at)
        return (finished - datetime.fromisoformat(record.created_at)).total_seconds()
    except (TypeError, ValueError):
        return None


def _duration(seconds: float | None) -> str:
    if not _is_number(seconds):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
