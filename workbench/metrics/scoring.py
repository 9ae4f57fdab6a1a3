"""The one scorer: every model the workbench trains, scored on a Dataset partition by partition.

A model is anything with ``predict_proba`` (a scikit-learn classifier or pipeline, an ensemble, a
partial_fit model, a search's best estimator), an ``xgboost.Booster``, or a classifier with only
``decision_function`` (a hinge-loss SGD). The score is the probability of class 1, or the decision
function for the last kind, whose scale :func:`score_scale` names so that evaluation can put the
threshold and the under-sampling correction on the same scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import dask.dataframe as dd
import numpy as np
import pandas as pd

from ..data.dataset import Dataset

__all__ = ["score", "score_scale", "positive_scores", "model_scores", "PROBABILITY", "DECISION"]

PROBABILITY = "probability"
DECISION = "decision"


def _is_booster(model) -> bool:
    import xgboost as xgb

    return isinstance(model, xgb.Booster)


def score_scale(model) -> str:
    """``"probability"`` for models whose score is P(class 1), ``"decision"`` for a decision function."""
    if _is_booster(model) or hasattr(model, "predict_proba"):
        return PROBABILITY
    if hasattr(model, "decision_function"):
        return DECISION
    raise TypeError(f"a {type(model).__name__} has neither predict_proba nor decision_function")


def model_scores(model, X) -> np.ndarray:
    """The scores of ``model`` on the rows of ``X`` (an array or a frame), float64."""
    if len(X) == 0:
        return np.empty(0, dtype="float64")
    if _is_booster(model):
        return np.asarray(model.inplace_predict(X, validate_features=False), dtype="float64")
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(X)[:, list(model.classes_).index(1)], dtype="float64")
    return np.asarray(model.decision_function(X), dtype="float64")


def positive_scores(model, part: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The scores of ``model`` on the rows of one partition (float64)."""
    if _is_booster(model) or hasattr(model, "feature_names_in_"):
        return model_scores(model, part[features])
    # Models fitted on arrays get an array, NaN for missing values.
    return model_scores(model, part[features].to_numpy("float64", na_value=np.nan))


def score(models, data: Dataset, *, client=None, label: bool = True) -> dd.DataFrame:
    """A lazy frame of ``label`` (int8) and the scores of ``models`` on ``data``, one pass over it.

    ``models`` is one model (column ``score``) or a mapping of name -> model (one column per name,
    all scored by the same task from the same partition). The models are sent to every worker
    once; no row of ``data`` reaches the client.
    """
    from distributed import get_client

    client = client or get_client()
    named = dict(models) if isinstance(models, Mapping) else {"score": models}
    [remote] = client.scatter([named], broadcast=True, hash=False)
    target = data.target if label and data.target in data.frame.columns else None
    meta = pd.DataFrame({**({"label": pd.Series([], dtype="int8")} if target else {}),
                         **{name: pd.Series([], dtype="float64") for name in named}})
    meta.index = data.frame._meta.index[:0]
    return data.frame.map_partitions(_score_partition, remote, list(data.features), target, meta=meta)


def _score_partition(part: pd.DataFrame, models: dict, features: list[str], target: str | None) -> pd.DataFrame:
    out = pd.DataFrame(index=part.index)
    if target is not None:
        out["label"] = part[target].to_numpy(dtype="int8")
    for name, model in models.items():
        out[name] = positive_scores(model, part, features)
    return out
