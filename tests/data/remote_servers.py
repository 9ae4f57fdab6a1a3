"""Real object-storage servers on loopback for the gs:// and s3:// tests.

- **GCS**: ``gcp-storage-emulator`` (Google's JSON API) behind a small authorising front, because
  the emulator accepts any caller. The front answers OAuth token requests (``POST /token``) for the
  refresh tokens it knows, and like Google it answers a request without credentials with 401
  ("Anonymous caller does not have ...") and one with credentials that lack access with 403; it
  passes the rest to the emulator. Clients find it through ``STORAGE_EMULATOR_HOST`` and their
  credentials through ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key file whose
  ``token_uri`` is the front), as they would in production. gcsfs's experimental gRPC features
  (``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT``, on by default) are switched off: emulators speak only
  the JSON API.
- **S3**: ``moto``'s server mode with authentication switched on after setup
  (``/moto-api/reset-auth``), so unknown keys and keys without a policy are refused as AWS does.
  Clients find it through ``AWS_ENDPOINT_URL_S3`` and their keys through ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
              "proxy-authenticate", "content-length"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_account_file(path, email: str, token_uri: str) -> str:
    """A service-account key file (a fresh RSA key) whose tokens come from ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "workbench-test", "private_key_id": "1",
            "private_key": pem, "client_email": email, "client_id": "1", "token_uri": token_uri}
    with open(path, "w") as f:
        json.dump(info, f)
    return str(path)


class _LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port), served from a thread while the ``with`` block runs."""

    def _serve(self, handler) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class GCSFront(_LoopbackServer):
    """Authorising front for the GCS emulator: ``tokens`` maps service account -> whether it may read."""

    def __init__(self, upstream_port: int, tokens: dict[str, bool]):
        self.upstream_port = upstream_port
        self.tokens = tokens
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: bytes, headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, status: int, message: str):
                body = json.dumps({"error": {"code": status, "message": message,
                                             "errors": [{"message": message, "reason": "required"}]}}).encode()
                self._reply(status, body, [("Content-Type", "application/json")])

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/token"):
                    # a service account's signed JWT assertion (RFC 7523); its issuer is the account
                    form = urllib.parse.parse_qs(body.decode())
                    assertion = form.get("assertion", [""])[0].split(".")
                    claims = json.loads(base64.urlsafe_b64decode(assertion[1] + "==")) if len(assertion) == 3 else {}
                    account = claims.get("iss", "")
                    if account not in front.tokens:
                        return self._error(400, "invalid_grant")
                    token = {"access_token": f"access-{account}", "expires_in": 3600, "token_type": "Bearer"}
                    return self._reply(200, json.dumps(token).encode(), [("Content-Type", "application/json")])
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    return self._error(401, "Anonymous caller does not have storage.objects.list access to the "
                                            "Google Cloud Storage bucket. Permission 'storage.objects.list' denied "
                                            "on resource (or it may not exist).")
                account = auth.removeprefix("Bearer ").removeprefix("access-")
                if not front.tokens.get(account, False):
                    return self._error(403, f"{account} does not have "
                                            "storage.objects.list access to the Google Cloud Storage bucket.")
                upstream = http.client.HTTPConnection("127.0.0.1", front.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
                upstream.close()
                self._reply(response.status, data, kept)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self._serve(Handler)


def _moto_sees_the_raw_query() -> None:
    """moto's server mode checks a request's signature against ``request.url``, whose query string
    werkzeug has already percent-decoded, so every signed request with ``%2F`` in its query (each
    listing under a prefix) fails with SignatureDoesNotMatch. Give it the query as sent."""
    from moto.core.responses import BaseResponse

    if getattr(BaseResponse.setup_class, "_raw_query", False):
        return
    original = BaseResponse.setup_class

    def setup_class(self, request, full_url, headers, *args, **kwargs):
        result = original(self, request, full_url, headers, *args, **kwargs)
        raw = getattr(request, "environ", {}).get("QUERY_STRING")
        if raw:
            self.uri = urllib.parse.urlunsplit(urllib.parse.urlsplit(self.uri)._replace(query=raw))
        return result

    setup_class._raw_query = True
    BaseResponse.setup_class = setup_class


class S3Server:
    """moto's S3 (and IAM) in server mode on a free loopback port, authentication on once set up."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        _moto_sees_the_raw_query()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop()

    def boto3(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="setup", aws_secret_access_key="setup")

    def user(self, name: str, policy: dict | None = None) -> dict:
        """An IAM user with an access key (and an inline policy): its AWS_* environment variables."""
        iam = self.boto3("iam")
        iam.create_user(UserName=name)
        if policy is not None:
            iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def require_auth(self, on: bool = True) -> None:
        """From now on every request must be signed by a known key and allowed by its policies."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0" if on else b"inf",
                                         method="POST", headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


class BigQueryStub(_LoopbackServer):
    """A stand-in for BigQuery's REST jobs API (``jobs.insert`` and ``jobs.get``) on loopback.

    It runs no SQL. It records each job's configuration as the client sent it, reports the job
    RUNNING on the first ``jobs.get`` and DONE afterwards, and on completion calls ``on_done(job)``
    (the test writes the shards BigQuery would have written), or finishes with ``fail`` as the
    job's ``status.errorResult``.
    """

    def __init__(self, on_done=None, fail: dict | None = None):
        self.jobs: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                project = self.path.split("/projects/")[1].split("/")[0]
                reference = {"projectId": project, "location": "US", **body.get("jobReference", {})}
                job = {"kind": "bigquery#job", "id": f"{project}:US.{reference['jobId']}", "jobReference": reference,
                       "configuration": body["configuration"], "status": {"state": "RUNNING"},
                       "statistics": {"creationTime": "1764576000000"}}
                stub.jobs[reference["jobId"]] = job
                stub.polls[reference["jobId"]] = 0
                self._json(200, job)

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                job_id = path.rstrip("/").split("/")[-1]
                job = stub.jobs.get(job_id)
                if job is None or "/jobs/" not in path:
                    return self._json(404, {"error": {"code": 404, "message": f"Not found: Job {job_id}"}})
                stub.polls[job_id] += 1
                if stub.polls[job_id] >= 2 and job["status"]["state"] != "DONE":
                    job["status"] = {"state": "DONE", **({"errorResult": fail, "errors": [fail]} if fail else {})}
                    if not fail and on_done is not None:
                        on_done(job)
                self._json(200, job)

        self._serve(Handler)

    def client(self, project: str = "workbench-test"):
        """A real ``google.cloud.bigquery.Client`` pointed at the stub."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options={"api_endpoint": self.endpoint})
