"""What the command line shows while a command runs: rich progress bars and timed lines on stderr.

:class:`RichReporter` is the reporter ``main()`` installs with :func:`workbench.progress.showing`:
each ``progress.track`` / ``progress.task`` of the library becomes a bar (description, bar, M/N,
elapsed) while it runs, and one timed line when it ends. The bars are drawn only on a terminal and
vanish when their step ends; in a log there are no bars, only the lines. :func:`say` writes the
commands' own timed lines through the same console, so lines and bars never garble each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from dask.utils import format_time
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from .. import progress

__all__ = ["RichReporter", "console", "started", "say"]

_FALLBACK = Console(stderr=True)  # resolves sys.stderr at every write


class RichReporter:
    """Bars on ``console`` (stderr by default) for the tasks of one command started at ``started``."""

    def __init__(self, console: Console | None = None, started: float | None = None):
        self.console = console or Console(stderr=True)
        self.started = time.perf_counter() if started is None else started
        self._lock = threading.Lock()
        self._open = 0
        self._bars: Progress | None = None

    @property
    def drawing(self) -> bool:
        """Bars are drawn on a terminal only; a log gets the lines."""
        return self.console.is_terminal and not self.console.is_dumb_terminal

    def say(self, message: str) -> None:
        """One line, prefixed with the seconds since the command started."""
        _timed_line(self.console, self.started, message)

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[_Task]:
        bars = self._enter()
        handle = _Task(bars, bars.add_task(description, total=total))
        began = time.perf_counter()
        try:
            yield handle
        finally:
            bars.remove_task(handle.id)
            self._leave()
        self.say(f"{description}: {_count(handle.done, total)} in {format_time(time.perf_counter() - began)}")

    def _enter(self) -> Progress:
        with self._lock:
            if self._open == 0:
                self._bars = Progress(
                    TextColumn("{task.description}", markup=False),  # "[1/3]" is text, not markup
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=self.console,
                    transient=True,
                    redirect_stdout=False,  # a command's output stays on stdout, even under a bar
                    disable=not self.drawing,
                )
                self._bars.start()
            self._open += 1
            return self._bars

    def _leave(self) -> None:
        with self._lock:
            self._open -= 1
            if self._open == 0:
                self._bars.stop()
                self._bars = None


class _Task:
    def __init__(self, bars: Progress, id):
        self.bars, self.id, self.done = bars, id, 0.0

    def advance(self, amount: float = 1) -> None:
        self.done += amount
        self.bars.advance(self.id, amount)


def _count(done: float, total: float | None) -> str:
    def number(x: float) -> str:
        return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"

    return f"{number(done)}/{number(total)}" if total is not None else number(done)


def console() -> Console:
    """The console of the command running now (a plain stderr console outside a command)."""
    reporter = progress.current()
    return reporter.console if isinstance(reporter, RichReporter) else _FALLBACK


def started() -> float:
    """When the command running now started (now, outside a command)."""
    reporter = progress.current()
    return reporter.started if isinstance(reporter, RichReporter) else time.perf_counter()


def say(message: str, since: float) -> None:
    """A line on stderr through the running command's console: ``[   1.2s] message``."""
    _timed_line(console(), since, message)


def _timed_line(console: Console, started: float, message: str) -> None:
    console.out(f"[{time.perf_counter() - started:7.1f}s] {message}", highlight=False)
