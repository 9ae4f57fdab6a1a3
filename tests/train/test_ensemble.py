"""workbench.train_ensemble: members fitted side by side on the workers, soft voting and stacking."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import get_task_stream
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    StackingClassifier,
    VotingClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.svm import LinearSVC

from tests.train.test_xgb import _write_export
from workbench import read_bigquery_export, split, undersample
from workbench.errors import WorkbenchError
from workbench.metrics import Metrics
from workbench.train import EnsembleResult, train_ensemble

CV = 3


def _members():
    return {
        "rf": RandomForestClassifier(n_estimators=80, min_samples_leaf=5, n_jobs=-1, random_state=0),
        "hgb": HistGradientBoostingClassifier(max_iter=60, random_state=0),
        "lr": LogisticRegression(),
    }


@pytest.fixture(scope="module")
def parts(tmp_path_factory, client):
    path = _write_export(tmp_path_factory.mktemp("ensemble") / "export", shards=3, rows=4_000)
    data = read_bigquery_export(str(path), "is_miner", drop=["address"])
    train, test = split(data, 0.25, seed=0)
    return undersample(train, "1:2", seed=0).persist(client), test


@pytest.fixture(scope="module")
def run(parts, client):
    sample, test = parts
    client.run(lambda: __import__("sklearn.ensemble"))  # so that import times do not skew the overlap check
    with get_task_stream(client) as stream:
        result = train_ensemble(_members(), sample, test, method="both", cv=CV, seed=0, client=client)
    return result, stream.data


@pytest.fixture(scope="module")
def collected(parts):
    """The small test data collected here, only to recompute what the workers computed."""
    sample, test = parts
    s, t = sample.frame.compute(), test.frame.compute()
    features = list(sample.features)
    return (s[features].to_numpy("float64"), s[sample.target].to_numpy("int8"),
            t[features].to_numpy("float64"), t[test.target].to_numpy("int8"))


def test_members_fitted_at_the_same_time_on_different_workers(run, client):
    result, stream = run
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    assert result.workers == {"rf": workers[0], "hgb": workers[1], "lr": workers[0]}
    spans = {}
    for task in stream:
        key = str(task["key"])
        if key.startswith("ensemble-member-"):
            name = key.split("-")[2]
            [compute] = [s for s in task["startstops"] if s["action"] == "compute"]
            spans[name] = (task["worker"], compute["start"], compute["stop"])
    assert set(spans) == {"lr", "rf", "hgb"}
    assert {name: worker for name, (worker, _, _) in spans.items()} == result.workers
    # The first member on each worker ran at the same time as the other.
    (_, start_a, stop_a), (_, start_b, stop_b) = spans["rf"], spans["hgb"]
    assert max(start_a, start_b) < min(stop_a, stop_b)
    assert result.members["rf"].n_jobs == 1  # was -1: one fit per worker thread
    assert result.members["lr"].n_jobs is None  # left alone (setting it warns in scikit-learn 1.8+)
    assert set(result.fit_seconds) == {"rf", "hgb", "lr"} and all(s > 0 for s in result.fit_seconds.values())


def test_metrics_of_members_and_ensembles_are_exact(run, collected, parts):
    result, _ = run
    _, _, X_test, y_test = collected
    _, test = parts
    assert isinstance(result, EnsembleResult)
    assert list(result.metrics) == ["rf", "hgb", "lr", "soft", "stacking"]
    assert isinstance(result.soft, VotingClassifier) and isinstance(result.stacking, StackingClassifier)
    models = {**result.members, "soft": result.soft, "stacking": result.stacking}
    for name, model in models.items():
        m = result.metrics[name]
        assert isinstance(m, Metrics) and (m.n, m.n_positive) == (test.n_rows, test.n_positive)
        p = model.predict_proba(X_test)[:, 1]
        assert m.roc_auc == pytest.approx(roc_auc_score(y_test, p), rel=1e-9), name
        assert m.pr_auc == pytest.approx(average_precision_score(y_test, p), rel=1e-9), name
        assert m.roc_auc > 0.95
    assert m.corrected is not None  # trained on a RUS sample: corrected probabilities evaluated too
    table = result.table()
    assert list(table.index) == list(models) and list(table.columns) == ["roc_auc", "pr_auc"]


def test_stacking_learns_from_out_of_fold_probabilities(run, collected):
    result, _ = run
    X, y, _, _ = collected
    folds = StratifiedKFold(CV, shuffle=True, random_state=0)
    Z = np.column_stack([
        cross_val_predict(member, X, y, cv=folds, method="predict_proba")[:, 1] for member in _members().values()
    ])
    meta = LogisticRegression(random_state=0).fit(Z, y)
    fitted = result.stacking.final_estimator_.estimator
    np.testing.assert_allclose(fitted.coef_, meta.coef_, rtol=1e-6)
    np.testing.assert_allclose(fitted.intercept_, meta.intercept_, rtol=1e-6)
    # The soft vote is the plain mean of the members' probabilities.
    _, _, X_test, _ = collected
    mean = np.mean([m.predict_proba(X_test)[:, 1] for m in result.members.values()], axis=0)
    np.testing.assert_allclose(result.soft.predict_proba(X_test)[:, 1], mean, rtol=1e-12)


def test_serial_and_parallel_times_reported(run):
    result, _ = run
    t = result.timings
    assert set(t) == {"collect", "parallel", "serial", "score"}
    assert all(v > 0 for v in t.values())
    assert t["serial"] >= sum(result.fit_seconds.values())  # plus the out-of-fold fits and the meta-learner


def test_soft_voting_only(parts, client):
    sample, test = parts
    members = {"lr": LogisticRegression(), "hgb": HistGradientBoostingClassifier(max_iter=10)}
    result = train_ensemble(members, sample, test, method="soft", client=client)
    assert result.stacking is None and list(result.metrics) == ["lr", "hgb", "soft"]
    assert len(set(result.workers.values())) == 2


@pytest.mark.parametrize("members, kwargs, message", [
    ({"svm": LinearSVC()}, {}, "member 'svm' .LinearSVC. has no predict_proba"),
    ({"soft": LogisticRegression()}, {}, "member name 'soft' is not usable"),
    ({"lr": LogisticRegression()}, {"method": "hard"}, "method 'hard' is not an ensemble method"),
    ({}, {}, "train_ensemble needs members"),
    ({"lr": LogisticRegression()}, {"cv": 100_000}, "fewer than cv=100000 folds"),
])
def test_bad_arguments(parts, client, members, kwargs, message):
    sample, test = parts
    with pytest.raises(WorkbenchError, match=message):
        train_ensemble(members, sample, test, client=client, **kwargs)
