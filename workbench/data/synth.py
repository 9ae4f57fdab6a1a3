"""Synthetic Bitcoin-address feature tables shaped like a BigQuery ``crypto_bitcoin`` export.

:func:`synth_bitcoin_export` writes ``{table}-000000000000.parquet``, ``{table}-000000000001.parquet``,
... (snappy, row groups of at most 100,000 rows, statistics on), one shard per task, with an
``address`` id, a boolean ``is_miner`` target, 28 int64 / float64 / DECIMAL(38, 9) features (some
with nulls), a TIMESTAMP, a DATE, a REPEATED and a STRUCT column. Shard ``i`` depends only on
``(seed, i)`` and the shard size, so the output is the same whatever the cluster size.

Measured held-out ROC AUC (400,000 rows, positive_rate 0.005, stratified 80/20 split, decimals
cast to float64, timestamps and dates to int, address/list/struct dropped, seeds 0-2), for
HistGradientBoostingClassifier(max_leaf_nodes=15, min_samples_leaf=50, l2_regularization=1.0,
early_stopping=False) and XGBoost (300 trees, depth 4, eta 0.05):
signal 0: 0.50-0.53, signal 1: 0.936-0.957, signal 2: 0.998-0.9999.
A default HistGradientBoostingClassifier stops early on these rare positives and scores lower
and erratically (signal 1: 0.90-0.92; signal 2: 0.89-0.96).
"""

from __future__ import annotations

import glob
import math
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..progress import track

__all__ = ["synth_bitcoin_export"]

ROW_GROUP_SIZE = 100_000
BTC = pa.decimal128(38, 9)
START_US = 1_325_376_000_000_000  # 2012-01-01
END_US = 1_767_139_200_000_000  # 2025-12-31
DAY_US = 86_400_000_000
START_HEIGHT, END_HEIGHT = 160_000, 929_000
BECH32 = np.frombuffer(b"qpzry9x8gf2tvdw0s3jn54khce6mua7l", dtype=np.uint8)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

INT_FEATURES = [
    "n_tx", "n_inputs", "n_outputs", "n_blocks_active", "active_days", "n_coinbase_like",
    "n_counterparties", "n_round_outputs", "n_dust_outputs", "max_tx_per_day", "days_since_last_tx",
]
FLOAT_FEATURES = [
    "mean_input_value", "mean_output_value", "std_output_value", "fee_rate_mean", "fee_rate_std",
    "input_output_ratio", "round_output_share", "tx_per_active_day", "mean_tx_vsize", "hour_entropy",
]
DECIMAL_FEATURES = [
    "total_received", "total_sent", "balance", "max_output_value", "min_output_value",
    "median_output_value", "total_fees_paid",
]
NULLABLE = {"max_tx_per_day": 0.012, "fee_rate_std": 0.018}

SCHEMA = pa.schema(
    [
        pa.field("address", pa.string(), nullable=False),
        pa.field("is_miner", pa.bool_(), nullable=False),
        *(pa.field(name, pa.int64()) for name in INT_FEATURES),
        *(pa.field(name, pa.float64()) for name in FLOAT_FEATURES),
        *(pa.field(name, BTC) for name in DECIMAL_FEATURES),
        pa.field("first_seen", pa.timestamp("us")),
        pa.field("first_seen_date", pa.date32()),
        pa.field("recent_output_values", pa.list_(pa.int64())),
        pa.field("first_tx", pa.struct([("hash", pa.string()), ("block_height", pa.int64())])),
    ]
)


def synth_bitcoin_export(
    path: str | os.PathLike,
    rows: int,
    *,
    positive_rate: float = 0.005,
    signal: float = 1.0,
    seed: int = 0,
    rows_per_shard: int = 250_000,
    table: str = "btc_addresses",
    client=None,
    overwrite: bool = False,
) -> list[str]:
    """Write ``rows`` synthetic addresses as BigQuery-style Parquet shards in directory ``path``.

    ``is_miner`` is Bernoulli(``positive_rate``); ``signal`` scales how much several features
    depend on it (0: not at all, 1: a good model reaches ROC AUC of about 0.94-0.95). Shards are
    generated and written by tasks on ``client`` (or the current Dask client), else by threads in
    this process. Returns the shard paths, sorted.
    """
    _validate(rows, positive_rate, signal, seed, rows_per_shard, table)
    directory = os.path.abspath(os.fspath(path))
    _prepare_directory(directory, table, overwrite)
    sizes = _shard_sizes(rows, rows_per_shard)
    kwargs = dict(
        directory=directory, table=table, seed=seed, positive_rate=positive_rate, signal=signal
    )
    client = client if client is not None else _current_client()
    description = f"synth: writing {len(sizes)} shard(s) of {table}"
    if client is None:
        with ThreadPoolExecutor(max_workers=min(len(sizes), os.cpu_count() or 1)) as pool:
            shards = pool.map(lambda i: write_shard(i, sizes[i], **kwargs), range(len(sizes)))
            written = list(track(shards, description, total=len(sizes)))
    else:
        from distributed import as_completed

        futures = client.map(write_shard, range(len(sizes)), sizes, pure=False, **kwargs)
        written = [future.result() for future in track(as_completed(futures), description, total=len(sizes))]
    return sorted(written)


def write_shard(
    index: int, rows: int, *, directory: str, table: str, seed: int, positive_rate: float, signal: float
) -> str:
    """Generate shard ``index`` from ``np.random.default_rng([seed, index])``, one row group at a
    time, into a temporary file that is renamed to its final name once complete."""
    rng = np.random.default_rng([seed, index])
    final = os.path.join(directory, f"{table}-{index:012d}.parquet")
    temporary = os.path.join(directory, f".{table}-{index:012d}.parquet.tmp-{uuid.uuid4().hex}")
    try:
        with pq.ParquetWriter(temporary, SCHEMA, compression="snappy", write_statistics=True) as writer:
            for start in range(0, rows, ROW_GROUP_SIZE):
                block = synth_rows(min(ROW_GROUP_SIZE, rows - start), rng, positive_rate, signal)
                writer.write_table(block, row_group_size=ROW_GROUP_SIZE)
        os.replace(temporary, final)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return final


def synth_rows(rows: int, rng: np.random.Generator, positive_rate: float, signal: float) -> pa.Table:
    """``rows`` synthetic addresses drawn from ``rng``, as an Arrow table with :data:`SCHEMA`."""
    label = rng.random(rows) < positive_rate
    effect = signal * label
    counts = _counts(rng, effect)
    floats = _floats(rng, effect, counts)
    amounts = _amounts(rng, counts, floats)
    first_seen = _first_seen(rng, rows)
    counts["days_since_last_tx"] = _days_since_last_tx(rng, first_seen)
    columns = {
        "address": _addresses(rng, rows),
        "is_miner": pa.array(label),
        **{name: _nullable(rng, name, counts[name]) for name in INT_FEATURES},
        **{name: _nullable(rng, name, floats[name]) for name in FLOAT_FEATURES},
        **{name: _btc(amounts[name]) for name in DECIMAL_FEATURES},
        "first_seen": pa.array(first_seen, pa.timestamp("us")),
        "first_seen_date": pa.array(first_seen // DAY_US, pa.int32()).view(pa.date32()),
        "recent_output_values": _recent_outputs(rng, counts["n_outputs"], floats["mean_output_value"]),
        "first_tx": _first_tx(rng, first_seen),
    }
    return pa.Table.from_pydict(columns, schema=SCHEMA)


def _counts(rng: np.random.Generator, effect: np.ndarray) -> dict[str, np.ndarray]:
    rows = len(effect)
    activity = rng.normal(0.0, 1.0, rows)
    n_tx = 1 + rng.poisson(np.exp(0.8 + 1.1 * activity + 0.55 * effect))
    spread = rng.beta(2.0, 2.0, rows)
    active_days = 1 + rng.binomial(n_tx - 1, spread)
    n_blocks_active = active_days + rng.binomial(n_tx - active_days, 0.5)
    coinbase = rng.random(rows) < _sigmoid(-4.6 + 2.5 * effect + 0.3 * activity)
    n_coinbase_like = np.minimum(coinbase * (1 + rng.poisson(np.exp(0.3 * activity + 0.5))), n_tx)
    n_inputs = rng.poisson(n_tx * np.exp(0.3 + rng.normal(0.0, 0.6, rows) - 0.95 * effect))
    n_outputs = rng.poisson(n_tx * np.exp(0.6 + rng.normal(0.0, 0.6, rows) + 0.85 * effect))
    round_share = _sigmoid(-2.2 + 1.3 * effect + rng.normal(0.0, 0.9, rows))
    n_round_outputs = rng.binomial(n_outputs, round_share)
    n_dust_outputs = rng.binomial(n_outputs, np.minimum(0.03 * rng.lognormal(0.0, 0.7, rows), 1.0))
    n_counterparties = 1 + rng.poisson(0.6 * n_outputs + 0.3 * n_inputs)
    max_tx_per_day = np.minimum(
        n_tx, np.ceil(n_tx / active_days * rng.lognormal(0.0, 0.5, rows)).astype(np.int64)
    )
    return {
        "n_tx": n_tx,
        "n_inputs": n_inputs,
        "n_outputs": n_outputs,
        "n_blocks_active": n_blocks_active,
        "active_days": active_days,
        "n_coinbase_like": n_coinbase_like,
        "n_counterparties": n_counterparties,
        "n_round_outputs": n_round_outputs,
        "n_dust_outputs": n_dust_outputs,
        "max_tx_per_day": max_tx_per_day,
    }


def _floats(
    rng: np.random.Generator, effect: np.ndarray, counts: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    rows = len(effect)
    n_tx, n_inputs, n_outputs = counts["n_tx"], counts["n_inputs"], counts["n_outputs"]
    mean_output = rng.lognormal(-2.8 + 0.55 * effect, 1.6, rows)
    fee_rate = rng.lognormal(np.log(18.0) - 0.65 * effect, 0.8, rows)
    entropy_share = rng.beta(4.0 + 3.8 * effect, 2.0, rows)
    return {
        "mean_input_value": mean_output * rng.lognormal(0.4, 0.8, rows),
        "mean_output_value": mean_output,
        "std_output_value": mean_output * rng.lognormal(-0.3, 0.6, rows) * (n_outputs > 1),
        "fee_rate_mean": fee_rate,
        "fee_rate_std": fee_rate * rng.lognormal(-1.0, 0.5, rows) * (n_tx > 1),
        "input_output_ratio": (n_inputs + 1) / (n_outputs + 1),
        "round_output_share": counts["n_round_outputs"] / np.maximum(n_outputs, 1),
        "tx_per_active_day": n_tx / counts["active_days"],
        "mean_tx_vsize": rng.lognormal(np.log(220.0), 0.45, rows),
        "hour_entropy": np.log(np.minimum(n_tx, 24)) * entropy_share,
    }


def _amounts(
    rng: np.random.Generator, counts: dict[str, np.ndarray], floats: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    rows = len(counts["n_tx"])
    mean_output = floats["mean_output_value"]
    received = mean_output * np.maximum(counts["n_outputs"], 1) * rng.lognormal(0.0, 0.3, rows)
    spent = rng.random(rows) < 0.7
    sent = received * np.where(spent, rng.beta(5.0, 1.0, rows), 0.0)
    largest = mean_output * (1.0 + rng.lognormal(0.0, 0.8, rows))
    smallest = mean_output * rng.beta(1.0, 3.0, rows)
    return {
        "total_received": received,
        "total_sent": sent,
        "balance": received - sent,
        "max_output_value": largest,
        "min_output_value": smallest,
        "median_output_value": np.clip(mean_output * rng.lognormal(-0.2, 0.3, rows), smallest, largest),
        "total_fees_paid": floats["fee_rate_mean"] * floats["mean_tx_vsize"] * counts["n_tx"] * 1e-8,
    }


def _first_seen(rng: np.random.Generator, rows: int) -> np.ndarray:
    return START_US + (np.sqrt(rng.random(rows)) * (END_US - START_US)).astype(np.int64)


def _days_since_last_tx(rng: np.random.Generator, first_seen: np.ndarray) -> np.ndarray:
    return ((END_US - first_seen) * rng.beta(1.0, 3.0, len(first_seen))).astype(np.int64) // DAY_US


def _addresses(rng: np.random.Generator, rows: int) -> pa.Array:
    chars = np.empty((rows, 42), dtype=np.uint8)
    chars[:, :4] = np.frombuffer(b"bc1q", dtype=np.uint8)
    chars[:, 4:] = BECH32[rng.integers(0, 32, (rows, 38), dtype=np.uint8)]
    return _fixed_width_strings(chars)


def _first_tx(rng: np.random.Generator, first_seen: np.ndarray) -> pa.Array:
    rows = len(first_seen)
    digest = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    chars = np.stack([HEX[digest >> 4], HEX[digest & 15]], axis=2).reshape(rows, 64)
    progress = (first_seen - START_US) / (END_US - START_US)
    height = START_HEIGHT + progress * (END_HEIGHT - START_HEIGHT) + rng.normal(0.0, 50.0, rows)
    heights = pa.array(np.maximum(height, 0).astype(np.int64))
    return pa.StructArray.from_arrays([_fixed_width_strings(chars), heights], names=["hash", "block_height"])


def _recent_outputs(rng: np.random.Generator, n_outputs: np.ndarray, mean_output: np.ndarray) -> pa.Array:
    lengths = np.minimum(n_outputs, rng.integers(0, 6, len(n_outputs)))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    btc = np.repeat(mean_output, lengths) * rng.lognormal(0.0, 0.8, int(offsets[-1]))
    satoshis = np.maximum(np.round(btc * 1e8), 1).astype(np.int64)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(satoshis), type=pa.list_(pa.int64()))


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    rows, width = chars.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


def _nullable(rng: np.random.Generator, name: str, values: np.ndarray) -> pa.Array:
    rate = NULLABLE.get(name)
    return pa.array(values, mask=None if rate is None else rng.random(len(values)) < rate)


def _btc(values: np.ndarray) -> pa.Array:
    nano = np.round(values * 1e8).astype(np.int64) * 10
    return pa.array(nano).cast(pa.decimal128(38, 0)).view(BTC)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _shard_sizes(rows: int, rows_per_shard: int) -> list[int]:
    full, rest = divmod(rows, rows_per_shard)
    return [rows_per_shard] * full + ([rest] if rest else [])


def _prepare_directory(directory: str, table: str, overwrite: bool) -> None:
    os.makedirs(directory, exist_ok=True)
    existing = glob.glob(os.path.join(glob.escape(directory), "*.parquet"))
    if existing and not overwrite:
        raise DataError(
            f"output directory {directory} already holds {len(existing)} Parquet files",
            "choose an empty directory or pass overwrite=True (--overwrite)",
        )
    for old in glob.glob(os.path.join(glob.escape(directory), f"{glob.escape(table)}-*.parquet")):
        os.remove(old)


def _current_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _validate(
    rows: int, positive_rate: float, signal: float, seed: int, rows_per_shard: int, table: str
) -> None:
    if not _is_int(rows) or rows < 1:
        raise DataError(f"rows must be an integer >= 1, got {rows!r}")
    if not _is_real(positive_rate) or not 0 < positive_rate < 1:
        raise DataError(f"positive_rate must be a number in (0, 1), got {positive_rate!r}")
    if not _is_real(signal) or not 0 <= signal < math.inf:
        raise DataError(f"signal must be a finite number >= 0, got {signal!r}")
    if not _is_int(seed) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    if not _is_int(rows_per_shard) or rows_per_shard < 1:
        raise DataError(f"rows_per_shard must be an integer >= 1, got {rows_per_shard!r}")
    if not isinstance(table, str) or not table or os.sep in table or "/" in table:
        raise DataError(f"table must be a non-empty file name prefix without '/', got {table!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
