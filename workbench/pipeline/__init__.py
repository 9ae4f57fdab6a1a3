"""One declarative pipeline run: cluster → data → split → RUS → train → exact metrics → run store.

Every model type goes the same way: its registry entry fits on the RUS sample and returns the
fitted model(s); the pipeline then scores them on the untouched test set through the one scorer
and evaluates them with the file's ``metrics`` and ``sampling`` settings.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import dask.config
from dask.utils import format_time

from .. import progress
from ..cluster import cluster as open_cluster
from ..cluster import cluster_summary, describe
from ..data.cache import load_dataset
from ..data.dataset import Dataset
from ..data.ensure import ensure_export
from ..errors import WorkbenchError
from ..metrics import Evaluation, Metrics, evaluate_models, evaluate_run, score_table_graph
from ..metrics.evaluation import with_placements
from ..sampling import split, split_by, undersample
from ..stores.runs import RunRecord, RunStore, versions
from ..train.registry import MODEL_TYPES, FitContext, Fitted
from .spec import PipelineSpec, load_pipeline
from .tracking import check_tracked, exported_when_done

__all__ = ["PipelineResult", "PipelineSpec", "Trained", "load_pipeline", "run_pipeline", "runs_directory", "versions"]


@dataclass
class Trained:
    """The train stage's model and its exact test metrics, evaluated by the pipeline."""

    kind: str  # model.type
    model: object  # what is saved and predicts: an xgboost.Booster or a fitted scikit-learn classifier
    metrics: Metrics  # of ``model`` on the test set, exact
    compared: dict[str, Metrics]  # every model scored on the test set, for the summary and plots
    history: dict
    data: dict
    result: object = None  # the trainer's own result object
    scored: object = None  # the test set's labels and every model's scores, persisted on the workers
    primary_column: str | None = None  # the column of ``scored`` that holds ``model``'s scores


@dataclass
class PipelineResult:
    record: RunRecord
    trained: Trained  # the model, its exact test metrics and what its trainer reported
    train: Dataset  # the training set the model saw (after RUS)
    test: Dataset

    @property
    def model(self):
        """The trainer's own result (an XGBoostResult, EnsembleResult, SearchResult, ...)."""
        return self.trained.result

    @property
    def metrics(self):
        return self.trained.metrics


def runs_directory(spec: PipelineSpec | None = None, override: str | os.PathLike | None = None) -> Path:
    """``override`` (``--runs-dir``), else the pipeline's ``runs_dir``, else ``workbench.runs.dir``."""
    return Path(override or (spec and spec.runs_dir) or dask.config.get("workbench.runs.dir"))


def run_pipeline(
    spec: PipelineSpec | str | os.PathLike,
    *,
    client=None,
    cluster: str | os.PathLike | None = None,
    workers: int | None = None,
    runs_dir: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    on_run: Callable[[object], None] | None = None,
    shared=None,
) -> PipelineResult:
    """Run a pipeline file (or spec) end to end and record it in the run store.

    ``cluster`` overrides the profile the file names; with ``client`` the run uses that cluster.
    ``on_run`` is called with the :class:`~workbench.stores.runs.Run` handle as soon as the run is
    recorded as running (a sweep uses it to know the run id even if the run then fails).
    ``shared`` (a :class:`~workbench.pipeline.shared.SharedSplit`) lets runs with the same data,
    split settings and workers share one persisted split: the run reuses it, or builds and keeps it
    for the runs after it, or takes the cold path and records why (``data.split_reuse``).
    """
    if not isinstance(spec, PipelineSpec):
        spec = load_pipeline(spec)
    say = progress or (lambda message: None)
    profile = cluster or spec.cluster
    describe(profile, workers=workers)  # validates the profile before anything starts
    store = RunStore(runs_directory(spec, runs_dir))
    len(store)  # reads the store, if there is one: a corrupt runs.sqlite is refused before a cluster starts
    check_tracked(spec)  # tracking: MLflow installed and its URI accepted, before a cluster starts
    context = nullcontext(client) if client is not None else open_cluster(profile, workers=workers)
    started = time.perf_counter()
    with context as client, exported_when_done(spec, store, say) as track:
        info = cluster_summary(client)
        say(f"cluster: {info['workers']} worker(s), {info['threads']} thread(s), dashboard {info['dashboard']}")
        seeds = {"split": spec.split.seed, "sampling": spec.sampling.seed, "model": spec.model.seed}
        with store.start(
            spec.name,
            spec=spec.model_dump(mode="json"),
            seeds=seeds,
            versions=versions(),
            cluster={"profile": str(profile), **{k: v for k, v in info.items() if k != "dashboard"}},
        ) as run:
            track(run)
            if on_run is not None:
                on_run(run)
            result = _run(spec, client, run, say, shared)
            record = run.succeed(result.trained.metrics.to_dict())
    say(f"done in {format_time(time.perf_counter() - started)}")
    return PipelineResult(record=record, trained=result.trained, train=result.train, test=result.test)


PHASES = ("read", "split", "rus", "train and evaluate", "artifacts")


def _run(spec: PipelineSpec, client, run, say, shared=None) -> PipelineResult:
    with progress.task(f"run {spec.name}", total=len(PHASES)) as step:
        return _run_phases(spec, client, run, say, step, shared)


def _run_phases(spec: PipelineSpec, client, run, say, step, shared=None) -> PipelineResult:
    timings = {}

    def timed(phase: str, seconds: float) -> None:
        timings[phase] = seconds
        run.log_timing(phase, seconds)

    use = shared.use(spec, client) if shared is not None else None  # a split shared by a sweep's cells
    if use is not None and use.reused:
        data, train, valid, test, persisted = use.source, use.train, use.valid, use.test, True
        timed("read", 0.0)  # done once for the group, by the run that built the split (data.split_reuse)
        timed("split", 0.0)
        say(f"read, split: reused the split of group {use.group}, persisted on the workers "
            f"(read and split once in {format_time(shared.read_seconds + shared.split_seconds)})")
        step.advance()
        step.advance()
    else:
        data, train, valid, test, persisted = _read_and_split(spec, client, timed, say, step, use)
    if use is not None:
        run.log_data(**use.record())
    excluded = data.info["excluded"]

    t = time.perf_counter()
    sampled = undersample(train, spec.sampling.ratio, seed=spec.sampling.seed)
    timed("rus", time.perf_counter() - t)
    before = _ratio(train)
    after = _ratio(sampled)
    say(f"rus: {spec.sampling.ratio or 'none'}: {train.n_rows:,} -> {sampled.n_rows:,} rows, class ratio {before} -> {after}")
    step.advance()

    run.log_data(
        rows_in_files=data.info["rows_in_files"],
        rows_with_null_target=data.info["rows_with_null_target"],
        features=list(data.features),
        excluded=excluded,
        persisted=persisted,
        train={"rows": train.n_rows, "positive": train.n_positive},
        valid=None if valid is None else {"rows": valid.n_rows, "positive": valid.n_positive},
        test={"rows": test.n_rows, "positive": test.n_positive},
        sampled={"rows": sampled.n_rows, "positive": sampled.n_positive},
        class_ratio={"before": before, "after": after},
    )

    trained = _train_and_evaluate(spec, sampled, valid, test, client, timed, say)
    step.advance()
    run.log_history(trained.history)
    run.log_data(model_type=trained.kind, **trained.data)
    _save_model(run, trained)
    _save_scores(run, spec, trained, say)
    _save_inspection(run, spec, trained, sampled.features, say)
    step.advance()
    return PipelineResult(record=None, trained=trained, train=sampled, test=test)


def _read_and_split(spec: PipelineSpec, client, timed, say, step, use):
    """Read the data and split it: ``(data, train, valid, test, persisted)``. With ``use`` (a
    shared split this run may build), the three sets are persisted and kept for the runs after it."""
    data_spec = spec.data
    ensure_export(data_spec, client, say)  # data.synth / data.example: written once if missing

    t = time.perf_counter()
    data = load_dataset(data_spec, client, progress=say)  # Parquet, or the Zarr cache data.cache names
    keep = use is not None and use.admit(data, client)  # kept: the split's sets are persisted, not the data
    persisted = not keep and _should_persist(data, data_spec.persist, client)
    if persisted:
        data = data.persist(client)
    read_seconds = time.perf_counter() - t
    timed("read", read_seconds)
    excluded = data.info["excluded"]
    say(
        f"read: {data.info['files']} shard(s), {data.info['rows_in_files']:,} rows, {len(data.features)} features, "
        f"{data.npartitions} partitions{' (persisted in worker memory)' if persisted else ''}"
        + (f"; not features: {', '.join(excluded)}" if excluded else "")
    )
    step.advance()

    t = time.perf_counter()
    if spec.split.by:
        train, test = split_by(data, spec.split.by, spec.split.test_from)
    else:
        train, test = split(data, spec.split.test_size, seed=spec.split.seed)
    valid = None
    if spec.split.validation_size:
        train, valid = split(train, spec.split.validation_size, seed=spec.split.seed)
    if keep:
        train, valid, test = use.keep(data, train, valid, test, client)
        persisted = True  # the three sets, on the workers
    split_seconds = time.perf_counter() - t
    timed("split", split_seconds)
    if keep:
        use.timed(read_seconds, split_seconds)
    say(
        f"split: train {train.n_rows:,} ({train.n_positive:,} positive), "
        + (f"valid {valid.n_rows:,}, " if valid is not None else "")
        + f"test {test.n_rows:,} ({test.n_positive:,} positive)"
        + (f"; persisted on the workers for the runs of group {use.group}" if keep and use.role == "built" else "")
    )
    step.advance()
    return data, train, valid, test, persisted


def evaluation_settings(spec: PipelineSpec) -> Evaluation:
    """The pipeline file's ``metrics`` section as the metrics' own settings."""
    m = spec.metrics
    return Evaluation(threshold=m.threshold, costs=(m.costs.fp, m.costs.fn) if m.costs else None,
                      at_k=tuple(m.at_k), level=m.level, pr_interval=m.pr_interval, n_boot=m.bootstrap, seed=m.seed,
                      calibration_bins=m.calibration_bins)


def _train_and_evaluate(spec: PipelineSpec, sampled: Dataset, valid: Dataset | None, test: Dataset, client, timed,
                        say) -> Trained:
    """Fit ``spec.model`` through its registry entry, then score every model it returns on ``test``."""
    kind = spec.model.type
    settings = evaluation_settings(spec)
    rule = settings.rule(valid is not None)
    threshold = rule if not isinstance(rule, str) else 0.5  # learning curves: a fixed cut
    undersampling = sampled.info.get("undersample") if spec.sampling.correct_probabilities else None
    monitor = _Monitor(test, threshold, undersampling, client)
    fitted: Fitted = MODEL_TYPES.get_entry(kind).fit(spec.model, FitContext(
        train=sampled, valid=valid, client=client, timed=timed, say=say, monitor=monitor, pipeline=spec))

    models = (dict(fitted.compared) or {fitted.primary or kind: fitted.model}) if isinstance(fitted, Fitted) else {}
    if not models or any(model is None for model in models.values()):
        raise WorkbenchError(f"model type {kind!r} returned no fitted model",
                             "its fit function must return Fitted(model) (see docs/pipeline.md#adding-a-model-type)")
    # Every model scored once more, on the test set and (to choose the threshold) the validation set:
    # the learning curve's last evaluation has no intervals, calibration or chosen threshold.
    evaluation = evaluate_run(models, test, threshold, undersampling=undersampling, client=client, on_phase=timed,
                              settings=settings, valid=valid, paired=len(models) > 1)
    compared = {name: evaluation.metrics[name] for name in models}
    primary = fitted.primary or kind
    if fitted.model is None:  # several models, none preferred: the best by PR AUC represents the run
        primary = max(compared, key=lambda n: (compared[n].pr_auc, compared[n].roc_auc))
    model = models.get(primary, fitted.model)
    data = {**fitted.data, "primary": primary} if len(models) > 1 or fitted.compared else dict(fitted.data)
    if "models" in data:
        data["models"] = {name: {"roc_auc": m.roc_auc, "pr_auc": m.pr_auc, **data["models"].get(name, {})}
                          for name, m in compared.items()}
    data["test_rows_fingerprint"] = evaluation.fingerprint
    if evaluation.paired:
        data["paired"] = evaluation.paired
    return Trained(kind, model, compared[primary], compared, fitted.history, data, fitted.result,
                   scored=evaluation.scored, primary_column=primary if primary in models else next(iter(models)))


class _Monitor:
    """Evaluates a model on the test set for a learning curve (AUCs and the confusion at a fixed cut)."""

    def __init__(self, test: Dataset, threshold: float, undersampling, client):
        self.test, self.threshold, self.undersampling, self.client = test, threshold, undersampling, client

    def __call__(self, model) -> Metrics:
        return evaluate_models({"model": model}, self.test, self.threshold, undersampling=self.undersampling,
                               client=self.client)["model"]


def _save_model(run, trained: Trained) -> None:
    import xgboost as xgb

    from .artifacts import save_model

    # XGBoost's own JSON, or skops: neither runs code when `workbench predict` loads it (docs/security.md)
    filename = "model.json" if isinstance(trained.model, xgb.Booster) else "model.skops"
    run.save_artifact("model", filename, lambda path: save_model(trained.model, path))


def _save_scores(run, spec: PipelineSpec, trained: Trained, say) -> None:
    """The test set's labels and the model's scores, row by row, written by the workers beside the
    run (``test_scores/``, Parquet): what ``workbench compare`` and a sweep's paired tests read."""
    scored, trained.scored = trained.scored, None  # the workers' copy is let go once written
    keep = spec.metrics.save_scores
    if keep == "auto":
        keep = trained.metrics.n <= int(dask.config.get("workbench.metrics.save_scores_max_rows"))
    if not keep or scored is None:
        return
    column = scored[["label", trained.primary_column]].rename(columns={trained.primary_column: "score"})
    column = with_placements(column, score_table_graph(column))  # a paired test is then one pass (comparison.py)

    def write(path) -> None:
        column.to_parquet(path, write_index=False, name_function=lambda i: f"part-{i:06d}.parquet")

    run.save_artifact("test_scores", "test_scores", write)
    run.log_data(test_scores=True)


def _save_inspection(run, spec: PipelineSpec, trained: Trained, features, say) -> None:
    """Feature importances (CSV and PNG), ROC, PR and confusion-matrix PNGs beside the run."""
    from .artifacts import (
        feature_importances,
        plot_calibration,
        plot_confusion,
        plot_importances,
        plot_pr,
        plot_roc,
    )

    if spec.metrics.importances:
        # An ensemble has no importances of its own: those of its first member that has them stand in.
        candidates = {trained.kind: trained.model, **(getattr(trained.result, "members", None) or {})}
        table, of, problem = None, None, None
        for of, model in candidates.items():
            try:
                table = feature_importances(model, features, top_k=spec.metrics.importances)
                break
            except WorkbenchError as exc:
                problem = problem or exc.problem
        if table is None:
            say(f"importances: none ({problem})")
        else:
            run.log_data(importances_of=of)
            run.save_artifact("importances", "importances.csv", lambda path: table.to_csv(path, index=False))
            if spec.metrics.plots:
                run.save_artifact("importances_png", "importances.png", lambda path: plot_importances(table, path))
            run.log_data(importances=[{"feature": r.feature, "importance": float(r.importance), "share": float(r.share)}
                                      for r in table.itertuples()])
            top = ", ".join(f"{r.feature} {r.share:.0%}" for r in table.head(5).itertuples())
            say(f"importances of {of} ({table['kind'].iloc[0]}): {top}")
    if spec.metrics.plots:
        compared = trained.compared or {trained.kind: trained.metrics}
        run.save_artifact("roc_png", "roc.png", lambda path: plot_roc(compared, path))
        run.save_artifact("pr_png", "pr.png", lambda path: plot_pr(compared, path))
        run.save_artifact("confusion_png", "confusion.png", lambda path: plot_confusion(trained.metrics, path))
        if trained.metrics.calibration:
            run.save_artifact("calibration_png", "calibration.png", lambda path: plot_calibration(trained.metrics, path))


def _ratio(data: Dataset) -> str:
    pos, neg = data.n_positive, data.n_negative
    minority, majority = sorted((pos, neg))
    return f"1:{majority / minority:.1f}" if minority else "1:inf"


def _should_persist(data: Dataset, persist, client) -> bool:
    if persist != "auto":
        return bool(persist)
    memory = cluster_summary(client)["memory_limit"]
    estimate = data.info["rows_in_files"] * (8 * len(data.features) + 1)
    return bool(memory) and estimate < dask.config.get("workbench.persist.memory_fraction") * memory
