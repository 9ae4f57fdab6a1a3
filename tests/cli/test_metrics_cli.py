"""What `workbench run` reports beyond the AUCs, and `workbench compare`, through the real command:
ROC AUC and PR AUC with their intervals, the threshold chosen on the validation set and the test
confusion matrix there, calibration; DeLong's paired test between runs on the same test rows, and
one-line refusals of runs that cannot be compared."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ..train.test_xgb import _write_export
from .helpers import assert_one_line_error, pipeline_text, workbench


def _pipeline(export, name, *, ratio="1:3", metrics="", split_seed=0, extra=""):
    text = pipeline_text(export, name=name, ratio=ratio, rounds=15)
    text = text.replace("metrics:\n  threshold: 0.5\n", f"metrics:\n{metrics}" if metrics else "")
    return text.replace("  seed: 0\nsampling:", f"  seed: {split_seed}\nsampling:") + extra


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs of one export: two ratios on the same split, and one on another split seed; one more
    that keeps no test scores."""
    cwd = tmp_path_factory.mktemp("metrics-cli")
    export = _write_export(cwd / "export", shards=3, rows=4_000, positive_rate=0.05)
    out = {"cwd": cwd}
    for name, kwargs in {
        "r3": {"ratio": "1:3"},
        "r10": {"ratio": "1:10", "metrics": "  at_k: [50, 0.05]\n"},
        "other": {"ratio": "1:3", "split_seed": 1},
        "noscores": {"ratio": "1:3", "metrics": "  save_scores: false\n"},
    }.items():
        (cwd / f"{name}.yaml").write_text(_pipeline(export, name, **kwargs))
        proc = workbench("run", f"{name}.yaml", cwd=cwd)
        assert proc.returncode == 0, proc.stderr
        out[name] = proc
        out[f"{name}_id"] = re.match(r"run (\S+)", proc.stdout).group(1)
    return out


def test_run_prints_the_intervals_the_chosen_threshold_and_the_confusion_there(runs):
    out = runs["r10"].stdout
    assert re.search(r"^  ROC AUC +0\.\d{4}  95% CI 0\.\d{4}–(0\.\d{4}|1\.0000) \(DeLong\)  \(exact, on [\d,]+ held-out",
                     out, re.MULTILINE), out
    assert re.search(r"^  PR AUC +0\.\d{4}  95% CI 0\.\d{4}–[01]\.\d{4} \(bootstrap\)", out, re.MULTILINE), out
    threshold = re.search(r"^  threshold +(0\.\d{4}), F1 best on the validation set \(F1 0\.\d{3} there\); "
                          r"(0\.\d{4}) after the RUS correction$", out, re.MULTILINE)
    assert threshold, out
    assert float(threshold.group(2)) < float(threshold.group(1))  # the correction lowers a minority probability
    assert re.search(r"^  confusion +at threshold 0\.\d+: tn [\d,]+  fp [\d,]+  fn [\d,]+  tp [\d,]+", out, re.MULTILINE)
    assert not re.search(r"^  corrected ", out, re.MULTILINE), out  # the same matrix at a chosen cut: not repeated
    assert re.search(r"^  at k +top 50: precision \d\.\d{3}, recall \d\.\d{3}; top 5\.00% \([\d,]+\): precision", out,
                     re.MULTILINE), out
    assert re.search(r"^  probabilities +Brier 0\.\d{4}, log loss 0\.\d{4} as trained; Brier 0\.\d{4}, log loss "
                     r"0\.\d{4} after the RUS correction$", out, re.MULTILINE), out
    assert re.search(r"^  calibration +0\.\d{3}→0\.\d{3}", out, re.MULTILINE), out
    assert "calibration.png" in out


def test_the_record_keeps_the_intervals_and_the_test_rows(runs):
    proc = workbench("runs", "show", runs["r10_id"], "--json", cwd=runs["cwd"])
    record = json.loads(proc.stdout)
    m = record["metrics"]
    assert m["roc_auc_ci"][0] < m["roc_auc"] < m["roc_auc_ci"][1] and m["level"] == 0.95
    assert m["threshold_rule"] == "f1" and m["threshold_choice"]["on"] == "validation"
    assert m["tn"] + m["fp"] + m["fn"] + m["tp"] == m["n"]
    assert len(record["data"]["test_rows_fingerprint"]) == 32
    assert record["artifacts"]["test_scores"] == "test_scores"


def test_compare_two_runs_on_the_same_test_rows(runs):
    proc = workbench("compare", runs["r3_id"], runs["r10_id"], cwd=runs["cwd"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.match(r"2 runs on the same [\d,]+ test rows \([\d,]+ positive\); DeLong's paired test, 95% intervals$",
                    lines[0]), proc.stdout
    assert re.search(rf"^  {runs['r3_id']}  r3 +ROC AUC 0\.\d{{4}}  95% CI", proc.stdout, re.MULTILINE), proc.stdout
    pair = re.search(rf"^  {runs['r3_id']} vs {runs['r10_id']}: ΔAUC ([+-]0\.\d{{4}})  95% CI ([+-]0\.\d{{4}}) to "
                     r"([+-]0\.\d{4})  z [+-]\d+\.\d\d  p (<0\.0001|0\.\d{4})$", proc.stdout, re.MULTILINE)
    assert pair, proc.stdout
    delta, low, high = (float(pair.group(i)) for i in (1, 2, 3))
    assert low <= delta <= high


def test_compare_three_runs_adjusts_for_the_pairs(runs):
    first = workbench("run", "r3.yaml", cwd=runs["cwd"])  # a third run on the same rows: the same model again
    again = re.match(r"run (\S+)", first.stdout).group(1)
    proc = workbench("compare", runs["r3_id"], runs["r10_id"], again, cwd=runs["cwd"])
    assert proc.returncode == 0, proc.stderr
    assert "p Holm-adjusted over 3 pairs" in proc.stdout.splitlines()[0]
    same = re.search(rf"^  {runs['r3_id']} vs {again}: ΔAUC \+0\.0000 .* p 1\.0000  p\(Holm\) 1\.0000$", proc.stdout,
                     re.MULTILINE)
    assert same, proc.stdout  # the same seeds, the same model: no difference at all


def test_compare_streams_the_kept_placements_to_the_in_memory_test(runs, tmp_path):
    """The paired test from the placements kept beside the scores, a partition at a time, is the
    test on the whole score arrays; runs kept before placements were are read whole, to the same
    numbers."""
    import shutil

    import pyarrow.parquet as pq

    from workbench.comparison import compare_runs, load_scores
    from workbench.metrics.evaluation import paired_from_arrays
    from workbench.stores.runs import RunStore

    ids = [runs["r3_id"], runs["r10_id"]]
    store = runs["cwd"] / "runs"
    records = [RunStore(store).get(i) for i in ids]
    files = sorted((Path(records[0].path) / "test_scores").glob("*.parquet"))
    assert len(files) > 1 and all("placement" in pq.read_schema(f).names for f in files)
    a, b = (load_scores(r) for r in records)
    reference = paired_from_arrays(a["label"].to_numpy(), a["score"].to_numpy(), b["score"].to_numpy())
    streamed = compare_runs(ids, runs_dir=store).pairs[0]
    for key in ("auc_a", "auc_b", "delta", "se", "low", "high", "z", "p_value"):
        assert streamed[key] == pytest.approx(getattr(reference, key), rel=1e-9, abs=1e-13), key
    old = tmp_path / "runs"
    shutil.copytree(store, old)
    for f in (old / ids[1] / "test_scores").glob("*.parquet"):
        pq.write_table(pq.read_table(f).drop(["placement"]), f)
    whole = compare_runs(ids, runs_dir=old).pairs[0]
    assert whole["delta"] == pytest.approx(streamed["delta"], rel=1e-9, abs=1e-13)
    assert whole["se"] == pytest.approx(streamed["se"], rel=1e-9)


@pytest.mark.parametrize("case, args, words", [
    ("different test rows", ("r3_id", "other_id"), "were scored on different test rows"),
    ("no kept scores", ("r3_id", "noscores_id"), "kept no test scores"),
    ("one run", ("r3_id",), "compare needs at least two runs"),
    ("the same run twice", ("r3_id", "r3_id"), "the same run is named twice"),
])
def test_compare_refuses_in_one_line(runs, case, args, words):
    proc = workbench("compare", *(runs[a] for a in args), cwd=runs["cwd"])
    line = assert_one_line_error(proc)
    assert words in line, (case, line)


@pytest.mark.parametrize("metrics, words", [
    ("  threshold: cost\n", "threshold: cost needs costs"),
    ("  threshold: f2\n", "metrics.threshold"),
    ("  at_k: [0]\n", "metrics.at_k"),
    ("  level: 1.5\n", "metrics.level"),
])
def test_a_bad_metrics_section_is_one_line(tmp_path, metrics, words):
    export = _write_export(tmp_path / "export", shards=1, rows=500)
    (tmp_path / "bad.yaml").write_text(_pipeline(export, "bad", metrics=metrics))
    line = assert_one_line_error(workbench("run", "bad.yaml", cwd=tmp_path))
    assert words in line and "bad.yaml:" in line, line


def test_a_chosen_threshold_without_a_validation_set_is_one_line(tmp_path):
    export = _write_export(tmp_path / "export", shards=1, rows=500)
    text = _pipeline(export, "novalid", metrics="  threshold: f1\n").replace("validation_size: 0.1", "validation_size: 0")
    (tmp_path / "novalid.yaml").write_text(text)
    line = assert_one_line_error(workbench("run", "novalid.yaml", cwd=tmp_path))
    assert "threshold f1 is chosen on the validation set" in line and "split.validation_size" in line, line
