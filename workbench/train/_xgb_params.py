"""Which XGBoost parameters XGBoost does not know, or refuses, found by asking XGBoost itself.

XGBoost trains on with a parameter it does not know (``max_dept: 6`` trains at the default depth)
and only warns: ``Parameters: { "max_dept" } are not used``. Here the parameters, merged over the
workbench's defaults as training merges them, configure a booster on a 4-row in-memory DMatrix for
one round on one thread (about a millisecond), and that warning is caught. A refused value
(``max_depth: -1``, ``objective: nope``) makes the same build raise. The names suggested for a
typo are the parameters XGBoost reports in ``Booster.save_config()`` for each booster and for the
objectives that have parameters of their own, so the list follows the installed XGBoost.

Results are cached by parameters, so validating the same parameters again costs nothing.
"""

from __future__ import annotations

import difflib
import json
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from ..errors import ConfigError

DEFAULT_PARAMS = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "max_depth": 6,
    "eta": 0.1,
    # Early stopping follows the last metric: PR AUC on the validation set, which keeps improving
    # on rare positives long after ROC AUC has saturated.
    "eval_metric": ["logloss", "auc", "aucpr"],
}

__all__ = [
    "ParamProblem",
    "check_xgboost_params",
    "param_problems",
    "unknown_params",
    "validate_spec_grid",
    "validate_spec_params",
    "xgboost_parameter_names",
]

DOCS = "https://xgboost.readthedocs.io/en/stable/parameter.html"

# Keys that a newcomer from the scikit-learn API or R puts into params but that the workbench takes
# beside them: the number of rounds and early stopping are arguments of training, not of the booster.
ROUND_NAMES = frozenset({"n_estimators", "num_boost_round", "num_round", "num_rounds", "nrounds", "n_rounds"})
EARLY_STOPPING_NAMES = frozenset({"early_stopping_rounds", "early_stopping"})

# Whose values depend on the number of features: the probe's two features cannot check them (the
# names are XGBoost's own, so they are never unknown).
_NOT_PROBED = frozenset({"monotone_constraints", "interaction_constraints"})
_THREADS = ("nthread", "n_jobs")
_UNUSED = re.compile(r"Parameters:\s*\{(.*?)\}\s*are not used", re.DOTALL)
# The configurations whose save_config() lists every parameter: the boosters, and the objectives
# with parameters of their own.
_NAME_SOURCES = (
    {}, {"booster": "gblinear"}, {"booster": "dart"},
    {"objective": "reg:tweedie"}, {"objective": "reg:pseudohubererror"},
    {"objective": "reg:quantileerror", "quantile_alpha": 0.5}, {"objective": "survival:aft"},
    {"objective": "rank:ndcg"},
)
# Not in save_config() (the metrics are stored as a list, verbosity is global configuration).
_ALSO_NAMES = frozenset({"eval_metric", "verbosity"})


@dataclass(frozen=True)
class ParamProblem:
    """One problem of a parameter mapping.

    ``kind`` is ``unknown`` (XGBoost has no such parameter), ``unused`` (it has, but not for this
    booster or objective), ``outside`` (a workbench argument such as ``n_estimators``), ``value``
    (XGBoost refuses the value of ``key``) or ``combination`` (XGBoost refuses the parameters
    together; ``key`` is None). ``detail`` is XGBoost's message in one line (for ``value`` and
    ``combination``) or the booster and objective (for ``unused``).
    """

    key: str | None
    kind: Literal["unknown", "unused", "outside", "value", "combination"]
    suggestion: str | None = None
    detail: str = ""

    def describe(self, rounds: str = "num_boost_round", early_stopping: str | None = "early_stopping_rounds",
                 beside: str = "beside params") -> str:
        """The problem in words, without the key (the caller names where it is).

        ``rounds`` and ``early_stopping`` are what the caller calls the number of rounds and the
        early-stopping patience, ``beside`` where those go.
        """
        if self.kind == "unknown":
            return "unknown XGBoost parameter" + (f" (did you mean {self.suggestion!r}?)" if self.suggestion
                                                  else f" (see {DOCS})")
        if self.kind == "outside":
            target = rounds if self.suggestion == "num_boost_round" else early_stopping
            if target is None:
                return "not an XGBoost parameter (this model type has no early stopping)"
            return f"not an XGBoost parameter (did you mean {target!r}, {beside}?)"
        if self.kind == "unused":
            return f"XGBoost does not use this parameter with {self.detail}"
        if self.kind == "value":
            return f"XGBoost refuses this value: {self.detail}"
        return f"XGBoost refuses these parameters together: {self.detail}"


def unknown_params(params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> list[tuple[str, str | None]]:
    """The keys of ``params`` XGBoost does not use, each with the closest parameter name or None.

    >>> unknown_params({"max_dept": 6, "eta": 0.3})
    [('max_dept', 'max_depth')]
    """
    return [(p.key, p.suggestion if p.kind in ("unknown", "outside") else None)
            for p in param_problems(params, defaults) if p.kind in ("unknown", "unused", "outside")]


def param_problems(params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> list[ParamProblem]:
    """Every problem XGBoost finds with the keys of ``params`` merged over ``defaults`` (the
    workbench's :data:`~workbench.train.DEFAULT_PARAMS` if None), in their order. A default the
    parameters make unused (``max_depth`` under ``booster: gblinear``) is no problem of theirs."""
    if defaults is None:
        defaults = DEFAULT_PARAMS
    merged = {**defaults, **params}
    found = _problems(_frozen(merged), _frozen(params))
    order = {key: i for i, key in enumerate(params)}
    return sorted(found, key=lambda p: order.get(p.key, len(order)))


def check_xgboost_params(params: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None) -> None:
    """Raise a one-line :class:`~workbench.errors.ConfigError` for the first problem XGBoost finds
    with ``params`` (for the Python API; pipeline files get the same check through their model spec)."""
    if not params:
        return
    problems = param_problems(params, defaults)
    if not problems:
        return
    p = problems[0]
    if p.kind == "unknown":
        raise ConfigError(f"unknown XGBoost parameter {p.key!r} in params",
                          f"did you mean {p.suggestion!r}?" if p.suggestion else f"see {DOCS}")
    if p.kind == "outside":
        argument = "num_boost_round" if p.suggestion == "num_boost_round" else "early_stopping_rounds"
        raise ConfigError(f"params[{p.key!r}] is not an XGBoost parameter",
                          f"pass {argument}= to the training function instead")
    if p.kind == "unused":
        raise ConfigError(f"XGBoost does not use parameter {p.key!r} with {p.detail}",
                          f"remove it from params or change the booster/objective (see {DOCS})")
    if p.kind == "value":
        raise ConfigError(f"XGBoost refuses params[{p.key!r}] = {params[p.key]!r}: {p.detail}",
                          f"give a value XGBoost accepts (see {DOCS})")
    raise ConfigError(f"XGBoost refuses these params together: {p.detail}", f"see {DOCS}")


def xgboost_parameter_names() -> frozenset[str]:
    """Every parameter name the installed XGBoost reports (aliases such as ``eta`` and
    ``learning_rate`` both), for suggestions."""
    return _names()


# ---------------------------------------------------------------- for the model specs


def validate_spec_params(title: str, params: Mapping[str, Any], **words) -> None:
    """Raise a pydantic ``ValidationError`` located at each key of ``params`` XGBoost finds a problem
    with, so that a pipeline file's error names the key's own line. For a ``field_validator``
    (pydantic prefixes the field's location); ``words`` go to :meth:`ParamProblem.describe`."""
    _raise(title, [((p.key,), p, params[p.key]) if p.key else ((), p, params) for p in param_problems(params)], words)


def validate_spec_grid(title: str, grid: Mapping[str, list] | list[Mapping[str, Any]], **words) -> None:
    """:func:`validate_spec_params` for a grid of XGBoost parameters: ``{key: [values]}`` (each key
    checked with the first values of the others, each value at its place in the list) or a list of
    candidate mappings."""
    located: list[tuple[tuple, ParamProblem, Any]] = []
    if isinstance(grid, Mapping):
        first = {key: values[0] for key, values in grid.items() if values}
        for p in param_problems(first):
            if p.key is None:
                located.append(((), p, grid))
            else:
                located.append(((p.key, 0), p, first[p.key]) if p.kind == "value" else ((p.key,), p, grid[p.key]))
        bad = {p.key for _, p, _ in located}
        for key, values in grid.items():
            if key in bad:
                continue
            for i, value in enumerate(values[1:], 1):
                refused = [p for p in param_problems({**first, key: value}) if p.kind in ("value", "combination")]
                if refused:
                    located.append(((key, i), refused[0], value))
    else:
        for i, candidate in enumerate(grid):
            located += [((i, p.key), p, candidate[p.key]) if p.key else ((i,), p, candidate)
                        for p in param_problems(candidate)]
    _raise(title, located, words)


def _raise(title: str, located: list[tuple[tuple, ParamProblem, Any]], words: dict) -> None:
    if not located:
        return
    from pydantic import ValidationError
    from pydantic_core import InitErrorDetails, PydanticCustomError

    raise ValidationError.from_exception_data(title, [
        InitErrorDetails(type=PydanticCustomError("xgboost_param", "{message}", {"message": p.describe(**words)}),
                         loc=loc, input=value)
        for loc, p, value in located
    ])


# ---------------------------------------------------------------- asking XGBoost


def _frozen(params: Mapping[str, Any]) -> tuple:
    """A hashable, order-free form of a parameter mapping (values may be lists: eval_metric)."""
    return tuple(sorted((str(k), json.dumps(v, sort_keys=True, default=_plain)) for k, v in params.items()))


def _plain(value):
    """A numpy scalar as its Python value, anything else as the string XGBoost would make of it."""
    item = getattr(value, "item", None)
    return item() if callable(item) and getattr(value, "ndim", None) == 0 else str(value)


def _thawed(frozen: tuple) -> dict:
    return {k: json.loads(v) for k, v in frozen}


@lru_cache(maxsize=512)
def _problems(merged_frozen: tuple, own_frozen: tuple) -> tuple[ParamProblem, ...]:
    merged, own = _thawed(merged_frozen), _thawed(own_frozen)
    unused, error = _probe(_frozen(merged))
    if error is None:
        return tuple(_unused_problem(key, merged) for key in sorted(unused & own.keys()))
    # Refused: the keys refused alone over the defaults, else the one key without which the rest
    # passes (tweedie_variance_power: 5 is refused only with objective reg:tweedie); then look for
    # unknown keys among the others.
    base = {k: v for k, v in merged.items() if k not in own}
    problems = [ParamProblem(key, "value", detail=alone) for key in own
                if (alone := _probe(_frozen({**base, key: own[key]}))[1]) is not None]
    if not problems:
        culprits = [key for key in own if _probe(_frozen({k: v for k, v in merged.items() if k != key}))[1] is None]
        named = [key for key in culprits if key in error]
        culprit = named if len(named) == 1 else culprits if len(culprits) == 1 else []
        problems = [ParamProblem(key, "value", detail=error) for key in culprit]
    bad = {p.key for p in problems}
    unused, rest = _probe(_frozen({k: v for k, v in merged.items() if k not in bad}))
    problems += [_unused_problem(key, merged) for key in sorted(unused & own.keys())]
    if rest is not None:
        problems.append(ParamProblem(None, "combination", detail=rest))
    return tuple(problems)


def _unused_problem(key: str, merged: dict) -> ParamProblem:
    if key in ROUND_NAMES:
        return ParamProblem(key, "outside", "num_boost_round")
    if key in EARLY_STOPPING_NAMES:
        return ParamProblem(key, "outside", "early_stopping_rounds")
    names = _names()
    if key in names:
        booster = merged.get("booster", "gbtree")
        objective = merged.get("objective", "reg:squarederror")
        return ParamProblem(key, "unused", detail=f"booster {booster!r} and objective {objective!r}")
    close = difflib.get_close_matches(key, sorted(names), n=1, cutoff=0.75)
    return ParamProblem(key, "unknown", close[0] if close else None)


@lru_cache(maxsize=1024)
def _probe(frozen: tuple) -> tuple[frozenset[str], str | None]:
    """Configure a booster with these parameters for one round: (the names XGBoost says it does
    not use, XGBoost's refusal in one line or None)."""
    import xgboost as xgb

    params = {k: v for k, v in _thawed(frozen).items() if k not in _NOT_PROBED}
    for key in _THREADS:
        if key in params:
            params[key] = 1
    params.setdefault("nthread", 1)
    # The warning needs verbosity >= 1 and validate_parameters; a verbosity in the booster's
    # parameters sets the global one, which the context puts back.
    params.update(verbosity=1, validate_parameters=True)
    with warnings.catch_warnings(record=True) as caught, xgb.config_context(verbosity=1):
        warnings.simplefilter("always")
        try:
            matrix = _matrix()
            booster = xgb.Booster(params, [matrix])
            booster.update(matrix, 0)
        except xgb.core.XGBoostError as exc:
            return frozenset(), _one_line(str(exc))
        except (ValueError, TypeError) as exc:  # refused by the Python side while converting a value
            return frozenset(), _one_line(str(exc))
    unused = set()
    for warning in caught:
        match = _UNUSED.search(str(warning.message))
        if match:
            unused.update(re.findall(r'"([^"]+)"', match.group(1)))
    return frozenset(unused), None


@lru_cache(maxsize=1)
def _matrix():
    import numpy as np
    import xgboost as xgb

    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 1.0]], dtype=np.float32)
    return xgb.DMatrix(X, label=np.array([0.0, 1.0, 0.0, 1.0]), nthread=1)


@lru_cache(maxsize=1)
def _names() -> frozenset[str]:
    import xgboost as xgb

    names = set(_ALSO_NAMES)
    with warnings.catch_warnings(), xgb.config_context(verbosity=0):
        warnings.simplefilter("ignore")
        for params in _NAME_SOURCES:
            booster = xgb.Booster({**params, "nthread": 1}, [_matrix()])
            try:
                booster.update(_matrix(), 0)
            except xgb.core.XGBoostError:
                pass  # e.g. survival:aft needs label bounds; its configuration is still there
            try:
                _string_keys(json.loads(booster.save_config()), names)
            except xgb.core.XGBoostError:
                pass
    names.discard("name")  # the booster's or objective's name in the configuration, not a parameter
    return frozenset(names)


def _string_keys(node, out: set) -> None:
    """Parameters are the keys with a string value in save_config() (sections have dicts)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                out.add(key)
            else:
                _string_keys(value, out)
    elif isinstance(node, list):
        for value in node:
            _string_keys(value, out)


def _one_line(message: str) -> str:
    """XGBoost's error without its timestamp, source location, stack trace and explanation lines."""
    message = message.split("Stack trace:")[0]
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = lines[0] if lines else message.strip()
    line = re.sub(r"^\[\d\d:\d\d:\d\d\]\s*", "", line)
    line = re.sub(r"^\S+\.(?:cc|cu|h|cuh):\d+:\s*", "", line)
    line = re.sub(r"^Check failed:\s*[^:]*:\s*(?=\S)", "", line)
    return line.rstrip(": ")
