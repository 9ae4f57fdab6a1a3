"""Export from BigQuery to sharded Parquet in Cloud Storage (``pip install 'workbench[bigquery]'``).

A query runs as ``EXPORT DATA OPTIONS (uri = 'gs://…/<name>-*.parquet', format = 'PARQUET', …) AS
<query>``; a table is exported by an extract job with ``destinationFormat = PARQUET``. Either way
BigQuery writes shards of at most 1 GB named with a 12-digit counter in place of ``*``
(``<name>-000000000000.parquet``, …), which is what :func:`~workbench.data.read_bigquery_export`
reads. :func:`export_bigquery` waits for the job, reporting its state, and lists the shards.

Credentials are Google's Application Default Credentials: ``GOOGLE_APPLICATION_CREDENTIALS``,
``gcloud auth application-default login``, or a Google Cloud VM's service account.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dask.utils import format_time

from ..errors import DataError

__all__ = ["ExportResult", "export_bigquery", "export_sql", "extract_job_config", "export_uri", "training_hint"]

COMPRESSIONS = ("SNAPPY", "GZIP", "ZSTD", "NONE")
SCOPES = ["https://www.googleapis.com/auth/bigquery", "https://www.googleapis.com/auth/devstorage.read_only"]
SHARD_NAME = "shard"


@dataclass
class ExportResult:
    job_id: str
    uri: str  # the wildcard URI BigQuery wrote to
    uri_prefix: str  # the directory holding the shards
    shards: list[str] = field(default_factory=list)
    sql: str | None = None
    seconds: float = 0.0


def export_uri(to: str) -> str:
    """The wildcard URI for ``to``: ``gs://b/p/`` → ``gs://b/p/shard-*.parquet``; a URI with ``*`` is kept."""
    if not isinstance(to, str) or not to.startswith("gs://") or len(to) <= len("gs://"):
        raise DataError(f"--to {to!r} is not a Cloud Storage location", "give gs://bucket/prefix/ (BigQuery exports only to gs://)")
    if "*" in to:
        if to.count("*") != 1:
            raise DataError(f"--to {to!r} has more than one '*'", "BigQuery accepts exactly one wildcard")
        return to
    return to.rstrip("/") + f"/{SHARD_NAME}-*.parquet"


def export_sql(query: str, uri: str, *, compression: str = "SNAPPY", overwrite: bool = False) -> str:
    """The ``EXPORT DATA`` statement that writes the result of ``query`` as Parquet shards at ``uri``."""
    body = _check_query(query)
    compression = _check_compression(compression)
    quoted = uri.replace("\\", "\\\\").replace("'", "\\'")
    return (
        "EXPORT DATA OPTIONS (\n"
        f"  uri = '{quoted}',\n"
        "  format = 'PARQUET',\n"
        f"  compression = '{compression}',\n"
        f"  overwrite = {'true' if overwrite else 'false'}\n"
        f") AS\n{body}"
    )


def extract_job_config(compression: str = "SNAPPY"):
    """The extract job configuration that writes a table as Parquet (``google.cloud.bigquery.ExtractJobConfig``)."""
    bigquery = _bigquery()
    return bigquery.ExtractJobConfig(
        destination_format=bigquery.DestinationFormat.PARQUET, compression=_check_compression(compression),
    )


def export_bigquery(
    to: str,
    *,
    query: str | None = None,
    table: str | None = None,
    project: str | None = None,
    location: str | None = None,
    compression: str = "SNAPPY",
    overwrite: bool = False,
    bq_client=None,
    storage_options: dict | None = None,
    poll_seconds: float = 2.0,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Run the export (a query or a table) into sharded Parquet under ``to`` and wait for it.

    ``bq_client`` is a ``google.cloud.bigquery.Client`` (default: one made from the Application
    Default Credentials for ``project``). ``storage_options`` go to gcsfs when listing the shards.
    """
    say = progress or (lambda message: None)
    if (query is None) == (table is None):
        raise DataError("give exactly one of --query and --table", "--query 'SELECT …' or --table project.dataset.table")
    uri = export_uri(to)
    sql = export_sql(query, uri, compression=compression, overwrite=overwrite) if query is not None else None
    config = extract_job_config(compression) if table is not None else None
    client = bq_client if bq_client is not None else _client(project, location)
    started = time.perf_counter()
    try:
        if sql is not None:
            job = client.query(sql, location=location, project=project)
        else:
            job = client.extract_table(_table(table, client), uri, job_config=config, location=location)
        say(f"bigquery: job {job.job_id} submitted ({'EXPORT DATA' if sql else 'extract'} to {uri})")
        last = None
        while not job.done(retry=None):
            state = f"bigquery: job {job.job_id} {job.state}"
            if state != last:
                say(state)
                last = state
            time.sleep(poll_seconds)
        if job.error_result:
            raise _failed(job.error_result)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - google.api_core raises many types; the message is what matters
        raise _job_error(exc) from None
    seconds = time.perf_counter() - started
    processed = getattr(job, "total_bytes_processed", None)
    say(f"bigquery: job {job.job_id} done in {format_time(seconds)}" + (f", {processed:,} bytes processed" if processed else ""))
    prefix = uri.rsplit("/", 1)[0] + "/"
    shards = _list_shards(uri, storage_options)
    return ExportResult(job_id=job.job_id, uri=uri, uri_prefix=prefix, shards=shards, sql=sql, seconds=seconds)


def training_hint(result: ExportResult, target: str | None = None) -> str:
    """What to run next: inspect the shards, then a pipeline whose data section points at them."""
    target = target or "<label column>"
    return (
        "next:\n"
        f"  workbench data inspect {result.uri_prefix} --target {target}\n"
        "  # then train on it with a pipeline file holding\n"
        "  data:\n"
        f"    path: {result.uri_prefix}\n"
        f"    target: {target}\n"
        "  # and run: workbench run <that file>"
    )


# ---------------------------------------------------------------- helpers


def _check_query(query: str) -> str:
    body = (query or "").strip().rstrip(";").strip()
    if not re.match(r"^(\(|SELECT\b|WITH\b)", body, flags=re.IGNORECASE):
        raise DataError("--query must be a SELECT statement (or WITH … SELECT)",
                        "give the query whose result to export; use --table to export a whole table")
    if ";" in body:
        raise DataError("--query holds more than one statement", "give a single SELECT")
    return body


def _check_compression(compression: str) -> str:
    value = str(compression).upper()
    if value not in COMPRESSIONS:
        raise DataError(f"unknown Parquet compression {compression!r}", f"use one of {', '.join(COMPRESSIONS)}")
    return value


def _bigquery():
    try:
        from google.cloud import bigquery
    except ImportError:
        raise DataError("exporting from BigQuery needs google-cloud-bigquery, which is not installed",
                        "pip install 'workbench[bigquery]'") from None
    return bigquery


def _client(project: str | None, location: str | None):
    bigquery = _bigquery()
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        credentials, default_project = google.auth.default(scopes=SCOPES)
    except DefaultCredentialsError:
        raise DataError(
            "no Google credentials found for BigQuery",
            "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run "
            "`gcloud auth application-default login`",
        ) from None
    project = project or default_project
    if not project:
        raise DataError("no Google Cloud project to run the export job in",
                        "pass --project, or set GOOGLE_CLOUD_PROJECT")
    return bigquery.Client(project=project, credentials=credentials, location=location)


def _table(table: str, client):
    bigquery = _bigquery()
    try:
        return bigquery.TableReference.from_string(table, default_project=client.project)
    except ValueError as exc:
        raise DataError(f"--table {table!r} is not a table name ({exc})", "give project.dataset.table") from None


def _failed(error: dict) -> DataError:
    """The job finished with ``status.errorResult`` (``reason``, ``message``)."""
    codes = {"accessDenied": 403, "notFound": 404}

    class _Failure(Exception):
        code = codes.get(error.get("reason"))
        message = error.get("message") or error.get("reason") or "unknown error"

    return _job_error(_Failure())


def _job_error(exc: BaseException) -> DataError:
    message = getattr(exc, "message", None) or str(exc)
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    code = getattr(exc, "code", None)
    if code == 403:
        return DataError(f"BigQuery refused the export: {first}",
                         "the credentials need bigquery.jobs.create on the project and write access to the bucket")
    if code == 404:
        return DataError(f"BigQuery could not find what the export names: {first}",
                         "check the table, dataset, project and location")
    return DataError(f"the BigQuery export failed: {first}", "fix the query or the destination and run it again")


def _list_shards(uri: str, storage_options: dict | None) -> list[str]:
    import fsspec

    try:
        fs, _ = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        found = fs.glob(uri.split("://", 1)[1])
    except ImportError:
        raise DataError("listing the shards needs gcsfs, which is not installed", "pip install 'workbench[bigquery]'") from None
    except Exception as exc:  # noqa: BLE001
        from .remote import storage_error

        raise (storage_error(exc, uri) or DataError(f"cannot list the shards at {uri}: {exc}",
                                                   "check the bucket and your credentials")) from None
    return sorted(f if "://" in f else f"gs://{f}" for f in found)
