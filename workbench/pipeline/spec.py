"""The pipeline file: one run's settings, section by section, with ``model:`` chosen by its type
from the model-type registry (so a type registered from outside the package validates too)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import Field

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

__all__ = ["PipelineSpec", "load_pipeline", "MODEL_SECTION"]

DEFAULT_MODEL_TYPE = "xgboost"
MODEL_SECTION = Dispatch(MODEL_TYPES, lambda entry: entry.spec, key="type", default=DEFAULT_MODEL_TYPE)


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


def load_pipeline(path: str | os.PathLike) -> PipelineSpec:
    """Read and validate a pipeline file; a mistake is a one-line ConfigError naming its line."""
    data, lines = load_yaml(path, "pipeline file")
    return validate(PipelineSpec, data, lines, str(path))
