"""Every built-in ``model.type`` of a pipeline file, run end to end on the session's cluster on a small
export: the run is recorded with exact test metrics (equal to scikit-learn on the collected scores of
the saved model), at the file's non-default threshold and corrected for RUS, and each type records
what its study needs."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import yaml
from scipy.special import logit
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from workbench.config import validate
from workbench.data.synth import synth_bitcoin_export
from workbench.errors import ConfigError
from workbench.metrics import correct_scores, score, score_scale
from workbench.pipeline import PipelineSpec, load_pipeline, run_pipeline
from workbench.pipeline.artifacts import load_model

REPO = Path(__file__).resolve().parents[2]
ROWS = 30_000
THRESHOLD = 0.3  # not the default: every model type must honour it


@pytest.fixture(scope="module")
def export(tmp_path_factory, client):
    out = tmp_path_factory.mktemp("steps-export")
    synth_bitcoin_export(out, ROWS, positive_rate=0.02, seed=5, rows_per_shard=7_500, client=client)
    return str(out / "btc_addresses-*.parquet")


def spec_for(export, model: dict, *, ratio="1:5", validation=0.0, **extra) -> PipelineSpec:
    data = {
        "name": f"steps-{model.get('type', 'xgboost')}",
        "data": {"path": export, "target": "is_miner", "drop": ["address"]},
        "split": {"test_size": 0.25, "validation_size": validation, "seed": 0},
        "sampling": {"ratio": ratio, "seed": 0},
        "model": model,
        "metrics": {"threshold": THRESHOLD},
        **extra,
    }
    return validate(PipelineSpec, data, {}, "test")


def collected_scores(result, client):
    """The test set's labels and the saved model's scores, collected here to check the metrics."""
    model = load_model(next(Path(result.record.path).glob("model.*")))
    table = score(model, result.test, client=client).compute()
    return table["label"].to_numpy(), table["score"].to_numpy(), score_scale(model)


def confusion(labels, scores, threshold, scale) -> dict:
    cut = threshold if scale == "probability" else logit(threshold)
    tn, fp, fn, tp = confusion_matrix(labels, (scores >= cut).astype(int), labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def check_exact(result, client):
    """Ranking metrics and the confusion matrices, raw and RUS-corrected, equal scikit-learn's at THRESHOLD."""
    labels, scores, scale = collected_scores(result, client)
    m = result.record.metrics
    assert m["n"] == len(labels) == result.test.n_rows
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert m["threshold"] == THRESHOLD and m["scale"] == scale
    expected = confusion(labels, scores, THRESHOLD, scale)
    assert {k: m[k] for k in expected} == expected
    assert expected != confusion(labels, scores, 0.5, scale), "the data cannot tell the threshold apart"
    if "undersample" not in result.train.info:  # RUS inside the folds of a search, not before training
        assert m["corrected"] is None
        return
    corrected = correct_scores(scores, result.train.info["undersample"], scale)
    assert {k: m["corrected"][k] for k in expected} == confusion(labels, corrected, THRESHOLD, scale)


def test_xgboost_model_kept_to_its_best_round(export, client, tmp_path):
    spec = spec_for(export, {"type": "xgboost", "params": {"max_depth": 3}, "num_boost_round": 40,
                             "early_stopping_rounds": 5}, validation=0.2)
    result = run_pipeline(spec, client=client, runs_dir=tmp_path)
    data = result.record.data
    assert data["model_type"] == "xgboost" and data["boosted_rounds"] <= 40
    assert result.trained.model.num_boosted_rounds() == data["best_iteration"] + 1
    assert list(result.record.timings)[-2:] == ["predict", "metrics"]
    check_exact(result, client)


def test_sklearn_model_recorded_with_artifacts(export, client, tmp_path):
    spec = spec_for(export, {"type": "sklearn", "estimator": "RandomForestClassifier",
                             "params": {"n_estimators": 30, "max_depth": 6}})
    result = run_pipeline(spec, client=client, runs_dir=tmp_path)
    assert result.record.status == "succeeded"
    assert result.record.data["model_type"] == "sklearn"
    assert set(result.record.artifacts) >= {"model", "importances", "importances_png", "roc_png", "pr_png", "confusion_png"}
    for name in ("roc_png", "pr_png", "confusion_png", "importances_png"):
        png = Path(result.record.path) / result.record.artifacts[name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert len(result.record.data["importances"]) == 20
    check_exact(result, client)
    # the same seed gives the same model and so the same metrics
    again = run_pipeline(spec, client=client, runs_dir=tmp_path)
    assert again.record.metrics["roc_auc"] == result.record.metrics["roc_auc"]


def test_ensemble_members_beside_the_stacking(export, client, tmp_path):
    spec = spec_for(export, {
        "type": "ensemble", "method": "both", "cv": 3,
        "members": {"forest": {"estimator": "RandomForestClassifier", "params": {"n_estimators": 20, "max_depth": 5}},
                    "nb": {"estimator": "GaussianNB", "preprocess": ["impute", "scale"]}},
    })
    result = run_pipeline(spec, client=client, runs_dir=tmp_path)
    models = result.record.data["models"]
    assert set(models) == {"forest", "nb", "soft", "stacking"}
    assert result.record.data["primary"] == "stacking"
    assert result.record.metrics["roc_auc"] == models["stacking"]["roc_auc"]
    assert models["nb"]["roc_auc"] > 0.6  # scaled naive Bayes learns something
    assert result.record.data["importances_of"] == "forest"  # the ensemble has none of its own
    check_exact(result, client)


def test_incremental_records_a_curve_per_epoch(export, client, tmp_path):
    spec = spec_for(export, {"type": "incremental", "estimator": "SGDClassifier",
                             "params": {"loss": "log_loss"}, "epochs": 3})
    result = run_pipeline(spec, client=client, runs_dir=tmp_path)
    curve = result.record.history["test (per epoch)"]
    assert len(curve["roc_auc"]) == len(curve["pr_auc"]) == 3
    assert curve["roc_auc"][-1] == result.record.metrics["roc_auc"]
    check_exact(result, client)


def test_incremental_hinge_loss_scores_on_the_decision_scale(export, client, tmp_path):
    """A model without predict_proba: the threshold and the RUS correction apply to its decision function
    read as log-odds (cut at logit(threshold), shifted by log(beta))."""
    spec = spec_for(export, {"type": "incremental", "estimator": "SGDClassifier", "params": {"loss": "hinge"},
                             "epochs": 2})
    result = run_pipeline(spec, client=client, runs_dir=tmp_path)
    assert result.record.metrics["scale"] == "decision"
    check_exact(result, client)


def test_averaged_sgd(export, client, tmp_path):
    result = run_pipeline(spec_for(export, {"type": "averaged_sgd", "epochs": 2}), client=client, runs_dir=tmp_path)
    assert result.record.data["workers"] == 2
    assert len(result.record.history["test (per epoch)"]["roc_auc"]) == 2
    check_exact(result, client)


def test_search_with_the_ratio_as_a_hyperparameter(export, client, tmp_path):
    spec = spec_for(export, {
        "type": "search", "estimator": "DecisionTreeClassifier", "params": {"max_depth": 3},
        "grid": {"max_depth": [2, 6], "ratio": ["1:1", "1:3"]}, "cv": 3,
    }, ratio=None)
    result = run_pipeline(spec, client=client, runs_dir=tmp_path)
    data = result.record.data
    assert len(data["candidates"]) == 4
    assert {"mean_roc_auc", "mean_average_precision", "mean_fit_time"} <= set(data["candidates"][0])
    assert set(data["best_params"]) == {"max_depth", "ratio"}
    assert set(data["best_vs_default"]) == {"best", "default"}
    check_exact(result, client)


def test_hyperband_over_sgd(export, client, tmp_path):
    spec = spec_for(export, {"type": "hyperband", "estimator": "SGDClassifier", "params": {"loss": "log_loss"},
                             "grid": {"alpha": {"loguniform": [1e-5, 1e-2]}}, "max_iter": 9})
    result = run_pipeline(spec, client=client, runs_dir=tmp_path)
    assert len(result.record.data["candidates"]) >= 3
    check_exact(result, client)


def test_xgboost_halving_needs_and_uses_a_validation_set(export, client, tmp_path):
    model = {"type": "xgboost_halving", "grid": {"max_depth": [2, 4, 6]}, "min_rounds": 5, "max_rounds": 15}
    with pytest.raises(ConfigError, match="validation_size"):
        run_pipeline(spec_for(export, model), client=client, runs_dir=tmp_path)
    result = run_pipeline(spec_for(export, model, validation=0.2), client=client, runs_dir=tmp_path)
    assert result.record.data["rungs"] == [5, 15]
    assert result.record.data["best_params"]["max_depth"] in (2, 4, 6)
    check_exact(result, client)


@pytest.mark.parametrize("model, message", [
    ({"type": "sklearn", "estimator": "RandomForestClassifer"}, r"model\.estimator: unknown estimator .*'RandomForestClassifier'"),
    ({"type": "sklearn", "estimator": "RandomForestClassifier", "params": {"depth": 3}},
     r"model\.params: RandomForestClassifier has no parameter 'depth' \(did you mean 'max_depth'\?\)"),
    ({"type": "sklearn", "estimator": "Ridge"}, r"unknown estimator 'Ridge' \(did you mean 'RidgeClassifier'\?\)"),
    ({"type": "sklearn", "estimator": "sklearn.linear_model.Ridge"}, r"is not a scikit-learn classifier"),
    ({"type": "xgbost"}, r"model\.type: unknown model type 'xgbost' \(did you mean 'xgboost'\?\)"),
    ({"type": "search", "estimator": "GaussianNB", "grid": {"var_smoothing": {"normal": [0, 1]}}, "kind": "random",
      "n_iter": 2}, r"model\.grid: .*not a distribution"),
    ({"type": "search", "estimator": "GaussianNB", "grid": {"var_smoothing": [1e-9]}, "refit": "f1"},
     r"refit 'f1' is not one of scoring"),
])
def test_model_errors_point_at_the_key(tmp_path, model, message):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data": {"path": "a", "target": "t"}, "model": model}, sort_keys=False))
    with pytest.raises(ConfigError, match=message) as info:
        load_pipeline(path)
    assert str(info.value).startswith(f"{path}:")


def test_model_without_type_is_xgboost():
    spec = validate(PipelineSpec, {"name": "x", "data": {"path": "a", "target": "t"}, "model": {"params": {"eta": 0.1}}},
                    {}, "test")
    assert spec.model.type == "xgboost"


@pytest.mark.parametrize("path", sorted(glob.glob(str(REPO / "pipelines" / "*.yaml"))), ids=lambda p: Path(p).name)
def test_shipped_pipelines_are_valid(path):
    data = yaml.safe_load(Path(path).read_text())
    if "axes" in data:  # a sweep file, validated by the sweep tests
        return
    spec = load_pipeline(path)
    assert spec.name == Path(path).stem
