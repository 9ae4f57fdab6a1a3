"""Model types are one registry: a type registered from outside the package validates, runs from a
pipeline file and is evaluated like a built-in one."""

from __future__ import annotations

import textwrap
from typing import Literal

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, roc_auc_score
from sklearn.pipeline import make_pipeline

from workbench.config import StrictModel
from workbench.data.synth import synth_bitcoin_export
from workbench.errors import ConfigError
from workbench.metrics import score
from workbench.pipeline import load_pipeline, run_pipeline
from workbench.train.registry import (
    MODEL_TYPES,
    FitContext,
    Fitted,
    ModelType,
    ModelView,
    register_model_type,
)


class CollectedLogistic(StrictModel):
    """A toy model type: the RUS sample collected and fitted by scikit-learn in this process."""

    type: Literal["collected_logistic"]
    C: float = 1.0
    seed: int = 0


def fit_collected_logistic(spec: CollectedLogistic, ctx: FitContext) -> Fitted:
    frame = ctx.train.frame.compute()
    model = make_pipeline(SimpleImputer(), LogisticRegression(C=spec.C, max_iter=500))
    model.fit(frame[list(ctx.train.features)].to_numpy("float64", na_value=np.nan), frame[ctx.train.target].to_numpy())
    ctx.say("train: collected logistic regression")
    return Fitted(model, data={"rows_fitted": len(frame)})


def show_collected_logistic(data: dict) -> ModelView:
    return ModelView((f"collected logistic on {data['rows_fitted']:,} rows",),
                     {"fit": [{"rows": data["rows_fitted"]}]})


@pytest.fixture
def registered():
    entry = register_model_type(ModelType("collected_logistic", CollectedLogistic, fit_collected_logistic,
                                          show_collected_logistic, "a test's own model type"))
    yield entry
    MODEL_TYPES.unregister("collected_logistic")


def test_a_taken_name_is_refused(registered):
    with pytest.raises(ConfigError, match="model type 'collected_logistic' is already registered"):
        register_model_type(registered)


def test_an_outside_model_type_runs_from_a_pipeline_file(registered, tmp_path, client):
    synth_bitcoin_export(tmp_path / "export", 12_000, positive_rate=0.03, seed=2, rows_per_shard=4_000, client=client)
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: outside
        data:
          path: {tmp_path / 'export'}
          target: is_miner
          drop: [address]
        sampling:
          ratio: "1:4"
        model:
          type: collected_logistic
          C: 0.5
        metrics:
          threshold: 0.7
          plots: false
          importances: 0
        runs_dir: {tmp_path / 'runs'}
        """))
    spec = load_pipeline(path)
    assert isinstance(spec.model, CollectedLogistic) and spec.model.C == 0.5
    result = run_pipeline(spec, client=client)
    record = result.record
    assert record.status == "succeeded" and record.data["model_type"] == "collected_logistic"
    assert record.data["rows_fitted"] == result.train.n_rows
    # evaluated by the pipeline like any built-in type: exact, at the file's threshold
    collected = score(result.trained.model, result.test, client=client).compute()
    labels, scores = collected["label"].to_numpy(), collected["score"].to_numpy()
    assert record.metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    tn, fp, fn, tp = confusion_matrix(labels, (scores >= 0.7).astype(int), labels=[0, 1]).ravel()
    assert (record.metrics["tn"], record.metrics["fp"], record.metrics["fn"], record.metrics["tp"]) == (tn, fp, fn, tp)
    assert record.metrics["threshold"] == 0.7
    assert np.isfinite(record.metrics["brier"])


def test_an_unknown_key_of_an_outside_type_is_suggested_from_its_own_spec(registered, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndata:\n  path: a\n  target: t\nmodel:\n  type: collected_logistic\n  Cc: 1\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:7: model\.Cc: unknown key \(did you mean 'C'\?\)"):
        load_pipeline(path)


def test_after_unregistering_the_type_is_unknown(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndata:\n  path: a\n  target: t\nmodel:\n  type: collected_logistic\n")
    with pytest.raises(ConfigError, match=r"p\.yaml:6: model\.type: unknown model type 'collected_logistic'"):
        load_pipeline(path)


def test_a_fit_that_returns_no_model_is_one_line_through_the_command(tmp_path):
    """A broken outside type fails the run with one line, exit 2, and the run is recorded as failed."""
    plugin = tmp_path / "broken_type.py"
    plugin.write_text(textwrap.dedent('''\
        from typing import Literal
        from workbench.config import StrictModel
        from workbench.train.registry import Fitted, ModelType, register_model_type

        class Broken(StrictModel):
            type: Literal["broken"]
            seed: int = 0

        register_model_type(ModelType("broken", Broken, lambda spec, ctx: Fitted(None)))
        '''))
    synth_pipeline = tmp_path / "p.yaml"
    synth_pipeline.write_text(textwrap.dedent(f"""\
        name: broken
        data:
          path: {tmp_path / 'export'}
          target: is_miner
          drop: [address]
          synth: {{rows: 4000, positive_rate: 0.05, rows_per_shard: 2000}}
        model: {{type: broken}}
        runs_dir: {tmp_path / 'runs'}
        """))
    runner = tmp_path / "run.py"
    runner.write_text(f"import sys, broken_type\nfrom workbench.cli import main\n"
                      f"if __name__ == '__main__':\n    sys.exit(main(['run', {str(synth_pipeline)!r}, '--workers', '1']))\n")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(runner)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "error: model type 'broken' returned no fitted model; its fit function must return Fitted(model) "
        "(see docs/pipeline.md#adding-a-model-type)")
    assert "Traceback" not in done.stderr
    from workbench.stores.runs import RunStore

    [record] = RunStore(tmp_path / "runs").list()
    assert record.status == "failed"


def test_a_spec_without_a_seed_is_refused_at_registration():
    class Seedless(StrictModel):
        type: Literal["seedless"]

    with pytest.raises(ConfigError, match=r"model type 'seedless': its spec Seedless has no seed field; "
                                          r'give it `type: Literal\["seedless"\]` and `seed: int = 0`'):
        register_model_type(ModelType("seedless", Seedless, fit_collected_logistic))
    assert "seedless" not in MODEL_TYPES
