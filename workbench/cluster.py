"""Cluster profiles → running Dask clusters.

A profile is a YAML file whose ``type`` names the cluster class and whose other keys are that
class's own keyword arguments (``LocalCluster`` now; dask-jobqueue's ``SLURMCluster`` and
``PBSCluster`` keywords for batch schedulers). Unset keys fall back to Dask's configuration
(``workbench.cluster.<type>``), exactly as dask-jobqueue falls back to ``jobqueue.<scheduler>``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask.config
from distributed import Client, LocalCluster

from .config import LocalProfile, load_yaml, validate
from .errors import ClusterError, ConfigError

__all__ = ["PROFILE_TYPES", "load_profile", "make_cluster", "cluster", "describe", "cluster_summary"]

PROFILE_TYPES = {"local": LocalProfile}
PROFILE_DIR = "clusters"


def load_profile(profile: str | os.PathLike | dict | LocalProfile | None = "local") -> LocalProfile:
    """Resolve a profile: a path, a name in ``./clusters/``, the built-in ``"local"``, or a mapping."""
    if isinstance(profile, LocalProfile):
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


def _validate(data, lines, source: str) -> LocalProfile:
    kind = data.get("type", "local") if isinstance(data, dict) else None
    if kind not in PROFILE_TYPES:
        line = lines.get(("type",))
        where = f"{source}:{line}" if line else source
        raise ConfigError(
            f"{where}: type: unknown cluster type {kind!r}",
            f"use one of: {', '.join(PROFILE_TYPES)}",
        )
    return validate(PROFILE_TYPES[kind], data, lines, source)


def make_cluster(profile=None, *, workers: int | None = None) -> LocalCluster:
    """Start the cluster a profile describes, with ``workers`` overriding its worker count."""
    kwargs = describe(profile, workers=workers)
    kwargs.pop("type")
    # Set before each worker process starts (the Nanny's `env` arrives too late for OpenMP).
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", default={}), **kwargs.pop("env", {})}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            return LocalCluster(**kwargs)
    except (OSError, ValueError, TypeError) as exc:
        raise ClusterError(f"the local cluster did not start: {exc}", "check the profile's values") from None


def describe(profile=None, *, workers: int | None = None) -> dict:
    """What :func:`make_cluster` would start, without starting it."""
    if workers is not None and workers < 1:
        raise ClusterError(f"--workers {workers} is not a positive number", "ask for 1 or more workers")
    profile = load_profile(profile)
    return {"type": profile.type, **profile.cluster_kwargs(workers)}


@contextmanager
def cluster(profile=None, *, workers: int | None = None, address: str | None = None) -> Iterator[Client]:
    """A client on a fresh cluster from ``profile`` (or on a running scheduler at ``address``).

    >>> with cluster("local", workers=2) as client:   # doctest: +SKIP
    ...     print(client.dashboard_link)
    """
    if address:
        try:
            client = Client(address, timeout="10s")
        except OSError as exc:
            raise ClusterError(f"cannot reach the scheduler at {address}: {exc}", "check the address") from None
        with client:
            yield client
        return
    with make_cluster(profile, workers=workers) as running, Client(running) as client:
        yield client


def cluster_summary(client: Client) -> dict:
    """Workers, threads and memory of the cluster a client is connected to."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return {
        "workers": len(workers),
        "threads": sum(w["nthreads"] for w in workers),
        "memory_limit": sum(w.get("memory_limit") or 0 for w in workers),
        "dashboard": client.dashboard_link,
        "scheduler": client.scheduler.address,
    }
