"""The rich reporter the command line installs for ``workbench.progress``: bars on a terminal, one
timed line per finished step everywhere, and the commands' own lines through the same console."""

from __future__ import annotations

import importlib
import io
import re
import signal
import warnings

import pytest
from rich.console import Console

from workbench import progress
from workbench.cli import main
from workbench.cli._app import echo_progress
from workbench.cli._progress import RichReporter
from workbench.errors import WorkbenchWarning

from .helpers import SAY_LINE


def reporter(*, terminal: bool) -> tuple[RichReporter, io.StringIO]:
    out = io.StringIO()
    return RichReporter(Console(file=out, force_terminal=terminal, width=100)), out


def test_in_a_log_there_are_no_bars_only_one_line_per_finished_step():
    shown, out = reporter(terminal=False)
    with progress.showing(shown):
        say = echo_progress()
        say("starting")
        for _ in progress.track(["a", "b", "c"], "read shards"):
            pass
        with progress.task("rows", total=None) as rows:
            rows.advance(1500)
            rows.advance(2500)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert len(lines) == 3, lines
    assert re.fullmatch(rf"{SAY_LINE}starting", lines[0]), lines
    assert re.fullmatch(rf"{SAY_LINE}read shards: 3/3 in \d+\.\d+ (us|ms|s)", lines[1]), lines
    assert re.fullmatch(rf"{SAY_LINE}rows: 4,000 in \d+\.\d+ (us|ms|s)", lines[2]), lines


def test_on_a_terminal_the_bar_is_drawn_then_erased_and_lines_print_whole_above_it():
    shown, out = reporter(terminal=True)
    with progress.showing(shown):
        say = echo_progress()
        for item in progress.track(range(3), "train [xgboost]"):
            say(f"item {item}")
    text = out.getvalue()
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)
    assert re.search(r"^train \[xgboost\] ━+ 0/3 0:00:00", plain, re.MULTILINE), plain  # description, bar, M/N, elapsed
    for item in range(3):  # each line starts on an erased row, never glued to a bar
        assert re.search(rf"\x1b\[2K{SAY_LINE}item {item}\n", text), text
    after_bars = text.rsplit("\x1b[?25h", 1)[1]  # the cursor comes back when the bars are gone
    assert re.fullmatch(rf"\r?{SAY_LINE}train \[xgboost\]: 3/3 in \S+ (us|ms|s)\n", after_bars), repr(after_bars)


def test_a_failed_step_prints_no_line_and_the_next_step_still_shows():
    shown, out = reporter(terminal=True)
    with progress.showing(shown):
        with pytest.raises(ValueError, match="boom"):
            for _ in progress.track(range(3), "doomed"):
                raise ValueError("boom")
        for _ in progress.track(range(2), "next"):
            pass
    text = out.getvalue()
    assert "doomed:" not in text
    assert re.search(rf"{SAY_LINE}next: 2/2 in ", text), text
    assert text.count("\x1b[?25l") == text.count("\x1b[?25h") == 2  # each display started and stopped


def test_nested_steps_each_end_with_their_own_line():
    shown, out = reporter(terminal=False)
    with progress.showing(shown):
        for _ in progress.track(range(2), "cells"):
            for _ in progress.track(range(4), "partitions"):
                pass
    lines = [re.sub(rf"^{SAY_LINE}| in \S+ \S+$", "", line) for line in out.getvalue().splitlines()]
    assert lines == ["partitions: 4/4", "partitions: 4/4", "cells: 2/2"]


def test_outside_a_command_progress_is_silent_and_lines_go_to_stderr(capsys):
    assert not isinstance(progress.current(), RichReporter)
    for _ in progress.track(range(3), "quiet"):
        pass
    echo_progress()("a line")
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(rf"{SAY_LINE}a line\n", err), err


def test_main_shows_every_step_of_a_command_and_its_warnings_on_stderr(monkeypatch, capsys):
    """``main`` installs the reporter around the command, and gives back what it changed."""
    clusters = importlib.import_module("workbench.cluster")  # the package (workbench.cluster is also a function)

    def describe(profile, workers=None):
        for _ in progress.track(range(4), "describing"):
            pass
        warnings.warn(WorkbenchWarning("the profile asks for more workers than cores"))
        warnings.warn(UserWarning("a library's own warning"))
        return {"type": profile}

    monkeypatch.setattr(clusters, "describe", describe)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    show_warning = warnings.showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["cluster", "show", "local"]) == 0
    out, err = capsys.readouterr()
    assert out == '{\n  "type": "local"\n}\n'
    lines = err.splitlines()
    assert re.fullmatch(rf"{SAY_LINE}describing: 4/4 in .+", lines[0]), err
    assert lines[1:] == ["warning: the profile asks for more workers than cores"], err
    assert not isinstance(progress.current(), RichReporter)
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert warnings.showwarning is show_warning
