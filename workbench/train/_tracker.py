"""XGBoost's collective tracker in a child process of its own.

``xgboost.dask`` starts the tracker (rendezvous and error relay for the workers' allreduce) in
the scheduler's process, which for a LocalCluster or a dask-jobqueue cluster is the user's own
process. Once, when a worker was killed mid-training (the sweep's killed-worker test, in CI), that
process died with ``Fatal Python error: Aborted`` raised from a thread that was not a Python
thread, while the tracker's thread waited inside the C++ library: the C++ tracker is the likely
culprit, and with it the sweep and every other job in the process would die.
Here the tracker runs in a child process: a worker's death can end the tracker, never its parent,
and training then fails like any other lost-worker error (which ``train_xgboost`` retries).
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import tempfile

__all__ = ["start_tracker_in_child", "install"]

_CHILD = r"""
import json, sys
from xgboost.tracker import RabitTracker
n_workers, host, port, timeout = json.loads(sys.argv[1])
tracker = RabitTracker(n_workers=n_workers, host_ip=host, port=port, sortby="task", timeout=timeout)
tracker.start()
print(json.dumps(tracker.worker_args()), flush=True)
tracker.wait_for()
"""

_children: list[subprocess.Popen] = []


def start_tracker_in_child(n_workers: int, addr_from_dask, addr_from_user, timeout) -> dict:
    """What ``xgboost.dask._start_tracker`` returns (the workers' collective arguments), with the
    tracker in a child process; the user's address is tried first, then the scheduler's host."""
    from xgboost.core import XGBoostError

    _reap()
    candidates = [tuple(addr_from_user)] if addr_from_user else []
    candidates.append((addr_from_dask, 0))
    problem = "no address to bind"
    for host, port in candidates:
        args = json.dumps([int(n_workers), host, int(port), 0 if timeout is None else int(timeout)])
        # stderr to a file, not a pipe: a tracker that logs while nobody reads must not block
        with tempfile.TemporaryFile("w+") as errors:
            child = subprocess.Popen([sys.executable, "-c", _CHILD, args], stdout=subprocess.PIPE,
                                     stderr=errors, text=True)
            line = child.stdout.readline()
            if line:
                _children.append(child)
                return json.loads(line)
            child.wait()
            errors.seek(0)
            problem = (errors.read().strip().splitlines() or ["it exited"])[-1]
    raise XGBoostError(f"the XGBoost tracker could not start: {problem}")


def install() -> None:
    """Make ``xgboost.dask`` start its tracker with :func:`start_tracker_in_child`."""
    from xgboost import dask as dxgb

    dxgb._start_tracker = start_tracker_in_child


def _reap() -> None:
    _children[:] = [child for child in _children if child.poll() is None]


@atexit.register
def _stop_trackers() -> None:
    """Trackers of trainings that failed wait for workers that will not come: end them."""
    for child in _children:
        if child.poll() is None:
            child.kill()
            child.wait()
