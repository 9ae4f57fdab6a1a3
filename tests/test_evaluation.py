"""A run's report beyond the AUCs (workbench.metrics.evaluation and evaluate(settings=...)): the
threshold chosen on the validation set, the test confusion matrix there, calibration after the RUS
correction, DeLong's paired test on the workers, and the fingerprint of the test rows."""

from __future__ import annotations


import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, f1_score, log_loss

from workbench.metrics import Evaluation, correct_probabilities, evaluate, score_table
from workbench.metrics import score_table_graph
from workbench.metrics.evaluation import (
    PairedSums,
    PlacementSums,
    fingerprint,
    holm,
    paired_delong,
    paired_from_arrays,
    placements_of,
    with_placements,
)
from workbench.metrics.intervals import delong, delong_paired, joint_table

from .test_intervals import brute_delong, rows

EXACT = 1e-12
UNDERSAMPLING = {"kept_majority_fraction": 0.2, "majority_class": 0}


def frame(y, *scores, names=("score",), npartitions=5) -> dd.DataFrame:
    data = pd.DataFrame({"label": y.astype("int8"), **dict(zip(names, scores))})
    return dd.from_pandas(data, npartitions=npartitions)


@pytest.fixture(scope="module")
def two_models():
    return rows(3, n=3_000, rate=0.1, decimals=2)


def test_paired_delong_on_the_workers_is_the_joint_table_s_test(client, two_models):
    y, a, b = two_models
    scored = frame(y, a, b, names=("a", "b"), npartitions=7)
    on_workers = paired_delong(scored, "a", "b", score_table(scored, score="a"), score_table(scored, score="b"))
    reference = delong_paired(joint_table(pd.DataFrame({"label": y, "a": a, "b": b}), "a", "b"))
    for got, want in zip(on_workers, reference):
        assert got == pytest.approx(want, rel=1e-10, abs=1e-14)
    assert on_workers == pytest.approx(paired_from_arrays(y, a, b), rel=1e-10, abs=1e-14)


def test_paired_delong_matches_the_pairwise_definitions_with_ties(two_models):
    y, a, b = (v[:400] for v in two_models)
    test = paired_from_arrays(y, a, b)
    aucs, covariance = brute_delong(y, a, b)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    assert (test.auc_a, test.auc_b) == pytest.approx(tuple(aucs), rel=EXACT)
    assert test.se ** 2 == pytest.approx(variance, rel=1e-9)


@pytest.mark.parametrize("chunk", [1, 97, 3_000])
def test_placements_streamed_in_chunks_give_the_joint_table_s_test_and_intervals(two_models, chunk):
    """What `workbench compare` and the sweep report compute from the kept scores, a partition at a
    time: the same paired test as the joint table and the same interval as DeLong's on the table."""
    y, a, b = two_models
    pa, pb = placements_of(y, a), placements_of(y, b)
    paired, single = PairedSums(), PlacementSums()
    for i in range(0, len(y), chunk):
        paired.add(y[i:i + chunk], pa[i:i + chunk], pb[i:i + chunk])
        single.add(y[i:i + chunk], pa[i:i + chunk])
    reference = delong_paired(joint_table(pd.DataFrame({"label": y, "a": a, "b": b}), "a", "b"))
    for got, want in zip(paired.result(), reference):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-13)
    counts = pd.DataFrame({"label": y, "s": a}).groupby("s")["label"].agg(["size", "sum"])
    table = pd.DataFrame({"score": counts.index, "neg": counts["size"] - counts["sum"], "pos": counts["sum"]})
    assert tuple(single.result()) == pytest.approx(tuple(delong(table)), rel=1e-9)


def test_placements_written_by_the_workers_are_those_of_the_whole_table(client, two_models):
    y, a, _ = two_models
    scored = frame(y, a, npartitions=7)
    placed = with_placements(scored, score_table_graph(scored)).compute()
    assert placed["placement"].to_numpy() == pytest.approx(placements_of(y, a), rel=EXACT)
    positives = placed[placed["label"] == 1]["placement"]
    assert positives.mean() == pytest.approx(delong(score_table(scored)).auc, rel=EXACT)  # mean V10 is the AUC


def test_a_class_with_one_row_has_no_streamed_test():
    sums = PairedSums()
    sums.add(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9]), np.array([0.2, 0.1, 0.8]))
    with pytest.raises(ValueError, match="at least 2 negatives and 2 positives"):
        sums.result()


def test_a_model_against_itself_differs_by_nothing(two_models):
    y, a, _ = two_models
    test = paired_from_arrays(y, a, a)
    assert (test.delta, test.se, test.z, test.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_holm_is_statsmodels_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []


def _f1_best_cut(y, s):
    """Brute force: the cut (rows with score >= cut positive) with the highest F1, highest cut on ties."""
    best = max(sorted(set(s)), key=lambda t: (f1_score(y, s >= t), t))
    return best


def test_the_threshold_f1_is_chosen_on_the_validation_set_and_applied_to_the_test_set(client):
    y_valid, s_valid, _ = rows(5, n=2_000, rate=0.1, decimals=2)
    y_test, s_test, _ = rows(6, n=3_000, rate=0.1, decimals=2)
    valid_table = score_table(frame(y_valid, s_valid))
    m = evaluate(frame(y_test, s_test), settings=Evaluation(threshold="f1", n_boot=50), valid_table=valid_table)
    cut = _f1_best_cut(y_valid, s_valid)
    assert m.threshold == cut and m.threshold_rule == "f1"
    assert m.threshold_choice["value"] == pytest.approx(f1_score(y_valid, s_valid >= cut), rel=EXACT)
    assert (m.tn, m.fp, m.fn, m.tp) == tuple(confusion_matrix(y_test, s_test >= cut).ravel())


def test_the_threshold_cost_may_predict_no_positive(client):
    y_valid, s_valid, _ = rows(5, n=2_000, rate=0.02, decimals=2)
    y_test, s_test, _ = rows(6, n=3_000, rate=0.02, decimals=2)
    cheap_misses = Evaluation(threshold="cost", costs=(100.0, 1.0), n_boot=50)
    m = evaluate(frame(y_test, s_test), settings=cheap_misses, valid_table=score_table(frame(y_valid, s_valid)))
    assert m.threshold == np.inf and m.tp == 0 and m.fp == 0 and m.fn == int(y_test.sum())
    assert m.threshold_choice["costs"] == {"fp": 100.0, "fn": 1.0}


def test_calibration_and_log_loss_after_the_rus_correction_are_scikit_learn_s(client, two_models):
    y, a, _ = two_models
    settings = Evaluation(threshold=0.5, n_boot=50, calibration_bins=8)
    m = evaluate(frame(y, a), undersampling=UNDERSAMPLING, settings=settings)
    corrected = correct_probabilities(a, 0.2)
    prob_true, prob_pred = calibration_curve(y, corrected, n_bins=8, strategy="uniform")
    assert m.calibration["corrected"] is True
    np.testing.assert_allclose(m.calibration["prob_true"], prob_true, rtol=0, atol=EXACT)
    np.testing.assert_allclose(m.calibration["prob_pred"], prob_pred, rtol=0, atol=EXACT)
    assert m.log_loss == pytest.approx(log_loss(y, a), rel=1e-12)
    assert m.corrected["log_loss"] == pytest.approx(log_loss(y, corrected), rel=1e-12)
    assert m.roc_auc_ci[0] < m.roc_auc < m.roc_auc_ci[1] and m.pr_auc_ci[0] < m.pr_auc < m.pr_auc_ci[1]


def test_precision_and_recall_at_k_are_those_of_the_top_rows(client):
    rng = np.random.default_rng(0)
    s = rng.random(1_000)  # no ties: the top k rows are well defined
    y = (rng.random(1_000) < s / 3).astype("int8")
    m = evaluate(frame(y, s), settings=Evaluation(threshold=0.5, at_k=(50, 0.1), n_boot=50))
    order = np.argsort(-s)
    for at, k in zip(m.at_k, (50, 100)):
        assert at["k"] == k and at["precision"] == pytest.approx(y[order[:k]].mean(), rel=EXACT)
        assert at["recall"] == pytest.approx(y[order[:k]].sum() / y.sum(), rel=EXACT)


def test_auto_chooses_with_a_validation_set_and_falls_back_to_one_half_without():
    assert Evaluation().rule(True) == "f1" and Evaluation().rule(False) == 0.5
    assert Evaluation(threshold=0.3).rule(True) == 0.3


def test_the_fingerprint_names_the_rows_and_their_order(client):
    data = pd.DataFrame({"label": np.zeros(100, dtype="int8"), "score": np.linspace(0, 1, 100)})
    one = dd.from_pandas(data, npartitions=4)
    keys = ["a.parquet:0", "a.parquet:1", "b.parquet:0", "b.parquet:1"]
    assert fingerprint(one, keys) == fingerprint(dd.from_pandas(data.copy(), npartitions=4), keys)
    assert fingerprint(one, keys) != fingerprint(dd.from_pandas(data.iloc[1:], npartitions=4), keys)
    assert fingerprint(one, keys) != fingerprint(one, keys[::-1])
