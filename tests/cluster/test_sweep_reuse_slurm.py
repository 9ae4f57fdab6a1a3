"""Shared splits on the real single-node SLURM: a sweep whose cells reuse one persisted split
gives every cell the numbers of the cold path (``reuse: false``), with its workers as batch jobs
over TLS. Fails (never skips) without SLURM; see conftest.py."""

from __future__ import annotations

import pytest

from workbench.data.synth import synth_bitcoin_export
from workbench.stores.sweeps import SweepStore
from workbench.sweep import run_sweep

from ..test_sweep import sweep_file
from ..test_sweep_reuse import assert_same_numbers, records
from .conftest import squeue, wait_queue_empty, write_profile

pytestmark = pytest.mark.usefixtures("slurm")


def test_cells_that_reuse_the_split_on_slurm_have_the_numbers_of_the_cold_path(tmp_path):
    export = tmp_path / "export"
    synth_bitcoin_export(export, 30_000, positive_rate=0.02, rows_per_shard=10_000, seed=0)
    profile = write_profile(tmp_path, job_name="wb-reuse")
    path = sweep_file(tmp_path, export, name="reuse-on-slurm", axes={"workers": [2], "sampling.ratio": ["1:1", "1:4"]},
                      trials=1, cluster={"type": "local"})  # cluster= replaces it
    said: list[str] = []
    reused = run_sweep(path, cluster=profile, runs_dir=tmp_path / "reuse", progress=said.append)
    assert (reused.succeeded, reused.failed) == (2, 0)
    assert wait_queue_empty(name="wb-reuse"), squeue()
    cold = run_sweep(path, cluster=profile, runs_dir=tmp_path / "cold", overrides={"reuse": False})
    assert (cold.succeeded, cold.failed) == (2, 0)
    assert wait_queue_empty(name="wb-reuse"), squeue()

    on, off = records(tmp_path / "reuse", "reuse-on-slurm"), records(tmp_path / "cold", "reuse-on-slurm")
    order = [c["cell_key"] for c in SweepStore(tmp_path / "reuse").cells("reuse-on-slurm")]
    assert [on[k].data["split_reuse"]["role"] for k in order] == ["built", "reused"]
    assert on[order[0]].data["split_group"] == on[order[1]].data["split_group"]
    assert all(r.cluster["scheduler"].startswith("tls://") and r.cluster["workers"] == 2
               for r in [*on.values(), *off.values()])
    assert all(r.data["split_reuse"]["role"] == "cold" for r in off.values())
    assert_same_numbers(on, off)
    assert any(line.startswith("split: released the shared split of group ") for line in said)
