"""BigQuery export: what can be checked without Google's servers (none are reachable here).

Checked: the EXPORT DATA statement and the extract job configuration that would be sent, the
validation of the arguments, and the one-line error when no credentials are found (through the
real google-auth lookup, with the metadata-server probe off; see conftest.py). Not exercised: a
job actually running in BigQuery; see docs/data.md.
"""

from __future__ import annotations

import subprocess

import pytest

import workbench as wb
from workbench.data.export import export_bigquery, export_sql, export_uri, extract_job_config, training_hint, ExportResult


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
