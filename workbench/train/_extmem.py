"""XGBoost's external memory on every worker: a training set larger than the workers' memory.

``xgboost.dask`` holds its matrices in memory. XGBoost's own route past memory is one process per
worker, each building an ``ExtMemQuantileDMatrix`` from an iterator, joined through
``xgboost.collective`` (XGBoost's demo ``distributed_extmem_basic.py``). Here that process is a Dask
worker: one task pinned to each worker streams its block of partitions into the matrix, one
partition at a time, straight from the export or the Zarr cache through the split and RUS, so the
whole set is never in memory. The histogram index lives in cache pages under the worker's
``local_directory``, read back through mmap, and is removed when the task ends.

Before that, each worker sketches a group of the features over every row (:mod:`._cuts`), and every
rank builds its matrix on the joined cuts: the cuts of ``xgboost.train`` in one process, whatever the
number of workers, where XGBoost's own distributed sketch would give other cuts on other worker
counts. Block k of the partitions goes to rank k, and the tracker ranks the tasks by k, so the same
seeds give the same model on any layout of the same number of workers.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import os
import shutil
import socket
import time
import uuid

import cloudpickle
import dask
import numpy as np
import xgboost as xgb
from dask.utils import format_bytes, parse_timedelta
from distributed import futures_of, get_client, get_worker, wait
from xgboost.collective import CommunicatorContext
from xgboost.collective import Config as CollConfig

from ..data.dataset import Dataset
from ..errors import WorkbenchError
from ._cuts import column_groups, cuts_matrix, join_cuts, same_cuts
from ._tracker import start_tracker_in_child

__all__ = ["train_external", "rank_order", "WorkerLost", "cache_bytes"]

CACHE_PREFIX = "xgboost-extmem-"


class WorkerLost(RuntimeError):
    """A worker holding a rank left during external-memory training."""


def rank_order(client) -> list[str]:
    """The workers' addresses in XGBoost's rank order (xgboost.dask orders them by name, then address)."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return sorted(info, key=lambda address: f"[xgboost.dask-{info[address].get('name')}]:{address}")


def cache_bytes(rows: int, n_features: int, max_bin: int, pages: int) -> int:
    """Disk taken by the cache pages of ``rows`` rows in ``pages`` pages, with 15 % to spare.

    Measured with XGBoost 3.2: a 2-byte bin index per value up to 256 bins (4 bytes above), about
    16 bytes per row, and the cut values with each page (28 features x 256 bins: 68 bytes per row).
    XGBoost aborts the whole process when a page cannot be written, so this is checked first.
    """
    index = 2 if max_bin <= 256 else 4
    return int((rows * (n_features * index + 16) + pages * n_features * max_bin * 12) * 1.15)


def train_external(client, train: Dataset, valid: Dataset | None, params: dict, num_boost_round: int,
                   early_stopping_rounds: int | None, eval_train: bool) -> tuple[dict, float]:
    """Train on every worker from external memory; returns rank 0's output (``booster``,
    ``history``, ``train_seconds``) and the seconds spent building the matrices."""
    started = time.perf_counter()
    workers = rank_order(client)
    n = min(len(workers), train.npartitions, valid.npartitions if valid is not None else train.npartitions)
    workers = workers[:n]
    max_bin = int(params.get("max_bin", 256))
    features = list(train.features)
    groups = column_groups(len(features), n)
    train_ranges = _block_ranges(train.npartitions, n)
    valid_ranges = _block_ranges(valid.npartitions, n) if valid is not None else [None] * n
    needs = [max(_disk_need(train, range(train.npartitions), max_bin, len(group)),
                 _disk_need(train, block, max_bin) + (_disk_need(valid, vblock, max_bin) if valid is not None else 0))
             for block, vblock, group in zip(train_ranges, valid_ranges, groups + [[]] * (n - len(groups)))]
    check_cache_space(client, dict(zip(workers, needs)))  # before any partition moves
    timeout = parse_timedelta(dask.config.get("workbench.train.collective_timeout", "120s"))
    run = uuid.uuid4().hex[:12]
    try:
        cuts = _sketch(client, train, workers, groups, max_bin, run, timeout)
        train_blocks = _blocks(client, train, workers)
        valid_blocks = _blocks(client, valid, workers) if valid is not None else [None] * n
        comm = _collective_args(client, n) if n > 1 else None
        futures = [
            client.submit(
                _train_rank, rank, train_blocks[rank], valid_blocks[rank], features, train.target, params,
                num_boost_round, early_stopping_rounds, eval_train, comm, run, cuts,
                workers=[address], allow_other_workers=False, pure=False, key=f"xgboost-external-{run}-{rank}",
            )
            for rank, address in enumerate(workers)
        ]
        try:
            _watch(client, futures, workers, timeout)
            outputs = [future.result() for future in futures]
        finally:
            client.cancel(futures)
    except WorkerLost:
        # A worker that could not write a page is aborted by XGBoost: say so rather than retry.
        check_cache_space(client, dict(zip(rank_order(client), needs)))
        raise
    output = outputs[0]
    return output, output["dmatrix_seconds"] + (time.perf_counter() - started - output["total_seconds"])


def _sketch(client, train: Dataset, workers: list[str], groups: list[list[int]], max_bin: int, run: str,
            timeout: float):
    """The quantile cuts of every feature over every training row, a group of features per worker."""
    with _whole(client, train, f"workbench-sketch-{run}") as block:
        futures = [
            client.submit(_sketch_group, block, list(train.features), group, train.target, max_bin, run,
                          workers=[address], allow_other_workers=False, pure=False, key=f"xgboost-sketch-{run}-{k}")
            for k, (group, address) in enumerate(zip(groups, workers))
        ]
        try:
            _watch(client, futures, workers[:len(groups)], timeout)
            return join_cuts([future.result() for future in futures])
        finally:
            client.cancel(futures)


def _block_ranges(npartitions: int, n: int) -> list[range]:
    return [range(k * npartitions // n, (k + 1) * npartitions // n) for k in range(n)]


def _blocks(client, data: Dataset, workers: list[str]) -> list:
    """What each rank is sent to stream its partitions: the pickled task graph of every partition
    and the indices of its own (each is read on the worker), or, for a frame already held in the
    workers' memory, its partitions computed on its worker."""
    frame = data.frame[[*data.features, data.target]]
    ranges = _block_ranges(frame.npartitions, len(workers))
    if futures_of(frame):
        parts = frame.to_delayed()
        return [("held", client.compute([parts[i] for i in r], workers=[address], allow_other_workers=True))
                for r, address in zip(ranges, workers)]
    graph = cloudpickle.dumps(frame.to_delayed(optimize_graph=True))
    return [("graph", graph, list(r)) for r in ranges]


@contextlib.contextmanager
def _whole(client, data: Dataset, name: str):
    """Every partition, to be streamed one at a time by one task: the pickled task graph, or, for a
    frame held in the workers' memory, its partitions published as dataset ``name`` (a task fetches
    them one by one from where they are)."""
    frame = data.frame[[*data.features, data.target]]
    if not futures_of(frame):
        yield ("graph", cloudpickle.dumps(frame.to_delayed(optimize_graph=True)), list(range(frame.npartitions)))
        return
    client.publish_dataset(**{name: client.compute(frame.to_delayed())})
    try:
        yield ("dataset", name)
    finally:
        client.unpublish_dataset(name)


def _disk_need(data: Dataset, block: range, max_bin: int, n_features: int | None = None) -> int:
    if data.class_counts is None or n_features == 0:
        return 0
    rows = int(data.class_counts[list(block)].sum())
    return cache_bytes(rows, len(data.features) if n_features is None else n_features, max_bin, len(block))


def check_cache_space(client, needs: dict[str, int]) -> None:
    """Raise a one-line :class:`WorkbenchError` if a disk holding workers' local directories has
    less free space than the cache pages of those workers need together."""
    places = client.run(_local_disk, workers=list(needs))
    disks: dict[tuple, list[str]] = {}
    for address, (host, device, _, _) in places.items():
        disks.setdefault((host, device), []).append(address)
    for addresses in disks.values():
        need = sum(needs[address] for address in addresses)
        host, _, directory, free = places[addresses[0]]
        if need > free:
            raise WorkbenchError(
                f"external-memory training needs about {format_bytes(need)} of cache pages in {directory} on "
                f"{host}, which has {format_bytes(free)} free",
                "free space there, point the cluster profile's local_directory at a larger disk, or use more workers",
            )


def _local_disk(dask_worker) -> tuple[str, int, str, int]:
    directory = dask_worker.local_directory
    return (socket.gethostname(), os.stat(directory).st_dev, directory, shutil.disk_usage(directory).free)


def _collective_args(client, n: int) -> dict:
    """Start the tracker (in a child process of the scheduler's, as for in-memory training)."""
    from distributed.comm import get_address_host

    host = get_address_host(client.scheduler.address).strip("/:")
    args = client.run_on_scheduler(start_tracker_in_child, n, host, None, None)
    timeout = int(parse_timedelta(dask.config.get("workbench.train.collective_timeout", "120s")))
    return CollConfig(timeout=timeout).get_comm_config(args)


def _watch(client, futures, workers: list[str], timeout: float) -> None:
    """Wait for every rank; fail fast when one fails or its worker leaves (its task would wait for
    that worker forever, and its peers in the allreduce until the collective timeout)."""
    pending = list(futures)
    while pending:
        with contextlib.suppress(TimeoutError):
            wait(pending, timeout=1, return_when="FIRST_COMPLETED")
        for future in pending:
            if future.status == "error":
                future.result()
        pending = [future for future in pending if future.status != "finished"]
        if pending:
            alive = set(client.scheduler_info(n_workers=-1)["workers"])
            lost = [address for address in workers if address not in alive]
            if lost:
                raise WorkerLost(f"worker {lost[0]} died during external-memory training")


# ---------------------------------------------------------------- on the worker


class _StreamedPartitions(xgb.DataIter):
    """One block of partitions, each computed (read, split, under-sampled) when XGBoost asks for
    it and released after: XGBoost passes over the data several times while building the matrix.

    Consecutive partitions are gathered into float32 batches of about :attr:`batch_bytes`, each of
    which becomes one cache page: XGBoost builds a page in memory before writing it and maps a whole
    page back while training, and it keeps per-page state while training. Measured in one process on
    20 M rows × 30 features of a BigQuery-style export read as 100,000-row partitions: pages of one
    partition each peaked at 1.33 GB in training (0.52 GB while building); 128 MiB batches at
    1.27 GB (0.87 GB while building, 17 % faster to build). On 2 M rows, 32/64/128 MiB batches
    peaked at 0.49/0.59/0.79 GB while building and 0.44/0.48/0.55 GB in training. A partition larger
    than a batch is passed alone.
    """

    batch_bytes = 32 * 2**20

    def __init__(self, block, features: list[str], target: str, cache_prefix: str, columns: list[str] | None = None):
        kind, *rest = block
        if kind == "graph":
            graph, self.indices = rest
            self.parts = cloudpickle.loads(graph)
        elif kind == "dataset":  # partitions held by the workers, fetched one at a time
            self.parts = get_client().get_dataset(rest[0])
            self.indices = list(range(len(self.parts)))
        else:
            self.parts, self.indices = rest[0], list(range(len(rest[0])))
        self.kind = kind
        self.features, self.target, self.i = features, target, 0
        self.columns = list(columns) if columns is not None else list(features)
        self.pending = None  # a partition read for the batch it did not fit in, first of the next
        super().__init__(cache_prefix=cache_prefix, release_data=True, on_host=False)

    def _read(self):
        if self.i == len(self.indices):
            return None
        part = self.parts[self.indices[self.i]]
        self.i += 1
        if self.kind == "graph":
            (part,) = dask.compute(part, scheduler="sync")
        elif self.kind == "dataset":
            part = part.result()
        return part

    def next(self, input_data) -> bool:
        width = len(self.columns)
        capacity = max(1, self.batch_bytes // (4 * width))
        X = y = None
        rows = 0
        while True:
            part, self.pending = (self.pending if self.pending is not None else self._read()), None
            if part is None:
                break
            n = len(part)
            if X is None:
                # Fortran order: each column is written contiguously (a C-order row stride per value
                # was 5-9x slower), and XGBoost reads the batch through its strides.
                X = np.empty((width, max(capacity, n)), dtype="float32").T
                y = np.empty(len(X), dtype="float32")
            elif rows + n > len(X):
                self.pending = part
                break
            for j, name in enumerate(self.columns):
                X[rows:rows + n, j] = part[name].to_numpy(dtype="float32", na_value=np.nan)
            y[rows:rows + n] = part[self.target].to_numpy(dtype="float32")
            rows += n
            del part
        if not rows:
            return False
        _release_memory(trim=False)
        input_data(data=X[:rows], label=y[:rows], feature_names=self.columns)
        return True

    def reset(self) -> None:
        self.i, self.pending = 0, None


def _release_memory(trim: bool = True) -> None:
    """Hand freed memory back to the system: Arrow's pool keeps what the reader freed, and glibc
    keeps freed heap pages; both count in the worker's RSS, which Dask's memory monitor watches."""
    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    if trim:
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _sketch_group(block, features, group, target, max_bin, run):
    """The cuts of the features ``group`` (indices into ``features``) over every partition of ``block``."""
    worker = get_worker()
    prefix = os.path.join(worker.local_directory, f"{CACHE_PREFIX}{run}-sketch-{group[0]}")
    columns = [features[j] for j in group]
    try:
        matrix = xgb.ExtMemQuantileDMatrix(_StreamedPartitions(block, features, target, prefix, columns=columns),
                                           max_bin=max_bin, nthread=worker.state.nthreads)
        cuts = matrix.get_quantile_cut()
        del matrix
    finally:
        _remove_pages(prefix)
    _release_memory()
    return cuts


def _train_rank(rank, train_block, valid_block, features, target, params, num_boost_round, early_stopping_rounds,
                eval_train, comm, run, cuts):
    worker = get_worker()
    prefix = os.path.join(worker.local_directory, f"{CACHE_PREFIX}{run}-{rank}")
    nthread = worker.state.nthreads
    max_bin = int(params.get("max_bin", 256))
    started = time.perf_counter()
    context = CommunicatorContext(**comm, DMLC_TASK_ID=f"[workbench-external-{rank:05d}]") if comm else \
        contextlib.nullcontext()
    matrices: list[xgb.DMatrix] = []
    try:
        with context:
            booster, history, dmatrix_seconds, train_seconds = _build_and_train(
                matrices, train_block, valid_block, features, target, params, nthread, max_bin, num_boost_round,
                early_stopping_rounds, eval_train, prefix, started, cuts,
            )
    finally:
        matrices.clear()  # their destructors unmap and close the pages
        _remove_pages(prefix)
    return {"booster": booster if rank == 0 else None, "history": history, "train_seconds": train_seconds,
            "dmatrix_seconds": dmatrix_seconds, "total_seconds": time.perf_counter() - started,
            "matrix": "ExtMemQuantileDMatrix"}


def _build_and_train(matrices, train_block, valid_block, features, target, params, nthread, max_bin,
                     num_boost_round, early_stopping_rounds, eval_train, prefix, started, cuts):
    dtrain = xgb.ExtMemQuantileDMatrix(
        _StreamedPartitions(train_block, features, target, prefix + "-train"), max_bin=max_bin, nthread=nthread,
        ref=cuts_matrix(cuts, max_bin, features),
    )
    matrices.append(dtrain)
    if not same_cuts(dtrain.get_quantile_cut(), cuts):
        raise RuntimeError("the training matrix did not take the sketched cuts")
    evals = [(dtrain, "train")] if eval_train else []
    if valid_block is not None:
        dvalid = xgb.ExtMemQuantileDMatrix(
            _StreamedPartitions(valid_block, features, target, prefix + "-valid"), ref=dtrain, max_bin=max_bin,
            nthread=nthread,
        )
        matrices.append(dvalid)
        evals.append((dvalid, "valid"))
    _release_memory()  # what reading the partitions left behind, before training's own peak
    dmatrix_seconds = time.perf_counter() - started
    trained = time.perf_counter()
    history: dict = {}
    booster = xgb.train(
        {**params, "nthread": nthread}, dtrain, num_boost_round, evals=evals, evals_result=history,
        early_stopping_rounds=early_stopping_rounds, verbose_eval=False,
    )
    return booster, history, dmatrix_seconds, time.perf_counter() - trained


def _remove_pages(prefix: str) -> None:
    gc.collect()
    for path in glob.glob(prefix + "*"):
        with contextlib.suppress(OSError):
            os.remove(path)
