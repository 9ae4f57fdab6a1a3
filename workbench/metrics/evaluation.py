"""What a run reports beyond the AUCs, from the same score count tables: intervals, calibration,
an operating threshold chosen on the validation set, precision and recall at review budgets, and
DeLong's paired test between models scored on the same rows (docs/metrics.md).

:class:`Evaluation` holds the settings (a pipeline file's ``metrics:`` section); :func:`report`
turns a test table (and a validation table, to choose the threshold) into the fields of
:class:`~workbench.metrics.Metrics`; :func:`paired_delong` runs DeLong's paired test on the workers,
over a frame holding both models' scores, and returns only sums; :func:`fingerprint` names the test
rows, so runs whose scores may be compared row by row can be told apart from those that may not.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import dask
import dask.dataframe as dd
from dask.delayed import Delayed
import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import norm

from . import intervals
from .scoring import PROBABILITY

__all__ = ["Evaluation", "THRESHOLD_RULES", "report", "choose", "paired_delong", "paired_delong_graph",
           "paired_from_arrays", "fingerprint", "fingerprint_graph", "fingerprint_from", "holm", "with_placements",
           "placements", "placements_of", "PairedSums", "PlacementSums"]

THRESHOLD_RULES = ("auto", "f1", "cost")


@dataclass(frozen=True)
class Evaluation:
    """How a run's test metrics are computed beyond the AUCs.

    ``threshold``: a probability on the model's own scores, or ``"f1"`` / ``"cost"`` (chosen on
    the validation set: the F1-maximising cut, or the one minimising ``costs = (fp, fn)``), or
    ``"auto"``: ``"f1"`` when there is a validation set, else 0.5. ``at_k``: review budgets, counts
    of rows (int) or fractions of the test rows (float). ``level``: of every interval. The PR AUC
    interval is a stratified bootstrap of ``n_boot`` replicates seeded by ``seed`` (or Boyd's logit
    interval, ``pr_interval="logit"``). ``calibration_bins`` equal-width bins of the reliability
    diagram, drawn for the probabilities corrected for under-sampling when the model saw a sample.
    """

    threshold: float | str = "auto"
    costs: tuple[float, float] | None = None
    at_k: tuple[int | float, ...] = (100, 0.01)
    level: float = 0.95
    pr_interval: str = "bootstrap"
    n_boot: int = 1000
    seed: int = 0
    calibration_bins: int = 10

    def rule(self, has_validation: bool) -> str | float:
        """The number, ``"f1"`` or ``"cost"`` that applies, given whether there is a validation set."""
        if self.threshold == "auto":
            return "f1" if has_validation else 0.5
        return self.threshold


def choose(valid_table: pd.DataFrame, rule: str, costs: tuple[float, float] | None) -> intervals.Threshold:
    """The cut (on the scores' own scale) that ``rule`` picks on a validation table."""
    if rule == "cost":
        if costs is None:
            raise ValueError("threshold 'cost' needs costs (fp, fn)")
        return intervals.choose_threshold(valid_table, ("cost", float(costs[0]), float(costs[1])))
    return intervals.choose_threshold(valid_table, rule)


def report(table: pd.DataFrame, settings: Evaluation, *, scale: str = PROBABILITY, correction=None) -> dict:
    """Intervals, log loss, calibration and precision/recall at ``settings.at_k`` of one test table.

    ``correction`` maps scores to the probabilities on the original class distribution (undoing
    under-sampling); the calibration is drawn for those when given. Decision-function scores are
    read as log-odds (``expit``) wherever a probability is needed.
    """
    to_probability = None if scale == PROBABILITY else expit
    out: dict = {"level": settings.level}
    try:
        roc = intervals.delong(table, settings.level)
        out["roc_auc_ci"], out["roc_auc_se"] = [roc.low, roc.high], math.sqrt(roc.variance)
    except ValueError:  # fewer than 2 rows of a class: no interval
        out["roc_auc_ci"], out["roc_auc_se"] = None, None
    try:
        pr = intervals.pr_auc(table, settings.level, settings.pr_interval, n_boot=settings.n_boot,
                              seed=settings.seed)
        out["pr_auc_ci"], out["pr_auc_ci_method"] = [pr.low, pr.high], pr.method
    except ValueError:
        out["pr_auc_ci"], out["pr_auc_ci_method"] = None, settings.pr_interval
    out["log_loss"] = intervals.log_loss(table, to_probability)
    calibrated = correction if correction is not None else to_probability
    curve = intervals.calibration_curve(table, settings.calibration_bins, "uniform", calibrated)
    out["calibration"] = {
        "corrected": correction is not None, "bins": settings.calibration_bins,
        "prob_pred": [float(v) for v in curve.prob_pred], "prob_true": [float(v) for v in curve.prob_true],
        "counts": [int(v) for v in curve.counts],
    }
    out["at_k"] = [
        {"budget": a.budget, "k": a.k, "threshold": a.threshold, "tp": a.tp, "precision": a.precision,
         "recall": a.recall}
        for a in intervals.at_k(table, list(settings.at_k))
    ] if settings.at_k else []
    return out


# ---------------------------------------------------------------- paired DeLong on the workers


def paired_delong(scored: dd.DataFrame, a: str, b: str, table_a, table_b, *,
                  label: str = "label", level: float = 0.95) -> intervals.PairedAUC:
    """DeLong's test of the ROC AUCs of score columns ``a`` and ``b`` of ``scored`` (the same rows).

    The same numbers as :func:`workbench.metrics.intervals.delong_paired` on the joint table, without
    the joint table: each model's structural components per distinct score come from its own score
    table (a frame, or the Delayed of one: then it never leaves the workers), and each partition
    returns the two sums of squared differences of its rows' components (positives and
    negatives), so nothing of size rows reaches the client. Raises ValueError when a class has
    fewer than 2 rows or the two columns cover different rows.
    """
    test = paired_delong_graph(scored, a, b, table_a, table_b, label=label, level=level).compute()
    if test is None:
        raise ValueError("a class has fewer than 2 rows, or the two score columns cover different rows")
    return test


def paired_delong_graph(scored: dd.DataFrame, a: str, b: str, table_a, table_b, *, label: str = "label",
                        level: float = 0.95) -> Delayed:
    """:func:`paired_delong` not computed; its result is None where the test does not apply."""
    comp_a, comp_b = dask.delayed(_components_or_none)(table_a), dask.delayed(_components_or_none)(table_b)
    parts = [dask.delayed(_partial_sums_or_none)(part, a, b, label, comp_a, comp_b)
             for part in scored[[label, a, b]].to_delayed()]
    return dask.delayed(_paired_or_none)(comp_a, comp_b, parts, level)


def _components_or_none(table: pd.DataFrame) -> tuple | None:
    try:
        return _components(table)
    except ValueError:  # a class with fewer than 2 rows
        return None


def _partial_sums_or_none(part, a, b, label, comp_a, comp_b) -> np.ndarray:
    return np.zeros(2) if comp_a is None or comp_b is None else _partial_sums(part, a, b, label, comp_a, comp_b)


def _paired_or_none(comp_a: tuple | None, comp_b: tuple | None, parts: list, level: float) -> intervals.PairedAUC | None:
    if comp_a is None or comp_b is None:
        return None
    sums = np.sum(parts, axis=0) if parts else np.zeros(2)
    try:
        return _paired(comp_a, comp_b, sums[0], sums[1], level)
    except (ValueError, ZeroDivisionError):
        return None


def paired_from_arrays(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray,
                       level: float = 0.95) -> intervals.PairedAUC:
    """:func:`paired_delong` on arrays held in memory (two runs' saved test scores)."""
    frame = pd.DataFrame({"label": np.asarray(labels, dtype="int8"), "a": scores_a, "b": scores_b})
    comp_a = _components(_table(frame, "a"))
    comp_b = _components(_table(frame, "b"))
    sums = _partial_sums(frame, "a", "b", "label", comp_a, comp_b)
    return _paired(comp_a, comp_b, sums[0], sums[1], level)


# ---------------------------------------------------------------- placements: paired tests by streaming


def with_placements(scored: dd.DataFrame, table, *, label: str = "label", score: str = "score") -> dd.DataFrame:
    """``scored`` with a ``placement`` column: each row's DeLong structural component under its own
    model (V10, the fraction of negatives below its score, for a positive; V01, the fraction of
    positives above it, for a negative; ties counted 1/2), from the score ``table`` (a frame or
    the Delayed of one, left on the workers). NaN where the score is missing or a class has fewer
    than 2 rows.

    Kept beside a run's test scores, the placements make DeLong's paired test between two runs a
    single pass over the rows in order (:class:`PairedSums`), in memory of one partition."""
    comp = dask.delayed(_components_or_none)(table)
    meta = scored._meta.assign(placement=pd.Series([], dtype="float64"))
    return scored.map_partitions(_add_placement, comp, label, score, meta=meta)


def _add_placement(part: pd.DataFrame, comp: tuple | None, label: str, score: str) -> pd.DataFrame:
    return part.assign(placement=placements(part[label].to_numpy(), part[score].to_numpy(dtype="float64"), comp))


def placements(labels: np.ndarray, scores: np.ndarray, comp: tuple | None) -> np.ndarray:
    out = np.full(len(scores), np.nan)
    if comp is None:
        return out
    keep = ~np.isnan(scores)
    where = np.searchsorted(comp[0], scores[keep])
    out[keep] = np.where(labels[keep] == 1, comp[2][where], comp[3][where])
    return out


def placements_of(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """:func:`placements` of scores held in memory (runs kept before placements were kept)."""
    frame = pd.DataFrame({"label": np.asarray(labels, dtype="int8"), "score": np.asarray(scores, dtype="float64")})
    return placements(frame["label"].to_numpy(), frame["score"].to_numpy(), _components_or_none(_table(frame, "score")))


class PairedSums:
    """DeLong's paired test of two runs accumulated from their placements, chunk by chunk of the
    same rows in the same order: per class, the count, the sums of each run's placements and the
    sum of squared deviations of their difference (Chan et al.'s pairwise update, stable in one
    pass). The same test as :func:`paired_from_arrays`, in memory of one chunk."""

    def __init__(self) -> None:
        self.n = np.zeros(2)  # [negatives, positives]
        self.sum_a = np.zeros(2)
        self.sum_b = np.zeros(2)
        self.m2 = np.zeros(2)

    def add(self, labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        keep = ~(np.isnan(a) | np.isnan(b))
        labels, a, b = labels[keep], a[keep], b[keep]
        for k in (0, 1):
            mask = labels == k
            n = float(mask.sum())
            if not n:
                continue
            xa, xb = a[mask], b[mask]
            d = xa - xb
            mean = float(d.mean())
            m2 = float(((d - mean) ** 2).sum())
            if self.n[k]:
                before = (self.sum_a[k] - self.sum_b[k]) / self.n[k]
                total = self.n[k] + n
                m2 += self.m2[k] + (mean - before) ** 2 * self.n[k] * n / total
            self.n[k] += n
            self.sum_a[k] += float(xa.sum())
            self.sum_b[k] += float(xb.sum())
            self.m2[k] = m2

    def result(self, level: float = 0.95) -> intervals.PairedAUC:
        """Raises ValueError when a class has fewer than 2 rows."""
        n0, n1 = self.n
        if n0 < 2 or n1 < 2:
            raise ValueError(f"DeLong needs at least 2 negatives and 2 positives (got {n0:g} and {n1:g})")
        auc_a, auc_b = self.sum_a[1] / n1, self.sum_b[1] / n1  # the mean V10 over the positives is the AUC
        return _test(auc_a, auc_b, self.m2[1] / ((n1 - 1) * n1) + self.m2[0] / ((n0 - 1) * n0), level)


class PlacementSums:
    """One run's DeLong interval from its placements, chunk by chunk (:class:`PairedSums` for one run)."""

    def __init__(self) -> None:
        self._sums = PairedSums()

    def add(self, labels: np.ndarray, placement: np.ndarray) -> None:
        self._sums.add(labels, placement, np.zeros(len(placement)))

    def result(self, level: float = 0.95) -> intervals.AUCInterval:
        test = self._sums.result(level)
        return intervals.auc_interval(test.auc_a, test.se ** 2, level)


def _table(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    counts = frame.groupby(column)["label"].agg(["size", "sum"])
    return pd.DataFrame({"score": counts.index.to_numpy(), "neg": (counts["size"] - counts["sum"]).to_numpy(),
                         "pos": counts["sum"].to_numpy()})


def _components(table: pd.DataFrame) -> tuple:
    scores, neg, pos = intervals.distinct_counts(table)
    auc, v10, v01 = intervals.structural_components(neg, pos)
    return scores, auc, v10, v01, float(neg.sum()), float(pos.sum())


def _partial_sums(part: pd.DataFrame, a: str, b: str, label: str, comp_a: tuple, comp_b: tuple) -> np.ndarray:
    sa, sb = part[a].to_numpy(dtype="float64"), part[b].to_numpy(dtype="float64")
    keep = ~(np.isnan(sa) | np.isnan(sb))
    y = part[label].to_numpy()[keep] == 1
    ia, ib = np.searchsorted(comp_a[0], sa[keep]), np.searchsorted(comp_b[0], sb[keep])
    d10 = (comp_a[2][ia] - comp_a[1]) - (comp_b[2][ib] - comp_b[1])
    d01 = (comp_a[3][ia] - comp_a[1]) - (comp_b[3][ib] - comp_b[1])
    return np.array([float(np.sum(d10[y] ** 2)), float(np.sum(d01[~y] ** 2))])


def _paired(comp_a: tuple, comp_b: tuple, s10: float, s01: float, level: float) -> intervals.PairedAUC:
    if (comp_a[4], comp_a[5]) != (comp_b[4], comp_b[5]):
        raise ValueError("the two score columns cover different rows")
    n0, n1 = comp_a[4], comp_a[5]
    return _test(comp_a[1], comp_b[1], s10 / ((n1 - 1) * n1) + s01 / ((n0 - 1) * n0), level)


def _test(auc_a: float, auc_b: float, variance: float, level: float) -> intervals.PairedAUC:
    auc_a, auc_b, variance = float(auc_a), float(auc_b), float(variance)
    se, delta = math.sqrt(max(variance, 0.0)), auc_a - auc_b
    z = delta / se if se > 0 else (0.0 if delta == 0 else math.copysign(math.inf, delta))
    half = float(norm.ppf(0.5 + level / 2)) * se
    return intervals.PairedAUC(auc_a, auc_b, delta, se, max(delta - half, -1.0), min(delta + half, 1.0), z,
                               float(2 * norm.sf(abs(z))), level)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment (statsmodels' ``multipletests(method="holm")``)."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, method="holm")[1]]


# ---------------------------------------------------------------- which rows


def fingerprint(scored: dd.DataFrame, keys: list[str]) -> str:
    """A digest of which rows, in which order, a scored frame holds: each partition's key (its shard
    and row groups) and the positions of its rows in the shard, which the reader keeps as the index.
    Two runs with the same fingerprint scored the same test rows in the same order."""
    return fingerprint_from(dask.compute(fingerprint_graph(scored))[0], keys)


def fingerprint_graph(scored: dd.DataFrame) -> list[Delayed]:
    """Each partition's digest, not computed (:func:`fingerprint_from` joins them)."""
    return [dask.delayed(_index_digest)(part) for part in scored.to_delayed()]


def fingerprint_from(digests: list[bytes], keys: list[str]) -> str:
    total = hashlib.sha256()
    for key, digest in zip(keys, digests):
        total.update(str(key).encode())
        total.update(digest)
    return total.hexdigest()[:32]


def _index_digest(part: pd.DataFrame) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(part.index.to_numpy(dtype="int64")).tobytes()).digest()
