"""Preloaded by the worker processes of a local cluster: Ctrl-C is for the process that started them.

A terminal sends Ctrl-C (SIGINT) to its whole foreground process group, which holds a local
cluster's worker processes too. Each would die on its own with a Python traceback on the user's
screen while the command unwinds and closes the cluster; ignoring SIGINT leaves the close to the
command (workbench.cluster.make_cluster; issue 15).
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker) -> None:
    # Only a worker that is its own process: a worker in a thread of the user's process (processes=False)
    # must not take Ctrl-C away from that process.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
