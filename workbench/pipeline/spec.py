"""The pipeline file: one run's settings, section by section, with ``model:`` chosen by its type
from the model-type registry (so a type registered from outside the package validates too)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator

from ..config import (
    DataSpec,
    Dispatch,
    MetricsSpec,
    SamplingSpec,
    SplitSpec,
    StrictModel,
    load_yaml,
    validate,
)
from ..train.registry import MODEL_TYPES

__all__ = ["PipelineSpec", "TrackingSpec", "load_pipeline", "MODEL_SECTION"]

DEFAULT_MODEL_TYPE = "xgboost"
MODEL_SECTION = Dispatch(MODEL_TYPES, lambda entry: entry.spec, key="type", default=DEFAULT_MODEL_TYPE)


class TrackingSpec(StrictModel):
    """Where the run is exported when it ends (docs/mlflow.md)."""

    mlflow: Annotated[str, Field(min_length=1)]  # an MLflow tracking URI: sqlite:///mlflow.db, http://host:port
    experiment: Annotated[str, Field(min_length=1)] | None = None  # default: the pipeline's name


class PipelineSpec(StrictModel):
    """One run: cluster → data → split → RUS → train → exact metrics → run store."""

    name: str
    cluster: str = "local"
    data: DataSpec
    split: SplitSpec = SplitSpec()
    sampling: SamplingSpec = SamplingSpec()
    model: Annotated[Any, MODEL_SECTION] = Field(default_factory=lambda: MODEL_TYPES[DEFAULT_MODEL_TYPE].spec())
    metrics: MetricsSpec = MetricsSpec()
    runs_dir: str | None = None
    tracking: TrackingSpec | None = None  # the run exported to MLflow when it ends (pipeline/tracking.py)

    @field_validator("metrics")
    @classmethod
    def _threshold_needs_a_validation_set(cls, metrics: MetricsSpec, info: ValidationInfo) -> MetricsSpec:
        split = info.data.get("split")
        if metrics.threshold in ("f1", "cost") and split is not None and not split.validation_size:
            raise ValueError(f"threshold {metrics.threshold} is chosen on the validation set, and split makes none: "
                             "set split.validation_size (e.g. 0.1), or give the threshold as a number")
        return metrics


def load_pipeline(path: str | os.PathLike) -> PipelineSpec:
    """Read and validate a pipeline file; a mistake is a one-line ConfigError naming its line."""
    data, lines = load_yaml(path, "pipeline file")
    return validate(PipelineSpec, data, lines, str(path))
