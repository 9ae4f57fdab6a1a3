"""Pipeline files and cluster profiles: YAML validated by pydantic, errors that point at the line.

Defaults live in Dask's own configuration under ``workbench.*`` (see ``workbench.yaml`` beside
this module), so they can be changed the way any Dask setting is.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import dask.config
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, WorkbenchError

__all__ = [
    "PipelineSpec",
    "DataSpec",
    "SynthSpec",
    "SplitSpec",
    "SamplingSpec",
    "ModelSpec",
    "MetricsSpec",
    "load_yaml",
    "load_pipeline",
    "validate",
]

_DEFAULTS = Path(__file__).with_name("workbench.yaml")
with open(_DEFAULTS) as f:
    dask.config.update_defaults(yaml.safe_load(f))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- pipeline files


class SynthSpec(_Strict):
    """Generate a synthetic Bitcoin-address export at ``data.path`` if no file is there yet."""

    rows: Annotated[int, Field(ge=1)]
    positive_rate: Annotated[float, Field(gt=0, lt=1)] = 0.005
    signal: Annotated[float, Field(ge=0)] = 1.0
    seed: int = 0
    rows_per_shard: Annotated[int, Field(ge=1)] = 250_000
    table: str = "btc_addresses"


class DataSpec(_Strict):
    path: str | list[str]
    target: str
    drop: list[str] = []
    positive: bool | int | str | None = None
    keep_nested: bool = False
    partition_size: str | int | None = None
    storage_options: dict[str, Any] = {}
    persist: bool | Literal["auto"] = "auto"
    synth: SynthSpec | None = None
    cache: str | None = None  # a Zarr feature cache directory: built or rebuilt from `path` when missing or stale


class SplitSpec(_Strict):
    test_size: Annotated[float, Field(gt=0, lt=1)] = 0.2
    validation_size: Annotated[float, Field(ge=0, lt=1)] = 0.1
    seed: int = 0


class SamplingSpec(_Strict):
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
            from .sampling import parse_ratio

            try:
                parse_ratio(value)
            except WorkbenchError as exc:
                raise ValueError(str(exc)) from None
        return value


class ModelSpec(_Strict):
    type: Literal["xgboost"] = "xgboost"
    params: dict[str, Any] = {}
    num_boost_round: Annotated[int, Field(ge=1)] = 200
    early_stopping_rounds: Annotated[int, Field(ge=1)] | None = 20
    scale_pos_weight: Annotated[float, Field(gt=0)] | Literal["auto"] | None = None
    seed: int = 0


class MetricsSpec(_Strict):
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5


class PipelineSpec(_Strict):
    """One run: cluster → data → split → RUS → train → exact metrics → run store."""

    name: str
    cluster: str = "local"
    data: DataSpec
    split: SplitSpec = SplitSpec()
    sampling: SamplingSpec = SamplingSpec()
    model: ModelSpec = ModelSpec()
    metrics: MetricsSpec = MetricsSpec()
    runs_dir: str | None = None


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
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        key = ".".join(str(p) for p in loc) or "(top level)"
        message = _explain(error, model)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {key}: {message}", f"fix `{key}` (see docs/pipeline.md)") from None


def _data_path(data, loc: tuple, keep_last: bool) -> tuple:
    """The part of a pydantic error location that names keys of the file (not union member tags)."""
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


def _explain(error: dict, model: type[BaseModel]) -> str:
    if error["type"] == "extra_forbidden":
        section = _section_model(model, error["loc"][:-1])
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, list(section.model_fields), n=1) if section else []
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
        home = [name for name, field in model.model_fields.items()
                if _submodel(field.annotation) and key in _submodel(field.annotation).model_fields]
        return "unknown key" + (f" (it belongs under {home[0]!r})" if home else "")
    if error["type"] == "missing":
        return "required key is missing"
    message = error["msg"]
    return message[len("Value error, "):] if message.startswith("Value error, ") else message


def _submodel(annotation) -> type[BaseModel] | None:
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _section_model(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (None past a list or a plain dict)."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        model = _submodel(field.annotation) if field else None
        if model is None:
            return None
    return model


def load_pipeline(path: str | os.PathLike) -> PipelineSpec:
    data, lines = load_yaml(path, "pipeline file")
    return validate(PipelineSpec, data, lines, str(path))
