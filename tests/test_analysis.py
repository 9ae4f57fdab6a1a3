"""The sweep analysis against statsmodels and SciPy called directly on the same tables, and the
Ernest model on synthetic timings with known coefficients. No cluster: tables only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multicomp import pairwise_tukeyhsd

from workbench import analysis as A
from workbench.errors import DataError

RATIOS = {"1:1": 1, "1:10": 10, "1:100": 100, "1:1000": 1000}
THETA = np.array([1.5, 4e-5, 0.8, 0.05])  # θ0 s, θ1 s per row per worker, θ2 s per log(worker), θ3 s per worker


def ernest_time(rows, workers):
    return THETA[0] + THETA[1] * rows / workers + THETA[2] * np.log(workers) + THETA[3] * workers


def study(seed=0, workers=(1, 2, 4, 8), trials=6, noise=0.03) -> pd.DataFrame:
    """A sweep's table: time follows the Ernest model with noise proportional to the time."""
    rng = np.random.default_rng(seed)
    rows = []
    for ratio, k in RATIOS.items():
        n = 1_000 * (k + 1)
        for w in workers:
            for trial in range(trials):
                t = ernest_time(n, w) * (1 + rng.normal(0, noise))
                rows.append({"workers": w, "ratio": ratio, "rows": n, "trial": trial, "train_seconds": t,
                             "roc_auc": 0.93 - 0.01 * np.log10(k) + rng.normal(0, 0.004),
                             "pr_auc": 0.40 + 0.02 * np.log10(k) + rng.normal(0, 0.01), "status": "succeeded"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    return A.normalise(study())


@pytest.mark.parametrize("response", ["train_seconds", "roc_auc"])
def test_anova_is_statsmodels_on_the_same_table(table, response):
    ours = A.anova(table, response, "workers", "ratio")
    assert list(ours) == list(RATIOS)  # in order of increasing data size
    for ratio in RATIOS:
        sub = table[table["ratio"] == ratio]
        theirs = anova_lm(ols(f"{response} ~ C(workers)", data=sub).fit(), typ=2)
        np.testing.assert_allclose(ours[ratio].to_numpy(dtype=float), theirs.to_numpy(dtype=float), rtol=1e-12)
        assert list(ours[ratio].index) == ["C(workers)", "Residual"]
        assert list(ours[ratio].columns) == list(theirs.columns)


@pytest.mark.parametrize("response", ["train_seconds", "roc_auc"])
def test_tukey_is_statsmodels_on_the_same_table(table, response):
    ours = A.tukey(table, response, "workers", "ratio", alpha=0.05)
    for ratio in RATIOS:
        sub = table[table["ratio"] == ratio]
        theirs = pairwise_tukeyhsd(sub[response], sub["workers"], alpha=0.05)
        np.testing.assert_array_equal(ours[ratio].reject, theirs.reject)
        np.testing.assert_allclose(ours[ratio].meandiffs, theirs.meandiffs, rtol=1e-12)
        np.testing.assert_allclose(ours[ratio].pvalues, theirs.pvalues, rtol=1e-9)
        np.testing.assert_allclose(ours[ratio].confint, theirs.confint, rtol=1e-12)
        assert A.tukey_table(ours[ratio]).equals(A.tukey_table(theirs))


def test_groupings_share_a_letter_only_when_not_significantly_different():
    rng = np.random.default_rng(3)
    # 4 workers is clearly fastest; 1 and 2 overlap; 8 overlaps 4 and 2 barely: a textbook overlap
    means = {1: 10.0, 2: 9.8, 4: 5.0, 8: 5.1}
    frame = pd.DataFrame([{"workers": w, "ratio": "1:1", "rows": 10, "train_seconds": m + rng.normal(0, 0.2)}
                          for w, m in means.items() for _ in range(8)])
    result = A.tukey(frame)["1:1"]
    groups = A.tukey_groups(result).set_index("level")["group"]
    levels = list(result.groupsunique)
    pairs = list(zip(*np.triu_indices(len(levels), 1)))
    for (i, j), reject in zip(pairs, result.reject):
        share = bool(set(groups[levels[i]]) & set(groups[levels[j]]))
        assert share == (not reject), (levels[i], levels[j])
    assert groups[4] == groups[8] == "a" and groups[1] == groups[2] == "b"


def test_untestable_cells_are_reported_not_raised():
    frame = pd.DataFrame({"workers": [1, 2], "ratio": ["1:1", "1:1"], "rows": [5, 5], "train_seconds": [1.0, 2.0]})
    assert "no replication" in A.anova(frame)["1:1"]
    one = pd.DataFrame({"workers": [1, 1, 1], "ratio": "1:1", "rows": 5, "train_seconds": [1.0, 2.0, 3.0]})
    assert "only 1 level" in A.tukey(one)["1:1"]


def test_speedup_and_efficiency_from_median_times(table):
    speed, efficiency = A.speedup(table)
    medians = table.groupby(["ratio", "workers"])["train_seconds"].median()
    for ratio in RATIOS:
        for w in (1, 2, 4, 8):
            assert speed.loc[ratio, w] == pytest.approx(medians[(ratio, 1)] / medians[(ratio, w)])
            assert efficiency.loc[ratio, w] == pytest.approx(speed.loc[ratio, w] / w)
    assert list(speed.index) == list(RATIOS)


def test_the_smallest_size_at_which_more_workers_are_significantly_faster(table):
    found = A.crossover(table).set_index("workers")
    # On 2,000 rows more workers only add log(w) and w terms: never faster. On 1,001,000 rows the
    # rows/w term dominates: every count beats every smaller one.
    for w in (2, 4, 8):
        assert found.loc[w, "faster than every fewer"] in ("1:10", "1:100", "1:1000")
    assert found.loc[8, "faster than every fewer"] == "1:1000"
    assert found.loc[8, "rows (every fewer)"] == 1_001_000
    # cross-check one answer with the Tukey results themselves
    for ratio in RATIOS:
        sub = table[table["ratio"] == ratio]
        tk = pairwise_tukeyhsd(sub["train_seconds"], sub["workers"])
        faster = all(A.significant_faster(tk, v, 2) for v in (1,))
        assert faster == (list(RATIOS).index(ratio) >= list(RATIOS).index(found.loc[2, "faster than every fewer"]))


def test_ernest_recovers_known_coefficients():
    table = A.normalise(study(noise=0.002, workers=(1, 2, 4, 8, 16), trials=3))
    model = A.fit_ernest(table)
    np.testing.assert_allclose(model.theta, THETA, rtol=0.05)
    assert model.r2 > 0.999 and model.mape < 0.01
    exact = A.normalise(pd.DataFrame([{"workers": w, "rows": n, "ratio": "1:1", "train_seconds": ernest_time(n, w)}
                                      for n in (2_000, 50_000, 400_000, 3_000_000) for w in (1, 2, 4, 8, 16)]))
    np.testing.assert_allclose(A.fit_ernest(exact).theta, THETA, rtol=1e-6)


def test_ernest_predicts_held_out_cells():
    table = A.normalise(study(seed=7, workers=(1, 2, 4, 8, 16), noise=0.03))
    held_out = (table["workers"] == 16) | (table["ratio"] == "1:100")
    model = A.fit_ernest(table[~held_out])
    test = table[held_out]
    predicted = model.predict(test["rows"], test["workers"])
    error = np.abs(predicted - test["train_seconds"]) / test["train_seconds"]
    assert error.median() < 0.05 and error.max() < 0.2
    lower, upper = model.interval(test["rows"], test["workers"], level=0.95)
    inside = ((test["train_seconds"] >= lower) & (test["train_seconds"] <= upper)).mean()
    assert inside > 0.8


def test_recommend_the_fastest_and_the_cheapest_within_tolerance():
    table = A.normalise(study(noise=0.002, workers=(1, 2, 4, 8, 16), trials=3))
    model = A.fit_ernest(table)
    candidates = [1, 2, 4, 8, 16, 32, 64]
    for rows in (5_000, 2_000_000, 50_000_000):
        advice = A.recommend(model, rows, candidates, tolerance=0.10)
        truth = {w: ernest_time(rows, w) for w in candidates}
        assert advice.fastest == min(truth, key=truth.get)
        best = min(truth.values())
        assert advice.cheapest == min(w for w, t in truth.items() if t <= 1.1 * best)
        row = advice.table.set_index("workers").loc[advice.fastest]
        assert row["lower (s)"] <= row["predicted (s)"] <= row["upper (s)"]
    assert A.recommend(model, 5_000, candidates).fastest == 1
    assert A.recommend(model, 50_000_000, candidates).fastest >= 16


def test_a_users_csv_or_parquet_table_gives_the_same_analysis(tmp_path, table):
    theirs = study().rename(columns={"workers": "nodes", "train_seconds": "training_time"}).drop(columns="status")
    theirs.to_csv(tmp_path / "published.csv", index=False)
    theirs.to_parquet(tmp_path / "published.parquet")
    for name in ("published.csv", "published.parquet"):
        loaded = A.load_results(tmp_path / name, columns={"workers": "nodes", "train_seconds": "training_time"})
        for ratio, result in A.anova(loaded).items():
            np.testing.assert_allclose(result.to_numpy(dtype=float), A.anova(table)[ratio].to_numpy(dtype=float))
    only_failed = study().assign(status="failed")
    only_failed.loc[0, "status"] = "succeeded"
    only_failed.to_csv(tmp_path / "mixed.csv", index=False)
    assert len(A.load_results(tmp_path / "mixed.csv")) == 1


def test_a_table_without_the_needed_columns_is_one_line(tmp_path):
    pd.DataFrame({"nodes": [1, 2], "time": [1.0, 2.0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError) as info:
        A.load_results(tmp_path / "bad.csv")
    message = str(info.value)
    assert "\n" not in message and "lacks the column(s) workers, train_seconds, ratio or rows" in message
    assert "--column ours=theirs" in message
    with pytest.raises(DataError, match="has no column 'nodez'"):
        A.load_results(tmp_path / "bad.csv", columns={"workers": "nodez"})
    (tmp_path / "garbage.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read .* as Parquet"):
        A.load_results(tmp_path / "garbage.parquet")


def test_effects_relative_to_the_baseline_cell(table):
    frame = A.effects(table, {"workers": [1, 2, 4, 8], "sampling.ratio": list(RATIOS)},
                      {"workers": 1, "sampling.ratio": "1:1"})
    base = table[(table["workers"] == 1) & (table["ratio"] == "1:1")]
    row = frame[(frame["axis"] == "workers") & (frame["value"] == "4")].iloc[0]
    cell = table[(table["workers"] == 4) & (table["ratio"] == "1:1")]
    assert row["cells"] == 6
    assert row["train_seconds %"] == pytest.approx(100 * cell["train_seconds"].mean() / base["train_seconds"].mean())
    assert row["roc_auc %"] == pytest.approx(100 * cell["roc_auc"].mean() / base["roc_auc"].mean())
    assert frame[frame["baseline"]]["train_seconds %"].tolist() == [pytest.approx(100)] * 2
    ratio = frame[(frame["axis"] == "sampling.ratio") & (frame["value"] == "1:1000")].iloc[0]
    assert ratio["train_seconds %"] > 1000  # a thousand times the negatives on one worker
