"""Where runs are kept: the run store and the sweep store, over one SQLite database layer."""

from .runs import STATUSES, Run, RunRecord, RunStore, describe_error, versions
from .sweeps import SweepStore

__all__ = ["STATUSES", "Run", "RunRecord", "RunStore", "SweepStore", "describe_error", "versions"]
