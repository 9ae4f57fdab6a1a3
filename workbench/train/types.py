"""The built-in model types: for each, its spec, its fit function and how its run is shown."""

from __future__ import annotations

from ..config import (AveragedSGDModel, EnsembleModel, HyperbandModel, IncrementalModel, SearchModel, SklearnModel,
                      XGBoostHalvingModel, XGBoostModel)
from .registry import ModelType, ModelView, register_model_type


def _not_yet(spec, context):  # replaced by the fit functions of this module (work in progress)
    raise NotImplementedError


# ---------------------------------------------------------------- how runs are shown


def _show_xgboost(d: dict) -> ModelView:
    if "best_iteration" not in d:
        return ModelView()
    return ModelView((f"xgboost: {d['best_iteration'] + 1} trees kept (best validation round) "
                      f"of {d['boosted_rounds']} trained",))


def _show_members(d: dict) -> ModelView:
    lines, tables = [], {}
    if "models" in d:
        kind = d.get("model_type", "ensemble")
        lines.append(f"{kind}; test scores of every model (the run's metrics are those of {d['primary']})")
        tables["models"] = [{"model": name, **row} for name, row in d["models"].items()]
        t = d.get("ensemble_timings", {})
        if t.get("parallel"):
            lines.append(f"in parallel: {t['parallel']:.1f}s wall for {t['serial']:.1f}s of fits "
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
        lines.append(f"tuning: {d['tuning_seconds']:.1f}s")
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
    ModelType("xgboost", XGBoostModel, _not_yet, _show_xgboost,
              "Distributed XGBoost on the RUS sample, early stopping on the validation set"),
    ModelType("sklearn", SklearnModel, _not_yet, _show_members,
              "One scikit-learn classifier fitted in memory on a worker"),
    ModelType("ensemble", EnsembleModel, _not_yet, _show_members,
              "Several classifiers fitted in parallel, combined by soft voting and/or stacking"),
    ModelType("incremental", IncrementalModel, _not_yet, _show_epochs,
              "Out-of-core partial_fit over the Parquet partitions"),
    ModelType("averaged_sgd", AveragedSGDModel, _not_yet, _show_epochs,
              "Parallel SGD with model averaging"),
    ModelType("search", SearchModel, _not_yet, _show_search, "Grid or random search with stratified CV"),
    ModelType("hyperband", HyperbandModel, _not_yet, _show_search, "dask-ml Hyperband over a partial_fit estimator"),
    ModelType("xgboost_halving", XGBoostHalvingModel, _not_yet, _show_search,
              "Successive halving over XGBoost parameters, boosting rounds as the budget"),
):
    register_model_type(_type)
