"""RUSClassifier: a scikit-learn meta-estimator that under-samples in fit only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from workbench.errors import SamplingError
from workbench.train import RUSClassifier
from workbench.train.rus import undersample_indices


@parametrize_with_checks([
    RUSClassifier(LogisticRegression(), random_state=0),
    # NaN and sparse input follow the inner estimator's tags; ratio as imbalanced-learn's float.
    RUSClassifier(DecisionTreeClassifier(random_state=0), ratio=1.0, random_state=0),
])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _imbalanced(n=2_000, positive_rate=0.1, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positive_rate).astype(int)
    X = np.column_stack([rng.normal(2.0 * y, 1.0), rng.normal(0.0, 1.0, n)])
    return X, y


class _Recorder(LogisticRegression):
    """Remembers the positive rate of what it was fitted on."""

    def fit(self, X, y, sample_weight=None):
        self.fit_positive_rate_ = float(np.mean(y))
        return super().fit(X, y, sample_weight)


@pytest.mark.parametrize("ratio, k", [("1:1", 1), ("1:4", 4), (0.25, 4), ("1:2.5", 2.5)])
def test_exact_ratio_in_fit(ratio, k):
    X, y = _imbalanced()
    model = RUSClassifier(_Recorder(), ratio=ratio, random_state=0).fit(X, y)
    n_pos = int(y.sum())
    assert model.sample_counts_[1] == n_pos  # every minority row
    assert model.sample_counts_[0] == round(k * n_pos)
    assert model.majority_class_ == 0
    assert model.kept_majority_fraction_ == pytest.approx(round(k * n_pos) / (len(y) - n_pos))
    assert model.estimator_.fit_positive_rate_ == pytest.approx(n_pos / (n_pos + round(k * n_pos)))
    assert list(model.classes_) == [0, 1]


def test_validation_folds_keep_their_natural_ratio():
    """Under cross-validation only the training folds are sampled: the scorer sees every validation row."""
    X, y = _imbalanced()
    scoring = {
        "fit_rate": lambda est, X, y: est.estimator_.fit_positive_rate_,
        "valid_rate": lambda est, X, y: float(np.mean(y)),
        "valid_rows": lambda est, X, y: float(len(y)),
    }
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    scores = cross_validate(RUSClassifier(_Recorder(), "1:1", random_state=0), X, y, cv=folds, scoring=scoring)
    np.testing.assert_allclose(scores["test_fit_rate"], 0.5)
    np.testing.assert_allclose(scores["test_valid_rate"], y.mean(), atol=0.002)
    assert scores["test_valid_rows"].sum() == len(y)


def test_predict_does_not_sample_and_passes_through():
    X, y = _imbalanced()
    model = RUSClassifier(LogisticRegression(), "1:2", random_state=0).fit(X, y)
    assert model.predict_proba(X).shape == (len(y), 2)
    np.testing.assert_array_equal(model.predict_proba(X), model.estimator_.predict_proba(X))
    np.testing.assert_array_equal(model.decision_function(X), model.estimator_.decision_function(X))
    np.testing.assert_array_equal(model.predict(X), model.estimator_.predict(X))
    assert not hasattr(model, "feature_importances_")  # LogisticRegression has none
    forest = RUSClassifier(RandomForestClassifier(n_estimators=5, random_state=0), random_state=0).fit(X, y)
    np.testing.assert_array_equal(forest.feature_importances_, forest.estimator_.feature_importances_)
    assert not hasattr(forest, "decision_function")  # the forest has none


def test_same_random_state_same_sample_and_string_labels():
    X, y = _imbalanced()
    labels = np.where(y == 1, "miner", "other")
    a = RUSClassifier(RandomForestClassifier(n_estimators=3, random_state=0), random_state=3).fit(X, labels)
    b = clone(a).fit(X, labels)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert list(a.classes_) == ["miner", "other"]
    assert a.majority_class_ == 1  # "other" is the majority, so the minority is classes_[0]
    assert a.sample_counts_[0] == a.sample_counts_[1] == int(y.sum())


def test_ratio_and_inner_parameters_are_searchable():
    X, y = _imbalanced()
    grid = GridSearchCV(
        RUSClassifier(_Recorder(), random_state=0),
        {"ratio": ["1:1", "1:3"], "estimator__C": [0.1, 1.0]},
        scoring="roc_auc", cv=StratifiedKFold(3, shuffle=True, random_state=0),
    ).fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_.get_params()["ratio"] in ("1:1", "1:3")
    assert grid.best_score_ > 0.8


def test_too_few_majority_rows_and_bad_ratios():
    X, y = _imbalanced()
    with pytest.raises(SamplingError, match=r"ratio 1:100 needs .* choose a ratio of at most 1:\d+"):
        RUSClassifier(LogisticRegression(), "1:100").fit(X, y)
    with pytest.raises(SamplingError, match="not of the form"):
        RUSClassifier(LogisticRegression(), "10:1").fit(X, y)
    with pytest.raises(ValueError, match="ratio"):  # scikit-learn's parameter validation
        RUSClassifier(LogisticRegression(), 1.5).fit(X, y)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        RUSClassifier(LogisticRegression()).fit(X, np.arange(len(y)) % 3)


def test_undersample_indices_keeps_order_and_every_minority_row():
    y = np.array([0, 1, 0, 0, 1, 0, 0, 0, 0, 0])
    rows = undersample_indices(y, 2, np.random.default_rng(0))
    assert list(rows) == sorted(rows)
    assert set(np.flatnonzero(y)) <= set(rows)
    assert len(rows) == 2 + 4
