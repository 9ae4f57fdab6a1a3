"""The run store: a real SQLite file in a temporary directory."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.stores import runs as runs_module
from workbench.stores.runs import (
    DEFAULT_DIR,
    SCHEMA_VERSION,
    Run,
    RunRecord,
    RunStore,
    fail_unfinished,
    interrupted_error,
)

SPEC = {"name": "fraud", "model": {"max_depth": 4, "eta": 0.1}, "columns": ["a", "b"]}
SEEDS = {"split": 0, "sampling": 1, "model": 2}
VERSIONS = {"dask": "2026.8.0", "xgboost": "3.2.0"}
CLUSTER = {"type": "local", "workers": 2, "threads": 2, "memory": "3GiB"}


def start(store: RunStore, name: str = "fraud") -> Run:
    return store.start(name, spec=SPEC, seeds=SEEDS, versions=VERSIONS, cluster=CLUSTER)


def unique_prefix(run_id: str, other: str) -> str:
    return run_id[: len(os.path.commonprefix([run_id, other])) + 1]


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs")


def test_every_field_round_trips(store: RunStore) -> None:
    run = start(store)
    for phase, seconds in [("read", 1.5), ("split", 0.25), ("rus", 2), ("dmatrix", 0.5), ("train", 9.0)]:
        run.log_timing(phase, seconds)
    run.log_data(rows=1000, classes={"0": 990, "1": 10})
    run.log_data(rows_after_sampling=110)
    history = {"valid": {"auc": [0.7, 0.8], "logloss": [0.6, 0.5]}}
    run.log_history(history)
    run.save_artifact("model", "model.json", lambda path: path.write_text("{}"))
    metrics = {"roc_auc": 0.91, "pr_auc": 0.42, "confusion": {"tp": 8, "fp": 3, "fn": 2, "tn": 987}}
    returned = run.succeed(metrics)

    record = store.get(run.id)
    assert record == returned
    assert isinstance(record, RunRecord)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", record.id)
    assert (record.name, record.status, record.error) == ("fraud", "succeeded", None)
    assert (record.spec, record.seeds, record.versions, record.cluster) == (SPEC, SEEDS, VERSIONS, CLUSTER)
    assert list(record.timings) == ["read", "split", "rus", "dmatrix", "train"]
    assert record.timings["rus"] == 2.0
    assert record.data == {"rows": 1000, "classes": {"0": 990, "1": 10}, "rows_after_sampling": 110}
    assert record.history == history
    assert record.metrics == metrics
    assert record.artifacts == {"model": "model.json"}
    assert record.path == str(run.path) == str((store.directory / run.id).absolute())
    assert Path(record.path, "model.json").read_text() == "{}"
    created = datetime.fromisoformat(record.created_at)
    assert created.tzinfo == timezone.utc
    assert record.id.startswith(created.strftime("%Y%m%d-%H%M%S"))
    assert datetime.fromisoformat(record.finished_at) >= created
    assert json.loads(json.dumps(record.to_dict())) == record.to_dict()
    assert record.to_dict()["metrics"] == metrics and record.to_dict()["path"] == record.path


def test_a_started_run_is_running_with_its_directory(store: RunStore) -> None:
    run = start(store)
    record = store.get(run.id)
    assert (record.status, record.finished_at, record.error, record.metrics) == ("running", None, None, {})
    assert run.path.is_dir() and run.path.parent == store.directory.absolute()
    assert len(store) == 1


def test_list_is_newest_first_and_filters_by_status(store: RunStore) -> None:
    first, second, third = start(store, "a"), start(store, "b"), start(store, "c")
    first.succeed({"roc_auc": 0.5})
    second.fail("DataError: no rows")

    assert [r.id for r in store.list()] == [third.id, second.id, first.id]
    assert [r.id for r in store.list(limit=2)] == [third.id, second.id]
    assert store.list(limit=0) == []
    assert [r.id for r in store.list(status="succeeded")] == [first.id]
    assert [r.id for r in store.list(status="failed")] == [second.id]
    assert [r.id for r in store.list(status="running")] == [third.id]
    assert len(store) == 3


def test_list_rejects_an_unknown_status(store: RunStore) -> None:
    with pytest.raises(WorkbenchError, match="unknown run status 'done'; use one of running, succeeded, failed"):
        store.list(status="done")


def test_get_by_id_and_by_unique_prefix(store: RunStore) -> None:
    one, two = start(store, "one"), start(store, "two")
    assert store.get(one.id).name == "one"
    assert store.get(unique_prefix(one.id, two.id)).name == "one"
    assert store.get(unique_prefix(two.id, one.id)).name == "two"


def test_unknown_id_names_the_database_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = RunStore()
    start(store)
    assert store.database == Path(DEFAULT_DIR, "runs.sqlite")
    with pytest.raises(WorkbenchError) as caught:
        store.get("nope")
    assert str(caught.value) == "no run 'nope' in runs/runs.sqlite; list the recorded runs with `workbench runs`"
    assert caught.value.fix == "list the recorded runs with `workbench runs`"
    with pytest.raises(WorkbenchError, match="no run ''"):
        store.get("")


def test_ambiguous_prefix_names_the_candidates(store: RunStore) -> None:
    one, two = start(store), start(store)
    with pytest.raises(WorkbenchError) as caught:
        store.get(one.id[:8])
    message = str(caught.value)
    assert f"run id '{one.id[:8]}' is ambiguous" in message
    assert one.id in message and two.id in message
    assert message.endswith("give more characters of the id")


def test_reading_a_missing_or_empty_directory_creates_nothing(tmp_path: Path) -> None:
    missing = RunStore(tmp_path / "missing")
    assert missing.list() == [] and len(missing) == 0
    with pytest.raises(WorkbenchError, match="no run 'x'"):
        missing.get("x")
    assert not (tmp_path / "missing").exists()

    (tmp_path / "empty").mkdir()
    empty = RunStore(tmp_path / "empty")
    assert empty.list(status="failed") == [] and len(empty) == 0
    assert list((tmp_path / "empty").iterdir()) == []


def test_schema_is_versioned_and_journal_is_wal(store: RunStore) -> None:
    start(store)
    with sqlite3.connect(store.database) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    assert set(RunRecord.__dataclass_fields__) - set(columns) == {"path"}


def test_a_newer_schema_is_refused(store: RunStore) -> None:
    start(store)
    conn = sqlite3.connect(store.database)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(WorkbenchError, match="schema 99, newer than"):
        RunStore(store.directory).list()
    with pytest.raises(WorkbenchError, match="upgrade workbench"):
        start(RunStore(store.directory))


def test_context_manager_marks_failed_on_exception(store: RunStore) -> None:
    with pytest.raises(ValueError, match="bad column"):
        with start(store) as run:
            run.log_timing("read", 1.0)
            raise ValueError("bad column 'x'\nsecond line of detail")
    record = store.get(run.id)
    assert (record.status, record.error) == ("failed", "ValueError: bad column 'x'")
    assert record.finished_at is not None and record.timings == {"read": 1.0}


def test_context_manager_keeps_a_workbench_error_message_bare(store: RunStore) -> None:
    with pytest.raises(WorkbenchError):
        with start(store) as run:
            raise WorkbenchError("no rows in data.parquet", "check the path")
    assert store.get(run.id).error == "no rows in data.parquet; check the path"


def test_context_manager_marks_failed_without_a_result(store: RunStore) -> None:
    with start(store) as run:
        run.log_timing("read", 1.0)
    record = store.get(run.id)
    assert (record.status, record.error) == ("failed", "run ended without a result")


def test_context_manager_keeps_a_success(store: RunStore) -> None:
    with start(store) as run:
        run.succeed({"roc_auc": 0.8})
    assert store.get(run.id).status == "succeeded"


def test_a_signal_before_the_with_block_is_recorded_by_fail_unfinished(store: RunStore, monkeypatch) -> None:
    """A signal can land after the row's insert and before ``with`` enters: the command's handler
    then ends the runs this process left unfinished, and only those."""
    monkeypatch.setattr(runs_module, "_UNFINISHED", {})  # not the runs other tests left open
    with start(store) as done:
        done.succeed({"roc_auc": 0.8})
    with pytest.raises(ValueError), start(store) as failed:
        raise ValueError("bad")
    orphan = start(store)  # never entered
    assert fail_unfinished(interrupted_error("SIGTERM")) == [orphan.id]
    record = store.get(orphan.id)
    assert (record.status, record.error) == ("failed", "interrupted by SIGTERM before the run finished")
    assert store.get(done.id).status == "succeeded"
    assert store.get(failed.id).error == "ValueError: bad"
    assert fail_unfinished("again") == []


def test_an_exception_after_succeed_still_fails_the_run(store: RunStore) -> None:
    with pytest.raises(OSError):
        with start(store) as run:
            run.succeed({"roc_auc": 0.8})
            raise OSError("disk full")
    record = store.get(run.id)
    assert (record.status, record.error) == ("failed", "OSError: disk full")


def test_a_failed_run_cannot_succeed_and_keeps_its_first_error(store: RunStore) -> None:
    run = start(store)
    run.fail("first")
    with pytest.raises(RuntimeError, match="already failed"):
        run.succeed({"roc_auc": 1.0})
    assert run.fail("second").error == "first"
    record = store.get(run.id)
    assert (record.status, record.error, record.metrics) == ("failed", "first", {})


def test_a_succeeded_run_cannot_succeed_twice(store: RunStore) -> None:
    run = start(store)
    run.succeed({"roc_auc": 0.7})
    with pytest.raises(RuntimeError, match="already succeeded"):
        run.succeed({"roc_auc": 0.9})
    assert store.get(run.id).metrics == {"roc_auc": 0.7}


def test_artifact_is_written_through_a_temporary_path(store: RunStore) -> None:
    run = start(store)
    seen = []

    def write(path: Path) -> None:
        seen.append(path)
        assert path.parent == run.path and path.suffix == ".json" and not path.exists()
        path.write_text('{"trees": []}')

    final = run.save_artifact("model", "model.json", write)
    assert final == run.path / "model.json" and final.read_text() == '{"trees": []}'
    assert not seen[0].exists()
    assert sorted(p.name for p in run.path.iterdir()) == ["model.json"]
    assert store.get(run.id).artifacts == {"model": "model.json"}


def test_a_failing_artifact_write_leaves_nothing_behind(store: RunStore) -> None:
    run = start(store)
    run.save_artifact("model", "model.json", lambda path: path.write_text("old"))

    def write(path: Path) -> None:
        path.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run.save_artifact("model", "model.json", write)
    with pytest.raises(OSError):
        run.save_artifact("roc", "roc.png", write)
    assert sorted(p.name for p in run.path.iterdir()) == ["model.json"]
    assert (run.path / "model.json").read_text() == "old"
    assert store.get(run.id).artifacts == {"model": "model.json"}


def test_a_directory_artifact_and_its_failure(store: RunStore) -> None:
    run = start(store)

    def write(path: Path) -> None:
        path.mkdir()
        (path / "chunk").write_text("x")

    def write_and_fail(path: Path) -> None:
        write(path)
        raise RuntimeError("interrupted")

    assert run.save_artifact("scores", "scores.zarr", write) == run.path / "scores.zarr"
    with pytest.raises(RuntimeError):
        run.save_artifact("other", "nested/other.zarr", write_and_fail)
    assert (run.path / "scores.zarr" / "chunk").read_text() == "x"
    assert list((run.path / "nested").iterdir()) == []
    assert store.get(run.id).artifacts == {"scores": "scores.zarr"}


@pytest.mark.parametrize("filename", ["../escape.json", "/tmp/abs.json", ""])
def test_artifact_filename_must_stay_inside_the_run(store: RunStore, filename: str) -> None:
    with pytest.raises(ValueError, match="inside the run directory"):
        start(store).save_artifact("model", filename, lambda path: path.write_text("x"))


def test_numpy_values_paths_and_nan_are_recorded_as_json(store: RunStore) -> None:
    run = start(store)
    run.log_data(rows=np.int64(1000), classes={np.int64(0): np.int64(990), np.int64(1): np.int64(10)})
    run.log_timing("train", np.float32(1.5))
    record = run.succeed({
        "roc_auc": np.float64(0.875),
        "pr_auc": np.float32(0.5),
        "confusion": np.array([[5, 1], [2, 7]]),
        "thresholds": np.array([0.25, np.nan, np.inf]),
        "best": np.bool_(True),
        "missing": float("nan"),
        "missing_numpy": np.float64("nan"),
        "curve": Path("roc.png"),
        "pair": (1, 2.5),
    })
    expected_metrics = {
        "roc_auc": 0.875,
        "pr_auc": 0.5,
        "confusion": [[5, 1], [2, 7]],
        "thresholds": [0.25, None, None],
        "best": True,
        "missing": None,
        "missing_numpy": None,
        "curve": "roc.png",
        "pair": [1, 2.5],
    }
    assert record.metrics == expected_metrics == store.get(run.id).metrics
    assert record.data == {"rows": 1000, "classes": {"0": 990, "1": 10}}
    assert record.timings == {"train": 1.5}
    with sqlite3.connect(store.database) as conn:
        stored = conn.execute("SELECT metrics FROM runs").fetchone()[0]
    assert "NaN" not in stored and "Infinity" not in stored


def test_unencodable_values_are_refused_before_anything_is_written(store: RunStore) -> None:
    with pytest.raises(TypeError, match="object cannot be recorded"):
        store.start("x", spec={"bad": object()}, seeds={}, versions={}, cluster={})
    assert len(store) == 0 and not store.directory.exists()


def test_concurrent_writers_from_threads(store: RunStore) -> None:
    phases = [f"phase{i}" for i in range(20)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        runs = list(pool.map(lambda i: start(store, f"run{i}"), range(6)))
        jobs = [pool.submit(run.log_timing, phase, i) for run in runs for i, phase in enumerate(phases)]
        jobs += [pool.submit(run.log_data, **{phase: i}) for run in runs for i, phase in enumerate(phases)]
        for job in jobs:
            job.result()
        list(pool.map(lambda run: run.succeed({"roc_auc": 0.5}), runs))
    assert len({run.id for run in runs}) == 6
    for record in store.list():
        assert record.status == "succeeded"
        assert record.timings == {phase: float(i) for i, phase in enumerate(phases)}
        assert record.data == {phase: i for i, phase in enumerate(phases)}
    assert len(store) == 6


def _record_in_another_process(directory: str) -> None:
    run = RunStore(directory).start("child", spec={}, seeds={}, versions={}, cluster={})
    for i in range(10):
        run.log_timing(f"phase{i}", i)
    run.succeed({"roc_auc": 0.5})


def test_concurrent_writers_from_processes(store: RunStore) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_record_in_another_process, args=(str(store.directory),)) for _ in range(2)]
    for process in processes:
        process.start()
    for i in range(10):
        start(store, "parent").log_timing("read", i)
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    children = [r for r in store.list(status="succeeded") if r.name == "child"]
    assert len(children) == 2 and all(len(r.timings) == 10 for r in children)
    assert len(store) == 12


def test_a_drawn_id_already_taken_is_drawn_again(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import workbench.stores.runs as runs

    draws = iter(["aaaa", "aaaa", "bbbb", "bbbb", "cccc"])
    moment = datetime(2026, 11, 22, 1, 35, 12, tzinfo=timezone.utc)
    monkeypatch.setattr(runs.secrets, "token_hex", lambda n: next(draws))
    monkeypatch.setattr(runs, "_utcnow", lambda: moment)
    first = start(store)
    first.path.rmdir()
    second = start(store)
    third = start(store)
    assert [run.id[-4:] for run in (first, second, third)] == ["aaaa", "bbbb", "cccc"]
    assert first.id == "20261122-013512-aaaa"
    assert sorted(p.name for p in store.directory.iterdir() if p.is_dir()) == [second.id, third.id]
    assert [r.id for r in store.list()] == [third.id, second.id, first.id]
