"""Trainers: each fits on Datasets with an optional ``client`` and returns a model; the model-type
registry (:mod:`workbench.train.registry`) makes each one a ``model.type`` of pipeline files.

Names are imported on first use, so looking at the registry does not import every trainer. The
search trainer is ``workbench.train.search.search`` (or ``workbench.search``): its name is also its
module's.
"""

from importlib import import_module

_LAZY = {
    "DEFAULT_PARAMS": ".xgb", "XGBoostResult": ".xgb", "train_xgboost": ".xgb",
    "RUSClassifier": ".rus",
    "EnsembleResult": ".ensemble", "train_ensemble": ".ensemble",
    "AveragedSGDResult": ".averaging", "average_models": ".averaging", "train_averaged_sgd": ".averaging",
    "IncrementalResult": ".incremental", "train_incremental": ".incremental", "epoch_monitor": ".incremental",
    "HalvingResult": ".adaptive", "hyperband_search": ".adaptive", "successive_halving_search": ".adaptive",
    "xgboost_successive_halving": ".adaptive",
    "MODEL_TYPES": ".registry", "ModelType": ".registry", "ModelView": ".registry", "Fitted": ".registry",
    "FitContext": ".registry", "register_model_type": ".registry",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench.train' has no attribute {name!r}")


def __dir__():
    return __all__
