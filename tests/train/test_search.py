"""workbench.search: dask-ml grid / random search on the session cluster, RUS inside the folds."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
from scipy.stats import loguniform
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from tests.train.test_xgb import _write_export
from workbench import read_bigquery_export, split
from workbench.errors import WorkbenchError
from workbench.train import RUSClassifier
from workbench.train.search import SearchResult, search

SCORING = {
    "roc_auc": "roc_auc",
    "average_precision": "average_precision",
    # What the fitted model was trained on, and what it is asked to score: RUS only in fit.
    "fit_rate": lambda est, X, y: est.sample_counts_[1] / est.sample_counts_.sum(),
    "valid_rate": lambda est, X, y: float(np.mean(y)),
}
GRID = {"ratio": ["1:1", "1:3"], "C": [0.1, 1.0]}


@pytest.fixture(scope="module")
def train(tmp_path_factory, client):
    path = _write_export(tmp_path_factory.mktemp("search") / "export", shards=3, rows=4_000)
    data = read_bigquery_export(str(path), "is_miner", drop=["address"])
    train, _ = split(data, 0.25, seed=0)
    return train.persist(client)


@pytest.fixture(scope="module")
def arrays(train):
    frame = train.frame.compute()  # small test data, collected only to compare with scikit-learn
    return frame[list(train.features)].to_numpy("float64"), frame[train.target].to_numpy("int8")


@pytest.fixture(scope="module")
def result(train, client):
    return search(LogisticRegression(), GRID, train, scoring=SCORING, refit="roc_auc", seed=0, client=client)


def test_rus_inside_the_folds_only(result, train):
    table = result.candidates
    natural = train.n_positive / train.n_rows
    for _, row in table.iterrows():
        k = float(row["ratio"].split(":")[1])
        assert row["mean_fit_rate"] == pytest.approx(1 / (1 + k), abs=1e-3)  # the sample, in fit
        assert row["std_fit_rate"] == pytest.approx(0, abs=1e-3)
        assert row["mean_valid_rate"] == pytest.approx(natural, abs=1e-3)  # the validation folds: untouched
    assert result.default["mean_fit_rate"] == pytest.approx(0.5, abs=1e-3)  # RUSClassifier's own ratio, 1:1
    assert isinstance(result.best_estimator, RUSClassifier)


def test_every_candidate_recorded_and_equal_to_scikit_learn(result, arrays):
    assert isinstance(result, SearchResult)
    table = result.candidates
    assert len(table) == 4 and sorted(table["rank"]) == [1, 2, 3, 4]
    assert list(table["rank"]) == sorted(table["rank"])  # best first
    for name in SCORING:
        assert {f"mean_{name}", f"std_{name}"} <= set(table.columns)
    assert (table["mean_fit_time"] > 0).all() and (table["std_fit_time"] >= 0).all()
    assert {(r, c) for r, c in zip(table["ratio"], table["C"])} == {(r, c) for r in GRID["ratio"] for c in GRID["C"]}
    best = table.iloc[0]
    assert result.best_params == {"ratio": best["ratio"], "C": best["C"]}
    assert result.best_scores["roc_auc"] == best["mean_roc_auc"] == table["mean_roc_auc"].max()

    # The same search with scikit-learn on the same rows, folds and RUS seed gives the same scores.
    X, y = arrays
    reference = GridSearchCV(
        RUSClassifier(LogisticRegression(), random_state=0), {"ratio": GRID["ratio"], "estimator__C": GRID["C"]},
        scoring=["roc_auc", "average_precision"], refit="roc_auc", cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    ours = table.set_index(["ratio", "C"])
    for params, auc, ap in zip(reference.cv_results_["params"], reference.cv_results_["mean_test_roc_auc"],
                               reference.cv_results_["mean_test_average_precision"]):
        row = ours.loc[(params["ratio"], params["estimator__C"])]
        assert row["mean_roc_auc"] == pytest.approx(auc, rel=1e-12)
        assert row["mean_average_precision"] == pytest.approx(ap, rel=1e-12)
    refitted = result.best_estimator
    assert refitted.get_params()["estimator__C"] == reference.best_params_["estimator__C"]
    np.testing.assert_allclose(refitted.predict_proba(X), reference.best_estimator_.predict_proba(X))


def test_best_vs_default_and_timings(result):
    default = result.default
    assert set(default) >= {"mean_roc_auc", "std_roc_auc", "mean_average_precision", "mean_fit_time"}
    comparison = result.best_vs_default()
    assert list(comparison.index) == ["best", "default"]
    assert list(comparison.columns) == ["mean_roc_auc", "mean_average_precision", "mean_fit_rate", "mean_valid_rate",
                                        "mean_fit_time"]
    assert comparison.loc["best", "mean_roc_auc"] >= comparison.loc["default", "mean_roc_auc"] - 1e-12
    assert set(result.timings) == {"collect", "search", "refit", "total"}
    assert result.tuning_seconds == result.timings["total"] >= result.timings["search"] > 0


def test_random_search_with_plain_and_prefixed_names(train, client):
    distributions = {"estimator__C": loguniform(1e-2, 1e1), "ratio": ["1:1", "1:2"]}
    result = search(LogisticRegression(), distributions, train, kind="random", n_iter=3, seed=1,
                    refit=False, compare_default=False, client=client)
    assert len(result.candidates) == 3
    assert result.candidates["estimator__C"].between(1e-2, 1e1).all()
    assert result.best_estimator is None and result.default is None
    assert result.best_vs_default().index.tolist() == ["best"]
    assert set(result.best_params) == {"estimator__C", "ratio"}


def test_without_sampling_estimators_run_single_threaded(train, client):
    result = search(RandomForestClassifier(n_estimators=5, n_jobs=-1, random_state=0), {"max_depth": [2, None]},
                    train, scoring=("roc_auc",), cv=2, compare_default=False, client=client)
    assert isinstance(result.best_estimator, RandomForestClassifier)  # no ratio: not wrapped
    assert result.best_estimator.n_jobs == -1  # 1 while searching; the caller's value on the result
    assert list(result.candidates["max_depth"]) in ([2, None], [None, 2])  # None stays None
    assert set(result.candidates.columns) == {"max_depth", "mean_roc_auc", "std_roc_auc", "mean_fit_time",
                                              "std_fit_time", "mean_score_time", "std_score_time", "rank"}


def test_refuses_data_too_large_for_memory(train, client):
    with dask.config.set({"workbench.in_memory.max_bytes": "100KiB"}):
        with pytest.raises(WorkbenchError, match=r"search holds its data in memory, and 9,000 rows x 4 features") as info:
            search(LogisticRegression(), {"C": [1.0]}, train, client=client)
    assert "\n" not in str(info.value) and "workbench.in_memory.max_bytes" in str(info.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "bayes"}, "kind 'bayes' is not a search kind"),
    ({"kind": "random"}, "a random search needs n_iter"),
    ({"n_iter": 3}, "n_iter is for kind='random'"),
    ({"cv": 1}, "cv 1 is not a number of folds"),
    ({"refit": "f1"}, "refit 'f1' is not one of the scores"),
    ({"params": {"depth": [1]}}, "LogisticRegression has no parameter 'depth'"),
    ({"cv": 10_000}, "the minority class has .* rows, fewer than cv=10000 folds"),
])
def test_bad_arguments(train, client, kwargs, message):
    params = kwargs.pop("params", {"C": [1.0]})
    with pytest.raises(WorkbenchError, match=message):
        search(LogisticRegression(), params, train, client=client, **kwargs)


def test_table_keeps_the_names_as_written(result):
    assert list(result.candidates.columns[:2]) == ["ratio", "C"]
    assert isinstance(result.candidates, pd.DataFrame) and result.candidates.index.tolist() == [0, 1, 2, 3]


def test_a_pipeline_with_imputation_refits(train, client):
    """SimpleImputer's missing_values is NaN, which equals nothing: it must not count as a parameter the
    search forced, or the refit would set it to None and refuse the NaN it exists to fill."""
    from workbench.train.estimators import make_estimator

    estimator = make_estimator("LogisticRegression", {"max_iter": 200}, ["impute", "scale"])
    found = search(estimator, {"model__C": [0.1, 1.0]}, train, cv=2, seed=0, client=client)
    imputer = found.best_estimator.named_steps["impute"]
    assert imputer.missing_values != imputer.missing_values  # still NaN
    assert found.best_params["model__C"] in (0.1, 1.0)
