"""workbench.pipeline.artifacts: importances, plots from the exact curves, models on disk, scores to Parquet."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from matplotlib.image import imread
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.train.test_xgb import FEATURES, _write_export
from workbench import read_bigquery_export, split, undersample
from workbench.errors import WorkbenchError
from workbench.pipeline.artifacts import (
    feature_importances, load_model, plot_confusion, plot_importances, plot_pr, plot_roc, predict_to_parquet,
    save_model,
)
from workbench.train import RUSClassifier, train_xgboost

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def parts(tmp_path_factory, client):
    path = _write_export(tmp_path_factory.mktemp("inspect") / "export", shards=2, rows=4_000)
    data = read_bigquery_export(str(path), "is_miner", drop=["address"])
    train, test = split(data, 0.25, seed=0)
    return undersample(train, "1:2", seed=0), test


@pytest.fixture(scope="module")
def xgb_result(parts, client):
    sample, test = parts
    return train_xgboost(sample, test, num_boost_round=20, params={"max_depth": 3}, client=client)


@pytest.fixture(scope="module")
def frames(parts):
    sample, test = parts
    return sample.frame.compute(), test.frame.compute()


def _xy(frame):
    return frame[list(FEATURES)].to_numpy("float64"), frame["is_miner"].to_numpy()


def _valid_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas


def test_importances_of_an_xgboost_booster(xgb_result):
    table = feature_importances(xgb_result, FEATURES)
    assert list(table.columns) == ["feature", "importance", "share", "kind"]
    assert table["feature"].iloc[0] == "x_strong"  # the informative feature
    assert (table["kind"] == "total_gain").all()
    assert table["share"].sum() == pytest.approx(1.0)
    gain = xgb_result.booster.get_score(importance_type="total_gain")
    assert table.set_index("feature")["importance"].to_dict() == pytest.approx({f: gain.get(f, 0.0) for f in FEATURES})
    assert list(table["importance"]) == sorted(table["importance"], reverse=True)
    assert len(feature_importances(xgb_result.booster, FEATURES, top_k=2)) == 2


def test_importances_of_scikit_learn_models(frames):
    X, y = _xy(frames[0])
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    table = feature_importances(forest, FEATURES)
    assert (table["kind"] == "feature_importances_").all() and table["feature"].iloc[0] == "x_strong"
    assert table["importance"].sum() == pytest.approx(forest.feature_importances_.sum())

    linear = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    table = feature_importances(linear, FEATURES, top_k=None)
    assert (table["kind"] == "|coef|").all() and len(table) == 4
    np.testing.assert_allclose(sorted(table["importance"]), sorted(np.abs(linear[-1].coef_.ravel())))

    wrapped = RUSClassifier(LogisticRegression(), random_state=0).fit(X, y)  # no importances: its inner coef_
    assert feature_importances(wrapped, FEATURES)["kind"].iloc[0] == "|coef|"

    with pytest.raises(WorkbenchError, match="VotingClassifier has no feature importances"):
        feature_importances(VotingClassifier([("lr", LogisticRegression())]).fit(X, y), FEATURES)
    with pytest.raises(WorkbenchError, match="the model has 4 inputs but 2 feature names"):
        feature_importances(forest, FEATURES[:2])


def test_plots_are_valid_pngs(xgb_result, tmp_path):
    m = xgb_result.metrics
    paths = [
        plot_importances(feature_importances(xgb_result, FEATURES), tmp_path / "importances.png"),
        plot_roc(m, tmp_path / "roc.png"),
        plot_pr(m, tmp_path / "pr.png"),
        plot_roc({"xgboost": m, "again": m}, tmp_path / "nested" / "roc2.png"),
        plot_confusion(m, tmp_path / "confusion.png"),
        plot_confusion(m, tmp_path / "corrected.png", corrected=True),
    ]
    for path in paths:
        _valid_png(path)
    assert paths[3].endswith("nested/roc2.png")
    with pytest.raises(WorkbenchError, match="carry no curves"):
        plot_roc(dataclasses.replace(m, curves=None), tmp_path / "none.png")
    with pytest.raises(WorkbenchError, match="no corrected counts"):
        plot_confusion(dataclasses.replace(m, corrected=None), tmp_path / "none.png", corrected=True)


def test_save_and_load_models(xgb_result, frames, tmp_path):
    X_test, _ = _xy(frames[1])
    path = save_model(xgb_result, tmp_path / "model.json")
    assert open(path).read(1) == "{"  # XGBoost's own JSON format
    booster = load_model(path)
    assert isinstance(booster, xgb.Booster)
    np.testing.assert_array_equal(booster.inplace_predict(X_test), xgb_result.booster.inplace_predict(X_test))
    with pytest.raises(WorkbenchError, match="does not end in .json"):
        save_model(xgb_result.booster, tmp_path / "model.bin")

    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(*_xy(frames[0]))
    again = load_model(save_model(forest, tmp_path / "forest.skops"))  # skops: no trust needed
    np.testing.assert_array_equal(again.predict_proba(X_test), forest.predict_proba(X_test))
    rus = RUSClassifier(LogisticRegression(), ratio="1:2", random_state=0).fit(*_xy(frames[0]))
    np.testing.assert_array_equal(load_model(save_model(rus, tmp_path / "rus.skops")).predict_proba(X_test),
                                  rus.predict_proba(X_test))
    with pytest.raises(WorkbenchError, match="does not end in .skops"):
        save_model(forest, tmp_path / "forest.model")
    pickled = save_model(forest, tmp_path / "forest.joblib")  # a pickle: loaded only when trusted
    with pytest.raises(WorkbenchError, match=r"forest\.joblib is a pickle \(\.joblib\): loading it runs whatever code"):
        load_model(pickled)
    np.testing.assert_array_equal(load_model(pickled, trust=True).predict_proba(X_test), forest.predict_proba(X_test))
    with pytest.raises(WorkbenchError, match="no model file"):
        load_model(tmp_path / "missing.skops")


def test_predict_to_parquet_round_trip(xgb_result, parts, frames, tmp_path, client):
    _, test = parts
    test_frame = frames[1]
    out = predict_to_parquet(xgb_result, test, tmp_path / "scores", client=client)
    back = pd.read_parquet(out).sort_index(kind="stable")
    assert list(back.columns) == ["score", "is_miner"] and back.index.name == "row"
    assert len(back) == test.n_rows and int(back["is_miner"].sum()) == test.n_positive
    written = pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "scores").glob("*.parquet"),
                                                            key=lambda p: int(p.stem.split(".")[-1]))])
    expected = xgb_result.booster.inplace_predict(test_frame[list(FEATURES)])
    np.testing.assert_allclose(written["score"].to_numpy(), expected, rtol=1e-6)
    np.testing.assert_array_equal(written.index.to_numpy(), test_frame.index.to_numpy())
    assert len(list((tmp_path / "scores").glob("*.parquet"))) == test.npartitions

    with pytest.raises(WorkbenchError, match="is not empty"):
        predict_to_parquet(xgb_result, test, tmp_path / "scores", client=client)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(*_xy(frames[0]))
    predict_to_parquet(forest, test, tmp_path / "scores", client=client, overwrite=True)
    written = pd.concat([pd.read_parquet(f) for f in sorted((tmp_path / "scores").glob("*.parquet"),
                                                            key=lambda p: int(p.stem.split(".")[-1]))])
    np.testing.assert_allclose(written["score"].to_numpy(), forest.predict_proba(_xy(test_frame)[0])[:, 1])
