"""Model inspection: feature importances, ROC / PR / confusion plots, saving models, scores to Parquet.

Plots are drawn with matplotlib's Agg canvas (no display, no global backend change) from the exact
curves and counts in :class:`~workbench.metrics.Metrics`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..errors import WorkbenchError
from ..metrics import Metrics
from ..metrics.scoring import positive_scores

__all__ = [
    "feature_importances", "plot_importances", "plot_roc", "plot_pr", "plot_confusion",
    "save_model", "load_model", "predict_to_parquet",
]


# ---------------------------------------------------------------- importances


def feature_importances(model, features, top_k: int | None = 20) -> pd.DataFrame:
    """The ``top_k`` most important features, most important first.

    Columns: ``feature``, ``importance``, ``share`` (of the total) and ``kind``: ``"total_gain"``
    (the summed gain of an XGBoost booster's splits on the feature), ``"feature_importances_"`` (a scikit-learn
    model's own, e.g. mean impurity decrease) or ``"|coef|"`` (absolute coefficients of a linear
    model: comparable when the features were standardised). ``model`` may be an ``xgboost.Booster``,
    an :class:`~workbench.train.XGBoostResult`, or a scikit-learn model, including a ``Pipeline``
    (its last step), a :class:`~workbench.train.RUSClassifier` or a ``FrozenEstimator``.
    """
    features = list(features)
    values, kind = _importances(model, features)
    if len(values) != len(features):
        raise WorkbenchError(f"the model has {len(values)} inputs but {len(features)} feature names were given",
                             "pass the features the model was trained on (Dataset.features)")
    total = float(np.sum(values))
    table = pd.DataFrame({"feature": features, "importance": np.asarray(values, dtype="float64")})
    table["share"] = table["importance"] / total if total > 0 else 0.0
    table["kind"] = kind
    table = table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    return table if top_k is None else table.head(top_k)


def _importances(model, features: list[str]) -> tuple[np.ndarray, str]:
    import xgboost as xgb
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import Pipeline

    seen = model
    while True:
        if isinstance(model, xgb.Booster):
            return _booster_gain(model, features), "total_gain"
        if isinstance(model, xgb.XGBModel):
            return _booster_gain(model.get_booster(), features), "total_gain"
        if hasattr(model, "booster") and isinstance(model.booster, xgb.Booster):  # XGBoostResult
            model = model.booster
        elif isinstance(model, Pipeline):
            model = model[-1]
        elif isinstance(model, FrozenEstimator):
            model = model.estimator
        elif _has(model, "feature_importances_"):
            return np.asarray(model.feature_importances_, dtype="float64"), "feature_importances_"
        elif _has(model, "coef_"):
            coef = np.asarray(model.coef_, dtype="float64")
            return np.abs(coef).reshape(-1) if coef.ndim == 1 or coef.shape[0] == 1 else np.abs(coef).sum(axis=0), "|coef|"
        elif _has(model, "estimator_"):
            model = model.estimator_
        else:
            raise WorkbenchError(
                f"{type(seen).__name__} has no feature importances or coefficients",
                "use sklearn.inspection.permutation_importance for it",
            )


def _has(model, name: str) -> bool:
    try:
        return getattr(model, name) is not None
    except AttributeError:  # includes NotFittedError and properties that the inner model lacks
        return False


def _booster_gain(booster, features: list[str]) -> np.ndarray:
    gain = booster.get_score(importance_type="total_gain")
    names = booster.feature_names or [f"f{i}" for i in range(len(features))]
    return np.array([float(gain.get(name, 0.0)) for name in names])


# ---------------------------------------------------------------- plots


def _figure(width=6.0, height=4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return str(path)


def plot_importances(table: pd.DataFrame, path) -> str:
    """A horizontal bar chart of a :func:`feature_importances` table, most important on top (PNG)."""
    figure, ax = _figure(7.0, 0.9 + 0.28 * max(len(table), 1))
    ax.barh(table["feature"][::-1], table["importance"][::-1], color="#4c72b0")
    kind = table["kind"].iloc[0] if len(table) else ""
    ax.set_xlabel({"total_gain": "total gain", "|coef|": "|coefficient|"}.get(kind, "importance"))
    ax.set_title(f"Top {len(table)} features")
    return _save(figure, path)


def _named(metrics) -> dict[str, Metrics]:
    named = metrics if isinstance(metrics, dict) else {"model": metrics}
    for name, m in named.items():
        if not isinstance(m, Metrics):
            raise WorkbenchError(f"{name!r} is a {type(m).__name__}, not Metrics", "pass result.metrics")
        if not m.curves:
            raise WorkbenchError(f"the metrics of {name!r} carry no curves", "compute them with workbench.evaluate")
    return named


def plot_roc(metrics: Metrics | dict[str, Metrics], path) -> str:
    """The exact ROC curve (``Metrics.curves``), or one per model for a dict of name -> Metrics (PNG)."""
    figure, ax = _figure()
    for name, m in _named(metrics).items():
        ax.plot(m.curves["roc"]["fpr"], m.curves["roc"]["tpr"], label=f"{name} (ROC AUC {m.roc_auc:.4f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return _save(figure, path)


def plot_pr(metrics: Metrics | dict[str, Metrics], path) -> str:
    """The exact precision-recall curve, with the positive rate as the chance line (PNG)."""
    figure, ax = _figure()
    named = _named(metrics)
    for name, m in named.items():
        ax.step(m.curves["pr"]["recall"], m.curves["pr"]["precision"], where="pre",  # as average precision sums it
                label=f"{name} (PR AUC {m.pr_auc:.4f})")
    first = next(iter(named.values()))
    ax.axhline(first.n_positive / first.n, linestyle=":", color="grey", label="chance (positive rate)")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    return _save(figure, path)


def plot_confusion(metrics: Metrics, path, *, corrected: bool = False) -> str:
    """The confusion matrix at ``metrics.threshold`` (with ``corrected``: of the probabilities
    corrected for under-sampling, ``Metrics.corrected``) as an annotated 2 x 2 image (PNG)."""
    counts = metrics.corrected if corrected else metrics.to_dict()
    if counts is None:
        raise WorkbenchError("these metrics have no corrected counts", "train on an under-sampled Dataset, or corrected=False")
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    figure, ax = _figure(4.8, 4.2)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:,}", ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black", fontsize=12)
    ax.set_xticks([0, 1], labels=["predicted 0", "predicted 1"])
    ax.set_yticks([0, 1], labels=["actual 0", "actual 1"])
    ax.set_title(f"Confusion at threshold {metrics.threshold:g}" + (" (corrected)" if corrected else ""))
    return _save(figure, path)


# ---------------------------------------------------------------- models on disk


def save_model(model, path) -> str:
    """Write ``model`` to ``path``: an XGBoost booster (or XGBoostResult) in XGBoost's own JSON format
    (``path`` must end in ``.json``), anything else with joblib (``.joblib`` by convention)."""
    import joblib
    import xgboost as xgb

    path = Path(path)
    booster = model.booster if hasattr(model, "booster") and isinstance(model.booster, xgb.Booster) else model
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(booster, xgb.Booster):
        if path.suffix != ".json":
            raise WorkbenchError(f"{path} does not end in .json", "XGBoost boosters are saved as JSON: name it <model>.json")
        booster.save_model(str(path))
    else:
        joblib.dump(model, path)
    return str(path)


def load_model(path):
    """Read a model written by :func:`save_model`: a ``.json`` file as an ``xgboost.Booster``, else joblib.

    joblib files are pickles: load only files you trust.
    """
    import joblib
    import xgboost as xgb

    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"no model file at {path}", "check the path")
    if path.suffix == ".json":
        return xgb.Booster(model_file=str(path))
    return joblib.load(path)


# ---------------------------------------------------------------- scores to Parquet


def predict_to_parquet(model, data: Dataset, out_dir, client=None, *, overwrite: bool = False) -> str:
    """Score every row of ``data`` on the workers and write Parquet files to ``out_dir``.

    Each partition becomes one file with the frame's index (``row``), ``score`` (probability of
    class 1, or ``decision_function`` for models without probabilities) and the target column if the
    frame has it. Nothing is collected to the client. ``model`` is an ``xgboost.Booster``, an
    XGBoostResult or a fitted scikit-learn classifier. Refuses a non-empty ``out_dir`` unless
    ``overwrite``.
    """
    import xgboost as xgb
    from distributed import get_client

    client = client or get_client()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise WorkbenchError(f"{out} is not empty", "choose another directory, or replace its files with overwrite=True (--overwrite)")
    if hasattr(model, "booster") and isinstance(model.booster, xgb.Booster):
        model = model.booster
    target = data.target if data.target in data.frame.columns else None
    [remote] = client.scatter([model], broadcast=True, hash=False)
    meta = pd.DataFrame({"score": pd.Series([], dtype="float64"),
                         **({target: pd.Series([], dtype="int8")} if target else {})})
    meta.index = data.frame._meta.index[:0]
    scored = data.frame.map_partitions(_score_partition, remote, list(data.features), target, meta=meta)
    client.compute(scored.to_parquet(os.fspath(out), write_index=True, overwrite=overwrite, compute=False)).result()
    return str(out)


def _score_partition(df: pd.DataFrame, model, features, target) -> pd.DataFrame:
    out = pd.DataFrame({"score": positive_scores(model, df, features)}, index=df.index)
    if target:
        out[target] = df[target].to_numpy(dtype="int8")
    return out
