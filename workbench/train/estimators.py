"""scikit-learn classifiers named in pipeline files: a class name or a dotted path, its parameters,
optional preprocessing in front of it, and search spaces written in YAML.

>>> make_estimator("RandomForestClassifier", {"n_estimators": 10}).n_estimators
10
>>> parse_search_space({"C": {"loguniform": [0.01, 10]}}, "random")["C"].dist.name
'loguniform'
"""

from __future__ import annotations

import difflib
import functools
import importlib

import scipy.stats
from sklearn.base import is_classifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import WorkbenchError

__all__ = ["make_estimator", "estimator_class", "parse_search_space", "DISTRIBUTIONS"]

# YAML spellings of scipy.stats distributions for random and adaptive searches: {name: [args...]}.
DISTRIBUTIONS = {
    "uniform": lambda low, high: scipy.stats.uniform(low, high - low),
    "loguniform": scipy.stats.loguniform,
    "randint": scipy.stats.randint,  # [low, high): high excluded, as numpy
}


@functools.cache
def _classifiers() -> dict[str, type]:
    from sklearn.utils.discovery import all_estimators

    return {name: cls for name, cls in all_estimators(type_filter="classifier")}


def estimator_class(name: str) -> type:
    """The class of ``name``: a scikit-learn classifier's class name or ``package.module.Class``."""
    if "." in name:
        module, _, attr = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise WorkbenchError(f"estimator {name!r} cannot be imported ({exc})",
                                 "give a scikit-learn class name or an importable dotted path") from None
    else:
        classifiers = _classifiers()
        if name not in classifiers:
            close = difflib.get_close_matches(name, list(classifiers), n=1, cutoff=0.5)
            raise WorkbenchError(
                f"unknown estimator {name!r}",
                f"did you mean {close[0]!r}?" if close else "use a scikit-learn classifier such as RandomForestClassifier",
            )
        cls = classifiers[name]
    if not isinstance(cls, type) or not is_classifier(cls()):
        raise WorkbenchError(f"{name!r} is not a scikit-learn classifier", "use a classifier class")
    return cls


def make_estimator(name: str, params: dict | None = None, preprocess=()):
    """A new, unfitted classifier ``name(**params)``, behind a ``Pipeline`` of ``preprocess`` steps
    (``"impute"``: mean imputation of missing values; ``"scale"``: standardisation) if any."""
    cls = estimator_class(name)
    try:
        estimator = cls(**(params or {}))
    except TypeError as exc:
        valid = sorted(cls().get_params(deep=False))
        bad = [k for k in params or {} if k not in valid]
        if not bad:
            raise WorkbenchError(f"{cls.__name__} rejected its parameters ({exc})", "fix the parameters") from None
        close = difflib.get_close_matches(bad[0], valid, n=1, cutoff=0.5)
        raise WorkbenchError(
            f"{cls.__name__} has no parameter {bad[0]!r}",
            f"did you mean {close[0]!r}?" if close else f"its parameters are: {', '.join(valid)}",
        ) from None
    if hasattr(estimator, "_validate_params"):  # the values, which scikit-learn itself checks only in fit
        try:
            estimator._validate_params()
        except (ValueError, TypeError) as exc:  # InvalidParameterError is both
            raise WorkbenchError(f"{cls.__name__} rejected its parameters ({' '.join(str(exc).split())})",
                                 "fix the parameters") from None
    steps = {"impute": lambda: SimpleImputer(strategy="mean", keep_empty_features=True),
             "scale": StandardScaler}
    unknown = [s for s in preprocess if s not in steps]
    if unknown:
        raise WorkbenchError(f"unknown preprocessing step(s) {unknown}", "use 'impute' and/or 'scale'")
    if not preprocess:
        return estimator
    return Pipeline([*((step, steps[step]()) for step in preprocess), ("model", estimator)])


def parse_search_space(space: dict | list[dict], kind: str) -> dict | list[dict]:
    """A grid (``kind="grid"``: lists of values) or distributions (``kind="random"``: lists, or
    ``{uniform|loguniform|randint: [low, high]}``) from YAML, as scikit-learn and dask-ml take them."""
    if isinstance(space, list):
        if kind != "grid":
            raise WorkbenchError("a list of grids is only for kind: grid", "give one mapping of parameters")
        return [parse_search_space(one, kind) for one in space]
    if not isinstance(space, dict) or not space:
        raise WorkbenchError("the search space is empty", "give parameter: [values, ...] entries")
    parsed = {}
    for key, value in space.items():
        if isinstance(value, dict):
            if kind == "grid":
                raise WorkbenchError(f"grid entry {key!r} is a distribution",
                                     "a grid lists values; use kind: random for distributions")
            if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
                raise WorkbenchError(f"search entry {key!r}: {value!r} is not a distribution",
                                     f"write {{name: [low, high]}} with name one of {', '.join(DISTRIBUTIONS)}")
            (name, args), = value.items()
            if not isinstance(args, list) or len(args) != 2:
                raise WorkbenchError(f"search entry {key!r}: {name} needs [low, high]", f"e.g. {name}: [0.01, 1]")
            try:
                parsed[key] = DISTRIBUTIONS[name](*args)
            except (TypeError, ValueError) as exc:
                raise WorkbenchError(f"search entry {key!r}: {name}{args} is invalid ({exc})", "fix low and high") from None
        elif isinstance(value, list) and value:
            parsed[key] = value
        else:
            raise WorkbenchError(f"search entry {key!r} has no values", "give a non-empty list of values")
    return parsed
