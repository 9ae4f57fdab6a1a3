"""Random under-sampling as a scikit-learn meta-estimator, for searches and cross-validation.

:class:`RUSClassifier` under-samples the majority class in ``fit`` only, then fits a clone of its
estimator on the sample. Prediction never samples: inside any cross-validation the validation
folds keep their natural class ratio, and the sampling ``ratio`` is a parameter like any other
(``{"ratio": ["1:1", "1:10"], "estimator__max_depth": [4, 8]}`` in a grid).

It works on in-memory arrays. To under-sample a Dask :class:`~workbench.data.Dataset` on the
workers, use :func:`workbench.undersample`.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.utils import check_random_state, get_tags
from sklearn.utils._param_validation import HasMethods, Interval
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import SamplingError
from ..sampling import parse_ratio

__all__ = ["RUSClassifier", "undersample_indices"]


def undersample_indices(y: np.ndarray, k: float, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
    """Sorted row positions of every minority row and ``round(k * n_minority)`` majority rows.

    ``y`` holds two classes coded 0 and 1 (or booleans); the minority is the class with fewer rows,
    the positive class (1) on a tie, as in :func:`workbench.undersample`. Raises
    :class:`~workbench.errors.SamplingError` when there are too few majority rows for ``k``.
    """
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    minority = n_pos <= n_neg
    n_min, n_maj = (n_pos, n_neg) if minority else (n_neg, n_pos)
    wanted = max(1, int(round(k * n_min)))
    if wanted > n_maj:
        raise SamplingError(
            f"ratio 1:{k:g} needs {wanted:,} majority rows but only {n_maj:,} are available (minority: {n_min:,})",
            f"choose a ratio of at most 1:{n_maj // n_min}" if n_maj >= n_min else "use more data",
        )
    majority_rows = np.flatnonzero(y != minority)
    chosen = majority_rows[rng.choice(n_maj, size=wanted, replace=False)]
    return np.sort(np.concatenate([np.flatnonzero(y == minority), chosen]))


def _inner_has(attr: str):
    """True when the fitted clone (or, before fit, the given estimator) has ``attr``."""

    def check(self) -> bool:
        getattr(self.estimator_ if hasattr(self, "estimator_") else self.estimator, attr)
        return True

    return check


class RUSClassifier(ClassifierMixin, MetaEstimatorMixin, BaseEstimator):
    """Fit ``estimator`` on a random under-sample of the majority class; predict with it unchanged.

    Parameters
    ----------
    estimator
        A scikit-learn-compatible binary classifier. A clone of it is fitted.
    ratio
        ``"1:k"`` keeps every minority row and ``k`` majority rows per minority row (exactly
        ``round(k * n_minority)``); a float in (0, 1] is imbalanced-learn's ``sampling_strategy``
        (minority/majority after sampling, ``0.1`` == ``"1:10"``). See :func:`workbench.parse_ratio`.
    random_state
        Seed or ``RandomState`` of the draw; ``None`` draws differently every fit.

    Attributes
    ----------
    estimator_
        The fitted clone of ``estimator``.
    classes_
        The two class labels, sorted; ``classes_[1]`` is the positive class.
    sample_counts_
        Rows of each class (in ``classes_`` order) the clone was fitted on.
    majority_class_
        Index in ``classes_`` of the under-sampled class.
    kept_majority_fraction_
        Kept / available majority rows: the ``beta`` of :func:`workbench.metrics.correct_probabilities`.
    n_features_in_, feature_names_in_
        As for any scikit-learn estimator.

    Only binary targets are supported: a minority:majority ratio is a two-class notion. Sampling
    happens in ``fit`` alone, so ``predict_proba`` returns the probabilities the clone learned on
    the balanced sample (use ``kept_majority_fraction_`` to correct them).
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict"])],
        "ratio": [str, Interval(Real, 0, 1, closed="right")],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, ratio="1:1", random_state=None):
        self.estimator = estimator
        self.ratio = ratio
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = get_tags(self.estimator)
        tags.input_tags.allow_nan = inner.input_tags.allow_nan
        tags.input_tags.sparse = inner.input_tags.sparse
        tags.classifier_tags.multi_class = False
        return tags

    @_fit_context(prefer_skip_nested_validation=False)  # the inner estimator validates its own parameters
    def fit(self, X, y):
        """Under-sample the majority class of ``(X, y)`` to ``ratio`` and fit a clone of ``estimator``."""
        tags = self.__sklearn_tags__()
        X, y = validate_data(
            self, X, y,
            accept_sparse=["csr", "csc"] if tags.input_tags.sparse else False,
            ensure_all_finite="allow-nan" if tags.input_tags.allow_nan else True,
        )
        check_classification_targets(y)
        kind = type_of_target(y, input_name="y", raise_unknown=True)
        if kind != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {kind}.")
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"RUSClassifier needs 2 classes to under-sample; y has 1 class ({self.classes_[0]!r})")
        k = parse_ratio(self.ratio)
        rows = undersample_indices(encoded, k, check_random_state(self.random_state))
        counts = np.bincount(encoded, minlength=2)
        self.majority_class_ = int(counts[1] > counts[0])
        self.sample_counts_ = np.bincount(encoded[rows], minlength=2)
        self.kept_majority_fraction_ = float(
            self.sample_counts_[self.majority_class_] / counts[self.majority_class_]
        )
        self.estimator_ = clone(self.estimator).fit(X[rows], y[rows])
        return self

    def _validated(self, X):
        check_is_fitted(self)
        tags = self.__sklearn_tags__()
        return validate_data(
            self, X, reset=False,
            accept_sparse=["csr", "csc"] if tags.input_tags.sparse else False,
            ensure_all_finite="allow-nan" if tags.input_tags.allow_nan else True,
        )

    def predict(self, X):
        """Class labels predicted by the fitted clone."""
        X = self._validated(X)
        return self.estimator_.predict(X)

    @available_if(_inner_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the fitted clone, as learned on the under-sample."""
        X = self._validated(X)
        return self.estimator_.predict_proba(X)

    @available_if(_inner_has("predict_log_proba"))
    def predict_log_proba(self, X):
        X = self._validated(X)
        return self.estimator_.predict_log_proba(X)

    @available_if(_inner_has("decision_function"))
    def decision_function(self, X):
        X = self._validated(X)
        return self.estimator_.decision_function(X)

    @property
    def feature_importances_(self):
        """The fitted clone's ``feature_importances_`` (``AttributeError`` if it has none)."""
        check_is_fitted(self)
        return self.estimator_.feature_importances_
