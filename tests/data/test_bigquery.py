"""Reading BigQuery Parquet exports: real shards written with pyarrow into ``tmp_path``.

Every BigQuery type as BigQuery's Parquet export writes it (see shared notes
``bigquery-export.md``), the ways a user names the files, partitioning by row groups, shards whose
schemas disagree, and the one-line errors for unreadable or unfit input.
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from decimal import Decimal
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from workbench.data import Dataset, WorkbenchWarning, read_bigquery_export
from workbench.errors import DataError, SamplingError, WorkbenchError
from workbench.sampling import class_counts, split, undersample

UTC = dt.timezone.utc
EPOCH_DATE = dt.date(1970, 1, 1)


# ---------------------------------------------------------------- helpers


def shard_name(i: int, prefix: str = "t") -> str:
    """BigQuery's wildcard-export shard name: ``t-000000000000.parquet``."""
    return f"{prefix}-{i:012d}.parquet"


def write_shards(directory: Path, tables: list[pa.Table], prefix: str = "t", **kwargs) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, table in enumerate(tables):
        path = directory / shard_name(i, prefix)
        pq.write_table(table, path, **kwargs)
        paths.append(path)
    return paths


def read_quietly(*args, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        return read_bigquery_export(*args, **kwargs)


def workbench_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, WorkbenchWarning)]


def collect(ds: Dataset, by: str = "id") -> pd.DataFrame:
    return ds.frame.compute().sort_values(by).reset_index(drop=True)


def assert_one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message, f"not a one-line message: {message!r}"
    assert isinstance(exc, WorkbenchError)
    return message


def bq_timestamp(i: int) -> dt.datetime:
    """A naive wall-clock time, as BigQuery writes TIMESTAMP (isAdjustedToUTC=false)."""
    return dt.datetime(2021, 3, 14, 1, 59, 26, 535897) + dt.timedelta(hours=7 * i, microseconds=13 * i)


def bq_datetime(i: int) -> dt.datetime:
    return dt.datetime(1969, 12, 31, 23, 0, 0) + dt.timedelta(minutes=37 * i, microseconds=i)


def bq_date(i: int) -> dt.date:
    return dt.date(1969, 12, 30) + dt.timedelta(days=11 * i)


def bq_time(i: int) -> dt.time:
    return dt.time((i * 5) % 24, (i * 7) % 60, (i * 11) % 60, (i * 123457) % 1_000_000)


def numeric_value(i: int) -> Decimal:
    # values a binary float holds exactly: this test is about the plumbing, rounding is tested below
    return Decimal(i) * Decimal("0.125") - Decimal("1000000.5")


def bignumeric_value(i: int) -> Decimal:
    return Decimal(-i) / Decimal(64) + Decimal("3.5")


def all_types_table(ids: list[int]) -> pa.Table:
    """One shard with every BigQuery column type, and a BOOL target."""
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "big_int": pa.array([2**62 + i for i in ids], pa.int64()),  # exact only as int64
            "amount": pa.array([i / 7 - 3.25 for i in ids], pa.float64()),
            "flag": pa.array([i % 3 == 0 for i in ids], pa.bool_()),
            "price": pa.array([numeric_value(i) for i in ids], pa.decimal128(38, 9)),
            "huge": pa.array([bignumeric_value(i) for i in ids], pa.decimal256(76, 38)),
            "ts": pa.array([bq_timestamp(i) for i in ids], pa.timestamp("us")),
            "local_dt": pa.array([bq_datetime(i) for i in ids], pa.timestamp("us")),
            "day": pa.array([bq_date(i) for i in ids], pa.date32()),
            "clock": pa.array([bq_time(i) for i in ids], pa.time64("us")),
            "address": pa.array([f"addr-{i}" for i in ids], pa.string()),
            "raw": pa.array([bytes([i % 256, 1, 2]) for i in ids], pa.binary()),
            "tags": pa.array([list(range(i % 4)) if i % 5 else None for i in ids], pa.list_(pa.int64())),
            "inputs": pa.array(
                [{"n": i, "kind": "p2pkh"} for i in ids],
                pa.struct([("n", pa.int64()), ("kind", pa.string())]),
            ),
            "always_null": pa.array([None] * n, pa.null()),
            "never_set": pa.array([None] * n, pa.int64()),
            "fee": pa.array([None if i % 4 == 1 else i * 10 for i in ids], pa.int64()),
            "is_miner": pa.array([i % 10 == 3 for i in ids], pa.bool_()),
        }
    )


FEATURES = ("id", "big_int", "amount", "flag", "price", "huge", "ts", "local_dt", "day", "clock", "fee")
FEATURE_DTYPES = {
    "id": "int64",
    "big_int": "int64",
    "amount": "float64",
    "flag": "int8",
    "price": "float64",
    "huge": "float64",
    "ts": "float64",
    "local_dt": "float64",
    "day": "float64",
    "clock": "float64",
    "fee": "float64",
    "is_miner": "int8",
}


def expected_all_types(ids: list[int]) -> pd.DataFrame:
    def utc_seconds(naive: dt.datetime) -> float:
        return naive.replace(tzinfo=UTC).timestamp()

    def midnight_seconds(t: dt.time) -> float:
        return (((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond) / 1_000_000

    return pd.DataFrame(
        {
            "id": np.array(ids, dtype="int64"),
            "big_int": np.array([2**62 + i for i in ids], dtype="int64"),
            "amount": np.array([i / 7 - 3.25 for i in ids]),
            "flag": np.array([i % 3 == 0 for i in ids], dtype="int8"),
            "price": np.array([float(numeric_value(i)) for i in ids]),
            "huge": np.array([float(bignumeric_value(i)) for i in ids]),
            "ts": np.array([utc_seconds(bq_timestamp(i)) for i in ids]),
            "local_dt": np.array([utc_seconds(bq_datetime(i)) for i in ids]),
            "day": np.array([float((bq_date(i) - EPOCH_DATE).days * 86400) for i in ids]),
            "clock": np.array([midnight_seconds(bq_time(i)) for i in ids]),
            "fee": np.array([np.nan if i % 4 == 1 else float(i * 10) for i in ids]),
            "is_miner": np.array([i % 10 == 3 for i in ids], dtype="int8"),
        }
    )


DECIMALS = ["price", "huge"]


def assert_same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The same rows and columns: exact, except that the decimal columns may be one rounding off.

    For tests about *which* rows arrive; the exactness of decimal conversion has tests of its own.
    """
    exact = [c for c in expected.columns if c not in DECIMALS]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)
    assert list(got.columns) == list(expected.columns)
    for name in DECIMALS:
        np.testing.assert_allclose(got[name].to_numpy(), expected[name].to_numpy(), rtol=1e-15, atol=0)


@pytest.fixture
def all_types_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "export"
    write_shards(directory, [all_types_table(list(range(0, 40))), all_types_table(list(range(40, 100)))])
    return directory


def labelled_table(labels: pa.Array, start: int = 0) -> pa.Table:
    n = len(labels)
    return pa.table({"id": pa.array(range(start, start + n), pa.int64()), "x": pa.array(np.arange(n) * 0.5), "label": labels})


# ---------------------------------------------------------------- type normalisation


def test_every_bigquery_type_becomes_the_expected_feature(client, all_types_dir: Path) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = read_bigquery_export(all_types_dir, target="is_miner")

    assert ds.features == FEATURES
    assert ds.target == "is_miner"
    assert ds.info["files"] == 2 and ds.info["rows_in_files"] == 100
    assert ds.info["target_kind"] == "bool"
    excluded = ds.info["excluded"]
    assert set(excluded) == {"address", "raw", "tags", "inputs", "always_null", "never_set"}
    assert "string" in excluded["address"]
    assert "binary" in excluded["raw"]
    assert "REPEATED/STRUCT" in excluded["tags"] and "REPEATED/STRUCT" in excluded["inputs"]
    assert "null" in excluded["always_null"] and "null" in excluded["never_set"]
    assert ds.info["conversions"]["price"] == "decimal -> float64"
    assert ds.info["conversions"]["ts"] == "timestamp -> float64"
    assert ds.info["conversions"]["flag"] == "bool -> int8"
    assert len(workbench_warnings(record)) == 1  # the nested columns; nothing else

    # the lazy frame promises the dtypes the partitions deliver
    assert dict(ds.frame.dtypes.astype(str)) == FEATURE_DTYPES
    got = collect(ds)
    assert dict(got.dtypes.astype(str)) == FEATURE_DTYPES
    expected = expected_all_types(list(range(100)))
    assert_same_rows(got, expected)
    # NUMERIC and BIGNUMERIC values here are exactly representable as float64: no rounding excuse
    for name in DECIMALS:
        wrong = {e: g for g, e in zip(got[name], expected[name]) if g != e}
        assert not wrong, f"{name}: {len(wrong)} of 100 values differ from the exact value, e.g. {list(wrong.items())[:3]}"


def test_timestamp_without_time_zone_is_read_as_utc(client, all_types_dir: Path, monkeypatch) -> None:
    """BigQuery writes TIMESTAMP with isAdjustedToUTC=false; the seconds must be UTC epoch seconds
    whatever the local time zone of the machine that reads them (here: this process, sync scheduler)."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        with dask.config.set(scheduler="sync"):
            got = collect(read_quietly(all_types_dir, target="is_miner"))
    finally:
        monkeypatch.undo()
        time.tzset()
    first = dt.datetime(2021, 3, 14, 1, 59, 26, 535897, tzinfo=UTC)
    assert got.loc[0, "ts"] == first.timestamp() == 1615687166.535897
    assert got.loc[0, "local_dt"] == -3600.0  # 1969-12-31T23:00:00 is one hour before the epoch
    assert got.loc[0, "day"] == -2 * 86400.0  # 1969-12-30
    assert (got["ts"] == [bq_timestamp(i).replace(tzinfo=UTC).timestamp() for i in range(100)]).all()


@pytest.mark.parametrize(
    "arrow_type", [pa.decimal128(38, 9), pa.decimal256(76, 38)], ids=["NUMERIC", "BIGNUMERIC"]
)
def test_numeric_and_bignumeric_become_the_nearest_float64(client, tmp_path: Path, arrow_type) -> None:
    """A decimal feature becomes the float64 nearest to it: 19.99 is read as 19.99, as float('19.99')."""
    values = ["0.1", "0.2", "0.3", "0.7", "2.3", "19.99", "99.99", "781.145152289", "0.000000001", "-123.456789012",
              "-1000000.5", "1000000.125", "0.75"]  # the last three are exact in binary
    n = len(values)
    table = pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "v": pa.array([Decimal(v) for v in values], arrow_type),
            "y": pa.array([i % 2 == 0 for i in range(n)]),
        }
    )
    write_shards(tmp_path, [table])
    got = collect(read_bigquery_export(tmp_path, target="y"))
    expected = [float(v) for v in values]
    wrong = {v: g for v, g, e in zip(values, got["v"].tolist(), expected) if g != e}
    assert not wrong, f"{arrow_type} values not read as the nearest float64: {wrong}"


def test_repeated_and_struct_columns_are_dropped_with_one_warning(client, all_types_dir: Path) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = read_bigquery_export(all_types_dir, target="is_miner")
    messages = workbench_warnings(record)
    assert len(messages) == 1
    assert "tags" in messages[0] and "inputs" in messages[0]
    assert "keep_nested" in messages[0]
    assert "tags" not in ds.frame.columns and "inputs" not in ds.frame.columns
    assert ds.info["excluded"]["tags"].startswith("REPEATED/STRUCT")


def test_keep_nested_keeps_them_in_the_frame_but_not_in_features(client, all_types_dir: Path) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = read_bigquery_export(all_types_dir, target="is_miner", keep_nested=True)
    assert workbench_warnings(record) == []
    assert ds.features == FEATURES
    assert "tags" in ds.frame.columns and "inputs" in ds.frame.columns
    assert "tags" not in ds.info["excluded"] and "inputs" not in ds.info["excluded"]
    got = collect(ds)
    assert len(got) == 100
    assert got["tags"].isna().sum() == 20  # i % 5 == 0 is NULL
    assert_same_rows(got[list(FEATURES)], expected_all_types(list(range(100)))[list(FEATURES)])
    assert list(ds.X.columns) == list(FEATURES)


def test_keep_nested_values_stay_lists_and_structs(client, all_types_dir: Path) -> None:
    """Kept REPEATED values are sequences of their elements and STRUCT values mappings, not text."""
    got = collect(read_quietly(all_types_dir, target="is_miner", keep_nested=True))
    tags, inputs = got.loc[7, "tags"], got.loc[7, "inputs"]
    assert not isinstance(tags, str), f"REPEATED value came back as text: {tags!r} ({got['tags'].dtype})"
    assert list(tags) == [0, 1, 2]
    assert not isinstance(inputs, str), f"STRUCT value came back as text: {inputs!r} ({got['inputs'].dtype})"
    assert dict(inputs) == {"n": 7, "kind": "p2pkh"}


def test_all_null_and_partly_null_columns_without_statistics(client, tmp_path: Path) -> None:
    """Shards written without statistics: the reader finds the all-null column by reading it."""
    write_shards(
        tmp_path,
        [all_types_table(list(range(0, 30))), all_types_table(list(range(30, 60)))],
        write_statistics=False,
    )
    ds = read_bigquery_export(tmp_path, target="is_miner", drop=["tags", "inputs"])
    assert "never_set" in ds.info["excluded"] and "null" in ds.info["excluded"]["never_set"]
    assert "never_set" not in ds.frame.columns
    assert ds.info["excluded"]["tags"] == "dropped by request"
    got = collect(ds)
    expected = expected_all_types(list(range(60)))
    # without statistics an int column is typed float64 (its nulls are not known when the frame is planned)
    assert got["fee"].dtype == "float64" and got["fee"].isna().sum() == 15
    assert_same_rows(got.astype("float64"), expected[list(got.columns)].astype("float64"))


LABELS = [
    pytest.param(pa.array([True, False, False, True, False]), {}, [1, 0, 0, 1, 0], "bool", id="BOOL"),
    pytest.param(pa.array([True, False, False, True, False]), {"positive": False}, [0, 1, 1, 0, 1], "bool", id="BOOL-positive-False"),
    pytest.param(pa.array([1, 0, 0, 1, 0], pa.int64()), {}, [1, 0, 0, 1, 0], "int", id="INT64-01"),
    pytest.param(pa.array([1, 0, 0, 1, 0], pa.int64()), {"positive": 0}, [0, 1, 1, 0, 1], "int", id="INT64-positive-0"),
    pytest.param(pa.array(["true", "false", "FALSE", " True ", "false"]), {}, [1, 0, 0, 1, 0], "string", id="STRING-true-false"),
    pytest.param(pa.array(["yes", "no", "No", "YES", "n"]), {}, [1, 0, 0, 1, 0], "string", id="STRING-yes-no"),
    pytest.param(pa.array(["miner", "other", "other", "Miner", "other"]), {"positive": "miner"}, [1, 0, 0, 1, 0], "string", id="STRING-positive-miner"),
]


@pytest.mark.parametrize("labels, kwargs, expected, kind", LABELS)
def test_target_becomes_int8_zero_one(client, tmp_path: Path, labels, kwargs, expected, kind) -> None:
    write_shards(tmp_path, [labelled_table(labels), labelled_table(labels, start=5)])
    ds = read_bigquery_export(tmp_path, target="label", **kwargs)
    assert ds.info["target_kind"] == kind
    assert ds.features == ("id", "x")
    got = collect(ds)
    assert got["label"].dtype == "int8"
    assert got["label"].tolist() == expected * 2
    counts = class_counts(ds)
    assert counts.tolist() == [[expected.count(0), expected.count(1)]] * 2


def test_rows_with_a_null_target_are_left_out(client, tmp_path: Path) -> None:
    labels = pa.array([True, None, False, None, True, False], pa.bool_())
    write_shards(tmp_path, [labelled_table(labels)])
    ds = read_bigquery_export(tmp_path, target="label")
    assert ds.info["rows_with_null_target"] == 2
    got = collect(ds)
    assert got["id"].tolist() == [0, 2, 4, 5]
    assert got["label"].tolist() == [1, 0, 1, 0]


# ---------------------------------------------------------------- naming the files


@pytest.fixture
def three_shards(tmp_path: Path) -> list[Path]:
    directory = tmp_path / "export"
    paths = write_shards(directory, [all_types_table(list(range(k * 20, k * 20 + 20))) for k in range(3)])
    (directory / "_SUCCESS").write_bytes(b"")  # what an export job leaves next to the shards
    return paths


def test_a_single_file(client, three_shards: list[Path]) -> None:
    ds = read_quietly(three_shards[1], target="is_miner")
    assert ds.info["files"] == 1 and ds.npartitions == 1
    assert ds.partition_keys == (f"{shard_name(1)}:0-0",)
    assert_same_rows(collect(ds), expected_all_types(list(range(20, 40))))


@pytest.mark.parametrize("how", ["glob", "directory", "list", "str-directory"])
def test_a_glob_a_directory_or_a_list_read_every_shard(client, three_shards: list[Path], how: str) -> None:
    directory = three_shards[0].parent
    path = {
        "glob": str(directory / "t-*.parquet"),
        "directory": directory,
        "list": [three_shards[2], str(three_shards[0]), three_shards[1]],
        "str-directory": str(directory) + "/",
    }[how]
    ds = read_quietly(path, target="is_miner")
    assert ds.info["files"] == 3
    assert ds.partition_keys == tuple(f"{shard_name(i)}:0-0" for i in range(3))
    assert_same_rows(collect(ds), expected_all_types(list(range(60))))


def test_partition_size_splits_a_file_by_row_groups(client, tmp_path: Path) -> None:
    paths = write_shards(
        tmp_path,
        [all_types_table(list(range(0, 1200))), all_types_table(list(range(1200, 1500)))],
        row_group_size=100,
    )
    assert [pq.ParquetFile(p).num_row_groups for p in paths] == [12, 3]

    whole = read_quietly(tmp_path, target="is_miner")
    assert whole.npartitions == 2

    one_group_each = read_quietly(tmp_path, target="is_miner", partition_size=1)
    assert one_group_each.npartitions == 15
    assert one_group_each.partition_keys == tuple(
        [f"{shard_name(0)}:{g}-{g}" for g in range(12)] + [f"{shard_name(1)}:{g}-{g}" for g in range(3)]
    )

    # a partition_size of about three row groups of the columns read: whole row groups, several per partition
    meta = pq.read_metadata(paths[0])
    read_columns = {"id", "big_int", "amount", "flag", "price", "huge", "ts", "local_dt", "day", "clock", "fee", "is_miner"}
    group_bytes = sum(
        meta.row_group(0).column(i).total_uncompressed_size
        for i in range(meta.num_columns)
        if meta.schema.column(i).path in read_columns
    )
    grouped = read_quietly(tmp_path, target="is_miner", partition_size=f"{3 * group_bytes + group_bytes // 2}B")
    assert 2 < grouped.npartitions < 15
    again = read_quietly(tmp_path, target="is_miner", partition_size=f"{3 * group_bytes + group_bytes // 2}B")
    assert grouped.partition_keys == again.partition_keys  # stable: the same file gives the same keys
    assert len(set(grouped.partition_keys)) == grouped.npartitions

    # every partition holds exactly the rows of the row groups its key names, in file order
    sizes = grouped.frame.map_partitions(len).compute().tolist()
    for key, size in zip(grouped.partition_keys, sizes):
        first, last = (int(g) for g in key.split(":")[1].split("-"))
        assert size == 100 * (last - first + 1)
    for ds in (one_group_each, grouped):
        got = ds.frame.compute().reset_index(drop=True)
        assert_same_rows(got, expected_all_types(list(range(1500))))


def test_column_projection_computes_the_target_alone(client, all_types_dir: Path) -> None:
    ds = read_quietly(all_types_dir, target="is_miner")
    full = ds.frame.compute()
    only_target = ds.frame[["is_miner"]].compute()
    assert list(only_target.columns) == ["is_miner"]
    assert only_target["is_miner"].dtype == "int8"
    pd.testing.assert_frame_equal(only_target, full[["is_miner"]])
    pd.testing.assert_series_equal(ds.y.compute(), full["is_miner"])
    pd.testing.assert_frame_equal(ds.frame[["fee", "id"]].compute(), full[["fee", "id"]])
    pd.testing.assert_frame_equal(ds.X.compute(), full[list(FEATURES)])


# ---------------------------------------------------------------- shards that disagree


def small_table(start: int, **columns) -> pa.Table:
    n = 10
    data = {"id": pa.array(range(start, start + n), pa.int64()), "a": pa.array([i % 3 for i in range(n)], pa.int64())}
    for name, values in columns.items():  # a column to replace or add; None leaves it out
        if values is None:
            del data[name]
        else:
            data[name] = values
    data["y"] = pa.array([i % 2 == 0 for i in range(n)])
    return pa.table(data)


def test_a_shard_missing_a_column_is_named(tmp_path: Path) -> None:
    write_shards(tmp_path, [small_table(0), small_table(10, a=None), small_table(20)])
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="y")
    message = assert_one_line(info.value)
    assert shard_name(1) in message and "'a'" in message
    assert shard_name(0) in message  # the shard it was compared with


def test_a_shard_with_an_extra_column_is_named(tmp_path: Path) -> None:
    write_shards(tmp_path, [small_table(0), small_table(10), small_table(20, extra=pa.array(np.zeros(10)))])
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="y")
    message = assert_one_line(info.value)
    assert shard_name(2) in message and "extra" in message


def test_a_column_string_in_one_shard_and_int_in_another_is_named(tmp_path: Path) -> None:
    as_text = pa.array([str(i) for i in range(10)], pa.string())
    write_shards(tmp_path, [small_table(0), small_table(10), small_table(20, a=as_text), small_table(30)])
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="y")
    message = assert_one_line(info.value)
    assert shard_name(2) in message and "'a'" in message and "string" in message
    assert "drop=" in message


def test_int64_in_one_shard_and_float64_in_another_is_read_as_float64(client, tmp_path: Path) -> None:
    as_float = pa.array([i + 0.5 for i in range(10)], pa.float64())
    write_shards(tmp_path, [small_table(0), small_table(10, a=as_float), small_table(20)])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = read_bigquery_export(tmp_path, target="y")
    messages = workbench_warnings(record)
    assert messages and all("'a'" in m and "float64" in m for m in messages)
    assert shard_name(1) in messages[0]
    assert ds.frame.dtypes["a"] == "float64"
    got = collect(ds)
    assert got["a"].dtype == "float64"
    ints = [float(i % 3) for i in range(10)]
    assert got["a"].tolist() == ints + [i + 0.5 for i in range(10)] + ints


# ---------------------------------------------------------------- errors


def test_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path / "nowhere.parquet", target="y")
    message = assert_one_line(info.value)
    assert "no Parquet files found" in message and "nowhere.parquet" in message


def test_a_glob_matching_nothing(tmp_path: Path) -> None:
    write_shards(tmp_path, [small_table(0)])
    with pytest.raises(DataError) as info:
        read_bigquery_export(str(tmp_path / "btc-*.parquet"), target="y")
    message = assert_one_line(info.value)
    assert "no Parquet files found" in message and "btc-*.parquet" in message


def test_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet files found"):
        read_bigquery_export(tmp_path / "empty", target="y")


def test_a_corrupt_file_is_named(tmp_path: Path) -> None:
    write_shards(tmp_path, [small_table(0), small_table(10), small_table(20)])
    (tmp_path / shard_name(1)).write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="y")
    message = assert_one_line(info.value)
    assert shard_name(1) in message and "not a readable Parquet file" in message


def test_a_truncated_file_is_named(tmp_path: Path) -> None:
    paths = write_shards(tmp_path, [small_table(0), small_table(10)])
    whole = paths[0].read_bytes()
    paths[0].write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="y")
    message = assert_one_line(info.value)
    assert shard_name(0) in message and "not a readable Parquet file" in message
    assert "truncated" in message


def test_a_corrupt_data_page_is_named_when_read_on_a_worker(client, tmp_path: Path) -> None:
    """The footer is intact (so opening succeeds) but a compressed page is garbage."""
    n = 20_000
    table = pa.table({"x": pa.array(np.arange(n, dtype="int64") * 7919 % 10007), "y": pa.array(np.arange(n) % 2 == 0)})
    (path,) = write_shards(tmp_path, [table], compression="snappy")
    data = bytearray(path.read_bytes())
    for i in range(100, 3000):
        data[i] = (data[i] * 31 + 7) % 256
    path.write_bytes(bytes(data))
    ds = read_bigquery_export(tmp_path, target="y")
    with pytest.raises(DataError) as info:
        ds.frame.compute()
    message = assert_one_line(info.value)
    assert shard_name(0) in message and "corrupt" in message


def test_a_missing_target_column(tmp_path: Path) -> None:
    write_shards(tmp_path, [small_table(0)])
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="is_miner")
    message = assert_one_line(info.value)
    assert "target" in message and "'is_miner'" in message and "not in the export" in message
    assert "id, a, y" in message  # the columns there are


def test_drop_naming_an_unknown_column(tmp_path: Path) -> None:
    write_shards(tmp_path, [small_table(0)])
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="y", drop=["id", "adress"])
    message = assert_one_line(info.value)
    assert "cannot drop" in message and "'adress'" in message and "'id'" not in message.split(";")[0]


def test_drop_naming_the_target(tmp_path: Path) -> None:
    write_shards(tmp_path, [small_table(0)])
    with pytest.raises(DataError) as info:
        read_bigquery_export(tmp_path, target="y", drop=["y"])
    assert "drop" in assert_one_line(info.value)


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param(pa.array([0, 1, 2, 0, 1, 0, 0, 2, 0, 1], pa.int64()), id="INT64-0-1-2"),
        pytest.param(pa.array(["miner", "other"] * 5), id="STRING-without-positive"),
    ],
)
def test_a_target_that_is_not_zero_one_asks_for_positive(client, tmp_path: Path, labels) -> None:
    write_shards(tmp_path, [labelled_table(labels), labelled_table(labels, start=10)])
    ds = read_bigquery_export(tmp_path, target="label")
    for step in (class_counts, split, undersample):
        with pytest.raises(DataError) as info:
            step(ds)
        message = assert_one_line(info.value)
        assert "positive=" in message and "'label'" in message
    with pytest.raises(DataError) as info:
        class_counts(ds)
    others = sum(1 for v in labels.to_pylist() if v not in (0, 1)) * 2
    assert f"{others:,} values" in str(info.value)


@pytest.mark.parametrize("value", [True, False])
def test_a_constant_target_has_one_class(client, tmp_path: Path, value: bool) -> None:
    write_shards(tmp_path, [labelled_table(pa.array([value] * 10)), labelled_table(pa.array([value] * 10), start=10)])
    ds = read_bigquery_export(tmp_path, target="label")
    for step in (split, undersample):
        with pytest.raises(SamplingError) as info:
            step(ds)
        message = assert_one_line(info.value)
        assert "one class" in message and "20" in message
        assert ("positive" if value else "negative") in message


# ---------------------------------------------------------------- infinities and an all-null target


def float_table(x, y, start: int = 0) -> pa.Table:
    n = len(x)
    return pa.table({"id": pa.array(range(start, start + n)), "x": pa.array(x, pa.float64()),
                     "y": pa.array(y, pa.float64()), "label": pa.array([i % 3 == 0 for i in range(n)])})


@pytest.mark.parametrize("statistics", [True, False], ids=["footer-statistics", "no-statistics"])
def test_infinities_are_refused_with_the_columns_and_counts(client, tmp_path: Path, statistics) -> None:
    """With statistics the footers name the suspect column (x) and only it is counted; without, every
    FLOAT64 column is counted on the workers. The line is the same."""
    clean = [0.5, 1.5, 2.5, None]
    write_shards(tmp_path, [float_table(clean, clean), float_table([np.inf, np.inf, -np.inf, 1.0], clean, start=4)],
                 write_statistics=statistics)
    with pytest.raises(DataError) as caught:
        read_bigquery_export(tmp_path, "label")
    assert str(caught.value) == (
        "feature column(s) hold infinite values (x: 2 +inf, 1 -inf); read them as missing values (NaN) with "
        "data.infinite: missing (Python: infinite='missing'), or remove them from the export")


def test_infinite_missing_reads_infinities_as_nan(client, tmp_path: Path) -> None:
    write_shards(tmp_path, [float_table([1.0, np.inf, -np.inf, None], [np.inf, 2.0, 3.0, 4.0])])
    ds = read_bigquery_export(tmp_path, "label", infinite="missing")
    got = collect(ds)
    assert ds.info["infinite"] == "missing"
    np.testing.assert_array_equal(got["x"].to_numpy(), [1.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(got["y"].to_numpy(), [np.nan, 2.0, 3.0, 4.0])


def test_finite_floats_are_read_without_a_counting_pass(client, tmp_path: Path, monkeypatch) -> None:
    """Footer statistics that are finite everywhere rule every column out: no data is read to check."""
    from workbench.data import bigquery

    write_shards(tmp_path, [float_table([1.0, 2.0], [3.0, np.nan])])
    counted = []
    monkeypatch.setattr(bigquery, "_count_infinities", lambda df: counted.append(df) or df)
    ds = read_bigquery_export(tmp_path, "label")
    assert counted == [] and ds.features == ("id", "x", "y")


def test_an_unknown_infinite_setting_is_refused(tmp_path: Path) -> None:
    write_shards(tmp_path, [float_table([1.0], [2.0])])
    with pytest.raises(DataError, match=r"^infinite='zero' is not one of error, missing; use 'error'"):
        read_bigquery_export(tmp_path, "label", infinite="zero")


@pytest.mark.parametrize("statistics", [True, False], ids=["footer-statistics", "no-statistics"])
def test_a_target_null_in_every_row_is_one_line(client, tmp_path: Path, statistics) -> None:
    table = float_table([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).set_column(3, "label", pa.array([None] * 3, pa.bool_()))
    write_shards(tmp_path, [table, table], write_statistics=statistics)
    with pytest.raises(DataError, match=r"^target column 'label' is null in every row \(6 rows\); check the export query"):
        data = read_bigquery_export(tmp_path, "label")
        class_counts(data)  # without statistics the null count is known only from reading the label


def test_a_target_null_in_every_row_of_shards_whose_label_has_no_statistics(client, tmp_path: Path) -> None:
    """Statistics for the features only: the reader cannot tell from the footers, the sampler's count can."""
    table = float_table([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).set_column(3, "label", pa.array([None] * 3, pa.bool_()))
    write_shards(tmp_path, [table, table], write_statistics=["id", "x", "y"])
    data = read_bigquery_export(tmp_path, "label")
    with pytest.raises(DataError, match=r"^target column 'label' is null in every row \(6 rows\); check the export query"):
        split(data, 0.2)
