"""The :class:`Dataset` that flows between the stages: a lazy Dask DataFrame plus what is known about it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace

import dask.dataframe as dd
import numpy as np

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """Features and a 0/1 target as a Dask DataFrame whose partitions live on the workers.

    Parameters
    ----------
    frame
        Dask DataFrame holding ``features`` and ``target``; nothing is computed on the client.
    target
        Name of the int8 0/1 target column.
    features
        Names of the numeric feature columns, in model order.
    partition_keys
        One stable name per partition (shard file and row groups). Seeds for sampling are derived
        from these, so the same seed selects the same rows whatever the cluster size.
    class_counts
        ``(npartitions, 2)`` array of negatives and positives per partition when known exactly
        (after a split or an under-sampling), else ``None``.
    info
        What the reader did: source files, dropped columns and why, type conversions.
    """

    frame: dd.DataFrame
    target: str
    features: tuple[str, ...]
    partition_keys: tuple[str, ...]
    class_counts: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def X(self) -> dd.DataFrame:
        return self.frame[list(self.features)]

    @property
    def y(self) -> dd.Series:
        return self.frame[self.target]

    @property
    def npartitions(self) -> int:
        return self.frame.npartitions

    @property
    def n_rows(self) -> int | None:
        return None if self.class_counts is None else int(self.class_counts.sum())

    @property
    def n_negative(self) -> int | None:
        return None if self.class_counts is None else int(self.class_counts[:, 0].sum())

    @property
    def n_positive(self) -> int | None:
        return None if self.class_counts is None else int(self.class_counts[:, 1].sum())

    def partition_seed(self, seed: int, salt: str, index: int) -> list[int]:
        """Seed material for partition ``index``: independent of worker count and scheduling."""
        return [int(seed), zlib.crc32(salt.encode()), zlib.crc32(self.partition_keys[index].encode())]

    def persist(self, client=None) -> Dataset:
        """Load the partitions into the workers' memory and wait until they are there."""
        from distributed import get_client, wait

        client = client or get_client()
        frame = client.persist(self.frame)
        wait(frame)
        return replace(self, frame=frame)

    def with_frame(self, frame: dd.DataFrame, class_counts: np.ndarray | None, **info) -> Dataset:
        return replace(self, frame=frame, class_counts=class_counts, info={**self.info, **info})

    def __repr__(self) -> str:
        rows = "?" if self.n_rows is None else f"{self.n_rows:,}"
        return (
            f"Dataset(rows={rows}, positives={self.n_positive if self.n_positive is not None else '?'}, "
            f"features={len(self.features)}, target={self.target!r}, npartitions={self.npartitions})"
        )
