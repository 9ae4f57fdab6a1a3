"""Errors a user can fix.

Every error the workbench raises for bad input is a :class:`WorkbenchError`: its message is one
line that names the problem and what to do about it. The CLI prints it without a traceback and
exits with status 2.
"""

from __future__ import annotations


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


class WorkbenchWarning(UserWarning):
    """Something the user should know that does not stop the work (shown as one line by the CLI)."""
