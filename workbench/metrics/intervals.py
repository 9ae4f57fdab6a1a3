"""Intervals, paired tests, calibration and operating points, exactly, from score count tables.

Every function here reads a *score count table* (:func:`workbench.metrics.score_table`: columns
``score``, ``neg``, ``pos``, one row per distinct score) and never the rows behind it: the cost is
O(distinct scores · log), and each number is the one computed on the full list of rows. Repeated
scores in a table are summed, so per-partition tables can simply be concatenated. The paired test
reads a *joint table* (:func:`joint_table`: ``score_a``, ``score_b``, ``neg``, ``pos``, one row per
distinct pair of two models' scores on the same rows).

References
----------
DeLong, DeLong & Clarke-Pearson (1988), Comparing the areas under two or more correlated receiver
operating characteristic curves: a nonparametric approach. Biometrics 44(3), 837-845.
Pepe (2003), The Statistical Evaluation of Medical Tests for Classification and Prediction. Oxford.
Qin & Hotilovac (2008), Comparison of non-parametric confidence intervals for the area under the
ROC curve of a continuous-scale diagnostic test. Stat. Methods Med. Res. 17(2), 207-221.
Boyd, Eng & Page (2013), Area under the precision-recall curve: point estimates and confidence
intervals. ECML PKDD 2013, LNCS 8190, 451-466.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import expit, logit
from scipy.stats import norm

__all__ = [
    "AUCInterval", "PairedAUC", "PRInterval", "Calibration", "AtK", "Threshold",
    "delong", "delong_paired", "joint_table", "pr_auc", "brier", "log_loss",
    "calibration_curve", "at_k", "choose_threshold", "distinct_counts", "structural_components", "auc_interval",
]


class AUCInterval(NamedTuple):
    auc: float
    variance: float  # DeLong's
    low: float
    high: float
    level: float


class PairedAUC(NamedTuple):
    auc_a: float
    auc_b: float
    delta: float  # auc_a - auc_b
    se: float
    low: float
    high: float
    z: float
    p_value: float  # two-sided
    level: float


class PRInterval(NamedTuple):
    ap: float
    low: float
    high: float
    level: float
    method: str


class Calibration(NamedTuple):
    prob_true: np.ndarray
    prob_pred: np.ndarray
    counts: np.ndarray  # rows per non-empty bin


class AtK(NamedTuple):
    budget: int | float  # as given
    k: int
    threshold: float  # the score at the cut
    tp: float  # expected true positives among the top k
    precision: float
    recall: float


class Threshold(NamedTuple):
    threshold: float  # predicted positive if score >= threshold (inf: none)
    value: float  # F1, or mean cost per row
    tn: int
    fp: int
    fn: int
    tp: int


# --- tables ---------------------------------------------------------------------------------


def distinct_counts(table: pd.DataFrame, column: str = "score") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores with rows, in increasing order, with their negative and positive counts
    (float64: exact up to 2**53 rows)."""
    scores, inverse = np.unique(table[column].to_numpy(), return_inverse=True)
    neg = np.bincount(inverse, weights=table["neg"].to_numpy(), minlength=len(scores))
    pos = np.bincount(inverse, weights=table["pos"].to_numpy(), minlength=len(scores))
    keep = neg + pos > 0
    return scores[keep], neg[keep], pos[keep]


def joint_table(frame: pd.DataFrame, score_a: str, score_b: str, label: str = "label") -> pd.DataFrame:
    """Counts of negatives and positives per distinct pair of two models' scores on the same rows.

    Parameters
    ----------
    frame : pandas.DataFrame
        ``label`` (0/1) and the two score columns; one partition is enough.
    score_a, score_b : str
        The score columns.

    Returns
    -------
    pandas.DataFrame
        ``score_a``, ``score_b``, ``neg``, ``pos``. Tables of partitions concatenated make the
        table of the whole (every function here sums repeated pairs): on a Dask frame,
        ``scored.map_partitions(joint_table, a, b).compute()``. Rows with a missing score
        (either model) are left out.
    """
    y = frame[label].astype("int64")
    counts = y.groupby([frame[score_a], frame[score_b]]).agg(["size", "sum"])
    counts.index.names = ["score_a", "score_b"]
    out = counts.reset_index()
    return pd.DataFrame({
        "score_a": out["score_a"], "score_b": out["score_b"],
        "neg": (out["size"] - out["sum"]).astype("int64"), "pos": out["sum"].astype("int64"),
    })


# --- ROC AUC: DeLong ------------------------------------------------------------------------


def structural_components(neg: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and DeLong's structural components per distinct score (increasing order).

    V10 (of a positive at this score): the fraction of negatives below it, ties counting 1/2;
    V01 (of a negative at this score): the fraction of positives above it, ties counting 1/2.
    """
    n0, n1 = neg.sum(), pos.sum()
    if n0 < 2 or n1 < 2:
        raise ValueError(f"DeLong needs at least 2 negatives and 2 positives (got {n0:g} and {n1:g})")
    below = np.cumsum(neg) - neg + 0.5 * neg  # negatives below, ties halved
    above = n1 - np.cumsum(pos) + 0.5 * pos  # positives above, ties halved
    auc = float(np.dot(pos, below) / (n1 * n0))
    return auc, below / n0, above / n1


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2))


def delong(table: pd.DataFrame, level: float = 0.95, transform: str = "logit") -> AUCInterval:
    """ROC AUC with DeLong's variance and a confidence interval, ties counted 1/2.

    Parameters
    ----------
    table : pandas.DataFrame
        Score count table (``score``, ``neg``, ``pos``).
    level : float
        Confidence level of the interval.
    transform : {"logit", "normal"}
        ``"logit"`` (default): the Wald interval of ``logit(AUC)``, whose standard error is
        ``se / (AUC (1 - AUC))`` by the delta method, mapped back with ``expit``. It stays inside
        (0, 1) and is asymmetric near 1, where the symmetric interval runs past 1 and has to be
        clipped; a transformed interval is the one suggested for AUCs near 1 (Pepe 2003;
        Qin & Hotilovac 2008), and the AUCs this workbench compares are mostly above 0.95.
        ``"normal"``: ``AUC ± z se``, clipped to [0, 1]. At an AUC of exactly 0 or 1 DeLong's
        variance is 0 and the interval is the point.

    Returns
    -------
    AUCInterval
        ``variance = S10 / n1 + S01 / n0``, with S10 and S01 the sample variances (divisor
        ``n - 1``) of the components V10 over the positives and V01 over the negatives
        (DeLong et al. 1988). The components are constant within a distinct score, so both are
        weighted sums over the table.
    """
    _, neg, pos = distinct_counts(table)
    auc, v10, v01 = structural_components(neg, pos)
    n0, n1 = neg.sum(), pos.sum()
    variance = float(np.dot(pos, (v10 - auc) ** 2) / ((n1 - 1) * n1)
                     + np.dot(neg, (v01 - auc) ** 2) / ((n0 - 1) * n0))
    return auc_interval(auc, variance, level, transform)


def auc_interval(auc: float, variance: float, level: float = 0.95, transform: str = "logit") -> AUCInterval:
    """The interval :func:`delong` gives for an AUC of DeLong's ``variance``."""
    z, se = _z(level), math.sqrt(variance)
    if transform == "normal":
        low, high = max(auc - z * se, 0.0), min(auc + z * se, 1.0)
    elif transform == "logit":
        if 0 < auc < 1:
            half = z * se / (auc * (1 - auc))
            low, high = float(expit(logit(auc) - half)), float(expit(logit(auc) + half))
        else:
            low = high = auc
    else:
        raise ValueError(f"transform must be 'logit' or 'normal', got {transform!r}")
    return AUCInterval(auc, variance, low, high, level)


def delong_paired(joint: pd.DataFrame, level: float = 0.95) -> PairedAUC:
    """DeLong's test of two ROC AUCs measured on the same rows.

    Parameters
    ----------
    joint : pandas.DataFrame
        Joint table (:func:`joint_table`): ``score_a``, ``score_b``, ``neg``, ``pos``.
    level : float
        Confidence level of the interval of ``delta``.

    Returns
    -------
    PairedAUC
        ``delta = auc_a - auc_b``; its variance is that of the difference of the two models'
        structural components: ``Var(V10a - V10b) / n1 + Var(V01a - V01b) / n0`` (DeLong et al.
        1988, with contrast (1, -1)). A row's components under each model depend only on its own
        score under that model and its label, so they are looked up per row of the joint table
        from each model's marginal table. ``z = delta / se``, two-sided normal ``p_value``, and
        ``delta ± z se`` clipped to [-1, 1]. With ``se = 0`` (e.g. the same scores twice),
        ``z`` is 0 and ``p_value`` 1 when ``delta`` is 0, else infinite and 0.
    """
    # Repeated pairs summed and sorted: the same numbers, to the last bit, however partitioned.
    joint = joint.groupby(["score_a", "score_b"], sort=True)[["neg", "pos"]].sum().reset_index()
    joint = joint[joint["neg"] + joint["pos"] > 0]
    weights = {}
    for name in ("score_a", "score_b"):
        scores, neg, pos = distinct_counts(joint, name)
        auc, v10, v01 = structural_components(neg, pos)
        where = np.searchsorted(scores, joint[name].to_numpy())
        weights[name] = auc, v10[where] - auc, v01[where] - auc
    (auc_a, d10_a, d01_a), (auc_b, d10_b, d01_b) = weights["score_a"], weights["score_b"]
    neg, pos = joint["neg"].to_numpy(dtype="float64"), joint["pos"].to_numpy(dtype="float64")
    n0, n1 = neg.sum(), pos.sum()
    variance = (np.dot(pos, (d10_a - d10_b) ** 2) / ((n1 - 1) * n1)
                + np.dot(neg, (d01_a - d01_b) ** 2) / ((n0 - 1) * n0))
    se, delta = math.sqrt(variance), auc_a - auc_b
    if se > 0:
        z = delta / se
    else:
        z = 0.0 if delta == 0 else math.copysign(math.inf, delta)
    half = _z(level) * se
    return PairedAUC(auc_a, auc_b, delta, se, max(delta - half, -1.0), min(delta + half, 1.0), z,
                     float(2 * norm.sf(abs(z))), level)


# --- PR AUC ---------------------------------------------------------------------------------


def _average_precision(neg: np.ndarray, pos: np.ndarray) -> float:
    """scikit-learn's average precision from counts in *decreasing* score order:
    sum over distinct scores of (positives there / all positives) * precision at that cut."""
    tp, predicted = np.cumsum(pos), np.cumsum(neg + pos)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    return float(np.dot(pos, precision) / tp[-1])


def _positive_spans(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In decreasing score order: the positives of each score that holds positives, and the
    negatives of each span (at or above that score, below the next higher one), with one more
    span last for the negatives below every positive."""
    holds = pos > 0
    span = np.cumsum(holds) - holds  # a negative at a positive score counts with that score
    neg_spans = np.bincount(span, weights=neg, minlength=int(holds.sum()) + 1)
    return pos[holds], neg_spans


def pr_auc(table: pd.DataFrame, level: float = 0.95, method: str = "logit", *, n_boot: int = 1000,
           seed: int = 0) -> PRInterval:
    """PR AUC as average precision (``sklearn.metrics.average_precision_score``) with an interval.

    Parameters
    ----------
    table : pandas.DataFrame
        Score count table.
    level : float
        Confidence level.
    method : {"logit", "bootstrap"}
        ``"logit"`` (default): the logit interval of Boyd, Eng & Page (2013), one of the
        intervals whose coverage they study by simulation: ``expit(logit(ap) ± z tau)`` with
        ``tau = 1 / sqrt(n1 ap (1 - ap))`` and ``n1`` the number of positives (the sample size
        of a PR curve, whose recall axis runs over the positives). A binomial-type
        approximation, not a derived variance: prefer the bootstrap with few positives. At
        ``ap`` 0 or 1 it is the point.
        ``"bootstrap"``: the percentile interval of ``n_boot`` stratified bootstrap replicates
        (positives and negatives resampled separately, as in Boyd's R code, kboyd/raucpr).
        Each replicate draws the positives as multinomial counts over the distinct scores that
        hold positives, and the negatives as multinomial counts over the spans between them
        (the negatives at or above a positive score and below the next higher one; then those
        below every positive): average precision depends on the negatives only through those
        span counts, and a multinomial summed over cells is the multinomial of the sums, so this
        is the same distribution as resampling rows, in O(positive scores) per replicate.
        Seeded by ``seed``.
    """
    _, neg, pos = distinct_counts(table)
    neg, pos = neg[::-1], pos[::-1]
    n0, n1 = neg.sum(), pos.sum()
    if n1 == 0:
        raise ValueError("average precision needs at least one positive")
    ap, z = _average_precision(neg, pos), _z(level)
    if method == "logit":
        if 0 < ap < 1:
            half = z / math.sqrt(n1 * ap * (1 - ap))
            low, high = float(expit(logit(ap) - half)), float(expit(logit(ap) + half))
        else:
            low = high = ap
    elif method == "bootstrap":
        rng = np.random.default_rng(seed)
        pos_k, neg_k = _positive_spans(neg, pos)
        draws = np.empty(n_boot)
        for i in range(n_boot):
            pos_b = rng.multinomial(int(n1), pos_k / n1).astype("float64")
            neg_b = rng.multinomial(int(n0), neg_k / n0).astype("float64") if n0 else neg_k
            draws[i] = _average_precision(neg_b[:-1], pos_b)
        low, high = (float(v) for v in np.quantile(draws, [(1 - level) / 2, (1 + level) / 2]))
    else:
        raise ValueError(f"method must be 'logit' or 'bootstrap', got {method!r}")
    return PRInterval(ap, low, high, level, method)


# --- probabilities: Brier, log loss, calibration --------------------------------------------


def _probabilities(table: pd.DataFrame, correction: Callable | None):
    scores, neg, pos = distinct_counts(table)
    p = np.asarray(correction(scores) if correction is not None else scores)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError("probabilities outside [0, 1]: pass a correction (e.g. scipy.special.expit)"
                         " for decision-function scores")
    if neg.sum() + pos.sum() == 0:
        raise ValueError("empty table")
    order = np.argsort(p, kind="stable")  # a correction need not be increasing
    return p[order], neg[order], pos[order]


def brier(table: pd.DataFrame, correction: Callable | None = None) -> float:
    """Brier score: the mean of ``(p - y)^2`` over the rows (``sklearn.metrics.brier_score_loss``).

    ``correction`` maps the distinct scores to the probabilities to score, e.g.
    ``functools.partial(correct_probabilities, kept_majority_fraction=beta)`` to undo
    under-sampling, or ``scipy.special.expit`` for decision-function scores. Computed in float64.
    """
    p, neg, pos = _probabilities(table, correction)
    p = p.astype("float64")
    return float((np.dot(neg, p * p) + np.dot(pos, (1 - p) ** 2)) / (neg.sum() + pos.sum()))


def log_loss(table: pd.DataFrame, correction: Callable | None = None) -> float:
    """Log loss (natural log) over the rows, as ``sklearn.metrics.log_loss`` computes it.

    scikit-learn 1.9 clips ``p`` and ``1 - p`` to ``[eps, 1 - eps]`` with ``eps`` the machine
    epsilon of the probabilities' dtype (2.2e-16 for float64, 1.2e-7 for float32 scores): so
    does this, then takes the logs in float64 (float32 scores: equal to float32 rounding).
    ``correction`` as in :func:`brier`.
    """
    p, neg, pos = _probabilities(table, correction)
    eps = np.finfo(p.dtype if p.dtype.kind == "f" else np.float64).eps
    loss_neg = -np.log(np.clip(1 - p, eps, 1 - eps).astype("float64"))
    loss_pos = -np.log(np.clip(p, eps, 1 - eps).astype("float64"))
    return float((np.dot(neg, loss_neg) + np.dot(pos, loss_pos)) / (neg.sum() + pos.sum()))


def _order_statistics(scores: np.ndarray, rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The ``index``-th smallest row's score (0-based) of the rows the counts stand for."""
    return scores[np.searchsorted(np.cumsum(rows), index, side="right")]


def calibration_curve(table: pd.DataFrame, n_bins: int = 10, strategy: str = "uniform",
                      correction: Callable | None = None) -> Calibration:
    """Reliability diagram, equal to ``sklearn.calibration.calibration_curve`` on the rows.

    Bins are ``n_bins`` equal widths of [0, 1] (``"uniform"``) or the row quantiles of the
    probabilities (``"quantile"``: numpy's linear percentiles, computed from the counts with
    numpy's own interpolation so that the edges, and every row's bin, are the same). A row's
    bin is the number of inner edges below it. Empty bins are left out, as in scikit-learn.
    ``correction`` as in :func:`brier` (e.g. the calibration after undoing under-sampling).

    Returns
    -------
    Calibration
        ``prob_true`` (fraction of positives), ``prob_pred`` (mean probability) and ``counts``
        (rows) of each non-empty bin.
    """
    p, neg, pos = _probabilities(table, correction)
    rows = neg + pos
    if strategy == "quantile":
        n = int(rows.sum())
        quantiles = np.true_divide(np.linspace(0, 1, n_bins + 1) * 100, 100)  # as np.percentile
        virtual = (n - 1) * quantiles
        previous = np.floor(virtual)
        following = np.minimum(previous + 1, n - 1)
        previous = np.where(virtual >= n - 1, n - 1, previous)
        a, b = _order_statistics(p, rows, previous), _order_statistics(p, rows, following)
        gamma = virtual - previous
        diff = b - a  # numpy's _lerp, operation for operation
        bins = np.add(a, diff * gamma)
        np.subtract(b, diff * (1 - gamma), out=bins, where=gamma >= 0.5, casting="unsafe")
    elif strategy == "uniform":
        bins = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    ids = np.searchsorted(bins[1:-1], p)
    total = np.bincount(ids, weights=rows, minlength=n_bins)
    true = np.bincount(ids, weights=pos, minlength=n_bins)
    sums = np.bincount(ids, weights=rows * p.astype("float64"), minlength=n_bins)
    nonzero = total != 0
    return Calibration(true[nonzero] / total[nonzero], sums[nonzero] / total[nonzero],
                       total[nonzero].astype("int64"))


# --- operating points -----------------------------------------------------------------------


def at_k(table: pd.DataFrame, ks: Sequence[int | float]) -> list[AtK]:
    """Precision and recall among the ``k`` highest-scored rows, for each budget of ``ks``.

    A budget is a count of rows (int, 1 or more; beyond the rows, all of them) or a fraction of
    the rows (float in (0, 1]: ``k = floor(f n + 1/2)``, at least 1).

    Tie rule: when the cut falls inside a group of rows with the same score, the rows still
    needed are taken from that group in proportion to its positives and negatives,
    ``tp = tp above + (k - rows above) * pos / (neg + pos)``: the expected value of tp when the
    tied rows are ordered at random, so precision@k and recall@k are the expected values too.
    ``threshold`` is the score of the group at the cut. Recall is NaN without positives.
    """
    scores, neg, pos = distinct_counts(table)
    scores, neg, pos = scores[::-1], neg[::-1], pos[::-1]
    rows = neg + pos
    taken, hits = np.cumsum(rows), np.cumsum(pos)
    n, n1 = int(taken[-1]) if len(taken) else 0, float(pos.sum())
    out = []
    for budget in ks:
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer, float, np.floating)):
            raise TypeError(f"a budget is a count (int) or a fraction (float), got {budget!r}")
        if isinstance(budget, (float, np.floating)):
            if not 0 < budget <= 1:
                raise ValueError(f"a fractional budget must be in (0, 1], got {budget}")
            k = max(1, math.floor(budget * n + 0.5))
        else:
            if budget < 1:
                raise ValueError(f"a budget must be at least 1 row, got {budget}")
            k = int(budget)
        k = min(k, n)
        if k == 0:
            raise ValueError("empty table")
        j = int(np.searchsorted(taken, k, side="left"))
        above_rows = taken[j - 1] if j else 0.0
        above_hits = hits[j - 1] if j else 0.0
        tp = float(above_hits + (k - above_rows) * pos[j] / rows[j])
        out.append(AtK(budget, k, float(scores[j]), tp, tp / k, tp / n1 if n1 else math.nan))
    return out


def choose_threshold(table: pd.DataFrame, rule: str | tuple = "f1") -> Threshold:
    """The threshold that maximises F1 or minimises the expected cost on a (validation) table.

    Parameters
    ----------
    table : pandas.DataFrame
        Score count table, on the scores' own scale.
    rule : "f1" or ("cost", fp_cost, fn_cost)
        ``"f1"``: the distinct score ``t`` maximising F1 when rows with ``score >= t`` are
        predicted positive. ``("cost", fp_cost, fn_cost)``: minimises
        ``fp_cost * fp + fn_cost * fn``; the candidates include ``inf`` (no row predicted
        positive), which is the answer when positives are too rare to be worth their false
        alarms. Among equal values, the highest threshold wins.

    Returns
    -------
    Threshold
        The threshold, the value achieved on this table (F1, or mean cost per row) and the
        confusion counts there. Apply it to the test table with
        ``metrics_from_table(test, threshold)`` (probability scale: same ``>=`` rule).
    """
    scores, neg, pos = distinct_counts(table)
    scores, neg, pos = scores[::-1], neg[::-1], pos[::-1]
    n0, n1 = neg.sum(), pos.sum()
    tp, fp = np.cumsum(pos), np.cumsum(neg)
    fn = n1 - tp
    if rule == "f1":
        if n1 == 0:
            raise ValueError("F1 needs at least one positive")
        value = 2 * tp / (2 * tp + fp + fn)
        i = int(np.argmax(value))
        best = Threshold(float(scores[i]), float(value[i]), int(n0 - fp[i]), int(fp[i]), int(fn[i]),
                         int(tp[i]))
    elif isinstance(rule, (tuple, list)) and len(rule) == 3 and rule[0] == "cost":
        fp_cost, fn_cost = float(rule[1]), float(rule[2])
        if fp_cost < 0 or fn_cost < 0:
            raise ValueError(f"costs must be non-negative, got {rule}")
        cost = np.concatenate([[fn_cost * n1], fp_cost * fp + fn_cost * fn]) / (n0 + n1)
        i = int(np.argmin(cost))
        if i == 0:
            best = Threshold(math.inf, float(cost[0]), int(n0), 0, int(n1), 0)
        else:
            i -= 1
            best = Threshold(float(scores[i]), float(cost[i + 1]), int(n0 - fp[i]), int(fp[i]),
                             int(fn[i]), int(tp[i]))
    else:
        raise ValueError(f"rule must be 'f1' or ('cost', fp_cost, fn_cost), got {rule!r}")
    return best
