"""Stratified train/test split and random under-sampling (RUS), exact and out-of-core.

Both work in two steps. First the client learns how many rows of each class every partition holds
(one pass over the target column, or none when the counts are already known), and draws how many
rows to take from each partition with a multivariate hypergeometric draw: exactly the distribution
of the per-partition counts of a uniform random subset of the whole dataset. Then each worker picks
that many rows of its partition uniformly at random. The result is an exact-size, uniformly random,
reproducible selection, and no row ever travels to the client.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace

import dask
import numpy as np
import pandas as pd

from .config import parse_ratio
from .data.dataset import Dataset
from .data.labels import label_counts
from .errors import DataError, SamplingError

__all__ = ["class_counts", "split", "split_by", "undersample", "parse_ratio"]



def class_counts(data: Dataset) -> np.ndarray:
    """Negatives and positives per partition, ``(npartitions, 2)``: one pass over the target column."""
    if data.class_counts is not None:
        return data.class_counts
    table = label_counts(data)
    if table[:, 2].sum():
        raise DataError(
            f"target {data.target!r} has {int(table[:, 2].sum()):,} values that are neither positive nor negative",
            "name the positive class with positive= (data.positive in a pipeline file)",
        )
    return table[:, :2]


def _require_two_classes(data: Dataset, counts: np.ndarray) -> None:
    totals = counts.sum(axis=0)
    if totals.sum() == 0 and data.info.get("rows_in_files"):  # the footers did not tell (no statistics)
        raise DataError(f"target column {data.target!r} is null in every row ({data.info['rows_in_files']:,} rows)",
                        "check the export query, or name the label column as target")
    if totals.min() == 0:
        only = "positive" if totals[0] == 0 else "negative"
        raise SamplingError(
            f"target {data.target!r} has one class only: all {int(totals.sum()):,} rows are {only}",
            "check the target column and the export query",
        )


def split(data: Dataset, test_size: float = 0.2, *, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Stratified split into ``(train, test)`` with exact per-class sizes.

    The test set keeps the natural class ratio: ``round(test_size * n_c)`` rows of each class ``c``
    (at least one, and at least one left for training). The same seed selects the same rows
    whatever the number of workers.
    """
    if not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise SamplingError(f"test_size {test_size!r} is outside (0, 1)", "give the test fraction, e.g. 0.2")
    counts = class_counts(data)
    _require_two_classes(data, counts)
    totals = counts.sum(axis=0)
    salt = _salt(data, "split")
    if totals.min() < 2:
        raise SamplingError(
            f"the minority class has {int(totals.min())} row; a split needs at least 2",
            "use more data",
        )
    wanted = np.clip(np.rint(test_size * totals).astype("int64"), 1, totals - 1)
    test_counts = np.stack(
        [_allocate(counts[:, c], int(wanted[c]), [seed, zlib.crc32(salt.encode()), c]) for c in (0, 1)], axis=1
    )
    train_counts = counts - test_counts
    seeds = [data.partition_seed(seed, salt, i) for i in range(data.npartitions)]
    test = data.frame.map_partitions(_select, data.target, test_counts, seeds, True, meta=data.frame._meta)
    train = data.frame.map_partitions(_select, data.target, test_counts, seeds, False, meta=data.frame._meta)
    note = {"test_size": test_size, "seed": seed}
    lineage = (*data.info.get("lineage", ()), salt)
    return (
        data.with_frame(train, train_counts, split=note, lineage=(*lineage, "train")),
        data.with_frame(test, test_counts, split=note, lineage=(*lineage, "test")),
    )


def split_by(data: Dataset, column: str, test_from) -> tuple[Dataset, Dataset]:
    """Split on the values of ``column``: rows with ``column >= test_from`` are the test set.

    The honest split for data that drifts or clusters in time (storm days, a new fraud pattern): the
    model is tested on a later period than it was trained on. ``test_from`` is a date or time
    (``"2013-11-01"``, UTC) for a TIMESTAMP, DATETIME or DATE column, else a number. Rows where
    ``column`` is null train. The column stays in the frames but is no longer a feature: as a
    feature it would only extrapolate.
    """
    if column not in data.features:
        raise SamplingError(f"split column {column!r} is not a numeric or date/time column of the data",
                            f"split by one of: {', '.join(data.features[:12])}")
    cutoff = _cutoff(data, column, test_from)
    is_test = data.frame[column] >= cutoff
    train_frame, test_frame = data.frame[~is_test], data.frame[is_test]
    note = {"by": column, "test_from": str(test_from)}
    lineage = (*data.info.get("lineage", ()), _salt(data, f"split_by:{column}>={test_from}"))
    features = tuple(f for f in data.features if f != column)
    # Both sides' class counts in one pass over the two columns, rather than one pass per side.
    meta = pd.DataFrame({k: pd.Series([], dtype="int64") for k in ("train_neg", "train_pos", "test_neg", "test_pos")})
    per_part = data.frame[[column, data.target]].map_partitions(_count_sides, column, data.target, cutoff, meta=meta)
    both = pd.concat(dask.compute(*per_part.to_delayed()), ignore_index=True).to_numpy(dtype="int64")
    parts = []
    for side, frame, counts_of_side in (("train", train_frame, both[:, :2]), ("test", test_frame, both[:, 2:])):
        part = data.with_frame(frame, counts_of_side, split=note, lineage=(*lineage, side))
        counts = counts_of_side.sum(axis=0)
        if counts.min() == 0:
            raise SamplingError(
                f"splitting at {column} >= {test_from} leaves the {side} set with "
                f"{int(counts[1]):,} positive and {int(counts[0]):,} negative rows",
                "move test_from so that both sides hold both classes",
            )
        parts.append(replace(part, features=features))
    return parts[0], parts[1]


def _count_sides(df: pd.DataFrame, column: str, target: str, cutoff: float) -> pd.DataFrame:
    is_test = (df[column] >= cutoff).to_numpy(dtype=bool, na_value=False)
    labels = df[target].to_numpy()
    return pd.DataFrame({f"{side}_{name}": [int(((labels == value) & (is_test == test)).sum())]
                         for side, test in (("train", False), ("test", True))
                         for name, value in (("neg", 0), ("pos", 1))})


def _cutoff(data: Dataset, column: str, test_from) -> float:
    conversion = data.info.get("conversions", {}).get(column, "")
    if conversion.startswith(("timestamp", "date")):
        try:
            stamp = pd.Timestamp(test_from)
        except (TypeError, ValueError):
            raise SamplingError(f"test_from {test_from!r} is not a date or time",
                                "write it as YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC)") from None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.timestamp()  # the reader turns dates and times into UTC epoch seconds
    try:
        return float(test_from)
    except (TypeError, ValueError):
        raise SamplingError(f"test_from {test_from!r} is not a number, and {column!r} is not a date/time column",
                            "give a number") from None


def undersample(data: Dataset, ratio: str | float | None = "1:1", *, seed: int = 0) -> Dataset:
    """Random under-sampling: every minority row and ``k`` majority rows per minority row.

    ``ratio`` is ``"1:k"`` or imbalanced-learn's float ``sampling_strategy``; ``None`` returns
    ``data`` unchanged. Raises :class:`SamplingError` when the data has fewer majority rows than
    the ratio needs.
    """
    if ratio is None:
        return data
    k = parse_ratio(ratio)
    counts = class_counts(data)
    _require_two_classes(data, counts)
    totals = counts.sum(axis=0)
    minority = 1 if totals[1] <= totals[0] else 0
    majority = 1 - minority
    n_min, n_maj = int(totals[minority]), int(totals[majority])
    wanted = int(round(k * n_min))
    if wanted > n_maj:
        best = math.floor(n_maj / n_min) if n_min else 0
        raise SamplingError(
            f"ratio {ratio} needs {wanted:,} majority rows but only {n_maj:,} are available "
            f"(minority: {n_min:,})",
            f"choose a ratio of at most 1:{best}" if best >= 1 else "use more data",
        )
    salt = _salt(data, "undersample")
    kept = _allocate(counts[:, majority], wanted, [seed, zlib.crc32(salt.encode())])
    seeds = [data.partition_seed(seed, salt, i) for i in range(data.npartitions)]
    frame = data.frame.map_partitions(_keep_majority_sample, data.target, majority, kept, seeds, meta=data.frame._meta)
    new_counts = counts.copy()
    new_counts[:, majority] = kept
    note = {"ratio": str(ratio), "seed": seed, "majority_class": majority, "kept_majority_fraction": wanted / n_maj,
            "before": {"negative": int(totals[0]), "positive": int(totals[1])}}
    return data.with_frame(frame, new_counts, undersample=note, lineage=(*data.info.get("lineage", ()), salt))


def _salt(data: Dataset, step: str) -> str:
    """Names the step by the steps before it, so a second split draws independently of the first."""
    return "/".join((*data.info.get("lineage", ()), step))


def _allocate(per_partition: np.ndarray, total: int, seed) -> np.ndarray:
    """How many of ``total`` uniformly chosen rows fall in each partition."""
    rng = np.random.default_rng(seed)
    return rng.multivariate_hypergeometric(per_partition.astype("int64"), total, method="marginals")


def _chosen_rows(labels: np.ndarray, cls: int, k: int, rng: np.random.Generator) -> np.ndarray:
    positions = np.flatnonzero(labels == cls)
    if k > len(positions):
        raise SamplingError(
            f"partition holds {len(positions)} rows of class {cls} but {k} were planned",
            "the data changed while it was being sampled; persist it or re-run",
        )
    return positions[rng.choice(len(positions), size=k, replace=False)] if k else positions[:0]


def _select(df: pd.DataFrame, target, test_counts, seeds, chosen: bool, partition_info=None) -> pd.DataFrame:
    i = partition_info["number"]
    rng = np.random.default_rng(seeds[i])
    labels = df[target].to_numpy()
    mask = np.zeros(len(df), dtype=bool)
    for cls in (0, 1):
        mask[_chosen_rows(labels, cls, int(test_counts[i, cls]), rng)] = True
    return df[mask if chosen else ~mask]


def _keep_majority_sample(df: pd.DataFrame, target, majority, kept, seeds, partition_info=None) -> pd.DataFrame:
    i = partition_info["number"]
    rng = np.random.default_rng(seeds[i])
    labels = df[target].to_numpy()
    mask = labels != majority
    mask[_chosen_rows(labels, majority, int(kept[i]), rng)] = True
    return df[mask]
