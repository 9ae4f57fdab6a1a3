"""Cluster profiles → running Dask clusters.

A profile is a YAML file whose ``type`` names the cluster class and whose other keys are that
class's own keyword arguments: ``distributed.LocalCluster`` for ``local``; dask-jobqueue's
``SLURMCluster``, ``PBSCluster``, ``SGECluster`` and ``LSFCluster`` for ``slurm``, ``pbs``, ``sge``
and ``lsf``. Unset keys fall back to Dask's configuration (``workbench.cluster.<type>``, then
dask-jobqueue's ``jobqueue.<type>``), exactly as dask-jobqueue falls back on its own. The types
are a registry, :data:`CLUSTER_TYPES`, that code outside the package can add to.

Workers are started, resized and awaited along one path, :func:`scale` and
:func:`wait_for_workers` (see :mod:`workbench.cluster.scaling`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask.config

from ..config import load_yaml, validate
from ..errors import ClusterError, ConfigError
from . import _jobqueue, allocation
from .allocation import AllocationProfile
from .profiles import CLUSTER_TYPES, JobqueueProfile, LocalProfile, Profile
from .scaling import replace_lost_workers, scale, wait_for_workers

__all__ = [
    "CLUSTER_TYPES",
    "LocalProfile",
    "JobqueueProfile",
    "load_profile",
    "make_cluster",
    "close_cluster",
    "cluster",
    "connect",
    "describe",
    "job_script",
    "job_ids",
    "cluster_summary",
    "worker_hosts",
    "nodes_needed",
    "check_nodes",
    "dashboard_url",
    "scale",
    "wait_for_workers",
]

PROFILE_DIR = "clusters"


def load_profile(profile: str | os.PathLike | dict | Profile | None = "local") -> Profile:
    """Resolve a profile: a path, a name in ``./clusters/``, the built-in ``"local"``, or a mapping."""
    if isinstance(profile, (LocalProfile, JobqueueProfile, AllocationProfile)):
        return profile
    if isinstance(profile, dict):
        return _validate(profile, {}, "cluster profile")
    name = os.fspath(profile or "local")
    candidates = [Path(name), Path(PROFILE_DIR) / name, Path(PROFILE_DIR) / f"{name}.yaml"]
    for path in candidates:
        if path.is_file():
            data, lines = load_yaml(path, "cluster profile")
            return _validate(data, lines, str(path))
    if name == "local":
        return LocalProfile()
    known = sorted(p.stem for p in Path(PROFILE_DIR).glob("*.yaml")) if Path(PROFILE_DIR).is_dir() else []
    raise ConfigError(
        f"unknown cluster profile {name!r}",
        f"give a profile file path or one of: {', '.join(sorted({'local', *known}))}",
    )


def _validate(data, lines, source: str) -> Profile:
    kind = data.get("type", "local") if isinstance(data, dict) else None
    if not isinstance(kind, str) or kind not in CLUSTER_TYPES:
        line = lines.get(("type",))
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: type: {CLUSTER_TYPES.unknown(kind)}", f"see {CLUSTER_TYPES.docs}")
    return validate(CLUSTER_TYPES[kind], data, lines, source)


def make_cluster(profile=None, *, workers: int | None = None):
    """Start the cluster a profile describes, with ``workers`` overriding its worker count.

    Batch-system profiles return once every worker is connected (see ``wait_timeout``).
    """
    from distributed import LocalCluster

    if workers is not None and workers < 1:
        raise ClusterError(f"--workers {workers} is not a positive number", "ask for 1 or more workers")
    profile = load_profile(profile)
    if isinstance(profile, AllocationProfile):  # one allocation: this SLURM task's rank decides its part
        return allocation.start(profile, workers)
    if isinstance(profile, JobqueueProfile):
        return _start_jobs(profile, workers)
    kwargs = profile.cluster_kwargs(workers)
    # Set before each worker process starts (the Nanny's `env` arrives too late for OpenMP).
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **kwargs.pop("env", {})}
    # Its worker processes leave Ctrl-C to this process, which closes them (cluster/_worker_signals.py).
    preload = [*dask.config.get("distributed.worker.preload", default=[]), "workbench.cluster._worker_signals"]
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, "distributed.worker.preload": preload}):
            return LocalCluster(**kwargs)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: "Cluster failed to start"
        cause = exc.__cause__ or exc
        raise ClusterError(f"the local cluster did not start: {' '.join(str(cause).split())[:200]}",
                           "check the profile's values") from None


def _start_jobs(profile: JobqueueProfile, workers: int | None):
    """The cluster with one job per ``processes`` workers submitted and every worker connected.

    The batch system's refusal (unknown partition, too much memory, no account) is raised as a
    :class:`ClusterError` in its own words. Once the workers are up, a worker whose job dies is
    replaced by a new job (``replace_lost_workers``, default true). Whatever happens, a cluster
    that does not come up is closed, which cancels its jobs.
    """
    settings = profile.settings(workers)
    check_nodes(profile, workers)
    running = _jobqueue.create(profile, workers)
    try:
        processes = _jobqueue.worker_processes(running)
        jobs = -(-int(settings["n_workers"]) // processes)
        scale(running, jobs * processes, timeout=settings.get("wait_timeout"))
        if settings.get("replace_lost_workers", True):
            replace_lost_workers(running, jobs * processes)
        return running
    except BaseException:
        close_cluster(running)
        raise


def close_cluster(running) -> None:
    """Close a cluster this process started, even when a worker left it just before.

    A worker lost shortly before the close (killed, or restarted by its nanny) can reach the
    cluster's worker-status watcher as a removal of a worker it never saw added, and
    ``SpecCluster.close`` then raises ``KeyError`` with that worker's address after it has closed
    everything (dask/distributed#5407): that error is the watcher's, not the close's.
    """
    try:
        running.close()
    except KeyError as exc:
        if not str(exc).strip("'\"").startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise


def nodes_needed(profile: Profile, workers: int | None = None) -> int | None:
    """Distinct nodes ``workers`` workers take under ``profile`` (None: jobs may share nodes)."""
    if not isinstance(profile, JobqueueProfile):
        return None
    settings = profile.settings(workers)
    per_node = settings.get("workers_per_node")
    return -(-int(settings["n_workers"]) // int(per_node)) if per_node else None


def check_nodes(profile: Profile, workers: int | None = None) -> None:
    """Refuse, in one line, more whole nodes than the profile's queue has: such jobs would wait forever."""
    needed = nodes_needed(profile, workers)
    if needed is None:
        return
    available = profile.nodes_available()
    if available is not None and needed > available:
        queue = profile.settings().get("queue")
        per_node = profile.settings(workers)["workers_per_node"]
        raise ClusterError(
            f"{needed} nodes asked for ({per_node} worker(s) per node), but "
            + (f"partition {queue}" if queue else "the default queue") + f" has {available}",
            f"ask for at most {available} nodes (--nodes, or --workers up to {available * per_node})",
        )


def worker_hosts(client) -> dict[str, str]:
    """Each connected worker's address and the hostname of the node it runs on."""
    import socket

    try:
        return {address: str(name) for address, name in client.run(socket.gethostname, on_error="return").items()
                if isinstance(name, str)}
    except (OSError, TimeoutError):
        return {}


def job_ids(running) -> list[str] | None:
    """The batch job IDs of a cluster's workers, or None for a cluster whose workers are not jobs."""
    return _jobqueue.job_ids(running) if _jobqueue.is_jobqueue(running) else None


def describe(profile=None, *, workers: int | None = None) -> dict:
    """What :func:`make_cluster` would start, without starting it: the class's keyword arguments."""
    if workers is not None and workers < 1:
        raise ClusterError(f"--workers {workers} is not a positive number", "ask for 1 or more workers")
    profile = load_profile(profile)
    if isinstance(profile, AllocationProfile):  # one allocation
        return allocation.describe(profile, workers)
    described = {"type": profile.type, **profile.cluster_kwargs(workers)}
    if isinstance(profile, JobqueueProfile):
        settings = profile.settings(workers)
        described.update(n_workers=settings["n_workers"], wait_timeout=settings.get("wait_timeout"))
    return described


def job_script(profile, *, workers: int | None = None, command: list[str] | None = None,
               nodes: int | None = None) -> str:
    """The batch script one worker job of ``profile`` would submit (nothing is submitted).

    The scheduler is started to learn its real address, then closed; no job is created. For a
    ``slurm-allocation`` profile it is the whole job's script, running ``command`` (a workbench
    command's arguments, e.g. ``["run", "pipelines/quickstart.yaml"]``) on ``nodes`` nodes.
    """
    source = os.fspath(profile) if isinstance(profile, (str, os.PathLike)) else None
    profile = load_profile(profile)
    if isinstance(profile, AllocationProfile):  # one allocation: the whole job, running the command
        if workers is not None:
            raise ClusterError("an allocation's workers are its nodes × workers_per_node", "give --nodes instead of --workers")
        return allocation.job_script(profile, allocation.job_command(profile, command, source), nodes=nodes,
                                     workdir=allocation.check_submit_directory())
    if command or nodes is not None:
        raise ClusterError(f"a {profile.type} profile's job script starts workers only; a command and --nodes are "
                           f"for a {allocation.TYPE} profile", "drop them, or give a slurm-allocation profile")
    if not isinstance(profile, JobqueueProfile):
        raise ClusterError(f"a {profile.type} profile submits no job script", "give a slurm, pbs, sge or lsf profile")
    running = _jobqueue.create(profile, workers)
    try:
        return running.job_script()
    finally:
        running.close()


@contextmanager
def cluster(profile=None, *, workers: int | None = None, address: str | os.PathLike | None = None) -> Iterator:
    """A client on a fresh cluster from ``profile``, or on a running one at ``address``.

    ``address`` is a scheduler address or a connection file written by ``workbench serve``
    (which also carries the TLS credentials of a secured cluster). A fresh cluster is closed on
    the way out, normally, on error or on Ctrl-C; for batch systems that cancels every job.

    >>> with cluster("local", workers=2) as client:   # doctest: +SKIP
    ...     print(client.dashboard_link)
    """
    if address:
        with connect(address) as client:
            yield client
        return
    from distributed import Client

    running = make_cluster(profile, workers=workers)
    try:
        with Client(running) as client:
            yield client
    finally:
        close_cluster(running)


def connect(address: str | os.PathLike, timeout: str = "10s"):
    """A client on a running scheduler: an address, or a ``workbench serve`` connection file."""
    from distributed import Client

    security = None
    target = os.fspath(address)
    if Path(target).is_file():
        try:
            info = json.loads(Path(target).read_text())
            target = info["address"]
        except (ValueError, KeyError) as exc:
            raise ClusterError(f"{address} is not a workbench connection file ({exc})",
                               "pass the file `workbench serve` printed, or a scheduler address") from None
        if info.get("tls"):
            from distributed.security import Security

            security = Security(require_encryption=True, **info["tls"])
    try:
        return Client(target, timeout=timeout, security=security)
    except (OSError, TypeError, ValueError) as exc:
        message = " ".join(str(exc).split())
        fix = "check the address" if security else "check the address; a TLS cluster needs the connection file `workbench serve` wrote"
        raise ClusterError(f"cannot reach the scheduler at {target}: {message}", fix) from None


def dashboard_url(running) -> str | None:
    """The dashboard's URL where it really listens (Dask's link names the scheduler's host instead)."""
    scheduler = getattr(running, "scheduler", None)
    server = getattr(scheduler, "http_server", None)
    sockets = getattr(server, "_sockets", None)
    if sockets:
        host, port = next(iter(sockets.values())).getsockname()[:2]
        if host in ("0.0.0.0", "::", ""):
            import socket

            host = socket.gethostname()
        return f"http://{host}:{port}/status"
    return getattr(running, "dashboard_link", None)


def cluster_summary(client) -> dict:
    """Workers, threads, memory, and the nodes (hostnames) of the cluster a client is connected to."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    hosts = worker_hosts(client)
    return {
        "workers": len(workers),
        "nodes": len(set(hosts.values())),
        "hosts": sorted(set(hosts.values())),
        "threads": sum(w["nthreads"] for w in workers),
        "memory_limit": sum(w.get("memory_limit") or 0 for w in workers),
        "dashboard": dashboard_url(client.cluster) if client.cluster is not None else client.dashboard_link,
        "scheduler": client.scheduler.address,
    }
