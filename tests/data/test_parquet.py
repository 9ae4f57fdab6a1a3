"""The Parquet footer and plan helpers the reader, ``data inspect`` and the cache share."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workbench as wb
from workbench.data.parquet import (
    arrow_kind,
    common_schema,
    expand_paths,
    null_counts,
    plan_columns,
    plan_partitions,
    read_footers,
    read_row_groups,
)
from workbench.data.summary import summarize_export


@pytest.fixture
def export(tmp_path):
    """Two shards: 30 rows in row groups of 10, and 5 rows in one; ``x`` has 3 nulls, ``s`` is text."""
    directory = tmp_path / "export"
    directory.mkdir()
    for i, (rows, group) in enumerate([(30, 10), (5, 5)]):
        table = pa.table({
            "x": pa.array([None if k % 10 == 3 and i == 0 else float(k) for k in range(rows)]),
            "n": pa.array(range(rows), pa.int64()),
            "s": pa.array([f"id-{k}" for k in range(rows)]),
            "y": pa.array([k % 2 == 0 for k in range(rows)]),
        })
        pq.write_table(table, directory / f"t-{i:012d}.parquet", row_group_size=group)
    (directory / "_SUCCESS").write_text("")  # a marker file beside the shards is not a shard
    return directory


def test_an_export_is_planned_from_its_footers(export):
    fs, files = expand_paths(export)
    assert files == [str(export / "t-000000000000.parquet"), str(export / "t-000000000001.parquet")]
    footers = read_footers(fs, files)
    schema = common_schema(files, footers)
    assert [arrow_kind(f.type) for f in schema] == ["float", "int", "string", "bool"]
    nulls, rows = null_counts(footers, schema.names)
    assert (nulls, rows) == ({"x": 3, "n": 0, "s": 0, "y": 0}, 35)
    columns, excluded, unknown = plan_columns(schema, "y", [], False, nulls, rows)
    assert [(c.name, c.dtype) for c in columns] == [("x", "float64"), ("n", "int64")]
    assert excluded == {"s": "string (id/text column, not a feature)"} and unknown == []

    group = footers[0].row_group(0)
    one_group = sum(group.column(i).total_uncompressed_size for i in range(group.num_columns) if i != 2)
    parts, keys = plan_partitions(files, footers, ["x", "n", "y"], 2 * one_group)
    assert parts == [(files[0], (0, 1), 0), (files[0], (2,), 20), (files[1], (0,), 0)]
    assert keys == ["t-000000000000.parquet:0-1", "t-000000000000.parquet:2-2", "t-000000000001.parquet:0-0"]
    table = read_row_groups(fs, *parts[1][:2], ["n", "y"])
    assert table.column("n").to_pylist() == list(range(20, 30))


def test_the_reader_and_inspect_share_the_plan(export, client):
    data = wb.read_bigquery_export(export, "y", partition_size=1)
    summary = summarize_export(export, target="y", partition_size=1, client=client)
    assert data.partition_keys == ("t-000000000000.parquet:0-0", "t-000000000000.parquet:1-1",
                                   "t-000000000000.parquet:2-2", "t-000000000001.parquet:0-0")
    assert summary["partitions"] == data.npartitions == 4
    assert {c["name"]: c["feature"] for c in summary["columns"]} == {
        "x": "float64", "n": "int64", "s": "not a feature: string (id/text column, not a feature)",
        "y": "target -> int8 0/1"}
    assert list(data.features) == ["x", "n"] and data.frame.dtypes.astype(str).to_dict() == {
        "x": "float64", "n": "int64", "y": "int8"}


def test_a_corrupt_row_group_is_one_line(export):
    shard = export / "t-000000000001.parquet"
    fs, files = expand_paths(shard)
    footer = read_footers(fs, files)[0]
    chunk = footer.row_group(0).column(1)
    data = bytearray(shard.read_bytes())
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data[start:start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    shard.write_bytes(bytes(data))
    with pytest.raises(wb.DataError, match=r"^t-000000000001.parquet is corrupt \(.*\); re-export or remove the file$"):
        read_row_groups(fs, files[0], (0,), ["n"])
