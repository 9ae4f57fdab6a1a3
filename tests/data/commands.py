"""Running the real ``workbench`` command in the data tests: in a subprocess, or in this process."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager

from workbench.cli import main


def workbench(*args, timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
    """``workbench ARGS`` in a subprocess, as a user types it; output captured as text."""
    return subprocess.run(["workbench", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kwargs)


def workbench_here(capsys, *args) -> tuple[int, str, str]:
    """``workbench ARGS`` through :func:`workbench.cli.main` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def the_error_line(code: int, stderr: str) -> str:
    """The one line a bad input gets (exit status 2, no traceback)."""
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


class Recorder:
    """A :mod:`workbench.progress` reporter that keeps ``[description, total, done]`` of every task."""

    def __init__(self):
        self.tasks: list[list] = []

    @contextmanager
    def task(self, description: str, total: float | None = None):
        entry = [description, total, 0]
        self.tasks.append(entry)

        class Task:
            def advance(self, amount: float = 1) -> None:
                entry[2] += amount

        yield Task()

    def find(self, prefix: str) -> list:
        matching = [entry for entry in self.tasks if entry[0].startswith(prefix)]
        assert len(matching) == 1, self.tasks
        return matching[0]
