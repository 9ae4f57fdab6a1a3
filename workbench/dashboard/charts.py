"""The charts of the runs pages: matplotlib figures as inline SVG (no pyplot, no files)."""

from __future__ import annotations

import io
import math
import threading

from ..stores.runs import RunRecord

__all__ = ["roc_chart", "pr_chart", "calibration_chart", "history_chart", "comparison_chart"]

ROC_COLOR = "#2563eb"
PR_COLOR = "#d9480f"
HISTORY_COLORS = ("#2563eb", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#495057")

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


def roc_chart(m: dict) -> str:
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
                label=f"threshold {_threshold(m.get('threshold'))}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("false positive rate", fontsize=9)
    ax.set_ylabel("true positive rate (recall)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _svg(fig)


def pr_chart(m: dict) -> str:
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
                label=f"threshold {_threshold(m.get('threshold'))}")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel("recall", fontsize=9)
    ax.set_ylabel("precision", fontsize=9)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return _svg(fig)


def calibration_chart(m: dict) -> str:
    """The reliability diagram: mean predicted probability against the fraction of positives, per bin."""
    c = m["calibration"]
    fig = _new_figure(3.6, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    ax.plot([0, 1], [0, 1], color="#adb5bd", linestyle="--", linewidth=1, label="perfectly calibrated")
    label = "corrected for RUS" if c.get("corrected") else "as trained"
    ax.plot(c["prob_pred"], c["prob_true"], "o-", color=ROC_COLOR, linewidth=1.6, markersize=4, label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal")
    ax.set_xlabel(f"mean predicted probability ({c.get('bins')} bins)", fontsize=9)
    ax.set_ylabel("fraction of positives", fontsize=9)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _svg(fig)


def history_chart(history: dict, best_iteration: int | None) -> str:
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


def comparison_chart(records: list[RunRecord]) -> str:
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


def _threshold(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"
