"""Adaptive search on a real 2-worker LocalCluster: dask-ml's Hyperband / successive halving through the
shim for dask/dask-ml#1016, and successive halving for XGBoost with boosting rounds as the budget."""

from __future__ import annotations

import warnings

import dask
import pytest
from dask_ml.model_selection import HyperbandSearchCV
from dask_ml.model_selection import _incremental as dask_ml_incremental
from scipy.stats import loguniform
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

import workbench.train.adaptive as adaptive
from workbench import (
    WorkbenchWarning,
    read_bigquery_export,
    split,
    synth_bitcoin_export,
)
from workbench.errors import WorkbenchError
from workbench.metrics import score
from workbench.train.adaptive import (
    DEFAULT_PARAMS,
    HalvingResult,
    dask_ml_search_fix,
    hyperband_search,
    pr_auc_scorer,
    roc_auc_scorer,
    rung_rounds,
    successive_halving_search,
    xgboost_successive_halving,
)
from workbench.train.incremental import dataset_arrays, fit_preprocessor

SGD_PARAMS = {"alpha": loguniform(1e-6, 1e-1), "loss": ["log_loss", "hinge", "modified_huber"]}
CANDIDATES = [
    {"max_depth": 1, "eta": 0.05},
    {"max_depth": 3, "eta": 0.3},
    {"max_depth": 2, "eta": 0.3, "subsample": 0.8},
    {"max_depth": 3, "eta": 0.01},
]


@pytest.fixture(scope="module")
def parts(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("adaptive") / "export"
    synth_bitcoin_export(path, 40_000, positive_rate=0.05, signal=2.0, rows_per_shard=4_000, seed=0, client=client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        data = read_bigquery_export(str(path), "is_miner", drop=["address"])
    train, test = split(data, 0.25, seed=0)
    train, valid = split(train, 0.2, seed=0)
    return {"train": train, "valid": valid, "test": test}


@pytest.fixture(scope="module")
def arrays(parts):
    preprocess = fit_preprocessor(parts["train"])
    X, y, _ = dataset_arrays(parts["train"], preprocess)
    X_test, y_test, _ = dataset_arrays(parts["test"], preprocess)
    return X, y, X_test, y_test


def test_upstream_dask_ml_still_fails_without_the_shim(arrays, client):
    """If this fails, dask-ml (or dask) fixed dask/dask-ml#1016: drop the shim (docs/training.md)."""
    X, y, _, _ = arrays
    search = HyperbandSearchCV(SGDClassifier(), SGD_PARAMS, max_iter=3, scoring=roc_auc_scorer, random_state=0)
    with pytest.raises(RuntimeError, match="asynchronous Client in a synchronous context"):
        search.fit(X, y, classes=[0, 1])


def test_hyperband_through_the_shim_finds_a_good_model(arrays, client):
    X, y, X_test, y_test = arrays
    search = hyperband_search(SGDClassifier(), SGD_PARAMS, X, y, max_iter=9, random_state=0, client=client,
                              classes=[0, 1])
    assert dask_ml_incremental.dask is dask  # patched for the call only
    n_models = len(search.cv_results_["params"])
    assert n_models >= 10  # Hyperband's brackets for max_iter=9
    calls = [record["partial_fit_calls"] for record in search.history_]
    assert max(calls) == 9 and min(calls) == 1  # some models stopped early, the best ran to max_iter
    assert search.best_score_ > 0.95
    assert search.best_score_ == max(search.cv_results_["test_score"])
    # The best model scores well on held-out data, with the exact scorer on dask arrays.
    test_auc = roc_auc_scorer(search.best_estimator_, X_test, y_test)
    assert test_auc > 0.95
    Xn, yn = dask.compute(X_test, y_test)
    expected = roc_auc_score(yn, _scores(search.best_estimator_, Xn))
    assert test_auc == pytest.approx(expected, rel=1e-12)


def test_successive_halving_through_the_shim(arrays, client):
    X, y, _, _ = arrays
    search = successive_halving_search(SGDClassifier(), SGD_PARAMS, X, y, n_initial_parameters=4, n_initial_iter=1,
                                       max_iter=4, random_state=0, scoring=pr_auc_scorer, client=client,
                                       classes=[0, 1])
    assert dask_ml_incremental.dask is dask
    assert len(search.cv_results_["params"]) == 4
    assert max(record["partial_fit_calls"] for record in search.history_) > 1
    assert search.best_score_ > 0.5


def test_the_shim_is_scoped_and_restored(client):
    real = dask_ml_incremental.dask
    with pytest.raises(ZeroDivisionError):
        with dask_ml_search_fix():
            assert dask_ml_incremental.dask is not real
            assert dask_ml_incremental.dask.delayed is dask.delayed  # everything but persist is dask's
            with pytest.raises(WorkbenchError, match="already patched"):
                with dask_ml_search_fix():
                    pass
            1 / 0
    assert dask_ml_incremental.dask is real is dask


def test_the_shim_persists_collections_and_dicts(client):
    with dask_ml_search_fix():
        one, two, three = dask_ml_incremental.dask.persist(
            dask.delayed(1) + 1, {"a": dask.delayed(2) * 3, "b": dask.delayed(4)}, {}, priority={("x",): -1}
        )
    assert one.compute() == 2
    assert set(two) == {"a", "b"} and two["a"].compute() == 6 and two["b"].compute() == 4
    assert three == {}


def _scores(estimator, X):
    return estimator.predict_proba(X)[:, 1] if hasattr(estimator, "predict_proba") else estimator.decision_function(X)


@pytest.mark.parametrize("loss", ["log_loss", "hinge"])
def test_scorers_are_exact_on_numpy_and_dask(arrays, loss):
    X, y, X_test, y_test = arrays
    Xn, yn = dask.compute(X.blocks[:3], y.blocks[:3])
    model = SGDClassifier(loss=loss, random_state=0).fit(Xn, yn)
    Xt, yt = dask.compute(X_test, y_test)
    scores = _scores(model, Xt)
    assert roc_auc_scorer(model, Xt, yt) == pytest.approx(roc_auc_score(yt, scores), rel=1e-12)
    assert pr_auc_scorer(model, Xt, yt) == pytest.approx(average_precision_score(yt, scores), rel=1e-12)
    assert roc_auc_scorer(model, X_test, y_test) == pytest.approx(roc_auc_score(yt, scores), rel=1e-12)
    assert pr_auc_scorer(model, X_test, y_test) == pytest.approx(average_precision_score(yt, scores), rel=1e-12)


def test_rung_rounds():
    assert rung_rounds(10, 100, 3) == [10, 30, 90, 100]
    assert rung_rounds(2, 8, 2) == [2, 4, 8]
    assert rung_rounds(5, 5, 3) == [5]
    assert rung_rounds(1, 10, 3) == [1, 3, 9, 10]


@pytest.fixture(scope="module")
def halving(parts, client):
    calls = []
    real = adaptive.dxgb.train

    def train(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adaptive.dxgb, "train", train)
        result = xgboost_successive_halving(parts["train"], parts["valid"], CANDIDATES, min_rounds=2, max_rounds=8,
                                            eta=2, seed=3, client=client)
    return result, calls


def test_xgboost_halving_table_and_promotions(halving):
    result, _ = halving
    assert isinstance(result, HalvingResult)
    assert result.rungs == [2, 4, 8]
    table = result.table
    assert list(table.columns) == ["candidate", "rung", "rounds", "pr_auc", "roc_auc", "seconds", "promoted", "params"]
    assert table.groupby("rung")["candidate"].count().tolist() == [4, 2, 1]
    assert table.groupby("rung")["rounds"].unique().map(list).tolist() == [[2], [4], [8]]
    for rung, rows in table.groupby("rung"):
        ranked = rows.sort_values(["pr_auc", "roc_auc"], ascending=False)
        promoted = set(rows.loc[rows["promoted"], "candidate"])
        assert promoted == set(ranked["candidate"].iloc[: max(1, len(rows) // 2)])  # the best 1/eta go on
        if rung + 1 < len(result.rungs):
            assert promoted == set(table.loc[table["rung"] == rung + 1, "candidate"])
    assert table["params"].tolist()[:4] == CANDIDATES
    assert all(0.5 < v <= 1 for v in table["roc_auc"])


def test_xgboost_halving_continues_the_survivors_boosters(halving):
    result, calls = halving
    assert [c["num_boost_round"] for c in calls] == [2, 2, 2, 2, 2, 2, 4]  # 2 rounds, +2 to 4, +4 to 8
    assert all(c["xgb_model"] is None for c in calls[:4])
    assert all(c["xgb_model"] is not None for c in calls[4:])
    assert result.best_booster.num_boosted_rounds() == 8


def test_xgboost_halving_best_is_scored_exactly_on_valid(halving, parts):
    result, _ = halving
    [best] = result.table.loc[result.table["rung"] == 2, "candidate"]
    assert result.best_params == {**DEFAULT_PARAMS, "seed": 3, **CANDIDATES[best]}
    collected = score(result.best_booster, parts["valid"]).compute()
    assert len(collected) == parts["valid"].n_rows
    assert result.best_score == pytest.approx(average_precision_score(collected["label"], collected["score"]),
                                              rel=1e-12)
    assert result.best_score > 0.8
    assert set(result.timings) == {"setup", "train", "score"}


def test_xgboost_halving_bad_input(parts, client):
    train, valid = parts["train"], parts["valid"]
    with pytest.raises(WorkbenchError, match="no candidates"):
        xgboost_successive_halving(train, valid, [], min_rounds=1, max_rounds=2, client=client)
    with pytest.raises(WorkbenchError, match="eta 1 is not greater than 1"):
        xgboost_successive_halving(train, valid, CANDIDATES, min_rounds=1, max_rounds=2, eta=1, client=client)
    with pytest.raises(WorkbenchError, match="1 <= min_rounds <= max_rounds"):
        xgboost_successive_halving(train, valid, CANDIDATES, min_rounds=5, max_rounds=2, client=client)
