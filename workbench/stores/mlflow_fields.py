"""What a recorded run becomes in MLflow: parameters, metrics with their steps, and tags.

Pure functions of a :class:`~workbench.stores.runs.RunRecord` (and of a sweep's record): nothing
here imports MLflow or talks to a tracking server; :mod:`workbench.stores.mlflow_export` does.

- **Parameters**: the pipeline spec flattened to dotted keys (``data.path``, ``sampling.ratio``,
  ``model.params.max_depth``); lists and empty sections as JSON; values cut to MLflow's length limit.
- **Metrics**: every finite number of the record's ``metrics`` tree (step 0; a list of numbers is one
  metric whose steps are its positions, an interval ``x_ci: [low, high]`` is ``x_ci_low`` and
  ``x_ci_high``, a list of mappings is indexed in the name: ``at_k.0.precision``), the training
  ``history`` (``valid.auc`` per boosting round, ``test_per_epoch.roc_auc`` per epoch: step = round or
  epoch index) and the phase ``timings`` (``seconds.train``).
- **Tags**: the workbench run id, name, status, times and error, the versions, seeds, cluster and
  hostnames the run had (``workbench.host`` ran the pipeline, ``cluster.hosts`` ran its workers).
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from .runs import RunRecord

__all__ = [
    "RUN_ID_TAG", "SWEEP_ID_TAG", "KIND_TAG", "STATUS_OF", "Series", "metric_key", "flatten_params",
    "number_series", "run_metrics", "run_params", "run_tags", "experiment_of", "run_name", "cell_name",
    "millis", "sweep_status", "sweep_tags",
]

RUN_ID_TAG = "workbench.run_id"  # how a second export finds the MLflow run of a workbench run
SWEEP_ID_TAG = "workbench.sweep_id"  # on a sweep's parent run and on each of its cells
KIND_TAG = "workbench.kind"  # "run" or "sweep": a sweep's parent is the one of kind sweep
STATUS_OF = {"succeeded": "FINISHED", "failed": "FAILED", "running": "RUNNING"}

Series = dict[str, list[tuple[int, float]]]  # metric key -> (step, value) pairs

_NOT_IN_KEYS = re.compile(r"[^A-Za-z0-9_.\-]+")


def metric_key(*parts: Any) -> str:
    """A key MLflow accepts, from the parts of a path: ``("test (per epoch)", "roc_auc")`` ->
    ``test_per_epoch.roc_auc`` (letters, digits, ``_``, ``-`` and ``.`` only)."""
    cleaned = [_NOT_IN_KEYS.sub("_", str(part)).strip("_.") for part in parts]
    return ".".join(part for part in cleaned if part)


# ---------------------------------------------------------------- parameters


def flatten_params(tree: dict, *, value_limit: int, key_limit: int, prefix: str = "") -> dict[str, str]:
    """Dotted keys -> string values. Scalars as ``str`` (``None`` as ``None``, like MLflow's own
    ``log_param``), lists and empty mappings as JSON; a value longer than ``value_limit`` ends in ``...``."""
    out: dict[str, str] = {}
    for name, value in tree.items():
        key = metric_key(prefix, name) if prefix else metric_key(name)
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, value_limit=value_limit, key_limit=key_limit, prefix=key))
            continue
        text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, tuple)) else str(value)
        out[_cut(key, key_limit)] = _cut(text, value_limit)
    return out


def run_params(record: RunRecord, *, value_limit: int, key_limit: int) -> dict[str, str]:
    """The run's pipeline spec as parameters (without ``name``: it is the experiment and a tag)."""
    spec = {key: value for key, value in record.spec.items() if key != "name"}
    return flatten_params(spec, value_limit=value_limit, key_limit=key_limit)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


# ---------------------------------------------------------------- metrics


def number_series(tree: Any, prefix: tuple = ()) -> Series:
    """Every finite number in ``tree`` as a metric: a number is step 0, a list of numbers one metric
    whose steps are its positions, ``<name>_ci: [low, high]`` the two metrics ``<name>_ci_low`` and
    ``<name>_ci_high``; mappings and lists of anything else nest their keys or positions into the name."""
    out: Series = {}
    if _is_number(tree):
        if math.isfinite(tree):
            out[metric_key(*prefix)] = [(0, float(tree))]
    elif isinstance(tree, dict):
        for name, value in tree.items():
            _add(out, number_series(value, (*prefix, name)))
    elif isinstance(tree, (list, tuple)) and tree:
        if all(_is_number(v) for v in tree):
            if prefix and str(prefix[-1]).endswith("_ci") and len(tree) == 2:
                low, high = tree
                out.update({metric_key(*prefix[:-1], f"{prefix[-1]}_{end}"): [(0, float(v))]
                            for end, v in (("low", low), ("high", high)) if math.isfinite(v)})
            else:
                points = [(step, float(v)) for step, v in enumerate(tree) if math.isfinite(v)]
                if points:
                    out[metric_key(*prefix)] = points
        else:
            for position, value in enumerate(tree):
                _add(out, number_series(value, (*prefix, position)))
    return out


def _add(out: Series, more: Series) -> None:
    """Add the metrics of ``more`` whose keys ``out`` does not have (two names can clean to one key)."""
    for key, points in more.items():
        out.setdefault(key, points)


def run_metrics(record: RunRecord) -> Series:
    """The final metrics (step 0, curves by position), the training history by round or epoch, and
    the phase timings as ``seconds.<phase>``. A history key that a final metric already has is
    prefixed ``history.``."""
    metrics = number_series(record.metrics)
    for key, points in number_series(record.history).items():
        metrics[key if key not in metrics else metric_key("history", key)] = points
    metrics.update(number_series(record.timings, ("seconds",)))
    return metrics


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------- tags and names


def run_tags(record: RunRecord, *, value_limit: int) -> dict[str, str]:
    """The run's identity and provenance: id, name, status, times, error, host, versions, seeds, cluster."""
    tags = {
        RUN_ID_TAG: record.id,
        KIND_TAG: "run",
        "workbench.name": record.name,
        "workbench.status": record.status,
        "workbench.created_at": record.created_at,
        "workbench.path": record.path,
    }
    if record.finished_at:
        tags["workbench.finished_at"] = record.finished_at
    if record.error:
        tags["workbench.error"] = record.error
    if (record.process or {}).get("host"):
        tags["workbench.host"] = str(record.process["host"])  # ran the pipeline; its workers: cluster.hosts
    if record.data.get("model_type"):
        tags["workbench.model_type"] = str(record.data["model_type"])
    sweep = record.data.get("sweep") or {}
    if sweep.get("id"):
        tags[SWEEP_ID_TAG] = str(sweep["id"])
        tags["workbench.sweep_cell"] = str(sweep.get("cell", ""))
    tags.update({metric_key("version", name): str(value) for name, value in record.versions.items()})
    tags.update({metric_key("seed", name): str(value) for name, value in record.seeds.items()})
    for name, value in record.cluster.items():
        shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        tags[metric_key("cluster", name)] = shown
    return {key: _cut(value, value_limit) for key, value in tags.items()}


def experiment_of(record: RunRecord) -> str:
    """The pipeline's name: a sweep cell's run is named ``<sweep>:<pipeline>``, its experiment is the pipeline's."""
    sweep = (record.data.get("sweep") or {}).get("id")
    if sweep and record.name.startswith(f"{sweep}:"):
        return record.name[len(sweep) + 1:]
    return record.name


def run_name(record: RunRecord) -> str:
    return record.id


def cell_name(cell: dict) -> str:
    """A sweep cell as its axes and trial: ``workers=1 ratio=1:4 trial=0``."""
    shown = lambda value: value if isinstance(value, str) else json.dumps(value)  # noqa: E731
    axes = [f"{key.rsplit('.', 1)[-1]}={shown(value)}" for key, value in cell["axes"].items()]
    return " ".join([*axes, f"trial={cell['trial']}"])


def millis(timestamp: str | None) -> int | None:
    """An ISO time of the store as MLflow's milliseconds since the epoch."""
    return None if not timestamp else int(datetime.fromisoformat(timestamp).timestamp() * 1000)


# ---------------------------------------------------------------- sweeps


def sweep_status(sweep: dict) -> str:
    """RUNNING while cells are missing, FAILED if a cell failed, else FINISHED."""
    if sweep["failed"]:
        return "FAILED"
    return "FINISHED" if sweep["succeeded"] >= sweep["planned"] else "RUNNING"


def sweep_tags(sweep: dict) -> dict[str, str]:
    return {
        SWEEP_ID_TAG: sweep["id"],
        KIND_TAG: "sweep",
        "workbench.created_at": sweep["created_at"],
        "workbench.updated_at": sweep["updated_at"],
        "workbench.cells.planned": str(sweep["planned"]),
        "workbench.cells.succeeded": str(sweep["succeeded"]),
        "workbench.cells.failed": str(sweep["failed"]),
    }
