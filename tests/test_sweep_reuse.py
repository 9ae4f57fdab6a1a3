"""Sweeps whose cells share one persisted split (``reuse``, on by default): the persisted sets hold
exactly the rows of a fresh read and split, every cell's numbers are those of the cold path, the
split is released when the workers change and when the sweep ends, a split that would take the
workers past ``workbench.sweep.reuse_memory_fraction`` is never kept (the cell says so), and
``reuse: false`` / ``workbench sweep --no-reuse`` give the cold path. Cells are tiny (a 30k-row
export, a few boosting rounds); the session's two-worker cluster serves the cells that need no
scaling."""

from __future__ import annotations

import re
from pathlib import Path

import dask.config
import numpy as np
import pandas as pd
import pytest
import yaml
from distributed import futures_of

from workbench.data.cache import load_dataset
from workbench.data.synth import synth_bitcoin_export
from workbench.errors import ConfigError
from workbench.pipeline import PipelineSpec, run_pipeline
from workbench.pipeline.shared import SharedSplit
from workbench.report import write_report
from workbench.sampling import split
from workbench.stores.runs import RunStore
from workbench.stores.sweeps import SweepStore
from workbench.sweep import run_sweep

from .cli.helpers import workbench
from .test_sweep import sweep_file

RATIOS = {"sampling.ratio": ["1:1", "1:4"]}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    path = tmp_path_factory.mktemp("reuse-export")
    synth_bitcoin_export(path, 30_000, positive_rate=0.02, rows_per_shard=10_000, seed=0)
    return path


def held_keys(client) -> set:
    """The keys the workers hold data for."""
    return {key for key, workers in client.who_has().items() if workers}


def held_partitions(client) -> set:
    """The held keys of frame partitions (``(name, i)``; a scattered model has a key of its own)."""
    return {key for key in held_keys(client) if isinstance(key, tuple)}


def records(runs: Path, sweep: str) -> dict:
    """cell key -> the run record of the cell."""
    store = RunStore(runs)
    return {c["cell_key"]: store.get(c["run_id"]) for c in SweepStore(runs).cells(sweep)}


def model_text(record) -> str:
    return (Path(record.path) / record.artifacts["model"]).read_text()


def assert_same_numbers(reused: dict, cold: dict) -> None:
    """Every cell: the same metrics (all of them, intervals included), rows, test rows and model."""
    assert sorted(reused) == sorted(cold) and reused
    for key in reused:
        a, b = reused[key], cold[key]
        assert a.status == b.status == "succeeded", key
        assert a.metrics == b.metrics, key
        assert a.data["sampled"] == b.data["sampled"] and a.data["test"] == b.data["test"], key
        assert a.data["test_rows_fingerprint"] == b.data["test_rows_fingerprint"], key
        assert model_text(a) == model_text(b), key


# ---------------------------------------------------------------- the shared split itself


def test_the_persisted_split_holds_exactly_the_rows_of_a_fresh_read_and_split(tmp_path, export, client):
    spec = PipelineSpec.model_validate({
        "name": "shared", "data": {"path": str(export / "btc_addresses-*.parquet"), "target": "is_miner",
                                   "drop": ["address"]},
        "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 3}, "sampling": {"ratio": "1:2", "seed": 1},
        "model": {"params": {"max_depth": 3}, "num_boost_round": 8, "early_stopping_rounds": 4},
    })
    shared = SharedSplit()
    first = run_pipeline(spec, client=client, runs_dir=tmp_path / "runs", shared=shared)
    assert first.record.data["split_reuse"]["role"] == "built" and first.record.data["split_reused"] is False
    assert shared.held and shared.key == first.record.data["split_group"] == SharedSplit.key_for(spec, client)
    assert shared.nbytes > 0

    data = load_dataset(spec.data, client)
    train, test = split(data, 0.2, seed=3)
    train, valid = split(train, 0.1, seed=3)
    for fresh, kept in ((train, shared.train), (valid, shared.valid), (test, shared.test)):
        assert kept.partition_keys == fresh.partition_keys and kept.info["lineage"] == fresh.info["lineage"]
        np.testing.assert_array_equal(kept.class_counts, fresh.class_counts)
        assert kept.npartitions == fresh.npartitions
        # partition by partition (to_delayed: get_partition would renumber the partitions the split seeds by)
        for mine, theirs in zip(kept.frame.to_delayed(), fresh.frame.to_delayed()):
            pd.testing.assert_frame_equal(mine.compute(), theirs.compute())

    second = run_pipeline(spec, client=client, runs_dir=tmp_path / "runs", shared=shared)
    assert second.record.data["split_reuse"]["role"] == "reused" and second.record.data["split_reused"] is True
    assert second.record.timings["read"] == 0.0 and second.record.timings["split"] == 0.0
    assert second.record.metrics == first.record.metrics

    kept_keys = [f.key for d in (shared.train, shared.valid, shared.test) for f in futures_of(d.frame)]
    assert len(kept_keys) == 3 * shared.train.npartitions and set(kept_keys) <= held_keys(client)
    assert shared.release(client) and not shared.held
    assert not set(kept_keys) & held_keys(client)  # the workers hold none of it any more
    assert shared.release(client) is False


def test_a_bad_memory_fraction_is_refused_in_one_line():
    with dask.config.set({"workbench.sweep.reuse_memory_fraction": 1.5}):
        with pytest.raises(ConfigError) as info:
            SharedSplit()
    assert str(info.value) == ("workbench.sweep.reuse_memory_fraction 1.5 is not in (0, 1]; set it to the share of a "
                               "worker's memory a shared split may fill, e.g. 0.5")


# ---------------------------------------------------------------- sweeps


def test_with_reuse_every_cell_has_the_numbers_of_the_cold_path(tmp_path, export, client):
    path = sweep_file(tmp_path, export, name="same", axes=RATIOS, trials=2)
    before = held_partitions(client)
    said: list[str] = []
    rows: list[dict] = []
    during: list[set] = []

    def on_cell(cell, row):
        rows.append(row)
        during.append(held_partitions(client) - before)

    reused = run_sweep(path, client=client, runs_dir=tmp_path / "reuse", progress=said.append, on_cell=on_cell)
    assert (reused.succeeded, reused.failed) == (4, 0)
    assert during[0] and during[0] == during[1] == during[2] == during[3]  # the split, kept from cell to cell
    assert not (held_partitions(client) - before)  # released when the sweep ended
    cold = run_sweep(path, client=client, runs_dir=tmp_path / "cold", overrides={"reuse": False})
    assert (cold.succeeded, cold.failed) == (4, 0)

    on, off = records(tmp_path / "reuse", "same"), records(tmp_path / "cold", "same")
    assert_same_numbers(on, off)

    # the first cell read and split for the group, the three after it reused that split
    order = [c["cell_key"] for c in SweepStore(tmp_path / "reuse").cells("same")]
    roles = [on[key].data["split_reuse"]["role"] for key in order]
    assert roles == ["built", "reused", "reused", "reused"]
    assert [on[key].data["split_reused"] for key in order] == [False, True, True, True]
    groups = {on[key].data["split_group"] for key in order}
    assert len(groups) == 1 and [row["split_reuse"]["role"] for row in rows] == roles
    built = on[order[0]]
    shared_seconds = built.data["split_reuse"]["read_seconds"] + built.data["split_reuse"]["split_seconds"]
    assert shared_seconds == pytest.approx(built.timings["read"] + built.timings["split"])
    assert all(on[key].timings["read"] == on[key].timings["split"] == 0.0 for key in order[1:])
    assert all(off[key].timings["read"] > 0 and off[key].data["split_reuse"]["role"] == "cold" for key in order)
    assert all(off[key].data["split_reused"] is False for key in order)

    (group,) = groups
    ends = [line for line in said if line.startswith("cell ratio=")]
    assert f"split read once for group {group} (" in ends[0] and "kept)" in ends[0]
    assert all(f"; split reused (group {group})" in line for line in ends[1:])
    assert re.search(rf"split: released the shared split of group {group} \([0-9.]+ [KM]iB\): sweep same is done",
                     said[-2]), said[-2]

    # the report shows the shared read and split once per group, apart from the cells' times
    report = write_report("same", tmp_path / "report", runs_dir=tmp_path / "reuse")
    markdown = report.markdown.read_text()
    assert "## Shared read and split" in markdown
    section = markdown[markdown.index("## Shared read and split"):]
    line = next(line for line in section.splitlines() if line.startswith(f"| {group} |"))
    assert line.startswith(f"| {group} | 2 | 4 | 3 | ")
    cold_report = write_report("same", tmp_path / "cold-report", runs_dir=tmp_path / "cold")
    assert "every cell read and split its data itself" in cold_report.markdown.read_text()


def test_the_split_is_released_when_the_workers_change_and_each_count_reads_its_own(tmp_path, export):
    path = sweep_file(tmp_path, export, name="scaled", axes={"workers": [1, 2], **RATIOS}, trials=1)
    said: list[str] = []
    result = run_sweep(path, runs_dir=tmp_path / "reuse", progress=said.append)
    assert (result.succeeded, result.failed) == (4, 0)
    on = records(tmp_path / "reuse", "scaled")
    order = [c["cell_key"] for c in SweepStore(tmp_path / "reuse").cells("scaled")]
    assert [on[k].cluster["workers"] for k in order] == [1, 1, 2, 2]
    assert [on[k].data["split_reuse"]["role"] for k in order] == ["built", "reused", "built", "reused"]
    one, two = on[order[0]].data["split_group"], on[order[2]].data["split_group"]
    assert one != two and on[order[1]].data["split_group"] == one and on[order[3]].data["split_group"] == two
    released = [line for line in said if line.startswith("split: released")]
    assert len(released) == 2
    assert released[0].startswith(f"split: released the shared split of group {one} (")
    assert released[0].endswith(": the workers change to 2")
    # released before the cluster was scaled to 2
    assert said.index(released[0]) < next(i for i, line in enumerate(said) if line.startswith("cluster: 2 worker(s)"))
    assert released[1].startswith(f"split: released the shared split of group {two} (")

    cold = run_sweep(path, runs_dir=tmp_path / "cold", overrides={"reuse": False})
    assert (cold.succeeded, cold.failed) == (4, 0)
    assert_same_numbers(on, records(tmp_path / "cold", "scaled"))


def test_a_split_past_the_memory_fraction_is_not_kept_and_the_cells_say_so(tmp_path, export, client):
    path = sweep_file(tmp_path, export, name="tight", axes=RATIOS, trials=1)
    said: list[str] = []
    with dask.config.set({"workbench.sweep.reuse_memory_fraction": 1e-9}):
        result = run_sweep(path, client=client, runs_dir=tmp_path / "runs", progress=said.append)
    assert (result.succeeded, result.failed) == (2, 0)
    on = records(tmp_path / "runs", "tight")
    for record in on.values():
        reuse = record.data["split_reuse"]
        assert reuse["role"] == "cold" and record.data["split_reused"] is False and reuse["group"] is None
        assert re.fullmatch(r"not kept: its share of about [0-9.]+ [KM]iB would take worker \S+ \([0-9.]+ [KMG]iB used\) "
                            r"past 0% of its [0-9.]+ GiB \(workbench.sweep.reuse_memory_fraction\)", reuse["note"]), reuse
        assert record.timings["read"] > 0
    ends = [line for line in said if line.startswith("cell ratio=")]
    assert len(ends) == 2 and all("; cold path (not kept: its share of about" in line for line in ends)
    assert not any(line.startswith("split: released") for line in said)  # nothing was ever kept


def test_a_kept_split_is_released_once_the_workers_pass_the_fraction(tmp_path, export, client):
    path = sweep_file(tmp_path, export, name="grows", axes=RATIOS, trials=1)
    said: list[str] = []
    tight: list = []  # the setting lowered from the second cell on (dask.config.set applies when made)

    def on_cell(cell, row):
        if not tight:
            tight.append(dask.config.set({"workbench.sweep.reuse_memory_fraction": 1e-9}))

    try:
        result = run_sweep(path, client=client, runs_dir=tmp_path / "runs", progress=said.append, on_cell=on_cell)
    finally:
        for setting in tight:
            setting.__exit__(None, None, None)
    assert dask.config.get("workbench.sweep.reuse_memory_fraction") == 0.5
    assert (result.succeeded, result.failed) == (2, 0)
    order = [c["cell_key"] for c in SweepStore(tmp_path / "runs").cells("grows")]
    on = records(tmp_path / "runs", "grows")
    first, second = (on[k].data["split_reuse"] for k in order)
    assert first["role"] == "built" and second["role"] == "cold"
    assert re.fullmatch(r"released the shared split: worker \S+ uses [0-9.]+ [KMG]iB, past 0% of its [0-9.]+ GiB "
                        r"\(workbench.sweep.reuse_memory_fraction\)", second["note"]), second
    assert "; cold path (released the shared split: worker" in [line for line in said if line.startswith("cell ")][-1]


# ---------------------------------------------------------------- the switch, through the real entry point


@pytest.fixture(scope="module")
def cli_sweeps(tmp_path_factory, export):
    """`workbench sweep` three times on one worker: reuse by default, --no-reuse, and `reuse: false` in the file."""
    cwd = tmp_path_factory.mktemp("reuse-cli")
    cluster = {"type": "local", "n_workers": 1, "threads_per_worker": 1, "memory_limit": "2GiB"}
    sweep_file(cwd, export, name="switch", axes=RATIOS, trials=1, cluster=cluster)
    off = yaml.safe_load((cwd / "switch.yaml").read_text())
    (cwd / "off.yaml").write_text(yaml.safe_dump({**off, "name": "switch", "reuse": False}, sort_keys=False))
    runs = {name: cwd / name for name in ("default", "flag", "file")}
    procs = {
        "default": workbench("sweep", "switch.yaml", "--runs-dir", runs["default"], cwd=cwd),
        "flag": workbench("sweep", "switch.yaml", "--no-reuse", "--runs-dir", runs["flag"], cwd=cwd),
        "file": workbench("sweep", "off.yaml", "--runs-dir", runs["file"], cwd=cwd),
    }
    for proc in procs.values():
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.startswith("sweep switch: 2 cells; 2 succeeded and 0 failed in this run"), proc.stdout
    return procs, {name: records(path, "switch") for name, path in runs.items()}


def test_the_command_reuses_the_split_by_default(cli_sweeps):
    procs, recorded = cli_sweeps
    roles = sorted(r.data["split_reuse"]["role"] for r in recorded["default"].values())
    assert roles == ["built", "reused"]
    assert "; split reused (group " in procs["default"].stderr and "reuse off" not in procs["default"].stderr


@pytest.mark.parametrize("how", ["flag", "file"])
def test_no_reuse_and_reuse_false_give_the_cold_path_with_the_same_numbers(cli_sweeps, how):
    procs, recorded = cli_sweeps
    assert "sweep switch: reuse off: every cell reads and splits its data itself" in procs[how].stderr
    assert "split reused" not in procs[how].stderr and "split: released" not in procs[how].stderr
    for record in recorded[how].values():
        assert record.data["split_reuse"] == {"role": "cold", "group": None,
                                              "note": "reuse off (reuse: false or --no-reuse)"}
        assert record.data["split_reused"] is False and record.timings["read"] > 0
    assert_same_numbers(recorded["default"], recorded[how])
