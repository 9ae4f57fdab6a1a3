"""workbench: out-of-core machine learning on Dask for imbalanced BigQuery exports.

>>> import workbench as wb
>>> with wb.cluster("local") as client:                                   # doctest: +SKIP
...     data = wb.read_bigquery_export("exports/btc-*.parquet", target="is_miner", drop=["address"])
...     train, test = wb.split(data, test_size=0.2, seed=0)
...     train, valid = wb.split(train, test_size=0.1, seed=0)
...     sample = wb.undersample(train, ratio="1:10", seed=0)
...     result = wb.train_xgboost(sample, test, valid=valid, early_stopping_rounds=20)
...     print(result.metrics.roc_auc)

Names are imported on first use, so ``import workbench`` and the ``workbench`` command stay quick.
"""

from importlib import import_module

from . import config as _config  # noqa: F401  (registers the workbench.* Dask config defaults)

# Bound eagerly: the name `cluster` is both the function and its subpackage, and a submodule import
# would otherwise leave `workbench.cluster` bound to the package. Importing it loads no distributed.
from .cluster import cluster, connect, describe, job_script, load_profile, make_cluster
from .errors import (
    ClusterError,
    ConfigError,
    DataError,
    SamplingError,
    WorkbenchError,
    WorkbenchWarning,
)

__version__ = "0.1.0"

_LAZY = {
    "serve": ".serve",
    "Dataset": ".data.dataset",
    "read_bigquery_export": ".data.bigquery",
    "synth_bitcoin_export": ".data.synth",
    "class_counts": ".sampling",
    "parse_ratio": ".config",
    "split": ".sampling",
    "split_by": ".sampling",
    "predict": ".pipeline.predict",
    "Prediction": ".pipeline.predict",
    "export_nycflights": ".data.nycflights",
    "make_estimator": ".train.estimators",
    "undersample": ".sampling",
    "XGBoostResult": ".train.xgb",
    "score": ".metrics",
    "evaluate_model": ".metrics",
    "evaluate_models": ".metrics",
    "register_model_type": ".train.registry",
    "ModelType": ".train.registry",
    "MODEL_TYPES": ".train.registry",
    "load_pipeline": ".pipeline",
    "PipelineSpec": ".pipeline",
    "train_xgboost": ".train.xgb",
    "RUSClassifier": ".train.rus",
    "SearchResult": ".train.search",
    "search": ".train.search",
    "EnsembleResult": ".train.ensemble",
    "train_ensemble": ".train.ensemble",
    "AveragedSGDResult": ".train.averaging",
    "train_averaged_sgd": ".train.averaging",
    "feature_importances": ".pipeline.artifacts",
    "plot_importances": ".pipeline.artifacts",
    "plot_roc": ".pipeline.artifacts",
    "plot_pr": ".pipeline.artifacts",
    "plot_confusion": ".pipeline.artifacts",
    "save_model": ".pipeline.artifacts",
    "load_model": ".pipeline.artifacts",
    "predict_to_parquet": ".pipeline.artifacts",
    "IncrementalResult": ".train.incremental",
    "train_incremental": ".train.incremental",
    "HalvingResult": ".train.adaptive",
    "hyperband_search": ".train.adaptive",
    "successive_halving_search": ".train.adaptive",
    "xgboost_successive_halving": ".train.adaptive",
    "Metrics": ".metrics",
    "correct_probabilities": ".metrics",
    "evaluate": ".metrics",
    "PipelineResult": ".pipeline",
    "run_pipeline": ".pipeline",
    "RunRecord": ".stores.runs",
    "RunStore": ".stores.runs",
    "enable_dashboard": ".dashboard",
    "build_cache": ".data.cache",
    "cache_export": ".data.cache",
    "cache_status": ".data.cache",
    "read_cache": ".data.cache",
    "refresh_cache": ".data.cache",
    "load_dataset": ".data.cache",
    "summarize_export": ".data.summary",
    "bench_io": ".benchio",
    "export_bigquery": ".data.export",
    "SweepSpec": ".sweep",
    "SweepResult": ".sweep",
    "load_sweep": ".sweep",
    "plan_cells": ".sweep",
    "run_sweep": ".sweep",
    "sweep_table": ".sweep",
    "load_results": ".analysis",
    "anova": ".analysis",
    "tukey": ".analysis",
    "tukey_groups": ".analysis",
    "speedup": ".analysis",
    "crossover": ".analysis",
    "effects": ".analysis",
    "fit_ernest": ".analysis",
    "recommend": ".analysis",
    "write_report": ".report",
}

__all__ = sorted([
    *_LAZY, "cluster", "connect", "describe", "job_script", "load_profile", "make_cluster",
    "ClusterError", "ConfigError", "DataError", "SamplingError", "WorkbenchError", "WorkbenchWarning",
])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__():
    return __all__
