"""Runs compared on the same test rows: DeLong's paired test of their ROC AUCs.

Two runs may be compared row by row only if they scored the same test rows in the same order:
the pipeline records a fingerprint of those rows (``data.test_rows_fingerprint``: the partitions'
keys and the rows' positions in their shards) and keeps the labels and the model's scores beside
the run (``test_scores/``, see ``metrics.save_scores``). :func:`compare_runs` refuses, in one line,
runs without them or with other rows, and otherwise tests every pair of runs, with Holm's
adjustment of the p-values when there are more than two runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import WorkbenchError
from .metrics.evaluation import holm, paired_from_arrays
from .metrics.intervals import delong
from .stores.runs import RunRecord, RunStore

__all__ = ["Comparison", "compare_runs", "load_scores", "paired_tests", "comparable"]


@dataclass(frozen=True)
class Comparison:
    runs: list[RunRecord]
    rows: int
    positive: int
    level: float
    aucs: list[dict]  # per run: roc_auc, low, high
    pairs: list[dict]  # a, b, auc_a, auc_b, delta, se, low, high, z, p_value, p_holm (None with one pair)


def load_scores(record: RunRecord) -> pd.DataFrame:
    """The labels and scores a run kept of its test rows, in their order."""
    name = record.artifacts.get("test_scores")
    if record.status != "succeeded":
        raise WorkbenchError(f"run {record.id} is {record.status}; only a succeeded run has test scores",
                             "compare succeeded runs (workbench runs lists them)")
    if not name:
        raise WorkbenchError(f"run {record.id} kept no test scores (its test set was larger than "
                             "workbench.metrics.save_scores_max_rows, or it ran before scores were kept)",
                             "re-run it with `metrics: {save_scores: true}` in its pipeline file")
    path = Path(record.path) / name
    if not path.exists():
        raise WorkbenchError(f"run {record.id}'s test scores are missing from {path}",
                             "re-run it, or restore its run directory")
    return pd.read_parquet(path, columns=["label", "score"])


def compare_runs(run_ids: list[str], *, runs_dir: str | os.PathLike | None = None,
                 level: float = 0.95) -> Comparison:
    """DeLong's paired test between every two of ``run_ids`` (id prefixes are enough)."""
    if len(run_ids) < 2:
        raise WorkbenchError("compare needs at least two runs", "name two or more run ids (workbench runs lists them)")
    store = RunStore(runs_dir)
    records = [store.get(run_id) for run_id in run_ids]
    if len({r.id for r in records}) < len(records):
        raise WorkbenchError("the same run is named twice", "name each run once")
    prints = {r.id: (r.data or {}).get("test_rows_fingerprint") for r in records}
    first = records[0]
    for r in records:
        if not prints[r.id]:
            raise WorkbenchError(f"run {r.id} recorded no fingerprint of its test rows (it ran before runs did)",
                                 "re-run it, then compare")
    for r in records[1:]:
        if prints[r.id] != prints[first.id]:
            raise WorkbenchError(
                f"runs {first.id} and {r.id} were scored on different test rows",
                "compare runs that read the same data with the same split settings and seed",
            )
    scores = [load_scores(r) for r in records]
    labels = scores[0]["label"].to_numpy()
    for r, s in zip(records[1:], scores[1:]):
        if len(s) != len(labels) or not np.array_equal(s["label"].to_numpy(), labels):
            raise WorkbenchError(f"runs {first.id} and {r.id} kept test scores of different rows",
                                 "re-run both with the same data and split settings")
    aucs = [_interval(s, level) for s in scores]
    pairs = paired_tests([r.id for r in records], labels, [s["score"].to_numpy() for s in scores], level)
    return Comparison(records, int(len(labels)), int(labels.sum()), level, aucs, pairs)


def comparable(record: RunRecord) -> bool:
    """Whether ``record`` kept what a paired comparison needs (test scores and their fingerprint)."""
    return (record.status == "succeeded" and bool((record.data or {}).get("test_rows_fingerprint"))
            and "test_scores" in record.artifacts and (Path(record.path) / record.artifacts["test_scores"]).exists())


def paired_tests(names: list[str], labels: np.ndarray, scores: list[np.ndarray], level: float = 0.95) -> list[dict]:
    """DeLong's paired test between every two score arrays on the same rows, Holm-adjusted when
    there is more than one pair (``p_holm`` None otherwise)."""
    pairs = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            test = paired_from_arrays(labels, scores[i], scores[j], level)
            pairs.append({"a": names[i], "b": names[j], **test._asdict()})
    adjusted = holm([p["p_value"] for p in pairs]) if len(pairs) > 1 else [None] * len(pairs)
    for pair, p in zip(pairs, adjusted):
        pair["p_holm"] = p
    return pairs


def _interval(scores: pd.DataFrame, level: float) -> dict:
    counts = scores.groupby("score")["label"].agg(["size", "sum"])
    table = pd.DataFrame({"score": counts.index, "neg": counts["size"] - counts["sum"], "pos": counts["sum"]})
    interval = delong(table, level)
    return {"roc_auc": interval.auc, "low": interval.low, "high": interval.high}
