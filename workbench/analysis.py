"""The analysis of a sweep (or of any table of results with the same columns): one-way ANOVA and
Tukey HSD of time and AUC against the worker count for each RUS ratio, speed-up and parallel
efficiency, the smallest data size at which more workers are significantly faster, each axis's
effect relative to a baseline cell, and the Ernest performance model behind ``workbench recommend``.

The statistics are statsmodels' own (``ols`` + ``anova_lm``, ``pairwise_tukeyhsd``) and the Ernest
fit is SciPy's non-negative least squares; this module only shapes the tables.

A results table has one row per cell (trial) and at least the columns ``workers`` and a time column
(``train_seconds`` by default), plus ``ratio`` (or ``sampling.ratio``) and/or ``rows``; ``roc_auc``
and ``pr_auc`` are analysed when present, and a ``status`` column keeps only ``succeeded`` rows.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, WorkbenchError

__all__ = [
    "load_results",
    "read_table",
    "anova",
    "tukey",
    "tukey_groups",
    "speedup",
    "crossover",
    "effects",
    "ErnestModel",
    "fit_ernest",
    "Recommendation",
    "recommend",
    "ratio_value",
]

TIME = "train_seconds"
SIZE_COLUMNS = ("ratio", "rows")


# ---------------------------------------------------------------- the table


def read_table(path: str | os.PathLike, *, columns: dict[str, str] | None = None, time: str = TIME) -> pd.DataFrame:
    """A user's table of results (CSV or Parquet), with ``columns`` renaming theirs to ours
    (``{"workers": "nodes"}`` reads their ``nodes`` column as ``workers``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results table {str(path)!r} does not exist", "give a CSV or Parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            table = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise DataError(f"cannot read {path} as {'Parquet' if path.suffix.lower() in ('.parquet', '.pq') else 'CSV'}: "
                        f"{' '.join(str(exc).split())[:160]}", "give a CSV (with a header row) or a Parquet file") from None
    return normalise(table, columns=columns, time=time, source=str(path))


def normalise(table: pd.DataFrame, *, columns: dict[str, str] | None = None, time: str = TIME,
              source: str = "the table") -> pd.DataFrame:
    """Our column names and types, succeeded rows only; one-line ``DataError`` for a missing column."""
    table = table.copy()
    for ours, theirs in (columns or {}).items():
        if theirs not in table.columns:
            raise DataError(f"{source} has no column {theirs!r} (asked for as {ours})",
                            f"its columns are: {', '.join(map(str, table.columns))}")
        table[ours] = table[theirs]
    if "ratio" not in table.columns and "sampling.ratio" in table.columns:
        table["ratio"] = table["sampling.ratio"]
    missing = [c for c in ("workers", time) if c not in table.columns]
    if not any(c in table.columns for c in SIZE_COLUMNS):
        missing.append("ratio or rows")
    if missing:
        raise DataError(
            f"{source} lacks the column(s) {', '.join(missing)}",
            "a results table needs workers, a time column (train_seconds, or --time NAME), and ratio or rows; "
            "rename yours with --column ours=theirs (see docs/sweeps.md)",
        )
    if "status" in table.columns:
        table = table[table["status"].astype(str) == "succeeded"]
    table = table[table[time].notna()]
    table["workers"] = pd.to_numeric(table["workers"], errors="coerce")
    if table["workers"].isna().any() or (table["workers"] < 1).any():
        raise DataError(f"{source}: workers must be whole numbers of at least 1", "fix the workers column")
    table["workers"] = table["workers"].astype(int)
    table[time] = pd.to_numeric(table[time], errors="coerce").astype(float)
    if "ratio" in table.columns:
        table["ratio"] = table["ratio"].map(_ratio_label)
    if "rows" in table.columns:
        table["rows"] = pd.to_numeric(table["rows"], errors="coerce")
    if table.empty:
        raise DataError(f"{source} has no succeeded rows with a {time} value", "run the sweep, or check the table")
    return table.reset_index(drop=True)


def load_results(source, *, runs_dir=None, columns: dict[str, str] | None = None, time: str = TIME) -> pd.DataFrame:
    """A results table from a sweep id (in the run store), a CSV/Parquet path, or a DataFrame."""
    unit = "nodes" if (columns or {}).get("workers") == "nodes" else "workers"
    if isinstance(source, pd.DataFrame):
        table = normalise(source, columns=columns, time=time)
        table.attrs["unit"] = unit
        return table
    text = os.fspath(source)
    if Path(text).suffix.lower() in (".csv", ".parquet", ".pq", ".tsv") or Path(text).is_file():
        table = read_table(text, columns=columns, time=time)
        table.attrs["unit"] = unit
        return table
    from .stores.sweeps import SweepStore

    raw = SweepStore(runs_dir).table(text)
    if raw.empty:
        raise WorkbenchError(f"sweep {raw.attrs['sweep']['id']!r} has no recorded cells yet", "run it with `workbench sweep FILE`")
    if not (raw["status"] == "succeeded").any():
        raise WorkbenchError(f"sweep {raw.attrs['sweep']['id']!r} has no succeeded cells ({len(raw)} failed)",
                             "fix what failed and run `workbench sweep FILE --retry-failed`")
    unit = "nodes" if "nodes" in (raw.attrs["sweep"]["spec"].get("axes") or {}) else "workers"
    if unit == "nodes" and "workers" not in (columns or {}):
        # A sweep over nodes scales in nodes: its analysis (speed-up, Tukey, Ernest) is per node count.
        raw = raw.assign(worker_processes=raw["workers"])
        columns = {"workers": "nodes", **(columns or {})}
    table = normalise(raw, columns=columns, time=time, source=f"sweep {raw.attrs['sweep']['id']}")
    table.attrs.update(raw.attrs)
    table.attrs["all_cells"] = raw
    table.attrs["unit"] = unit
    return table


def _ratio_label(value) -> str:
    if isinstance(value, str):
        return value.replace(" ", "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    from .sampling import parse_ratio

    k = parse_ratio(value)
    return f"1:{k:g}"


def ratio_value(label) -> float:
    """The majority rows per minority row of a ratio label ("1:10" -> 10); inf for "none"."""
    if label in (None, "none"):
        return math.inf
    from .sampling import parse_ratio

    try:
        return float(parse_ratio(label))
    except WorkbenchError:
        return math.nan


def size_order(table: pd.DataFrame, by: str = "ratio") -> list:
    """The values of ``by`` in order of increasing data size (median rows, else the ratio)."""
    values = list(dict.fromkeys(table[by]))
    if "rows" in table.columns and table["rows"].notna().any():
        rows = table.groupby(by, sort=False)["rows"].median()
        return sorted(values, key=lambda v: (rows.get(v, math.inf), ratio_value(v) if by == "ratio" else 0))
    if by == "ratio":
        return sorted(values, key=ratio_value)
    return sorted(values)


def _size_key(table: pd.DataFrame) -> str:
    return "ratio" if "ratio" in table.columns else "rows"


# ---------------------------------------------------------------- ANOVA and Tukey HSD


def anova(table: pd.DataFrame, response: str = TIME, factor: str = "workers", by: str | None = "ratio",
          typ: int = 2) -> dict:
    """One-way ANOVA of ``response`` against ``factor`` (a categorical) for each value of ``by``.

    Returns ``{by value: statsmodels anova_lm table}``; a group where the test is undefined (one
    level, or no replication) maps to a one-line reason instead.
    """
    from statsmodels.formula.api import ols
    from statsmodels.stats.anova import anova_lm

    out: dict = {}
    for value, frame, reason in _groups(table, response, factor, by):
        if reason:
            out[value] = reason
            continue
        model = ols("y ~ C(g)", data=frame).fit()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a zero residual (identical values) gives inf F
            result = anova_lm(model, typ=typ)
        result.index = [f"C({factor})" if name == "C(g)" else name for name in result.index]
        out[value] = result
    return out


def _by(table: pd.DataFrame, by: str | None):
    if by is None or by not in table.columns:
        return [(None, table)]
    return [(value, table[table[by] == value]) for value in size_order(table, by)]


def _groups(table: pd.DataFrame, response: str, factor: str, by: str | None):
    """``(value of by, frame of y and g, reason it cannot be tested or None)`` per group."""
    for value, sub in _by(table, by):
        frame = pd.DataFrame({"y": sub[response].astype(float), "g": sub[factor]}).dropna()
        yield value, frame, _untestable(frame)


def _untestable(frame: pd.DataFrame) -> str | None:
    levels = frame["g"].nunique()
    if levels < 2:
        return f"only {levels} level(s): nothing to compare"
    if len(frame) <= levels:
        return "no replication (one trial per level): add trials"
    if frame["y"].nunique() < 2:
        return "every value is the same"
    return None


def tukey(table: pd.DataFrame, response: str = TIME, factor: str = "workers", by: str | None = "ratio",
          alpha: float = 0.05) -> dict:
    """Tukey HSD of ``response`` between the levels of ``factor`` for each value of ``by``.

    Returns ``{by value: statsmodels TukeyHSDResults}`` (or a one-line reason)."""
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    out: dict = {}
    for value, frame, reason in _groups(table, response, factor, by):
        if reason:
            out[value] = reason
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[value] = pairwise_tukeyhsd(frame["y"].to_numpy(), frame["g"].to_numpy(), alpha=alpha)
    return out


def tukey_table(result) -> pd.DataFrame:
    """A TukeyHSDResults as a DataFrame: group1, group2, meandiff, p-adj, lower, upper, reject."""
    data = result.summary().data
    frame = pd.DataFrame(data[1:], columns=data[0])
    return frame


def tukey_groups(result, means: pd.Series | None = None) -> pd.DataFrame:
    """Compact letter display of a Tukey HSD result: levels sharing a letter are not significantly
    different (Piepho's insert-and-absorb). Letters are given in order of increasing mean."""
    levels = list(result.groupsunique)
    if means is None:
        data = pd.DataFrame({"g": result.groups, "y": result.data})
        means = data.groupby("g")["y"].mean()
    order = sorted(levels, key=lambda g: means[g])
    pairs = list(zip(*np.triu_indices(len(levels), 1)))
    columns = [set(levels)]
    for (i, j), reject in zip(pairs, result.reject):
        if not reject:
            continue
        a, b = levels[i], levels[j]
        split = []
        for column in columns:
            if a in column and b in column:
                split += [column - {a}, column - {b}]
            else:
                split.append(column)
        columns = [c for c in split if c and not any(c < other for other in split)]
        columns = [c for k, c in enumerate(columns) if c not in columns[:k]]
    columns.sort(key=lambda c: min(order.index(g) for g in c))
    letters = {g: "".join(_letter(k) for k, c in enumerate(columns) if g in c) for g in levels}
    return pd.DataFrame({"level": order, "mean": [float(means[g]) for g in order], "group": [letters[g] for g in order]})


def _letter(k: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[k] if k < 26 else f"[{k}]"


def significant_faster(result, a, b) -> bool:
    """Whether level ``b`` has a significantly smaller mean than level ``a`` in a Tukey result."""
    levels = list(result.groupsunique)
    pairs = list(zip(*np.triu_indices(len(levels), 1)))
    for (i, j), reject, diff in zip(pairs, result.reject, result.meandiffs):
        if {levels[i], levels[j]} == {a, b}:
            # meandiff is mean(levels[j]) - mean(levels[i])
            faster = diff < 0 if levels[j] == b else diff > 0
            return bool(reject and faster)
    return False


# ---------------------------------------------------------------- speed-up, crossover, effects


def summary(table: pd.DataFrame, response: str = TIME, by: str | None = None) -> pd.DataFrame:
    """Mean, median, standard deviation and count of ``response`` per (``by``, workers) cell."""
    by = by or _size_key(table)
    keys = [by, "workers"]
    grouped = table.groupby(keys, sort=False)[response]
    out = grouped.agg(["count", "mean", "median", "std"]).reset_index()
    if "rows" in table.columns and by != "rows":  # sized by rows: the rows are the key already
        out = out.merge(table.groupby(keys, sort=False)["rows"].median().rename("rows").reset_index(), on=keys)
    order = {v: i for i, v in enumerate(size_order(table, by))}
    return out.sort_values([by, "workers"], key=lambda s: s.map(order) if s.name == by else s).reset_index(drop=True)


def speedup(table: pd.DataFrame, response: str = TIME, by: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Speed-up S(w) = T(w0)/T(w) and parallel efficiency S(w)/(w/w0) per data size, from the
    median times, with w0 the fewest workers measured at that size. Rows: sizes; columns: workers."""
    by = by or _size_key(table)
    medians = table.groupby([by, "workers"])[response].median().unstack("workers")
    medians = medians.reindex(size_order(table, by))
    base_workers = medians.apply(lambda row: row.first_valid_index(), axis=1)
    base = medians.apply(lambda row: row[row.first_valid_index()], axis=1)
    speed = medians.rdiv(base, axis=0)
    efficiency = speed.copy()
    for w in efficiency.columns:
        efficiency[w] = speed[w] / (w / base_workers)
    speed.columns.name = efficiency.columns.name = "workers"
    return speed, efficiency


def crossover(table: pd.DataFrame, response: str = TIME, alpha: float = 0.05, by: str | None = None) -> pd.DataFrame:
    """For each worker count, the smallest data size at which it is significantly faster (Tukey HSD
    at ``alpha``) than every smaller worker count, and than the next smaller one."""
    by = by or _size_key(table)
    results = tukey(table, response, "workers", by, alpha)
    workers = sorted(table["workers"].unique())
    rows = table.groupby(by)["rows"].median() if "rows" in table.columns else None
    out = []
    for w in workers[1:]:
        fewer = [v for v in workers if v < w]
        entry = {"workers": int(w), "faster than every fewer": None, "rows (every fewer)": None,
                 "faster than the next fewer": None, "rows (next fewer)": None}
        for size in size_order(table, by):
            result = results.get(size)
            if isinstance(result, str) or result is None:
                continue
            present = set(result.groupsunique)
            if w not in present:
                continue
            measured = [v for v in fewer if v in present]
            if not measured:
                continue
            if entry["faster than every fewer"] is None and all(significant_faster(result, v, w) for v in measured):
                entry["faster than every fewer"] = size
                entry["rows (every fewer)"] = None if rows is None else _int(rows.get(size))
            if entry["faster than the next fewer"] is None and significant_faster(result, measured[-1], w):
                entry["faster than the next fewer"] = size
                entry["rows (next fewer)"] = None if rows is None else _int(rows.get(size))
        out.append(entry)
    return pd.DataFrame(out, columns=["workers", "faster than every fewer", "rows (every fewer)",
                                      "faster than the next fewer", "rows (next fewer)"])


def _int(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def effects(table: pd.DataFrame, axes: dict[str, list], baseline: dict, response: str = TIME,
            metrics: tuple[str, ...] = ("roc_auc", "pr_auc")) -> pd.DataFrame:
    """Each axis value's effect with every other axis at its baseline value: mean time and metrics
    over the trials, and each as % of the baseline cell."""
    def same(column, value):
        return table[column].map(_norm) == _norm(value)

    def pick(fixed: dict):
        mask = np.ones(len(table), dtype=bool)
        for key, value in fixed.items():
            column = "ratio" if key == "sampling.ratio" and key not in table.columns else key
            if column not in table.columns:
                return table.iloc[0:0]
            value = _ratio_label(value) if column == "ratio" else value
            mask &= same(column, value).to_numpy()
        return table[mask]

    present = [m for m in metrics if m in table.columns]
    base = pick(baseline)
    base_means = {c: base[c].mean() for c in [response, *present]} if len(base) else {}
    rows = []
    for axis, values in axes.items():
        for value in values:
            cell = pick({**baseline, axis: value})
            entry = {"axis": axis, "value": _show(value), "baseline": _norm(value) == _norm(baseline.get(axis)),
                     "cells": len(cell)}
            for column in [response, *present]:
                mean = cell[column].mean() if len(cell) else math.nan
                entry[column] = mean
                reference = base_means.get(column, math.nan)
                entry[f"{column} %"] = 100 * mean / reference if reference else math.nan
            rows.append(entry)
    return pd.DataFrame(rows)


def _norm(value) -> str:
    import json

    if isinstance(value, str):
        return value.replace(" ", "")
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True).replace(" ", "")


def _show(value) -> str:
    return value if isinstance(value, str) else _norm(value)


# ---------------------------------------------------------------- the Ernest performance model


ERNEST_TERMS = ("θ0 (fixed)", "θ1 · rows/workers", "θ2 · log(workers)", "θ3 · workers")


@dataclass
class ErnestModel:
    """t ≈ θ0 + θ1·(rows/workers) + θ2·log(workers) + θ3·workers (Venkataraman et al., NSDI'16),
    fitted with non-negative least squares."""

    theta: np.ndarray
    n: int
    r2: float
    rmse: float
    mape: float
    sigma: float  # residual standard error
    active: np.ndarray  # the terms with a non-zero coefficient
    covariance: np.ndarray | None  # (XᵀX)⁻¹ over the active terms, for prediction intervals
    response: str = TIME
    workers_measured: tuple = ()
    rows_measured: tuple = (0, 0)
    residuals: np.ndarray = field(default_factory=lambda: np.empty(0))

    @staticmethod
    def features(rows, workers) -> np.ndarray:
        rows = np.asarray(rows, dtype=float)
        workers = np.asarray(workers, dtype=float)
        return np.column_stack([np.ones_like(rows), rows / workers, np.log(workers), workers])

    def predict(self, rows, workers) -> np.ndarray:
        return self.features(np.atleast_1d(rows), np.atleast_1d(workers)) @ self.theta

    def interval(self, rows, workers, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Prediction interval for one new measurement (the linear-model interval over the active terms)."""
        from scipy import stats

        x = self.features(np.atleast_1d(rows), np.atleast_1d(workers))
        mean = x @ self.theta
        dof = max(1, self.n - int(self.active.sum()))
        t = stats.t.ppf(0.5 + level / 2, dof)
        if self.covariance is None:
            half = np.full_like(mean, t * self.sigma)
        else:
            xa = x[:, self.active]
            half = t * self.sigma * np.sqrt(1 + np.einsum("ij,jk,ik->i", xa, self.covariance, xa))
        return np.maximum(mean - half, 0.0), mean + half

    def coefficients(self) -> pd.DataFrame:
        return pd.DataFrame({"term": ERNEST_TERMS, "theta": self.theta})

    def quality(self) -> dict:
        return {"cells": self.n, "R²": self.r2, "RMSE (s)": self.rmse, "MAPE (%)": 100 * self.mape,
                "residual sd (s)": self.sigma}


def fit_ernest(table: pd.DataFrame, response: str = TIME, *, rows: str = "rows", workers: str = "workers") -> ErnestModel:
    """Fit the Ernest model to measured cells (needs a ``rows`` column: the training rows)."""
    from scipy.optimize import nnls

    if rows not in table.columns or table[rows].isna().all():
        raise DataError("the Ernest model needs the training rows of every cell (a rows column)",
                        "record cells with `workbench sweep`, or add a rows column to the table")
    frame = table[[rows, workers, response]].dropna()
    frame = frame[(frame[rows] > 0) & (frame[workers] >= 1)]
    if len(frame) < 5:
        raise DataError(f"the Ernest model needs at least 5 measured cells, found {len(frame)}", "run more cells")
    x = ErnestModel.features(frame[rows], frame[workers])
    y = frame[response].to_numpy(dtype=float)
    # Columns on one scale for the solver; the coefficients are scaled back.
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    scaled, _ = nnls(x / scale, y)
    theta = scaled / scale
    fitted = x @ theta
    residuals = y - fitted
    n = len(y)
    active = theta > 0
    p = max(1, int(active.sum()))
    sigma = float(np.sqrt((residuals ** 2).sum() / max(1, n - p)))
    covariance = None
    if active.any():
        xa = x[:, active]
        try:
            covariance = np.linalg.inv(xa.T @ xa)
        except np.linalg.LinAlgError:
            covariance = np.linalg.pinv(xa.T @ xa)
    total = ((y - y.mean()) ** 2).sum()
    return ErnestModel(
        theta=theta, n=n, r2=float(1 - (residuals ** 2).sum() / total) if total > 0 else 1.0,
        rmse=float(np.sqrt((residuals ** 2).mean())), mape=float(np.mean(np.abs(residuals) / np.maximum(np.abs(y), 1e-12))),
        sigma=sigma, active=active, covariance=covariance, response=response,
        workers_measured=tuple(sorted(int(w) for w in frame[workers].unique())),
        rows_measured=(int(frame[rows].min()), int(frame[rows].max())), residuals=residuals,
    )


@dataclass
class Recommendation:
    rows: int
    fastest: int
    cheapest: int
    tolerance: float
    table: pd.DataFrame  # workers, predicted, lower, upper, worker_seconds, within tolerance


def recommend(model: ErnestModel, rows: int, workers=None, *, tolerance: float = 0.10, level: float = 0.95) -> Recommendation:
    """The worker count with the smallest predicted time for ``rows`` training rows, and the
    cheapest (fewest workers) whose predicted time is within ``tolerance`` of it."""
    if rows <= 0:
        raise WorkbenchError(f"--rows {rows} is not a positive number of rows", "give the training rows after RUS")
    candidates = sorted({int(w) for w in (workers or model.workers_measured)})
    if not candidates or candidates[0] < 1:
        raise WorkbenchError("no worker counts to choose from", "give worker counts of at least 1, e.g. --workers 1,2,4,8")
    predicted = model.predict(np.full(len(candidates), rows), np.array(candidates))
    lower, upper = model.interval(np.full(len(candidates), rows), np.array(candidates), level)
    table = pd.DataFrame({"workers": candidates, "predicted (s)": predicted, "lower (s)": lower, "upper (s)": upper})
    table["worker-seconds"] = table["workers"] * table["predicted (s)"]
    best = float(predicted.min())
    table["within tolerance"] = table["predicted (s)"] <= best * (1 + tolerance)
    fastest = int(table.loc[table["predicted (s)"].idxmin(), "workers"])
    cheapest = int(table[table["within tolerance"]]["workers"].min())
    return Recommendation(rows=int(rows), fastest=fastest, cheapest=cheapest, tolerance=tolerance, table=table)
