"""Out-of-core incremental training on a real 2-worker LocalCluster, evaluated exactly on the test set."""

from __future__ import annotations

import dataclasses
import warnings

import dask
import numpy as np
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.naive_bayes import GaussianNB
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline

from workbench import (
    WorkbenchWarning,
    read_bigquery_export,
    split,
    synth_bitcoin_export,
    undersample,
)
from workbench.errors import DataError, WorkbenchError
from workbench.metrics import Metrics
from workbench.train.incremental import (
    IncrementalResult,
    block_order,
    dataset_arrays,
    epoch_random_state,
    fit_preprocessor,
    train_incremental,
)

EPOCHS = 3


class RecordingSGD(SGDClassifier):
    """Logs each ``partial_fit`` block (rows, checksum of X) on the model, which travels from task to task."""

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        self.blocks_ = [*getattr(self, "blocks_", []), (len(X), float(np.asarray(X).sum()))]
        return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)


class HeldBlocks(SchedulerPlugin):
    """Counts the preprocessed training partitions held in the cluster's memory at once."""

    name = "held-training-blocks"

    def __init__(self):
        self.held, self.peak, self.seen = set(), 0, set()

    async def start(self, scheduler):
        self.scheduler = scheduler

    def transition(self, key, start, finish, *args, **kwargs):
        if "_design_frame" not in str(key):
            return
        if finish == "memory":
            self.held.add(key)
            self.seen.add(key)
            self.peak = max(self.peak, len(self.held))
        elif start == "memory":
            self.held.discard(key)


def _held(dask_scheduler):
    plugin = dask_scheduler.plugins[HeldBlocks.name]
    return {"peak": plugin.peak, "seen": len(plugin.seen), "held": len(plugin.held)}


@pytest.fixture(scope="module")
def parts(tmp_path_factory, client):
    path = tmp_path_factory.mktemp("incremental") / "export"
    synth_bitcoin_export(path, 40_000, positive_rate=0.05, signal=2.0, rows_per_shard=4_000, seed=0, client=client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)  # REPEATED/STRUCT columns are dropped
        data = read_bigquery_export(str(path), "is_miner", drop=["address"])
    train, test = split(data, 0.25, seed=0)
    return {"train": train, "test": test, "sampled": undersample(train, "1:4", seed=0)}


@pytest.fixture(scope="module")
def run(parts, client):
    seen = []
    result = train_incremental(
        parts["train"], parts["test"], RecordingSGD(loss="log_loss", alpha=1e-3), epochs=EPOCHS, seed=0,
        client=client, on_epoch=lambda epoch, metrics: seen.append((epoch, metrics)),
    )
    return result, seen


@pytest.fixture(scope="module")
def train_frame(parts):
    return parts["train"].frame.compute()


def test_history_per_epoch_and_callbacks(run):
    result, seen = run
    assert isinstance(result, IncrementalResult)
    history = result.history
    assert list(history) == ["epoch", "roc_auc", "pr_auc", "seconds"]
    assert history["epoch"] == [1, 2, 3]
    assert all(len(values) == EPOCHS for values in history.values())
    assert all(0.9 < v <= 1 for v in history["roc_auc"]) and all(0.5 < v <= 1 for v in history["pr_auc"])
    assert all(s > 0 for s in history["seconds"])
    assert [epoch for epoch, _ in seen] == [1, 2, 3]
    assert all(isinstance(m, Metrics) for _, m in seen)
    assert [m.roc_auc for _, m in seen] == history["roc_auc"]
    assert [m.pr_auc for _, m in seen] == history["pr_auc"]
    assert result.metrics == seen[-1][1]  # the final model's metrics are the last epoch's
    assert list(result.timings) == ["preprocess", "train", "evaluate"]
    assert result.timings["train"] == pytest.approx(sum(history["seconds"]))


def test_final_metrics_are_exact_and_the_model_is_one_pipeline(run, parts):
    result, _ = run
    test = parts["test"]
    assert isinstance(result.model, Pipeline)
    assert [name for name, _ in result.model.steps] == ["scale", "impute", "model"]
    collected = result.predict_scores(test).compute()
    assert len(collected) == test.n_rows and int(collected["label"].sum()) == test.n_positive
    m = result.metrics
    assert m.roc_auc == pytest.approx(roc_auc_score(collected["label"], collected["score"]), rel=1e-12)
    assert m.pr_auc == pytest.approx(average_precision_score(collected["label"], collected["score"]), rel=1e-12)
    assert (m.n, m.n_positive) == (test.n_rows, test.n_positive)
    assert m.corrected is None  # trained on the natural ratio
    # The pipeline takes raw feature frames (NaNs included): scaling and imputation are folded in.
    frame = test.frame.compute()
    assert frame[list(result.features)].isna().any().any()
    np.testing.assert_allclose(
        result.model.predict_proba(frame[list(result.features)])[:, 1], collected["score"].to_numpy(), rtol=1e-12
    )


def test_partial_fit_is_called_on_each_block_in_the_shuffled_order(run, parts):
    result, _ = run
    train = parts["train"]
    X, y, partitions = dataset_arrays(train, fit_preprocessor(train))
    assert partitions == list(range(train.npartitions)) and len(partitions) == 10
    sums = dask.compute(*[X.blocks[i].sum() for i in range(len(partitions))])
    fingerprint = {p: (X.chunks[0][i], float(sums[i])) for i, p in enumerate(partitions)}
    blocks = result.model.named_steps["model"].blocks_
    assert len(blocks) == EPOCHS * len(partitions)  # one call per block per epoch, never the whole array
    assert max(rows for rows, _ in blocks) < train.n_rows / 5
    for epoch, order in enumerate(result.block_orders, start=1):
        assert sorted(order) == partitions
        assert order == [partitions[i] for i in block_order(len(partitions), epoch_random_state(0, epoch))]
        fitted = blocks[(epoch - 1) * len(partitions): epoch * len(partitions)]
        for (rows, checksum), partition in zip(fitted, order, strict=True):
            assert rows == fingerprint[partition][0]
            assert checksum == pytest.approx(fingerprint[partition][1], rel=1e-9, abs=1e-6)
    assert len({tuple(order) for order in result.block_orders}) == EPOCHS  # reshuffled every epoch


def test_same_seed_same_model_other_seed_other_block_order(run, parts, client):
    result, _ = run
    kwargs = dict(epochs=EPOCHS, client=client)
    again = train_incremental(parts["train"], parts["test"], RecordingSGD(loss="log_loss", alpha=1e-3), seed=0,
                              **kwargs)
    assert again.block_orders == result.block_orders
    assert again.history["roc_auc"] == result.history["roc_auc"]
    assert again.history["pr_auc"] == result.history["pr_auc"]
    np.testing.assert_array_equal(again.model.named_steps["model"].coef_, result.model.named_steps["model"].coef_)
    # The same blocks in the same order (checksums to rounding: numpy's sum depends on alignment).
    np.testing.assert_allclose(again.model.named_steps["model"].blocks_, result.model.named_steps["model"].blocks_,
                               rtol=1e-12)
    other = train_incremental(parts["train"], parts["test"], RecordingSGD(loss="log_loss", alpha=1e-3), seed=1,
                              **{**kwargs, "epochs": 1})
    assert sorted(other.block_orders[0]) == sorted(result.block_orders[0])
    assert other.block_orders[0] != result.block_orders[0]
    fitted = [rows for rows, _ in other.model.named_steps["model"].blocks_]
    assert fitted != [rows for rows, _ in result.model.named_steps["model"].blocks_][: len(fitted)]


def test_training_streams_blocks_and_persists_nothing(parts, client):
    """A few preprocessed partitions are in memory at once (each read just before its block is
    fitted), and none once training ends."""
    client.register_plugin(HeldBlocks())
    try:
        train_incremental(parts["train"], parts["test"], SGDClassifier(loss="log_loss"), epochs=1, client=client)
        held = client.run_on_scheduler(_held)
    finally:
        client.unregister_scheduler_plugin(HeldBlocks.name)
    threads = sum(client.nthreads().values())
    assert held["seen"] == parts["train"].npartitions == 10  # every partition was read and preprocessed
    assert 1 <= held["peak"] <= 2 * threads < parts["train"].npartitions
    assert held["held"] == 0


def test_decision_function_when_there_is_no_predict_proba(parts, client):
    result = train_incremental(parts["train"], parts["test"], SGDClassifier(loss="hinge", alpha=1e-3), epochs=1,
                               client=client)
    assert not hasattr(result.model, "predict_proba")
    assert (result.metrics.threshold, result.metrics.scale) == (0.5, "decision")  # cut at logit(0.5) == 0
    collected = result.predict_scores(parts["test"]).compute()
    frame = parts["test"].frame.compute()
    np.testing.assert_allclose(result.model.decision_function(frame[list(result.features)]), collected["score"])
    assert result.metrics.roc_auc == pytest.approx(roc_auc_score(collected["label"], collected["score"]), rel=1e-12)
    assert result.metrics.roc_auc > 0.9


@pytest.mark.parametrize("estimator", [GaussianNB(), MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.01)],
                         ids=["GaussianNB", "MLPClassifier"])
def test_other_partial_fit_estimators_on_an_undersampled_set(parts, client, estimator):
    result = train_incremental(parts["sampled"], parts["test"], estimator, epochs=1, client=client)
    assert type(result.model.named_steps["model"]) is type(estimator)
    assert result.metrics.roc_auc > 0.9
    assert result.metrics.corrected is not None  # probabilities corrected for the under-sampling
    if isinstance(estimator, MLPClassifier):
        assert result.model.named_steps["model"].random_state == 0  # the seed, as it was None


def test_preprocessor_statistics_are_exact(parts, train_frame):
    train = parts["train"]
    features = list(train.features)
    values = train_frame[features].to_numpy(dtype="float64", na_value=np.nan)
    assert np.isnan(values).any()
    pre = fit_preprocessor(train)
    scaler = pre.named_steps["scale"]
    np.testing.assert_allclose(scaler.mean_, np.nanmean(values, axis=0), rtol=1e-10)
    np.testing.assert_allclose(scaler.var_, np.nanvar(values, axis=0), rtol=1e-9)
    np.testing.assert_array_equal(scaler.n_samples_seen_, (~np.isnan(values)).sum(axis=0))
    out = pre.transform(train_frame[features])
    assert not np.isnan(out).any()
    assert (out[np.isnan(values)] == 0).all()  # missing values become the mean
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-9)
    # The training blocks are preprocessed in place, without the Pipeline: the same floats.
    X, _, _ = dataset_arrays(train, pre)
    np.testing.assert_array_equal(X.compute(), out)
    unscaled = fit_preprocessor(train, scale=False)
    assert [name for name, _ in unscaled.steps] == ["impute"]
    np.testing.assert_allclose(unscaled.named_steps["impute"].statistics_, np.nanmean(values, axis=0), rtol=1e-10)
    X, _, _ = dataset_arrays(train, unscaled)
    np.testing.assert_array_equal(X.compute(), unscaled.transform(train_frame[features]))


def _empty_first(df, partition_info=None):
    return df.iloc[:0] if partition_info["number"] == 0 else df


def test_empty_partitions_give_no_block(parts):
    train = parts["train"]
    counts = train.class_counts.copy()
    counts[0] = 0
    holey = train.with_frame(train.frame.map_partitions(_empty_first, meta=train.frame._meta), counts)
    X, y, partitions = dataset_arrays(holey)
    assert partitions == list(range(1, train.npartitions))
    assert X.shape == (holey.n_rows, len(train.features)) and X.numblocks == (train.npartitions - 1, 1)
    assert int(y.sum().compute()) == holey.n_positive


def test_bad_input(parts, client):
    train, test = parts["train"], parts["test"]
    with pytest.raises(WorkbenchError, match="LogisticRegression has no partial_fit"):
        train_incremental(train, test, LogisticRegression(), client=client)
    with pytest.raises(WorkbenchError, match="epochs 0 is not a positive integer"):
        train_incremental(train, test, SGDClassifier(), epochs=0, client=client)
    nothing = train.with_frame(train.frame.map_partitions(lambda df: df.iloc[:0], meta=train.frame._meta),
                               np.zeros_like(train.class_counts))
    with pytest.raises(DataError, match="the dataset has no rows"):
        train_incremental(nothing, test, SGDClassifier(), client=client)
    fewer = dataclasses.replace(test, features=test.features[:3])
    with pytest.raises(WorkbenchError, match="different features"):
        train_incremental(train, fewer, SGDClassifier(), client=client)
