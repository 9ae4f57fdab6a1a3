"""Intervals, paired tests, calibration and operating points from score count tables, checked
against independent computations on the rows: the papers' definitions written out in O(n^2),
scikit-learn, brute-force sorts and enumerations. Pure numpy/scipy/scikit-learn, no cluster."""

from __future__ import annotations

import itertools
import math
from functools import partial

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.calibration import calibration_curve as sk_calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)
from sklearn.metrics import log_loss as sk_log_loss

from workbench.metrics import correct_probabilities
from workbench.metrics.intervals import (
    at_k,
    brier,
    calibration_curve,
    choose_threshold,
    delong,
    delong_paired,
    joint_table,
    log_loss,
    pr_auc,
)

EXACT = 1e-12
SEEDS = [0, 1, 2, 3]


def rows(seed: int, n: int = 600, rate: float = 0.3, decimals: int | None = 1):
    """Labels and two correlated scores in [0, 1]; rounding makes many ties."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype("int8")
    latent = rng.normal(0.35 + 0.25 * y, 0.2)
    a = np.clip(latent + rng.normal(0, 0.05, n), 0, 1)
    b = np.clip(latent + rng.normal(0, 0.15, n), 0, 1)
    if decimals is not None:
        a, b = a.round(decimals), b.round(decimals)
    return y, a, b


def table_of(y, s) -> pd.DataFrame:
    """The score count table of rows, in two shuffled halves concatenated (repeated scores)."""
    halves = []
    for part in np.array_split(np.random.default_rng(7).permutation(len(y)), 2):
        frame = pd.DataFrame({"score": s[part], "label": y[part]})
        counts = frame.groupby(["score", "label"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
        counts.columns = ["neg", "pos"]
        halves.append(counts.reset_index())
    return pd.concat(halves, ignore_index=True)


def expand(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The rows a count table stands for: (labels, scores)."""
    s, neg, pos = table["score"].to_numpy(), table["neg"].to_numpy(), table["pos"].to_numpy()
    return (np.concatenate([np.zeros(neg.sum(), "int8"), np.ones(pos.sum(), "int8")]),
            np.concatenate([np.repeat(s, neg), np.repeat(s, pos)]))


def brute_delong(y, *scores):
    """DeLong et al. (1988) from the definitions: psi(X, Y) = 1, 1/2, 0 over every
    (positive, negative) pair; V10 = row means, V01 = column means; S = S10/m + S01/n with the
    (m - 1)- and (n - 1)-divisor covariance matrices of the components."""
    v10, v01, aucs = [], [], []
    for s in scores:
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = (y == 1).sum(), (y == 0).sum()
    return np.array(aucs), np.atleast_2d(np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n)


# --- DeLong ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [1, 2])
def test_delong_variance_is_the_papers_from_all_pairs(seed, decimals):
    y, a, _ = rows(seed, decimals=decimals)
    assert len(np.unique(a)) < len(a) / 4  # ties, many
    result = delong(table_of(y, a))
    auc, cov = brute_delong(y, a)
    assert result.auc == pytest.approx(auc[0], rel=EXACT)
    assert result.auc == pytest.approx(roc_auc_score(y, a), rel=EXACT)
    assert result.variance == pytest.approx(cov[0, 0], rel=EXACT)
    half = norm.ppf(0.975) * math.sqrt(cov[0, 0]) / (auc[0] * (1 - auc[0]))
    assert (result.low, result.high) == pytest.approx((expit(logit(auc[0]) - half), expit(logit(auc[0]) + half)),
                                                      rel=1e-10)
    plain = delong(table_of(y, a), level=0.9, transform="normal")
    half = norm.ppf(0.95) * math.sqrt(cov[0, 0])
    assert (plain.low, plain.high) == pytest.approx((auc[0] - half, auc[0] + half), rel=1e-10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [1, 2])
def test_paired_delong_is_the_papers_contrast_from_all_pairs(seed, decimals):
    y, a, b = rows(seed, decimals=decimals)
    frame = pd.DataFrame({"label": y, "a": a, "b": b})
    parts = [joint_table(frame.iloc[i::3], "a", "b") for i in range(3)]  # partitions, concatenated
    result = delong_paired(pd.concat(parts, ignore_index=True))
    assert result == delong_paired(joint_table(frame, "a", "b"))  # to the last bit
    aucs, cov = brute_delong(y, a, b)
    variance = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (aucs[0] - aucs[1]) / math.sqrt(variance)
    assert (result.auc_a, result.auc_b) == pytest.approx((roc_auc_score(y, a), roc_auc_score(y, b)), rel=EXACT)
    assert result.delta == pytest.approx(aucs[0] - aucs[1], rel=1e-10)
    assert result.se == pytest.approx(math.sqrt(variance), rel=EXACT)
    assert result.z == pytest.approx(z, rel=1e-10)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)
    half = norm.ppf(0.975) * math.sqrt(variance)
    assert (result.low, result.high) == pytest.approx((aucs[0] - aucs[1] - half, aucs[0] - aucs[1] + half), rel=1e-9)
    # The covariance matters: correlated models give a much smaller se than independent ones would.
    assert result.se < 0.8 * math.sqrt(cov[0, 0] + cov[1, 1])


def test_joint_table_counts_and_marginals():
    y, a, b = rows(5, n=300)
    joint = joint_table(pd.DataFrame({"label": y, "a": a, "b": b}), "a", "b")
    assert list(joint.columns) == ["score_a", "score_b", "neg", "pos"]
    assert (joint["neg"].sum(), joint["pos"].sum()) == ((y == 0).sum(), (y == 1).sum())
    assert not joint.duplicated(["score_a", "score_b"]).any()
    for model, s in (("score_a", a), ("score_b", b)):  # a marginal is a score table
        assert delong(joint.rename(columns={model: "score"})) == delong(table_of(y, s))


def test_paired_delong_of_a_model_with_itself_is_no_difference():
    y, a, _ = rows(6)
    result = delong_paired(joint_table(pd.DataFrame({"label": y, "a": a, "b": a}), "a", "b"))
    assert (result.delta, result.se, result.z, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_hanley_mcneil_1982_published_area():
    """Hanley & McNeil (1982), The meaning and use of the area under a ROC curve, Radiology 143:29-36,
    Table 1: 5-point ratings (1 definitely normal ... 5 definitely abnormal) of 58 normal and 51
    abnormal patients; published area 0.893. DeLong et al.'s (1988) own example uses data not
    available here, so their variance is checked against the definitions on these data instead."""
    normal, abnormal = [33, 6, 6, 11, 2], [3, 2, 2, 11, 33]
    table = pd.DataFrame({"score": [1, 2, 3, 4, 5], "neg": normal, "pos": abnormal})
    result = delong(table)
    assert round(result.auc, 3) == 0.893
    y, s = expand(table)
    assert result.variance == pytest.approx(brute_delong(y, s)[1][0, 0], rel=EXACT)
    assert result.low < result.auc < result.high < 1


# --- PR AUC ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_pr_auc_is_sklearns_average_precision(seed, decimals):
    y, a, _ = rows(seed, rate=0.05 + 0.1 * seed, decimals=decimals)
    assert pr_auc(table_of(y, a)).ap == pytest.approx(average_precision_score(y, a), rel=EXACT)


def test_pr_auc_logit_interval_is_boyd_eng_page_with_the_positives_as_n():
    # One tied group of 100 positives and 100 negatives: AP = 0.5 exactly, logit(AP) = 0.
    table = pd.DataFrame({"score": [0.3], "neg": [100], "pos": [100]})
    for level in (0.95, 0.9):
        result = pr_auc(table, level=level)
        tau = 1 / math.sqrt(100 * 0.5 * 0.5)  # n = 100 positives, not 200 rows
        z = norm.ppf(0.5 + level / 2)
        assert result.ap == 0.5
        assert (result.low, result.high) == pytest.approx((expit(-z * tau), expit(z * tau)), rel=1e-12)


def test_pr_auc_bootstrap_is_seeded_and_resamples_the_counts():
    y, a, _ = rows(8, n=2000, rate=0.1, decimals=2)
    table = table_of(y, a)
    first = pr_auc(table, method="bootstrap", n_boot=300, seed=1)
    assert first == pr_auc(table, method="bootstrap", n_boot=300, seed=1)
    assert first != pr_auc(table, method="bootstrap", n_boot=300, seed=2)
    assert first.low < first.ap < first.high
    # One replicate, drawn as documented (positives: multinomial counts over the distinct scores that
    # hold positives, in decreasing order; negatives: over the spans at or above each of them and
    # below the next higher one, then below them all), is scikit-learn's AP on rows those counts
    # stand for: each span's negatives placed at its positive score (at the top of the span).
    scores = np.unique(a)[::-1]
    counts = table.groupby("score")[["neg", "pos"]].sum().loc[scores]
    holds = counts["pos"].to_numpy() > 0
    spans = np.cumsum(holds) - holds
    neg_spans = np.bincount(spans, weights=counts["neg"].to_numpy(), minlength=holds.sum() + 1)
    pos_scores = counts["pos"].to_numpy()[holds]
    rng = np.random.default_rng(3)
    pos = rng.multinomial(pos_scores.sum(), pos_scores / pos_scores.sum())
    neg = rng.multinomial(neg_spans.sum(), neg_spans / neg_spans.sum())
    placed = np.r_[scores[holds], scores[-1] - 1.0]  # the last span lies below every positive
    yb, sb = expand(pd.DataFrame({"score": np.r_[scores[holds], placed[-1]],
                                  "neg": neg, "pos": np.r_[pos, 0]}))
    one = pr_auc(table, method="bootstrap", n_boot=1, seed=3)
    assert one.low == pytest.approx(average_precision_score(yb, sb), rel=EXACT) and one.high == one.low
    # And its spread is that of resampling rows (stratified), within Monte Carlo error.
    rng = np.random.default_rng(0)
    positives, negatives = a[y == 1], a[y == 0]
    draws = []
    for _ in range(300):
        p, q = rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))
        draws.append(average_precision_score(np.r_[np.ones(len(p)), np.zeros(len(q))], np.r_[p, q]))
    low, high = np.quantile(draws, [0.025, 0.975])
    assert first.high - first.low == pytest.approx(high - low, rel=0.2)
    assert (first.low + first.high) / 2 == pytest.approx((low + high) / 2, abs=0.01)


def test_pr_auc_bootstrap_of_a_perfect_ranking_is_the_point():
    table = pd.DataFrame({"score": [0.1, 0.2, 0.8, 0.9], "neg": [50, 20, 0, 0], "pos": [0, 0, 5, 3]})
    assert pr_auc(table, method="bootstrap", n_boot=50) == (1.0, 1.0, 1.0, 0.95, "bootstrap")


# --- Brier, log loss, calibration -----------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_brier_and_log_loss_are_sklearns_raw_and_corrected(seed):
    y, a, _ = rows(seed, decimals=2)
    a[:3] = [0.0, 1.0, 1.0]  # exact 0 and 1: log loss clips
    y[:3] = [1, 0, 1]
    table = table_of(y, a)
    correct = partial(correct_probabilities, kept_majority_fraction=0.1)
    assert brier(table) == pytest.approx(brier_score_loss(y, a), rel=EXACT)
    assert log_loss(table) == pytest.approx(sk_log_loss(y, a), rel=EXACT)
    assert brier(table, correct) == pytest.approx(brier_score_loss(y, correct(a)), rel=EXACT)
    assert log_loss(table, correct) == pytest.approx(sk_log_loss(y, correct(a)), rel=EXACT)
    assert brier(table, correct) != pytest.approx(brier(table), rel=1e-3)


def test_log_loss_clips_at_the_epsilon_of_the_scores_dtype():
    y, a, _ = rows(4, decimals=2)
    a[:2], y[:2] = [0.0, 1.0], [1, 0]
    a32 = a.astype("float32")
    assert log_loss(table_of(y, a32)) == pytest.approx(sk_log_loss(y, a32), rel=1e-6)
    assert log_loss(table_of(y, a32)) != pytest.approx(log_loss(table_of(y, a)), rel=1e-3)


def test_decision_scores_need_a_mapping_to_probabilities():
    table = pd.DataFrame({"score": [-2.0, 0.5, 3.0], "neg": [5, 3, 1], "pos": [1, 2, 4]})
    with pytest.raises(ValueError, match="outside"):
        brier(table)
    y, s = expand(table)
    assert brier(table, expit) == pytest.approx(brier_score_loss(y, expit(s)), rel=EXACT)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [5, 10, 13])
@pytest.mark.parametrize("decimals", [1, 2, None])
def test_calibration_curve_is_sklearns(seed, strategy, n_bins, decimals):
    y, a, _ = rows(seed, n=500 + seed, decimals=decimals)
    for correction in (None, partial(correct_probabilities, kept_majority_fraction=0.2)):
        p = a if correction is None else correction(a)
        result = calibration_curve(table_of(y, a), n_bins, strategy, correction=correction)
        prob_true, prob_pred = sk_calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
        np.testing.assert_array_equal(result.prob_true, prob_true)
        np.testing.assert_allclose(result.prob_pred, prob_pred, rtol=EXACT)
        edges = np.linspace(0, 1, n_bins + 1)
        bins = np.percentile(p, edges * 100) if strategy == "quantile" else edges
        counts = np.bincount(np.searchsorted(bins[1:-1], p), minlength=n_bins)
        np.testing.assert_array_equal(result.counts, counts[counts > 0])


@pytest.mark.parametrize("scores, neg, pos, n_bins", [
    ([0.001, 0.05, 0.3, 0.6], [1, 1, 2, 3], [1, 0, 3, 2], 6),
    ([1 / 3, 0.7, 0.99, 1.0], [1, 0, 2, 0], [0, 1, 2, 1], 6),
])
def test_calibration_quantile_edges_where_rounding_decides_the_bin(scores, neg, pos, n_bins):
    """Found by a random search: on these tables, percentiles taken at ``q`` rather than at
    ``q * 100 / 100`` (first) or interpolated as a plain ``a + (b - a) * gamma`` rather than
    numpy's two-sided way (second) put a tied group of rows in another bin than scikit-learn."""
    table = pd.DataFrame({"score": scores, "neg": neg, "pos": pos})
    y, p = expand(table)
    result = calibration_curve(table, n_bins, "quantile")
    prob_true, prob_pred = sk_calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    np.testing.assert_array_equal(result.prob_true, prob_true)
    np.testing.assert_allclose(result.prob_pred, prob_pred, rtol=EXACT)
    bins = np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
    counts = np.bincount(np.searchsorted(bins[1:-1], p), minlength=n_bins)
    np.testing.assert_array_equal(result.counts, counts[counts > 0])


def test_calibration_quantile_edges_on_float32_scores():
    y, a, _ = rows(9, n=777, decimals=3)
    a32 = a.astype("float32")
    result = calibration_curve(table_of(y, a32), 10, "quantile")
    prob_true, prob_pred = sk_calibration_curve(y, a32, n_bins=10, strategy="quantile")
    np.testing.assert_array_equal(result.prob_true, prob_true)
    np.testing.assert_allclose(result.prob_pred, prob_pred, rtol=1e-6)


# --- at k, thresholds -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_at_k_is_the_top_k_rows_without_ties(seed):
    y, a, _ = rows(seed, n=400, decimals=None)
    a = a + np.arange(len(a)) * 1e-9  # no ties at all, even at the clipped ends
    assert len(np.unique(a)) == len(a)
    order = np.argsort(-a)
    budgets = [1, 7, 50, 399, 400, 1000, 0.01, 0.1, 0.25, 1.0]
    for row, budget in zip(at_k(table_of(y, a), budgets), budgets):
        k = min(budget, 400) if isinstance(budget, int) else max(1, math.floor(budget * 400 + 0.5))
        top = y[order[:k]]
        assert (row.budget, row.k) == (budget, k)
        assert row.threshold == a[order[k - 1]]
        assert row.tp == top.sum()
        assert row.precision == pytest.approx(top.mean(), rel=EXACT)
        assert row.recall == pytest.approx(top.sum() / y.sum(), rel=EXACT)


def test_at_k_tie_rule_is_the_expectation_over_random_tie_breaking():
    # 0.9: 2 positives; 0.5: 3 negatives and 1 positive (tied); 0.1: 4 negatives.
    table = pd.DataFrame({"score": [0.1, 0.5, 0.9], "neg": [4, 3, 0], "pos": [0, 1, 2]})
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0])  # the rows in decreasing score order
    for k in range(1, 11):
        # every order of the tied rows 2..5, equally likely
        tps = [y[[0, 1, *order, 6, 7, 8, 9]][:k].sum() for order in itertools.permutations(range(2, 6))]
        row = at_k(table, [k])[0]
        assert row.tp == pytest.approx(np.mean(tps), rel=EXACT), k
        assert row.precision == pytest.approx(np.mean(tps) / k, rel=EXACT)
        assert row.recall == pytest.approx(np.mean(tps) / 3, rel=EXACT)
    assert at_k(table, [4])[0].tp == 2.5 and at_k(table, [4])[0].threshold == 0.5


def test_at_k_refuses_budgets_that_are_not_counts_or_fractions():
    table = pd.DataFrame({"score": [0.1, 0.9], "neg": [4, 1], "pos": [1, 2]})
    for budget in (0, -3, 0.0, 1.5):
        with pytest.raises(ValueError):
            at_k(table, [budget])
    for budget in (True, "10", None):
        with pytest.raises(TypeError):
            at_k(table, [budget])


def brute_threshold(y, s, rule):
    """Every distinct score as threshold (and 'none' for costs), on the rows, with scikit-learn."""
    candidates = ([] if rule == "f1" else [math.inf]) + sorted(np.unique(s), reverse=True)
    best = None
    for t in candidates:
        predicted = (s >= t).astype(int)
        tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
        value = f1_score(y, predicted) if rule == "f1" else -(rule[1] * fp + rule[2] * fn) / len(y)
        if best is None or value > best[1]:  # strict: the highest threshold wins a tie
            best = (t, value, tn, fp, fn, tp)
    return best[0], abs(best[1]), *best[2:]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("rule", ["f1", ("cost", 1.0, 5.0), ("cost", 1.0, 1.0), ("cost", 3.0, 0.5)])
def test_choose_threshold_is_the_brute_force_optimum(seed, rule):
    y, a, _ = rows(seed, n=500, rate=0.08, decimals=2)
    expected = brute_threshold(y, a, rule)
    result = choose_threshold(table_of(y, a), rule)
    assert result.threshold == expected[0]
    assert result.value == pytest.approx(expected[1], rel=1e-12, abs=1e-15)
    assert tuple(result[2:]) == tuple(int(v) for v in expected[2:])


def test_cost_rule_can_predict_no_positive():
    table = pd.DataFrame({"score": [0.2, 0.6], "neg": [900, 95], "pos": [1, 4]})
    result = choose_threshold(table, ("cost", 1.0, 10.0))
    assert result == (math.inf, 5 * 10.0 / 1000, 995, 0, 5, 0)
    assert choose_threshold(table, ("cost", 1.0, 30.0)).threshold == 0.6
