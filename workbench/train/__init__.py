"""Trainers. Each takes Datasets and an optional ``client``, and evaluates exactly on the test set."""

from .xgb import DEFAULT_PARAMS, XGBoostResult, predict_scores, train_xgboost
from .rus import RUSClassifier
from .search import SearchResult, search
from .ensemble import EnsembleResult, train_ensemble
from .averaging import AveragedSGDResult, average_models, train_averaged_sgd
from .incremental import IncrementalResult, train_incremental
from .adaptive import HalvingResult, hyperband_search, successive_halving_search, xgboost_successive_halving

__all__ = ["DEFAULT_PARAMS", "XGBoostResult", "predict_scores", "train_xgboost"]
__all__ += ["RUSClassifier", "SearchResult", "search", "EnsembleResult", "train_ensemble"]
__all__ += ["AveragedSGDResult", "average_models", "train_averaged_sgd"]
__all__ += ["IncrementalResult", "train_incremental", "HalvingResult", "hyperband_search", "successive_halving_search",
            "xgboost_successive_halving"]
