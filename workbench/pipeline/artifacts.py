"""Model inspection: feature importances, ROC / PR / confusion plots, saving models, scores to Parquet.

Plots are drawn with matplotlib's Agg canvas (no display, no global backend change) from the exact
curves and counts in :class:`~workbench.metrics.Metrics`.

Models are saved in formats that load without running code from the file: XGBoost boosters in
XGBoost's own JSON (or UBJ), everything else with skops (``.skops``), which rebuilds only the types
it is told to trust (:data:`TRUSTED_MODULES`). A pickle or joblib file can run any code when it is
loaded, so :func:`load_model` opens one only with ``trust=True`` (``workbench predict --trust``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.dataset import Dataset
from ..data.files import put_in_place, temporary_beside
from ..errors import DataError, WorkbenchError, free_space, is_disk_full
from ..metrics import Metrics
from ..metrics.scoring import positive_scores

__all__ = [
    "feature_importances", "plot_importances", "plot_roc", "plot_pr", "plot_confusion",
    "save_model", "load_model", "check_model_file", "untrusted_types", "predict_to_parquet",
    "BOOSTER_SUFFIXES", "SKOPS_SUFFIX", "PICKLE_SUFFIXES", "TRUSTED_MODULES",
]

BOOSTER_SUFFIXES = (".json", ".ubj")  # XGBoost's own formats: a tree ensemble, no code
SKOPS_SUFFIX = ".skops"  # skops: only the types trusted below are rebuilt
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")  # run code when loaded: only with trust=True
#: A skops file is loaded without ``trust`` when every type it names is a class of one of these
#: packages (the workbench's own estimators, such as RUSClassifier; scikit-learn's, including their
#: tree structures and Bunch; XGBoost's scikit-learn wrappers, whose Booster is restored from
#: XGBoost's own format) or one of :data:`TRUSTED_TYPES`. Functions are never trusted this way: a
#: file naming one (``builtins.eval``, ``os.system``) needs ``trust``.
TRUSTED_MODULES = ("workbench", "sklearn", "xgboost")
TRUSTED_TYPES = frozenset({"numpy.dtype"})


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
    if counts is None or "tn" not in counts:
        raise WorkbenchError("these metrics have no corrected counts", "train on an under-sampled Dataset, or corrected=False")
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    figure, ax = _figure(4.8, 4.2)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:,}", ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black", fontsize=12)
    ax.set_xticks([0, 1], labels=["predicted 0", "predicted 1"])
    ax.set_yticks([0, 1], labels=["actual 0", "actual 1"])
    chosen = f", {metrics.threshold_rule} on validation" if metrics.threshold_rule in ("f1", "cost") else ""
    ax.set_title(f"Confusion at threshold {metrics.threshold:.4g}{chosen}" + (" (corrected)" if corrected else ""))
    return _save(figure, path)


def plot_calibration(metrics: Metrics, path) -> str:
    """The reliability diagram of ``Metrics.calibration`` (after the RUS correction if it applied),
    with the rows per bin on a second axis (PNG)."""
    c = metrics.calibration
    if not c:
        raise WorkbenchError("these metrics have no calibration curve", "evaluate them with an Evaluation")
    figure, ax = _figure()
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    ax.plot(c["prob_pred"], c["prob_true"], marker="o", label="model" + (" (corrected for RUS)" if c["corrected"] else ""))
    ax.set(xlabel="mean predicted probability", ylabel="fraction of positives", xlim=(0, 1), ylim=(0, 1.01),
           title=f"Calibration ({c['bins']} equal-width bins)")
    rows = ax.twinx()
    rows.bar(c["prob_pred"], c["counts"], width=0.6 / c["bins"], alpha=0.2, color="#4c72b0")
    rows.set_yscale("log")
    rows.set_ylabel("rows in bin")
    ax.legend(loc="upper left")
    return _save(figure, path)


# ---------------------------------------------------------------- models on disk


def save_model(model, path) -> str:
    """Write ``model`` to ``path`` in the format its suffix names.

    An XGBoost booster (or XGBoostResult) goes in XGBoost's own format: ``.json`` (or ``.ubj``).
    Anything else (a scikit-learn model, a workbench estimator) goes through skops: ``.skops``.
    ``.joblib``, ``.pkl`` and ``.pickle`` write a pickle with joblib, which :func:`load_model` opens
    only with ``trust=True``. A full disk is a one-line WorkbenchError and leaves no file.
    """
    import joblib
    import xgboost as xgb

    path = Path(path)
    booster = model.booster if hasattr(model, "booster") and isinstance(model.booster, xgb.Booster) else model
    if isinstance(booster, xgb.Booster):
        if path.suffix not in BOOSTER_SUFFIXES:
            raise WorkbenchError(f"{path} does not end in .json", "XGBoost boosters are saved as JSON: name it <model>.json")
    elif path.suffix != SKOPS_SUFFIX and path.suffix not in PICKLE_SUFFIXES:
        raise WorkbenchError(f"{path} does not end in {SKOPS_SUFFIX}",
                             f"save scikit-learn models as <model>{SKOPS_SUFFIX} (skops: loads without running code)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if isinstance(booster, xgb.Booster):  # written by Python, not XGBoost: a full disk is an OSError
            path.write_bytes(booster.save_raw(raw_format=path.suffix[1:]))
        elif path.suffix == SKOPS_SUFFIX:
            import skops.io

            skops.io.dump(model, path)
        else:
            joblib.dump(model, path)
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise WorkbenchError(f"no space left in {path.parent} for {path.name} ({free_space(path.parent)} free)",
                                 "free space there, or save the model on a larger disk") from None
        raise
    return str(path)


def untrusted_types(path) -> list[str]:
    """The types a skops file names that the workbench does not trust by itself (see
    :data:`TRUSTED_MODULES`); read from the file's schema, nothing in it is run or built."""
    import importlib

    import skops.io

    try:
        names = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - a file that is no skops archive: zipfile, JSON or KeyError
        raise DataError(f"{path} is not a readable skops file ({type(exc).__name__}: {exc})",
                        "re-run the pipeline to save the model again") from None
    untrusted = []
    for name in names:
        module, _, attr = name.rpartition(".")
        trusted = name in TRUSTED_TYPES
        if not trusted and module.split(".")[0] in TRUSTED_MODULES:
            try:  # an installed, trusted package: importing it runs nothing from the file
                trusted = isinstance(getattr(importlib.import_module(module), attr), type)
            except (ImportError, AttributeError):
                trusted = False
        if not trusted:
            untrusted.append(name)
    return untrusted


def check_model_file(path, *, trust: bool = False) -> None:
    """Refuse, in one line, a model file that would run code when loaded, unless ``trust``: a pickle
    or joblib file, or a skops file that names types beyond those the workbench trusts."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"no model file at {path}", "check the path")
    if trust or path.suffix in BOOSTER_SUFFIXES:
        return
    if path.suffix == SKOPS_SUFFIX:
        untrusted = untrusted_types(path)
        if untrusted:
            shown = ", ".join(untrusted[:5]) + (f" and {len(untrusted) - 5} more" if len(untrusted) > 5 else "")
            raise WorkbenchError(f"{path} names types the workbench does not trust ({shown}): loading it could run code",
                                 "pass --trust (trust=True) only if you trust whoever made the file")
        return
    raise WorkbenchError(
        f"{path} is a pickle ({path.suffix or 'no suffix'}): loading it runs whatever code it holds",
        "pass --trust (trust=True) only if you trust whoever made the file, or re-run the pipeline, "
        f"which saves scikit-learn models with skops ({SKOPS_SUFFIX})",
    )


def load_model(path, *, trust: bool = False):
    """Read a model written by :func:`save_model`: ``.json``/``.ubj`` as an ``xgboost.Booster``,
    ``.skops`` through skops, trusting the types the workbench trusts (:data:`TRUSTED_MODULES`).

    A pickle or joblib file, or a skops file naming other types, is loaded only with ``trust=True``:
    loading it can run any code it holds (see docs/security.md).
    """
    import xgboost as xgb

    path = Path(path)
    check_model_file(path, trust=trust)
    if path.suffix in BOOSTER_SUFFIXES:
        try:
            return xgb.Booster(model_file=str(path))
        except xgb.core.XGBoostError as exc:
            raise DataError(f"{path} is not a readable XGBoost model ({str(exc).splitlines()[0]})",
                            "re-run the pipeline to save the model again") from None
    if path.suffix == SKOPS_SUFFIX:
        import skops.io

        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))  # checked above
    import joblib

    return joblib.load(path)


# ---------------------------------------------------------------- scores to Parquet


def predict_to_parquet(model, data: Dataset, out_dir, client=None, *, overwrite: bool = False) -> str:
    """Score every row of ``data`` on the workers and write Parquet files to ``out_dir``.

    Each partition becomes one file (``part.<i>.parquet``) with the frame's index (``row``),
    ``score`` (probability of class 1, or ``decision_function`` for models without probabilities)
    and the target column if the frame has it. Nothing is collected to the client. ``model`` is an
    ``xgboost.Booster``, an XGBoostResult or a fitted scikit-learn classifier. Refuses a non-empty
    ``out_dir`` unless ``overwrite``. The files are written into a temporary directory beside
    ``out_dir`` and moved into place when all are complete, so a failed write (a full disk) leaves
    ``out_dir`` as it was.
    """
    import dask
    import xgboost as xgb
    from distributed import get_client, wait

    client = client or get_client()
    out = Path(out_dir).absolute()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise WorkbenchError(f"{out_dir} is not empty", "choose another directory, or replace its files with overwrite=True (--overwrite)")
    if hasattr(model, "booster") and isinstance(model.booster, xgb.Booster):
        model = model.booster
    target = data.target if data.target in data.frame.columns else None
    [remote] = client.scatter([model], broadcast=True, hash=False)
    meta = pd.DataFrame({"score": pd.Series([], dtype="float64"),
                         **({target: pd.Series([], dtype="int8")} if target else {})})
    meta.index = data.frame._meta.index[:0]
    scored = data.frame.map_partitions(_score_partition, remote, list(data.features), target, meta=meta)
    temporary = temporary_beside(out)
    write = dask.delayed(_write_scores, pure=False)
    try:
        temporary.mkdir(parents=True)
        tasks = [write(part, str(temporary / f"part.{i}.parquet")) for i, part in enumerate(scored.to_delayed())]
        futures = client.compute(tasks)
        try:
            wait(futures)  # every write ends, or fails, before the files are moved or removed
            client.gather(futures)
        finally:
            client.cancel(futures)
        put_in_place(temporary, out)
    except BaseException as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        if is_disk_full(exc):
            raise DataError(f"no space left in {out.parent} for the scores ({free_space(out.parent)} free after "
                            f"removing the partial files); {out_dir} is unchanged",
                            "free space there, or write the scores to a larger disk (--out DIR)") from None
        raise
    return str(out_dir)


def _score_partition(df: pd.DataFrame, model, features, target) -> pd.DataFrame:
    out = pd.DataFrame({"score": positive_scores(model, df, features)}, index=df.index)
    if target:
        out[target] = df[target].to_numpy(dtype="int8")
    return out


def _write_scores(frame: pd.DataFrame, path: str) -> int:
    """One partition's scores as one Parquet file (on a worker); a full disk is a one-line DataError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=True), path)
    except OSError as exc:  # raised as a workbench error: the client reports it, the worker logs nothing
        if is_disk_full(exc):
            raise DataError(f"no space left in {os.path.dirname(os.path.dirname(path))} for the scores",
                            "free space there, or write the scores to a larger disk (--out DIR)") from None
        raise
    return len(frame)
