"""Object storage (``gs://`` through gcsfs, ``s3://`` through s3fs): what its failures mean to a user.

Credentials come from the usual environment, as gcsfs and s3fs find them: for Google Cloud Storage
``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key file), ``gcloud auth application-default
login`` or the metadata server of a Google Cloud VM, and ``STORAGE_EMULATOR_HOST`` for an emulator;
for S3 ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``
and ``~/.aws``, an instance role, and ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) for another
S3 server. ``storage_options`` override them.

:func:`storage_error` turns the exceptions those libraries raise for the three common mistakes (a
bucket that does not exist, credentials without access, no credentials at all) into one
:class:`~workbench.errors.DataError` line each.
"""

from __future__ import annotations

import logging
import os

from ..errors import DataError

__all__ = ["storage_error", "missing_bucket_error", "bucket_of", "protocol_of", "is_remote"]

# gcsfs logs every refused request with its traceback at ERROR before raising. With no logging
# configured, Python would print that to stderr; the workbench reports the exception as one line
# instead. Configure logging (or the "gcsfs" logger) to see it.
logging.getLogger("gcsfs").addHandler(logging.NullHandler())

_GRANTS = {
    "gs": "grant it roles/storage.objectViewer on the bucket (storage.objects.list and storage.objects.get)",
    "s3": "allow it s3:ListBucket on the bucket and s3:GetObject on its objects",
}
_NO_CREDENTIALS = {
    "gs": "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or run "
          "`gcloud auth application-default login`",
    "s3": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or run on a machine with an instance role",
}


def protocol_of(url: str) -> str:
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    return {"gcs": "gs", "s3a": "s3"}.get(protocol, protocol)


def bucket_of(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def storage_error(exc: BaseException, url: str) -> DataError | None:
    """The one-line error for a failure of object storage at ``url``, or None if it is not one we know."""
    protocol = protocol_of(url)
    if protocol not in _GRANTS:
        return None
    bucket = f"{protocol}://{bucket_of(url)}"
    message = _first_line(exc)
    if _is_no_credentials(exc, protocol):
        what = "it refused anonymous access" if protocol == "gs" else message
        return DataError(f"no credentials found for {bucket} ({what})", _NO_CREDENTIALS[protocol])
    if _is_missing_bucket(exc):
        return missing_bucket_error(url)
    if _is_denied(exc):
        return DataError(f"permission denied reading {url}: {message}",
                         f"use credentials that may read {bucket}, or {_GRANTS[protocol]}")
    return None


def missing_bucket_error(url: str) -> DataError:
    protocol = protocol_of(url)
    return DataError(f"bucket {protocol}://{bucket_of(url)} does not exist",
                     "check the bucket name in the path (and the project or endpoint the credentials point at)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # gcsfs puts the request path first and Google's message second
    if len(lines) > 1 and lines[0].startswith(("Forbidden:", "b/")):
        return lines[1]
    return lines[0] if lines else type(exc).__name__


def _status(exc: BaseException) -> int | None:
    for attr in ("code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_no_credentials(exc: BaseException, protocol: str) -> bool:
    for e in _chain(exc):
        name = type(e).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
            return True
        if protocol == "gs" and _status(e) == 401 and "anonymous caller" in str(e).lower():
            return True
    return False


def _is_missing_bucket(exc: BaseException) -> bool:
    for e in _chain(exc):
        text = str(e)
        if "NoSuchBucket" in text or "The specified bucket does not exist" in text:
            return True
        code = getattr(e, "response", {}) or {}
        if isinstance(code, dict) and code.get("Error", {}).get("Code") == "NoSuchBucket":
            return True
    return False


def _is_denied(exc: BaseException) -> bool:
    for e in _chain(exc):
        if isinstance(e, PermissionError) or _status(e) in (401, 403):
            return True
        text = str(e)
        if text.startswith("Forbidden") or "AccessDenied" in text or "InvalidAccessKeyId" in text:
            return True
    return False


def is_remote(url: str) -> bool:
    return protocol_of(os.fspath(url)) in _GRANTS
