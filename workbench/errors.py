"""Errors a user can fix.

Every error the workbench raises for bad input is a :class:`WorkbenchError`: its message is one
line that names the problem and what to do about it. The CLI prints it without a traceback and
exits with status 2.

A workbench error raised inside a task on a Dask worker reaches the client, which prints its one
line; the worker itself would also log it as "Compute Failed" with the task's traceback, on the
user's screen for a local cluster. Importing this module (as any task that can raise one does)
installs a filter on the worker's logger that drops those records, and only those.
"""

from __future__ import annotations

import logging
import os
import re


class WorkbenchError(Exception):
    """A problem with the user's input, described in one line with its fix."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}; {fix}" if fix else problem)


class ConfigError(WorkbenchError):
    """A pipeline file or cluster profile is malformed or names something that does not exist."""


class DataError(WorkbenchError):
    """The input data is missing, unreadable, or unfit for the requested task."""


class SamplingError(WorkbenchError):
    """A split or an under-sampling ratio cannot be satisfied by the data."""


class ClusterError(WorkbenchError):
    """The cluster could not be started, scaled or reached."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the file system saying it is full or over quota."""
    import errno

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left on device" in str(exc)):  # Arrow's, without errno
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def free_space(path) -> str:
    """The free space of the file system holding ``path`` (or its nearest existing parent), e.g. "12.30 kiB"."""
    import shutil
    from pathlib import Path

    from dask.utils import format_bytes

    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        return format_bytes(shutil.disk_usage(where).free)
    except OSError:
        return "an unknown amount"


class WorkbenchWarning(UserWarning):
    """Something the user should know that does not stop the work (shown as one line by the CLI)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LAST_FILE = re.compile(r'File "([^"]+)"')


def _subclasses(cls: type) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _subclasses(sub)
    return names


def is_expected_failure(record: logging.LogRecord) -> bool:
    """Whether ``record`` is a worker's "Compute Failed" log of a :class:`WorkbenchError` raised by
    workbench code (the client reports that error in its one line)."""
    if not str(record.msg).startswith("Compute Failed") or not isinstance(record.args, tuple) or len(record.args) < 5:
        return False
    exception_text, traceback_text = str(record.args[3]), str(record.args[4])
    raised_in = _LAST_FILE.findall(traceback_text)
    return (exception_text.split("(", 1)[0] in _subclasses(WorkbenchError)
            and bool(raised_in) and os.path.abspath(raised_in[-1]).startswith(_PACKAGE))


# A worker whose heartbeat meets a scheduler that is closing (the end of every local run, slow on a
# loaded machine) logs the comm's traceback; its first line says all there is to say.
_WITHOUT_TRACEBACK = ("Failed to communicate with scheduler during heartbeat",)


class _DropExpectedFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(_WITHOUT_TRACEBACK):
            record.exc_info, record.exc_text = None, None
            return True
        return not is_expected_failure(record)


_worker_log = logging.getLogger("distributed.worker")
if not any(isinstance(f, _DropExpectedFailures) for f in _worker_log.filters):
    _worker_log.addFilter(_DropExpectedFailures())


class _DropSyncCancelRace(logging.Filter):
    """distributed's ``sync`` cancels its future from a callback when the client is interrupted; if
    the signal came before the future existed, the callback raises NameError and tornado logs its
    traceback over the one ``interrupted`` line. The interrupt itself is handled: the log is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NameError) and "'future'" in str(exc))


_tornado_log = logging.getLogger("tornado.application")
if not any(isinstance(f, _DropSyncCancelRace) for f in _tornado_log.filters):
    _tornado_log.addFilter(_DropSyncCancelRace())
