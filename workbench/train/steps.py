"""The train stage of a pipeline file: one function per ``model.type``, each calling the trainer of
its module with the file's settings and returning a :class:`Trained` the pipeline records.

Every step scores its model exactly on the untouched test set; what differs is what else it
records: per-round or per-epoch curves, the members beside an ensemble, every search candidate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from distributed import wait
from sklearn.model_selection import ParameterGrid

from ..config import (AveragedSGDModel, EnsembleModel, HyperbandModel, IncrementalModel, PipelineSpec,
                      SearchModel, SklearnModel, XGBoostHalvingModel, XGBoostModel)
from ..data.dataset import Dataset
from ..errors import ConfigError
from ..metrics import Metrics, evaluate
from .estimators import make_estimator, parse_search_space

__all__ = ["Trained", "train_step"]


@dataclass
class Trained:
    """What a pipeline's train stage produced."""

    kind: str  # model.type
    model: object  # what is saved and predicts: an xgboost.Booster or a fitted scikit-learn classifier
    metrics: Metrics  # of ``model`` on the test set, exact
    compared: dict[str, Metrics] = field(default_factory=dict)  # every model scored, for the summary and plots
    history: dict = field(default_factory=dict)  # {curve: {metric: [values per round or epoch]}}
    data: dict = field(default_factory=dict)  # what else the run record keeps (members, candidates, ...)
    result: object = None  # the trainer's own result object


Say = Callable[[str], None]
Timed = Callable[[str, float], None]


def train_step(spec: PipelineSpec, train: Dataset, valid: Dataset | None, test: Dataset, *, client,
               timed: Timed, say: Say) -> Trained:
    """Train ``spec.model`` on ``train`` (the RUS sample), stop early on ``valid``, score on ``test``."""
    step = _STEPS[spec.model.type]
    return step(spec, spec.model, train, valid, test, client, timed, say)


def _xgboost(spec, model: XGBoostModel, train, valid, test, client, timed, say) -> Trained:
    say(f"train: xgboost, up to {model.num_boost_round} rounds"
        + (f", early stopping after {model.early_stopping_rounds}" if model.early_stopping_rounds and valid else ""))
    from .xgb import train_xgboost

    result = train_xgboost(
        train, test, valid=valid, params=model.params, num_boost_round=model.num_boost_round,
        early_stopping_rounds=model.early_stopping_rounds if valid is not None else None,
        scale_pos_weight=model.scale_pos_weight, seed=model.seed, threshold=spec.metrics.threshold,
        correct_probabilities=spec.sampling.correct_probabilities, client=client,
        on_phase=lambda phase, seconds: (timed(phase, seconds), say(f"{phase}: {seconds:.1f}s")),
    )
    return Trained("xgboost", result.booster, result.metrics, {"xgboost": result.metrics}, result.history,
                   {"best_iteration": result.best_iteration, "boosted_rounds": result.num_boosted_rounds,
                    "training_attempts": result.attempts}, result)


def _sklearn(spec, model: SklearnModel, train, valid, test, client, timed, say) -> Trained:
    name = _short_name(model.estimator)
    say(f"train: {name} in memory on a worker ({train.n_rows:,} rows)")
    return _fit_members("sklearn", {name: model}, "none", 2, model.seed, train, test, client, timed, say)


def _ensemble(spec, model: EnsembleModel, train, valid, test, client, timed, say) -> Trained:
    say(f"train: {len(model.members)} member(s) in parallel ({', '.join(model.members)})"
        + ("" if model.method == "none" else f", combined by {model.method}"))
    return _fit_members("ensemble", model.members, model.method, model.cv, model.seed, train, test, client, timed,
                        say)


def _fit_members(kind, specs, method, cv, seed, train, test, client, timed, say) -> Trained:
    """Fit the classifiers of ``specs`` side by side (``train_ensemble``) and combine them by ``method``."""
    from .ensemble import train_ensemble

    members = {name: _with_seed(make_estimator(m.estimator, m.params, m.preprocess), seed)
               for name, m in specs.items()}
    started = time.perf_counter()
    result = train_ensemble(members, train, test, method=method, cv=cv, seed=seed, client=client)
    timed("train", result.timings.get("parallel", 0.0) + result.timings.get("collect", 0.0))
    timed("metrics", result.timings.get("score", 0.0))
    if len(members) > 1:
        say(f"train: {time.perf_counter() - started:.1f}s wall, {result.timings['serial']:.1f}s of fits "
            f"({result.timings['serial'] / max(result.timings['parallel'], 1e-9):.2f}x in parallel)")
    combined = [m for m in ("stacking", "soft") if m in result.metrics]
    if combined:
        primary = combined[0]
        fitted = result.stacking if primary == "stacking" else result.soft
    else:  # the members alone: the best by PR AUC represents the run
        primary = max(result.members, key=lambda n: (result.metrics[n].pr_auc, result.metrics[n].roc_auc))
        fitted = result.members[primary]
    table = {name: {"roc_auc": m.roc_auc, "pr_auc": m.pr_auc, "fit_seconds": result.fit_seconds.get(name),
                    "worker": result.workers.get(name)} for name, m in result.metrics.items()}
    return Trained(kind, fitted, result.metrics[primary], dict(result.metrics),
                   {}, {"primary": primary, "models": table, "ensemble_timings": result.timings}, result)


def _incremental(spec, model: IncrementalModel, train, valid, test, client, timed, say) -> Trained:
    from .incremental import train_incremental

    estimator = make_estimator(model.estimator, model.params)
    say(f"train: {_short_name(model.estimator)} out of core, {model.epochs} epoch(s) over "
        f"{train.npartitions} partition(s) ({train.n_rows:,} rows)")
    result = train_incremental(
        train, test, estimator, epochs=model.epochs, scale=model.scale, seed=model.seed, client=client,
        on_epoch=lambda epoch, m: say(f"epoch {epoch}: test ROC AUC {m.roc_auc:.4f}, PR AUC {m.pr_auc:.4f}"),
    )
    _time_phases(timed, result.timings)
    return Trained("incremental", result.model, result.metrics, {"incremental": result.metrics},
                   {"test (per epoch)": {k: result.history[k] for k in ("roc_auc", "pr_auc")}},
                   {"epochs": result.history}, result)


def _averaged_sgd(spec, model: AveragedSGDModel, train, valid, test, client, timed, say) -> Trained:
    from .averaging import train_averaged_sgd

    say(f"train: SGD on every worker's partitions, averaged {'every epoch' if model.average_every_epoch else 'at the end'}")
    result = train_averaged_sgd(
        train, test, epochs=model.epochs, average_every_epoch=model.average_every_epoch, scale=model.scale,
        seed=model.seed, client=client, **model.params,
    )
    _time_phases(timed, result.timings)
    return Trained("averaged_sgd", result.model, result.metrics, {"averaged_sgd": result.metrics},
                   {"test (per epoch)": {k: result.history[k] for k in ("roc_auc", "pr_auc")}},
                   {"epochs": result.history, "workers": len(result.partitions)}, result)


def _search(spec, model: SearchModel, train, valid, test, client, timed, say) -> Trained:
    from ..train.incremental import score_frame
    from .search import search

    estimator = _with_seed(make_estimator(model.estimator, model.params, model.preprocess), model.seed)
    space = parse_search_space(model.grid, model.kind)
    n = len(ParameterGrid(space)) if model.kind == "grid" else model.n_iter
    say(f"search: {model.kind}, {n} candidate(s) x {model.cv} folds of {train.n_rows:,} rows"
        + (", RUS inside each training fold" if model.ratio or _has_ratio(space) else ""))
    result = search(estimator, space, train, kind=model.kind, n_iter=model.n_iter, cv=model.cv, ratio=model.ratio,
                    scoring=tuple(model.scoring), refit=model.refit, seed=model.seed,
                    compare_default=model.compare_default, client=client)
    timed("train", result.tuning_seconds)
    best = result.best_estimator
    started = time.perf_counter()
    metrics = evaluate(score_frame(best, test, client=client), spec.metrics.threshold,
                       undersampling=train.info.get("undersample") if spec.sampling.correct_probabilities else None)
    timed("metrics", time.perf_counter() - started)
    versus = result.best_vs_default()
    say("search: best " + ", ".join(f"{k}={v!r}" for k, v in result.best_params.items())
        + f"; CV {model.refit} {result.best_scores[model.refit]:.4f}"
        + (f" vs default {result.default['mean_' + model.refit]:.4f}" if result.default else ""))
    return Trained("search", best, metrics, {"best": metrics}, {}, {
        "best_params": {k: _plain(v) for k, v in result.best_params.items()},
        "best_scores": result.best_scores,
        "candidates": _records(result.candidates),
        "best_vs_default": {row: {k: float(v) for k, v in values.items()} for row, values in versus.iterrows()},
        "tuning_seconds": result.tuning_seconds, "search_timings": result.timings,
    }, result)


def _hyperband(spec, model: HyperbandModel, train, valid, test, client, timed, say) -> Trained:
    from sklearn.pipeline import Pipeline

    from .adaptive import hyperband_search
    from .incremental import dataset_arrays, fit_preprocessor, score_frame

    estimator = _with_seed(make_estimator(model.estimator, model.params), model.seed)
    say(f"search: Hyperband over {_short_name(model.estimator)}, up to {model.max_iter} partial_fit calls per model")
    started = time.perf_counter()
    preprocess = fit_preprocessor(train, scale=model.scale)
    with client.as_current():
        X, y, _ = dataset_arrays(train, preprocess)
        found = hyperband_search(estimator, parse_search_space(model.grid, "random"), X, y, max_iter=model.max_iter,
                                 aggressiveness=model.aggressiveness, random_state=model.seed, client=client,
                                 classes=[0, 1])
    timed("train", time.perf_counter() - started)
    best = Pipeline([*preprocess.steps, ("model", found.best_estimator_)])
    started = time.perf_counter()
    metrics = evaluate(score_frame(best, test, client=client), spec.metrics.threshold)
    timed("metrics", time.perf_counter() - started)
    results = found.cv_results_
    say(f"search: {len(results['params'])} models, best validation score {found.best_score_:.4f}")
    return Trained("hyperband", best, metrics, {"best": metrics}, {}, {
        "best_params": {k: _plain(v) for k, v in found.best_params_.items()},
        "best_validation_score": float(found.best_score_),
        "candidates": [{"params": {k: _plain(v) for k, v in p.items()}, "score": float(s),
                        "partial_fit_calls": int(c), "bracket": int(b)}
                       for p, s, c, b in zip(results["params"], results["test_score"],
                                             results["partial_fit_calls"], results["bracket"])],
    }, found)


def _xgboost_halving(spec, model: XGBoostHalvingModel, train, valid, test, client, timed, say) -> Trained:
    from .adaptive import xgboost_successive_halving
    from .xgb import predict_scores

    if valid is None:
        raise ConfigError("model.type xgboost_halving ranks candidates on the validation set",
                          "set split.validation_size above 0")
    candidates = list(ParameterGrid(model.grid)) if isinstance(model.grid, dict) else list(model.grid)
    say(f"search: successive halving over {len(candidates)} XGBoost candidate(s), "
        f"{model.min_rounds}..{model.max_rounds} rounds, eta {model.eta}")
    started = time.perf_counter()
    result = xgboost_successive_halving(train, valid, candidates, min_rounds=model.min_rounds,
                                        max_rounds=model.max_rounds, eta=model.eta, seed=model.seed, client=client)
    timed("train", time.perf_counter() - started)
    started = time.perf_counter()
    scored = client.persist(predict_scores(result.best_booster, test, client=client))
    wait(scored)
    metrics = evaluate(scored, spec.metrics.threshold,
                       undersampling=train.info.get("undersample") if spec.sampling.correct_probabilities else None)
    timed("metrics", time.perf_counter() - started)
    say(f"search: best {result.best_params}, validation PR AUC {result.best_score:.4f}")
    return Trained("xgboost_halving", result.best_booster, metrics, {"best": metrics}, {}, {
        "best_params": {k: _plain(v) for k, v in result.best_params.items()},
        "best_validation_pr_auc": float(result.best_score), "rungs": result.rungs,
        "candidates": _records(result.table),
    }, result)


_STEPS = {
    "xgboost": _xgboost, "sklearn": _sklearn, "ensemble": _ensemble, "incremental": _incremental,
    "averaged_sgd": _averaged_sgd, "search": _search, "hyperband": _hyperband,
    "xgboost_halving": _xgboost_halving,
}


def _short_name(estimator: str) -> str:
    return estimator.rpartition(".")[2]


def _with_seed(estimator, seed: int):
    """Every ``random_state`` left at None set to ``seed``, so the same seed gives the same model."""
    unset = {k: seed for k, v in estimator.get_params(deep=True).items()
             if (k == "random_state" or k.endswith("__random_state")) and v is None}
    return estimator.set_params(**unset)


def _has_ratio(space) -> bool:
    return any("ratio" in grid for grid in (space if isinstance(space, list) else [space]))


def _time_phases(timed: Timed, timings: dict) -> None:
    for phase, seconds in timings.items():
        timed({"evaluate": "metrics"}.get(phase, phase), seconds)


def _plain(value):
    """A JSON-friendly copy of a parameter value (numpy scalars, tuples, estimators)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _records(frame) -> list[dict]:
    return [{k: _plain(v) if not isinstance(v, dict) else v for k, v in row.items()}
            for row in frame.to_dict(orient="records")]
