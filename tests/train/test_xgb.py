"""Distributed XGBoost on a real 2-worker LocalCluster, evaluated exactly on the test set."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

import workbench.train.xgb as xgb_module
from workbench import read_bigquery_export, split, undersample
from workbench.errors import SamplingError, WorkbenchError
from workbench.metrics import correct_probabilities, score
from workbench.train import DEFAULT_PARAMS, XGBoostResult, train_xgboost

FEATURES = ("x_strong", "x_weak", "x_noise", "n_events")
PARAMS = {"max_depth": 3, "eta": 0.3, "subsample": 0.8, "colsample_bytree": 0.8}
ROUNDS = 200


def _write_export(directory, shards=4, rows=5_000, positive_rate=0.1, seed=0):
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        y = rng.random(rows) < positive_rate
        frame = pd.DataFrame(
            {
                "address": [f"bc1q{i:02d}{j:06d}" for j in range(rows)],
                "x_strong": rng.normal(3.0 * y, 1.0),
                "x_weak": rng.normal(1.0 * y, 1.0),
                "x_noise": rng.normal(0.0, 1.0, rows),
                "n_events": rng.poisson(2 + 2 * y).astype("int64"),
                "is_miner": y,
            }
        )
        frame.to_parquet(directory / f"export-{i:012d}.parquet", index=False, row_group_size=2_500)
    return directory


@pytest.fixture(scope="module")
def data(tmp_path_factory, client):
    path = _write_export(tmp_path_factory.mktemp("xgb") / "export")
    return read_bigquery_export(str(path), "is_miner", drop=["address"])


@pytest.fixture(scope="module")
def parts(data):
    train, test = split(data, 0.25, seed=0)
    train, valid = split(train, 0.2, seed=0)
    sampled = undersample(train, "1:2", seed=0)
    return {"train": train, "valid": valid, "test": test, "sampled": sampled}


@pytest.fixture(scope="module")
def test_frame(parts):
    return parts["test"].frame.compute()


@pytest.fixture(scope="module")
def early(parts, client):
    """One training with early stopping, spying on the xgboost.dask calls it makes."""
    calls = {"dmatrix": [], "train": []}
    real_dmatrix, real_train = xgb_module.dxgb.DaskQuantileDMatrix, xgb_module.dxgb.train

    def dmatrix(*args, **kwargs):
        made = real_dmatrix(*args, **kwargs)
        calls["dmatrix"].append((made, kwargs))
        return made

    def train(*args, **kwargs):
        calls["train"].append(kwargs)
        return real_train(*args, **kwargs)

    phases = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(xgb_module.dxgb, "DaskQuantileDMatrix", dmatrix)
        mp.setattr(xgb_module.dxgb, "train", train)
        result = train_xgboost(
            parts["sampled"], parts["test"], valid=parts["valid"], params=PARAMS, num_boost_round=ROUNDS,
            early_stopping_rounds=5, seed=7, client=client, on_phase=lambda name, s: phases.append((name, s)),
            eval_train=True,
        )
    return result, calls, phases


def _scores(booster, frame, best):
    return booster.inplace_predict(frame[list(FEATURES)], iteration_range=(0, best + 1))


def test_reader_gives_the_expected_features(data, parts):
    assert data.features == FEATURES
    assert parts["sampled"].n_negative == 2 * parts["sampled"].n_positive
    assert parts["sampled"].n_positive == parts["train"].n_positive


def test_trains_with_dask_quantile_dmatrix_and_xgboost_dask(early, parts):
    result, calls, _ = early
    assert isinstance(result, XGBoostResult)
    assert isinstance(result.booster, xgb.Booster)
    assert len(calls["dmatrix"]) == 2  # train, then valid with the train matrix as reference
    (dtrain, _), (dvalid, valid_kwargs) = calls["dmatrix"]
    assert isinstance(dtrain, xgb.dask.DaskQuantileDMatrix)
    assert isinstance(dvalid, xgb.dask.DaskQuantileDMatrix)
    assert valid_kwargs["ref"] is dtrain
    [train_call] = calls["train"]
    assert train_call["num_boost_round"] == ROUNDS
    assert train_call["early_stopping_rounds"] == 5
    assert [name for _, name in train_call["evals"]] == ["train", "valid"]


def test_early_stopping_on_the_validation_set(early):
    result, _, _ = early
    best = result.best_iteration
    assert best < ROUNDS - 1
    assert result.num_boosted_rounds == best + 1 + 5 < ROUNDS  # stopped 5 rounds after the best
    # Early stopping follows the last evaluation metric on the validation set: the best round is
    # the first with its highest value, and none of the 5 rounds after it did better.
    metric = result.params["eval_metric"][-1]
    series = result.history["valid"][metric]
    assert best == int(np.argmax(series))
    assert max(series[best + 1:]) <= series[best]


def test_the_booster_keeps_the_trees_up_to_the_best_round(early, test_frame):
    result, _, _ = early
    booster = result.booster
    assert booster.num_boosted_rounds() == result.best_iteration + 1 < result.num_boosted_rounds
    x = test_frame[list(FEATURES)]
    np.testing.assert_array_equal(
        booster.inplace_predict(x), _scores(booster, test_frame, result.best_iteration)
    )
    assert roc_auc_score(test_frame["is_miner"], booster.inplace_predict(x)) == pytest.approx(
        result.metrics.roc_auc, rel=1e-12
    )


def test_per_round_history_for_train_and_valid(early):
    result, _, _ = early
    assert set(result.history) == {"train", "valid"}
    for name in ("train", "valid"):
        assert set(result.history[name]) == {"auc", "aucpr", "logloss"}
        for metric, values in result.history[name].items():
            assert len(values) == result.num_boosted_rounds, (name, metric)
            assert all(isinstance(v, float) and np.isfinite(v) for v in values)
    valid = result.history["valid"]
    assert all(0.5 < v <= 1 for v in valid["auc"])
    assert valid["logloss"][-1] < valid["logloss"][0]
    assert result.history["train"]["auc"][-1] > 0.9


def test_phases_and_timings(early):
    result, _, phases = early
    assert [name for name, _ in phases] == ["dmatrix", "train", "predict", "metrics"]
    assert list(result.timings) == ["dmatrix", "train", "predict", "metrics"]
    assert all(seconds >= 0 for _, seconds in phases)
    assert dict(phases) == result.timings


def test_default_params_are_merged_under_the_given_ones(early):
    result, _, _ = early
    assert result.params == {**DEFAULT_PARAMS, "seed": 7, **PARAMS}
    assert result.params["objective"] == "binary:logistic"
    assert result.params["tree_method"] == "hist"
    assert result.params["eval_metric"] == DEFAULT_PARAMS["eval_metric"]
    assert set(result.params["eval_metric"]) == {"logloss", "auc", "aucpr"}
    assert result.params["max_depth"] == 3 and result.params["eta"] == 0.3
    assert "scale_pos_weight" not in result.params
    assert DEFAULT_PARAMS["max_depth"] == 6 and "seed" not in DEFAULT_PARAMS  # not mutated
    config = json.loads(result.booster.save_config())
    assert config["learner"]["gradient_booster"]["tree_train_param"]["max_depth"] == "3"
    assert config["learner"]["objective"]["name"] == "binary:logistic"


def test_predict_scores_and_exact_metrics(early, parts, client):
    result, _, _ = early
    test = parts["test"]
    scored = result.predict_scores(test)
    assert list(scored.columns) == ["label", "score"]
    assert scored.npartitions == test.npartitions
    collected = scored.compute()
    assert str(collected["label"].dtype) == "int8" and str(collected["score"].dtype) == "float64"
    assert len(collected) == test.n_rows
    assert int(collected["label"].sum()) == test.n_positive
    m = result.metrics
    assert m.roc_auc == pytest.approx(roc_auc_score(collected["label"], collected["score"]), rel=1e-12, abs=1e-12)
    assert m.pr_auc == pytest.approx(average_precision_score(collected["label"], collected["score"]), rel=1e-12)
    assert m.roc_auc > 0.9
    tn, fp, fn, tp = confusion_matrix(collected["label"], collected["score"] >= m.threshold, labels=[0, 1]).ravel()
    assert (m.tn, m.fp, m.fn, m.tp) == (tn, fp, fn, tp)
    assert (m.n, m.n_positive) == (test.n_rows, test.n_positive)
    # The one scorer gives the same scores.
    again = score(result.booster, test, client=client)
    np.testing.assert_array_equal(again.compute()["score"].to_numpy(), collected["score"].to_numpy())


def test_corrected_metrics_when_trained_on_an_undersampled_dataset(early, parts):
    result, _, _ = early
    corrected = result.metrics.corrected
    assert corrected is not None
    assert set(corrected) == {"tn", "fp", "fn", "tp", "precision", "recall", "f1", "brier"}
    assert corrected["tn"] + corrected["fp"] + corrected["fn"] + corrected["tp"] == result.metrics.n
    assert corrected["fn"] + corrected["tp"] == result.metrics.n_positive
    # Recompute: Dal Pozzolo correction of the collected scores, confusion at the threshold.
    note = parts["sampled"].info["undersample"]
    collected = result.predict_scores(parts["test"]).compute()
    p = correct_probabilities(collected["score"].to_numpy(), note["kept_majority_fraction"], note["majority_class"])
    tn, fp, fn, tp = confusion_matrix(collected["label"], p >= result.metrics.threshold, labels=[0, 1]).ravel()
    assert (corrected["tn"], corrected["fp"], corrected["fn"], corrected["tp"]) == (tn, fp, fn, tp)
    # Fewer positives are predicted once the probabilities are shifted back down.
    assert corrected["tp"] + corrected["fp"] <= result.metrics.tp + result.metrics.fp


def test_same_seed_same_booster_other_seed_other_booster(early, parts, test_frame, client):
    result, _, _ = early
    kwargs = dict(valid=parts["valid"], params=PARAMS, num_boost_round=ROUNDS, early_stopping_rounds=5, client=client,
                  eval_train=True)
    same = train_xgboost(parts["sampled"], parts["test"], seed=7, **kwargs)
    assert same.best_iteration == result.best_iteration
    assert same.history == result.history
    assert same.metrics == result.metrics
    np.testing.assert_array_equal(
        same.booster.inplace_predict(test_frame[list(FEATURES)]),
        result.booster.inplace_predict(test_frame[list(FEATURES)]),
    )
    other = train_xgboost(parts["sampled"], None, seed=8, **kwargs)
    assert other.history != result.history
    assert not np.array_equal(
        other.booster.inplace_predict(test_frame[list(FEATURES)]),
        result.booster.inplace_predict(test_frame[list(FEATURES)]),
    )


def test_scale_pos_weight_auto_and_no_correction_without_undersampling(parts, test_frame, client):
    train = parts["train"]
    weighted = train_xgboost(train, parts["test"], num_boost_round=5, scale_pos_weight="auto", client=client)
    assert weighted.params["scale_pos_weight"] == pytest.approx(train.n_negative / train.n_positive)
    assert weighted.params["scale_pos_weight"] > 5
    assert weighted.metrics.corrected is None  # train was not under-sampled
    assert weighted.best_iteration == 4 == weighted.num_boosted_rounds - 1  # no early stopping: the last round
    assert weighted.history == {}  # no validation set, and the training set is not scored by default
    config = json.loads(weighted.booster.save_config())
    assert float(config["learner"]["objective"]["reg_loss_param"]["scale_pos_weight"]) == pytest.approx(
        train.n_negative / train.n_positive, rel=1e-6
    )
    plain = train_xgboost(train, None, num_boost_round=5, client=client)
    assert plain.metrics is None and list(plain.timings) == ["dmatrix", "train"]
    x = test_frame[list(FEATURES)]
    # Up-weighting the positives raises the predicted probabilities.
    assert weighted.booster.inplace_predict(x).mean() > 2 * plain.booster.inplace_predict(x).mean()


def test_scale_pos_weight_number_and_undersampled_without_correction(parts, client):
    result = train_xgboost(
        parts["sampled"], parts["test"], num_boost_round=3, scale_pos_weight=2, correct_probabilities=False,
        client=client,
    )
    assert result.params["scale_pos_weight"] == 2.0
    assert isinstance(result.params["scale_pos_weight"], float)
    assert result.metrics.corrected is None


@pytest.mark.parametrize("value", ["heavy", 0, -1.5])
def test_bad_scale_pos_weight(parts, client, value):
    with pytest.raises(WorkbenchError, match="scale_pos_weight .* is not a positive number"):
        train_xgboost(parts["sampled"], None, num_boost_round=1, scale_pos_weight=value, client=client)


def test_scale_pos_weight_auto_needs_class_counts(data, client):
    assert data.class_counts is None
    with pytest.raises(SamplingError, match="needs the class counts"):
        train_xgboost(data, None, num_boost_round=1, scale_pos_weight="auto", client=client)


def test_early_stopping_without_a_validation_set(parts, client):
    with pytest.raises(WorkbenchError, match="early stopping needs a validation set"):
        train_xgboost(parts["sampled"], parts["test"], early_stopping_rounds=5, client=client)


def test_different_features_are_refused(parts, client):
    test = parts["test"]
    fewer = dataclasses.replace(test, frame=test.frame[["x_strong", "x_weak", "is_miner"]], features=("x_strong", "x_weak"))
    with pytest.raises(WorkbenchError, match="different features"):
        train_xgboost(parts["sampled"], fewer, client=client)
    with pytest.raises(WorkbenchError, match="different features"):
        train_xgboost(parts["sampled"], test, valid=fewer, early_stopping_rounds=3, client=client)


def test_uses_the_current_client_when_none_is_given(parts, client):
    result = train_xgboost(parts["sampled"], parts["test"], num_boost_round=2)
    assert result.num_boosted_rounds == 2
    assert 0.5 < result.metrics.roc_auc <= 1
