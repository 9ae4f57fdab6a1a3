"""Exact evaluation on the held-out test set.

XGBoost's distributed AUC is an approximation that depends on the number of workers. Here the
workers reduce their ``(score, label)`` pairs to counts per distinct score, and scikit-learn computes
ROC AUC and average precision on that table with the counts as sample weights: the same curve, the
same ties, the same number as on the full list of predictions, with no row sent to the client.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import dask.dataframe as dd
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = ["Metrics", "evaluate", "score_table", "metrics_from_table", "correct_probabilities"]


@dataclass(frozen=True)
class Metrics:
    """Exact metrics of one set of predicted probabilities."""

    roc_auc: float
    pr_auc: float
    n: int
    n_positive: int
    threshold: float
    tn: int
    fp: int
    fn: int
    tp: int
    precision: float
    recall: float
    f1: float
    brier: float
    corrected: dict | None = field(default=None)

    @property
    def confusion(self) -> np.ndarray:
        """``[[tn, fp], [fn, tp]]`` as scikit-learn's ``confusion_matrix`` lays it out."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])

    def to_dict(self) -> dict:
        return asdict(self)


def score_table(scored: dd.DataFrame, label: str = "label", score: str = "score") -> pd.DataFrame:
    """Distinct scores with their negative and positive counts, reduced on the workers."""
    counts = scored.groupby([score, label]).size(split_out=1).compute()
    table = counts.unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    table.columns = ["neg", "pos"]
    return table.sort_index().rename_axis("score").reset_index()


def metrics_from_table(table: pd.DataFrame, threshold: float = 0.5) -> Metrics:
    """ROC AUC, PR AUC (average precision) and the confusion matrix at ``threshold``, exactly."""
    scores = np.concatenate([table["score"].to_numpy(), table["score"].to_numpy()])
    labels = np.concatenate([np.zeros(len(table), dtype="int8"), np.ones(len(table), dtype="int8")])
    weights = np.concatenate([table["neg"].to_numpy(), table["pos"].to_numpy()]).astype("float64")
    keep = weights > 0
    scores, labels, weights = scores[keep], labels[keep], weights[keep]
    predicted = scores >= threshold
    tp = int(weights[predicted & (labels == 1)].sum())
    fp = int(weights[predicted & (labels == 0)].sum())
    fn = int(weights[~predicted & (labels == 1)].sum())
    tn = int(weights[~predicted & (labels == 0)].sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return Metrics(
        roc_auc=float(roc_auc_score(labels, scores, sample_weight=weights)),
        pr_auc=float(average_precision_score(labels, scores, sample_weight=weights)),
        n=int(weights.sum()),
        n_positive=tp + fn,
        threshold=float(threshold),
        tn=tn, fp=fp, fn=fn, tp=tp,
        precision=precision,
        recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        brier=float(np.average((scores - labels) ** 2, weights=weights)),
    )


def correct_probabilities(p, kept_majority_fraction: float, majority_class: int = 0):
    """Undo the prior shift of under-sampling (Dal Pozzolo et al., 2015).

    With ``beta`` the fraction of majority rows kept, a probability ``p`` of the minority class
    learned on the sample becomes ``beta * p / (beta * p - p + 1)`` on the original distribution
    (computed as ``beta * p / (beta * p + (1 - p))``, which stays within [0, 1] in floating point).
    """
    beta = float(kept_majority_fraction)
    p = np.asarray(p, dtype="float64")
    p_minority = p if majority_class == 0 else 1 - p
    corrected = beta * p_minority / (beta * p_minority + (1 - p_minority))  # exact at 0 and 1
    return corrected if majority_class == 0 else 1 - corrected


def evaluate(
    scored: dd.DataFrame,
    threshold: float = 0.5,
    *,
    label: str = "label",
    score: str = "score",
    undersampling: dict | None = None,
) -> Metrics:
    """Exact metrics of a Dask DataFrame of ``label`` (0/1) and ``score`` (probability) columns.

    With ``undersampling`` (the note :func:`workbench.undersample` leaves in ``Dataset.info``), the
    probabilities corrected for the sampling are evaluated too, under ``Metrics.corrected``. Ranking
    metrics do not change under the correction; the confusion matrix and the Brier score do.
    """
    table = score_table(scored, label=label, score=score)
    metrics = metrics_from_table(table, threshold)
    if not undersampling:
        return metrics
    corrected = table.assign(
        score=correct_probabilities(
            table["score"], undersampling["kept_majority_fraction"], undersampling["majority_class"]
        )
    )
    again = metrics_from_table(corrected, threshold)
    extra = {k: getattr(again, k) for k in ("tn", "fp", "fn", "tp", "precision", "recall", "f1", "brier")}
    return Metrics(**{**metrics.to_dict(), "corrected": extra})
