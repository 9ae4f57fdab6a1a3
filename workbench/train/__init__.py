"""Trainers. Each takes Datasets and an optional ``client``, and evaluates exactly on the test set."""

from .xgb import DEFAULT_PARAMS, XGBoostResult, predict_scores, train_xgboost

__all__ = ["DEFAULT_PARAMS", "XGBoostResult", "predict_scores", "train_xgboost"]
