"""Data sources: BigQuery Parquet exports and synthetic exports shaped like them."""

from ..errors import WorkbenchWarning
from .bigquery import read_bigquery_export
from .dataset import Dataset

__all__ = ["Dataset", "WorkbenchWarning", "read_bigquery_export", "synth_bitcoin_export"]


def __getattr__(name):
    if name == "synth_bitcoin_export":
        from .synth import synth_bitcoin_export

        return synth_bitcoin_export
    raise AttributeError(name)
