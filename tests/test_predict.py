"""``workbench predict`` through its console script: a run id or a model file, labelled and
unlabelled exports, scores that match the run's own evaluation, and one-line errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from workbench.config import validate
from workbench.pipeline import PipelineSpec
from workbench.data.synth import synth_bitcoin_export
from workbench.pipeline import run_pipeline
from workbench.pipeline.predict import predict

TIMEOUT = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory, client):
    root = tmp_path_factory.mktemp("predict")
    synth_bitcoin_export(root / "export", 20_000, positive_rate=0.03, seed=3, rows_per_shard=5_000, client=client)
    spec = validate(PipelineSpec, {
        "name": "to-predict",
        "data": {"path": str(root / "export"), "target": "is_miner", "drop": ["address"]},
        "split": {"test_size": 0.3, "validation_size": 0.0},
        "sampling": {"ratio": "1:4"},
        "model": {"type": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 20}},
    }, {}, "test")
    result = run_pipeline(spec, client=client, runs_dir=root / "runs")
    return root, result


def workbench(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["workbench", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT)


def test_predict_by_run_id_on_labelled_data(trained, tmp_path):
    root, result = trained
    shard = sorted((root / "export").glob("*.parquet"))[0]
    out = tmp_path / "scores"
    done = workbench("predict", result.record.id[:15], shard, "--out", out, "--runs-dir", root / "runs",
                     "--workers", 1, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "scored 5,000 rows" in done.stdout and "ROC AUC" in done.stdout
    scores = pd.read_parquet(out)
    assert list(scores.columns) == ["score", "is_miner"] and scores.index.name == "row"
    assert len(scores) == 5_000 and scores["score"].between(0, 1).all()
    auc = float(done.stdout.split("ROC AUC")[1].split()[0])
    assert auc == pytest.approx(roc_auc_score(scores["is_miner"], scores["score"]), abs=1e-4)
    again = workbench("predict", result.record.id, shard, "--out", out, "--runs-dir", root / "runs",
                      "--workers", 1, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "--overwrite" in again.stderr


def test_predict_unlabelled_data_with_a_model_file(trained, tmp_path, client):
    root, result = trained
    shard = sorted((root / "export").glob("*.parquet"))[1]
    unlabelled = tmp_path / "new.parquet"
    pq.write_table(pq.read_table(shard).drop(["is_miner"]), unlabelled)
    model = Path(result.record.path) / result.record.artifacts["model"]
    # a model file knows nothing of the run: the caller names the columns not to read
    with client.as_current():
        done = predict(model, str(unlabelled), tmp_path / "out", drop=["address"], client=client)
    assert done.metrics is None and done.target is None and done.rows == 5_000
    scores = pd.read_parquet(tmp_path / "out")
    assert list(scores.columns) == ["score"]
    # the same rows scored with their labels give the same scores
    labelled = predict(result.record.id, str(shard), tmp_path / "labelled", runs_dir=root / "runs", client=client)
    assert (pd.read_parquet(tmp_path / "labelled")["score"].to_numpy() == scores["score"].to_numpy()).all()
    assert labelled.metrics is not None


@pytest.mark.parametrize("model, message", [
    ("nosuchrun", "no run 'nosuchrun'"),
    ("missing/model.joblib", "no model file at missing/model.joblib"),
])
def test_predict_errors(trained, tmp_path, model, message):
    root, _ = trained
    shard = sorted((root / "export").glob("*.parquet"))[0]
    done = workbench("predict", model, shard, "--runs-dir", root / "runs", "--workers", 1, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "predictions").exists()


def test_a_joblib_model_file_is_scored_only_with_trust(trained, tmp_path):
    """A pickle loads only with --trust; then it scores exactly as the run's own skops model."""
    from workbench.pipeline.artifacts import load_model, save_model

    root, result = trained
    skops_file = Path(result.record.path) / result.record.artifacts["model"]
    assert skops_file.suffix == ".skops"
    pickled = save_model(load_model(skops_file), tmp_path / "model.joblib")
    shard = sorted((root / "export").glob("*.parquet"))[0]
    args = ("predict", pickled, shard, "--target", "is_miner", "--drop", "address", "--workers", 1)
    refused = workbench(*args, "--out", tmp_path / "refused", cwd=tmp_path)
    assert refused.returncode == 2 and "is a pickle (.joblib)" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "refused").exists()
    trusted = workbench(*args, "--trust", "--out", tmp_path / "trusted", cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr
    by_run = workbench("predict", result.record.id, shard, "--runs-dir", root / "runs", "--workers", 1,
                       "--out", tmp_path / "by-run", cwd=tmp_path)
    assert by_run.returncode == 0, by_run.stderr
    assert (pd.read_parquet(tmp_path / "trusted")["score"].to_numpy()
            == pd.read_parquet(tmp_path / "by-run")["score"].to_numpy()).all()
