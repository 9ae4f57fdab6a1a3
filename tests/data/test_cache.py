"""The Zarr feature cache: built on the workers, checked against its source, rebuilt when stale,
and a stand-in for the Parquet in split, RUS and training (same seed, same metrics)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr

import workbench as wb
from workbench.config import DataSpec
from workbench.data.cache import build_cache, cache_export, cache_status, load_dataset, read_cache
from workbench.data.synth import synth_bitcoin_export

ROWS, SHARD_ROWS = 60_000, 16_000  # shards of 16k, 16k, 16k and 12k rows
pytestmark = pytest.mark.filterwarnings("ignore::workbench.WorkbenchWarning")
READ = dict(drop=["address"], partition_size="2MiB")


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cache") / "export"
    synth_bitcoin_export(directory, ROWS, rows_per_shard=SHARD_ROWS, positive_rate=0.02, signal=2.0, seed=3)
    return directory


def parquet(export) -> wb.Dataset:
    return wb.read_bigquery_export(export, "is_miner", **READ)


def test_the_cache_holds_what_the_reader_gives(client, export, tmp_path):
    cache = build_cache(export, tmp_path / "btc.zarr", "is_miner", client=client, **READ)
    source, cached = parquet(export), read_cache(cache)
    assert cached.partition_keys == source.partition_keys and cached.npartitions == source.npartitions == 4
    assert cached.features == source.features
    pd.testing.assert_frame_equal(cached.frame.compute(), source.frame.compute())
    assert cached.class_counts.tolist() == wb.class_counts(source).tolist()  # known without a pass
    assert list(cached.y.compute()) == list(source.y.compute())  # the target alone is read alone

    attrs = json.loads((cache / "zarr.json").read_text())["attributes"]["workbench_cache"]
    shards = sorted(export.glob("*.parquet"))
    assert [(s["path"], s["size"], s["modified"]) for s in attrs["sources"]] == [
        (str(p), p.stat().st_size, p.stat().st_mtime) for p in shards
    ]
    assert attrs["schema"]["total_received"] == "decimal128(38, 9)"
    assert attrs["normalisation"] == {"target": "is_miner", "drop": ["address"], "positive": None,
                                      "partition_size": 2 * 2**20}
    assert attrs["reader"]["conversions"]["total_received"] == "decimal -> float64"
    # every partition starts on a chunk boundary; chunks are Blosc-compressed
    chunk = attrs["chunk_rows"]
    assert chunk == SHARD_ROWS and attrs["starts"] == [0, 16_000, 32_000, 48_000] and attrs["lengths"][-1] == 12_000
    matrices = dict(zarr.open_group(str(cache), mode="r")["features"].arrays())
    assert sorted(matrices) == ["float64", "int64"]  # the feature matrix, one 2-D array per dtype
    floats = matrices["float64"]
    assert floats.shape == (len(floats.attrs["names"]), 60_000 + 4_000) and floats.chunks == (floats.shape[0], chunk)
    assert type(floats.compressors[0]).__name__ == "BloscCodec"
    assert floats.attrs["names"] + matrices["int64"].attrs["names"] == sorted(
        source.features, key=lambda f: (str(source.frame.dtypes[f]) != "float64", source.features.index(f)))
    assert not list(tmp_path.glob(".btc.zarr.*"))  # no temporary directory left


def test_a_changed_or_added_shard_makes_the_cache_stale_and_it_is_rebuilt(client, export, tmp_path):
    source = tmp_path / "export"
    source.mkdir()
    for shard in sorted(export.glob("*.parquet"))[:2]:
        (source / shard.name).write_bytes(shard.read_bytes())
    cache = tmp_path / "btc.zarr"
    first = cache_export(source, cache, "is_miner", client=client, **READ)
    assert first.info["cache_built"] and first.n_rows == 2 * SHARD_ROWS
    assert cache_status(cache, source, "is_miner", **READ) is None
    assert not cache_export(source, cache, "is_miner", client=client, **READ).info["cache_built"]

    # another argument to the reader
    assert cache_status(cache, source, "is_miner", drop=[], partition_size="2MiB").startswith("drop changed")
    # a shard rewritten with other rows (a re-export)
    shard = sorted(source.glob("*.parquet"))[1]
    shard.write_bytes(sorted(export.glob("*.parquet"))[3].read_bytes())
    assert f"{shard.name} is now" in cache_status(cache, source, "is_miner", **READ)
    rebuilt = cache_export(source, cache, "is_miner", client=client, **READ)
    assert rebuilt.info["cache_built"] and f"{shard.name} is now" in rebuilt.info["cache_reason"]
    expected = wb.read_bigquery_export(source, "is_miner", **READ).frame.compute()
    pd.testing.assert_frame_equal(rebuilt.frame.compute(), expected)
    # a shard added
    (source / "btc_addresses-000000000009.parquet").write_bytes(sorted(export.glob("*.parquet"))[0].read_bytes())
    assert "new shard(s) btc_addresses-000000000009.parquet" in cache_status(cache, source, "is_miner", **READ)
    assert cache_export(source, cache, "is_miner", client=client, **READ).n_rows == 16_000 + 12_000 + 16_000


def test_a_failed_rebuild_leaves_the_old_cache_and_nothing_half_written(client, export, tmp_path):
    source = tmp_path / "export"
    source.mkdir()
    shard = sorted(export.glob("*.parquet"))[0]
    (source / shard.name).write_bytes(shard.read_bytes())
    cache = tmp_path / "btc.zarr"
    cache_export(source, cache, "is_miner", client=client, **READ)
    before = read_cache(cache).frame.compute()
    data = bytearray((source / shard.name).read_bytes())  # footer intact, n_tx's pages garbage
    chunk = pq.read_metadata(source / shard.name).row_group(0).column(2)
    assert chunk.path_in_schema == "n_tx"
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    for i in range(start, start + chunk.total_compressed_size):
        data[i] = (data[i] * 31 + 7) % 256
    (source / shard.name).write_bytes(bytes(data))
    with pytest.raises(wb.DataError, match="is corrupt"):
        cache_export(source, cache, "is_miner", client=client, **READ)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["btc.zarr", "export"]
    pd.testing.assert_frame_equal(read_cache(cache).frame.compute(), before)


def test_training_from_the_cache_gives_the_metrics_of_training_from_parquet(client, export, tmp_path):
    cache = build_cache(export, tmp_path / "btc.zarr", "is_miner", client=client, **READ)

    def metrics(data):
        train, test = wb.split(data, 0.25, seed=7)
        train, valid = wb.split(train, 0.2, seed=7)
        sample = wb.undersample(train, "1:4", seed=7)
        result = wb.train_xgboost(sample, test, valid=valid, params={"max_depth": 3, "eta": 0.3},
                                  num_boost_round=15, early_stopping_rounds=5, seed=7, client=client)
        return result.metrics.to_dict(), sample.n_rows

    from_parquet, from_cache = metrics(parquet(export)), metrics(read_cache(cache))
    assert from_cache == from_parquet
    assert from_parquet[0]["roc_auc"] > 0.8


def test_a_pipeline_names_the_cache_as_its_data_source(client, export, tmp_path):
    spec = DataSpec(path=str(export), target="is_miner", cache=str(tmp_path / "btc.zarr"), **READ)
    said = []
    data = load_dataset(spec, client, progress=said.append)
    assert data.info["cache_built"] and "no cache at" in said[0]
    assert load_dataset(spec, client).info["cache_built"] is False
    direct = load_dataset(DataSpec(path=str(tmp_path / "btc.zarr"), target="is_miner"), client)
    assert direct.partition_keys == data.partition_keys and "cache_reason" not in direct.info
    with pytest.raises(wb.DataError, match="has target 'is_miner', not 'n_tx'"):
        load_dataset(DataSpec(path=str(tmp_path / "btc.zarr"), target="n_tx"), client)
    with pytest.raises(wb.DataError, match="numeric features only"):
        load_dataset(DataSpec(path=str(export), target="is_miner", cache=str(tmp_path / "x.zarr"), keep_nested=True))


def test_data_cache_command(client, export, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: cached\ndata:\n  path: {export}\n  target: is_miner\n  drop: [address]\n"
        f"  partition_size: 2MiB\n  cache: {tmp_path / 'btc.zarr'}\n"
    )
    connect = ["--connect", client.scheduler.address]
    first = subprocess.run(["workbench", "data", "cache", pipeline, *connect], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"cache {tmp_path / 'btc.zarr'}: {ROWS:,} rows, 30 features" in first.stdout
    again = subprocess.run(["workbench", "data", "cache", pipeline, *connect], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "is up to date" in again.stdout
    pipeline.write_text(f"name: uncached\ndata:\n  path: {export}\n  target: is_miner\n")
    none = subprocess.run(["workbench", "data", "cache", pipeline], capture_output=True, text=True, timeout=120)
    assert none.returncode == 2 and none.stderr.strip() == (
        f"error: {pipeline} names no cache; add `cache: <directory>` to its data section, or pass --to DIR")


def test_a_directory_that_is_not_a_cache_is_never_replaced(client, export, tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(wb.DataError, match="exists and is not a workbench cache; choose another cache directory"):
        build_cache(export, tmp_path / "precious", "is_miner", client=client, **READ)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


def test_a_cache_named_as_data_path_is_checked_against_its_recorded_source(client, export, tmp_path):
    source = tmp_path / "export"
    source.mkdir()
    shards = sorted(export.glob("*.parquet"))
    (source / shards[0].name).write_bytes(shards[0].read_bytes())
    cache = build_cache(source, tmp_path / "btc.zarr", "is_miner", client=client, **READ)
    spec = DataSpec(path=str(cache), target="is_miner")
    assert load_dataset(spec, client).n_rows == 16_000
    (source / shards[3].name).write_bytes(shards[3].read_bytes())  # one more shard exported
    said = []
    rebuilt = load_dataset(spec, client, progress=said.append)
    assert rebuilt.n_rows == 16_000 + 12_000 and "new shard(s)" in rebuilt.info["cache_reason"]
    assert "is stale" in said[0] and rebuilt.partition_keys == wb.read_bigquery_export(source, "is_miner", **READ).partition_keys
    for shard in source.iterdir():  # the source gone: the cache is used as it is, with a warning
        shard.unlink()
    source.rmdir()
    with pytest.warns(wb.WorkbenchWarning, match="cannot check the cache .* against its source"):
        assert load_dataset(spec, client).n_rows == 16_000 + 12_000

