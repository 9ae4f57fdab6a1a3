"""How long steps report progress, without knowing who shows it.

Library code wraps a long loop in :func:`track` (``for cell in track(cells, "sweep")``) or reports
a step of known size with :func:`task`; by default nothing is shown. The command line installs a
``rich`` display with :func:`showing` for the length of a command, so every long step of every
command shows one progress bar the same way, and a script that calls the Python API stays quiet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol, TypeVar

__all__ = ["Reporter", "track", "task", "showing", "current"]

T = TypeVar("T")


class Task(Protocol):
    def advance(self, amount: float = 1) -> None: ...


class Reporter(Protocol):
    """What :func:`showing` installs: opens a task of ``total`` steps (None: unknown)."""

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]: ...


class _Silent:
    class _Task:
        def advance(self, amount: float = 1) -> None:
            pass

    @contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Task]:
        yield self._Task()


_SILENT = _Silent()
_current: ContextVar[Reporter] = ContextVar("workbench_progress", default=_SILENT)


def current() -> Reporter:
    return _current.get()


@contextmanager
def showing(reporter: Reporter) -> Iterator[Reporter]:
    """Show every :func:`track` and :func:`task` inside the block through ``reporter``."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


@contextmanager
def task(description: str, total: float | None = None) -> Iterator[Task]:
    """A step of ``total`` units; call ``.advance(n)`` as units complete."""
    with _current.get().task(description, total) as handle:
        yield handle


def track(items: Iterable[T], description: str, total: float | None = None) -> Iterator[T]:
    """Iterate over ``items``, advancing one step per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(description, total) as handle:
        for item in items:
            yield item
            handle.advance()
