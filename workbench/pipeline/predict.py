"""Scoring new data with a trained model: a recorded run (by id) or a model file, an export read with
the same reader settings, and predictions written as Parquet out of core."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from ..data.bigquery import read_bigquery_export
from ..data.reach import Need, check_nodes_see, export_needs
from ..errors import DataError, WorkbenchError
from ..metrics import Metrics, evaluate, score_scale
from ..stores.runs import RunStore
from .artifacts import (
    BOOSTER_SUFFIXES,
    PICKLE_SUFFIXES,
    SKOPS_SUFFIX,
    check_model_file,
    load_model,
    predict_to_parquet,
)

__all__ = ["Prediction", "predict", "resolve_model"]


@dataclass
class Prediction:
    out: str  # the directory of Parquet files: row (index), score, and the label if the data has one
    rows: int
    model: str  # the model file used
    run_id: str | None  # the run it came from, if it was named by run id
    target: str | None  # the label column written beside the scores, None for unlabelled data
    metrics: Metrics | None  # exact metrics when the data carries the target


def predict(
    model: str | os.PathLike,
    data: str | os.PathLike | list,
    out: str | os.PathLike,
    *,
    target: str | None = None,
    drop: list[str] | None = None,
    runs_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    threshold: float = 0.5,
    infinite: str | None = None,
    trust: bool = False,
    client=None,
) -> Prediction:
    """Score every row of the export at ``data`` with ``model`` and write the scores to ``out``.

    ``model`` is a model file (``.json`` for XGBoost, ``.skops`` for scikit-learn models) or the id
    (or a unique prefix) of a recorded run: then its saved model, its target, dropped columns,
    positive label, handling of infinities and feature list are used. If the data has the target
    column, the exact ROC AUC and PR AUC of the scores are returned as well; without it, the data is
    scored unlabelled. ``infinite`` overrides the run's ``data.infinite`` (default ``"error"``). A
    pickle or joblib model file is loaded only with ``trust=True`` (it can run code when loaded).
    """
    from distributed import get_client

    client = client or get_client()
    run_id, model_file, settings = resolve_model(model, runs_dir, trust=trust)
    if infinite is not None:
        settings = {**settings, "infinite": infinite}
    target = target or settings.get("target")
    drop = list(drop if drop is not None else settings.get("drop", []))
    needs = export_needs(data)
    if "://" not in os.fspath(out):  # the workers write the scores there
        directory = Path(out).expanduser().absolute()
        needs.append(Need(str(directory.parent), "write", "the scores", str(directory)))
    check_nodes_see(client, needs)  # a path only this host has: one line naming the nodes, before any read
    dataset = _read(data, target, drop, settings)
    features = settings.get("features")
    if features:
        missing = [f for f in features if f not in dataset.features]
        if missing:
            raise DataError(f"the data lacks feature(s) {missing} the model was trained on",
                            "score an export with the training data's columns")
        dataset = replace(dataset, features=tuple(features))
    fitted = load_model(model_file, trust=trust)
    _check_width(fitted, dataset.features, model_file)
    written = predict_to_parquet(fitted, dataset, out, client=client, overwrite=overwrite)
    import dask.dataframe as dd
    import pyarrow.dataset as ds

    rows = ds.dataset(written, format="parquet").count_rows()  # from the files' footers
    metrics = None
    if dataset.target is not None and dataset.target in dataset.frame.columns:
        scored = dd.read_parquet(written, columns=["score", dataset.target])
        metrics = evaluate(scored.rename(columns={dataset.target: "label"}), threshold, scale=score_scale(fitted))
    return Prediction(out=written, rows=rows, model=str(model_file), run_id=run_id,
                      target=dataset.target if metrics is not None else None, metrics=metrics)


def resolve_model(model, runs_dir=None, *, trust: bool = False) -> tuple[str | None, Path, dict]:
    """``(run id or None, model file, the run's reader settings)`` of a model file or a run id,
    checked before anything is read: a failed run, a missing file, and a model file that would run
    code when loaded (unless ``trust``) are one-line errors."""
    run_id, path, settings = _resolve(model, runs_dir)
    check_model_file(path, trust=trust)
    return run_id, path, settings


def _resolve(model, runs_dir) -> tuple[str | None, Path, dict]:
    path = Path(model)
    if path.is_file():
        return None, path, {}
    if path.suffix in (*BOOSTER_SUFFIXES, SKOPS_SUFFIX, *PICKLE_SUFFIXES) or os.sep in str(model):
        raise WorkbenchError(f"no model file at {path}", "give a model file or the id of a recorded run")
    record = RunStore(runs_dir).get(str(model))
    if record.status != "succeeded":
        raise WorkbenchError(f"run {record.id} {record.status}: it has no trained model",
                             "name a run that succeeded (workbench runs)")
    relative = record.artifacts.get("model")
    if not relative:
        raise WorkbenchError(f"run {record.id} saved no model", "name another run (workbench runs)")
    data = record.spec.get("data", {})
    settings = {"target": data.get("target"), "drop": data.get("drop", []), "positive": data.get("positive"),
                "keep_nested": data.get("keep_nested", False), "infinite": data.get("infinite", "error"),
                "features": record.data.get("features")}
    return record.id, Path(record.path) / relative, settings


def _read(data, target, drop, settings):
    """The export with the model's reader settings; unlabelled if it has no ``target`` column."""
    keep_nested, infinite = settings.get("keep_nested", False), settings.get("infinite", "error")
    try:
        return read_bigquery_export(data, target, drop=drop, positive=settings.get("positive"),
                                    keep_nested=keep_nested, infinite=infinite)
    except DataError as exc:
        unlabelled = (f"target column {target!r} is not in the export", f"target column {target!r} is null in every row")
        if target is None or not exc.problem.startswith(unlabelled):
            raise
    # unlabelled data: the label column, if there, is not read (it is no feature of the model)
    return read_bigquery_export(data, None, drop=drop, keep_nested=keep_nested, infinite=infinite)


def _check_width(model, features, model_file) -> None:
    import xgboost as xgb

    named = list(model.feature_names or []) if isinstance(model, xgb.Booster) else []
    missing = [name for name in named if name not in features]
    if missing:
        raise DataError(f"the data lacks feature(s) {missing} the model {model_file} was trained on",
                        "score an export with the training data's columns")
    expected = model.num_features() if isinstance(model, xgb.Booster) else getattr(model, "n_features_in_", None)
    if expected is not None and expected != len(features):
        raise DataError(
            f"{model_file} takes {expected} features but the data has {len(features)} ({', '.join(features)})",
            "read the data with the training run's settings: pass its run id as MODEL, or --drop the extra columns",
        )
