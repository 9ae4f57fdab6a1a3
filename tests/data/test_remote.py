"""BigQuery-export shards read from gs:// (gcsfs) and s3:// (s3fs) against real servers on loopback.

The GCS emulator (``gcp-storage-emulator``) sits behind an authorising front that issues OAuth
tokens for service-account key files and refuses anonymous or unauthorised callers as Google does;
moto's S3 server checks signatures and IAM policies. The client finds both through the usual
environment variables (``STORAGE_EMULATOR_HOST`` + ``GOOGLE_APPLICATION_CREDENTIALS``;
``AWS_ENDPOINT_URL_S3`` + ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``), and so do the workers,
which get the same variables, as on a real cluster. See tests/data/remote_servers.py.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import workbench as wb

from .remote_servers import GCSFront, S3Server, free_port, service_account_file

SHARDS, ROWS = 3, 2_000


def shard_bytes(i: int) -> bytes:
    rng = np.random.default_rng(i)
    table = pa.table({
        "address": pa.array([f"a{i}-{k}" for k in range(ROWS)]),
        "value": pa.array(rng.normal(size=ROWS)).cast(pa.decimal128(38, 9), safe=False),
        "n_tx": pa.array(rng.integers(0, 100, ROWS)),
        "is_miner": pa.array(rng.random(ROWS) < 0.1),
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=500)
    return buffer.getvalue()


def expected_rows() -> int:
    return SHARDS * ROWS


def _set_env(env: dict, unset: list[str]) -> None:
    import fsspec

    os.environ.update(env)
    for name in unset:
        os.environ.pop(name, None)
    for cls in fsspec.AbstractFileSystem.__subclasses__():
        _clear_cache(cls)


def _clear_cache(cls) -> None:
    if hasattr(cls, "clear_instance_cache"):
        cls.clear_instance_cache()
    for sub in cls.__subclasses__():
        _clear_cache(sub)


@pytest.fixture
def environment(client, monkeypatch):
    """Set (and afterwards restore) environment variables here and on every worker."""
    saved_workers = client.run(lambda: dict(os.environ))

    def apply(env: dict, unset=()):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in unset:
            monkeypatch.delenv(name, raising=False)
        _set_env({}, [])
        client.run(_set_env, env, list(unset))

    yield apply
    for address, env in saved_workers.items():
        client.run(_restore_env, env, workers=[address])
    _set_env({}, [])


def _restore_env(env: dict) -> None:
    os.environ.clear()
    os.environ.update(env)
    _set_env({}, [])


# ---------------------------------------------------------------- gs://


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    import gcsfs
    from gcp_storage_emulator.server import create_server

    port = free_port()
    emulator = create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    try:
        direct = gcsfs.GCSFileSystem(endpoint_url=f"http://127.0.0.1:{port}", token="anon", skip_instance_cache=True)
        direct.mkdir("exports")
        for i in range(SHARDS):
            direct.pipe(f"exports/btc/btc-{i:012d}.parquet", shard_bytes(i))
        with GCSFront(port, {"reader@workbench-test.iam.gserviceaccount.com": True,
                             "nobody@workbench-test.iam.gserviceaccount.com": False}) as front:
            keys = tmp_path_factory.mktemp("gcs-keys")
            token_uri = f"http://127.0.0.1:{front.port}/token"
            front.keys = {
                who: service_account_file(keys / f"{who}.json", f"{who}@workbench-test.iam.gserviceaccount.com", token_uri)
                for who in ("reader", "nobody")
            }
            front.gcloud_config = str(keys)  # an empty gcloud configuration directory
            yield front
    finally:
        emulator.stop()


def gcs_env(gcs, who: str | None) -> tuple[dict, list[str]]:
    env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs.port}", "CLOUDSDK_CONFIG": gcs.gcloud_config}
    if who is None:
        return env, ["GOOGLE_APPLICATION_CREDENTIALS"]
    return {**env, "GOOGLE_APPLICATION_CREDENTIALS": gcs.keys[who]}, []


def test_gs_export_is_read_on_the_workers_with_credentials_from_the_environment(client, gcs, environment):
    environment(*gcs_env(gcs, "reader"))
    data = wb.read_bigquery_export("gs://exports/btc/", target="is_miner", drop=["address"])
    assert data.info["files"] == SHARDS and data.npartitions == SHARDS
    counts = wb.class_counts(data)  # computed by tasks on the worker processes
    assert counts.sum() == expected_rows()
    frame = data.frame.compute()
    assert list(frame.columns) == ["value", "n_tx", "is_miner"] and frame["value"].dtype == "float64"


@pytest.mark.parametrize(
    "path, who, expected",
    [
        ("gs://no-such-bucket/btc/", "reader", r"^bucket gs://no-such-bucket does not exist; check the bucket name"),
        ("gs://exports/btc/", "nobody", r"^permission denied reading gs://exports/btc/: nobody@.* does not have "
                                        r"storage.objects.list access .*roles/storage.objectViewer"),
        ("gs://exports/btc/", None, r"^no credentials found for gs://exports \(it refused anonymous access\); "
                                    r"set GOOGLE_APPLICATION_CREDENTIALS"),
    ],
    ids=["bucket-missing", "permission-denied", "no-credentials"],
)
def test_gs_errors_are_one_line(client, gcs, environment, path, who, expected):
    environment(*gcs_env(gcs, who))
    with pytest.raises(wb.DataError, match=expected) as info:
        wb.read_bigquery_export(path, target="is_miner")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- s3://


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["*"]},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::exports/*"]},
        ]}
        writer = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]}]}
        server.keys = {"reader": server.user("reader", policy), "nobody": server.user("nobody"),
                       "writer": server.user("writer", writer)}
        bucket = server.boto3("s3")
        bucket.create_bucket(Bucket="exports")
        for i in range(SHARDS):
            bucket.put_object(Bucket="exports", Key=f"btc/btc-{i:012d}.parquet", Body=shard_bytes(i))
        server.require_auth()
        yield server


def s3_env(s3, who: str | None) -> tuple[dict, list[str]]:
    env = {"AWS_ENDPOINT_URL_S3": s3.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull,
           "AWS_EC2_METADATA_DISABLED": "true"}
    unset = ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"]
    if who is None:
        return env, [*unset, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    return {**env, **s3.keys[who]}, unset


def test_s3_export_is_read_on_the_workers_with_credentials_from_the_environment(client, s3, environment):
    environment(*s3_env(s3, "reader"))
    data = wb.read_bigquery_export("s3://exports/btc/btc-*.parquet", target="is_miner", drop=["address"])
    assert data.info["files"] == SHARDS
    assert wb.class_counts(data).sum() == expected_rows()
    frame = data.frame.compute()
    assert len(frame) == expected_rows() and frame["n_tx"].dtype == "int64"


@pytest.mark.parametrize(
    "path, who, expected",
    [
        ("s3://no-such-bucket/btc/", "reader", r"^bucket s3://no-such-bucket does not exist; check the bucket name"),
        ("s3://exports/btc/", "nobody", r"^permission denied reading s3://exports/btc/: Access Denied; .*s3:ListBucket"),
        ("s3://exports/btc/", None, r"^no credentials found for s3://exports \(Unable to locate credentials\); "
                                    r"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ],
    ids=["bucket-missing", "permission-denied", "no-credentials"],
)
def test_s3_errors_are_one_line(client, s3, environment, path, who, expected):
    environment(*s3_env(s3, who))
    with pytest.raises(wb.DataError, match=expected) as info:
        wb.read_bigquery_export(path, target="is_miner")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("store", ["gs", "s3"])
def test_the_command_prints_one_error_line(client, gcs, s3, environment, store):
    import subprocess

    if store == "gs":
        environment(*gcs_env(gcs, None))
        path, expected = "gs://exports/btc/", "error: no credentials found for gs://exports (it refused anonymous access); "
    else:
        environment(*s3_env(s3, "nobody"))
        path, expected = "s3://exports/btc/", "error: permission denied reading s3://exports/btc/: Access Denied; "
    proc = subprocess.run(["workbench", "data", "inspect", path, "--connect", client.scheduler.address],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(expected), proc.stderr


@pytest.mark.filterwarnings("ignore::workbench.WorkbenchWarning")
def test_a_cache_of_an_s3_export_records_the_objects_and_goes_stale_when_one_changes(client, s3, environment, tmp_path):
    from workbench.data.cache import cache_export, cache_status

    environment(*s3_env(s3, "reader"))
    source, cache = "s3://exports/btc/", tmp_path / "btc.zarr"
    data = cache_export(source, cache, "is_miner", drop=["address"], client=client)
    assert data.info["cache_built"] and data.n_rows == expected_rows()
    assert list(data.features) == ["value", "n_tx"]  # read_cache(columns=) keeps a subset:
    assert wb.read_cache(cache, columns=["n_tx"]).frame.compute().columns.tolist() == ["n_tx", "is_miner"]
    assert cache_status(cache, source, "is_miner", drop=["address"]) is None
    import s3fs  # a re-export, by a user allowed to write (authentication is on)

    writer = s3fs.S3FileSystem(key=s3.keys["writer"]["AWS_ACCESS_KEY_ID"], secret=s3.keys["writer"]["AWS_SECRET_ACCESS_KEY"],
                               endpoint_url=s3.endpoint, skip_instance_cache=True)
    writer.pipe("exports/btc/btc-000000000001.parquet", shard_bytes(7))
    assert "btc-000000000001.parquet is now" in cache_status(cache, source, "is_miner", drop=["address"])
