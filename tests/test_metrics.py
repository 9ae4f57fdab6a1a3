"""Exact metrics: the workers' per-score counts give scikit-learn's numbers on the full prediction list."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from workbench.data import read_bigquery_export
from workbench.metrics import (
    Metrics,
    correct_probabilities,
    curves_from_table,
    evaluate,
    metrics_from_table,
    score_table,
)
from workbench.sampling import undersample
from workbench.stores.runs import RunStore

EXACT = 1e-12


def scored_frame(n: int = 30_000, positive_rate: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Labels and probabilities rounded to two decimals: about a hundred distinct scores, many ties."""
    rng = np.random.default_rng(seed)
    label = (rng.random(n) < positive_rate).astype("int8")
    score = np.clip(rng.normal(0.3 + 0.35 * label, 0.2), 0, 1).round(2)
    return pd.DataFrame({"label": label, "score": score})


@pytest.fixture(scope="module")
def scored() -> pd.DataFrame:
    return scored_frame()


def assert_matches_sklearn(metrics: Metrics, y: np.ndarray, p: np.ndarray, threshold: float) -> None:
    predicted = (p >= threshold).astype(int)
    assert abs(metrics.roc_auc - roc_auc_score(y, p)) <= EXACT
    assert abs(metrics.pr_auc - average_precision_score(y, p)) <= EXACT
    np.testing.assert_array_equal(metrics.confusion, confusion_matrix(y, predicted, labels=[0, 1]))
    assert (metrics.tn, metrics.fp, metrics.fn, metrics.tp) == tuple(confusion_matrix(y, predicted, labels=[0, 1]).ravel())
    assert abs(metrics.brier - brier_score_loss(y, p)) <= EXACT
    assert abs(metrics.precision - precision_score(y, predicted, zero_division=0)) <= EXACT
    assert abs(metrics.recall - recall_score(y, predicted, zero_division=0)) <= EXACT
    assert abs(metrics.f1 - f1_score(y, predicted, zero_division=0)) <= EXACT
    assert metrics.n == len(y) and metrics.n_positive == int(y.sum())
    assert metrics.threshold == threshold


@pytest.mark.parametrize(
    "npartitions, threshold", [(1, 0.5), (7, 0.5), (16, 0.5), (7, 0.3), (7, 0.65), (7, 0.43)]
)
def test_evaluate_equals_sklearn_on_the_collected_predictions(client, scored: pd.DataFrame, npartitions, threshold) -> None:
    frame = dd.from_pandas(scored, npartitions=npartitions)
    assert frame.npartitions == npartitions
    assert scored["score"].nunique() < 110 and len(scored) == 30_000  # ties everywhere
    metrics = evaluate(frame, threshold)
    collected = frame.compute()  # what the client would hold without the score table
    assert_matches_sklearn(metrics, collected["label"].to_numpy(), collected["score"].to_numpy(), threshold)
    assert metrics.corrected is None


def test_evaluate_on_other_column_names_and_int64_labels(client, scored: pd.DataFrame) -> None:
    renamed = scored.rename(columns={"label": "is_miner", "score": "p"}).astype({"is_miner": "int64"})
    metrics = evaluate(dd.from_pandas(renamed, npartitions=5), label="is_miner", score="p")
    assert_matches_sklearn(metrics, scored["label"].to_numpy(), scored["score"].to_numpy(), 0.5)


def test_score_table_counts_each_distinct_score(client, scored: pd.DataFrame) -> None:
    table = score_table(dd.from_pandas(scored, npartitions=9))
    assert list(table.columns) == ["score", "neg", "pos"]
    assert table["score"].is_monotonic_increasing and table["score"].is_unique
    expected = scored.groupby("score")["label"].agg(neg=lambda s: int((s == 0).sum()), pos="sum")
    np.testing.assert_array_equal(table["score"].to_numpy(), expected.index.to_numpy())
    np.testing.assert_array_equal(table["neg"].to_numpy(), expected["neg"].to_numpy())
    np.testing.assert_array_equal(table["pos"].to_numpy(), expected["pos"].to_numpy())


def test_metrics_do_not_depend_on_the_partitioning(client, scored: pd.DataFrame) -> None:
    shuffled = scored.sample(frac=1.0, random_state=3).reset_index(drop=True)
    one = evaluate(dd.from_pandas(scored, npartitions=1))
    many = evaluate(dd.from_pandas(shuffled, npartitions=13))
    assert one.to_dict() == many.to_dict()


# ---------------------------------------------------------------- probability correction


def dal_pozzolo(p, beta: float) -> np.ndarray:
    """p' = beta p / (beta p - p + 1), Dal Pozzolo et al. (2015), for the minority-class probability.

    Evaluated as beta p / (beta p + (1 - p)), which is exact at p = 1 and never leaves [0, 1].
    """
    p = np.asarray(p, dtype="float64")
    return beta * p / (beta * p + (1 - p))


def test_correct_probabilities_is_the_dal_pozzolo_formula() -> None:
    p = np.linspace(0, 1, 101)
    for beta in (0.01, 0.1, 0.5, 0.9):
        np.testing.assert_allclose(correct_probabilities(p, beta), dal_pozzolo(p, beta), rtol=0, atol=EXACT)
    # worked values: with beta = 0.1, 0.5 becomes 0.05 / 0.55
    assert correct_probabilities(0.5, 0.1) == pytest.approx(1 / 11, abs=EXACT)
    assert correct_probabilities(np.array([0.0, 1.0]), 0.2).tolist() == [0.0, 1.0]
    # a probability stays a probability, for every beta
    for beta in (0.2, 0.07, 0.3, 0.6, 0.7):
        corrected = correct_probabilities(p, beta)
        assert corrected.min() >= 0 and corrected.max() <= 1, (beta, corrected.max())
    # under-sampling inflates the minority probability: the correction lowers it
    assert np.all(correct_probabilities(p[1:-1], 0.3) < p[1:-1])


def test_correct_probabilities_when_the_majority_is_class_one() -> None:
    """The formula applies to the minority class (0); the result is again P(class 1)."""
    p = np.linspace(0, 1, 101)
    corrected = correct_probabilities(p, 0.25, majority_class=1)
    np.testing.assert_allclose(corrected, 1 - dal_pozzolo(1 - p, 0.25), rtol=0, atol=EXACT)
    assert np.all(corrected[1:-1] > p[1:-1])


def test_with_beta_one_the_correction_is_the_identity() -> None:
    p = np.random.default_rng(1).random(1_000)
    np.testing.assert_allclose(correct_probabilities(p, 1.0), p, rtol=0, atol=EXACT)
    np.testing.assert_allclose(correct_probabilities(p, 1.0, majority_class=1), p, rtol=0, atol=EXACT)


@pytest.mark.parametrize("majority_class", [0, 1])
def test_the_correction_is_monotone_and_keeps_the_ranking(scored: pd.DataFrame, majority_class: int) -> None:
    p = scored["score"].to_numpy()
    y = scored["label"].to_numpy()
    grid = np.unique(p)
    corrected_grid = correct_probabilities(grid, 0.07, majority_class)
    assert np.all(np.diff(corrected_grid) > 0)  # strictly increasing: ties stay ties, order stays order
    corrected = correct_probabilities(p, 0.07, majority_class)
    assert abs(roc_auc_score(y, corrected) - roc_auc_score(y, p)) <= EXACT
    assert abs(average_precision_score(y, corrected) - average_precision_score(y, p)) <= EXACT


# ---------------------------------------------------------------- the corrected block


@pytest.fixture
def undersampling_note(client, tmp_path: Path) -> dict:
    """The note a real under-sampling leaves in ``Dataset.info``."""
    rng = np.random.default_rng(4)
    for i in range(3):
        label = rng.random(2_000) < 0.05
        pq.write_table(pa.table({"x": rng.normal(size=2_000), "label": label}), tmp_path / f"t-{i:012d}.parquet")
    sample = undersample(read_bigquery_export(tmp_path, target="label"), "1:4", seed=0)
    return sample.info["undersample"]


def test_the_corrected_block_only_with_an_undersampling_note(client, scored: pd.DataFrame, undersampling_note) -> None:
    frame = dd.from_pandas(scored, npartitions=6)
    y, p = scored["label"].to_numpy(), scored["score"].to_numpy()

    plain = evaluate(frame, 0.5)
    assert plain.corrected is None
    assert evaluate(frame, 0.5, undersampling=None).corrected is None
    assert evaluate(frame, 0.5, undersampling={}).corrected is None

    beta = undersampling_note["kept_majority_fraction"]
    assert 0 < beta < 1 and undersampling_note["majority_class"] == 0
    noted = evaluate(frame, 0.5, undersampling=undersampling_note)
    assert set(noted.corrected) == {"tn", "fp", "fn", "tp", "precision", "recall", "f1", "brier"}
    # ranking metrics and the uncorrected numbers are those of the plain evaluation
    assert {k: v for k, v in noted.to_dict().items() if k != "corrected"} == {
        k: v for k, v in plain.to_dict().items() if k != "corrected"
    }
    # the corrected numbers are scikit-learn's on the corrected probabilities
    q = dal_pozzolo(p, beta)
    predicted = (q >= 0.5).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    assert (noted.corrected["tn"], noted.corrected["fp"], noted.corrected["fn"], noted.corrected["tp"]) == (tn, fp, fn, tp)
    assert abs(noted.corrected["brier"] - brier_score_loss(y, q)) <= EXACT
    assert abs(noted.corrected["precision"] - precision_score(y, predicted, zero_division=0)) <= EXACT
    assert abs(noted.corrected["recall"] - recall_score(y, predicted, zero_division=0)) <= EXACT
    assert abs(noted.corrected["f1"] - f1_score(y, predicted, zero_division=0)) <= EXACT
    # fewer rows are called positive once the prior shift is undone
    assert noted.corrected["tp"] + noted.corrected["fp"] < plain.tp + plain.fp


# ---------------------------------------------------------------- ROC and PR curves


def table_of(frame: pd.DataFrame) -> pd.DataFrame:
    """The score table ``score_table`` would return, computed with pandas."""
    counts = frame.groupby(["score", "label"]).size().unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    counts.columns = ["neg", "pos"]
    return counts.sort_index().rename_axis("score").reset_index()


@pytest.fixture(scope="module")
def fine_table() -> pd.DataFrame:
    """Scores with six decimals: thousands of distinct scores, so the curves need thinning."""
    rng = np.random.default_rng(7)
    label = (rng.random(50_000) < 0.03).astype("int8")
    score = np.clip(rng.normal(0.3 + 0.25 * label, 0.15), 0, 1).round(6)
    return table_of(pd.DataFrame({"label": label, "score": score}))


def test_the_full_curves_are_scikit_learns_on_the_predictions(scored: pd.DataFrame) -> None:
    y, p = scored["label"].to_numpy(), scored["score"].to_numpy()
    full = curves_from_table(table_of(scored), max_points=None)
    fpr, tpr, _ = roc_curve(y, p)
    np.testing.assert_allclose(full["roc"]["fpr"], fpr, rtol=0, atol=EXACT)
    np.testing.assert_allclose(full["roc"]["tpr"], tpr, rtol=0, atol=EXACT)
    recall, precision = np.array(full["pr"]["recall"]), np.array(full["pr"]["precision"])
    # average precision is the step sum over the PR curve
    assert abs(np.sum(np.diff(recall) * precision[1:]) - average_precision_score(y, p)) <= EXACT


def test_roc_curve_ends_and_area(fine_table: pd.DataFrame) -> None:
    metrics = metrics_from_table(fine_table)
    full = curves_from_table(fine_table, max_points=None)
    fpr, tpr = np.array(full["roc"]["fpr"]), np.array(full["roc"]["tpr"])
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(fpr) > 1_000  # enough points for the thinning to matter
    assert abs(np.trapezoid(tpr, fpr) - metrics.roc_auc) <= EXACT
    recall = np.array(full["pr"]["recall"])
    assert (recall[0], full["pr"]["precision"][0], recall[-1]) == (0.0, 1.0, 1.0)
    assert full["pr"]["precision"][-1] == pytest.approx(fine_table["pos"].sum() / (fine_table[["neg", "pos"]].sum().sum()))


def distance_to_polyline(px, py, x, y) -> np.ndarray:
    """The distance of each point (px, py) to the polyline through (x, y)."""
    px, py = np.asarray(px)[:, None], np.asarray(py)[:, None]
    x0, y0, dx, dy = np.asarray(x[:-1]), np.asarray(y[:-1]), np.diff(x), np.diff(y)
    length2 = np.where(dx * dx + dy * dy > 0, dx * dx + dy * dy, 1.0)
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / length2, 0, 1)
    return np.hypot(px - x0 - t * dx, py - y0 - t * dy).min(axis=1)


def test_thinned_curves_are_small_and_keep_the_shape(fine_table: pd.DataFrame) -> None:
    metrics = metrics_from_table(fine_table)
    curves = metrics.curves
    full = curves_from_table(fine_table, max_points=None)
    roc, pr = curves["roc"], curves["pr"]
    for xs, ys in [(roc["fpr"], roc["tpr"]), (pr["recall"], pr["precision"])]:
        assert len(xs) == len(ys) <= 201
        assert all(round(v, 6) == v for v in [*xs, *ys])
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert (pr["recall"][0], pr["recall"][-1]) == (full["pr"]["recall"][0], full["pr"]["recall"][-1])
    # the thinned ROC curve has (almost) the exact area, and stays close to the full curve
    assert abs(np.trapezoid(roc["tpr"], roc["fpr"]) - metrics.roc_auc) < 1e-3
    assert distance_to_polyline(full["roc"]["fpr"], full["roc"]["tpr"], roc["fpr"], roc["tpr"]).max() < 0.005
    assert distance_to_polyline(full["pr"]["recall"], full["pr"]["precision"], pr["recall"], pr["precision"]).max() < 0.02
    # kept points are points of the full curve
    full_points = set(zip(np.round(full["roc"]["fpr"], 6), np.round(full["roc"]["tpr"], 6)))
    assert set(zip(roc["fpr"], roc["tpr"])) <= full_points


def test_small_curves_are_kept_whole(scored: pd.DataFrame) -> None:
    table = table_of(scored)
    full = curves_from_table(table, max_points=None)
    thinned = curves_from_table(table)
    assert len(full["roc"]["fpr"]) <= 200
    np.testing.assert_allclose(thinned["roc"]["fpr"], full["roc"]["fpr"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(thinned["pr"]["precision"], full["pr"]["precision"], rtol=0, atol=1e-6)


def test_metrics_with_curves_round_trip_through_the_run_store(fine_table: pd.DataFrame, tmp_path: Path) -> None:
    metrics = metrics_from_table(fine_table).to_dict()
    assert set(metrics["curves"]) == {"roc", "pr"}
    with RunStore(tmp_path).start("curves", spec={}, seeds={}, versions={}, cluster={}) as run:
        run.succeed(metrics)
    assert RunStore(tmp_path).get(run.id).metrics == metrics
    assert metrics_from_table(fine_table, curves=False).curves is None
