"""Sweeps: one pipeline over a grid of cells (workers × RUS ratio × trials, or any pipeline key),
resumable, fault-recording, with a watchdog on every cell.

A sweep file names (or embeds) a pipeline file and gives the axes::

    name: rus-sweep
    pipeline: quickstart.yaml          # relative to the sweep file, or a mapping embedded here
    axes:
      workers: [1, 2]                  # the cluster is scaled to exactly this many workers
      sampling.ratio: ["1:1", "1:10"]  # any dotted key of the pipeline file
    trials: 3                          # cells per axis combination, each with its own seed
    seeds: 0                           # trial t gets seed 0 + t (or a list, one seed per trial)
    timeout: 10m                       # the watchdog: an attempt that runs longer is cancelled

For every cluster (a value of the ``cluster.*`` axes, if any) one cluster is started; for every
worker count it is scaled to exactly that many workers and the sweep waits for them, so the worker
set never changes under XGBoost; then the cells of that worker count run one after another, each
through :func:`workbench.pipeline.run_pipeline`, and each is recorded in the run store the moment
it ends (``sweep_cells``, one row per cell, never two). Running the same sweep again runs only the
cells not yet recorded.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from ..config import PipelineSpec, _explain, StrictModel, load_yaml, validate
from ..errors import ClusterError, ConfigError, WorkbenchError, WorkbenchWarning
from ..stores.sweeps import SweepStore

__all__ = ["SweepSpec", "Cell", "SweepResult", "load_sweep", "plan_cells", "run_sweep", "sweep_table",
           "WORKERS_AXIS"]

WORKERS_AXIS = "workers"
CLUSTER_PREFIX = "cluster."
METRICS = ("roc_auc", "pr_auc", "precision", "recall", "f1", "accuracy", "logloss", "brier")


# ---------------------------------------------------------------- the sweep file


class SweepSpec(StrictModel):
    """A sweep file: a pipeline, the axes to vary, trials, seeds, the baseline cell and the watchdog."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
    pipeline: str | dict[str, Any]
    cluster: str | dict[str, Any] | None = None
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    design: Literal["grid", "one-at-a-time"] = "grid"
    trials: Annotated[int, Field(ge=1)] = 3
    seeds: int | Annotated[list[int], Field(min_length=1)] = 0
    seed_keys: list[str] = ["sampling.seed", "model.seed"]
    baseline: dict[str, Any] = {}
    timeout: str | Annotated[float, Field(gt=0)] = "30m"
    retries: Annotated[int, Field(ge=0)] = 1
    metrics: list[str] = ["roc_auc", "pr_auc"]
    runs_dir: str | None = None

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes):
        for key, values in axes.items():
            if not key or key.startswith(".") or key.endswith(".") or ".." in key:
                raise ValueError(f"axis {key!r} is not a dotted key of the pipeline file (e.g. sampling.ratio)")
            normal = [_norm(v) for v in values]
            if len(set(normal)) != len(normal):
                raise ValueError(f"axis {key!r} lists a value twice")
            if key == WORKERS_AXIS and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ValueError("workers must be whole numbers of at least 1, e.g. [1, 2, 4, 8, 16]")
        return axes

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value):
        from dask.utils import parse_timedelta

        try:
            if parse_timedelta(value) <= 0:
                raise ValueError
        except (ValueError, TypeError, KeyError):
            raise ValueError(f"timeout {value!r} is not a positive duration (e.g. 600, '10m', '1h')") from None
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, values):
        unknown = [m for m in values if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
        return values

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds, info):
        trials = info.data.get("trials")
        if isinstance(seeds, list) and trials is not None and len(seeds) != trials:
            raise ValueError(f"seeds lists {len(seeds)} seeds for {trials} trials; give one per trial or one number")
        return seeds

    @field_validator("baseline")
    @classmethod
    def _baseline(cls, baseline, info):
        axes = info.data.get("axes")
        if axes is None:
            return baseline
        for key, value in baseline.items():
            if key not in axes:
                raise ValueError(f"baseline names {key!r}, which is not an axis ({', '.join(axes) or 'none'})")
            if _norm(value) not in {_norm(v) for v in axes[key]}:
                raise ValueError(f"baseline {key}: {value!r} is not one of the axis values {axes[key]}")
        return baseline

    @property
    def timeout_seconds(self) -> float:
        from dask.utils import parse_timedelta

        return float(parse_timedelta(self.timeout))

    def seed_of(self, trial: int) -> int:
        return self.seeds[trial] if isinstance(self.seeds, list) else self.seeds + trial

    def baseline_cell(self) -> dict[str, Any]:
        """Axis -> value of the baseline cell (the first value of every axis the file does not name)."""
        return {key: self.baseline.get(key, values[0]) for key, values in self.axes.items()}


@dataclass(frozen=True)
class Cell:
    """One cell of a sweep: a value on every axis and a trial, with the seed it runs with."""

    axes: dict
    trial: int
    seed: int

    @property
    def key(self) -> str:
        return ";".join([*(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in self.axes.items()), f"trial={self.trial}"])

    @property
    def workers(self) -> int | None:
        return self.axes.get(WORKERS_AXIS)

    def label(self) -> str:
        return " ".join([*(f"{k.rsplit('.', 1)[-1]}={_show(v)}" for k, v in self.axes.items()), f"trial={self.trial}"])


def _norm(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class LoadedSweep:
    spec: SweepSpec
    pipeline: PipelineSpec
    source: str
    lines: dict = field(default_factory=dict)


def load_sweep(path: str | os.PathLike | dict, *, overrides: dict | None = None) -> LoadedSweep:
    """Read and check a sweep file: the spec, its pipeline, and every axis value against the pipeline.

    ``overrides`` replaces top-level keys (``axes.<key>`` for an axis), as the command-line flags do.
    """
    if isinstance(path, dict):
        data, lines, source, base = copy.deepcopy(path), {}, "sweep", Path.cwd()
    else:
        data, lines = load_yaml(path, "sweep file")
        source, base = str(path), Path(path).parent
    if isinstance(data, dict):
        for key, value in (overrides or {}).items():
            if key.startswith("axes."):
                axis = key[5:]
                data.setdefault("axes", {})[axis] = value
                baseline = data.get("baseline")
                if isinstance(baseline, dict) and axis in baseline and _norm(baseline[axis]) not in map(_norm, value):
                    # the flags replaced the axis: its baseline falls back to the first value given
                    data["baseline"] = {k: v for k, v in baseline.items() if k != axis}
            else:
                data[key] = value
    try:
        spec = validate(SweepSpec, data, lines, source)
    except ConfigError as exc:
        raise ConfigError(exc.problem, (exc.fix or "").replace("docs/pipeline.md", "docs/sweeps.md") or None) from None
    if isinstance(spec.pipeline, dict):
        pipeline = validate(PipelineSpec, spec.pipeline, {k[1:]: v for k, v in lines.items() if k[:1] == ("pipeline",)},
                            f"{source} (pipeline)")
    else:
        candidate = Path(spec.pipeline)
        if not candidate.is_absolute() and not candidate.is_file() and (base / candidate).is_file():
            candidate = base / candidate
        from ..config import load_pipeline

        pipeline = load_pipeline(candidate)
    loaded = LoadedSweep(spec, pipeline, source, lines)
    _check_axes(loaded)
    return loaded


def _check_axes(loaded: LoadedSweep) -> None:
    spec, base = loaded.spec, loaded.pipeline.model_dump(mode="json")
    for key in spec.seed_keys:
        try:
            PipelineSpec.model_validate(deep_set(base, key, 0))
        except ValidationError as exc:
            raise _axis_error(loaded, ("seed_keys",), key, exc) from None
    for key, values in spec.axes.items():
        if key == WORKERS_AXIS or key.startswith(CLUSTER_PREFIX):
            continue
        for i, value in enumerate(values):
            try:
                PipelineSpec.model_validate(deep_set(base, key, value))
            except ValidationError as exc:
                raise _axis_error(loaded, ("axes", key, i), key, exc) from None


def _axis_error(loaded: LoadedSweep, loc: tuple, key: str, exc: ValidationError) -> ConfigError:
    error = next((e for e in exc.errors() if e["type"] == "extra_forbidden"), exc.errors()[0])
    line = next((loaded.lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in loaded.lines), None)
    where = f"{loaded.source}:{line}" if line else loaded.source
    inner = ".".join(str(p) for p in error["loc"])
    what = ".".join(str(p) for p in loc if not isinstance(p, int)) + "".join(f"[{p}]" for p in loc if isinstance(p, int))
    return ConfigError(f"{where}: {what}: pipeline key {inner or key}: {_explain(error, PipelineSpec)}",
                       f"fix `{what}` (see docs/sweeps.md)")


def deep_set(mapping: dict, dotted: str, value) -> dict:
    """A deep copy of ``mapping`` with the value at ``a.b.c`` replaced (missing levels created)."""
    out = copy.deepcopy(mapping)
    current = out
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(current.get(part), dict):
            current[part] = {} if current.get(part) is None else current[part]
            if not isinstance(current[part], dict):
                raise ConfigError(f"{dotted}: {part} is not a section", f"name a key inside a section, e.g. sampling.ratio")
        current = current[part]
    current[last] = copy.deepcopy(value)
    return out


def plan_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell, in the order they run: cluster axes, then workers, then the other axes, then trials."""
    axes = dict(spec.axes)
    order = sorted(axes, key=lambda k: (not k.startswith(CLUSTER_PREFIX), k != WORKERS_AXIS))
    if spec.design == "grid":
        combos = [dict(zip(order, values)) for values in itertools.product(*(axes[k] for k in order))]
    else:
        baseline = spec.baseline_cell()
        combos, seen = [], set()
        for key in order:
            for value in axes[key]:
                combo = {k: (value if k == key else baseline[k]) for k in order}
                ident = json.dumps({k: _norm(v) for k, v in combo.items()}, sort_keys=True)
                if ident not in seen:
                    seen.add(ident)
                    combos.append(combo)
        combos.sort(key=lambda c: tuple(_position(axes, k, c[k]) for k in order))
    # present every cell's axes in the file's order
    return [Cell({k: combo[k] for k in axes}, trial, spec.seed_of(trial))
            for combo in combos for trial in range(spec.trials)]


def _position(axes, key, value) -> int:
    return [_norm(v) for v in axes[key]].index(_norm(value))


def cell_pipeline(loaded: LoadedSweep, cell: Cell) -> PipelineSpec:
    """The pipeline of one cell: the axis values and the trial's seed put into the sweep's pipeline."""
    data = loaded.pipeline.model_dump(mode="json")
    for key, value in cell.axes.items():
        if key != WORKERS_AXIS and not key.startswith(CLUSTER_PREFIX):
            data = deep_set(data, key, value)
    for key in loaded.spec.seed_keys:
        data = deep_set(data, key, cell.seed)
    data["name"] = f"{loaded.spec.name}:{loaded.pipeline.name}"
    return PipelineSpec.model_validate(data)


def fingerprint(loaded: LoadedSweep) -> str:
    """What makes two sweeps the same sweep: the pipeline, the seeds and where they go, and which
    axes there are (not their values or the trials: a re-run may add cells)."""
    spec = loaded.spec
    seeds = list(spec.seeds) if isinstance(spec.seeds, list) else spec.seeds
    basis = {"pipeline": loaded.pipeline.model_dump(mode="json", exclude={"runs_dir", "cluster"}),
             "seeds": seeds, "seed_keys": spec.seed_keys, "axes": sorted(spec.axes)}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- running


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
    before; ``retry_failed`` runs the cells recorded as failed again. ``on_cell`` is called with
    each cell and the row recorded for it.
    """
    from ..pipeline import runs_directory

    started = time.perf_counter()
    loaded = sweep if isinstance(sweep, LoadedSweep) else load_sweep(sweep, overrides=overrides)
    spec = loaded.spec
    say = progress or (lambda message: None)
    directory = runs_directory(loaded.pipeline, runs_dir or spec.runs_dir)
    store = SweepStore(directory)
    cells = plan_cells(spec)
    profile = _profile(cluster if cluster is not None else spec.cluster if spec.cluster is not None else loaded.pipeline.cluster)
    if client is None:
        for _, group in _groups(cells, key=_cluster_key):
            _check_machine(_with_cluster_axes(profile, group[0]), group)
    if resume and not store.exists(spec.name):
        raise ConfigError(f"there is no sweep {spec.name!r} to resume in {store.database}",
                          "run it without --resume to start it")
    previous = store.get(spec.name) if store.exists(spec.name) else None
    if previous is not None:
        store.check(spec.name, fingerprint(loaded))
    recorded_spec = _merged(spec, previous["spec"] if previous else None)
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
    tracker = _Progress(len(cells), result.skipped, todo, say)
    for _, group in _groups(todo, key=_cluster_key):
        group_profile = _with_cluster_axes(profile, group[0])
        with _cluster_for(group, group_profile, client, result, say) as (session_client, rescale):
            for workers, cells_here in _groups(group, key=lambda c: c.workers):
                rescale(workers)
                for cell in cells_here:
                    _run_cell(loaded, cell, session_client, store, directory, tracker, result, say, rescale, on_cell)
    result.seconds = time.perf_counter() - started
    say(f"sweep {spec.name}: {result.succeeded} succeeded, {result.failed} failed, {result.skipped} recorded before; "
        f"{result.seconds:.1f}s, of which {result.overhead_seconds:.1f}s outside the cells")
    return result


def _merged(spec: SweepSpec, previous: dict | None) -> dict:
    """The sweep as recorded: this run's spec with the axis values and trials of earlier runs kept,
    so the sweep's plan is every cell any run of it asked for."""
    current = spec.model_dump(mode="json")
    if not previous:
        return current
    axes = {}
    for key in [*previous.get("axes", {}), *current["axes"]]:
        values = list(previous.get("axes", {}).get(key, []))
        values += [v for v in current["axes"].get(key, []) if _norm(v) not in map(_norm, values)]
        axes[key] = values
    trials = max(current["trials"], previous.get("trials", 0))
    seeds = current["seeds"]
    if isinstance(seeds, list) and isinstance(previous.get("seeds"), list) and len(previous["seeds"]) > len(seeds):
        seeds = previous["seeds"]
    baseline = {**previous.get("baseline", {}), **current["baseline"]}
    merged = {**current, "axes": axes, "trials": trials, "seeds": seeds, "baseline": baseline}
    try:
        SweepSpec.model_validate(merged)
    except ValidationError:
        return current  # earlier runs' values do not combine with this one's: record this run's plan
    return merged


def _profile(profile):
    from ..cluster import load_profile

    return load_profile(profile)


def _cluster_key(cell: Cell) -> tuple:
    return tuple((k, _norm(v)) for k, v in cell.axes.items() if k.startswith(CLUSTER_PREFIX))


def _check_machine(profile, cells: list[Cell]) -> None:
    """A local cluster cannot have more workers × threads than the machine has cores."""
    counts = [c.workers for c in cells if c.workers is not None]
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


def _with_cluster_axes(profile, cell: Cell):
    keys = {k[len(CLUSTER_PREFIX):]: v for k, v in cell.axes.items() if k.startswith(CLUSTER_PREFIX)}
    if not keys:
        return profile
    from ..cluster import load_profile

    return load_profile({**profile.model_dump(exclude_none=True), **keys})


def _groups(cells, key):
    """Consecutive runs of cells with the same key (cells are planned so that equal keys are adjacent)."""
    return [(k, list(g)) for k, g in itertools.groupby(cells, key=key)]


class _cluster_for:
    """The cluster a group of cells runs on: started here (and closed after), or the caller's."""

    def __init__(self, group, profile, client, result: SweepResult, say):
        self.group, self.profile, self.client, self.result, self.say = group, profile, client, result, say
        self.running = None

    def __enter__(self):
        from distributed import Client

        from ..cluster import cluster_summary, make_cluster

        t = time.perf_counter()
        client = self.client
        if client is None:
            counts = [c.workers for c in self.group if c.workers is not None]
            first = counts[0] if counts else None
            profile = self.profile
            if profile.type == "local" and counts:
                # One worker is one node of fixed size: the threads a worker gets at the largest count.
                threads = profile.cluster_kwargs(max(counts))["threads_per_worker"]
                from ..cluster import load_profile

                profile = load_profile({**profile.model_dump(exclude_none=True), "threads_per_worker": threads})
            self.say(f"cluster: starting {profile.type}" + (f" with {first} worker(s)" if first else ""))
            self.running = make_cluster(profile, workers=first)
            client = self.own = Client(self.running)
        self.session = client
        self.result.scaling_seconds += time.perf_counter() - t
        wait = self.profile.settings().get("wait_timeout") if self.profile.is_jobqueue else None

        def rescale(workers):
            from ..cluster import scale

            if workers is None:
                return
            t = time.perf_counter()
            before = len(client.scheduler_info(n_workers=-1)["workers"])
            scale(client, workers, timeout=wait)
            seconds = time.perf_counter() - t
            self.result.scaling_seconds += seconds
            if before != workers:
                info = cluster_summary(client)
                self.say(f"cluster: {info['workers']} worker(s), {info['threads']} thread(s) ({seconds:.1f}s to scale)")

        return client, rescale

    def __exit__(self, *exc):
        if self.running is not None:
            t = time.perf_counter()
            try:
                self.own.close()
            finally:
                self.running.close()
            self.result.scaling_seconds += time.perf_counter() - t
        return False


class _Progress:
    """Cells done, running and failed, and an ETA from the cells measured so far (per worker count)."""

    def __init__(self, total: int, done: int, todo: list, say):
        self.total, self.done, self.failed, self.say = total, done, 0, say
        self.todo, self.index = todo, 0
        self.seconds: dict = {}

    def start(self, cell: Cell):
        self.say(f"cell {self.done + self.failed + 1}/{self.total} {cell.label()}: running "
                 f"({self.done} done, 1 running, {self.failed} failed)")

    def end(self, cell: Cell, ok: bool, seconds: float, summary: str):
        self.index += 1
        remaining = self.todo[self.index:]
        self.seconds.setdefault(cell.workers, []).append(seconds)
        if ok:
            self.done += 1
        else:
            self.failed += 1
        eta = sum(self._expect(c.workers) for c in remaining)
        self.say(f"cell {cell.label()}: {summary} | {self.done} done, 0 running, {self.failed} failed, "
                 f"{len(remaining)} left, ETA {_duration(eta)}")

    def _expect(self, workers) -> float:
        here = self.seconds.get(workers) or [s for v in self.seconds.values() for s in v]
        return sum(here) / len(here) if here else 0.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _run_cell(loaded, cell, client, store, directory, tracker, result, say, rescale, on_cell):
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
            outcome = _attempt(pipeline, client, directory, spec, cell, store, attempt, say)
        except BaseException:  # Ctrl-C or SIGTERM: the attempt did not finish; the next run repeats the cell
            from ..stores.sweeps import ABANDONED

            store.end_attempt(spec.name, cell.key, attempt, "abandoned", ABANDONED)
            raise
        result.cell_seconds += time.perf_counter() - t
        faults.extend(outcome["faults"])
        if outcome["record"] is not None:
            row = _row(cell, outcome["record"], spec, "succeeded", attempts, faults, None,
                       time.perf_counter() - cell_started)
            store.end_attempt(spec.name, cell.key, attempt, "succeeded", "; ".join(outcome["faults"]) or None, row)
            break
        error = outcome["error"]
        retry = attempts <= spec.retries and not outcome["user_error"]
        if not retry:
            row = _row(cell, None, spec, "failed", attempts, faults, error, time.perf_counter() - cell_started,
                       run_id=outcome["run_id"])
            store.end_attempt(spec.name, cell.key, attempt, "failed", error, row)
            break
        store.end_attempt(spec.name, cell.key, attempt, "failed", error)
        say(f"cell {cell.label()}: attempt {attempts} failed ({error}); trying again")
        rescale(cell.workers)
    if outcome["record"] is None or outcome["restarted"]:
        rescale(cell.workers)  # back to the sweep's size before the next cell
    ok = row["status"] == "succeeded"
    if ok:
        result.succeeded += 1
        m = row["metrics"]
        summary = (f"{row['seconds']:.1f}s (train {row['timings'].get('train', float('nan')):.1f}s), "
                   f"{row['rows']:,} rows, ROC AUC {m.get('roc_auc', float('nan')):.4f}, PR AUC {m.get('pr_auc', float('nan')):.4f}"
                   + (f", faults: {'; '.join(faults)}" if faults else ""))
    else:
        result.failed += 1
        summary = f"failed after {attempts} attempt(s): {row['error']}"
    tracker.end(cell, ok, row["seconds"], summary)
    if on_cell is not None:
        on_cell(cell, row)


def _attempt(pipeline, client, directory, spec, cell, store, attempt, say) -> dict:
    """One attempt at a cell in a thread, watched: past the timeout its work is cancelled and the
    workers restarted, so a hung or lost worker never hangs the sweep."""
    from ..pipeline import run_pipeline

    box: dict[str, Any] = {"caught": []}
    before = set(client.scheduler_info(n_workers=-1)["workers"])

    def on_run(run):
        box["run"] = run
        store.attach_run(spec.name, cell.key, attempt, run.id)
        run.log_data(sweep={"id": spec.name, "cell": cell.key, "attempt": attempt})

    def target():
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", WorkbenchWarning)
                box["caught"] = caught
                box["result"] = run_pipeline(pipeline, client=client, runs_dir=directory, on_run=on_run)
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
                "run_id": box["run"].id if "run" in box else None}
    for w in box["caught"]:
        # Faults are what went wrong with the cluster (a lost worker, training started over), not
        # the reader's notes about the data, which every cell would repeat.
        if issubclass(w.category, WorkbenchWarning) and "worker" in str(w.message):
            faults.append(" ".join(str(w.message).split()))
    after = set(client.scheduler_info(n_workers=-1)["workers"])
    if after != before:
        lost, new = len(before - after), len(after - before)
        faults.append(f"{lost} worker(s) lost during the cell" + (f", {new} replacement(s) joined" if new else ""))
    if "error" in box:
        exc = box["error"]
        from ..stores.runs import _describe

        return {"record": None, "error": _describe(exc), "user_error": isinstance(exc, WorkbenchError),
                "faults": faults, "restarted": restarted, "run_id": box["run"].id if "run" in box else None}
    record = box["result"].record
    attempts = record.data.get("training_attempts", 1)
    if attempts and attempts > 1 and not any("lost" in f for f in faults):
        faults.append(f"training started over {attempts - 1} time(s) after losing a worker")
    return {"record": record, "error": None, "user_error": False, "faults": faults, "restarted": restarted,
            "run_id": record.id}


def _cancel(client) -> None:
    """Cancel everything running on the cluster: restart the workers (their tasks and data go)."""
    try:
        client.restart(timeout=120, wait_for_workers=False)
    except Exception:  # noqa: BLE001 - the next rescale waits for the workers and reports
        pass


def _row(cell: Cell, record, spec: SweepSpec, status, attempts, faults, error, seconds, run_id=None) -> dict:
    row = {"axes": cell.axes, "trial": cell.trial, "seed": cell.seed, "status": status, "attempts": attempts,
           "faults": list(faults), "error": error, "seconds": float(seconds), "run_id": run_id,
           "workers": None, "threads": None, "rows": None, "timings": {}, "metrics": {}, "versions": {}}
    if record is not None:
        sampled = record.data.get("sampled") or {}
        row.update(run_id=record.id, workers=record.cluster.get("workers"), threads=record.cluster.get("threads"),
                   rows=sampled.get("rows"), timings=dict(record.timings), versions=dict(record.versions),
                   metrics={m: record.metrics.get(m) for m in spec.metrics})
    return row


# ---------------------------------------------------------------- results


def sweep_table(sweep_id: str, runs_dir: str | os.PathLike | None = None):
    """The recorded cells of a sweep as a pandas DataFrame: one row per cell, the axes, ``workers``,
    ``rows`` (training rows after RUS), ``<phase>_seconds``, the metrics, status, faults."""
    import pandas as pd

    store = SweepStore(runs_dir)
    record = store.get(sweep_id)
    rows = store.table_rows(record["id"])
    table = pd.DataFrame(rows)
    table.attrs["sweep"] = record
    return table
