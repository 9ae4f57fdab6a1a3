"""An XGBoost parameter typo through the real ``workbench`` entry point, as a new user makes it: one
``error:`` line with the file, the line of the key, the key and a suggestion, exit 2, and nothing
run, generated or recorded (XGBoost itself would only warn and train at the default depth)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from .helpers import assert_one_line_error, small_pipeline_text, workbench

SWEEP = {
    "name": "typo",
    "pipeline": "pipeline.yaml",
    "axes": {"workers": [1], "model.params.max_dept": [4, 6]},
    "trials": 1,
    "cluster": {"type": "local", "threads_per_worker": 1, "memory_limit": "2GiB"},
}


def _pipeline(params: str) -> str:
    text = small_pipeline_text("typo")
    default = "  params:\n    max_depth: 3\n    eta: 0.3\n"
    assert default in text
    return text.replace(default, params)


CASES = {
    # name: (files, args)
    "run_typo": ({"pipeline.yaml": _pipeline("  params: {max_dept: 6}\n")}, ("run", "pipeline.yaml")),
    "run_typo_block": ({"pipeline.yaml": _pipeline("  params:\n    eta: 0.3\n    max_dept: 6\n")},
                       ("run", "pipeline.yaml")),
    "run_bad_value": ({"pipeline.yaml": _pipeline("  params:\n    max_depth: -1\n")}, ("run", "pipeline.yaml")),
    "sweep_axis": ({"pipeline.yaml": small_pipeline_text("cell"), "sweep.yaml": yaml.safe_dump(SWEEP, sort_keys=False)},
                   ("sweep", "sweep.yaml")),
    "sweep_axis_flag": ({"pipeline.yaml": small_pipeline_text("cell"),
                         "sweep.yaml": yaml.safe_dump({**SWEEP, "axes": {"workers": [1]}}, sort_keys=False)},
                        ("sweep", "sweep.yaml", "--axis", "model.params.max_dept=4,6")),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case as its own ``workbench`` subprocess in its own directory, two at a time."""
    root = tmp_path_factory.mktemp("xgb-params-cli")
    cases = {}
    for name, (files, args) in CASES.items():
        cwd = root / name
        cwd.mkdir()
        for file, text in files.items():
            (cwd / file).write_text(text)
        cases[name] = (cwd, (*args, "--runs-dir", "R"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(workbench, *args, cwd=cwd) for name, (cwd, args) in cases.items()}
        return {name: (futures[name].result(), cases[name][0]) for name in cases}


def assert_nothing_done(proc, cwd: Path) -> None:
    assert proc.stdout == ""
    assert not (cwd / "R").exists()  # no run store, so no run recorded
    assert not (cwd / "data").exists()  # the synthetic export was not even generated


def line_of(path: Path, line: int) -> str:
    return path.read_text().splitlines()[line - 1].strip()


@pytest.mark.parametrize("name, key_line", [("run_typo", "params: {max_dept: 6}"), ("run_typo_block", "max_dept: 6")])
def test_run_with_a_parameter_typo_is_one_line_at_the_key(results, name, key_line):
    proc, cwd = results[name]
    error = assert_one_line_error(proc)
    match = re.fullmatch(r"error: pipeline\.yaml:(\d+): model\.params\.max_dept: unknown XGBoost parameter "
                         r"\(did you mean 'max_depth'\?\); fix `model\.params\.max_dept` \(see docs/pipeline\.md\)", error)
    assert match, error
    assert line_of(cwd / "pipeline.yaml", int(match.group(1))) == key_line
    assert "WARNING" not in proc.stderr and "are not used" not in proc.stderr
    assert_nothing_done(proc, cwd)


def test_run_with_a_value_xgboost_refuses_is_one_line_at_the_key(results):
    proc, cwd = results["run_bad_value"]
    error = assert_one_line_error(proc)
    match = re.match(r"error: pipeline\.yaml:(\d+): model\.params\.max_depth: XGBoost refuses this value: "
                     r"value -1 for Parameter max_depth should be greater equal to 0; fix", error)
    assert match, error
    assert line_of(cwd / "pipeline.yaml", int(match.group(1))) == "max_depth: -1"
    assert_nothing_done(proc, cwd)


def test_sweep_with_an_axis_of_a_parameter_typo_is_one_line(results):
    proc, cwd = results["sweep_axis"]
    error = assert_one_line_error(proc)
    match = re.fullmatch(r"error: sweep\.yaml:(\d+): axes\.model\.params\.max_dept\[0\]: pipeline key "
                         r"model\.params\.max_dept: unknown XGBoost parameter \(did you mean 'max_depth'\?\); "
                         r"fix `axes\.model\.params\.max_dept\[0\]` \(see docs/sweeps\.md\)", error)
    assert match, error
    assert line_of(cwd / "sweep.yaml", int(match.group(1))) == "- 4"
    assert_nothing_done(proc, cwd)


def test_sweep_axis_flag_with_a_parameter_typo_is_one_line(results):
    proc, cwd = results["sweep_axis_flag"]
    error = assert_one_line_error(proc)
    assert "model.params.max_dept: unknown XGBoost parameter (did you mean 'max_depth'?)" in error, error
    assert_nothing_done(proc, cwd)
