"""``workbench bench-io`` on a small synthetic export: every format written and read on the
workers, the throughput grid and its regression, the table, the CSV files, the plots, the run."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from workbench.benchio import FORMATS, bench_io, format_report
from workbench.stores.runs import RunStore


@pytest.mark.filterwarnings("ignore::workbench.WorkbenchWarning")
def test_bench_io_measures_every_format_and_fits_the_throughput_model(client, tmp_path):
    out = tmp_path / "out"
    said = []
    report = bench_io(rows=20_000, out=out, work_dir=tmp_path / "work", partition_sizes=("64KiB", "4MiB"),
                      column_counts=(4, 30), repeats=1, client=client, runs_dir=tmp_path / "runs", progress=said.append)
    table = pd.read_csv(out / "formats.csv")
    assert list(table["format"]) == [f.name for f in FORMATS]
    assert {"parquet-snappy-rg16k", "parquet-snappy-rg1m", "parquet-zstd-rg1m", "parquet-gzip-rg1m", "feather-lz4",
            "arrow-ipc", "zarr-blosc-lz4", "zarr-blosc-zstd", "csv", "pickle"} == set(table["format"])
    assert (table[["write_s", "read_s", "size_mib", "compression_ratio"]] > 0).all().all()
    sizes = table.set_index("format")["size_mib"]
    assert sizes["parquet-zstd-rg1m"] < sizes["arrow-ipc"] and sizes["csv"] > sizes["parquet-snappy-rg1m"]

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
    assert not (tmp_path / "work" / "source").exists() or any((tmp_path / "work" / "source").iterdir())


def test_bench_io_command(client, tmp_path):
    proc = subprocess.run(
        ["workbench", "bench-io", "--rows", "4000", "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"),
         "--repeats", "1", "--partition-size", "32KiB", "--partition-size", "1MiB", "--columns", "30", "--connect", client.scheduler.address],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "parquet-gzip-rg1m" in proc.stdout and "R² =" in proc.stdout and "recorded as run" in proc.stdout
    assert (tmp_path / "out" / "formats.png").exists() and len(pd.read_csv(tmp_path / "out" / "throughput.csv")) == 4
    assert "columns             0.000" in proc.stdout  # a parameter the grid did not vary gets no slope
