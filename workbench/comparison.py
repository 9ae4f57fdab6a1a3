"""Runs compared on the same test rows: DeLong's paired test of their ROC AUCs.

Two runs may be compared row by row only if they scored the same test rows in the same order:
the pipeline records a fingerprint of those rows (``data.test_rows_fingerprint``: the partitions'
keys and the rows' positions in their shards) and keeps the labels, the model's scores and each
row's DeLong placement beside the run (``test_scores/``, see ``metrics.save_scores``), so a paired
test is one pass over the kept files, a partition at a time: the memory it needs does not grow
with the test set. :func:`compare_runs` refuses, in one line,
runs without them or with other rows, and otherwise tests every pair of runs, with Holm's
adjustment of the p-values when there are more than two runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .errors import WorkbenchError
from .metrics.evaluation import PairedSums, PlacementSums, holm, placements_of
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
    return pd.read_parquet(_scores_path(record), columns=["label", "score"])


def _scores_path(record: RunRecord) -> Path:
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
    return path


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
    singles, pairs, rows, positive = _streamed([r.id for r in records], records, level)
    aucs = [{"roc_auc": i.auc, "low": i.low, "high": i.high} for i in singles]
    return Comparison(records, rows, positive, level, aucs, pairs)


def comparable(record: RunRecord) -> bool:
    """Whether ``record`` kept what a paired comparison needs (test scores and their fingerprint)."""
    return (record.status == "succeeded" and bool((record.data or {}).get("test_rows_fingerprint"))
            and "test_scores" in record.artifacts and (Path(record.path) / record.artifacts["test_scores"]).exists())


def paired_tests(names: list[str], records: list[RunRecord], level: float = 0.95) -> list[dict]:
    """DeLong's paired test between every two of ``records`` (runs that kept their test scores, of
    the same rows), Holm-adjusted when there is more than one pair (``p_holm`` None otherwise).
    One pass over the kept scores, one partition of each run at a time."""
    return _streamed(names, records, level)[1]


def _streamed(names: list[str], records: list[RunRecord], level: float):
    """Each run's DeLong interval, the paired tests, the rows and the positives, from one pass over
    the runs' kept placements (``test_scores/``, written by the pipeline; see
    :func:`workbench.metrics.evaluation.with_placements`)."""
    singles = [PlacementSums() for _ in records]
    pairs = {(i, j): PairedSums() for i in range(len(records)) for j in range(i + 1, len(records))}
    rows = positive = 0
    for labels, placed in _chunks(records):
        rows, positive = rows + len(labels), positive + int(labels.sum())
        for one, p in zip(singles, placed):
            one.add(labels, p)
        for (i, j), sums in pairs.items():
            sums.add(labels, placed[i], placed[j])
    try:
        intervals = [one.result(level) for one in singles]
        tests = [{"a": names[i], "b": names[j], **sums.result(level)._asdict()} for (i, j), sums in pairs.items()]
    except ValueError as exc:
        raise WorkbenchError(f"the runs' test rows cannot be compared: {exc}",
                             "compare runs whose test set holds at least 2 rows of each class") from None
    adjusted = holm([t["p_value"] for t in tests]) if len(tests) > 1 else [None] * len(tests)
    for test, p in zip(tests, adjusted):
        test["p_holm"] = p
    return intervals, tests, rows, positive


def _chunks(records: list[RunRecord]):
    """``(labels, [placements of each run])`` per partition of the kept scores, checked to be the
    same rows. Runs that kept their scores before placements were kept are read whole instead."""
    parts = [_parts(r) for r in records]
    streamable = len({len(p) for p in parts}) == 1 and all(
        "placement" in pq.read_schema(p[0]).names for p in parts if p)
    if not streamable:
        whole = [load_scores(r) for r in records]
        yield _same_rows(records, [s["label"].to_numpy() for s in whole],
                         [placements_of(s["label"].to_numpy(), s["score"].to_numpy()) for s in whole])
        return
    for files in zip(*parts):
        tables = [pq.read_table(f, columns=["label", "placement"]) for f in files]
        yield _same_rows(records, [t.column("label").to_numpy() for t in tables],
                         [t.column("placement").to_numpy() for t in tables])


def _same_rows(records, labels: list[np.ndarray], placed: list[np.ndarray]):
    for r, other in zip(records[1:], labels[1:]):
        if len(other) != len(labels[0]) or not np.array_equal(other, labels[0]):
            raise WorkbenchError(f"runs {records[0].id} and {r.id} kept test scores of different rows",
                                 "re-run both with the same data and split settings")
    return labels[0].astype("int64"), [np.asarray(p, dtype="float64") for p in placed]


def _parts(record: RunRecord) -> list[Path]:
    path = _scores_path(record)
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]
