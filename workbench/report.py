"""The report of a sweep (or of any results table): an HTML page and a Markdown version, with PNG
figures beside them, written to a directory in one step (a report is complete or absent).

Figures: training time against data size per worker count (linear and log-log), time against
worker count per data size, box plots per cell, ROC AUC and PR AUC against worker count and ratio,
and the Ernest fit. Tables: cell summaries, speed-up and parallel efficiency, the one-way ANOVA
and Tukey HSD groupings of worker counts for each ratio (time and ROC AUC), the smallest data size
at which each worker count is significantly faster, the Ernest model, each axis's effect relative
to the baseline cell, and the cells that failed or saw faults.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from . import analysis as A
from .errors import DataError

__all__ = ["write_report", "Report"]


@dataclass
class Report:
    directory: Path
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)


def write_report(source, out: str | os.PathLike | None = None, *, runs_dir=None, time: str = A.TIME,
                 columns: dict[str, str] | None = None, baseline: dict | None = None, alpha: float = 0.05,
                 title: str | None = None) -> Report:
    """Analyse ``source`` (a sweep id, a CSV/Parquet path or a DataFrame) and write the report to
    ``out`` (default ``reports/<sweep id or file stem>``)."""
    table = A.load_results(source, runs_dir=runs_dir, columns=columns, time=time)
    sweep = table.attrs.get("sweep")
    name = sweep["id"] if sweep else (Path(os.fspath(source)).stem if not isinstance(source, pd.DataFrame) else "results")
    out = Path(out) if out is not None else Path("reports") / name
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o777 & ~umask)
    try:
        sections = _Builder(table, temporary, time=time, alpha=alpha, sweep=sweep, baseline=baseline,
                            title=title or f"Sweep {name}", runs_dir=runs_dir).build()
        (temporary / "index.html").write_text(sections.html())
        (temporary / "report.md").write_text(sections.markdown())
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(temporary, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    figures = sorted((out / "figures").glob("*.png"))
    return Report(out, out / "index.html", out / "report.md", figures)


# ---------------------------------------------------------------- content


class _Doc:
    """Sections rendered twice: HTML (the template ``workbench/templates/report.html.j2``) and Markdown."""

    def __init__(self, title: str, unit: str = "workers"):
        self.title = title
        self.unit = unit
        self.parts: list[dict] = []

    def words(self, text: str | None) -> str | None:
        """The text in the sweep's scaling unit: a nodes sweep's report speaks of nodes, not workers."""
        if text is None or self.unit == "workers":
            return text
        return re.sub(r"\bworker(s?)\b", lambda m: "node" + m.group(1), text)

    def heading(self, text: str, level: int = 2):
        self.parts.append({"kind": "heading", "level": level, "text": self.words(text)})

    def text(self, text: str):
        self.parts.append({"kind": "text", "text": self.words(text)})

    def table(self, frame: pd.DataFrame, caption: str | None = None, index: bool = False):
        shown = _formatted(frame)
        caption = self.words(caption)
        header = [self.words(str(h)) for h in ([shown.index.name or ""] if index else []) + list(shown.columns)]
        rows = [([str(i)] if index else []) + [_cell(v) for v in row]
                for i, row in zip(shown.index, shown.itertuples(index=False))]
        self.parts.append({"kind": "table", "caption": caption, "header": header, "rows": rows, "index": index})

    def figure(self, path: str, caption: str):
        self.parts.append({"kind": "figure", "path": path, "caption": self.words(caption)})

    def html(self) -> str:
        return _templates().get_template("report.html.j2").render(title=self.title, parts=self.parts)

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for part in self.parts:
            kind = part["kind"]
            if kind == "heading":
                lines += ["#" * part["level"] + " " + part["text"], ""]
            elif kind == "text":
                lines += [part["text"], ""]
            elif kind == "table":
                if part["caption"]:
                    lines += [f"*{part['caption']}*", ""]
                lines += [_markdown_table(part["header"], part["rows"]), ""]
            elif kind == "figure":
                lines += [f"![{part['caption']}]({part['path']})", ""]
        return "\n".join(lines)


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _formatted(frame: pd.DataFrame) -> pd.DataFrame:
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            values = shown[column].dropna()
            whole = len(values) and bool((values == values.round()).all()) and bool((values.abs() >= 100).any())
            shown[column] = shown[column].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}") if whole \
                else shown[column].map(_number)
        elif pd.api.types.is_integer_dtype(shown[column]) and column not in ("workers", "trial", "seed", "cells"):
            shown[column] = shown[column].map(lambda v: f"{v:,}")
    shown.columns = [str(c) for c in shown.columns]
    shown.index = [str(i) for i in shown.index]
    return shown


def _number(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e6):
        return f"{value:.3e}"
    return f"{value:.4g}" if magnitude < 100 else f"{value:,.1f}"


def _cell(value) -> str:
    return "–" if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


class _Builder:
    def __init__(self, table, directory: Path, *, time, alpha, sweep, baseline, title, runs_dir=None):
        self.table, self.directory, self.time, self.alpha = table, directory, time, alpha
        self.runs_dir = runs_dir
        self.sweep, self.baseline = sweep, baseline
        self.unit = table.attrs.get("unit", "workers")
        self.doc = _Doc(title, self.unit)
        self.figures = directory / "figures"
        self.figures.mkdir()
        self.size = "ratio" if "ratio" in table.columns else "rows"
        self.sizes = A.size_order(table, self.size)
        self.workers = sorted(table["workers"].unique())
        self.metrics = [m for m in ("roc_auc", "pr_auc") if m in table.columns and table[m].notna().any()]

    def build(self) -> _Doc:
        self._overview()
        self._shared_split()
        self._uncertainty()
        self._figures()
        self._speedup()
        self._statistics()
        self._ernest()
        self._effects()
        self._faults()
        return self.doc

    # ------------------------------------------------------------ sections

    def _overview(self):
        t, d = self.table, self.doc
        if self.sweep:
            spec = self.sweep["spec"]
            axes = ", ".join(f"{k} {v}" for k, v in spec.get("axes", {}).items())
            d.text(f"Sweep {self.sweep['id']}: {self.sweep['planned']} cells planned ({axes}; {spec.get('trials')} trials), "
                   f"{self.sweep['succeeded']} succeeded, {self.sweep['failed']} failed.")
        d.text(f"{len(t)} measured cells; time measure: {self.time}; worker counts {', '.join(map(str, self.workers))}; "
               f"data sizes ({self.size}) {', '.join(map(str, self.sizes))}. Significance level {self.alpha}.")
        if "rows" in t.columns and self.size == "ratio":
            rows = t.groupby("ratio")["rows"].median().reindex(self.sizes)
            d.table(pd.DataFrame({"ratio": rows.index, "training rows (median)": rows.to_numpy()}),
                    "Data size: training rows after RUS, per ratio")
        d.heading("Cells")
        summary = A.summary(t, self.time, self.size)
        for metric in self.metrics:
            summary = summary.merge(t.groupby([self.size, "workers"])[metric].mean().rename(f"{metric} (mean)").reset_index(),
                                    on=[self.size, "workers"])
        d.table(summary, f"{self.time} per cell (seconds) and mean metrics")

    def _shared_split(self):
        """The read and split that cells shared (a sweep's ``reuse``), once per group, apart from the cells."""
        t = self.table
        if not self.sweep or "run_id" not in t.columns:
            return
        from .stores.runs import RunStore

        store = RunStore(self.runs_dir)
        groups: dict[str, dict] = {}
        cold = 0
        for run_id, workers in zip(t["run_id"], t["workers"]):
            reuse = store.get(run_id).data.get("split_reuse") if isinstance(run_id, str) else None
            if not reuse:
                continue  # recorded before cells shared their split
            if reuse["role"] not in ("built", "reused"):
                cold += 1
                continue
            group = groups.setdefault(reuse["group"], {"group": reuse["group"], "workers": workers, "cells": 0,
                                                       "reused": 0, "read (s)": 0.0, "split (s)": 0.0})
            group["cells"] += 1
            if reuse["role"] == "reused":
                group["reused"] += 1
            else:  # the cell that read and split for the group (again, if the split was released and rebuilt)
                group["read (s)"] += reuse["read_seconds"]
                group["split (s)"] += reuse["split_seconds"]
        if not groups and not cold:
            return
        d = self.doc
        d.heading("Shared read and split")
        if not groups:
            d.text(f"None: every cell read and split its data itself ({cold} cells; reuse off, or a split that would "
                   "not fit in the workers' memory: each run's data.split_reuse says which).")
            return
        frame = pd.DataFrame(list(groups.values()))
        frame["shared per cell (s)"] = (frame["read (s)"] + frame["split (s)"]) / frame["cells"]
        d.text("Cells with the same data, split settings and workers share one split, persisted on the workers. "
               "The first cell of a group reads and splits (its read and split phases hold that time, and its split "
               "phase includes persisting the sets); the others record read and split as 0 s. So train_seconds "
               "measures the same work either way, and a reused cell's end-to-end time as a cold cell would have it is "
               "its `seconds` plus its group's read + split below."
               + (f" {cold} cell(s) read and split their data themselves (the cold path)." if cold else ""))
        d.table(frame, "Read and split once per group (seconds)")

    def _uncertainty(self):
        t, d = self.table, self.doc
        intervals = [m for m in self.metrics if f"{m}_low" in t.columns and t[f"{m}_low"].notna().any()]
        pairs = self._paired_between_sizes() if "run_id" in t.columns and self.size == "ratio" else pd.DataFrame()
        if not intervals and pairs.empty:
            return
        d.heading("Uncertainty: intervals and paired tests")
        if intervals:
            keys = [c for c in (self.size, "workers", "trial") if c in t.columns]
            cells = t[keys + [c for m in intervals for c in (m, f"{m}_low", f"{m}_high")]].sort_values(keys)
            d.text("Each cell's ROC AUC with DeLong's 95 % interval and its PR AUC with a stratified bootstrap interval, "
                   "exact on its own test rows (docs/metrics.md). Intervals that overlap do not show two cells equal; "
                   "the paired tests below compare cells on the same rows.")
            d.table(cells, "Cells with their intervals")
        if not pairs.empty:
            d.text("DeLong's paired test between the ratios of each worker count and trial, on the same test rows "
                   "(the cells' kept test scores); p-values Holm-adjusted within each worker count and trial.")
            d.table(pairs, "Paired tests of ROC AUC between ratios")

    def _paired_between_sizes(self) -> pd.DataFrame:
        from .comparison import comparable, paired_tests
        from .stores.runs import RunStore

        t = self.table
        store = RunStore(self.runs_dir)
        out = []
        for (workers, trial), group in t.dropna(subset=["run_id"]).groupby(["workers", "trial"], sort=True):
            records = [store.get(run_id) for run_id in group["run_id"]]
            usable = [(size, r) for size, r in zip(group[self.size], records) if comparable(r)]
            by_rows: dict[str, list] = {}
            for size, record in usable:
                by_rows.setdefault(record.data["test_rows_fingerprint"], []).append((size, record))
            for members in by_rows.values():
                if len({size for size, _ in members}) < 2:
                    continue
                tests = paired_tests([str(size) for size, _ in members], [r for _, r in members])
                for test in tests:
                    out.append({"workers": workers, "trial": trial, f"{self.size} a": test["a"],
                                f"{self.size} b": test["b"], "ΔROC AUC": test["delta"], "low": test["low"],
                                "high": test["high"], "p": test["p_value"],
                                "p (Holm)": test["p_holm"] if test["p_holm"] is not None else test["p_value"]})
        return pd.DataFrame(out)

    def _figures(self):
        from matplotlib.figure import Figure

        t, d = self.table, self.doc
        d.heading("Figures")
        medians = t.groupby([self.size, "workers"])[self.time].median()
        x_of = (t.groupby(self.size)["rows"].median() if "rows" in t.columns and t["rows"].notna().any()
                else pd.Series({s: A.ratio_value(s) for s in self.sizes}))
        xlabel = "training rows (after RUS)" if "rows" in t.columns else "majority rows per minority row"
        for log in (False, True):
            fig = Figure(figsize=(7, 4.5))
            ax = fig.subplots()
            for w in self.workers:
                pts = [(x_of[s], medians[(s, w)]) for s in self.sizes if (s, w) in medians.index]
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, marker="o", label=self.doc.words(f"{w} worker(s)"))
            if log:
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{self.time} (median, s)")
            ax.set_title("Training time vs data size" + (" (log-log)" if log else ""))
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            name = "time_vs_size_loglog.png" if log else "time_vs_size.png"
            self._save(fig, name, "Training time vs data size per worker count" + (", log-log" if log else ", linear"))

        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        for s in self.sizes:
            pts = [(w, medians[(s, w)]) for w in self.workers if (s, w) in medians.index]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", label=f"{self.size} {s}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(self.workers, [str(w) for w in self.workers])
        ax.set_xlabel(self.unit)
        ax.set_ylabel(f"{self.time} (median, s)")
        ax.set_title(self.doc.words("Training time vs worker count per data size"))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        self._save(fig, "time_vs_workers.png", "Training time vs worker count per data size")

        cells = [(s, w) for s in self.sizes for w in self.workers if ((t[self.size] == s) & (t["workers"] == w)).any()]
        fig = Figure(figsize=(max(7, 0.5 * len(cells) + 2), 4.5))
        ax = fig.subplots()
        data = [t[(t[self.size] == s) & (t["workers"] == w)][self.time].to_numpy() for s, w in cells]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(cells) + 1), [f"{s}\n{w}w" for s, w in cells], fontsize="small")
        ax.set_ylabel(f"{self.time} (s)")
        ax.set_title(self.doc.words("Training time per cell (data size, workers)"))
        ax.grid(True, axis="y", alpha=0.3)
        self._save(fig, "boxplots.png", "Box plots of training time per cell")

        if self.metrics:
            for along, lines, name in (("workers", self.sizes, "auc_vs_workers.png"), (self.size, self.workers, "auc_vs_ratio.png")):
                fig = Figure(figsize=(10, 4))
                axes = fig.subplots(1, len(self.metrics), squeeze=False)[0]
                for ax, metric in zip(axes, self.metrics):
                    means = t.groupby([self.size, "workers"])[metric].mean()
                    for line in lines:
                        if along == "workers":
                            pts = [(w, means[(line, w)]) for w in self.workers if (line, w) in means.index]
                            label = f"{self.size} {line}"
                        else:
                            pts = [(i, means[(s, line)]) for i, s in enumerate(self.sizes) if (s, line) in means.index]
                            label = self.doc.words(f"{line} worker(s)")
                        if pts:
                            xs, ys = zip(*pts)
                            ax.plot(xs, ys, marker="o", label=label)
                    if along == "workers":
                        ax.set_xscale("log", base=2)
                        ax.set_xticks(self.workers, [str(w) for w in self.workers])
                        ax.set_xlabel(self.unit)
                    else:
                        ax.set_xticks(range(len(self.sizes)), [str(s) for s in self.sizes], rotation=45, fontsize="small")
                        ax.set_xlabel(self.size)
                    ax.set_ylabel(f"{metric} (mean)")
                    ax.grid(True, alpha=0.3)
                    ax.legend(fontsize="x-small")
                fig.suptitle(self.doc.words(f"ROC AUC and PR AUC vs {'worker count' if along == 'workers' else self.size}"))
                self._save(fig, name, f"ROC AUC and PR AUC vs {'worker count' if along == 'workers' else self.size}")

    def _save(self, fig, name: str, caption: str):
        fig.tight_layout()
        fig.savefig(self.figures / name, dpi=100)
        self.doc.figure(f"figures/{name}", caption)

    def _speedup(self):
        if len(self.workers) < 2:
            return
        speed, efficiency = A.speedup(self.table, self.time, self.size)
        self.doc.heading("Speed-up and parallel efficiency")
        self.doc.text("Speed-up S(w) = T(w0) / T(w) from median times, w0 the fewest workers measured at that size; "
                      "efficiency = S(w) / (w / w0).")
        self.doc.table(speed.reset_index(), "Speed-up (rows: data size; columns: workers)")
        self.doc.table(efficiency.reset_index(), "Parallel efficiency")

    def _statistics(self):
        if len(self.workers) < 2:
            return
        d = self.doc
        d.heading("ANOVA and Tukey HSD of worker counts, per data size")
        d.text("One-way ANOVA (statsmodels ols + anova_lm, type II) of each response against the worker count as a "
               "factor, and Tukey HSD (pairwise_tukeyhsd): worker counts sharing a letter are not significantly different.")
        for response in [self.time, *self.metrics[:1]]:
            anovas = A.anova(self.table, response, "workers", self.size)
            tukeys = A.tukey(self.table, response, "workers", self.size, self.alpha)
            for size in self.sizes:
                d.heading(f"{response}, {self.size} {size}", 3)
                result = anovas.get(size)
                if isinstance(result, str) or result is None:
                    d.text(f"Not tested: {result}.")
                    continue
                d.table(result.reset_index().rename(columns={"index": "source"}), "ANOVA")
                groups = A.tukey_groups(tukeys[size])
                d.table(groups.rename(columns={"level": "workers"}), "Tukey HSD groupings")
                d.table(A.tukey_table(tukeys[size]), "Tukey HSD pairs")
        d.heading("Where more workers pay off")
        d.text(f"The smallest data size at which each worker count is significantly faster (Tukey HSD, α = {self.alpha}) "
               "than every smaller worker count, and than the next smaller one; – means at none of the sizes measured.")
        d.table(A.crossover(self.table, self.time, self.alpha, self.size))

    def _ernest(self):
        t = self.table
        if "rows" not in t.columns or t["rows"].isna().all() or len(t) < 5:
            return
        d = self.doc
        try:
            model = A.fit_ernest(t, self.time)
        except DataError as exc:
            d.heading("Performance model")
            d.text(f"Not fitted: {exc}")
            return
        d.heading("Performance model (Ernest) and cluster-size recommendation")
        d.text("t ≈ θ0 + θ1·(rows/workers) + θ2·log(workers) + θ3·workers, fitted by non-negative least squares "
               "(Venkataraman et al., NSDI'16). `workbench recommend --rows N` picks the worker count with the smallest "
               "predicted time and the cheapest one within 10 % of it.")
        d.table(model.coefficients(), "Coefficients")
        d.table(pd.DataFrame([model.quality()]), "Fit quality")
        from matplotlib.figure import Figure

        fig = Figure(figsize=(10, 4))
        left, right = fig.subplots(1, 2)
        predicted = model.predict(t["rows"], t["workers"])
        left.scatter(t[self.time], predicted, s=12)
        top = float(max(t[self.time].max(), predicted.max())) * 1.05
        left.plot([0, top], [0, top], color="grey", lw=1)
        left.set_xlabel(f"measured {self.time} (s)")
        left.set_ylabel("predicted (s)")
        left.set_title(f"Measured vs predicted (R² {model.r2:.3f})")
        grid = np.geomspace(max(1, t["rows"].min()), t["rows"].max() * 4, 50)
        for w in self.workers:
            right.plot(grid, model.predict(grid, np.full_like(grid, w)), label=self.doc.words(f"{w} worker(s)"))
            sub = t[t["workers"] == w]
            right.scatter(sub["rows"], sub[self.time], s=8)
        right.set_xscale("log")
        right.set_xlabel("training rows")
        right.set_ylabel("time (s)")
        right.set_title("Model curves and measurements")
        right.legend(fontsize="small")
        self._save(fig, "ernest_fit.png", "Ernest model: measured vs predicted, and predicted time per worker count")
        rows = sorted({int(r) for r in t.groupby(self.size)["rows"].median()}) + [int(t["rows"].max() * 10)]
        examples = []
        for n in rows:
            rec = A.recommend(model, n, self.workers)
            best = rec.table.set_index("workers").loc[rec.fastest]
            examples.append({"rows": n, "fastest": rec.fastest, "predicted (s)": best["predicted (s)"],
                             "95 % interval": f"{best['lower (s)']:.3g}–{best['upper (s)']:.3g}",
                             "cheapest within 10 %": rec.cheapest})
        d.table(pd.DataFrame(examples), "Recommendations at the measured sizes (and 10× the largest)")

    def _effects(self):
        t = self.table
        if self.sweep:
            spec = self.sweep["spec"]
            axes = spec.get("axes", {})
            baseline = {k: spec.get("baseline", {}).get(k, v[0]) for k, v in axes.items()}
        else:
            axes = {"workers": self.workers}
            if "ratio" in t.columns:
                axes["ratio"] = self.sizes
            baseline = {k: v[0] for k, v in axes.items()}
        baseline.update(self.baseline or {})
        if not axes:
            return
        frame = A.effects(t, axes, baseline, self.time)
        if frame.empty:
            return
        self.doc.heading("Effects relative to the baseline cell")
        self.doc.text("Baseline: " + ", ".join(f"{k} = {v}" for k, v in baseline.items())
                      + ". Each row changes one axis and keeps the others at the baseline; means over the trials, "
                        "and each as % of the baseline cell.")
        first = frame.columns[0]
        self.doc.table(frame.assign(**{first: frame[first].map(lambda v: self.doc.words(v) if isinstance(v, str) else v)}))

    def _faults(self):
        cells = self.table.attrs.get("all_cells")
        if cells is None or cells.empty:
            return
        bad = cells[(cells["status"] != "succeeded") | (cells["faults"].fillna("") != "")]
        self.doc.heading("Failed cells and faults")
        if bad.empty:
            self.doc.text("Every cell succeeded at its first attempt; no faults were recorded.")
            return
        columns = [c for c in ("cell_key", "status", "attempts", "faults", "error", "run_id") if c in bad.columns]
        self.doc.table(bad[columns])
