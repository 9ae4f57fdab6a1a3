"""workbench.train_averaged_sgd: parallel SGD by model averaging on the partitions each worker holds."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import get_task_stream
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import roc_auc_score

from tests.train.test_xgb import _write_export
from workbench import read_bigquery_export, split
from workbench.errors import WorkbenchError
from workbench.train import AveragedSGDResult, average_models, train_averaged_sgd

EPOCHS = 3
SGD = {"alpha": 1e-3}


@pytest.fixture(scope="module")
def parts(tmp_path_factory, client):
    path = _write_export(tmp_path_factory.mktemp("averaging") / "export", shards=4, rows=3_000)
    data = read_bigquery_export(str(path), "is_miner", drop=["address"])
    return split(data, 0.25, seed=0)


@pytest.fixture(scope="module")
def run(parts, client):
    train, test = parts
    with get_task_stream(client) as stream:
        result = train_averaged_sgd(train, test, epochs=EPOCHS, seed=0, client=client, **SGD)
    return result, stream.data


@pytest.fixture(scope="module")
def collected(parts):
    train, test = parts
    return [p.compute() for p in train.frame.to_delayed()], test.frame.compute()


def test_every_worker_trains_on_the_partitions_it_holds(run, parts, client):
    result, stream = run
    train, _ = parts
    assert isinstance(result, AveragedSGDResult)
    held = sorted(i for partitions in result.partitions.values() for i in partitions)
    assert held == list(range(train.npartitions))  # each partition trained on exactly once per epoch
    assert len(result.partitions) == 2  # both workers hold some
    epochs = [t for t in stream if str(t["key"]).startswith("_epoch")]
    assert len(epochs) == EPOCHS * len(result.partitions)
    for task in epochs:
        assert task["worker"] in result.partitions
        # The epoch's input partitions are on this worker (checked above); the averaged coefficients
        # from the previous epoch (a few hundred bytes) may be transferred, so transfers are not banned.


def test_per_epoch_exact_auc_and_time(run, collected, parts):
    result, _ = run
    _, test_frame = collected
    train, _ = parts
    history = result.history
    assert history["epoch"] == [1, 2, 3]
    assert all(s > 0 for s in history["seconds"]) and len(history["roc_auc"]) == len(history["pr_auc"]) == EPOCHS
    p = result.model.predict_proba(test_frame[list(train.features)])[:, 1]
    assert result.metrics.roc_auc == pytest.approx(roc_auc_score(test_frame["is_miner"], p), rel=1e-12)
    assert history["roc_auc"][-1] == result.metrics.roc_auc > 0.95
    assert set(result.timings) == {"preprocess", "persist", "train", "evaluate"}


def test_auc_close_to_a_single_model_trained_incrementally(run, collected, parts):
    """One SGDClassifier, partial_fit over every partition in turn for the same epochs, same scaling."""
    result, _ = run
    partitions, test_frame = collected
    train, _ = parts
    features = list(train.features)
    preprocess = result.model[:-1]
    single = SGDClassifier(loss="log_loss", random_state=0, **SGD)
    for _ in range(EPOCHS):
        for part in partitions:
            single.partial_fit(preprocess.transform(part[features]), part["is_miner"].to_numpy(), classes=[0, 1])
    single_auc = roc_auc_score(test_frame["is_miner"], single.predict_proba(preprocess.transform(test_frame[features]))[:, 1])
    assert result.metrics.roc_auc == pytest.approx(single_auc, abs=0.005)


def test_one_shot_averaging_only_at_the_end(parts, client):
    train, test = parts
    result = train_averaged_sgd(train, test, epochs=2, average_every_epoch=False, seed=0, client=client, **SGD)
    assert result.history["epoch"] == [1, 2]
    assert result.metrics.roc_auc > 0.95


def test_average_models_weighted_mean():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    a = SGDClassifier(loss="log_loss", random_state=0).partial_fit(X[:100], y[:100], classes=[0, 1])
    b = SGDClassifier(loss="log_loss", random_state=0).partial_fit(X[100:], y[100:], classes=[0, 1])
    mean = average_models([a, b], [1, 3])
    np.testing.assert_allclose(mean.coef_, (a.coef_ + 3 * b.coef_) / 4)
    np.testing.assert_allclose(mean.intercept_, (a.intercept_ + 3 * b.intercept_) / 4)
    assert mean.t_ == pytest.approx((a.t_ + 3 * b.t_) / 4)
    assert mean is not a and not np.shares_memory(mean.coef_, a.coef_)
    mean.partial_fit(X, y)  # a usable model: training continues from the average


def test_bad_epochs(parts, client):
    train, test = parts
    with pytest.raises(WorkbenchError, match="epochs 0 is not a positive integer"):
        train_averaged_sgd(train, test, epochs=0, client=client)
