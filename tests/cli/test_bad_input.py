"""Bad input a user meets, each through the real ``workbench`` command (issue 15): exit status 2, one
``error:`` line naming the problem and its fix, no traceback (a worker's "Compute Failed" included),
and nothing half-written: no run left ``running``, no model file of a failed run, no partial scores,
cache or temporary directory.

The cases gathered here (the others live beside the commands they test; see ``issues show 15``):

Data, found once a cluster is up (``run --connect`` to the test session's cluster, or a cluster of its own):
 1. inf_feature: FLOAT64 features holding +inf/-inf (own cluster); the line names the columns and counts, the fix data.infinite: missing
 2. inf_without_statistics: the same in shards written without statistics, counted on the workers
 3. null_target: a target column that is null in every row
 3a. feature_names_xgboost_refuses: feature columns named x[0] and y<1, names XGBoost cannot take
 4. schema_drift: one column DOUBLE in one shard and STRING in another
 5. drop_unknown_column: data.drop names a column the export does not have
 6. target_in_drop: the target is also listed in data.drop
 7. cache_to_a_directory_in_use: data cache --to a non-empty directory that is no cache
The run store:
 8-10. corrupt_store_{runs,show,run}: runs.sqlite overwritten with garbage, for `runs`, `runs show`, `run`
11-13. truncated_store_{runs,show,run}: runs.sqlite cut short, for the same three commands
14. runs_bad_status: runs --status done
15. runs_negative_limit: runs --limit -1
Predict:
16. predict_lacks_features: data without a feature the run's model was trained on
17. predict_file_lacks_features: the same with a model file (the booster's own feature names)
18. predict_failed_run: the id of a run that failed
19. predict_unknown_run: an id no run has
20. predict_pickle_without_trust: a pickle that would run code, without --trust (and the code did not run)
21. predict_skops_untrusted_type: a skops file naming os.system, without --trust
22. predict_bad_infinite: predict --infinite maybe
23. predict_infinite_data: new data holding +inf, with the run's data.infinite: error
24. predict_corrupt_model: a .json model file that is not an XGBoost model
Pipeline files, refused before any cluster starts:
25. ratio_unquoted: sampling.ratio: 1:10 unquoted (YAML reads a base-60 integer)
26. ratio_reversed: sampling.ratio "10:1"
27. ratio_float_above_one: sampling.ratio 1.5
28. test_size_text: split.test_size "a fifth"
29. validation_size_one: split.validation_size 1
30. split_by_without_test_from: split.by without split.test_from
31. unknown_section: a top-level `sampler:` (did you mean 'sampling'?)
32. key_in_the_wrong_section: `threshold:` at the top level (it belongs under 'metrics')
33. drop_not_a_list: data.drop: 12 (a number, not a list)
34. infinite_bad_value: data.infinite: zero
35. unknown_model_type: model.type: xgbost
36. unknown_estimator: model.estimator: RandomForest (did you mean 'RandomForestClassifier'?)
37. estimator_bad_param: RandomForestClassifier with n_estimator
38. plots_not_a_bool: metrics.plots: maybe
39. pipeline_is_a_list: the file is a YAML list
40. pipeline_is_empty: the file is empty
41. data_path_missing: data.path left out
42. workers_zero: run --workers 0
Cluster profiles and sweeps:
43. profile_unknown_key: a local profile with n_worker (did you mean 'n_workers'?)
44. profile_unknown_type: type: kubernetes
45. profile_bad_yaml: a profile that is not valid YAML
46. sweep_unknown_pipeline_key: an axis naming a key the pipeline has not (sampling.ration)
47. sweep_empty_axis: an axis with no values
48. data_cache_without_cache: data cache on a pipeline that names no cache and no --to
A full disk (a small tmpfs, as root), each leaving nothing half-written:
49. disk_full_cache: the cache directory; the previous cache stays usable
50. disk_full_scores: predict --out
51. disk_full_runs: the runs directory (the model file)
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workbench.data.cache import read_cache
from workbench.pipeline.artifacts import load_model
from workbench.stores.runs import RunStore

from .helpers import RUN_ID, SMALL_PROFILE, assert_one_line_error, workbench

ROWS, SHARDS = 1_500, 4
XGBOOST = "model:\n  params: {max_depth: 3}\n  num_boost_round: 8\n  early_stopping_rounds: 4\n"
ENSEMBLE = ("model:\n  type: ensemble\n  method: stacking\n  cv: 2\n  members:\n"
            "    random_forest: {estimator: RandomForestClassifier, params: {n_estimators: 40}}\n"
            "    gaussian_nb: {estimator: GaussianNB, preprocess: [impute, scale]}\n")


def pipeline(path, *, name="bad", data_extra="", model=XGBOOST, split="split: {test_size: 0.2, validation_size: 0.1}\n",
             sampling='sampling: {ratio: "1:4"}\n', extra="") -> str:
    return (f"name: {name}\ndata:\n  path: {path}\n  target: is_miner\n  drop: [address]\n{data_extra}"
            f"{split}{sampling}{model}{extra}")


def write_export(directory: Path, *, seed=0, infinite=False, statistics=True, null_target=False, drift=False,
                 without=(), rename=None) -> Path:
    """``SHARDS`` shards of ``ROWS`` rows: address, x, y (FLOAT64), k (INT64) and a BOOL is_miner (10 %)."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(SHARDS):
        label = rng.random(ROWS) < 0.1
        x = rng.normal(size=ROWS) + 1.5 * label
        columns = {"address": pa.array([f"a{i}-{j}" for j in range(ROWS)]), "x": pa.array(x),
                   "y": pa.array(rng.normal(size=ROWS)), "k": pa.array(rng.integers(0, 5, ROWS)),
                   "is_miner": pa.array([None] * ROWS, pa.bool_()) if null_target else pa.array(label)}
        if infinite and i == 2:
            x[[3, 9, 11]] = [np.inf, np.inf, -np.inf]
            y = columns["y"].to_numpy().copy()
            y[7] = -np.inf
            columns["x"], columns["y"] = pa.array(x), pa.array(y)
        if drift and i == 3:
            columns["y"] = pa.array([f"{v:.3f}" for v in columns["y"].to_numpy()])
        table = pa.table({(rename or {}).get(k, k): v for k, v in columns.items() if k not in without})
        pq.write_table(table, directory / f"t-{i:012d}.parquet", write_statistics=statistics)
    return directory


def runs_left_running(runs: Path) -> list:
    return [r.id for r in RunStore(runs).list() if r.status == "running"]


def leftovers(directory: Path) -> list[str]:
    """Temporary files and directories of interrupted writes below ``directory``."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if ".tmp" in p.name or ".old-" in p.name)


class _Evil:
    """Unpickling this runs ``touch <path>``: what a hostile model file does."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.path}",)


# ---------------------------------------------------------------- the cases, run a few at a time


@pytest.fixture(scope="module")
def work(tmp_path_factory, client):
    """Exports, two recorded runs (XGBoost and a scikit-learn stacking ensemble) and model files."""
    root = tmp_path_factory.mktemp("bad-input")
    write_export(root / "good")
    write_export(root / "inf", infinite=True)
    write_export(root / "inf-nostats", infinite=True, statistics=False)
    write_export(root / "nulltarget", null_target=True)
    write_export(root / "drift", drift=True)
    write_export(root / "noy", without=("y",), seed=1)
    write_export(root / "new-inf", infinite=True, seed=2)
    write_export(root / "brackets", rename={"x": "x[0]", "y": "y<1"})
    (root / "one-worker.yaml").write_text(SMALL_PROFILE)
    (root / "xgb.yaml").write_text(pipeline("good/", name="xgb"))
    (root / "ens.yaml").write_text(pipeline("good/", name="ens", model=ENSEMBLE,
                                            split="split: {test_size: 0.2, validation_size: 0}\n"))
    (root / "fails.yaml").write_text(pipeline("inf/", name="fails"))
    connect = ("--connect", client.scheduler.address, "--runs-dir", "R")
    with ThreadPoolExecutor(max_workers=2) as pool:
        *done, fails = pool.map(lambda name: workbench("run", name, *connect, cwd=root),
                                ["xgb.yaml", "ens.yaml", "fails.yaml"])
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    assert fails.returncode == 2, fails.stderr
    xgb_id, ens_id = (re.match(rf"run ({RUN_ID}) ", proc.stdout).group(1) for proc in done)
    store = RunStore(root / "R")
    [failed] = store.list(status="failed")
    booster = Path(store.get(xgb_id).path) / store.get(xgb_id).artifacts["model"]
    (root / "evil.joblib").write_bytes(pickle.dumps(_Evil(root / "PWNED")))
    import os

    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    skops.io.dump(FunctionTransformer(os.system), root / "evil.skops")
    (root / "broken.json").write_text('{"learner": "not a model"}')
    return SimpleNamespace(root=root, xgb_id=xgb_id, ens_id=ens_id, failed_id=failed.id, booster=booster,
                           address=client.scheduler.address)


@pytest.fixture(scope="module")
def cases(work):
    """Every case as its own subprocess in its own directory (with its own runs directory R), two at a time."""
    root, connect = work.root, ("--connect", work.address, "--runs-dir", "R")
    predict = ("--runs-dir", root / "R", "--connect", work.address)
    table: dict[str, tuple[Path, tuple]] = {}

    def case(name, *args, files=None):
        cwd = root / "cases" / name
        cwd.mkdir(parents=True)
        for filename, content in (files or {}).items():
            (cwd / filename).parent.mkdir(parents=True, exist_ok=True)
            (cwd / filename).write_bytes(content if isinstance(content, bytes) else content.encode())
        table[name] = (cwd, args)

    def run_case(name, text, *extra):
        case(name, "run", "p.yaml", *extra, files={"p.yaml": text})

    # data, on the session's cluster
    run_case("inf_feature", pipeline(root / "inf"), "--cluster", root / "one-worker.yaml", "--runs-dir", "R")  # as in issue 15
    run_case("inf_without_statistics", pipeline(root / "inf-nostats"), *connect)
    run_case("null_target", pipeline(root / "nulltarget"), *connect)
    run_case("feature_names_xgboost_refuses", pipeline(root / "brackets"), *connect)
    run_case("schema_drift", pipeline(root / "drift"), *connect)
    run_case("drop_unknown_column", pipeline(root / "good").replace("drop: [address]", "drop: [address, nosuch]"), *connect)
    run_case("target_in_drop", pipeline(root / "good").replace("drop: [address]", "drop: [address, is_miner]"), *connect)
    case("cache_to_a_directory_in_use", "data", "cache", "p.yaml", "--to", "used", *connect[:2],
         files={"p.yaml": pipeline(root / "good"), "used/notes.txt": "mine\n"})
    # the run store
    good = (root / "R" / "runs.sqlite").read_bytes()
    stores = {"corrupt": np.random.default_rng(0).bytes(8192), "truncated": good[: len(good) // 3]}
    for kind, content in stores.items():
        files = {"R/runs.sqlite": content, "p.yaml": pipeline(root / "good")}
        case(f"{kind}_store_runs", "runs", "--runs-dir", "R", files=files)
        case(f"{kind}_store_show", "runs", "show", work.xgb_id, "--runs-dir", "R", files=files)
        case(f"{kind}_store_run", "run", "p.yaml", "--runs-dir", "R", files=files)
    case("runs_bad_status", "runs", "--status", "done", "--runs-dir", root / "R")
    case("runs_negative_limit", "runs", "--limit", "-1", "--runs-dir", root / "R")
    # predict
    case("predict_lacks_features", "predict", work.xgb_id, root / "noy", "--out", "scores", *predict)
    case("predict_file_lacks_features", "predict", work.booster, root / "noy", "--drop", "address", "--out", "scores",
         *predict)
    case("predict_failed_run", "predict", work.failed_id, root / "good", "--out", "scores", *predict)
    case("predict_unknown_run", "predict", "20200101-000000-dead", root / "good", "--out", "scores", *predict)
    case("predict_pickle_without_trust", "predict", root / "evil.joblib", root / "good", "--out", "scores", *predict)
    case("predict_skops_untrusted_type", "predict", root / "evil.skops", root / "good", "--out", "scores", *predict)
    case("predict_bad_infinite", "predict", work.xgb_id, root / "good", "--infinite", "maybe", "--out", "scores",
         *predict)
    case("predict_infinite_data", "predict", work.xgb_id, root / "new-inf", "--out", "scores", *predict)
    case("predict_corrupt_model", "predict", root / "broken.json", root / "good", "--drop", "address", "--out", "scores",
         *predict)
    # pipeline files: refused before any cluster starts
    good_export = root / "good"
    for name, text in {
        "ratio_unquoted": pipeline(good_export, sampling="sampling: {ratio: 1:10}\n"),
        "ratio_reversed": pipeline(good_export, sampling='sampling: {ratio: "10:1"}\n'),
        "ratio_float_above_one": pipeline(good_export, sampling="sampling: {ratio: 1.5}\n"),
        "test_size_text": pipeline(good_export, split="split: {test_size: a fifth}\n"),
        "validation_size_one": pipeline(good_export, split="split: {validation_size: 1}\n"),
        "split_by_without_test_from": pipeline(good_export, split="split: {by: k}\n"),
        "unknown_section": pipeline(good_export, extra="sampler: {seed: 1}\n"),
        "key_in_the_wrong_section": pipeline(good_export, extra="threshold: 0.3\n"),
        "drop_not_a_list": pipeline(good_export).replace("drop: [address]", "drop: 12"),
        "infinite_bad_value": pipeline(good_export, data_extra="  infinite: zero\n"),
        "unknown_model_type": pipeline(good_export, model="model: {type: xgbost}\n"),
        "unknown_estimator": pipeline(good_export, model="model: {type: sklearn, estimator: RandomForest}\n"),
        "estimator_bad_param": pipeline(good_export, model="model: {type: sklearn, estimator: RandomForestClassifier, "
                                                           "params: {n_estimator: 10}}\n"),
        "plots_not_a_bool": pipeline(good_export, extra="metrics: {plots: maybe}\n"),
        "pipeline_is_a_list": "- name: bad\n- data: {path: x}\n",
        "pipeline_is_empty": "",
        "data_path_missing": pipeline(good_export).replace(f"  path: {good_export}\n", ""),
    }.items():
        run_case(name, text, "--runs-dir", "R")
    run_case("workers_zero", pipeline(good_export), "--workers", "0", "--runs-dir", "R")
    # cluster profiles and sweeps
    for name, profile in {"profile_unknown_key": "type: local\nn_worker: 2\n",
                          "profile_unknown_type": "type: kubernetes\n",
                          "profile_bad_yaml": "type: local\n  n_workers: 2\n"}.items():
        case(name, "run", "p.yaml", "--cluster", "profile.yaml", "--runs-dir", "R",
             files={"p.yaml": pipeline(good_export), "profile.yaml": profile})
    sweep = "name: s\npipeline: p.yaml\ntrials: 1\naxes:\n"
    case("sweep_unknown_pipeline_key", "sweep", "s.yaml", "--runs-dir", "R",
         files={"p.yaml": pipeline(good_export), "s.yaml": sweep + '  sampling.ration: ["1:2"]\n'})
    case("sweep_empty_axis", "sweep", "s.yaml", "--runs-dir", "R",
         files={"p.yaml": pipeline(good_export), "s.yaml": sweep + "  sampling.ratio: []\n"})
    case("data_cache_without_cache", "data", "cache", "p.yaml", files={"p.yaml": pipeline(good_export)})

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(workbench, *args, cwd=cwd) for name, (cwd, args) in table.items()}
        results = {name: future.result() for name, future in futures.items()}
    return SimpleNamespace(procs=results, dirs={name: cwd for name, (cwd, _) in table.items()}, stores=stores)


EXPECTED = {
    "inf_feature": r"feature column\(s\) hold infinite values \(x: 2 \+inf, 1 -inf; y: 1 -inf\); read them as missing "
                   r"values \(NaN\) with data\.infinite: missing \(Python: infinite='missing'\), or remove them from the export",
    "inf_without_statistics": r"feature column\(s\) hold infinite values \(x: 2 \+inf, 1 -inf; y: 1 -inf\); .*data\.infinite: missing",
    "feature_names_xgboost_refuses": r"XGBoost cannot take feature names holding '\[', '\]' or '<': 'x\[0\]', 'y<1'; "
                                     r"rename those columns in the export, or leave them out with data\.drop",
    "null_target": r"target column 'is_miner' is null in every row \(6,000 rows\); check the export query",
    "schema_drift": r"column 'y' is string in shard t-000000000003\.parquet but double in t-000000000000\.parquet; "
                    r"re-export the table in one job, or drop the column with drop=",
    "drop_unknown_column": r"cannot drop \['nosuch'\]: not columns of the export; columns are: address, x, y, k, is_miner",
    "target_in_drop": r"target column 'is_miner' is also listed in drop; remove it from drop",
    "cache_to_a_directory_in_use": r"\S+/used exists and is not a workbench cache; choose another cache directory",
    "corrupt_store_runs": r"R/runs\.sqlite is not a readable run store \(file is not a database\); move it aside "
                          r"\(e\.g\. mv R/runs\.sqlite R/runs\.sqlite\.broken\) to start a new store there, or give another --runs-dir",
    "corrupt_store_show": r"R/runs\.sqlite is not a readable run store \(file is not a database\); move it aside",
    "corrupt_store_run": r"R/runs\.sqlite is not a readable run store \(file is not a database\); move it aside",
    "truncated_store_runs": r"R/runs\.sqlite is not a readable run store \(database disk image is malformed\); move it aside",
    "truncated_store_show": r"R/runs\.sqlite is not a readable run store \(database disk image is malformed\); move it aside",
    "truncated_store_run": r"R/runs\.sqlite is not a readable run store \(database disk image is malformed\); move it aside",
    "runs_bad_status": r"unknown run status 'done'; use one of running, succeeded, failed",
    "runs_negative_limit": r"run limit must be 0 or more, got -1",
    "predict_lacks_features": r"the data lacks feature\(s\) \['y'\] the model was trained on; score an export with the "
                              r"training data's columns",
    "predict_file_lacks_features": r"the data lacks feature\(s\) \['y'\] the model \S+model\.json was trained on; score an "
                                   r"export with the training data's columns",
    "predict_failed_run": r"run \S+ failed: it has no trained model; name a run that succeeded \(workbench runs\)",
    "predict_unknown_run": r"no run '20200101-000000-dead' in \S+runs\.sqlite; list the recorded runs with `workbench runs`",
    "predict_pickle_without_trust": r"\S+evil\.joblib is a pickle \(\.joblib\): loading it runs whatever code it holds; pass "
                                    r"--trust \(trust=True\) only if you trust whoever made the file, or re-run the "
                                    r"pipeline, which saves scikit-learn models with skops \(\.skops\)",
    "predict_skops_untrusted_type": r"\S+evil\.skops names types the workbench does not trust \(posix\.system\): loading it "
                                    r"could run code; pass --trust \(trust=True\) only if you trust whoever made the file",
    "predict_bad_infinite": r"--infinite maybe is not one of error, missing; give --infinite error or --infinite missing",
    "predict_infinite_data": r"feature column\(s\) hold infinite values \(x: 2 \+inf, 1 -inf; y: 1 -inf\)",
    "predict_corrupt_model": r"\S+broken\.json is not a readable XGBoost model \(.+\); re-run the pipeline to save the model again",
    "ratio_unquoted": r"p\.yaml:\d+: sampling\.ratio: ratio 70 is an integer: YAML reads an unquoted 1:k as a base-60 "
                      r"number; quote it",
    "ratio_reversed": r"p\.yaml:\d+: sampling\.ratio: ratio '10:1' is not of the form '1:k'",
    "ratio_float_above_one": r"p\.yaml:\d+: sampling\.ratio: ratio 1\.5 is outside \(0, 1\]",
    "test_size_text": r"p\.yaml:\d+: split\.test_size: Input should be a valid number",
    "validation_size_one": r"p\.yaml:\d+: split\.validation_size: Input should be less than 1",
    "split_by_without_test_from": r"p\.yaml:\d+: split: by and test_from go together",
    "unknown_section": r"p\.yaml:\d+: sampler: unknown key \(did you mean 'sampling'\?\)",
    "key_in_the_wrong_section": r"p\.yaml:\d+: threshold: unknown key \(it belongs under 'metrics'\)",
    "drop_not_a_list": r"p\.yaml:\d+: data\.drop: Input should be a valid list",
    "infinite_bad_value": r"p\.yaml:\d+: data\.infinite: Input should be 'error' or 'missing'",
    "unknown_model_type": r"p\.yaml:\d+: model\.type: .*xgbost",
    "unknown_estimator": r"p\.yaml:\d+: model\.estimator: unknown estimator 'RandomForest' \(did you mean "
                         r"'RandomForestClassifier'\?\)",
    "estimator_bad_param": r"p\.yaml:\d+: model\.params: RandomForestClassifier has no parameter 'n_estimator' \(did you "
                           r"mean 'n_estimators'\?\)",
    "plots_not_a_bool": r"p\.yaml:\d+: metrics\.plots: Input should be a valid boolean",
    "pipeline_is_a_list": r"p\.yaml: expected a mapping of keys, found list",
    "pipeline_is_empty": r"p\.yaml: expected a mapping of keys, found NoneType",
    "data_path_missing": r"p\.yaml:\d+: data\.path: required key is missing",
    "workers_zero": r"--workers 0 is not a positive number; ask for 1 or more workers",
    "profile_unknown_key": r"profile\.yaml:2: n_worker: unknown key \(did you mean 'n_workers'\?\)",
    "profile_unknown_type": r"profile\.yaml:1: type: .*kubernetes",
    "profile_bad_yaml": r"profile\.yaml:2: invalid YAML \(mapping values are not allowed here\)",
    "sweep_unknown_pipeline_key": r"s\.yaml:\d+: axes\.sampling\.ration\[0\]: pipeline key sampling\.ration: unknown key \(did you mean 'ratio'\?\)",
    "sweep_empty_axis": r"s\.yaml:\d+: axes\.sampling\.ratio: List should have at least 1 item",
    "data_cache_without_cache": r"p\.yaml names no cache; add `cache: <directory>` to its data section, or pass --to DIR",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_input_is_one_line_and_leaves_nothing_half_written(cases, name):
    proc, cwd = cases.procs[name], cases.dirs[name]
    line = assert_one_line_error(proc)
    assert re.fullmatch("error: " + EXPECTED[name] + ".*", line), line
    assert "Compute Failed" not in proc.stderr and proc.stdout == "", proc.stderr
    runs = cwd / "R"
    if (runs / "runs.sqlite").exists() and not name.startswith(("corrupt", "truncated")):
        for record in RunStore(runs).list():  # a run that failed is recorded as failed, with the line, and no model
            assert (record.status, record.error) == ("failed", line[len("error: "):])
            assert "model" not in record.artifacts and not list(Path(record.path).glob("model*")), record.path
    assert leftovers(cwd) == []
    assert not (cwd / "scores").exists()


def test_a_corrupt_store_is_left_as_it_was(cases):
    for kind, content in cases.stores.items():
        for command in ("runs", "show", "run"):
            runs = cases.dirs[f"{kind}_store_{command}"] / "R"
            assert (runs / "runs.sqlite").read_bytes() == content
            assert not [p.name for p in runs.iterdir() if p.is_dir()]  # no run directory was made


def test_the_hostile_pickle_did_not_run(cases, work):
    assert cases.procs["predict_pickle_without_trust"].returncode == 2
    assert not (work.root / "PWNED").exists()


def test_the_refused_model_files_are_refused_before_a_cluster_starts(cases):
    for name in ("predict_pickle_without_trust", "predict_skops_untrusted_type", "predict_failed_run",
                 "predict_bad_infinite", "predict_unknown_run"):
        assert "scoring" not in cases.procs[name].stderr, cases.procs[name].stderr


def test_no_run_is_left_running_and_a_failed_run_has_no_model(cases, work):
    failed = RunStore(work.root / "R").get(work.failed_id)
    assert failed.status == "failed" and failed.error.startswith("feature column(s) hold infinite values")
    assert list(Path(failed.path).iterdir()) == []
    for runs in [work.root / "R", *(cwd / "R" for name, cwd in cases.dirs.items()
                                    if not name.startswith(("corrupt", "truncated")))]:
        if (runs / "runs.sqlite").exists():
            assert runs_left_running(runs) == [], runs


# ---------------------------------------------------------------- infinities as missing values; skops without --trust


def test_data_infinite_missing_trains_and_predict_uses_the_run_s_setting(work):
    """The fix the line names works: the same export trains with data.infinite: missing, and predict reads new
    data holding infinities with the run's setting."""
    cwd = work.root / "as-missing"
    cwd.mkdir()
    (cwd / "p.yaml").write_text(pipeline(work.root / "inf", name="as-missing", data_extra="  infinite: missing\n"))
    done = workbench("run", "p.yaml", "--connect", work.address, "--runs-dir", "R", cwd=cwd)
    assert done.returncode == 0, done.stderr
    [record] = RunStore(cwd / "R").list()
    assert record.status == "succeeded" and record.spec["data"]["infinite"] == "missing"
    scored = workbench("predict", record.id, work.root / "new-inf", "--out", "scores", "--runs-dir", "R",
                       "--connect", work.address, cwd=cwd)
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.startswith(f"scored {SHARDS * ROWS:,} rows with run {record.id}")
    scores = pd.read_parquet(cwd / "scores")
    assert len(scores) == SHARDS * ROWS and scores["score"].between(0, 1).all()


def test_a_scikit_learn_run_round_trips_through_predict_without_trust(work, tmp_path):
    """The stacking ensemble (RandomForest, naive Bayes behind imputation and scaling, FrozenEstimator,
    StackingClassifier) is saved with skops and scored by `workbench predict` without --trust, with exactly
    the probabilities of the model as this process loads it."""
    record = RunStore(work.root / "R").get(work.ens_id)
    model_file = Path(record.path) / record.artifacts["model"]
    assert model_file.name == "model.skops" and not list(Path(record.path).glob("*.joblib"))
    shard = sorted((work.root / "good").glob("*.parquet"))[0]
    done = workbench("predict", work.ens_id, shard, "--out", tmp_path / "scores", "--runs-dir", work.root / "R",
                     "--cluster", work.root / "one-worker.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"scored {ROWS:,} rows with run {work.ens_id} ({model_file})")
    model = load_model(model_file)  # no trust: every type it names is one the workbench trusts
    assert type(model).__name__ == "StackingClassifier"
    frame = pd.read_parquet(shard)
    expected = model.predict_proba(frame[list(record.data["features"])].to_numpy(dtype="float64"))[:, 1]
    scores = pd.read_parquet(tmp_path / "scores").sort_index()
    np.testing.assert_array_equal(scores["score"].to_numpy(), expected)


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """``tiny_disk(kib)``: a tmpfs of that many KiB at ``tmp_path/tiny`` (needs root, as in CI)."""
    mounted = []

    def mount(kib: int) -> Path:
        path = tmp_path / "tiny"
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=True)


def kib(path: Path) -> int:
    return -(-sum(f.stat().st_size for f in [path, *path.rglob("*")] if f.is_file()) // 1024)


def test_disk_full_while_building_a_cache_keeps_the_previous_cache(work, tmp_path, tiny_disk):
    (tmp_path / "p.yaml").write_text(pipeline(work.root / "good"))
    sizing = workbench("data", "cache", "p.yaml", "--to", tmp_path / "sizing.zarr", "--connect", work.address, cwd=tmp_path)
    assert sizing.returncode == 0, sizing.stderr
    mount = tiny_disk(kib(tmp_path / "sizing.zarr") * 3 // 2 + 16)  # room for one cache, not for two
    cache = mount / "good.zarr"
    built = workbench("data", "cache", "p.yaml", "--to", cache, "--connect", work.address, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    before = read_cache(cache).frame.compute()
    # a rebuild needs the old and the new cache side by side: no room for both
    # on a cluster of its own, so that a worker's log would reach this command's stderr
    proc = workbench("data", "cache", "p.yaml", "--to", cache, "--rebuild", "--cluster", work.root / "one-worker.yaml",
                     cwd=tmp_path)
    line = assert_one_line_error(proc)
    assert re.fullmatch(rf"error: no space left in {mount} for the cache good\.zarr \([\d.]+ [kM]iB free after "
                        r"removing the partial build\); the cache there is unchanged; free space there, or build the "
                        r"cache on a larger disk \(--to DIR, or data\.cache\)", line), line
    assert "Compute Failed" not in proc.stderr
    assert sorted(p.name for p in mount.iterdir()) == ["good.zarr"]  # no half-built cache beside it
    pd.testing.assert_frame_equal(read_cache(cache).frame.compute(), before)
    again = workbench("data", "cache", "p.yaml", "--to", cache, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith(f"cache {cache} is up to date"), again.stderr


def test_disk_full_while_writing_scores_leaves_no_scores(work, tmp_path, tiny_disk):
    mount = tiny_disk(16)  # the scores of 6,000 rows take about 100 KiB
    proc = workbench("predict", work.xgb_id, work.root / "good", "--out", mount / "scores", "--runs-dir", work.root / "R",
                     "--cluster", work.root / "one-worker.yaml", cwd=tmp_path)  # its worker logs to this stderr
    line = assert_one_line_error(proc)
    assert re.fullmatch(rf"error: no space left in {mount} for the scores \([\d.]+ kiB free after removing the partial "
                        rf"files\); {mount}/scores is unchanged; free space there, or write the scores to a larger disk "
                        r"\(--out DIR\)", line), line
    assert "Compute Failed" not in proc.stderr and proc.stdout == ""
    assert list(mount.iterdir()) == []


def test_disk_full_in_the_runs_directory_fails_the_run_without_a_partial_model(work, tmp_path, tiny_disk):
    record = RunStore(work.root / "R").get(work.ens_id)
    model = kib(Path(record.path) / record.artifacts["model"])
    assert model > 768, model  # the store (about 100 KiB) fits in half of it, the model does not
    mount = tiny_disk(model // 2)
    proc = workbench("run", "ens.yaml", "--connect", work.address, "--runs-dir", mount / "runs", cwd=work.root)
    line = assert_one_line_error(proc)
    [record] = RunStore(mount / "runs").list()
    assert re.fullmatch(rf"error: no space left in {mount}/runs/{record.id} for the run's model\.skops \([\d.]+ [kM]iB free "
                        r"after removing the partial file\); free space there, or record runs on a larger disk "
                        r"\(--runs-dir, or runs_dir: in the pipeline file\)", line), line
    assert (record.status, record.error) == ("failed", line[len("error: "):])
    assert list(Path(record.path).iterdir()) == []  # no partial model file (nor its temporary)
