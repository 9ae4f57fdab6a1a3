"""One way to show a recorded run.

:func:`run_view` decodes a :class:`~workbench.stores.runs.RunRecord` into a :class:`RunView` of
display strings: headline metrics, confusion matrices, data facts, timings, the model section its
model type's ``show`` returns, artifacts, seeds, cluster and versions. :func:`format_text` prints it
for ``workbench run`` and ``workbench runs show``; the dashboard's templates render the same view as
the runs pages. Durations and sizes are formatted by :func:`dask.utils.format_time` and
:func:`dask.utils.format_bytes`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dask.utils import format_bytes, format_time

from .stores.runs import DATABASE_NAME, RunRecord
from .train.registry import MODEL_TYPES, ModelView

__all__ = ["RunView", "Stat", "Confusion", "Fact", "Timing", "Table", "run_view", "format_text", "table", "cell",
           "value_text", "number", "integer", "duration", "percent", "DASH"]

DASH = "–"
TABLE_ROWS = 50  # rows of a model table a view keeps; the record has them all
TEXT_ROWS = 10  # rows of a model table the CLI prints
PLOTS = ("pr_png", "roc_png", "calibration_png", "confusion_png", "importances_png")
PARTS = (("train", "train"), ("valid", "validation"), ("sampled", "train after RUS"), ("test", "test"))


@dataclass(frozen=True)
class Stat:
    """One headline number: ``label``, its ``value`` and a short ``hint`` under it."""

    label: str
    value: str
    hint: str = ""


@dataclass(frozen=True)
class Confusion:
    """A confusion matrix at ``threshold``; ``corrected`` for the one after the RUS correction."""

    corrected: bool
    threshold: str
    tn: str
    fp: str
    fn: str
    tp: str
    precision: str
    recall: str
    f1: str
    brier: str


@dataclass(frozen=True)
class Fact:
    """One row of a run's data facts: ``value`` and a quieter ``note`` beside it."""

    label: str
    value: str
    note: str = ""


@dataclass(frozen=True)
class Timing:
    phase: str
    seconds: float
    text: str  # format_time(seconds)
    share: float  # of the longest phase, 0..1 (the bars of the runs page)


@dataclass(frozen=True)
class Table:
    """A titled table of formatted cells; ``more`` rows were left out."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    more: int = 0


@dataclass(frozen=True)
class RunView:
    """What a run shows, decoded once from its record: the CLI prints it, the runs pages render it."""

    id: str
    name: str
    status: str
    error: str | None
    created_at: str
    created: str  # "YYYY-MM-DD HH:MM:SS" (UTC)
    finished_at: str | None
    wall_seconds: float | None
    wall_time: str
    # metrics
    roc_auc: float | None
    pr_auc: float | None
    headline: tuple[Stat, ...]
    test_rows: str
    confusion: tuple[Confusion, ...]
    roc_auc_interval: str | None  # "95% CI 0.9401–0.9528 (DeLong)"
    pr_auc_interval: str | None
    threshold: str | None  # how the threshold was set: "0.0731, F1 best on the validation set (F1 0.512 there)"
    probabilities: str | None  # Brier and log loss, raw and after the RUS correction
    calibration: Table | None  # the reliability diagram's bins
    at_k: Table | None  # precision and recall at the review budgets
    paired: Table | None  # DeLong's paired tests between the run's models
    # data
    rows: str | None  # the one-line summary of the row counts, or None when none were recorded
    train_rows: str | None  # "72,000 → 15,840"
    class_ratio: tuple[str, str] | None  # before and after RUS
    facts: tuple[Fact, ...]
    timings: tuple[Timing, ...]
    timings_total: str
    # the model type's section
    model_type: str | None
    model: ModelView
    model_tables: tuple[Table, ...]
    importances: Table | None
    # where, with what
    artifacts: tuple[tuple[str, str], ...]  # name -> path of the file
    model_file: str | None
    plots: tuple[str, ...]  # file names of the PNG plots
    run_directory: str
    database: str
    seeds: dict
    cluster: dict
    workers: str  # "2 × 4": workers × threads
    versions: dict
    history: tuple[str, ...]  # "valid auc: 4 rounds, first 0.8100, last 0.8850"
    spec: dict = field(repr=False)


def run_view(record: RunRecord) -> RunView:
    """Decode ``record`` for display. Only what was recorded is shown: failed, running and partly
    recorded runs (and runs recorded by other tools, e.g. ``benchio``) decode too."""
    m, d = record.metrics, record.data
    wall = _wall_seconds(record)
    model_type = d.get("model_type")
    entry = _model_type(model_type, d)
    model = entry.show(d) if entry is not None else ModelView()
    path = Path(record.path)
    model_name = record.artifacts.get("model")
    train, sampled = _get(d, "train", "rows"), _get(d, "sampled", "rows")
    ratio = d.get("class_ratio")
    return RunView(
        id=record.id, name=record.name, status=record.status, error=record.error,
        created_at=record.created_at, created=_when(record.created_at), finished_at=record.finished_at,
        wall_seconds=wall, wall_time=duration(wall),
        roc_auc=m.get("roc_auc"), pr_auc=m.get("pr_auc"),
        headline=_headline(m, d) if m.get("roc_auc") is not None else (),
        test_rows=integer(m.get("n", _get(d, "test", "rows"))),
        confusion=_confusions(m),
        roc_auc_interval=_interval(m.get("roc_auc_ci"), m.get("level"), "DeLong"),
        pr_auc_interval=_interval(m.get("pr_auc_ci"), m.get("level"), _pr_method(m)),
        threshold=_threshold_line(m),
        probabilities=_probabilities_line(m),
        calibration=_calibration_table(m.get("calibration")),
        at_k=table("precision and recall at the review budgets", [_at_k_row(a) for a in m["at_k"]])
        if isinstance(m.get("at_k"), list) and m["at_k"] else None,
        paired=table("DeLong's paired test between the models (same test rows)", [_paired_row(t) for t in d["paired"]])
        if isinstance(d.get("paired"), list) and d["paired"] else None,
        rows=_rows_line(d),
        train_rows=None if train is None else f"{integer(train)} → {integer(sampled)}",
        class_ratio=(str(ratio.get("before", DASH)), str(ratio.get("after", DASH))) if isinstance(ratio, dict) else None,
        facts=_facts(d, others=entry is None),
        timings=_timings(record.timings),
        timings_total=duration(sum(v for v in record.timings.values() if _is_number(v))),
        model_type=model_type,
        model=model,
        model_tables=tuple(table(title, rows) for title, rows in model.tables.items()),
        importances=(table(f"feature importances ({d.get('importances_of', 'model')})", d["importances"])
                     if isinstance(d.get("importances"), list) and d["importances"] else None),
        artifacts=tuple((name, str(path / file)) for name, file in record.artifacts.items()),
        model_file=str(path / model_name) if model_name else None,
        plots=tuple(Path(record.artifacts[name]).name for name in PLOTS if name in record.artifacts),
        run_directory=str(path),
        database=str(path.parent / DATABASE_NAME),
        seeds=record.seeds,
        cluster=record.cluster,
        workers=(DASH if record.cluster.get("workers") is None
                 else f"{integer(record.cluster.get('workers'))} × {integer(record.cluster.get('threads'))}"),
        versions=record.versions,
        history=tuple(f"{name} {metric}: {len(values)} rounds, first {number(values[0])}, last {number(values[-1])}"
                      for name, metrics in record.history.items() for metric, values in metrics.items() if values),
        spec=record.spec,
    )


def _model_type(name: Any, data: dict):
    """The registry's entry for the run's model type, None for an unknown (or unregistered) one."""
    if name is None and "best_iteration" in data:
        name = "xgboost"  # runs recorded before there were model types trained XGBoost
    return MODEL_TYPES.get(name) if isinstance(name, str) else None


# ---------------------------------------------------------------- the CLI's text


def format_text(view: RunView, *, details: bool = True) -> str:
    """The run as ``workbench runs show`` prints it; ``details=False`` leaves out the lines after
    the metrics and files (created, seeds, cluster, versions, history, other data), as after
    ``workbench run``."""
    lines = [f"run {view.id} ({view.name}) {view.status}" + (f": {view.error}" if view.error else "")]

    def line(label: str, text: str) -> None:
        lines.append(f"  {label:<13} {text}".rstrip())

    if view.rows:
        line("rows", view.rows)
    if view.class_ratio:
        line("class ratio", f"{view.class_ratio[0]} before RUS -> {view.class_ratio[1]} after")
    if view.timings:
        line("timings", "  ".join(f"{t.phase} {t.text}" for t in view.timings))
    for i, text in enumerate(view.model.lines):
        line("model" if i == 0 else "", text)
    for model_table in view.model_tables:
        lines.extend(_text_table(model_table, view.id))
    if view.roc_auc is not None:
        line("ROC AUC", f"{number(view.roc_auc)}" + (f"  {view.roc_auc_interval}" if view.roc_auc_interval else "")
             + f"  (exact, on {view.test_rows} held-out test rows)")
        line("PR AUC", f"{number(view.pr_auc)}" + (f"  {view.pr_auc_interval}" if view.pr_auc_interval else "")
             + "  (average precision)")
    if view.threshold:
        line("threshold", view.threshold)
    for c in view.confusion:
        label, where = ("corrected", "for RUS (Dal Pozzolo)") if c.corrected else ("confusion", f"at threshold {c.threshold}")
        line(label, f"{where}: tn {c.tn}  fp {c.fp}  fn {c.fn}  tp {c.tp}  (precision {c.precision}, recall {c.recall})")
    if view.at_k:
        line("at k", "; ".join(f"top {r[0]}: precision {r[2]}, recall {r[3]}" for r in view.at_k.rows))
    if view.probabilities:
        line("probabilities", view.probabilities)
    if view.calibration:
        line("calibration", "  ".join(f"{r[0]}→{r[1]}" for r in view.calibration.rows)
             + "  (mean predicted → fraction positive, per bin)")
    if view.paired:
        for r in view.paired.rows:
            line("paired", f"{r[0]}: ΔAUC {r[1]} ({r[2]}), p {r[3]}" + (f" (Holm {r[4]})" if r[4] != DASH else ""))
    if view.status != "running":
        line("recorded in", view.database + (f"  (model: {view.model_file})" if view.model_file else ""))
    if view.plots:
        line("plots", f"{', '.join(view.plots)} in {view.run_directory}")
    if details:
        line("created", f"{view.created_at}  finished {view.finished_at or DASH}" + (
            f"  (wall time {view.wall_time})" if view.wall_seconds is not None else ""))
        line("seeds", json.dumps(view.seeds))
        line("cluster", json.dumps(view.cluster))
        line("versions", ", ".join(f"{k} {v}" for k, v in view.versions.items()))
        for text in view.history:
            line("history", text)
        for fact in view.facts:
            if fact.label not in _TEXT_FACTS:
                line("data", f"{fact.label}: {fact.value}" + (f" {fact.note}" if fact.note else ""))
    return "\n".join(lines)


# facts that the rows and class-ratio lines already say
_TEXT_FACTS = {"rows in files", "train", "validation", "train after RUS", "test", "class ratio", "features"}


def _text_table(t: Table, run_id: str) -> list[str]:
    shown = t.rows[:TEXT_ROWS]
    more = t.more + len(t.rows) - len(shown)
    widths = [max(len(c), *(len(r[i]) for r in shown)) for i, c in enumerate(t.columns)]
    indent = " " * 16

    def row(cells) -> str:
        return indent + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths)).rstrip()

    out = [f"  {t.title}:", row(t.columns), *(row(r) for r in shown)]
    if more:
        out.append(f"{indent}… {more:,} more: workbench runs show {run_id} --json")
    return out


# ---------------------------------------------------------------- decoding


def _headline(m: dict, d: dict) -> tuple[Stat, ...]:
    test = d.get("test") or {}
    n, positive = m.get("n", test.get("rows")), m.get("n_positive", test.get("positive"))
    threshold = _threshold(m.get("threshold"))
    return (
        Stat("ROC AUC", number(m.get("roc_auc")),
             _interval(m.get("roc_auc_ci"), m.get("level"), "DeLong") or "exact, test set"),
        Stat("PR AUC", number(m.get("pr_auc")), _interval(m.get("pr_auc_ci"), m.get("level"), _pr_method(m))
             or "average precision"),
        Stat("test rows", integer(n), f"{integer(positive)} positive ({percent(positive, n)})"),
        Stat(f"precision @ {threshold}", number(m.get("precision"), 3)),
        Stat(f"recall @ {threshold}", number(m.get("recall"), 3)),
        Stat("F1", number(m.get("f1"), 3)),
        Stat("Brier", number(m.get("brier")), "lower is better"),
    )


def _confusions(m: dict) -> tuple[Confusion, ...]:
    threshold = _threshold(m.get("threshold"))
    found = []
    # The corrected confusion is shown at a threshold the file gave only: at a chosen one it is the
    # same matrix, and at an unchosen default it says nothing (a 0.5 cut of corrected probabilities
    # of a rare class predicts no positive).
    shown = (False, True) if m.get("threshold_rule", "number") == "number" else (False,)
    for corrected, c in ((False, m), (True, m.get("corrected"))):
        if corrected not in shown:
            continue
        if isinstance(c, dict) and "tp" in c:
            found.append(Confusion(corrected, threshold, integer(c["tn"]), integer(c["fp"]), integer(c["fn"]),
                                   integer(c["tp"]), number(c.get("precision"), 3), number(c.get("recall"), 3),
                                   number(c.get("f1"), 3), number(c.get("brier"))))
    return tuple(found)


def _interval(ci: Any, level: Any, method: str) -> str | None:
    if not (isinstance(ci, list) and len(ci) == 2 and all(_is_number(v) for v in ci)):
        return None
    return f"{level:.0%} CI {number(ci[0])}–{number(ci[1])} ({method})" if _is_number(level) else None


def _pr_method(m: dict) -> str:
    return "bootstrap" if m.get("pr_auc_ci_method") == "bootstrap" else "logit, Boyd et al."


def _threshold_line(m: dict) -> str | None:
    rule, choice = m.get("threshold_rule"), m.get("threshold_choice")
    if rule is None:
        return None
    value = m.get("threshold")
    cut = "none (no row predicted positive)" if value is None else number(value)
    corrected = _get(m, "corrected", "threshold")
    after = f"; {number(corrected)} after the RUS correction" if _is_number(corrected) else ""
    if isinstance(choice, dict):
        if choice.get("rule") == "cost":
            costs = choice.get("costs") or {}
            how = (f"least cost on the validation set (fp {value_text('fp', costs.get('fp'))}, "
                   f"fn {value_text('fn', costs.get('fn'))}: {number(choice.get('value'))} per row there)")
        else:
            how = f"F1 best on the validation set (F1 {number(choice.get('value'), 3)} there)"
        return f"{cut}, {how}{after}"
    if rule == "default":
        return f"{cut}, the default: no validation set to choose one on (split.validation_size)"
    return f"{cut}, as the pipeline file gives it"


def _probabilities_line(m: dict) -> str | None:
    if not _is_number(m.get("log_loss")):
        return None
    raw = f"Brier {number(m.get('brier'))}, log loss {number(m.get('log_loss'))}"
    corrected = m.get("corrected") if isinstance(m.get("corrected"), dict) else {}
    if _is_number(corrected.get("log_loss")):
        return (f"{raw} as trained; Brier {number(corrected.get('brier'))}, log loss "
                f"{number(corrected.get('log_loss'))} after the RUS correction")
    return raw


def _calibration_table(c: Any) -> Table | None:
    if not isinstance(c, dict) or not c.get("prob_pred"):
        return None
    title = "calibration" + (" after the RUS correction" if c.get("corrected") else "")
    rows = [{"predicted": p, "observed": t, "rows": n}
            for p, t, n in zip(c["prob_pred"], c["prob_true"], c.get("counts", []))]
    return Table(title, ("predicted", "observed", "rows"),
                 tuple((number(r["predicted"], 3), number(r["observed"], 3), integer(r["rows"])) for r in rows))


def _at_k_row(a: dict) -> dict:
    budget = a.get("budget")
    shown = f"{budget:.2%} ({integer(a.get('k'))})" if isinstance(budget, float) else integer(a.get("k"))
    return {"budget": shown, "threshold": a.get("threshold"), "precision": number(a.get("precision"), 3),
            "recall": number(a.get("recall"), 3)}


def _paired_row(t: dict) -> dict:
    level = t.get("level")
    return {"models": f"{t.get('a')} vs {t.get('b')}", "delta": f"{t.get('delta', 0):+.4f}",
            "interval": (f"{level:.0%} CI {t.get('low'):+.4f} to {t.get('high'):+.4f}"
                         if _is_number(level) and _is_number(t.get("low")) and _is_number(t.get("high")) else DASH),
            "p": _p(t.get("p_value")), "p_holm": _p(t.get("p_holm"))}


def _p(value: Any) -> str:
    if not _is_number(value):
        return DASH
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _rows_line(d: dict) -> str | None:
    pieces = []
    if "rows_in_files" in d:
        pieces.append(f"{integer(d['rows_in_files'])} in files")
    train, sampled, test = d.get("train"), d.get("sampled"), d.get("test")
    if isinstance(train, dict) and "rows" in train:
        piece = f"train {integer(train['rows'])} ({integer(train.get('positive'))} positive)"
        if isinstance(sampled, dict) and "rows" in sampled:
            piece += f" -> {integer(sampled['rows'])} after RUS"
        pieces.append(piece)
    if isinstance(test, dict) and "rows" in test:
        pieces.append(f"test {integer(test['rows'])} ({integer(test.get('positive'))} positive)")
    return "; ".join(pieces) or None


def _facts(d: dict, *, others: bool) -> tuple[Fact, ...]:
    """The pipeline's data facts; with ``others``, also whatever else fits in a line (for runs
    whose model type is unknown, or that other tools recorded: a model type's own data is what
    its ``show`` returns)."""
    facts = []
    if "rows_in_files" in d:
        facts.append(Fact("rows in files", integer(d["rows_in_files"])))
    if d.get("rows_with_null_target"):
        facts.append(Fact("rows with a null target", integer(d["rows_with_null_target"])))
    for key, label in PARTS:
        part = d.get(key)
        if isinstance(part, dict) and "rows" in part:
            facts.append(Fact(label, integer(part["rows"]),
                              f"({integer(part.get('positive'))} positive, {percent(part.get('positive'), part['rows'])})"))
    ratio = d.get("class_ratio")
    if isinstance(ratio, dict):
        facts.append(Fact("class ratio", f"{ratio.get('before', DASH)} → {ratio.get('after', DASH)} after RUS"))
    if isinstance(d.get("features"), list):
        names = ", ".join(map(str, d["features"][:8])) + (" …" if len(d["features"]) > 8 else "")
        facts.append(Fact("features", str(len(d["features"])), names))
    if d.get("excluded"):
        facts.append(Fact("not features", ", ".join(map(str, d["excluded"]))))
    if "persisted" in d:
        facts.append(Fact("persisted", "yes" if d["persisted"] else "no"))
    if d.get("model_type"):
        facts.append(Fact("model type", str(d["model_type"])))
    if not others:
        return tuple(facts)
    shown = {"rows_in_files", "rows_with_null_target", "train", "valid", "sampled", "test", "persisted",
             "model_type", "importances", "importances_of", *(k for k in ("class_ratio", "features", "excluded")
                                                               if isinstance(d.get(k), (dict, list)))}
    for key, value in d.items():
        if key not in shown and (value is None or isinstance(value, (str, int, float, bool))):
            facts.append(Fact(str(key), value_text(key, value)))
    return tuple(facts)


def _timings(timings: dict) -> tuple[Timing, ...]:
    numbers = {str(k): float(v) for k, v in timings.items() if _is_number(v)}
    longest = max(numbers.values(), default=0) or 1
    return tuple(Timing(phase, seconds, duration(seconds), seconds / longest) for phase, seconds in numbers.items())


def table(title: str, rows: list[dict], limit: int = TABLE_ROWS) -> Table:
    """``rows`` (dicts) as a :class:`Table`: the columns of the first ``limit`` rows, cells by :func:`cell`."""
    kept = [row for row in rows[:limit] if isinstance(row, dict)]
    columns = tuple(dict.fromkeys(str(k) for row in kept for k in row))
    cells = tuple(tuple(cell(c, row.get(c)) for c in columns) for row in kept)
    return Table(title, columns, cells, max(0, len(rows) - limit))


# ---------------------------------------------------------------- formatting


def cell(column: str, value: Any) -> str:
    """A table cell: durations (``*seconds``, ``*_time``) by format_time, sizes (``*bytes``,
    ``*memory*``) by format_bytes, other floats to 4 decimals."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    if isinstance(value, float) and not _is_size(column) and not _is_duration(column):
        return number(value)
    return value_text(column, value)


def value_text(key: Any, value: Any) -> str:
    """A recorded value under ``key``: sizes by format_bytes, durations by format_time, JSON for the rest."""
    if _is_number(value) and _is_size(key):
        return format_bytes(int(value))
    if _is_number(value) and _is_duration(key):
        return format_time(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return DASH
    return str(value)


def _is_size(key: Any) -> bool:
    key = str(key)
    return "bytes" in key or "memory" in key


def _is_duration(key: Any) -> bool:
    key = str(key)
    return key.endswith("seconds") or key.endswith("_time")


def duration(seconds: Any) -> str:
    return format_time(seconds) if _is_number(seconds) else DASH


def number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else DASH


def integer(value: Any) -> str:
    return f"{value:,.0f}" if _is_number(value) else DASH


def percent(part: Any, whole: Any) -> str:
    if not (_is_number(part) and _is_number(whole)) or not whole:
        return DASH
    share = 100 * part / whole
    return f"{share:.2f}%" if share < 10 else f"{share:.1f}%"


def _threshold(value: Any) -> str:
    """0.5, 0.7905: as the threshold line shows it (4 decimals), without trailing zeros."""
    return f"{value:.4f}".rstrip("0").rstrip(".") if _is_number(value) else DASH


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _get(d: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(iso)


def _wall_seconds(record: RunRecord) -> float | None:
    if not record.finished_at:
        return None
    try:
        return (datetime.fromisoformat(record.finished_at) - datetime.fromisoformat(record.created_at)).total_seconds()
    except (TypeError, ValueError):
        return None
