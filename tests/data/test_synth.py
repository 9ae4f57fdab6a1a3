from __future__ import annotations

import math
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from distributed import get_task_stream
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from workbench.data import synth
from workbench.data.synth import synth_bitcoin_export
from workbench.errors import DataError

SHARD_NAME = re.compile(r"^btc_addresses-\d{12}\.parquet$")
ROWS, PER_SHARD = 5_000, 2_000
DROPPED = {"address", "is_miner", "recent_output_values", "first_tx"}


@pytest.fixture
def in_process(monkeypatch):
    """Make the run ignore the session cluster, which is otherwise the default client."""
    monkeypatch.setattr(synth, "_current_client", lambda: None)


@pytest.fixture(scope="module")
def signal_data(tmp_path_factory):
    """200,000 rows at signal 1, and 40,000 rows with 5% positives at signal 0, written in-process."""
    runs = {1.0: dict(rows=200_000, positive_rate=0.005), 0.0: dict(rows=40_000, positive_rate=0.05)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synth, "_current_client", lambda: None)
        return {
            signal: synth_bitcoin_export(
                tmp_path_factory.mktemp(f"signal{signal}"), signal=signal, seed=1, rows_per_shard=150_000, **run
            )
            for signal, run in runs.items()
        }


def read_shards(paths: list[str]) -> dict[str, pa.Table]:
    return {os.path.basename(p): pq.read_table(p) for p in paths}


def assert_same_data(left: list[str], right: list[str]) -> None:
    a, b = read_shards(left), read_shards(right)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name


def features(table: pa.Table) -> np.ndarray:
    columns = []
    for field in table.schema:
        if field.name in DROPPED:
            continue
        column = table[field.name]
        if pa.types.is_decimal(field.type):
            column = column.cast(pa.float64())
        elif pa.types.is_timestamp(field.type):
            column = column.cast(pa.int64())
        elif pa.types.is_date(field.type):
            column = column.cast(pa.int32())
        columns.append(column.to_numpy(zero_copy_only=False).astype(np.float64))
    return np.column_stack(columns)


def roc_auc(paths: list[str]) -> float:
    """Held-out ROC AUC of a regularised boosted model (one thread: OpenMP on a busy 2-core box crawls)."""
    table = pa.concat_tables(pq.read_table(p) for p in paths)
    X, y = features(table), table["is_miner"].to_numpy()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=0)
    model = HistGradientBoostingClassifier(
        max_leaf_nodes=15, min_samples_leaf=50, l2_regularization=1.0, early_stopping=False, random_state=0
    )
    with threadpool_limits(1):
        model.fit(X_train, y_train)
    return roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])


def test_shard_names_rows_and_no_leftovers(tmp_path, in_process):
    paths = synth_bitcoin_export(tmp_path / "out", ROWS, rows_per_shard=PER_SHARD)

    assert paths == sorted(paths)
    assert len(paths) == math.ceil(ROWS / PER_SHARD) == 3
    assert sorted(os.listdir(tmp_path / "out")) == [os.path.basename(p) for p in paths]
    assert all(SHARD_NAME.match(os.path.basename(p)) for p in paths)
    assert [os.path.basename(p) for p in paths][-1] == "btc_addresses-000000000002.parquet"
    assert [pq.ParquetFile(p).metadata.num_rows for p in paths] == [2_000, 2_000, 1_000]


def test_custom_table_prefix(tmp_path, in_process):
    paths = synth_bitcoin_export(tmp_path, 10, table="addresses_2024", rows_per_shard=4)
    assert [os.path.basename(p) for p in paths] == [f"addresses_2024-00000000000{i}.parquet" for i in range(3)]


def test_schema_is_bigquery_shaped_and_identical_across_shards(tmp_path, in_process):
    paths = synth_bitcoin_export(tmp_path, ROWS, rows_per_shard=PER_SHARD)
    schemas = [pq.read_schema(p) for p in paths]
    assert all(s.equals(schemas[0]) for s in schemas)
    schema = schemas[0]

    assert schema.names[:2] == ["address", "is_miner"]
    assert schema.field("address").type == pa.string()
    assert schema.field("is_miner").type == pa.bool_()
    assert schema.field("first_seen").type == pa.timestamp("us")
    assert schema.field("first_seen").type.tz is None
    assert schema.field("first_seen_date").type == pa.date32()
    assert schema.field("recent_output_values").type == pa.list_(pa.int64())
    assert schema.field("first_tx").type == pa.struct([("hash", pa.string()), ("block_height", pa.int64())])

    numeric = [f for f in schema if f.name not in DROPPED and f.name not in {"first_seen", "first_seen_date"}]
    kinds = [f.type for f in numeric]
    assert 25 <= len(numeric) <= 32
    assert kinds.count(pa.decimal128(38, 9)) >= 5
    assert kinds.count(pa.int64()) >= 5 and kinds.count(pa.float64()) >= 5
    assert set(kinds) == {pa.int64(), pa.float64(), pa.decimal128(38, 9)}

    table = pq.read_table(paths[0])
    assert table["address"].null_count == 0
    assert pc.count_distinct(table["address"]).as_py() == table.num_rows
    assert table["first_seen_date"].equals(table["first_seen"].cast(pa.date32()))
    lengths = pc.list_value_length(table["recent_output_values"]).to_numpy()
    assert lengths.min() == 0 and lengths.max() <= 5
    nullable = {f.name for f in numeric if table[f.name].null_count > 0}
    assert any(schema.field(n).type == pa.int64() for n in nullable)
    assert any(schema.field(n).type == pa.float64() for n in nullable)


def test_parquet_layout(signal_data):
    parquet = pq.ParquetFile(signal_data[1.0][0])
    meta = parquet.metadata
    assert meta.num_rows == 150_000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100_000, 50_000]
    column = meta.row_group(0).column(parquet.schema_arrow.get_field_index("n_tx"))
    assert column.compression == "SNAPPY"
    assert column.statistics is not None and column.statistics.has_min_max
    first_seen = parquet.schema.column(parquet.schema_arrow.get_field_index("first_seen"))
    assert "isAdjustedToUTC=false" in str(first_seen.logical_type)


def test_same_seed_same_data_in_process(tmp_path, in_process):
    first = synth_bitcoin_export(tmp_path / "a", ROWS, seed=7, rows_per_shard=PER_SHARD)
    second = synth_bitcoin_export(tmp_path / "b", ROWS, seed=7, rows_per_shard=PER_SHARD)
    assert_same_data(first, second)


def test_different_seed_different_data(tmp_path, in_process):
    first = synth_bitcoin_export(tmp_path / "a", ROWS, seed=7, rows_per_shard=PER_SHARD)
    second = synth_bitcoin_export(tmp_path / "b", ROWS, seed=8, rows_per_shard=PER_SHARD)
    for left, right in zip(first, second):
        a, b = pq.read_table(left), pq.read_table(right)
        assert not a.equals(b)
        assert not a["address"].equals(b["address"])
        assert not a["n_tx"].equals(b["n_tx"])


def test_cluster_writes_same_data_as_in_process(tmp_path, client, monkeypatch):
    with get_task_stream(client) as stream:
        on_cluster = synth_bitcoin_export(tmp_path / "cluster", ROWS, seed=3, rows_per_shard=PER_SHARD)
    assert sum("write_shard" in task["key"] for task in stream.data) == 3

    again = synth_bitcoin_export(tmp_path / "again", ROWS, seed=3, rows_per_shard=PER_SHARD, client=client)
    assert_same_data(on_cluster, again)

    monkeypatch.setattr(synth, "_current_client", lambda: None)
    in_process = synth_bitcoin_export(tmp_path / "local", ROWS, seed=3, rows_per_shard=PER_SHARD)
    assert_same_data(on_cluster, in_process)
    assert not [name for name in os.listdir(tmp_path / "cluster") if name.startswith(".")]


def test_positive_rate_close_to_requested(tmp_path, in_process, signal_data):
    miners = pa.concat_tables(pq.read_table(p) for p in signal_data[1.0])["is_miner"].to_numpy()
    assert abs(miners.mean() - 0.005) < 4 * math.sqrt(0.005 * 0.995 / miners.size)

    paths = synth_bitcoin_export(tmp_path, 20_000, positive_rate=0.2, rows_per_shard=PER_SHARD)
    miners = pa.concat_tables(pq.read_table(p) for p in paths)["is_miner"].to_numpy()
    assert abs(miners.mean() - 0.2) < 4 * math.sqrt(0.2 * 0.8 / miners.size)


@pytest.mark.parametrize(
    "argument, value",
    [
        ("rows", 0),
        ("rows", -5),
        ("rows", 1.5),
        ("positive_rate", 0.0),
        ("positive_rate", 1.0),
        ("positive_rate", float("nan")),
        ("signal", -0.1),
        ("signal", float("inf")),
        ("rows_per_shard", 0),
        ("seed", -1),
    ],
)
def test_bad_arguments_raise_data_error(tmp_path, in_process, argument, value):
    kwargs = {"rows": 10, argument: value}
    rows = kwargs.pop("rows")
    with pytest.raises(DataError, match=argument) as error:
        synth_bitcoin_export(tmp_path / "out", rows, **kwargs)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_non_empty_directory_needs_overwrite(tmp_path, in_process):
    first = synth_bitcoin_export(tmp_path, ROWS, seed=1, rows_per_shard=PER_SHARD)

    with pytest.raises(DataError, match=r"already holds 3 Parquet files.*overwrite=True"):
        synth_bitcoin_export(tmp_path, ROWS, seed=2, rows_per_shard=PER_SHARD)
    assert_same_data(first, sorted(str(p) for p in tmp_path.glob("*.parquet")))

    second = synth_bitcoin_export(tmp_path, ROWS, seed=2, rows_per_shard=ROWS, overwrite=True)
    assert sorted(str(p) for p in tmp_path.glob("*.parquet")) == second
    assert len(second) == 1 and pq.ParquetFile(second[0]).metadata.num_rows == ROWS


def test_other_parquet_files_also_block_writing(tmp_path, in_process):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(DataError, match="already holds 1 Parquet files"):
        synth_bitcoin_export(tmp_path, 10)


def test_interrupted_write_leaves_no_shard(tmp_path, in_process, monkeypatch):
    synth_rows, blocks = synth.synth_rows, []

    def fail_on_second_row_group(*args):
        blocks.append(args[0])
        if len(blocks) == 2:
            raise MemoryError("worker killed")
        return synth_rows(*args)

    monkeypatch.setattr(synth, "synth_rows", fail_on_second_row_group)
    with pytest.raises(MemoryError, match="worker killed"):
        synth_bitcoin_export(tmp_path, 150_000, rows_per_shard=150_000)
    assert blocks == [100_000, 50_000]
    assert os.listdir(tmp_path) == []


def test_signal_controls_model_auc(signal_data):
    assert 0.85 <= roc_auc(signal_data[1.0]) <= 0.985
    assert roc_auc(signal_data[0.0]) < 0.6
