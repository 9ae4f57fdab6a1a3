"""Cluster profiles: one validated model per cluster kind, keyed by the cluster class's own keywords.

``local`` takes ``distributed.LocalCluster``'s keywords. ``slurm``, ``pbs``, ``sge`` and ``lsf`` take
dask-jobqueue's keywords for ``SLURMCluster``, ``PBSCluster``, ``SGECluster`` and ``LSFCluster``;
keys a profile leaves unset fall back first to ``workbench.cluster.<type>`` and then to
dask-jobqueue's own ``jobqueue.<type>`` section of the Dask configuration, exactly as
dask-jobqueue does on its own.

``CLUSTER_TYPES`` is the registry of cluster types (the profile's ``type:``): code outside the
package registers its own profile class (e.g. a ``JobqueueProfile`` subclass for another
dask-jobqueue cluster class) and profiles accept the new type like a built-in one.
"""

from __future__ import annotations

import os
import subprocess
from typing import Annotated, Any, ClassVar, Literal

import dask.config
from pydantic import Field, model_validator

from ..config import StrictModel
from ..registry import Registry

__all__ = [
    "Profile",
    "LocalProfile",
    "JobqueueProfile",
    "SLURMProfile",
    "PBSProfile",
    "SGEProfile",
    "LSFProfile",
    "CLUSTER_TYPES",
]

_PositiveInt = Annotated[int, Field(ge=1)]


def _defaults(kind: str) -> dict[str, Any]:
    section = dask.config.get(f"workbench.cluster.{kind}", default={}) or {}
    return {k.replace("-", "_"): v for k, v in section.items()}


class LocalProfile(StrictModel):
    """A ``distributed.LocalCluster`` on this machine; keys are its keyword arguments."""

    type: Literal["local"] = "local"
    n_workers: _PositiveInt | None = None
    threads_per_worker: _PositiveInt | None = None
    memory_limit: str | float | int | None = None
    processes: bool | None = None
    host: str | None = None
    dashboard_address: str | None = None
    local_directory: str | None = None
    env: dict[str, str] | None = None

    @property
    def is_jobqueue(self) -> bool:
        return False

    def cluster_kwargs(self, workers: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``LocalCluster``: this profile over ``workbench.cluster.local``.

        Without an explicit ``threads_per_worker`` the machine's cores are shared between the
        workers, also when ``workers`` overrides the profile's count.
        """
        merged = _defaults("local")
        merged.update({k: v for k, v in self.model_dump(exclude={"type"}).items() if v is not None})
        if workers is not None:
            merged["n_workers"] = workers
        if merged.get("threads_per_worker") is None:
            merged["threads_per_worker"] = max(1, (os.cpu_count() or 1) // max(1, merged.get("n_workers", 1)))
        # Dask starts workers with OMP_NUM_THREADS=1, which makes XGBoost on 2 threads about 1.8x
        # slower (measured, 1M rows x 30 features). XGBoost is the OpenMP user here and sizes its
        # pool from the worker's threads, so OpenMP gets exactly those.
        merged["env"] = {"OMP_NUM_THREADS": str(merged["threads_per_worker"]), **(merged.get("env") or {})}
        if merged.get("processes") is False and merged.get("host") and "protocol" not in merged:
            # Threads in this process talk over Dask's in-process transport, which has no host to bind:
            # with a host (127.0.0.1 by default here) the scheduler listens on TCP there instead.
            merged["protocol"] = "tcp://"
        return {k: v for k, v in merged.items() if v is not None}


class JobqueueProfile(StrictModel):
    """Workers as batch jobs through dask-jobqueue. Keys are the cluster class's keyword arguments.

    Four keys are the workbench's own: ``n_workers`` (worker processes to start, ``--workers``
    overrides it), ``wait_timeout`` (how long to wait for them), ``env`` (exported in every job
    script) and ``workers_per_node``: set, each job takes one whole node (``whole_node``, e.g.
    SLURM's ``--exclusive``) and runs that many worker processes, so ``n`` workers are spread over
    ``n / workers_per_node`` distinct nodes. ``worker_lifetime`` and ``worker_lifetime_stagger`` become the worker's
    ``--lifetime``/``--lifetime-stagger`` arguments: a worker retires gracefully (its data moved to
    the others) before the walltime kills its job, and ``replace_lost_workers`` submits a fresh job.
    ``processes`` left unset everywhere means one worker process per job with every core as a
    thread (dask-jobqueue's own default would split the cores between several processes).
    """

    cluster_class: ClassVar[str]
    type: str
    n_workers: _PositiveInt | None = None
    wait_timeout: str | int | None = None
    # dask-jobqueue's job keywords
    cores: _PositiveInt | None = None
    memory: str | None = None
    processes: _PositiveInt | None = None
    queue: str | None = None
    walltime: str | None = None
    job_name: str | None = None
    interface: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    shared_temp_directory: str | None = None
    job_extra_directives: list[str] | None = None
    job_directives_skip: list[str] | None = None
    job_script_prologue: list[str] | None = None
    worker_extra_args: list[str] | None = None
    worker_lifetime: str | None = None
    worker_lifetime_stagger: str | None = None
    death_timeout: int | float | None = None
    python: str | None = None
    shebang: str | None = None
    nanny: bool | None = None
    scheduler_options: dict[str, Any] | None = None
    security: bool | None = None
    replace_lost_workers: bool | None = None
    env: dict[str, str] | None = None
    workers_per_node: _PositiveInt | None = None

    _OWN: ClassVar[set[str]] = {
        "type", "n_workers", "wait_timeout", "env", "worker_lifetime", "worker_lifetime_stagger", "replace_lost_workers",
        "workers_per_node",
    }

    #: The job directives that give a job a node of its own (``workers_per_node``).
    whole_node: ClassVar[list[str]] = []

    def whole_node_directives(self, kwargs: dict) -> list[str]:
        return list(self.whole_node)

    @model_validator(mode="after")
    def _one_job_per_node(self):
        if self.workers_per_node is not None and self.processes is not None and self.processes != self.workers_per_node:
            raise ValueError(f"processes {self.processes} and workers_per_node {self.workers_per_node} disagree: "
                             "with workers_per_node each job is one node running that many worker processes; "
                             "drop processes")
        return self

    @property
    def is_jobqueue(self) -> bool:
        return True

    #: Whether the status command is asked every few seconds while waiting (it lists ended jobs as
    #: gone, so a wait for jobs that died ends at once); otherwise only when the wait times out.
    watch_jobs: ClassVar[bool] = False

    @staticmethod
    def status_command(ids: list[str]) -> list[str] | None:
        """The batch system's command listing jobs ``ids`` with their state (shown while waiting)."""
        return None

    def nodes_available(self) -> int | None:
        """How many nodes the profile's queue has, as the batch system says (None: it cannot be asked)."""
        return None

    def settings(self, workers: int | None = None) -> dict[str, Any]:
        """This profile over ``workbench.cluster.<type>``: every key the workbench decides itself."""
        merged = _defaults(self.type)
        merged.update({k: v for k, v in self.model_dump().items() if v is not None})
        if workers is not None:
            merged["n_workers"] = workers
        merged.setdefault("n_workers", 1)
        return merged

    def cluster_kwargs(self, workers: int | None = None) -> dict[str, Any]:
        """Keyword arguments for the dask-jobqueue cluster class (keys left unset are omitted, so
        dask-jobqueue reads them from ``jobqueue.<type>``; ``processes`` is always resolved)."""
        merged = self.settings(workers)
        kwargs = {k: v for k, v in merged.items() if k not in self._OWN and v is not None}
        kwargs["scheduler_options"] = {"dashboard_address": "127.0.0.1:0", **(kwargs.get("scheduler_options") or {})}
        # Always passed, so that the cluster's worker spec groups a job's worker processes (dask-jobqueue
        # only does that for a `processes` it is given, not one it reads from its config).
        kwargs["processes"] = int(merged.get("workers_per_node") or kwargs.get("processes")
                                  or dask.config.get(f"jobqueue.{self.type}.processes", None) or 1)
        whole_node = self.whole_node_directives(kwargs) if merged.get("workers_per_node") else []
        if whole_node:
            directives = list(kwargs.get("job_extra_directives")
                              or dask.config.get(f"jobqueue.{self.type}.job-extra-directives", []) or [])
            kwargs["job_extra_directives"] = directives + [d for d in whole_node if d not in directives]
        if kwargs.pop("security", True):
            kwargs["security"] = True
            kwargs["shared_temp_directory"] = os.path.expanduser(
                kwargs.get("shared_temp_directory") or "~/.cache/workbench/jobqueue"
            )
        extra = list(kwargs.get("worker_extra_args") or dask.config.get(f"jobqueue.{self.type}.worker-extra-args", []))
        if merged.get("worker_lifetime"):
            extra += ["--lifetime", str(merged["worker_lifetime"])]
            if merged.get("worker_lifetime_stagger"):
                extra += ["--lifetime-stagger", str(merged["worker_lifetime_stagger"])]
        if extra:
            kwargs["worker_extra_args"] = extra
        threads = self._threads_per_worker(kwargs)
        env = {**({"OMP_NUM_THREADS": str(threads)} if threads else {}), **(merged.get("env") or {})}
        if env:
            prologue = list(kwargs.get("job_script_prologue")
                            or dask.config.get(f"jobqueue.{self.type}.job-script-prologue", []) or [])
            kwargs["job_script_prologue"] = prologue + [f"export {k}={_shell_quote(v)}" for k, v in env.items()]
        return kwargs

    def _threads_per_worker(self, kwargs: dict) -> int | None:
        cores = kwargs.get("cores") or dask.config.get(f"jobqueue.{self.type}.cores", None)
        return max(1, int(cores) // kwargs["processes"]) if cores else None


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(str(value))


class SLURMProfile(JobqueueProfile):
    """``dask_jobqueue.SLURMCluster``: ``queue`` is the partition; ``account`` is ``sbatch -A``."""

    cluster_class: ClassVar[str] = "dask_jobqueue.SLURMCluster"
    type: Literal["slurm"] = "slurm"
    account: str | None = None
    job_cpu: _PositiveInt | None = None
    job_mem: str | None = None
    watch_jobs: ClassVar[bool] = True
    whole_node: ClassVar[list[str]] = ["--exclusive"]

    @staticmethod
    def status_command(ids: list[str]) -> list[str]:
        return ["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %R"]

    def nodes_available(self) -> int | None:
        queue = self.settings().get("queue") or dask.config.get("jobqueue.slurm.queue", None)
        command = ["sinfo", "-h", "-N", "-o", "%N"] + (["-p", str(queue)] if queue else [])
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode != 0:
            return None
        return len({line.strip() for line in out.stdout.splitlines() if line.strip()})


class PBSProfile(JobqueueProfile):
    """``dask_jobqueue.PBSCluster``: ``resource_spec`` is the ``#PBS -l`` line (``select=1:ncpus=…``)."""

    cluster_class: ClassVar[str] = "dask_jobqueue.PBSCluster"
    type: Literal["pbs"] = "pbs"
    account: str | None = None
    resource_spec: str | None = None
    whole_node: ClassVar[list[str]] = ["-l place=excl"]

    def whole_node_directives(self, kwargs: dict) -> list[str]:
        # PBS Pro's `place=excl`; Torque does not know it: there `resource_spec: nodes=1:ppn=<the
        # node's cores>` takes the whole node.
        spec = str(kwargs.get("resource_spec") or dask.config.get("jobqueue.pbs.resource-spec", None) or "")
        return [] if spec.startswith("nodes=") else list(self.whole_node)

    @staticmethod
    def status_command(ids: list[str]) -> list[str]:
        return ["qstat", *ids]


class SGEProfile(JobqueueProfile):
    """``dask_jobqueue.SGECluster`` (Son of / Univa Grid Engine)."""

    cluster_class: ClassVar[str] = "dask_jobqueue.SGECluster"
    type: Literal["sge"] = "sge"
    project: str | None = None
    resource_spec: str | None = None
    whole_node: ClassVar[list[str]] = ["-l exclusive=true"]

    @staticmethod
    def status_command(ids: list[str]) -> list[str]:
        return ["qstat"]


class LSFProfile(JobqueueProfile):
    """``dask_jobqueue.LSFCluster`` (IBM Spectrum LSF)."""

    cluster_class: ClassVar[str] = "dask_jobqueue.LSFCluster"
    type: Literal["lsf"] = "lsf"
    project: str | None = None
    ncpus: _PositiveInt | None = None
    mem: int | None = None
    lsf_units: str | None = None
    use_stdin: bool | None = None
    whole_node: ClassVar[list[str]] = ["-x"]

    @staticmethod
    def status_command(ids: list[str]) -> list[str]:
        return ["bjobs", "-w", *ids]


Profile = LocalProfile | JobqueueProfile

CLUSTER_TYPES: Registry[type[LocalProfile] | type[JobqueueProfile]] = Registry(
    "cluster type", docs="docs/clusters/README.md")
for _profile in (LocalProfile, SLURMProfile, PBSProfile, SGEProfile, LSFProfile):
    CLUSTER_TYPES.register(_profile.model_fields["type"].default, _profile)
del _profile
