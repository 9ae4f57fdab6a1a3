"""Stratified split and random under-sampling on real Parquet shards, on the session's 2-worker cluster.

The main export: 20 BigQuery-style shards of 5,000 rows, about 2 % positives (the rate varies by
shard), with an ``id`` feature that names every row so that row sets can be compared.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from workbench.data import Dataset, WorkbenchWarning, read_bigquery_export
from workbench.errors import SamplingError, WorkbenchError
from workbench.sampling import class_counts, parse_ratio, split, undersample

N_SHARDS = 20
ROWS_PER_SHARD = 5_000


# ---------------------------------------------------------------- helpers


def shard_name(i: int) -> str:
    return f"t-{i:012d}.parquet"


def write_export(directory: Path, labels_per_shard: list[np.ndarray], seed: int = 0, **write_kwargs) -> pd.DataFrame:
    """Shards with ``id`` (unique over the export), ``x`` and a BOOL ``label``; returns all rows."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames, start = [], 0
    for i, labels in enumerate(labels_per_shard):
        n = len(labels)
        ids = np.arange(start, start + n, dtype="int64")
        start += n
        x = rng.normal(size=n)
        pq.write_table(
            pa.table({"id": ids, "x": x, "label": pa.array(labels.astype(bool))}),
            directory / shard_name(i),
            **write_kwargs,
        )
        frames.append(pd.DataFrame({"id": ids, "x": x, "label": labels.astype("int8"), "shard": i}))
    return pd.concat(frames, ignore_index=True)


def read(directory: Path, **kwargs) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error", WorkbenchWarning)  # these exports are clean: no warning expected
        return read_bigquery_export(directory, target="label", **kwargs)


def _one_or_all(results: list):
    return results[0] if len(results) == 1 else results


def rows(*datasets: Dataset):
    """The rows of each dataset, in partition order (one computation for all of them)."""
    return _one_or_all([frame.reset_index(drop=True) for frame in dask.compute(*(ds.frame for ds in datasets))])


def ids(*datasets: Dataset):
    return _one_or_all([s.to_numpy() for s in dask.compute(*(ds.frame["id"] for ds in datasets))])


def _count(y: pd.Series) -> pd.DataFrame:
    return pd.DataFrame({"neg": [int((y == 0).sum())], "pos": [int((y == 1).sum())]})


def counted_per_partition_lazy(*datasets: Dataset) -> list:
    meta = pd.DataFrame({"neg": pd.Series([], dtype="int64"), "pos": pd.Series([], dtype="int64")})
    return [ds.y.map_partitions(_count, meta=meta) for ds in datasets]


def counted_per_partition(*datasets: Dataset):
    """Negatives and positives of every partition, counted from the computed partitions themselves."""
    return _one_or_all([t.to_numpy() for t in dask.compute(*counted_per_partition_lazy(*datasets))])


def one_line(exc: BaseException) -> str:
    assert isinstance(exc, WorkbenchError)
    message = str(exc)
    assert message and "\n" not in message
    return message


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(2024)
    rates = np.linspace(0.01, 0.03, N_SHARDS)  # about 2 % overall, different in every shard
    labels = [(rng.random(ROWS_PER_SHARD) < rate).astype("int8") for rate in rates]
    directory = tmp_path_factory.mktemp("btc")
    return directory, write_export(directory, labels)


@pytest.fixture(scope="module")
def raw_data(export) -> Dataset:
    """The export as read: every computation reads the shards again."""
    return read(export[0])


@pytest.fixture(scope="module")
def data(client, raw_data: Dataset) -> Dataset:
    """The export held in the workers' memory, as a user would before sampling it repeatedly."""
    return raw_data.persist()


@pytest.fixture(scope="module")
def reference(export) -> pd.DataFrame:
    return export[1]


@pytest.fixture(scope="module")
def shard_counts(reference) -> np.ndarray:
    """Negatives and positives of every shard, counted by pandas."""
    table = reference.groupby("shard")["label"].value_counts().unstack(fill_value=0)
    return table.reindex(columns=[0, 1], fill_value=0).to_numpy(dtype="int64")


@pytest.fixture(scope="module")
def counted(data: Dataset) -> Dataset:
    """``data`` with its class counts known (counted once), so sampling it needs no counting pass."""
    return data.with_frame(data.frame, class_counts(data))


@pytest.fixture(scope="module")
def totals(reference) -> np.ndarray:
    return np.array([(reference["label"] == 0).sum(), (reference["label"] == 1).sum()])


# ---------------------------------------------------------------- class_counts


def test_the_export_is_imbalanced_as_intended(data: Dataset, reference: pd.DataFrame, totals) -> None:
    assert data.npartitions == N_SHARDS and len(reference) == N_SHARDS * ROWS_PER_SHARD
    assert 0.015 < totals[1] / totals.sum() < 0.025
    assert data.class_counts is None and data.n_rows is None


def test_class_counts_match_pandas_value_counts_per_partition(client, raw_data: Dataset, reference: pd.DataFrame) -> None:
    counts = class_counts(raw_data)
    assert counts.shape == (N_SHARDS, 2) and counts.dtype == np.int64
    for i in range(N_SHARDS):
        expected = reference.loc[reference["shard"] == i, "label"].value_counts()
        assert counts[i].tolist() == [int(expected.get(0, 0)), int(expected.get(1, 0))]


def test_class_counts_of_the_persisted_data(client, data: Dataset, counted: Dataset, shard_counts) -> None:
    np.testing.assert_array_equal(class_counts(data), shard_counts)
    np.testing.assert_array_equal(counted.class_counts, shard_counts)


def test_class_counts_per_row_group_partition(client, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    write_export(tmp_path, [(rng.random(n) < 0.1).astype("int8") for n in (2_100, 700, 1_500)], row_group_size=700)
    ds = read(tmp_path, partition_size=1)
    assert ds.npartitions == 3 + 1 + 3
    counts = class_counts(ds)
    for i in range(ds.npartitions):
        value_counts = ds.frame.get_partition(i).compute()["label"].value_counts()
        assert counts[i].tolist() == [int(value_counts.get(0, 0)), int(value_counts.get(1, 0))]


def test_class_counts_are_not_recounted_once_known(client, data: Dataset) -> None:
    train, test = split(data, 0.2, seed=0)
    assert class_counts(train) is train.class_counts
    assert class_counts(test) is test.class_counts


# ---------------------------------------------------------------- split


@pytest.mark.parametrize("test_size", [0.2, 0.1])
def test_split_takes_exactly_round_test_size_of_each_class(
    client, data: Dataset, totals, shard_counts, test_size: float
) -> None:
    train, test = split(data, test_size, seed=0)
    wanted = np.array([round(test_size * totals[0]), round(test_size * totals[1])])
    assert test.class_counts.sum(axis=0).tolist() == wanted.tolist()
    assert train.class_counts.sum(axis=0).tolist() == (totals - wanted).tolist()
    assert test.n_rows == wanted.sum() and test.n_positive == wanted[1]
    # the known counts are the counts of the computed frames, partition by partition
    in_test, in_train = counted_per_partition(test, train)
    np.testing.assert_array_equal(in_test, test.class_counts)
    np.testing.assert_array_equal(in_train, train.class_counts)
    np.testing.assert_array_equal(train.class_counts + test.class_counts, shard_counts)
    assert test.info["split"] == {"test_size": test_size, "seed": 0}
    assert train.features == test.features == data.features == ("id", "x")
    assert train.partition_keys == test.partition_keys == data.partition_keys


def test_split_divides_the_rows(client, counted: Dataset, reference: pd.DataFrame) -> None:
    train, test = split(counted, 0.2, seed=7)
    train_rows, test_rows = rows(train, test)
    assert not train_rows["id"].duplicated().any() and not test_rows["id"].duplicated().any()
    assert set(train_rows["id"]).isdisjoint(test_rows["id"])
    assert len(train_rows) + len(test_rows) == len(reference)
    together = pd.concat([train_rows, test_rows]).sort_values("id").reset_index(drop=True)
    # every row arrives once, with its own features and label
    pd.testing.assert_frame_equal(together, reference[["id", "x", "label"]], check_exact=True)


def test_split_test_set_keeps_the_natural_ratio_in_every_shard(counted: Dataset, totals, shard_counts) -> None:
    train, test = split(counted, 0.2, seed=1)
    test_totals = test.class_counts.sum(axis=0)
    assert abs(test_totals[1] / test_totals.sum() - totals[1] / totals.sum()) < 1e-4
    # drawn from all shards, not from the first ones: about 20 % of each shard's negatives
    share = test.class_counts[:, 0] / shard_counts[:, 0]
    assert np.all(np.abs(share - 0.2) < 0.04), share


def test_split_same_seed_same_rows_other_seed_other_rows(client, counted: Dataset) -> None:
    first_train, first_test = split(counted, 0.2, seed=11)
    again_train, again_test = split(counted, 0.2, seed=11)
    other_train, other_test = split(counted, 0.2, seed=12)
    first_test, again_test, first_train, again_train, other_test = ids(
        first_test, again_test, first_train, again_train, other_test
    )
    np.testing.assert_array_equal(first_test, again_test)
    np.testing.assert_array_equal(first_train, again_train)
    overlap = len(np.intersect1d(first_test, other_test)) / len(first_test)
    assert overlap < 0.3  # independent 20 % draws share about 20 % of their rows


def sampled_ids(data: Dataset) -> dict[str, np.ndarray]:
    train, test = split(data, 0.2, seed=3)
    inner_train, valid = split(train, 0.1, seed=4)
    sample = undersample(inner_train, "1:10", seed=5)
    computed = dask.compute(test.frame["id"], valid.frame["id"], sample.frame["id"])
    return {name: s.to_numpy() for name, s in zip(("test", "valid", "sample"), computed)}


def test_split_and_undersample_do_not_depend_on_the_number_of_workers(client, raw_data: Dataset) -> None:
    assert len(client.scheduler_info()["workers"]) == 2
    two_workers = sampled_ids(raw_data)
    with dask.config.set(scheduler="sync"):
        synchronous = sampled_ids(raw_data)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster:
        with Client(cluster, set_as_default=False) as single, single.as_current():
            assert len(single.scheduler_info()["workers"]) == 1
            one_worker = sampled_ids(raw_data)
    for name in two_workers:
        np.testing.assert_array_equal(two_workers[name], synchronous[name], err_msg=f"{name}: sync scheduler")
        np.testing.assert_array_equal(two_workers[name], one_worker[name], err_msg=f"{name}: one worker")


@pytest.mark.parametrize("test_size", [0, 1, -0.2, 1.5, "0.2", None])
def test_split_rejects_a_test_size_outside_zero_one(raw_data: Dataset, test_size) -> None:
    with pytest.raises(SamplingError) as info:
        split(raw_data, test_size)
    assert "test_size" in one_line(info.value)


def test_split_needs_two_rows_of_the_minority_class(client, tmp_path: Path) -> None:
    write_export(tmp_path, [np.array([0] * 30 + [1]), np.zeros(20, dtype="int8")])
    with pytest.raises(SamplingError) as info:
        split(read(tmp_path), 0.2)
    assert "minority class has 1 row" in one_line(info.value)


# ---------------------------------------------------------------- undersample


@pytest.fixture(scope="module")
def train_test(counted: Dataset) -> tuple[Dataset, Dataset]:
    train, test = split(counted, 0.2, seed=0)
    return train.persist(), test.persist()


@pytest.fixture(scope="module")
def train_rows(train_test) -> pd.DataFrame:
    return rows(train_test[0])


@pytest.mark.parametrize("ratio, k", [("1:1", 1), ("1:10", 10), (0.25, 4), (" 1 : 2.5 ", 2.5)])
def test_undersample_keeps_k_majority_rows_per_minority_row(client, train_test, train_rows, ratio, k) -> None:
    train, _ = train_test
    n_neg, n_pos = train.class_counts.sum(axis=0)
    sample = undersample(train, ratio, seed=0)
    assert sample.class_counts.sum(axis=0).tolist() == [round(k * n_pos), n_pos]
    in_sample, sample_rows = dask.compute(counted_per_partition_lazy(sample)[0], sample.frame)
    np.testing.assert_array_equal(in_sample.to_numpy(), sample.class_counts)
    sample_rows = sample_rows.reset_index(drop=True)
    assert not sample_rows["id"].duplicated().any()
    # every minority row, and majority rows that are train rows, unchanged
    assert set(sample_rows.loc[sample_rows["label"] == 1, "id"]) == set(train_rows.loc[train_rows["label"] == 1, "id"])
    merged = sample_rows.merge(train_rows, on="id", suffixes=("", "_train"), validate="one_to_one")
    assert len(merged) == len(sample_rows)
    assert (merged["x"] == merged["x_train"]).all() and (merged["label"] == merged["label_train"]).all()

    note = sample.info["undersample"]
    assert note["majority_class"] == 0 and note["seed"] == 0 and note["ratio"] == str(ratio)
    assert note["kept_majority_fraction"] == round(k * n_pos) / n_neg
    assert note["before"] == {"negative": int(n_neg), "positive": int(n_pos)}
    assert sample.info["split"] == train.info["split"]  # what came before is kept


def test_parse_ratio_reads_one_to_k_and_imblearn_floats() -> None:
    assert parse_ratio("1:1") == 1.0
    assert parse_ratio("1:10") == 10.0
    assert parse_ratio(" 1 : 2.5 ") == 2.5
    assert parse_ratio(0.25) == parse_ratio("1:4") == 4.0
    assert parse_ratio(1) == 1.0
    assert parse_ratio(0.1) == pytest.approx(10.0)


def test_undersample_same_seed_same_rows_other_seed_other_rows(client, train_test) -> None:
    train, _ = train_test
    first, again, other = ids(*(undersample(train, "1:4", seed=seed) for seed in (21, 21, 22)))
    np.testing.assert_array_equal(first, again)
    assert len(first) == len(other) and not np.array_equal(np.sort(first), np.sort(other))
    n_pos = int(train.n_positive)
    # the minority rows are common to both; the majority rows are two independent draws
    assert len(np.intersect1d(first, other)) < n_pos + 0.2 * (len(first) - n_pos)


def test_undersampling_train_leaves_the_test_set_untouched(client, counted: Dataset) -> None:
    train, test = split(counted, 0.2, seed=9)
    before = rows(test)
    test_counts = test.class_counts.copy()
    sample = undersample(train, "1:1", seed=9)
    sample_ids, after = ids(sample), rows(test)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    np.testing.assert_array_equal(test.class_counts, test_counts)
    assert np.intersect1d(sample_ids, before["id"].to_numpy()).size == 0
    assert "undersample" not in test.info


def test_an_impossible_ratio_names_the_rows_available_and_the_largest_ratio(client, data: Dataset, totals) -> None:
    """On ``data`` whose counts are not known yet: undersample counts first, then refuses."""
    n_neg, n_pos = (int(t) for t in totals)
    best = n_neg // n_pos
    too_many = best + 3
    with pytest.raises(SamplingError) as info:
        undersample(data, f"1:{too_many}")
    message = one_line(info.value)
    assert f"only {n_neg:,} are available" in message
    assert f"{too_many * n_pos:,}" in message and f"minority: {n_pos:,}" in message
    assert f"at most 1:{best}" in message
    # and the suggested ratio does work
    sample = undersample(data, f"1:{best}")
    assert sample.n_negative == best * n_pos
    np.testing.assert_array_equal(counted_per_partition(sample), sample.class_counts)


def test_no_ratio_returns_the_data_unchanged(data: Dataset) -> None:
    assert undersample(data, None) is data


def test_undersample_when_the_minority_is_class_zero(client, tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    reference = write_export(tmp_path, [(rng.random(n) < 0.8).astype("int8") for n in (900, 1_100, 1_000)])
    n_neg = int((reference["label"] == 0).sum())
    n_pos = int((reference["label"] == 1).sum())
    assert n_neg < n_pos
    sample = undersample(read(tmp_path), "1:2", seed=1)
    assert sample.info["undersample"]["majority_class"] == 1
    assert sample.class_counts.sum(axis=0).tolist() == [n_neg, 2 * n_neg]
    got = rows(sample)
    assert set(got.loc[got["label"] == 0, "id"]) == set(reference.loc[reference["label"] == 0, "id"])
    assert (got["label"] == 1).sum() == 2 * n_neg and not got["id"].duplicated().any()
    np.testing.assert_array_equal(counted_per_partition(sample), sample.class_counts)


@pytest.mark.parametrize("ratio", ["1:0", "2:3", "abc", "", "1:", "1:-2", "10:1", 1.5, 0, 0.0, -0.5, True])
def test_a_bad_ratio_is_a_sampling_error(raw_data: Dataset, ratio) -> None:
    with pytest.raises(SamplingError) as info:
        parse_ratio(ratio)
    one_line(info.value)
    with pytest.raises(SamplingError) as info:
        undersample(raw_data, ratio)
    assert "ratio" in one_line(info.value)


# ---------------------------------------------------------------- uniformity
# Hundreds of seeds on a tiny export, held in this process and sampled by the synchronous scheduler:
# the rows chosen are the same as on the cluster (test_..._do_not_depend_on_the_number_of_workers).


def in_memory(directory: Path) -> Dataset:
    data = read(directory)
    return data.with_frame(data.frame.persist(), class_counts(data))  # read and count once


def test_random_undersampling_keeps_every_majority_row_equally_often(tmp_path: Path) -> None:
    """Over many seeds each majority row is kept with probability k·n_min/n_maj, whatever its shard."""
    labels = [np.array([1] * p + [0] * (50 - p), dtype="int8") for p in (1, 2, 3, 4)]  # 10 vs 190
    reference = write_export(tmp_path, labels)
    seeds = range(250)
    with dask.config.set(scheduler="sync"):
        data = in_memory(tmp_path)
        samples = dask.compute(*[undersample(data, "1:5", seed=s).frame["id"] for s in seeds])
    majority = reference.loc[reference["label"] == 0, "id"].to_numpy()
    minority = reference.loc[reference["label"] == 1, "id"].to_numpy()
    kept = np.zeros(len(reference), dtype="int64")
    for sample in samples:
        assert len(sample) == 60
        kept[sample.to_numpy()] += 1
    assert (kept[minority] == len(seeds)).all()
    frequency = kept[majority] / len(seeds)
    expected = 5 * 10 / 190
    assert frequency.mean() == pytest.approx(expected, abs=1e-12)
    # binomial sd ≈ 0.028 over 250 draws: ±0.13 is ~4.7 sd for each of the 190 rows
    assert np.all(np.abs(frequency - expected) < 0.13), frequency
    # no shard is favoured: the mean frequency of each shard's majority rows is the expected one
    shard = reference.set_index("id").loc[majority, "shard"].to_numpy()
    per_shard = pd.Series(frequency).groupby(shard).mean()
    assert np.all(np.abs(per_shard - expected) < 0.03), per_shard


def test_split_puts_every_row_in_the_test_set_equally_often(tmp_path: Path) -> None:
    labels = [np.array([1] * p + [0] * (40 - p), dtype="int8") for p in (2, 5, 8)]  # 15 vs 105
    reference = write_export(tmp_path, labels)
    seeds = range(200)
    with dask.config.set(scheduler="sync"):
        data = in_memory(tmp_path)
        tests = dask.compute(*[split(data, 0.2, seed=s)[1].frame["id"] for s in seeds])
    in_test = np.zeros(len(reference), dtype="int64")
    for test in tests:
        assert len(test) == 21 + 3
        in_test[test.to_numpy()] += 1
    frequency = in_test / len(seeds)
    for cls, expected in ((0, 21 / 105), (1, 3 / 15)):
        of_class = frequency[reference["label"].to_numpy() == cls]
        assert of_class.mean() == pytest.approx(expected, abs=1e-12)
        assert np.all(np.abs(of_class - expected) < 0.14), of_class  # sd ≈ 0.028 over 200 draws
