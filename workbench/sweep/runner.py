"""Running a sweep: one cluster per group of cells, scaled to each worker count, a watchdog on
every attempt, and every cell recorded in the sweep store the moment it ends.

For every cluster (a value of the ``cluster.*`` axes, if any) one cluster is started; for every
worker count it is scaled to exactly that many workers and the sweep waits for them, so the worker
set never changes under XGBoost; then the cells of that worker count run one after another, each
through :func:`workbench.pipeline.run_pipeline`, and each is recorded (``sweep_cells``, one row per
cell, never two). Running the same sweep again runs only the cells not yet recorded.

Cells with the same data source, split settings and workers share one split (``reuse``, on by
default): the first of them reads and splits, its train, validation and test sets stay persisted
on the workers, and the cells after it under-sample, train and score on them. The sweep owns that
split (:class:`workbench.pipeline.shared.SharedSplit`): it is released before the cluster is
scaled, when a cell needs another split, when the workers would pass
``workbench.sweep.reuse_memory_fraction`` of their memory, after a cell whose workers were
restarted, and when the sweep ends.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from dask.utils import format_bytes, format_time

from .. import progress as progress_bars
from ..cluster import (
    JobqueueProfile,
    allocation,
    check_nodes,
    cluster_summary,
    load_profile,
    scale,
    worker_hosts,
)
from ..cluster import cluster as open_cluster
from ..errors import ClusterError, ConfigError, WorkbenchError, WorkbenchWarning
from ..stores.runs import describe_error
from ..stores.sweeps import ABANDONED, SweepStore
from .plan import (
    Cell,
    LoadedSweep,
    SweepSpec,
    cell_pipeline,
    cell_profile,
    cluster_key,
    fingerprint,
    groups,
    load_sweep,
    merge_recorded,
    plan_cells,
)

__all__ = ["SweepResult", "run_sweep", "sweep_table"]


@dataclass
class SweepResult:
    """What one run of :func:`run_sweep` did."""

    sweep_id: str
    planned: int
    skipped: int  # recorded before this run started
    succeeded: int
    failed: int
    runs_dir: Path
    seconds: float = 0.0
    cell_seconds: float = 0.0  # inside run_pipeline, summed over the attempts
    scaling_seconds: float = 0.0  # starting, scaling and waiting for workers
    abandoned: list = field(default_factory=list)

    @property
    def overhead_seconds(self) -> float:
        return max(0.0, self.seconds - self.cell_seconds)


def run_sweep(
    sweep: str | os.PathLike | dict | LoadedSweep,
    *,
    cluster: str | os.PathLike | dict | None = None,
    client=None,
    runs_dir: str | os.PathLike | None = None,
    resume: bool = False,
    retry_failed: bool = False,
    overrides: dict | None = None,
    progress: Callable[[str], None] | None = None,
    on_cell: Callable[[Cell, dict], None] | None = None,
) -> SweepResult:
    """Run the cells of a sweep not yet recorded, recording each as it ends.

    ``cluster`` overrides the profile of the sweep file (which overrides the pipeline's). With
    ``client`` the sweep uses that cluster and scales it (a cluster it cannot scale must already
    have the one worker count the sweep asks for). ``resume=True`` insists the sweep was started
    before; ``retry_failed`` runs the cells recorded as failed again. ``progress`` receives one line
    per event (the command line prints them); ``on_cell`` is called with each cell and the row
    recorded for it.
    """
    from ..pipeline import runs_directory

    started = time.perf_counter()
    loaded = sweep if isinstance(sweep, LoadedSweep) else load_sweep(sweep, overrides=overrides)
    spec = loaded.spec
    say = progress or (lambda message: None)
    directory = runs_directory(loaded.pipeline, runs_dir or spec.runs_dir)
    store = SweepStore(directory)
    cells = plan_cells(spec)
    profile = load_profile(cluster if cluster is not None else spec.cluster if spec.cluster is not None
                           else loaded.pipeline.cluster)
    if client is None and isinstance(profile, allocation.AllocationProfile):
        allocation.take_part(profile)  # outside its job: one line; its scheduler's and workers' tasks serve and end here
    profile, per_node = _per_node(spec, profile, cells, client)
    size = lambda cell: cell.size(per_node)  # noqa: E731 - the workers a cell runs on
    if client is None:
        for _, group in groups(cells, key=cluster_key):
            _check_machine(_group_profile(profile, group[0]), group, size)
    elif client.cluster is None:
        _check_fixed_size(client, cells, size)
    if resume and not store.exists(spec.name):
        raise ConfigError(f"there is no sweep {spec.name!r} to resume in {store.database}",
                          "run it without --resume to start it")
    previous = store.get(spec.name) if store.exists(spec.name) else None
    if previous is not None:
        store.check(spec.name, fingerprint(loaded))
    recorded_spec = merge_recorded(spec, previous["spec"] if previous else None)
    existed = store.begin(spec.name, spec=recorded_spec, fingerprint=fingerprint(loaded),
                          planned=len(plan_cells(SweepSpec.model_validate(recorded_spec))))
    abandoned = store.abandon_running(spec.name)
    recorded = store.recorded(spec.name)
    todo = [c for c in cells if c.key not in recorded or (retry_failed and recorded[c.key] == "failed")]
    result = SweepResult(spec.name, len(cells), len(cells) - len(todo), 0, 0, Path(directory), abandoned=abandoned)
    if existed:
        say(f"sweep {spec.name}: {sum(c.key in recorded for c in cells)} of {len(cells)} cells recorded before"
            + (f"; {len(abandoned)} attempt(s) left running by a stopped sweep marked abandoned" if abandoned else "")
            + f"; {len(todo)} to run")
    else:
        say(f"sweep {spec.name}: {len(cells)} cells ({' × '.join(f'{len(v)} {k}' for k, v in spec.axes.items())}"
            f" × {spec.trials} trials), recorded in {store.database}")
    tracker = _Progress(len(cells), result.skipped, todo, say, size)
    if not spec.reuse and todo:
        say(f"sweep {spec.name}: reuse off: every cell reads and splits its data itself")
    with progress_bars.task(f"sweep {spec.name}", total=len(todo)) as bar:
        for _, group in groups(todo, key=cluster_key):
            group_profile = _group_profile(profile, group[0])
            if isinstance(group_profile, allocation.AllocationProfile):
                group = allocation.largest_first(group, size)  # an allocation cannot grow: largest worker count first
            with _cluster_for(group, group_profile, client, result, say, size) as session, \
                    _shared_split(spec, session, say) as shared:
                rescale = _rescaler(session, group_profile, result, say)
                for workers, cells_here in groups(group, key=size):
                    _release(shared, session, say, f"the workers change to {workers}")
                    rescale(workers)
                    for cell in cells_here:
                        if workers is not None and _connected(session) != workers:
                            _release(shared, session, say, "a worker was lost")
                            rescale(workers)  # a worker (a node) was lost in an earlier cell: its replacement first
                        _run_cell(loaded, cell, session, store, directory, tracker, result, say,
                                  partial(rescale, workers), on_cell, shared)
                        bar.advance()
    result.seconds = time.perf_counter() - started
    say(f"sweep {spec.name}: {result.succeeded} succeeded, {result.failed} failed, {result.skipped} recorded before; "
        f"{format_time(result.seconds)}, of which {format_time(result.overhead_seconds)} outside the cells")
    return result


def sweep_table(sweep_id: str, runs_dir: str | os.PathLike | None = None):
    """The recorded cells of a sweep as a pandas DataFrame (see :meth:`SweepStore.table`): one row
    per cell, the axes, ``workers``, ``rows`` (training rows after RUS), ``<phase>_seconds``, the
    metrics, status, faults."""
    return SweepStore(runs_dir).table(sweep_id)


# ---------------------------------------------------------------- clusters


def _group_profile(profile, cell: Cell):
    """The profile of the cluster ``cell`` runs on: ``profile`` with the cell's cluster axes."""
    data = profile.model_dump(exclude_none=True)
    changed = cell_profile(data, cell)
    return profile if changed == data else load_profile(changed)


def _per_node(spec: SweepSpec, profile, cells: list[Cell], client):
    """The profile a ``nodes`` axis runs on (one whole-node job per node) and its workers per node.

    Workers per node come from the sweep file, else the profile, else 1. Without a nodes axis the
    profile is returned as it is, with 1.
    """
    if not any(c.nodes is not None for c in cells):
        return profile, 1
    if isinstance(profile, allocation.AllocationProfile):  # its workers retire a whole node at a time, last first
        return profile, int(profile.settings()["workers_per_node"])
    if client is not None:
        raise ClusterError("a sweep over nodes places whole-node jobs itself and cannot run on --connect's cluster",
                           "drop --connect and give the batch-system profile with --cluster")
    if not isinstance(profile, JobqueueProfile):
        raise ClusterError(f"the nodes axis needs a batch-system profile, not {profile.type}: a {profile.type} "
                           "cluster is one machine", "give --cluster clusters/slurm.yaml (or sweep --workers instead)")
    per_node = spec.workers_per_node or profile.settings().get("workers_per_node") or 1
    data = {k: v for k, v in profile.model_dump(exclude_none=True).items() if k != "processes"}
    return load_profile({**data, "workers_per_node": per_node}), per_node


def _check_machine(profile, cells: list[Cell], size) -> None:
    """A local cluster cannot have more workers × threads than the machine has cores; a batch
    system cannot give more whole nodes than its queue has."""
    counts = [size(c) for c in cells if size(c) is not None]
    if counts and isinstance(profile, JobqueueProfile):
        check_nodes(profile, max(counts))
    if profile.type != "local" or not counts:
        return
    cores = os.cpu_count() or 1
    most = max(counts)
    threads = profile.cluster_kwargs(most)["threads_per_worker"]
    if most * threads > cores:
        raise ClusterError(
            f"workers {most} × {threads} thread(s) is more than this machine's {cores} cores for a local cluster",
            "use a batch-system profile (--cluster clusters/slurm.yaml) or fewer workers (--workers 1,2)",
        )


def _check_fixed_size(client, cells: list[Cell], size) -> None:
    """A cluster started elsewhere (``--connect``) cannot be scaled from here: refuse, before
    anything runs or is recorded, a worker count it does not have."""
    counts = list(dict.fromkeys(size(c) for c in cells if size(c) is not None))
    have = len(client.scheduler_info(n_workers=-1)["workers"])
    other = [w for w in counts if w != have]
    if other:
        raise ClusterError(
            f"the cluster at {client.scheduler.address} has {have} workers and cannot be scaled from here "
            f"to {other[0]}",
            f"sweep only --workers {have} on it, or let the sweep start its own cluster (drop --connect)",
        )


@contextmanager
def _cluster_for(group: list[Cell], profile, client, result: SweepResult, say, size) -> Iterator:
    """The client a group of cells runs on: the caller's, or one on a cluster started here for the
    group (closed after it, which cancels a batch system's jobs)."""
    if client is not None:
        yield client
        return
    counts = [size(c) for c in group if size(c) is not None]
    first = counts[0] if counts else None
    if profile.type == "local" and counts:
        # One worker is one node of fixed size: the threads a worker gets at the largest count.
        threads = profile.cluster_kwargs(max(counts))["threads_per_worker"]
        profile = load_profile({**profile.model_dump(exclude_none=True), "threads_per_worker": threads})
    say(f"cluster: starting {profile.type}" + (f" with {first} worker(s)" if first else ""))
    t = time.perf_counter()
    with open_cluster(profile, workers=first) as own:
        result.scaling_seconds += time.perf_counter() - t
        try:
            yield own
        finally:
            t = time.perf_counter()  # closing it (cancelling the jobs) counts as scaling too
    result.scaling_seconds += time.perf_counter() - t


def _rescaler(client, profile, result: SweepResult, say) -> Callable[[int | None], None]:
    """``rescale(workers)``: the cluster at exactly ``workers`` workers (None: leave it as it is)."""
    wait = profile.settings().get("wait_timeout") if profile.is_jobqueue else None

    def rescale(workers: int | None) -> None:
        if workers is None:
            return
        t = time.perf_counter()
        before = len(client.scheduler_info(n_workers=-1)["workers"])
        scale(client, workers, timeout=wait)
        seconds = time.perf_counter() - t
        result.scaling_seconds += seconds
        if before != workers:
            info = cluster_summary(client)
            say(f"cluster: {info['workers']} worker(s), {info['threads']} thread(s) ({format_time(seconds)} to scale)")

    return rescale


def _connected(client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


# ---------------------------------------------------------------- the shared split


@contextmanager
def _shared_split(spec: SweepSpec, client, say) -> Iterator:
    """The split the cells on ``client`` share (None with ``reuse: false``), released at the end."""
    if not spec.reuse:
        yield None
        return
    from ..pipeline.shared import SharedSplit

    shared = SharedSplit()
    try:
        yield shared
    finally:
        _release(shared, client, say, f"sweep {spec.name} is done with this cluster")


def _release(shared, client, say, why: str) -> None:
    """Let the shared split go (waiting until the workers hold none of it), and say why."""
    if shared is None or not shared.held:
        return
    group, nbytes = shared.key, shared.nbytes
    try:
        shared.release(client)
    except Exception:  # noqa: BLE001 - a closing or restarted cluster: its data is gone anyway
        pass
    say(f"split: released the shared split of group {group} ({format_bytes(nbytes)}): {why}")


# ---------------------------------------------------------------- cells


class _Progress:
    """Cells done, running and failed, and an ETA from the cells measured so far (per worker count)."""

    def __init__(self, total: int, done: int, todo: list, say, size):
        self.total, self.done, self.failed, self.say, self.size = total, done, 0, say, size
        self.todo, self.index = todo, 0
        self.seconds: dict = {}

    def start(self, cell: Cell):
        self.say(f"cell {self.done + self.failed + 1}/{self.total} {cell.label()}: running "
                 f"({self.done} done, 1 running, {self.failed} failed)")

    def end(self, cell: Cell, ok: bool, seconds: float, summary: str):
        self.index += 1
        remaining = self.todo[self.index:]
        self.seconds.setdefault(self.size(cell), []).append(seconds)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        eta = sum(self._expect(self.size(c)) for c in remaining)
        self.say(f"cell {cell.label()}: {summary} | {self.done} done, 0 running, {self.failed} failed, "
                 f"{len(remaining)} left, ETA {format_time(eta) if remaining else '-'}")

    def _expect(self, workers) -> float:
        here = self.seconds.get(workers) or [s for v in self.seconds.values() for s in v]
        return sum(here) / len(here) if here else 0.0


def _run_cell(loaded, cell, client, store, directory, tracker, result, say, rescale, on_cell, shared=None):
    spec = loaded.spec
    pipeline = cell_pipeline(loaded, cell)
    tracker.start(cell)
    faults: list[str] = []
    attempts = 0
    row = None
    cell_started = time.perf_counter()
    while True:
        attempts += 1
        attempt = store.start_attempt(spec.name, cell.key)
        t = time.perf_counter()
        try:
            outcome = _attempt(pipeline, client, directory, spec, cell, store, attempt, say, shared)
        except BaseException:  # Ctrl-C or SIGTERM: the attempt did not finish; the next run repeats the cell
            store.end_attempt(spec.name, cell.key, attempt, "abandoned", ABANDONED)
            raise
        result.cell_seconds += time.perf_counter() - t
        faults.extend(outcome["faults"])
        if outcome["record"] is not None:
            row = _row(cell, outcome["record"], spec, "succeeded", attempts, faults, None,
                       time.perf_counter() - cell_started, hosts=outcome["hosts"])
            store.end_attempt(spec.name, cell.key, attempt, "succeeded", "; ".join(outcome["faults"]) or None, row)
            break
        error = outcome["error"]
        retry = attempts <= spec.retries and not outcome["user_error"]
        if not retry:
            row = _row(cell, None, spec, "failed", attempts, faults, error, time.perf_counter() - cell_started,
                       run_id=outcome["run_id"], hosts=outcome["hosts"])
            store.end_attempt(spec.name, cell.key, attempt, "failed", error, row)
            break
        store.end_attempt(spec.name, cell.key, attempt, "failed", error)
        say(f"cell {cell.label()}: attempt {attempts} failed ({error}); trying again")
        _release(shared, client, say, "an attempt failed")
        rescale()
    if outcome["record"] is None or outcome["restarted"]:
        _release(shared, client, say, "the cell failed or its workers were restarted")
        rescale()  # back to the sweep's size before the next cell
    ok = row["status"] == "succeeded"
    if ok:
        result.succeeded += 1
        kept = ", ".join(_shown(name, row["metrics"]) for name in spec.metrics if name in row["metrics"])
        reuse = outcome["record"].data.get("split_reuse")
        row["split_reuse"] = reuse  # for on_cell; the run record keeps it (data.split_reuse)
        summary = (f"{row['seconds']:.1f}s (train {row['timings'].get('train', float('nan')):.1f}s), "
                   f"{row['rows']:,} rows" + (f", {kept}" if kept else "")
                   + (f"; {_reuse_phrase(reuse)}" if reuse and shared is not None else "")
                   + (f", faults: {'; '.join(faults)}" if faults else ""))
    else:
        result.failed += 1
        summary = f"failed after {attempts} attempt(s): {row['error']}"
    tracker.end(cell, ok, row["seconds"], summary)
    if on_cell is not None:
        on_cell(cell, row)


_LABELS = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC"}
REUSE_OFF = "reuse off (reuse: false or --no-reuse)"


def _reuse_phrase(reuse: dict) -> str:
    """What a cell did with the shared split, for its progress line."""
    if reuse["role"] == "reused":
        return f"split reused (group {reuse['group']})"
    if reuse["role"] == "built":
        return (f"split read once for group {reuse['group']} "
                f"({reuse['read_seconds'] + reuse['split_seconds']:.1f}s, {format_bytes(reuse['bytes'])}, kept)")
    return f"cold path ({reuse['note']})" if reuse.get("note") else "cold path"


def _shown(name: str, metrics: dict) -> str:
    """``ROC AUC 0.8882 [0.8527, 0.9245]``: a kept metric with its interval, if it has one."""
    low, high = metrics.get(f"{name}_low"), metrics.get(f"{name}_high")
    interval = f" [{_number(low)}, {_number(high)}]" if low is not None and high is not None else ""
    return f"{_LABELS.get(name, name)} {_number(metrics[name])}{interval}"


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def _attempt(pipeline, client, directory, spec, cell, store, attempt, say, shared=None) -> dict:
    """One attempt at a cell in a thread, watched: past the timeout its work is cancelled and the
    workers restarted, so a hung or lost worker never hangs the sweep."""
    from ..pipeline import run_pipeline

    box: dict[str, Any] = {"caught": []}
    hosts = worker_hosts(client)  # address -> the node's hostname, to name the node a lost worker was on
    before = set(client.scheduler_info(n_workers=-1)["workers"])
    ran_on = sorted(set(hosts.values()))

    def on_run(run):
        box["run"] = run
        store.attach_run(spec.name, cell.key, attempt, run.id)
        run.log_data(sweep={"id": spec.name, "cell": cell.key, "attempt": attempt})
        if shared is None:  # reuse: false (with it, the pipeline records what the cell did with the split)
            run.log_data(split_reused=False, split_group=None, split_reuse={"role": "cold", "group": None, "note": REUSE_OFF})

    def target():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", WorkbenchWarning)
                box["caught"] = caught
                box["result"] = run_pipeline(pipeline, client=client, runs_dir=directory, on_run=on_run,
                                             shared=shared)
        except BaseException as exc:  # noqa: BLE001 - reported as the cell's fault
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"sweep-cell-{cell.key}", daemon=True)
    thread.start()
    try:
        thread.join(spec.timeout_seconds)
    except BaseException:
        if "run" in box:
            box["run"].fail("interrupted: the sweep was stopped (Ctrl-C or SIGTERM) during this cell")
        raise
    faults: list[str] = []
    restarted = False
    if thread.is_alive():
        fault = f"timed out after {spec.timeout_seconds:g}s (watchdog): its work was cancelled and the workers restarted"
        if "run" in box:
            box["run"].fail(fault)
        restarted = True
        _cancel(client)
        thread.join(60)
        if thread.is_alive():
            fault += "; the attempt did not stop and was abandoned"
        faults.append(fault)
        say(f"cell {cell.label()}: {fault}")
        return {"record": None, "error": fault, "user_error": False, "faults": faults, "restarted": True,
                "run_id": box["run"].id if "run" in box else None, "hosts": ran_on}
    for w in box["caught"]:
        # Faults are what went wrong with the cluster (a lost worker, training started over), not
        # the reader's notes about the data, which every cell would repeat.
        if issubclass(w.category, WorkbenchWarning) and "worker" in str(w.message):
            faults.append(" ".join(str(w.message).split()))
    after = set(client.scheduler_info(n_workers=-1)["workers"])
    if after != before:
        lost, new = before - after, len(after - before)
        nodes = sorted({hosts[a] for a in lost if a in hosts})
        faults.append(f"{len(lost)} worker(s) lost during the cell"
                      + (f" (node{'s' if len(nodes) > 1 else ''} {', '.join(nodes)})" if nodes else "")
                      + (f", {new} replacement(s) joined" if new else ""))
    if "error" in box:
        exc = box["error"]
        return {"record": None, "error": describe_error(exc), "user_error": isinstance(exc, WorkbenchError),
                "faults": faults, "restarted": restarted, "run_id": box["run"].id if "run" in box else None,
                "hosts": ran_on}
    record = box["result"].record
    attempts = record.data.get("training_attempts", 1)
    if attempts and attempts > 1 and not any("lost" in f for f in faults):
        faults.append(f"training started over {attempts - 1} time(s) after losing a worker")
    return {"record": record, "error": None, "user_error": False, "faults": faults, "restarted": restarted,
            "run_id": record.id, "hosts": record.cluster.get("hosts") or ran_on}


def _cancel(client) -> None:
    """Cancel everything running on the cluster: restart the workers (their tasks and data go)."""
    try:
        client.restart(timeout=120, wait_for_workers=False)
    except Exception:  # noqa: BLE001 - the next rescale waits for the workers and reports
        pass


def _row(cell: Cell, record, spec: SweepSpec, status, attempts, faults, error, seconds, run_id=None,
         hosts=()) -> dict:
    row = {"axes": cell.axes, "trial": cell.trial, "seed": cell.seed, "status": status, "attempts": attempts,
           "faults": list(faults), "error": error, "seconds": float(seconds), "run_id": run_id, "hosts": list(hosts),
           "workers": None, "threads": None, "rows": None, "timings": {}, "metrics": {}, "versions": {}}
    if record is not None:
        sampled = record.data.get("sampled") or {}
        row.update(run_id=record.id, workers=record.cluster.get("workers"), threads=record.cluster.get("threads"),
                   rows=sampled.get("rows"), timings=dict(record.timings), versions=dict(record.versions),
                   metrics={**{m: record.metrics.get(m) for m in spec.metrics}, **_intervals(record.metrics, spec.metrics)})
    return row


def _intervals(metrics: dict, names) -> dict:
    """``<metric>_low`` and ``<metric>_high`` of the metrics that have an interval (ROC AUC, PR AUC)."""
    out = {}
    for name in names:
        interval = metrics.get(f"{name}_ci")
        if isinstance(interval, list) and len(interval) == 2:
            out[f"{name}_low"], out[f"{name}_high"] = interval
    return out
