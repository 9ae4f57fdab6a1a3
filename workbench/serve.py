"""``workbench serve``: a long-lived cluster, its dashboard with the runs pages, and a connection file."""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import dask.config
import distributed  # noqa: F401  (loads distributed's config defaults before dask.config.set below)

from .cluster import dashboard_url, job_ids, make_cluster
from .errors import ClusterError

__all__ = ["serve", "connection_info", "write_connection_file"]

DASHBOARD_ROUTES = "workbench.dashboard"


def serve(
    profile=None,
    *,
    workers: int | None = None,
    runs_dir: str | os.PathLike | None = None,
    connection_file: str | os.PathLike = "workbench-connection.json",
    say: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Start a cluster and keep it up until Ctrl-C (SIGINT), SIGTERM, SIGHUP or ``stop`` is set.

    While it runs, ``connection_file`` (mode 0600) holds the scheduler address and, for a TLS
    cluster, the client credentials: ``workbench run --connect FILE`` and
    ``wb.cluster(address=FILE)`` attach to it. Shutting down closes the cluster (cancelling every
    batch job) and removes the file.
    """
    stop = stop or threading.Event()
    routes = list(dask.config.get("distributed.scheduler.http.routes", default=[]))
    settings = {"distributed.scheduler.http.routes": routes + [DASHBOARD_ROUTES] * (DASHBOARD_ROUTES not in routes)}
    if runs_dir is not None:
        settings["workbench.runs.dir"] = str(Path(runs_dir).absolute())
    else:
        settings["workbench.runs.dir"] = str(Path(dask.config.get("workbench.runs.dir")).absolute())
    path = Path(connection_file)
    if path.exists():
        raise ClusterError(
            f"{path} already exists (another `workbench serve`, or a stale file)",
            "stop the other server, remove the file, or pass --connection-file",
        )
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        for sig in previous:
            signal.signal(sig, lambda *_: stop.set())
    try:
        with dask.config.set(settings):
            running = make_cluster(profile, workers=workers)
        try:
            info = connection_info(running)
            write_connection_file(path, info)
            for line in _banner(info, path, settings["workbench.runs.dir"]):
                say(line)
            while not stop.wait(0.5):
                pass
            say("shutting down: closing the cluster" + (" and cancelling its jobs" if info["jobs"] is not None else ""))
        finally:
            running.close()
            path.unlink(missing_ok=True)
    finally:
        if in_main_thread:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def connection_info(running) -> dict:
    """What a client needs to attach to ``running``: address, dashboard, and TLS credentials if any."""
    security = getattr(running, "security", None)
    tls = None
    if security is not None and getattr(security, "require_encryption", False):
        tls = {"tls_ca_file": security.tls_ca_file, "tls_client_cert": security.tls_client_cert,
               "tls_client_key": security.tls_client_key}
    return {
        "address": running.scheduler_address,
        "dashboard": dashboard_url(running),
        "tls": tls,
        "jobs": job_ids(running),
        "pid": os.getpid(),
    }


def write_connection_file(path: Path, info: dict) -> None:
    """Write ``info`` readable by its owner only (it may hold a TLS private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=2)


def _banner(info: dict, path: Path, runs_dir: str) -> list[str]:
    url = urlsplit(info["dashboard"])
    port = url.port
    base = f"{url.scheme}://{url.netloc}"
    host = socket.getfqdn()
    if host.startswith("localhost"):
        host = socket.gethostname()
    lines = [
        f"scheduler     {info['address']}" + ("  (TLS; plain-TCP clients are refused)" if info["tls"] else ""),
        f"dashboard     {info['dashboard']}",
        f"runs          {base}/workbench/runs  (runs recorded in {runs_dir})",
        f"from a laptop ssh -N -L {port}:{url.hostname}:{port} {getpass.getuser()}@{host}   then open http://localhost:{port}/workbench/runs",
        f"connect       workbench run PIPELINE --connect {path}   (or wb.cluster(address={str(path)!r}))",
    ]
    if info["jobs"] is not None:
        lines.append(f"jobs          {', '.join(info['jobs']) or '-'}")
    lines.append("the dashboard has no authentication: keep it on 127.0.0.1 and reach it through ssh -L")
    lines.append("press Ctrl-C to stop")
    return lines
