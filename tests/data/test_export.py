"""BigQuery export: what can be checked without Google's servers (none are reachable here).

Checked: the EXPORT DATA statement and the extract job configuration, the validation of the
arguments, the one-line error when no credentials are found (through the real google-auth lookup,
with the metadata-server probe off; see conftest.py), and the whole job flow of the real
google-cloud-bigquery client against a stub of BigQuery's REST jobs API on loopback (what is
sent, waiting with progress, a failed job), with the shards listed from the GCS emulator. Not
exercised: BigQuery itself running the statement; see docs/data.md.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import workbench as wb
from workbench.data.export import ExportResult, export_bigquery, export_sql, export_uri, extract_job_config, training_hint

from .commands import the_error_line, workbench, workbench_here


def test_export_data_statement():
    uri = export_uri("gs://my-bucket/exports/btc/")
    assert uri == "gs://my-bucket/exports/btc/shard-*.parquet"
    sql = export_sql("SELECT address, is_miner FROM `p.d.t` WHERE n_tx > 1;", uri, compression="zstd", overwrite=True)
    assert sql == (
        "EXPORT DATA OPTIONS (\n"
        "  uri = 'gs://my-bucket/exports/btc/shard-*.parquet',\n"
        "  format = 'PARQUET',\n"
        "  compression = 'ZSTD',\n"
        "  overwrite = true\n"
        ") AS\n"
        "SELECT address, is_miner FROM `p.d.t` WHERE n_tx > 1"
    )
    assert export_uri("gs://b/p/part-*.parquet") == "gs://b/p/part-*.parquet"
    assert "uri = 'gs://b/it\\'s-*.parquet'" in export_sql("WITH a AS (SELECT 1) SELECT * FROM a", "gs://b/it's-*.parquet")


def test_extract_job_configuration():
    config = extract_job_config("gzip").to_api_repr()
    assert config == {"extract": {"destinationFormat": "PARQUET", "compression": "GZIP"}}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(to="gs://b/p/"), "give exactly one of --query and --table"),
        (dict(to="gs://b/p/", query="SELECT 1", table="p.d.t"), "give exactly one of --query and --table"),
        (dict(to="s3://b/p/", query="SELECT 1"), "is not a Cloud Storage location"),
        (dict(to="gs://b/*/p-*.parquet", query="SELECT 1"), "has more than one '\\*'"),
        (dict(to="gs://b/p/", query="DELETE FROM t WHERE true"), "must be a SELECT statement"),
        (dict(to="gs://b/p/", query="SELECT 1; DROP TABLE t"), "more than one statement"),
        (dict(to="gs://b/p/", query="SELECT 1", compression="lzo"), "unknown Parquet compression 'lzo'"),
    ],
)
def test_bad_arguments_are_one_line(kwargs, message):
    with pytest.raises(wb.DataError, match=message) as info:
        export_bigquery(**kwargs)
    assert "\n" not in str(info.value)


@pytest.fixture
def no_google_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # an empty gcloud configuration
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    return {"GOOGLE_APPLICATION_CREDENTIALS": None, "CLOUDSDK_CONFIG": str(tmp_path)}


def test_missing_credentials_are_one_line(no_google_credentials):
    with pytest.raises(wb.DataError) as info:
        export_bigquery("gs://b/p/", query="SELECT 1")
    assert str(info.value) == (
        "no Google credentials found for BigQuery; set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
        "key file, or run `gcloud auth application-default login`"
    )


def test_export_command_without_credentials(no_google_credentials):
    proc = subprocess.run(
        ["workbench", "data", "export-bigquery", "--query", "SELECT * FROM `p.d.t`", "--to", "gs://b/p/"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no Google credentials found for BigQuery; ")
    assert "Traceback" not in proc.stderr


def test_training_hint_names_the_shards_directory():
    result = ExportResult(job_id="j", uri="gs://b/p/shard-*.parquet", uri_prefix="gs://b/p/")
    hint = training_hint(result, "is_miner")
    assert "workbench data inspect gs://b/p/ --target is_miner" in hint and "path: gs://b/p/" in hint


# ---------------------------------------------------------------- the job, against stand-ins


@pytest.fixture
def gcs_bucket(tmp_path):
    """The GCS emulator on loopback with an empty bucket, reached without authentication."""
    import gcsfs
    from gcp_storage_emulator.server import create_server

    from .remote_servers import free_port

    port = free_port()
    emulator = create_server("127.0.0.1", port, in_memory=True)
    emulator.start()
    try:
        options = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "skip_instance_cache": True}
        fs = gcsfs.GCSFileSystem(**options)
        fs.mkdir("btc-exports")
        yield fs, options
    finally:
        emulator.stop()


def test_the_export_job_is_submitted_waited_for_and_its_shards_listed(gcs_bucket):
    """The real BigQuery client library against a stub of the jobs API; the shards in the emulator."""
    from .remote_servers import BigQueryStub

    fs, options = gcs_bucket

    def write_shards(job):  # what BigQuery would do
        for i in range(3):
            fs.pipe(f"btc-exports/2026-12/shard-{i:012d}.parquet", b"PAR1")

    said = []
    with BigQueryStub(on_done=write_shards) as stub:
        result = export_bigquery("gs://btc-exports/2026-12/", query="SELECT * FROM `p.d.t`", bq_client=stub.client(),
                                 storage_options=options, poll_seconds=0.01, progress=said.append)
        (job,) = stub.jobs.values()
    assert job["configuration"]["query"]["query"] == export_sql("SELECT * FROM `p.d.t`", result.uri)
    assert job["configuration"]["query"]["useLegacySql"] is False
    assert result.shards == [f"gs://btc-exports/2026-12/shard-{i:012d}.parquet" for i in range(3)]
    assert result.uri_prefix == "gs://btc-exports/2026-12/"
    assert said[0].startswith(f"bigquery: job {result.job_id} submitted (EXPORT DATA to gs://btc-exports/2026-12/shard-*")
    assert any(line.endswith("RUNNING") for line in said) and said[-1].startswith(f"bigquery: job {result.job_id} done")


def test_a_table_is_exported_by_an_extract_job(gcs_bucket):
    from .remote_servers import BigQueryStub

    fs, options = gcs_bucket
    with BigQueryStub(on_done=lambda job: fs.pipe("btc-exports/t/shard-000000000000.parquet", b"PAR1")) as stub:
        result = export_bigquery("gs://btc-exports/t/", table="my-project.btc.features", compression="zstd",
                                 bq_client=stub.client(), storage_options=options, poll_seconds=0.01)
        (job,) = stub.jobs.values()
    assert job["configuration"]["extract"] == {
        "sourceTable": {"projectId": "my-project", "datasetId": "btc", "tableId": "features"},
        "destinationUris": ["gs://btc-exports/t/shard-*.parquet"],
        "destinationFormat": "PARQUET", "compression": "ZSTD",
    }
    assert result.shards == ["gs://btc-exports/t/shard-000000000000.parquet"] and result.sql is None


def test_a_failed_job_is_one_line(gcs_bucket):
    from .remote_servers import BigQueryStub

    fail = {"reason": "accessDenied", "message": "Access Denied: Table p:d.t: User does not have permission"}
    with BigQueryStub(fail=fail) as stub:
        with pytest.raises(wb.DataError) as info:
            export_bigquery("gs://btc-exports/x/", query="SELECT 1", bq_client=stub.client(), poll_seconds=0.01)
    assert str(info.value) == (
        "BigQuery refused the export: Access Denied: Table p:d.t: User does not have permission; "
        "the credentials need bigquery.jobs.create on the project and write access to the bucket")


def test_export_command_with_bad_arguments_is_one_line(capsys):
    code, out, err = workbench_here(capsys, "data", "export-bigquery", "--to", "gs://b/p/")
    assert the_error_line(code, err) == (
        "error: give exactly one of --query and --table; --query 'SELECT …' or --table project.dataset.table")
    assert out == ""


def test_export_command_runs_the_job_and_prints_the_shards(gcs_bucket, tmp_path):
    """`workbench data export-bigquery` as a user runs it: Application Default Credentials from a
    service-account key file, BigQuery and Cloud Storage found through their emulator variables."""
    from .remote_servers import BigQueryStub, GCSFront, service_account_file

    fs, options = gcs_bucket
    port = int(options["endpoint_url"].rsplit(":", 1)[1])
    account = "exporter@workbench-test.iam.gserviceaccount.com"

    def write_shards(job):  # what BigQuery would do
        for i in range(2):
            fs.pipe(f"btc-exports/2026-12/shard-{i:012d}.parquet", b"PAR1")

    with GCSFront(port, {account: True}) as front, BigQueryStub(on_done=write_shards) as stub:
        key = service_account_file(tmp_path / "key.json", account, f"{front.endpoint}/token")
        env = {**os.environ, "GOOGLE_APPLICATION_CREDENTIALS": key, "CLOUDSDK_CONFIG": str(tmp_path),
               "NO_GCE_CHECK": "true", "BIGQUERY_EMULATOR_HOST": stub.endpoint, "STORAGE_EMULATOR_HOST": front.endpoint}
        proc = workbench("data", "export-bigquery", "--query", "SELECT * FROM `p.d.t`", "--to", "gs://btc-exports/2026-12/",
                         "--target", "is_miner", env=env)
        (job,) = stub.jobs.values()
    assert proc.returncode == 0, proc.stderr
    job_id = job["jobReference"]["jobId"]
    assert job["jobReference"]["projectId"] == "workbench-test"  # the key file's project
    assert job["configuration"]["query"]["query"] == export_sql("SELECT * FROM `p.d.t`", export_uri("gs://btc-exports/2026-12/"))
    assert proc.stdout.splitlines()[:3] == [
        f"job {job_id}: 2 shard(s) under gs://btc-exports/2026-12/",
        "  gs://btc-exports/2026-12/shard-000000000000.parquet",
        "  gs://btc-exports/2026-12/shard-000000000001.parquet",
    ]
    assert "\n".join(proc.stdout.splitlines()[3:]) == training_hint(
        ExportResult(job_id=job_id, uri="", uri_prefix="gs://btc-exports/2026-12/"), "is_miner")
    assert f"bigquery: job {job_id} submitted (EXPORT DATA to gs://btc-exports/2026-12/shard-*.parquet)" in proc.stderr
