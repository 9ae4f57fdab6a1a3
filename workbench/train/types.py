"""The built-in model types. Each has three parts, side by side: its spec (the ``model:`` section of
a pipeline file), its fit function (fit on the RUS sample and return a :class:`Fitted`; the pipeline
then scores every model on the untouched test set through :func:`workbench.metrics.evaluate_models`)
and its show function (what its run record adds to ``workbench runs show`` and the runs page).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import numpy as np
from dask.utils import format_time
from pydantic import Field, field_validator, model_validator
from sklearn.model_selection import ParameterGrid

from ..config import StrictModel, as_value_error
from ..errors import ConfigError
from .estimators import make_estimator, parse_search_space
from .registry import FitContext, Fitted, ModelType, ModelView, register_model_type

__all__ = [
    "XGBoostModel", "EstimatorSpec", "SklearnModel", "EnsembleModel", "IncrementalModel", "AveragedSGDModel",
    "SearchModel", "HyperbandModel", "XGBoostHalvingModel",
]


# ---------------------------------------------------------------- specs

PROBABILITY_OBJECTIVES = ("binary:logistic", "reg:logistic")  # XGBoost objectives whose scores are P(positive)


class XGBoostModel(StrictModel):
    """Distributed XGBoost (``xgboost.dask``) on the RUS sample, early stopping on the validation set."""

    type: Literal["xgboost"] = "xgboost"
    params: dict[str, Any] = {}
    num_boost_round: Annotated[int, Field(ge=1)] = 200
    early_stopping_rounds: Annotated[int, Field(ge=1)] | None = 20
    scale_pos_weight: Annotated[float, Field(gt=0)] | Literal["auto"] | None = None
    seed: int = 0
    # in-memory: xgboost.dask on the sample held in worker memory; external: XGBoost's external
    # memory on every worker (cache pages on disk); auto: external when the sample is too large
    memory: Literal["auto", "in-memory", "external"] = "auto"

    @field_validator("params")
    @classmethod
    def _xgboost_knows_params(cls, value):
        """Every key a parameter XGBoost uses, every value one it accepts (asked of XGBoost itself)."""
        from ._xgb_params import validate_spec_params

        validate_spec_params(cls.__name__, value)
        objective = value.get("objective", "binary:logistic")
        if objective not in PROBABILITY_OBJECTIVES:
            raise ValueError(f"objective {objective!r} does not score the probability of the positive class, which the "
                             "metrics, the threshold and the RUS correction need: use binary:logistic (the default)")
        return value


class EstimatorSpec(StrictModel):
    """A scikit-learn classifier: a class name (``RandomForestClassifier``) or a dotted path, its
    parameters, and optional preprocessing steps in front of it (``impute``, ``scale``)."""

    estimator: str
    params: dict[str, Any] = {}
    preprocess: list[Literal["impute", "scale"]] = []

    @field_validator("estimator")
    @classmethod
    def _known_class(cls, value):
        from .estimators import estimator_class

        as_value_error(estimator_class, value)
        return value

    @field_validator("params")
    @classmethod
    def _accepted(cls, value, info):
        from .estimators import make_estimator

        if "estimator" in info.data:  # else the estimator itself failed and says so
            as_value_error(make_estimator, info.data["estimator"], value)
        return value


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
        from .estimators import parse_search_space

        as_value_error(parse_search_space, value, info.data.get("kind", "grid"))
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
        from .estimators import parse_search_space

        as_value_error(parse_search_space, value, "random")
        return value


class XGBoostHalvingModel(StrictModel):
    """Successive halving over XGBoost parameters with boosting rounds as the budget."""

    type: Literal["xgboost_halving"]
    grid: dict[str, list[Any]] | list[dict[str, Any]]
    min_rounds: Annotated[int, Field(ge=1)] = 10
    max_rounds: Annotated[int, Field(ge=1)] = 270
    eta: Annotated[float, Field(gt=1)] = 3
    seed: int = 0

    @field_validator("grid")
    @classmethod
    def _xgboost_knows_params(cls, value):
        """Every candidate's keys parameters XGBoost uses, its values ones it accepts."""
        from ._xgb_params import validate_spec_grid

        validate_spec_grid(cls.__name__, value, rounds="max_rounds", early_stopping=None, beside="beside grid")
        return value


# ---------------------------------------------------------------- fit functions


def fit_xgboost(model: XGBoostModel, ctx: FitContext) -> Fitted:
    from .xgb import memory_mode, train_xgboost

    valid = ctx.valid
    memory = memory_mode(model.memory, ctx.train, ctx.client)
    ctx.say(f"train: xgboost, up to {model.num_boost_round} rounds"
            + (f", early stopping after {model.early_stopping_rounds}" if model.early_stopping_rounds and valid else "")
            + (", from external memory (cache pages in each worker's local directory)" if memory == "external" else ""))
    result = train_xgboost(
        ctx.train, valid=valid, params=model.params, num_boost_round=model.num_boost_round,
        early_stopping_rounds=model.early_stopping_rounds if valid is not None else None,
        scale_pos_weight=model.scale_pos_weight, seed=model.seed, memory=memory, client=ctx.client,
        on_phase=lambda phase, seconds: (ctx.timed(phase, seconds), ctx.say(f"{phase}: {format_time(seconds)}")),
    )
    return Fitted(result.booster, history=result.history, result=result,
                  data={"best_iteration": result.best_iteration, "boosted_rounds": result.num_boosted_rounds,
                        "training_attempts": result.attempts, "memory": result.memory})


def fit_sklearn(model: SklearnModel, ctx: FitContext) -> Fitted:
    name = short_name(model.estimator)
    ctx.say(f"train: {name} in memory on a worker ({ctx.train.n_rows:,} rows)")
    return _fit_members({name: model}, "none", 2, model.seed, ctx)


def fit_ensemble(model: EnsembleModel, ctx: FitContext) -> Fitted:
    ctx.say(f"train: {len(model.members)} member(s) in parallel ({', '.join(model.members)})"
            + ("" if model.method == "none" else f", combined by {model.method}"))
    return _fit_members(model.members, model.method, model.cv, model.seed, ctx)


def _fit_members(specs, method, cv, seed, ctx: FitContext) -> Fitted:
    """Fit the classifiers of ``specs`` side by side (``train_ensemble``) and combine them by ``method``."""
    from .ensemble import train_ensemble

    members = {name: with_seed(make_estimator(m.estimator, m.params, m.preprocess), seed)
               for name, m in specs.items()}
    started = time.perf_counter()
    result = train_ensemble(members, ctx.train, method=method, cv=cv, seed=seed, client=ctx.client)
    ctx.timed("train", result.timings.get("parallel", 0.0) + result.timings.get("collect", 0.0))
    if len(members) > 1:
        ctx.say(f"train: {format_time(time.perf_counter() - started)} wall, {format_time(result.timings['serial'])} of fits "
                f"({result.timings['serial'] / max(result.timings['parallel'], 1e-9):.2f}x in parallel)")
    models = result.models
    # The combination represents the run; with the members alone, the pipeline picks the best by PR AUC.
    primary = next((m for m in ("stacking", "soft") if m in models), None)
    table = {name: {"fit_seconds": result.fit_seconds.get(name), "worker": result.workers.get(name)}
             for name in models}
    return Fitted(models[primary] if primary else None, compared=models, primary=primary, result=result,
                  data={"models": table, "ensemble_timings": result.timings})


def fit_incremental(model: IncrementalModel, ctx: FitContext) -> Fitted:
    from .incremental import train_incremental

    estimator = make_estimator(model.estimator, model.params)
    ctx.say(f"train: {short_name(model.estimator)} out of core, {model.epochs} epoch(s) over "
            f"{ctx.train.npartitions} partition(s) ({ctx.train.n_rows:,} rows)")
    result = train_incremental(
        ctx.train, None, estimator, epochs=model.epochs, scale=model.scale, seed=model.seed, client=ctx.client,
        monitor=ctx.monitor,
        on_epoch=lambda epoch, m: ctx.say(f"epoch {epoch}: test ROC AUC {m.roc_auc:.4f}, PR AUC {m.pr_auc:.4f}"),
    )
    _time_phases(ctx, result.timings)
    return Fitted(result.model, history=_epoch_curves(result.history), data={"epochs": result.history},
                  result=result)


def fit_averaged_sgd(model: AveragedSGDModel, ctx: FitContext) -> Fitted:
    from .averaging import train_averaged_sgd

    ctx.say("train: SGD on every worker's partitions, averaged "
            + ("every epoch" if model.average_every_epoch else "at the end"))
    result = train_averaged_sgd(
        ctx.train, monitor=ctx.monitor, epochs=model.epochs, average_every_epoch=model.average_every_epoch,
        scale=model.scale, seed=model.seed, client=ctx.client, **model.params,
    )
    _time_phases(ctx, result.timings)
    return Fitted(result.model, history=_epoch_curves(result.history),
                  data={"epochs": result.history, "workers": len(result.partitions)}, result=result)


def fit_search(model: SearchModel, ctx: FitContext) -> Fitted:
    from .search import search

    estimator = with_seed(make_estimator(model.estimator, model.params, model.preprocess), model.seed)
    space = parse_search_space(model.grid, model.kind)
    n = len(ParameterGrid(space)) if model.kind == "grid" else model.n_iter
    ctx.say(f"search: {model.kind}, {n} candidate(s) x {model.cv} folds of {ctx.train.n_rows:,} rows"
            + (", RUS inside each training fold" if model.ratio or _has_ratio(space) else ""))
    result = search(estimator, space, ctx.train, kind=model.kind, n_iter=model.n_iter, cv=model.cv,
                    ratio=model.ratio, scoring=tuple(model.scoring), refit=model.refit, seed=model.seed,
                    compare_default=model.compare_default, client=ctx.client)
    ctx.timed("train", result.tuning_seconds)
    versus = result.best_vs_default()
    ctx.say("search: best " + ", ".join(f"{k}={v!r}" for k, v in result.best_params.items())
            + f"; CV {model.refit} {result.best_scores[model.refit]:.4f}"
            + (f" vs default {result.default['mean_' + model.refit]:.4f}" if result.default else ""))
    return Fitted(result.best_estimator, primary="best", result=result, data={
        "best_params": {k: plain(v) for k, v in result.best_params.items()},
        "best_scores": result.best_scores,
        "candidates": records(result.candidates),
        "best_vs_default": {row: {k: float(v) for k, v in values.items()} for row, values in versus.iterrows()},
        "tuning_seconds": result.tuning_seconds, "search_timings": result.timings,
    })


def fit_hyperband(model: HyperbandModel, ctx: FitContext) -> Fitted:
    from sklearn.pipeline import Pipeline

    from .adaptive import hyperband_search
    from .incremental import dataset_arrays, fit_preprocessor

    estimator = with_seed(make_estimator(model.estimator, model.params), model.seed)
    ctx.say(f"search: Hyperband over {short_name(model.estimator)}, up to {model.max_iter} partial_fit calls per model")
    started = time.perf_counter()
    preprocess = fit_preprocessor(ctx.train, scale=model.scale)
    with ctx.client.as_current():
        X, y, _ = dataset_arrays(ctx.train, preprocess)
        found = hyperband_search(estimator, parse_search_space(model.grid, "random"), X, y, max_iter=model.max_iter,
                                 aggressiveness=model.aggressiveness, random_state=model.seed, client=ctx.client,
                                 classes=[0, 1])
    ctx.timed("train", time.perf_counter() - started)
    results = found.cv_results_
    ctx.say(f"search: {len(results['params'])} models, best validation score {found.best_score_:.4f}")
    best = Pipeline([*preprocess.steps, ("model", found.best_estimator_)])
    return Fitted(best, primary="best", result=found, data={
        "best_params": {k: plain(v) for k, v in found.best_params_.items()},
        "best_validation_score": float(found.best_score_),
        "candidates": [{"params": {k: plain(v) for k, v in p.items()}, "score": float(s),
                        "partial_fit_calls": int(c), "bracket": int(b)}
                       for p, s, c, b in zip(results["params"], results["test_score"],
                                             results["partial_fit_calls"], results["bracket"])],
    })


def fit_xgboost_halving(model: XGBoostHalvingModel, ctx: FitContext) -> Fitted:
    from .adaptive import xgboost_successive_halving

    if ctx.valid is None:
        raise ConfigError("model.type xgboost_halving ranks candidates on the validation set",
                          "set split.validation_size above 0")
    candidates = list(ParameterGrid(model.grid)) if isinstance(model.grid, dict) else list(model.grid)
    ctx.say(f"search: successive halving over {len(candidates)} XGBoost candidate(s), "
            f"{model.min_rounds}..{model.max_rounds} rounds, eta {model.eta}")
    started = time.perf_counter()
    result = xgboost_successive_halving(ctx.train, ctx.valid, candidates, min_rounds=model.min_rounds,
                                        max_rounds=model.max_rounds, eta=model.eta, seed=model.seed,
                                        client=ctx.client)
    ctx.timed("train", time.perf_counter() - started)
    ctx.say(f"search: best {result.best_params}, validation PR AUC {result.best_score:.4f}")
    return Fitted(result.best_booster, primary="best", result=result, data={
        "best_params": {k: plain(v) for k, v in result.best_params.items()},
        "best_validation_pr_auc": float(result.best_score), "rungs": result.rungs,
        "candidates": records(result.table),
    })


# ---------------------------------------------------------------- helpers


def short_name(estimator: str) -> str:
    return estimator.rpartition(".")[2]


def with_seed(estimator, seed: int):
    """Every ``random_state`` left at None set to ``seed``, so the same seed gives the same model."""
    unset = {k: seed for k, v in estimator.get_params(deep=True).items()
             if (k == "random_state" or k.endswith("__random_state")) and v is None}
    return estimator.set_params(**unset)


def _has_ratio(space) -> bool:
    return any("ratio" in grid for grid in (space if isinstance(space, list) else [space]))


def _time_phases(ctx: FitContext, timings: dict) -> None:
    for phase, seconds in timings.items():
        ctx.timed({"evaluate": "metrics"}.get(phase, phase), seconds)


def _epoch_curves(history: dict) -> dict:
    return {"test (per epoch)": {k: history[k] for k in ("roc_auc", "pr_auc") if k in history}} \
        if "roc_auc" in history else {}


def plain(value):
    """A JSON-friendly copy of a parameter value (numpy scalars, tuples, estimators)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def records(frame) -> list[dict]:
    return [{k: plain(v) if not isinstance(v, dict) else v for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


# ---------------------------------------------------------------- how runs are shown


def _show_xgboost(d: dict) -> ModelView:
    if "best_iteration" not in d:
        return ModelView()
    attempts = d.get("training_attempts", 1)
    return ModelView((f"xgboost: {d['best_iteration'] + 1} trees kept (best validation round) "
                      f"of {d['boosted_rounds']} trained"
                      + (", from external memory" if d.get("memory") == "external" else "")
                      + (f", after {attempts - 1} restart(s) on a lost worker" if attempts > 1 else ""),))


def _show_members(d: dict) -> ModelView:
    lines, tables = [], {}
    if "models" in d:
        kind = d.get("model_type", "ensemble")
        lines.append(f"{kind}; test scores of every model (the run's metrics are those of {d['primary']})")
        tables["models"] = [{"model": name, **row} for name, row in d["models"].items()]
        t = d.get("ensemble_timings", {})
        if t.get("parallel"):
            lines.append(f"in parallel: {format_time(t['parallel'])} wall for {format_time(t['serial'])} of fits "
                         f"({t['serial'] / t['parallel']:.2f}x)")
    return ModelView(tuple(lines), tables)


def _show_search(d: dict) -> ModelView:
    lines, tables = [], {}
    kind = d.get("model_type", "search")
    if "best_params" in d:
        lines.append(f"{kind}: best " + ", ".join(f"{k}={v!r}" for k, v in d["best_params"].items())
                     + f" of {len(d.get('candidates', []))} candidate rows")
    if "best_vs_default" in d:
        tables["best vs default"] = [{"": row, **values} for row, values in d["best_vs_default"].items()]
    if "tuning_seconds" in d:
        lines.append(f"tuning: {format_time(d['tuning_seconds'])}")
    if d.get("candidates"):
        tables["candidates"] = d["candidates"]
    return ModelView(tuple(lines), tables)


def _show_epochs(d: dict) -> ModelView:
    if "epochs" not in d:
        return ModelView()
    h = d["epochs"]
    kind = d.get("model_type", "incremental")
    return ModelView((f"{kind}: {len(h['epoch'])} epoch(s); test ROC AUC by epoch "
                      + " ".join(f"{v:.4f}" for v in h["roc_auc"]),))


# ---------------------------------------------------------------- the registry's built-in entries

for _type in (
    ModelType("xgboost", XGBoostModel, fit_xgboost, _show_xgboost,
              "Distributed XGBoost on the RUS sample, early stopping on the validation set"),
    ModelType("sklearn", SklearnModel, fit_sklearn, _show_members,
              "One scikit-learn classifier fitted in memory on a worker"),
    ModelType("ensemble", EnsembleModel, fit_ensemble, _show_members,
              "Several classifiers fitted in parallel, combined by soft voting and/or stacking"),
    ModelType("incremental", IncrementalModel, fit_incremental, _show_epochs,
              "Out-of-core partial_fit over the Parquet partitions"),
    ModelType("averaged_sgd", AveragedSGDModel, fit_averaged_sgd, _show_epochs, "Parallel SGD with model averaging"),
    ModelType("search", SearchModel, fit_search, _show_search, "Grid or random search with stratified CV"),
    ModelType("hyperband", HyperbandModel, fit_hyperband, _show_search, "dask-ml Hyperband over a partial_fit estimator"),
    ModelType("xgboost_halving", XGBoostHalvingModel, fit_xgboost_halving, _show_search,
              "Successive halving over XGBoost parameters, boosting rounds as the budget"),
):
    register_model_type(_type)
