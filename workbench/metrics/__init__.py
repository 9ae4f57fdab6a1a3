"""Exact evaluation on the held-out test set.

XGBoost's distributed AUC is an approximation that depends on the number of workers. Here the
workers reduce their ``(score, label)`` pairs to counts per distinct score, and scikit-learn computes
ROC AUC and average precision on that table with the counts as sample weights: the same curve, the
same ties, the same number as on the full list of predictions, with no row sent to the client. The
ROC and precision-recall curves come from the same table, thinned to a few hundred points so that
they fit in the run record.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial

import dask
import dask.dataframe as dd
from dask.delayed import Delayed
import numpy as np
import pandas as pd
from scipy.special import expit, logit
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ..data.dataset import Dataset
from . import intervals
from .evaluation import (
    Evaluation,
    choose,
    fingerprint_from,
    fingerprint_graph,
    holm,
    paired_delong_graph,
    report,
)
from .scoring import PROBABILITY, score, score_scale

__all__ = [
    "Metrics", "evaluate", "evaluate_model", "evaluate_models", "score", "score_scale", "score_table", "score_table_graph",
    "metrics_from_table", "curves_from_table", "correct_probabilities", "correct_scores",
    "Evaluation", "RunEvaluation", "evaluate_run",
]

MAX_CURVE_POINTS = 200
CURVE_DIGITS = 6


@dataclass(frozen=True)
class Metrics:
    """Exact metrics of one set of predicted probabilities."""

    roc_auc: float
    pr_auc: float
    n: int
    n_positive: int
    threshold: float
    tn: int
    fp: int
    fn: int
    tp: int
    precision: float
    recall: float
    f1: float
    brier: float
    corrected: dict | None = field(default=None)
    curves: dict | None = field(default=None)
    scale: str = PROBABILITY  # of the scores: "probability", or "decision" (a decision function)
    # With an Evaluation (a pipeline run's metrics section; docs/metrics.md):
    threshold_rule: str = "number"  # "number" (given), "default" (0.5: nothing to choose on), "f1" or "cost"
    threshold_choice: dict | None = field(default=None)  # where and how the threshold was chosen
    level: float | None = None  # of the intervals
    roc_auc_ci: list | None = field(default=None)  # DeLong, logit-transformed
    roc_auc_se: float | None = None
    pr_auc_ci: list | None = field(default=None)
    pr_auc_ci_method: str | None = None
    log_loss: float | None = None
    calibration: dict | None = field(default=None)  # reliability diagram, corrected for RUS if it applied
    at_k: list | None = field(default=None)  # precision and recall at the review budgets

    @property
    def confusion(self) -> np.ndarray:
        """``[[tn, fp], [fn, tp]]`` as scikit-learn's ``confusion_matrix`` lays it out."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def to_dict(self) -> dict:
        return asdict(self)


def score_table(scored: dd.DataFrame, label: str = "label", score: str = "score") -> pd.DataFrame:
    """Distinct scores with their negative and positive counts, reduced on the workers.

    Each partition becomes its own sorted table, and the tables are merged in a tree of
    :data:`MERGE_FANIN` at a time, so only the final table reaches the client. On 800,000 test
    scores (674,000 distinct) this took 0.3 s against 1.3 s for ``groupby([score, label]).size()``
    (measured; benchmarks/README.md). Missing scores are left out, as a groupby leaves them out.
    """
    return score_table_graph(scored, label, score).compute()


def score_table_graph(scored: dd.DataFrame, label: str = "label", score: str = "score") -> Delayed:
    """:func:`score_table` not computed: a Delayed whose result stays on a worker until asked for
    (the evaluation runs there, beside it: a test set's table can be as long as the test set)."""
    tables = [dask.delayed(_partition_table)(part, label, score) for part in scored[[score, label]].to_delayed()]
    while len(tables) > 1:
        tables = [dask.delayed(_merge_tables)(tables[i:i + MERGE_FANIN]) for i in range(0, len(tables), MERGE_FANIN)]
    return dask.delayed(_as_frame)(tables[0] if tables else _merge_tables([]))


def _as_frame(table: tuple) -> pd.DataFrame:
    values, neg, pos = table
    return pd.DataFrame({"score": values, "neg": neg, "pos": pos})


MERGE_FANIN = 8


def _partition_table(part: pd.DataFrame, label: str, score: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = part[score].to_numpy(dtype="float64")
    positive = part[label].to_numpy(dtype="int64")
    keep = ~np.isnan(scores)
    scores, positive = scores[keep], positive[keep]
    return _collapse(scores, 1 - positive, positive)


def _merge_tables(tables: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not tables:
        return np.empty(0, dtype="float64"), np.empty(0, dtype="int64"), np.empty(0, dtype="int64")
    return _collapse(*(np.concatenate([t[k] for t in tables]) for k in range(3)))


def _collapse(scores: np.ndarray, neg, pos) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per distinct score, in increasing order, with the counts summed."""
    if not len(scores):
        return scores.astype("float64"), np.asarray(neg, dtype="int64"), np.asarray(pos, dtype="int64")
    order = np.argsort(scores, kind="stable")
    scores, neg, pos = scores[order], neg[order], pos[order]
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    return scores[starts], np.add.reduceat(neg, starts), np.add.reduceat(pos, starts)


def _weighted(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The score table as (score, label, count) triples, one per non-empty (score, label) pair."""
    scores = np.concatenate([table["score"].to_numpy(), table["score"].to_numpy()])
    labels = np.concatenate([np.zeros(len(table), dtype="int8"), np.ones(len(table), dtype="int8")])
    weights = np.concatenate([table["neg"].to_numpy(), table["pos"].to_numpy()]).astype("float64")
    keep = weights > 0
    return scores[keep], labels[keep], weights[keep]


def curves_from_table(table: pd.DataFrame, max_points: int | None = MAX_CURVE_POINTS) -> dict:
    """The exact ROC and precision-recall curves of a score table, in order of decreasing threshold.

    ``{"roc": {"fpr": [...], "tpr": [...]}, "pr": {"recall": [...], "precision": [...]}}``: the ROC
    curve runs from (0, 0) to (1, 1), the PR curve from recall 0 (precision 1, scikit-learn's
    convention) to recall 1. scikit-learn computes both with the counts as sample weights, as for
    the AUCs. With ``max_points``, each curve is thinned to at most that many points, keeping the
    first and last and, one at a time, the point farthest from the thinned curve so far (a top-down
    Douglas-Peucker), and rounded to 6 digits; ``max_points=None`` gives the full curves unrounded.
    """
    scores, labels, weights = _weighted(table)
    fpr, tpr, _ = roc_curve(labels, scores, sample_weight=weights, drop_intermediate=True)
    precision, recall, _ = precision_recall_curve(
        labels, scores, sample_weight=weights, drop_intermediate=True
    )
    roc = _thinned(fpr, tpr, max_points)
    pr = _thinned(recall[::-1], precision[::-1], max_points)
    return {
        "roc": {"fpr": roc[0], "tpr": roc[1]},
        "pr": {"recall": pr[0], "precision": pr[1]},
    }


def _thinned(x: np.ndarray, y: np.ndarray, max_points: int | None) -> tuple[list, list]:
    if max_points is None:
        return [float(v) for v in x], [float(v) for v in y]
    keep = _simplify(np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"), max_points)
    return (
        [round(float(v), CURVE_DIGITS) for v in x[keep]],
        [round(float(v), CURVE_DIGITS) for v in y[keep]],
    )


def _simplify(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points of the polyline (x, y) that keep its shape.

    Starts from the two ends and adds, one at a time, the point farthest from the segment between
    its kept neighbours, until ``max_points`` are kept or every other point lies on the segments.
    """
    n = len(x)
    if n <= max(max_points, 2):
        return np.arange(n)
    heap: list[tuple[float, int, int, int]] = []

    def push(i: int, j: int) -> None:
        if j - i < 2:
            return
        dx, dy = x[j] - x[i], y[j] - y[i]
        xs, ys = x[i + 1 : j] - x[i], y[i + 1 : j] - y[i]
        length2 = dx * dx + dy * dy
        t = np.clip((xs * dx + ys * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        distance = np.hypot(xs - t * dx, ys - t * dy)
        k = int(np.argmax(distance))
        if distance[k] > 0:
            heapq.heappush(heap, (-float(distance[k]), i, j, i + 1 + k))

    kept = [0, n - 1]
    push(0, n - 1)
    while heap and len(kept) < max_points:
        _, i, j, k = heapq.heappop(heap)
        kept.append(k)
        push(i, k)
        push(k, j)
    return np.sort(np.array(kept))


def metrics_from_table(table: pd.DataFrame, threshold: float = 0.5, *, curves: bool = True,
                       scale: str = PROBABILITY, cut: float | None = None) -> Metrics:
    """ROC AUC, PR AUC (average precision), the confusion matrix at ``threshold`` and, with
    ``curves``, the ROC and PR curves (see :func:`curves_from_table`), exactly.

    ``threshold`` is a probability. Decision-function scores (``scale="decision"``) are cut at
    ``logit(threshold)`` (``cut`` gives the cut on the scores' own scale instead) and their Brier score is that of ``expit(score)``: the same as passing
    them through the logistic function first, without the ties that rounding near 0 and 1 makes.
    """
    scores, labels, weights = _weighted(table)
    if cut is None:
        cut = threshold if scale == PROBABILITY else logit(threshold)
    probabilities = scores if scale == PROBABILITY else expit(scores)
    predicted = scores >= cut
    tp = int(weights[predicted & (labels == 1)].sum())
    fp = int(weights[predicted & (labels == 0)].sum())
    fn = int(weights[~predicted & (labels == 1)].sum())
    tn = int(weights[~predicted & (labels == 0)].sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return Metrics(
        roc_auc=float(roc_auc_score(labels, scores, sample_weight=weights)),
        pr_auc=float(average_precision_score(labels, scores, sample_weight=weights)),
        n=int(weights.sum()),
        n_positive=tp + fn,
        threshold=float(threshold),
        tn=tn, fp=fp, fn=fn, tp=tp,
        precision=precision,
        recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        brier=float(np.average((probabilities - labels) ** 2, weights=weights)),
        curves=curves_from_table(table) if curves else None,
        scale=scale,
    )


def correct_probabilities(p, kept_majority_fraction: float, majority_class: int = 0):
    """Undo the prior shift of under-sampling (Dal Pozzolo et al., 2015).

    With ``beta`` the fraction of majority rows kept, a probability ``p`` of the minority class
    learned on the sample becomes ``beta * p / (beta * p - p + 1)`` on the original distribution
    (computed as ``beta * p / (beta * p + (1 - p))``, which stays within [0, 1] in floating point).
    """
    beta = float(kept_majority_fraction)
    p = np.asarray(p, dtype="float64")
    p_minority = p if majority_class == 0 else 1 - p
    corrected = beta * p_minority / (beta * p_minority + (1 - p_minority))  # exact at 0 and 1
    return corrected if majority_class == 0 else 1 - corrected


def correct_scores(scores, undersampling: dict, scale: str = PROBABILITY):
    """Scores corrected for under-sampling (the note ``Dataset.info["undersample"]``) on their scale:
    :func:`correct_probabilities` for probabilities; for a decision function, read as a log-odds,
    the same correction is a shift by ``log(beta)``."""
    beta, majority = float(undersampling["kept_majority_fraction"]), undersampling["majority_class"]
    if scale == PROBABILITY:
        return correct_probabilities(scores, beta, majority)
    shift = np.log(beta)
    return np.asarray(scores, dtype="float64") + (shift if majority == 0 else -shift)


def evaluate(
    scored: dd.DataFrame,
    threshold: float = 0.5,
    *,
    label: str = "label",
    score: str = "score",
    undersampling: dict | None = None,
    scale: str = PROBABILITY,
    settings: Evaluation | None = None,
    valid_table: pd.DataFrame | None = None,
    table: pd.DataFrame | None = None,
) -> Metrics:
    """Exact metrics of a Dask DataFrame of ``label`` (0/1) and ``score`` columns.

    With ``undersampling`` (the note :func:`workbench.undersample` leaves in ``Dataset.info``), the
    scores corrected for the sampling are evaluated too, under ``Metrics.corrected``. Ranking
    metrics and the ROC and PR curves do not change under the correction (it is strictly
    increasing); the Brier score, the log loss and the calibration do. A confusion matrix at the
    same given ``threshold`` is then evaluated for the corrected probabilities too.

    With ``settings`` (:class:`Evaluation`), the intervals, log loss, calibration and precision and
    recall at the review budgets are added, and the threshold may be chosen on ``valid_table`` (the
    validation set's score table): the test confusion matrix is then at that threshold.
    ``table``: the test score table, if already reduced.
    """
    table = score_table(scored, label=label, score=score) if table is None else table
    rule = settings.rule(valid_table is not None) if settings is not None else threshold
    correction = (partial(correct_scores, undersampling=undersampling, scale=PROBABILITY)
                  if undersampling and scale == PROBABILITY else
                  (lambda s: expit(correct_scores(s, undersampling, scale))) if undersampling else None)
    choice = None
    if isinstance(rule, str):
        if valid_table is None:
            raise ValueError(f"threshold {rule!r} is chosen on a validation set, and there is none")
        chosen = choose(valid_table, rule, settings.costs)
        cut = chosen.threshold
        threshold = cut if scale == PROBABILITY or not math.isfinite(cut) else float(expit(cut))
        metrics = metrics_from_table(table, threshold, scale=scale, cut=cut)
        choice = {"rule": rule, "on": "validation", "value": chosen.value,
                  "valid": {"tn": chosen.tn, "fp": chosen.fp, "fn": chosen.fn, "tp": chosen.tp},
                  **({"costs": {"fp": settings.costs[0], "fn": settings.costs[1]}} if rule == "cost" else {})}
    else:
        threshold = float(rule)
        metrics = metrics_from_table(table, threshold, scale=scale)
    extra: dict = {}
    if settings is not None:
        extra = report(table, settings, scale=scale, correction=correction)
        given = "number" if settings.threshold != "auto" else "default"  # "default": auto with no validation set
        extra.update(threshold_rule=rule if isinstance(rule, str) else given, threshold_choice=choice)
    if undersampling:
        corrected = table.assign(score=correct_scores(table["score"], undersampling, scale))
        if choice is None:  # the given threshold, read on the corrected probabilities
            again = metrics_from_table(corrected, threshold, curves=False, scale=scale)
            extra["corrected"] = {k: getattr(again, k) for k in ("tn", "fp", "fn", "tp", "precision", "recall", "f1",
                                                                  "brier")}
        else:  # the chosen cut, on the corrected scale: the same rows either side, so the same counts
            corrected_cut = float(correct_scores(np.array([cut]), undersampling, scale)[0]) if math.isfinite(cut) \
                else cut
            extra["corrected"] = {"brier": intervals.brier(corrected, None if scale == PROBABILITY else expit),
                                  "threshold": corrected_cut if scale == PROBABILITY or not math.isfinite(corrected_cut)
                                  else float(expit(corrected_cut))}
        if settings is not None:
            extra["corrected"]["log_loss"] = intervals.log_loss(corrected, None if scale == PROBABILITY else expit)
    return replace(metrics, **extra) if extra else metrics


def evaluate_models(models: dict, data: Dataset, threshold: float = 0.5, *, undersampling: dict | None = None,
                    client=None, on_phase: Callable[[str, float], None] | None = None,
                    settings: Evaluation | None = None, valid: Dataset | None = None) -> dict[str, Metrics]:
    """Every model of ``models`` (name -> model) scored on ``data`` in one pass, then evaluated exactly,
    each on its own score scale, at ``threshold`` and, with ``undersampling``, corrected for it.

    With ``settings`` and ``valid``, the threshold may be chosen on ``valid`` (:func:`evaluate`).
    ``on_phase(phase, seconds)`` hears how long the ``predict`` pass and the ``metrics`` took.
    """
    return evaluate_run(models, data, threshold, undersampling=undersampling, client=client, on_phase=on_phase,
                        settings=settings, valid=valid, fingerprinted=False).metrics


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` found: each model's metrics, DeLong's paired tests between the
    models (on the same test rows), the test rows' fingerprint, and the scored test set, persisted
    on the workers (``label`` and one column per model)."""

    metrics: dict[str, Metrics]
    paired: list[dict]
    fingerprint: str
    scored: dd.DataFrame


def evaluate_run(models: dict, data: Dataset, threshold: float = 0.5, *, undersampling: dict | None = None,
                 client=None, on_phase: Callable[[str, float], None] | None = None,
                 settings: Evaluation | None = None, valid: Dataset | None = None,
                 paired: bool = False, fingerprinted: bool = True) -> RunEvaluation:
    """:func:`evaluate_models`, and with ``paired`` DeLong's test between every two models; without
    ``fingerprinted`` the test rows are not digested (``fingerprint`` is then empty)."""
    from distributed import get_client, wait

    client = client or get_client()
    started = time.perf_counter()
    scored = client.persist(score(models, data, client=client))
    choosing = settings is not None and valid is not None and isinstance(settings.rule(True), str)
    valid_scored = client.persist(score(models, valid, client=client)) if choosing else None
    wait([scored] + ([valid_scored] if valid_scored is not None else []))
    if on_phase:
        on_phase("predict", time.perf_counter() - started)
    started = time.perf_counter()
    # Every table, and everything derived from it, stays on the workers: the client gets the metrics,
    # the paired tests and the fingerprint, each a few hundred numbers, in one round trip.
    tables = {name: score_table_graph(scored, score=name) for name in models}
    valid_tables = {name: score_table_graph(valid_scored, score=name) if valid_scored is not None else None
                    for name in models}
    jobs = {name: dask.delayed(evaluate, pure=True)(None, threshold, score=name, undersampling=undersampling,
                                                     scale=score_scale(model), settings=settings,
                                                     table=tables[name], valid_table=valid_tables[name])
            for name, model in models.items()}
    names, pairs = list(models), []
    if paired:
        pairs = [(a, b, paired_delong_graph(scored, a, b, tables[a], tables[b],
                                            level=settings.level if settings else 0.95))
                 for i, a in enumerate(names) for b in names[i + 1:]]
    digests = fingerprint_graph(scored) if fingerprinted and data.partition_keys is not None else None
    metrics, tested, digests = dask.compute(jobs, [p for _, _, p in pairs], digests)
    tests = [{"a": a, "b": b, **test._asdict()} for (a, b, _), test in zip(pairs, tested)
             if test is not None]  # None: a class with fewer than 2 rows
    for t, p in zip(tests, holm([t["p_value"] for t in tests])):
        t["p_holm"] = p
    rows = fingerprint_from(digests, list(data.partition_keys)) if digests is not None else ""
    if on_phase:
        on_phase("metrics", time.perf_counter() - started)
    return RunEvaluation(metrics, tests, rows, scored)


def evaluate_model(model, data: Dataset, threshold: float = 0.5, *, undersampling: dict | None = None,
                   client=None, on_phase: Callable[[str, float], None] | None = None) -> Metrics:
    """Exact metrics of one model on ``data`` (see :func:`evaluate_models`)."""
    return evaluate_models({"score": model}, data, threshold, undersampling=undersampling, client=client,
                           on_phase=on_phase)["score"]
