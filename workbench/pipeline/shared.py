"""A split that runs share: read and split once, persisted on the workers, used by every run with
the same data source, split settings and workers (a sweep's cells: ``workbench/sweep/runner.py``).

The first run of a group reads and splits as any run does, then persists its train, validation and
test sets on the workers (one graph: each partition is read once) and keeps them here with the
time it took. The runs after it with the same key skip both phases and under-sample, train and
score on the persisted sets. The split is seeded and selects rows by partition, so the persisted
sets hold exactly the rows a fresh read and split would give: the metrics are the same.

Memory: a split is kept only while every worker, with its share of it, stays within
``workbench.sweep.reuse_memory_fraction`` of its memory limit (checked before it is built, from
an estimate, and before every reuse, from what the workers report). Otherwise it is released (or
never built) and the run takes the cold path, which says why. Whoever owns a :class:`SharedSplit`
releases it when it is done (``release``), and the sweep does so whenever its workers change.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, replace

import dask.config
from dask.utils import format_bytes

from ..data.dataset import Dataset
from ..errors import ConfigError

__all__ = ["SharedSplit", "SplitUse"]


def _frame_bytes_per_row(data: Dataset) -> int:
    """Bytes one row takes in memory (pandas): numeric columns at their width, other columns ~64."""
    return sum(int(dt.itemsize) if dt.kind in "biufcmM" else 64 for dt in data.frame._meta.dtypes) or 1


def _workers(client) -> dict[str, dict]:
    return client.scheduler_info(n_workers=-1)["workers"]


@dataclass
class SplitUse:
    """What one run did with the shared split: ``role`` is ``reused``, ``built`` (it read and split,
    and the split was kept for the runs after it) or ``cold`` (read and split for itself only,
    ``note`` says why)."""

    shared: SharedSplit
    key: str
    epoch: int
    role: str = "cold"
    note: str | None = None
    source: Dataset | None = None  # the lazy data before the split (what the run record describes)
    train: Dataset | None = None
    valid: Dataset | None = None
    test: Dataset | None = None

    @property
    def reused(self) -> bool:
        return self.role == "reused"

    @property
    def group(self) -> str:
        return self.key

    def admit(self, data: Dataset, client) -> bool:
        """Whether the split this run is about to make may be kept (False: the cold path, and why)."""
        if self.role != "cold" or self.note is not None:
            return False
        reason = self.shared._room_for(data, client)
        if reason:
            self.note = f"not kept: {reason}"
            return False
        return True

    def keep(self, data: Dataset, train: Dataset, valid: Dataset | None, test: Dataset,
             client) -> tuple[Dataset, Dataset | None, Dataset]:
        """Persist the three sets on the workers (waiting until they are there) and keep them for
        the runs after this one; returns the persisted sets."""
        from distributed import wait

        frames = [train.frame, test.frame] + ([valid.frame] if valid is not None else [])
        persisted = client.persist(frames)
        wait(persisted)
        train, test = replace(train, frame=persisted[0]), replace(test, frame=persisted[1])
        valid = replace(valid, frame=persisted[2]) if valid is not None else None
        if self.shared._store(self, data, train, valid, test, client):
            self.role = "built"
        else:
            self.note = "not kept: the sweep moved on while this run was splitting"
        return train, valid, test

    def timed(self, read_seconds: float, split_seconds: float) -> None:
        """The time this run took to read and split (and persist) for the group: recorded once per group."""
        self.shared._timed(self, read_seconds, split_seconds)

    def record(self) -> dict:
        """What the run record keeps (``data.split_reused``, ``data.split_group``, ``data.split_reuse``)."""
        shared = self.shared
        detail = {"role": self.role, "group": self.key if self.role != "cold" else None}
        if self.role in ("built", "reused"):
            detail.update(read_seconds=shared.read_seconds, split_seconds=shared.split_seconds, bytes=shared.nbytes)
        if self.note:
            detail["note"] = self.note
        return {"split_reused": self.reused, "split_group": detail["group"], "split_reuse": detail}


class SharedSplit:
    """One persisted split at a time, for the runs whose data, split settings and workers match.

    Thread-safe: a run goes on in its own thread (a sweep's watchdog), and a run that finishes
    after its owner released the split (a timed-out cell) cannot put a split back.
    """

    def __init__(self, memory_fraction: float | None = None):
        self._fraction = memory_fraction  # None: workbench.sweep.reuse_memory_fraction, read at each check
        _ = self.memory_fraction  # a bad setting is refused here, before any run
        self.key: str | None = None
        self.source = self.train = self.valid = self.test = None
        self.read_seconds = self.split_seconds = 0.0
        self.nbytes = 0
        self.workers: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self._epoch = 0

    @property
    def memory_fraction(self) -> float:
        """The share of a worker's memory limit it may use with the split in it."""
        value = self._fraction if self._fraction is not None else dask.config.get(
            "workbench.sweep.reuse_memory_fraction", 0.5)
        try:
            fraction = float(value)
        except (TypeError, ValueError):
            fraction = float("nan")
        if not 0 < fraction <= 1:
            raise ConfigError(f"workbench.sweep.reuse_memory_fraction {value!r} is not in (0, 1]",
                              "set it to the share of a worker's memory a shared split may fill, e.g. 0.5")
        return fraction

    @staticmethod
    def key_for(spec, client) -> str:
        """The group of a run: its data source and split settings, and the workers it runs on."""
        basis = {"data": spec.data.model_dump(mode="json"), "split": spec.split.model_dump(mode="json"),
                 "workers": sorted(_workers(client))}
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def held(self) -> bool:
        return self.key is not None

    def use(self, spec, client) -> SplitUse:
        """This run's use of the shared split: the persisted sets if they are this run's (and still
        fit in the workers' memory), else a use that may build and keep them, or the cold path."""
        key = self.key_for(spec, client)
        with self._lock:
            use = SplitUse(self, key, self._epoch)
            if self.key is not None and self.key != key:
                self._drop()  # another data source, split or worker set: this run builds its own
                use.epoch = self._epoch
            if self.key == key:
                over = self._over(client)
                if over:
                    self._drop()
                    use.epoch, use.note = self._epoch, f"released the shared split: {over}"
                    return use
                use.role = "reused"
                use.source, use.train, use.valid, use.test = self.source, self.train, self.valid, self.test
        return use

    def release(self, client=None) -> bool:
        """Let the persisted split go (True if there was one); with ``client``, wait until the
        workers no longer hold it."""
        with self._lock:
            held = self.key is not None
            keys = self._drop()
        if held and client is not None and keys:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                holders = client.sync(client.scheduler.who_has, keys=keys)
                if not any(holders.values()):
                    break
                time.sleep(0.05)
        return held

    # ------------------------------------------------------------ inside

    def _drop(self) -> list:
        """Forget the split (under the lock); returns the keys its futures held."""
        from distributed import futures_of

        keys = []
        for data in (self.train, self.valid, self.test):
            if data is not None:
                futures = futures_of(data.frame)
                keys.extend(f.key for f in futures)
                for future in futures:
                    future.release()
        self.key = None
        self.source = self.train = self.valid = self.test = None
        self.read_seconds = self.split_seconds = 0.0
        self.nbytes = 0
        self.workers = ()
        self._epoch += 1
        return keys

    def _store(self, use: SplitUse, data, train, valid, test, client) -> bool:
        from distributed import futures_of

        futures = [f for d in (train, valid, test) if d is not None for f in futures_of(d.frame)]
        nbytes = int(sum(client.nbytes([f.key for f in futures], summary=True).values())) if futures else 0
        workers = tuple(sorted(_workers(client)))
        with self._lock:
            if use.epoch != self._epoch:
                return False
            self._drop()
            use.epoch = self._epoch
            self.key, self.source, self.train, self.valid, self.test = use.key, data, train, valid, test
            self.nbytes, self.workers = nbytes, workers
            return True

    def _timed(self, use: SplitUse, read_seconds: float, split_seconds: float) -> None:
        with self._lock:
            if use.role == "built" and use.epoch == self._epoch and self.key == use.key:
                self.read_seconds, self.split_seconds = read_seconds, split_seconds

    def _limit(self, info: dict) -> float:
        return self.memory_fraction * float(info.get("memory_limit") or 0)

    def _room_for(self, data: Dataset, client) -> str | None:
        """Why a split of ``data`` may not be kept (None: it may): a worker would pass the fraction."""
        workers = _workers(client)
        rows = data.info.get("rows_in_files") or 0
        need = rows * _frame_bytes_per_row(data) / max(1, len(workers))
        for address, info in sorted(workers.items()):
            limit = self._limit(info)
            if not limit:
                continue  # no memory limit: nothing to measure against
            used = float(info.get("metrics", {}).get("memory") or 0)
            if used + need > limit:
                return (f"its share of about {format_bytes(need)} would take worker {address} "
                        f"({format_bytes(used)} used) past {self.memory_fraction:.0%} of its "
                        f"{format_bytes(info['memory_limit'])} (workbench.sweep.reuse_memory_fraction)")
        return None

    def _over(self, client) -> str | None:
        """Why the kept split must go before this run (None: it may stay): a worker holding it has
        passed the fraction of its memory."""
        for address, info in sorted(_workers(client).items()):
            limit = self._limit(info)
            used = float(info.get("metrics", {}).get("memory") or 0)
            if limit and used > limit:
                return (f"worker {address} uses {format_bytes(used)}, past {self.memory_fraction:.0%} of its "
                        f"{format_bytes(info['memory_limit'])} (workbench.sweep.reuse_memory_fraction)")
        return None
