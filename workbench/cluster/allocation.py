"""One allocation (``type: slurm-allocation``): the scheduler, the client and the workers all in one
SLURM job, for sites where nothing long-running may stay on a login node.

:func:`job_script` renders the ``sbatch`` script: it asks for ``nodes`` nodes, and one ``srun``
step runs the same workbench command in every task. Each task then takes its part through
dask-jobqueue's ``SLURMRunner`` (:func:`start`, called by ``make_cluster``): rank 0 runs the
scheduler, rank 1 goes on as the client and runs the command, ranks 2 and up are the workers,
``workers_per_node`` on each node. The scheduler writes its address to a scheduler file on the
shared file system (under ``log_directory``, never /tmp: each node has its own), where the client
and the workers read it. The first node also takes the scheduler and the client.

An allocation cannot grow. A smaller worker count (``--workers``, a sweep's workers axis) retires
the surplus workers (highest ranks first, so whole nodes go last-first) and they do not come back:
a sweep runs its worker counts from largest to smallest (:func:`largest_first`).
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import dask.config
from dask.utils import parse_bytes, parse_timedelta
from pydantic import Field

from ..config import StrictModel
from ..errors import ClusterError, ConfigError
from .profiles import CLUSTER_TYPES

__all__ = [
    "AllocationProfile",
    "TYPE",
    "job_script",
    "job_command",
    "describe",
    "check_inside_job",
    "take_part",
    "start",
    "allocation_size",
    "largest_first",
    "check_submit_directory",
    "submit",
    "wait_for_job",
    "JobEnd",
]

TYPE = "slurm-allocation"
HEAD_RANKS = 2  # rank 0 the scheduler, rank 1 the client
PRIVATE_PATHS = ("/tmp", "/dev/shm")  # node-local on a cluster: a scheduler file there is seen by one node only

_PositiveInt = Annotated[int, Field(ge=1)]


class AllocationProfile(StrictModel):
    """One SLURM job with ``nodes`` nodes running the scheduler, the client and the workers.

    ``memory`` and ``cores`` are per worker (its Dask memory limit and threads); the job asks for
    ``workers_per_node × memory`` per node. ``command`` is the workbench command the job runs when
    none is given on the command line. Unset keys fall back to ``workbench.cluster.slurm-allocation``.
    """

    type: Literal["slurm-allocation"] = TYPE
    nodes: _PositiveInt | None = None
    workers_per_node: _PositiveInt | None = None
    cores: _PositiveInt | None = None
    memory: str | None = None
    queue: str | None = None
    account: str | None = None
    walltime: str | None = None
    job_name: str | None = None
    interface: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None
    scheduler_file: str | None = None
    job_extra_directives: list[str] | None = None
    job_script_prologue: list[str] | None = None
    python: str | None = None
    nanny: bool | None = None
    death_timeout: int | float | None = None
    scheduler_options: dict[str, Any] | None = None
    wait_timeout: str | int | None = None
    env: dict[str, str] | None = None
    command: str | list[str] | None = None

    _DEFAULTS: ClassVar[dict[str, Any]] = {
        "nodes": 2, "workers_per_node": 1, "cores": 1, "memory": "2GB", "job_name": "workbench",
        "log_directory": "logs/slurm", "scheduler_file": "{job_name}-{job_id}.{step_id}.scheduler.json",
        "nanny": True, "death_timeout": 60, "wait_timeout": "300s",
    }

    @property
    def is_jobqueue(self) -> bool:
        return False

    def settings(self, workers: int | None = None) -> dict[str, Any]:
        """This profile over ``workbench.cluster.slurm-allocation`` over the built-in defaults."""
        section = dask.config.get(f"workbench.cluster.{TYPE}", default={}) or {}
        merged = {**self._DEFAULTS, **{k.replace("-", "_"): v for k, v in section.items()}}
        merged.update({k: v for k, v in self.model_dump().items() if v is not None})
        try:
            merged["memory_bytes"] = parse_bytes(str(merged["memory"]))
        except ValueError:
            raise ConfigError(f"memory {merged['memory']!r} is not an amount of memory",
                              "write it like 2GB or 1500MB") from None
        return merged

    @property
    def size(self) -> int:
        """The workers the profile's job has: ``nodes × workers_per_node``."""
        settings = self.settings()
        return int(settings["nodes"]) * int(settings["workers_per_node"])


CLUSTER_TYPES.register(TYPE, AllocationProfile)


# ---------------------------------------------------------------- the job script


def job_command(profile: AllocationProfile, command: list[str] | None, source: str | None) -> list[str]:
    """The workbench command's arguments as every task runs them: ``command`` (else the profile's
    ``command:``), without a leading ``workbench``, naming the profile with ``--cluster``."""
    if not command:
        configured = profile.settings().get("command")
        command = shlex.split(configured) if isinstance(configured, str) else list(configured or [])
    if command and command[0] == "workbench":
        command = command[1:]
    if not command:
        raise ConfigError("the job has no workbench command to run",
                          "give it after `--` (workbench cluster script PROFILE -- run pipelines/quickstart.yaml) "
                          "or set command: in the profile")
    if any(arg == "--connect" or arg.startswith("--connect=") for arg in command):
        raise ConfigError("the job's command has --connect, but inside the allocation its cluster is the allocation",
                          "drop --connect")
    named = _option_value(command, ("--cluster", "-c"))
    if named is None:
        if source is None:
            raise ConfigError("the job's command does not name its cluster profile",
                              "add --cluster PROFILE (a slurm-allocation profile file) to the command")
        return [*command, "--cluster", source]
    from . import load_profile

    if load_profile(named).type != TYPE:
        raise ConfigError(f"the job's command runs on --cluster {named}, which is not a {TYPE} profile",
                          f"inside the allocation the command's --cluster must be a {TYPE} profile (or leave it out)")
    return command


def _option_value(args: list[str], names: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        if arg in names and i + 1 < len(args):
            return args[i + 1]
        for name in names:
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1]
    return None


def job_script(profile: AllocationProfile, command: list[str], *, nodes: int | None = None,
               workdir: str | os.PathLike | None = None) -> str:
    """The ``sbatch`` script of one allocation running ``command`` (see :func:`job_command`).

    ``nodes`` overrides the profile's; ``workdir`` (default: the current directory) is where the job
    runs, so the command's relative paths, the run store and the logs are where they would be here.
    """
    s = profile.settings()
    nodes = int(nodes or s["nodes"])
    per_node = int(s["workers_per_node"])
    workdir = Path(workdir or os.getcwd()).absolute()
    logs = Path(s["log_directory"])
    mem_per_node = math.ceil(per_node * s["memory_bytes"] / 2**20)
    directives = [
        f"-J {s['job_name']}",
        *([f"-p {s['queue']}"] if s.get("queue") else []),
        *([f"-A {s['account']}"] if s.get("account") else []),
        f"-N {nodes}",
        f"--ntasks-per-node={per_node}",
        f"--cpus-per-task={s['cores']}",
        f"--mem={mem_per_node}M",
        *([f"-t {s['walltime']}"] if s.get("walltime") else []),
        f"-D {workdir}",
        f"-o {logs / (s['job_name'] + '-%j.out')}",
        f"-e {logs / (s['job_name'] + '-%j.err')}",
        *(s.get("job_extra_directives") or []),
    ]
    env = {"OMP_NUM_THREADS": str(s["cores"]), **(s.get("env") or {})}
    python = s.get("python") or sys.executable
    run = " ".join([shlex.quote(python), "-m", "workbench", *map(shlex.quote, command)])
    lines = [
        "#!/usr/bin/env bash",
        *(f"#SBATCH {d}" for d in directives),
        f"# {TYPE}: {nodes} node(s) with {per_node} worker(s) each, {s['cores']} thread(s) and {s['memory']} per worker.",
        f"# The command's output is in {logs}/ (`workbench cluster submit` creates it; before a plain sbatch, mkdir it).",
        *(s.get("job_script_prologue") or []),
        *(f"export {k}={shlex.quote(str(v))}" for k, v in env.items()),
        "",
        "# One srun step, every task running the same command: rank 0 becomes the Dask scheduler, rank 1",
        f"# the client (the command itself), ranks 2.. the workers, {per_node} per node. The first node also",
        "# takes the scheduler and the client (--overcommit), in the order this host file gives.",
        'nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST")',
        "first=${nodes%%$'\\n'*}",
        "SLURM_HOSTFILE=$(mktemp)",
        "export SLURM_HOSTFILE",
        "trap 'rm -f \"$SLURM_HOSTFILE\"' EXIT",
        (f'{{ echo "$first"; echo "$first"; for node in $nodes; do for _ in $(seq {per_node}); do echo "$node"; done; done; }}'
         ' > "$SLURM_HOSTFILE"'),
        "unset SLURM_NTASKS_PER_NODE",
        'srun --distribution=arbitrary --overcommit --kill-on-bad-exit=1 --ntasks="$(wc -l < "$SLURM_HOSTFILE")" \\',
        f"  {run}",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- inside the job: one task's part


def allocation_size(profile: AllocationProfile) -> tuple[int, str]:
    """The workers of the allocation and how that number came about: inside the job's ``srun``
    step, its tasks less the scheduler and the client; elsewhere, the profile's nodes × workers per node."""
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS") if os.environ.get("SLURM_STEP_ID") is not None else None
    if tasks and tasks.isdigit() and int(tasks) > HEAD_RANKS:
        nodes = os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_JOB_NUM_NODES") or "?"
        return int(tasks) - HEAD_RANKS, f"{tasks} tasks on {nodes} node(s), less the scheduler and the client"
    s = profile.settings()
    return profile.size, f"{s['nodes']} node(s) with {s['workers_per_node']} worker(s) each"


def check_workers(profile: AllocationProfile, workers: int | None) -> None:
    """Refuse, in one line, more workers than the allocation has: it cannot grow."""
    size, why = allocation_size(profile)
    if workers is not None and workers > size:
        raise ClusterError(
            f"{workers} workers asked for, but the allocation has {size} ({why}) and cannot grow",
            f"ask for at most {size} workers, or submit with more nodes (workbench cluster submit --nodes N, "
            "or nodes: in the profile)",
        )


def describe(profile: AllocationProfile, workers: int | None = None) -> dict:
    """What the job would run, without anything started (``workbench cluster show``)."""
    check_workers(profile, workers)
    s = profile.settings()
    size, why = allocation_size(profile)
    keys = ("nodes", "workers_per_node", "queue", "account", "walltime", "interface", "local_directory",
            "log_directory", "scheduler_file", "nanny", "wait_timeout", "command")
    return {"type": TYPE, **{k: s[k] for k in keys if s.get(k) is not None}, "workers": workers or size,
            "allocation": f"{size} worker(s): {why}", "threads_per_worker": s["cores"], "memory_limit": s["memory"]}


def start(profile: AllocationProfile, workers: int | None = None):
    """This task's part of the allocation. The scheduler's and the workers' tasks serve until the
    client closes the cluster and then exit; the client's task gets the running cluster back, with
    every worker of the allocation connected and the surplus over ``workers`` retired."""
    global _STARTED
    check_inside_job()
    check_workers(profile, workers)
    if _STARTED:
        raise ClusterError("this job's allocation already ran its cluster, and its scheduler and workers ended with it",
                           "run one cluster per job: drop cluster.* sweep axes, or submit one job per profile")
    _STARTED = True
    s = profile.settings()
    scheduler_file = _scheduler_file(s)
    size, _ = allocation_size(profile)
    scheduler_options = {"dashboard_address": ":0", **(s.get("scheduler_options") or {})}
    worker_options: dict[str, Any] = {"nthreads": int(s["cores"]), "memory_limit": int(s["memory_bytes"]),
                                      "death_timeout": s.get("death_timeout")}
    if s.get("interface"):
        scheduler_options["interface"] = worker_options["interface"] = s["interface"]
    if s.get("local_directory"):
        worker_options["local_directory"] = os.path.expanduser(s["local_directory"])
    runner_class = _runner_class()
    if os.environ.get("SLURM_PROCID") != "1":
        # dask-jobqueue ends the scheduler's and the workers' tasks with SIGINT once they have served
        # (the client closed the cluster): that is their normal end, exit status 0.
        signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    try:
        running = runner_class(scheduler_file=str(scheduler_file), scheduler_options=scheduler_options,
                               worker_options={k: v for k, v in worker_options.items() if v is not None},
                               worker_class="distributed.Nanny" if s.get("nanny", True) else None)
    except (OSError, ValueError, TypeError) as exc:  # e.g. an interface this node does not have
        raise ClusterError(f"rank {os.environ.get('SLURM_PROCID')} of the allocation could not start its part: "
                           f"{' '.join(str(exc).split())[:200]}", "check the profile's interface and scheduler_options"
                           ) from None
    if running.role.value != "client":  # dask-jobqueue ends these tasks itself; this is only a safeguard
        raise SystemExit(0)
    from .scaling import scale, wait_for_workers

    try:
        wait_for_workers(running, size, s.get("wait_timeout"))
        scale(running, workers or size, timeout=s.get("wait_timeout"))
        return running
    except BaseException:
        running.close()
        raise


def take_part(profile: AllocationProfile) -> None:
    """For a command that records something before it starts its cluster (a sweep): outside the job,
    the one-line refusal; in the scheduler's and the workers' tasks, their part, where they end; in
    the client's task nothing (its cluster starts with ``make_cluster``)."""
    check_inside_job()
    if os.environ.get("SLURM_PROCID") != "1":
        start(profile)


def check_inside_job() -> None:
    """Refuse, in one line that says how to submit it, a process that is not a task of the job's srun step."""
    if not os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_PROCID") is None:
        raise ClusterError(
            f"a {TYPE} profile runs inside its own SLURM job, and this is not one (no SLURM_JOB_ID/SLURM_PROCID)",
            f"submit it: {_submit_hint()}",
        )
    if os.environ.get("SLURM_STEP_ID") is None:
        raise ClusterError(
            f"a {TYPE} profile runs in every task of an srun step, and this is job {os.environ['SLURM_JOB_ID']}'s "
            "batch script itself", f"start the command as the script of `workbench cluster script` does (srun …), "
            f"or submit it: {_submit_hint()}")
    tasks = os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or "0"
    if not tasks.isdigit() or int(tasks) <= HEAD_RANKS:
        raise ClusterError(
            f"this srun step has {tasks} task(s), and one allocation needs at least 3 "
            "(the scheduler, the client and a worker)",
            "run the script `workbench cluster script` writes, which starts nodes × workers_per_node + 2 tasks")


def _submit_hint() -> str:
    """``workbench cluster submit PROFILE -- <this command>`` when this process is the workbench command."""
    argv = sys.argv
    name = Path(argv[0]).name if argv else ""
    if name == "workbench" or (name == "__main__.py" and Path(argv[0]).parent.name == "workbench"):
        args = [a for a in argv[1:] if a != "--debug"]
        profile = _option_value(args, ("--cluster", "-c")) or "PROFILE"
        return f"workbench cluster submit {shlex.quote(profile)} -- {shlex.join(args)}"
    return "workbench cluster submit PROFILE -- run PIPELINE"


def _scheduler_file(settings: dict) -> Path:
    try:
        name = str(settings["scheduler_file"]).format(
            job_name=settings["job_name"], job_id=os.environ.get("SLURM_JOB_ID", "0"),
            step_id=os.environ.get("SLURM_STEP_ID", "0"))
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"scheduler_file {settings['scheduler_file']!r} names a field it cannot have",
                          "use only {job_name}, {job_id} and {step_id} in it") from None
    path = Path(os.path.expanduser(name))
    if not path.is_absolute():
        path = Path(os.path.expanduser(settings["log_directory"])) / path
    path = path.absolute()
    if any(str(path) == p or str(path).startswith(p + "/") for p in PRIVATE_PATHS):
        raise ConfigError(f"the scheduler file {path} is on a path each node has its own copy of",
                          "set scheduler_file or log_directory to a directory every node sees (the submission directory)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


_RUNNER = None
_STARTED = False  # this process has taken its part of the allocation (a job runs one cluster)


def _runner_class():
    """dask-jobqueue's ``SLURMRunner`` with what the workbench asks of a cluster: ``scale`` (which
    retires workers, and refuses to grow), ``wait_for_workers``, ``scheduler_info`` and the dashboard."""
    global _RUNNER
    if _RUNNER is not None:
        return _RUNNER
    import asyncio
    import json

    from dask_jobqueue.slurm import SLURMRunner

    class AllocationRunner(SLURMRunner):
        @property
        def scheduler_info(self) -> dict:
            return self.sync(self._identity)

        @property
        def dashboard_link(self) -> str | None:
            try:
                info = json.loads(Path(self.scheduler_file).read_text())
            except (OSError, ValueError):
                return None
            port = (info.get("services") or {}).get("dashboard")
            host = info["address"].split("://")[-1].rsplit(":", 1)[0]
            return f"http://{host}:{port}/status" if port else None

        def wait_for_workers(self, n: int, timeout: float | None = None) -> None:
            self.sync(self._wait_for_workers, n, timeout)

        def scale(self, n: int) -> None:
            self.sync(self._retire_to, n)

        def close(self) -> None:
            try:
                super().close()
            finally:
                Path(self.scheduler_file).unlink(missing_ok=True)

        async def _identity(self) -> dict:
            return await self.scheduler_comm.identity(n_workers=-1)

        async def _wait_for_workers(self, n: int, timeout: float | None) -> None:
            deadline = time.monotonic() + (parse_timedelta(timeout) if timeout is not None else math.inf)
            while len((await self._identity())["workers"]) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"fewer than {n} workers")
                await asyncio.sleep(0.2)

        async def _retire_to(self, n: int) -> None:
            connected = sorted((await self._identity())["workers"].values(), key=lambda w: _rank(w["name"]))
            if n > self.n_workers:
                raise ClusterError(f"{n} workers asked for, but the allocation has {self.n_workers} and cannot grow",
                                   f"ask for at most {self.n_workers} workers")
            if n > len(connected):
                raise ClusterError(
                    f"{n} workers asked for, but {len(connected)} of the allocation's {self.n_workers} are left: "
                    "retired workers do not come back",
                    "run worker counts from largest to smallest (e.g. --workers 4,2,1)")
            surplus = [w["name"] for w in connected[n:]]
            if surplus:
                await self.scheduler_comm.retire_workers(names=surplus, close_workers=True)

    _RUNNER = AllocationRunner
    return _RUNNER


def _rank(name) -> tuple:
    return (0, int(name)) if str(name).isdigit() else (1, str(name))


# ---------------------------------------------------------------- a sweep on an allocation


def largest_first(items: list, size: Callable[[Any], int | None]) -> list:
    """``items`` (a sweep's cells) in the order an allocation can run them: by worker count from
    largest to smallest, each count's items in their own order. Items without a count stay first."""
    return sorted(items, key=lambda item: -(size(item) or math.inf))


# ---------------------------------------------------------------- submitting from the login node


def check_submit_directory(directory: str | os.PathLike | None = None) -> Path:
    """The directory the job runs in, refused if the nodes cannot see it (their /tmp is their own)."""
    path = Path(directory or os.getcwd()).absolute()
    if any(str(path) == p or str(path).startswith(p + "/") for p in PRIVATE_PATHS):
        raise ClusterError(f"{path} is on a path each node has its own copy of, so the job could not run there",
                           "submit from a directory every node sees (your home or project directory)")
    return path


def submit(profile: AllocationProfile, script: str, *, workdir: Path) -> str:
    """Submit ``script`` with ``sbatch`` (its log directory created first) and return the job id."""
    (workdir / os.path.expanduser(profile.settings()["log_directory"])).mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, timeout=60,
                             cwd=workdir)
    except FileNotFoundError:
        raise ClusterError("sbatch is not here", "submit from a SLURM login node") from None
    except subprocess.TimeoutExpired:
        raise ClusterError("sbatch did not answer within 60s", "check the SLURM controller (sinfo)") from None
    if out.returncode != 0:
        words = " / ".join(dict.fromkeys(" ".join(line.split()) for line in out.stderr.splitlines() if line.strip()))
        raise ClusterError(f"sbatch refused the job: {words or 'no message'}",
                           "fix the profile (queue, account, nodes, memory, walltime) and check with "
                           "`workbench cluster script PROFILE -- COMMAND`")
    return out.stdout.strip().split(";")[0]


class JobEnd(dict):
    """How a job ended: ``state`` (COMPLETED, FAILED, ...), ``exit_code`` and its ``stdout``/``stderr`` files."""

    @property
    def ok(self) -> bool:
        return self.get("state") == "COMPLETED" and self.get("exit_code") == 0


def wait_for_job(job_id: str, *, say: Callable[[str], None] = lambda line: None, every: float = 2.0) -> JobEnd:
    """Wait until job ``job_id`` ends, saying each state it passes through; Ctrl-C cancels it."""
    last = None
    try:
        while True:
            info = _job_info(job_id)
            state = info.get("JobState")
            if state is None:
                return JobEnd(state="UNKNOWN", exit_code=None, stdout=None, stderr=None)
            reason = info.get("Reason")
            shown = (f"{state}" + (f" ({reason})" if reason and reason != "None" else "") if state == "PENDING"
                     else f"{state} on {info.get('NodeList')}")
            if shown != last:
                say(f"job {job_id}: {shown}")
                last = shown
            if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"):
                code = info.get("ExitCode", "").split(":")[0]
                return JobEnd(state=state, exit_code=int(code) if code.isdigit() else None,
                              stdout=info.get("StdOut"), stderr=info.get("StdErr"))
            time.sleep(every)
    except KeyboardInterrupt:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
        say(f"job {job_id}: cancelled")
        raise


def _job_info(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        return {}
    fields = {}
    for item in out.stdout.split():
        key, sep, value = item.partition("=")
        if sep:
            fields[key] = value
    return fields
