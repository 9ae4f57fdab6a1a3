"""The reader through fsspec URLs: the same code path that serves gs:// and s3://, here on
fsspec's in-memory filesystem (which lives in this process, so these tests compute synchronously)."""

from __future__ import annotations

import dask
import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workbench as wb


@pytest.fixture
def memory_export():
    fs = fsspec.filesystem("memory")
    rng = np.random.default_rng(0)
    for i in range(3):
        table = pa.table({"x": rng.normal(size=1000), "y": rng.random(1000) < 0.1})
        with fs.open(f"/bucket/export/t-{i:012d}.parquet", "wb") as f:
            pq.write_table(table, f, row_group_size=250)
    yield "memory://bucket/export"
    fs.rm("/bucket", recursive=True)


@pytest.mark.parametrize("suffix", ["", "/", "/t-*.parquet"])
def test_reads_shards_through_an_fsspec_url(memory_export, suffix):
    data = wb.read_bigquery_export(memory_export + suffix, target="y")
    assert data.info["files"] == 3
    with dask.config.set(scheduler="sync"):
        frame = data.frame.compute()
    assert len(frame) == 3000
    assert set(frame["y"].unique()) <= {0, 1}


def test_missing_url_is_a_one_line_error(memory_export):
    with pytest.raises(wb.DataError, match="no Parquet files found"):
        wb.read_bigquery_export(memory_export + "/nothing-*.parquet", target="y")


def test_protocol_without_its_package_names_what_to_install():
    with pytest.raises(wb.DataError, match="needs a package that is not installed") as info:
        wb.read_bigquery_export("abfs://container/export/*.parquet", target="y")
    assert "\n" not in str(info.value)
