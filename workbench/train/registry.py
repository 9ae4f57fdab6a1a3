"""The model-type registry: what ``model.type`` in a pipeline file may name.

Each entry holds the three things a model type is: its ``spec`` (the pydantic model of its
``model:`` section), its ``fit`` function (fit on the under-sampled training set, return a
:class:`Fitted`; never score the test set) and its ``show`` function (what its run record adds to
a run's view, read by both ``workbench runs show`` and the runs page). Adding a model type touches
one place: ``MODEL_TYPES.register(ModelType(...))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..registry import Registry

if TYPE_CHECKING:  # the registry is read by views that should not import Dask
    from ..data.dataset import Dataset

__all__ = ["ModelType", "ModelView", "Fitted", "FitContext", "MODEL_TYPES", "register_model_type"]


@dataclass(frozen=True)
class ModelView:
    """What a model type shows of its run: one-line facts and titled tables of rows."""

    lines: tuple[str, ...] = ()
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Fitted:
    """What a model type's ``fit`` returns. The pipeline scores ``model`` on the test set or, when
    ``compared`` is given, every model of it on the same rows (an ensemble and its members), with
    ``primary`` naming the one the run stands for (None: the best by PR AUC)."""

    model: Any  # what is saved and predicts: a Booster, a fitted scikit-learn classifier, ...
    compared: dict[str, Any] = field(default_factory=dict)  # name -> another fitted model to score
    primary: str | None = None  # the name of ``model`` among ``compared`` (default: the type's name)
    history: dict = field(default_factory=dict)  # {curve: {metric: [values per round or epoch]}}
    data: dict = field(default_factory=dict)  # what else the run record keeps
    result: Any = None  # the trainer's own result object


@dataclass
class FitContext:
    """What a ``fit`` function gets besides its spec."""

    train: Dataset  # the training set after RUS
    valid: Dataset | None  # the early-stopping / ranking set, natural ratio
    client: Any
    timed: Callable[[str, float], None] = lambda phase, seconds: None
    say: Callable[[str], None] = lambda message: None
    # Scores a model on the untouched test set through the one scorer (for per-epoch curves).
    monitor: Callable[[Any], Any] | None = None
    pipeline: Any = None  # the whole PipelineSpec, for types that read other sections


@dataclass(frozen=True)
class ModelType:
    name: str
    spec: type  # a pydantic model with ``type: Literal[name]``
    fit: Callable[[Any, FitContext], Fitted]
    show: Callable[[dict], ModelView] = lambda data: ModelView()
    summary: str = ""  # one line: what the type does


def _load_builtins() -> None:
    from . import types  # noqa: F401  (registers the built-in model types)


MODEL_TYPES: Registry[ModelType] = Registry("model type", loader=_load_builtins, docs="docs/pipeline.md#model")


def register_model_type(model_type: ModelType, *, replace: bool = False) -> ModelType:
    """Make ``model_type.name`` a ``model.type`` that pipeline files may use.

    Its spec needs a ``type`` field and a ``seed`` field (runs record the model's seed, and sweeps
    vary it per trial).
    """
    fields = getattr(model_type.spec, "model_fields", {})
    missing = [name for name in ("type", "seed") if name not in fields]
    if missing:
        raise ConfigError(f"model type {model_type.name!r}: its spec {model_type.spec.__name__} has no "
                          f"{' and no '.join(missing)} field",
                          f'give it `type: Literal["{model_type.name}"]` and `seed: int = 0`')
    return MODEL_TYPES.register(model_type.name, model_type, replace=replace)
