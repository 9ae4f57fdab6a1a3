"""Whether every worker's node sees the files the client sees, asked once before the workers read.

On a cluster the client's host (a login node) and the workers' nodes share some file systems
(home, project, scratch) and not others: each node has its own ``/tmp`` and its own local disks.
An export on a path only the client's host has is listed and planned on the client, and then every
read task fails on the nodes. :func:`check_nodes_see` asks every worker, in one ``client.run``,
whether a few of the files are there with the same size (and whether it may write into a directory
the workers are to write into), and names the nodes that cannot in one line. Remote paths
(``gs://``, ``s3://``) are not checked: every node reaches them the same way.

A worker answers within :data:`ANSWER_TIMEOUT` seconds even when a file system hangs.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .parquet import expand_paths, is_local

__all__ = ["ANSWER_TIMEOUT", "Need", "cache_needs", "check_nodes_see", "current_client", "export_needs"]

PROBED_SHARDS = 3  # the first, middle and last shard of an export stand in for all of them
ANSWER_TIMEOUT = 10.0  # seconds a worker may take to look, then it answers "no answer"


@dataclass(frozen=True)
class Need:
    """A file every worker must read (``action="read"``) or a directory it must write into (``"write"``).

    ``what`` names it in the error (``"the export"``), ``shown`` is the path the error shows.
    """

    path: str
    action: str  # "read" | "write"
    what: str
    shown: str


def export_needs(path, storage_options: dict | None = None) -> list[Need]:
    """What the workers read of the export at ``path``: a few of its shards (none if it is remote).

    A directory holding a Zarr cache (``data.path`` naming a cache) is represented by its
    ``zarr.json``. Nothing when ``path`` names no files (the reader says so when it reads).
    """
    paths = [os.fspath(p) for p in path] if isinstance(path, (list, tuple)) else [os.fspath(path)]
    local = [p.removeprefix("file://") for p in paths if "://" not in p or p.startswith("file://")]
    if not local:
        return []
    shown = ", ".join(os.path.abspath(os.path.expanduser(p)) for p in local)
    caches = [Path(p).expanduser() / "zarr.json" for p in local if (Path(p).expanduser() / "zarr.json").is_file()]
    if caches:
        return [Need(str(c.absolute()), "read", "the Zarr cache", shown) for c in caches]
    try:
        fs, files = expand_paths(local, storage_options)
    except DataError:
        return []  # nothing there to check: the reader says so, in its own words, when it reads
    if not is_local(fs):
        return []
    picked = sorted({files[0], files[len(files) // 2], files[-1]})[:PROBED_SHARDS]
    return [Need(f, "read", "the export", shown) for f in picked]


def cache_needs(cache) -> list[Need]:
    """What the workers read and write of the Zarr cache at ``cache``: its ``zarr.json`` if it is
    built, else its parent directory, where they write it (none if it is remote)."""
    text = os.fspath(cache)
    if "://" in text and not text.startswith("file://"):
        return []
    directory = Path(text.removeprefix("file://")).expanduser().absolute()
    if (directory / "zarr.json").is_file():
        return [Need(str(directory / "zarr.json"), "read", "the Zarr cache", str(directory))]
    return [Need(str(directory.parent), "write", "the Zarr cache", str(directory))]


def check_nodes_see(client, needs: Iterable[Need]) -> None:
    """Raise a one-line :class:`~workbench.errors.DataError` naming the nodes that cannot see ``needs``.

    One ``client.run`` on every worker of ``client`` (nothing is checked without one). A directory
    to write into is created here if missing, and a marker file written into it for the workers to
    find; the marker is removed afterwards.
    """
    needs = list(needs)
    if client is None or not needs:
        return
    markers: list[Path] = []
    try:
        probes = [_probe(need, markers) for need in needs]
        answers = client.run(_look, [(p.file, p.size, p.writable) for p in probes], ANSWER_TIMEOUT,
                             on_error="return")
    finally:
        for marker in markers:
            marker.unlink(missing_ok=True)
    problems: dict[str, _Problem] = {}  # hostname -> the first problem one of its workers found
    for answer in answers.values():
        if not isinstance(answer, tuple):  # a worker that could not run the check: its reads will say why
            continue
        hostname, found = answer
        if found and hostname not in problems:
            index, kind, detail = found[0]
            probe = probes[index]
            alike = {i for i, p in enumerate(probes) if p.need.shown == probe.need.shown}
            problems[hostname] = _Problem(probe, kind, detail, alike <= {i for i, _, _ in found})
    if problems:
        raise _error(problems)


@dataclass(frozen=True)
class _Probe:
    need: Need
    file: str  # what the workers open: the need's file, or a marker in the need's directory
    size: int  # its size here
    writable: str  # the directory the workers must write into, or ""


@dataclass(frozen=True)
class _Problem:
    probe: _Probe
    kind: str  # see _look
    detail: str
    everything: bool  # none of the files the error names was there


def _look(probes: list[tuple[str, int, str]], timeout: float) -> tuple[str, list[tuple[int, str, str]]]:
    """On a worker: its hostname, and ``(index, kind, detail)`` for each probe it cannot see.

    ``kind`` is ``missing``, ``denied``, ``different`` (another size), ``unwritable``, ``timeout`` or
    ``error``. The files are looked at in a thread, so a hung file system costs ``timeout`` seconds.
    """
    found: list[tuple[int, str, str]] = []
    done = threading.Event()

    def run():
        for index, (path, size, writable) in enumerate(probes):
            problem = _problem(path, size, writable)
            if problem is not None:
                found.append((index, *problem))
        done.set()

    threading.Thread(target=run, daemon=True, name="workbench-reach").start()
    if not done.wait(timeout):
        return socket.gethostname(), [(min(len(found), len(probes) - 1), "timeout", f"{timeout:g} s")]
    return socket.gethostname(), found


def _problem(path: str, size: int, writable: str) -> tuple[str, str] | None:
    try:
        with open(path, "rb") as file:
            file.read(1)
            there = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return "missing", ""
    except PermissionError:
        return "denied", ""
    except OSError as exc:
        return "error", exc.strerror or str(exc)
    if there != size:
        return "different", f"{there:,} bytes there, {size:,} here"
    if writable and not os.access(writable, os.W_OK | os.X_OK):
        return "unwritable", ""
    return None


def _probe(need: Need, markers: list[Path]) -> _Probe:
    if need.action == "read":
        return _Probe(need, need.path, os.stat(need.path).st_size, "")
    directory = Path(need.path)
    marker = directory / f".workbench-reach-{uuid.uuid4().hex}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        marker.write_bytes(marker.name.encode())
    except OSError as exc:
        raise DataError(f"cannot write {need.what} into {directory}: {exc.strerror or exc}",
                        "choose a directory you may write to") from None
    markers.append(marker)
    return _Probe(need, str(marker), marker.stat().st_size, str(directory))


_WHY = {
    "missing": "it exists only on this host?",
    "denied": "permission denied there",
    "different": "another file there: {detail}",
    "unwritable": "no write permission there",
    "timeout": "no answer within {detail}: a hung file system?",
    "error": "{detail}",
}


def _error(problems: dict[str, _Problem]) -> DataError:
    """One line for the first node's problem, naming every node that has the same one."""
    problem = problems[min(problems)]
    need = problem.probe.need
    nodes = sorted(host for host, p in problems.items() if p.kind == problem.kind and p.probe.need.shown == need.shown)
    names = nodes[0] if len(nodes) == 1 else f"{', '.join(nodes[:-1])} and {nodes[-1]}"
    who = f"{'node' if len(nodes) == 1 else 'nodes'} {names}"
    if need.action == "write":
        action = f"cannot write {need.what} into {need.shown}"
    else:
        action = f"cannot read {need.what} {need.shown if problem.everything else problem.probe.file}"
    why = _WHY[problem.kind].format(detail=problem.detail)
    if problem.kind in ("missing", "different"):
        noun = "the cache" if "cache" in need.what else "the export"
        fix = (f"put {noun} on a path every node shares (your home or project directory on the cluster's shared "
               "file system" + (", not /tmp: each node has its own)" if need.shown.startswith("/tmp/") else ")"))
    elif problem.kind in ("denied", "unwritable"):
        fix = f"let the account the workers run as on {names} {'read' if need.action == 'read' else 'write into'} it"
    else:
        fix = f"check that {names} {'mounts' if len(nodes) == 1 else 'mount'} {need.shown} as this host does"
    return DataError(f"{who} {action} ({why})", fix)


def current_client():
    """The current Dask client, or None."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None
