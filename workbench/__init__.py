"""workbench: out-of-core machine learning on Dask for imbalanced BigQuery exports.

>>> import workbench as wb
>>> with wb.cluster("local") as client:                                   # doctest: +SKIP
...     data = wb.read_bigquery_export("exports/btc-*.parquet", target="is_miner", drop=["address"])
...     train, test = wb.split(data, test_size=0.2, seed=0)
...     train, valid = wb.split(train, test_size=0.1, seed=0)
...     sample = wb.undersample(train, ratio="1:10", seed=0)
...     result = wb.train_xgboost(sample, test, valid=valid, early_stopping_rounds=20)
...     print(result.metrics.roc_auc)
"""

from . import config as _config  # noqa: F401  (registers the workbench.* Dask config defaults)
from .cluster import cluster, describe, load_profile, make_cluster
from .data import Dataset, WorkbenchWarning, read_bigquery_export
from .errors import ClusterError, ConfigError, DataError, SamplingError, WorkbenchError
from .metrics import Metrics, correct_probabilities, evaluate
from .pipeline import PipelineResult, run_pipeline
from .runs import RunRecord, RunStore
from .sampling import class_counts, parse_ratio, split, undersample
from .train.xgb import XGBoostResult, predict_scores, train_xgboost

__version__ = "0.1.0"

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "Dataset",
    "Metrics",
    "PipelineResult",
    "RunRecord",
    "RunStore",
    "SamplingError",
    "WorkbenchError",
    "WorkbenchWarning",
    "XGBoostResult",
    "class_counts",
    "cluster",
    "correct_probabilities",
    "describe",
    "evaluate",
    "load_profile",
    "make_cluster",
    "parse_ratio",
    "predict_scores",
    "read_bigquery_export",
    "run_pipeline",
    "split",
    "synth_bitcoin_export",
    "train_xgboost",
    "undersample",
]


def __getattr__(name):
    if name == "synth_bitcoin_export":
        from .data.synth import synth_bitcoin_export

        return synth_bitcoin_export
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
