"""The sweep file and its plan: which cells a sweep has, in which order, and each cell's pipeline.

Pure: nothing here starts a cluster, runs a pipeline or touches the run store (that is
:mod:`workbench.sweep.runner`).

An axis's key says what it varies, through the registry :data:`SWEEP_AXES`: ``workers`` is the
number of workers (the cluster is scaled to it), ``nodes`` the number of whole nodes (the cluster
is scaled to ``nodes × workers_per_node`` workers, one job per node), ``cluster.<key>`` a key of the cluster profile
(each value gets a cluster of its own), and any other key a dotted key of the pipeline file.
Code outside the package can register an axis of its own.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from ..config import StrictModel, explain, load_yaml, validate
from ..errors import ConfigError
from ..pipeline import PipelineSpec, load_pipeline
from ..registry import Registry

__all__ = [
    "SweepSpec", "Cell", "LoadedSweep", "SweepAxis", "SWEEP_AXES", "WORKERS_AXIS", "NODES_AXIS", "METRICS",
    "axis_of", "load_sweep", "plan_cells", "cell_pipeline", "cell_profile", "cluster_key", "groups",
    "fingerprint", "deep_set", "merge_recorded",
]

WORKERS_AXIS = "workers"
NODES_AXIS = "nodes"
METRICS = ("roc_auc", "pr_auc", "precision", "recall", "f1", "accuracy", "logloss", "brier")


# ---------------------------------------------------------------- the axes


@dataclass(frozen=True)
class SweepAxis:
    """What an axis varies: where its value goes, how its values are checked, when it is planned.

    ``order`` puts axes with a lower number outside (cells with the same value run one after
    another: one cluster per ``cluster.*`` value, one scaling per worker count). ``prefix`` makes
    the entry's name a prefix (``cluster`` matches ``cluster.cores``). ``check(key, values)``
    raises ``ValueError`` for values the axis cannot take; ``into_pipeline(data, key, value)`` and
    ``into_profile(data, key, value)`` return the pipeline or cluster-profile mapping with the
    value put in (None: the axis does not touch it).
    """

    order: int
    prefix: bool = False
    check: Callable[[str, list], None] | None = None
    into_pipeline: Callable[[dict, str, Any], dict] | None = None
    into_profile: Callable[[dict, str, Any], dict] | None = None


def _check_workers(key: str, values: list) -> None:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{key} must be whole numbers of at least 1, e.g. [1, 2, 4, 8, 16]")


def _profile_key(data: dict, key: str, value) -> dict:
    return {**data, key.split(".", 1)[1]: copy.deepcopy(value)}


SWEEP_AXES: Registry[SweepAxis] = Registry("sweep axis", docs="docs/sweeps.md")
SWEEP_AXES.register(WORKERS_AXIS, SweepAxis(order=1, check=_check_workers))
SWEEP_AXES.register(NODES_AXIS, SweepAxis(order=1, check=_check_workers))
SWEEP_AXES.register("cluster", SweepAxis(order=0, prefix=True, into_profile=_profile_key))

PIPELINE_AXIS = SweepAxis(order=2, into_pipeline=lambda data, key, value: deep_set(data, key, value))
"""Any key no registered axis claims: a dotted key of the pipeline file."""


def axis_of(key: str) -> SweepAxis:
    """The axis entry for ``key``: a registered name, a registered prefix, else a pipeline key."""
    entry = SWEEP_AXES.get(key)
    if entry is not None and not entry.prefix:
        return entry
    for name in SWEEP_AXES:
        candidate = SWEEP_AXES[name]
        if candidate.prefix and key.startswith(name + "."):
            return candidate
    return PIPELINE_AXIS


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
    workers_per_node: Annotated[int, Field(ge=1)] | None = None
    reuse: bool = True  # cells with the same data, split and workers share one persisted split (runner.py)

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes):
        if WORKERS_AXIS in axes and NODES_AXIS in axes:
            raise ValueError("axes workers and nodes both size the cluster; keep one "
                             "(nodes with workers_per_node gives nodes × workers_per_node workers)")
        for key, values in axes.items():
            if not key or key.startswith(".") or key.endswith(".") or ".." in key:
                raise ValueError(f"axis {key!r} is not a dotted key of the pipeline file (e.g. sampling.ratio)")
            normal = [_norm(v) for v in values]
            if len(set(normal)) != len(normal):
                raise ValueError(f"axis {key!r} lists a value twice")
            check = axis_of(key).check
            if check is not None:
                check(key, values)
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

    @property
    def nodes(self) -> int | None:
        return self.axes.get(NODES_AXIS)

    def size(self, workers_per_node: int = 1) -> int | None:
        """The workers this cell runs on (None: the cluster as it is)."""
        return self.workers if self.nodes is None else self.nodes * workers_per_node

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
                other = {WORKERS_AXIS: NODES_AXIS, NODES_AXIS: WORKERS_AXIS}.get(axis)
                if other and isinstance(data["axes"], dict) and other in data["axes"]:
                    # --nodes replaces the file's workers axis and --workers its nodes axis: both size the cluster
                    del data["axes"][other]
                    if isinstance(data.get("baseline"), dict):
                        data["baseline"].pop(other, None)
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
        pipeline = load_pipeline(candidate)
    loaded = LoadedSweep(spec, pipeline, source, lines)
    _check_axes(loaded)
    return loaded


def _check_axes(loaded: LoadedSweep) -> None:
    spec, base = loaded.spec, loaded.pipeline.model_dump(mode="json")
    for key in spec.seed_keys:
        candidate = deep_set(base, key, 0)
        try:
            PipelineSpec.model_validate(candidate)
        except ValidationError as exc:
            raise _axis_error(loaded, ("seed_keys",), key, exc, candidate) from None
    for key, values in spec.axes.items():
        into_pipeline = axis_of(key).into_pipeline
        if into_pipeline is None:
            continue
        for i, value in enumerate(values):
            candidate = into_pipeline(base, key, value)
            try:
                PipelineSpec.model_validate(candidate)
            except ValidationError as exc:
                raise _axis_error(loaded, ("axes", key, i), key, exc, candidate) from None


def _axis_error(loaded: LoadedSweep, loc: tuple, key: str, exc: ValidationError, data: dict) -> ConfigError:
    error = next((e for e in exc.errors() if e["type"] == "extra_forbidden"), exc.errors()[0])
    line = next((loaded.lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in loaded.lines), None)
    where = f"{loaded.source}:{line}" if line else loaded.source
    inner = ".".join(str(p) for p in error["loc"])
    what = ".".join(str(p) for p in loc if not isinstance(p, int)) + "".join(f"[{p}]" for p in loc if isinstance(p, int))
    return ConfigError(f"{where}: {what}: pipeline key {inner or key}: {explain(error, PipelineSpec, data)}",
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
                raise ConfigError(f"{dotted}: {part} is not a section", "name a key inside a section, e.g. sampling.ratio")
        current = current[part]
    current[last] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- the plan


def plan_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell, in the order they run: cluster axes, then workers, then the other axes, then trials."""
    axes = dict(spec.axes)
    order = sorted(axes, key=lambda k: axis_of(k).order)
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
        into_pipeline = axis_of(key).into_pipeline
        if into_pipeline is not None:
            data = into_pipeline(data, key, value)
    for key in loaded.spec.seed_keys:
        data = deep_set(data, key, cell.seed)
    data["name"] = f"{loaded.spec.name}:{loaded.pipeline.name}"
    return PipelineSpec.model_validate(data)


def cell_profile(profile: dict, cell: Cell) -> dict:
    """The cluster-profile mapping of one cell: ``profile`` with the cell's cluster-axis values put in."""
    for key, value in cell.axes.items():
        into_profile = axis_of(key).into_profile
        if into_profile is not None:
            profile = into_profile(profile, key, value)
    return profile


def cluster_key(cell: Cell) -> tuple:
    """The values of the axes that shape the cluster: cells with equal keys run on one cluster."""
    return tuple((k, _norm(v)) for k, v in cell.axes.items() if axis_of(k).into_profile is not None)


def groups(cells: list[Cell], key: Callable[[Cell], Any]) -> list[tuple[Any, list[Cell]]]:
    """Consecutive runs of cells with the same key (cells are planned so that equal keys are adjacent)."""
    return [(k, list(g)) for k, g in itertools.groupby(cells, key=key)]


def fingerprint(loaded: LoadedSweep) -> str:
    """What makes two sweeps the same sweep: the pipeline, the seeds and where they go, and which
    axes there are (not their values or the trials: a re-run may add cells)."""
    spec = loaded.spec
    seeds = list(spec.seeds) if isinstance(spec.seeds, list) else spec.seeds
    basis = {"pipeline": loaded.pipeline.model_dump(mode="json", exclude={"runs_dir", "cluster"}),
             "seeds": seeds, "seed_keys": spec.seed_keys, "axes": sorted(spec.axes)}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def merge_recorded(spec: SweepSpec, previous: dict | None) -> dict:
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
