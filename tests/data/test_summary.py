"""``workbench data inspect``: an export with every BigQuery type, counted on the workers."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workbench as wb
from workbench import progress
from workbench.data.summary import format_summary, summarize_export

from .commands import Recorder, the_error_line, workbench
from .test_bigquery import all_types_table, write_shards

EXPECTED = {  # column: (BigQuery type, feature after normalisation)
    "id": ("INT64", "int64"),
    "big_int": ("INT64", "int64"),
    "amount": ("FLOAT64", "float64"),
    "flag": ("BOOL", "int8"),
    "price": ("NUMERIC", "float64"),
    "huge": ("BIGNUMERIC", "float64"),
    "ts": ("TIMESTAMP/DATETIME", "float64"),
    "local_dt": ("TIMESTAMP/DATETIME", "float64"),
    "day": ("DATE", "float64"),
    "clock": ("TIME", "float64"),
    "address": ("STRING", "not a feature: string (id/text column, not a feature)"),
    "raw": ("BYTES", "not a feature: binary (id/text column, not a feature)"),
    "tags": ("REPEATED INT64", "not a feature: REPEATED/STRUCT (not a feature)"),
    "inputs": ("STRUCT", "not a feature: REPEATED/STRUCT (not a feature)"),
    "always_null": ("(all null)", "not a feature: all values null"),
    "never_set": ("INT64", "not a feature: all values null"),
    "fee": ("INT64", "float64"),
    "is_miner": ("BOOL", "target -> int8 0/1"),
    "payload": ("JSON", "not a feature: unsupported type extension<arrow.json>"),
    "valid_for": ("RANGE", "not a feature: REPEATED/STRUCT (not a feature)"),
}


def every_type_table(ids: list[int]) -> pa.Table:
    """The reader tests' table plus JSON (Parquet's JSON logical type) and RANGE<DATE> (a start/end STRUCT)."""
    table = all_types_table(ids)
    table = table.append_column("payload", pa.array([f'{{"i": {i}}}' for i in ids], pa.json_()))
    dates = pa.struct([("start", pa.date32()), ("end", pa.date32())])
    return table.append_column("valid_for", pa.array([{"start": i, "end": i + 30} for i in ids], dates))


@pytest.fixture
def every_type(tmp_path):
    directory = tmp_path / "export"
    tables = [every_type_table(list(range(0, 40))), every_type_table(list(range(40, 100)))]
    write_shards(directory, tables, row_group_size=20)
    return directory


def test_every_bigquery_type_is_described(client, every_type):
    seen = []
    summary = summarize_export(every_type, target="is_miner", client=client, progress=lambda d, t: seen.append((d, t)))
    assert (summary["shards"], summary["rows"]) == (2, 100)
    assert summary["bytes"] == sum(p.stat().st_size for p in every_type.iterdir())
    assert seen[0] == (0, summary["partitions"]) and seen[-1] == (summary["partitions"],) * 2
    columns = {c["name"]: c for c in summary["columns"]}
    assert {name: (c["bigquery"], c["feature"]) for name, c in columns.items()} == EXPECTED
    assert columns["price"]["arrow"] == "decimal128(38, 9)" and columns["huge"]["arrow"] == "decimal256(76, 38)"
    # null fractions counted in the data: fee is null for i % 4 == 1, tags for i % 5 == 0
    assert columns["fee"]["null_fraction"] == 0.25 and columns["tags"]["null_fraction"] == 0.2
    assert columns["never_set"]["null_fraction"] == 1.0 and columns["id"]["nulls"] == 0
    t = summary["target"]
    assert (t["positive"], t["negative"], t["neither"], t["null"]) == (10, 90, 0, 0)
    assert t["values"] == {"False": 90, "True": 10}
    text = format_summary(summary)
    assert "2 shard(s), 100 rows" in text and "class ratio 1:9.0" in text
    assert "huge" in text and "BIGNUMERIC" in text


def test_a_string_target_shows_the_values_that_are_neither_class(client, tmp_path):
    table = pa.table({"x": pa.array(range(8)), "label": pa.array(["yes", "no", "no", "maybe", None, "no", "YES", "no"])})
    (tmp_path / "e").mkdir()
    pq.write_table(table, tmp_path / "e" / "t-000000000000.parquet")
    t = summarize_export(tmp_path / "e", target="label", client=client)["target"]
    assert (t["positive"], t["negative"], t["neither"], t["null"]) == (2, 4, 1, 1)


def test_data_inspect_command(client, every_type):
    proc = workbench("data", "inspect", every_type, "--target", "is_miner", "--drop", "id",
                     "--connect", client.scheduler.address)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == format_summary(summarize_export(every_type, target="is_miner", drop=["id"], client=client)) + "\n"
    assert "2 shard(s), 100 rows" in proc.stdout and "not a feature: dropped by request" in proc.stdout
    assert "inspect: counting nulls and labels: 2/2 in" in proc.stderr  # the progress, as a line in a log


def test_data_inspect_names_the_positive_class(client, tmp_path):
    table = pa.table({"x": pa.array(range(6)), "label": pa.array(["miner", "pool", "pool", "miner", "pool", "pool"])})
    (tmp_path / "e").mkdir()
    pq.write_table(table, tmp_path / "e" / "t-000000000000.parquet")
    proc = workbench("data", "inspect", tmp_path / "e", "-t", "label", "--positive", "miner",
                     "--connect", client.scheduler.address)
    assert proc.returncode == 0, proc.stderr
    assert "target label: 2 positive, 4 negative (positive rate 33.3333%, class ratio 1:2.0)" in proc.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (("nowhere/",), "error: no Parquet files found at 'nowhere/'; check the path; a file, a glob like "
                        "'exports/btc-*.parquet' or a directory of shards is accepted"),
        (("{export}", "--target", "nope"), "error: target column 'nope' is not in the export; columns are: id, "),
    ],
    ids=["missing-path", "missing-target"],
)
def test_data_inspect_bad_input_is_one_line(client, every_type, args, expected):
    proc = workbench("data", "inspect", *(a.format(export=every_type) for a in args), "--connect", client.scheduler.address,
                     cwd=every_type.parent)
    assert the_error_line(proc.returncode, proc.stderr).startswith(expected)


def test_a_missing_target_is_one_line(every_type):
    with pytest.raises(wb.DataError, match="target column 'nope' is not in the export"):
        summarize_export(every_type, target="nope")


def test_counting_reports_its_progress(every_type):
    """Each counted partition is reported through workbench.progress, and to the progress callback."""
    recorder, seen = Recorder(), []
    with progress.showing(recorder):
        summary = summarize_export(every_type, target="is_miner", partition_size=1,
                                   progress=lambda done, total: seen.append((done, total)))
    assert summary["partitions"] == 5  # one per row group: 2 + 3
    assert recorder.find("inspect:") == ["inspect: counting nulls and labels", 5, 5]
    assert seen == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
