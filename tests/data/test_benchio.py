"""``workbench bench-io`` on a small synthetic export: every format written and read on the
workers, the throughput grid and its regression, the table, the CSV files, the plots, the run."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from workbench import progress
from workbench.benchio import FORMATS, bench_io, format_report
from workbench.data.synth import synth_bitcoin_export
from workbench.stores.runs import RunStore

from .commands import Recorder, the_error_line, workbench


@pytest.mark.filterwarnings("ignore::workbench.WorkbenchWarning")
def test_bench_io_measures_every_format_and_fits_the_throughput_model(client, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    said, recorder = [], Recorder()
    with progress.showing(recorder):
        report = bench_io(rows=20_000, out=out, work_dir=work, partition_sizes=("64KiB", "4MiB"),
                          column_counts=(4, 30), repeats=1, client=client, runs_dir=tmp_path / "runs",
                          progress=said.append)
    table = pd.read_csv(out / "formats.csv")
    assert list(table["format"]) == [f.name for f in FORMATS]
    assert {"parquet-snappy-rg16k", "parquet-snappy-rg1m", "parquet-zstd-rg1m", "parquet-gzip-rg1m", "feather-lz4",
            "arrow-ipc", "zarr-blosc-lz4", "zarr-blosc-zstd", "csv", "pickle"} == set(table["format"])
    assert (table[["write_s", "read_s", "size_mib", "compression_ratio"]] > 0).all().all()
    sizes = table.set_index("format")["size_mib"]
    assert sizes["parquet-zstd-rg1m"] < sizes["arrow-ipc"]
    assert sizes["csv"] > sizes["parquet-snappy-rg1m"]

    grid = pd.read_csv(out / "throughput.csv")
    assert len(grid) == 2 * 2 * 2  # partition sizes x columns x thread levels (two 1-thread workers)
    assert set(grid["threads"]) == {1, 2} and set(grid["columns"]) == {4, 30}
    assert grid.groupby("partition_mib")["partitions"].first().is_monotonic_decreasing
    regression = pd.read_csv(out / "regression.csv")
    assert list(regression["term"]) == ["const", "partition_mib", "columns", "threads"]
    assert 0 <= regression["r2"].iloc[0] <= 1 and report.r2 == pytest.approx(regression["r2"].iloc[0])
    for png in ("formats.png", "throughput.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    text = format_report(report)
    assert "zarr-blosc-lz4" in text and "OLS: MiB/s ~ partition_mib + columns + threads" in text and "R² =" in text
    record = RunStore(tmp_path / "runs").get(report.run_id)
    assert record.status == "succeeded" and record.name == "bench-io"
    assert set(record.artifacts) == {"formats.csv", "throughput.csv", "regression.csv", "formats.png", "throughput.png"}
    assert "read zarr-blosc-zstd" in record.timings and record.metrics["r2"] == pytest.approx(report.r2)
    # a work_dir given is kept: the synthetic source (20,000 rows in shards of 5,000) and one copy per format
    assert sorted(p.name for p in (work / "source").iterdir()) == [f"btc_addresses-{i:012d}.parquet" for i in range(4)]
    assert sorted(p.name for p in work.iterdir()) == sorted([f.name for f in FORMATS] + ["source"])
    assert said[0] == "bench-io: generating a synthetic export of 20,000 rows"
    assert recorder.find("synth:")[1:] == [4, 4]
    assert recorder.find("bench-io: writing and reading each format")[1:] == [len(FORMATS), len(FORMATS)]
    assert recorder.find("bench-io: read throughput grid")[1:] == [8, 8]


def test_bench_io_command(client, tmp_path):
    """Without PATH: a synthetic export in a temporary work directory, removed afterwards."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    proc = workbench(
        "bench-io", "--rows", "4000", "--out", tmp_path / "out", "--runs-dir", tmp_path / "runs", "--repeats", "1",
        "--partition-size", "32KiB", "--partition-size", "1MiB", "--columns", "30", "--connect", client.scheduler.address,
        timeout=240, cwd=tmp_path, env={**os.environ, "TMPDIR": str(temporary)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "parquet-gzip-rg1m" in proc.stdout and "R² =" in proc.stdout and "recorded as run" in proc.stdout
    assert (tmp_path / "out" / "formats.png").exists() and len(pd.read_csv(tmp_path / "out" / "throughput.csv")) == 4
    assert "columns             0.000" in proc.stdout  # a parameter the grid did not vary gets no slope
    assert "bench-io: generating a synthetic export of 4,000 rows" in proc.stderr
    assert f"bench-io: writing and reading each format: {len(FORMATS)}/{len(FORMATS)} in" in proc.stderr
    assert list(temporary.iterdir()) == []  # the format copies went to a temporary directory, now gone


@pytest.mark.filterwarnings("ignore::workbench.WorkbenchWarning")
def test_bench_io_command_on_an_export_starts_one_worker_per_core(tmp_path):
    """`workbench bench-io PATH` as the README shows it: its own local cluster, one 1-thread worker per core."""
    synth_bitcoin_export(tmp_path / "btc", 4000, rows_per_shard=2000)
    proc = workbench("bench-io", tmp_path / "btc", "--drop", "address", "--out", tmp_path / "out", "--runs-dir",
                     tmp_path / "runs", "--repeats", "1", "--partition-size", "1MiB", "--columns", "30",
                     timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("4,000 rows x 30 features") and "generating" not in proc.stderr
    grid = pd.read_csv(tmp_path / "out" / "throughput.csv")
    assert list(grid["threads"]) == list(range(1, (os.cpu_count() or 1) + 1))
    (run,) = RunStore(tmp_path / "runs").list()
    assert run.status == "succeeded" and run.spec["path"] == str(tmp_path / "btc") and run.spec["drop"] == ["address"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--repeats", "0"), "error: repeats must be >= 1, got 0"),
        (("nowhere/",), "error: no Parquet files found at 'nowhere/'; "),
    ],
    ids=["no-repeats", "missing-path"],
)
def test_bench_io_bad_input_is_one_line(client, tmp_path, args, expected):
    proc = workbench("bench-io", *args, "--out", tmp_path / "out", "--runs-dir", tmp_path / "runs",
                     "--connect", client.scheduler.address, cwd=tmp_path)
    assert the_error_line(proc.returncode, proc.stderr).startswith(expected)
