"""The ``workbench`` command: parses arguments, calls the Python API, prints. No logic of its own.

Commands live in the modules of this package, one per area; each registers itself on ``app``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import warnings

import typer

from .. import progress
from ..errors import WorkbenchError, WorkbenchWarning
from ..stores.runs import fail_unfinished, interrupted_error
from . import (
    compare,  # noqa: F401  (workbench compare)
    core,  # noqa: F401  (registers the commands)
    data,  # noqa: F401  (data cache, data inspect, data export-bigquery, bench-io)
)
from . import sweep as _sweep  # noqa: F401  (registers sweep, sweeps, report, recommend)
from ._app import app
from ._progress import RichReporter
from ._progress import console as progress_console

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors with exit code 2 for bad input, tracebacks only with --debug."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    show_warning = warnings.showwarning
    if not debug:
        warnings.showwarning = _show_warning
    # SIGTERM (scancel, kill) and SIGHUP (a closed terminal) unwind like Ctrl-C, so clusters close
    # and their batch jobs are cancelled on the way out. Ctrl-C is caught too (unless the process was
    # started with it ignored), to know that the command was interrupted: Typer returns 130 for it.
    stops = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        stops.append(signal.SIGINT)
    _INTERRUPTS.clear()
    handlers = {sig: signal.signal(sig, _interrupt) for sig in stops}
    try:
        return _dispatch(argv, debug)
    finally:  # a caller of main() in its own process gets its handlers back
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        warnings.showwarning = show_warning


def _dispatch(argv: list[str], debug: bool) -> int:
    command = typer.main.get_command(app)
    try:
        # every long step of the command draws a bar on stderr; the bars are gone before any error line
        with progress.showing(RichReporter()):
            returned = command.main(args=argv, prog_name="workbench", standalone_mode=False)
    except typer.Exit as exc:
        if exc.exit_code == 130:  # Typer's answer to Ctrl-C, SIGTERM and SIGHUP (see _interrupt)
            return _interrupted()
        return exc.exit_code
    except typer.Abort:
        return _interrupted()
    except typer.TyperException as exc:  # usage errors: click's own message, exit code 2
        exc.show()
        return getattr(exc, "exit_code", 2)
    except WorkbenchError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a command-line tool
        if debug:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        typer.echo(f"error: {type(exc).__name__}: {first} (run with --debug for the traceback)", err=True)
        return 1
    if _INTERRUPTS:  # Typer turned the KeyboardInterrupt into a plain return of 130
        return _interrupted()
    return returned if isinstance(returned, int) else 0


_INTERRUPTS: list[str] = []  # the signals that stopped this command
_SHOWN = {"SIGINT": "SIGINT (Ctrl-C)"}


def _interrupted() -> int:
    """Record the runs the signal left unfinished (one can land before a run's ``with`` block is
    entered) and give the shell 130."""
    by = _SHOWN.get(_INTERRUPTS[0], _INTERRUPTS[0]) if _INTERRUPTS else _SHOWN["SIGINT"]
    fail_unfinished(interrupted_error(by))
    typer.echo("interrupted", err=True)
    return 130


# Python prints and drops an exception raised inside these (a garbage-collector callback, a
# finaliser): a signal that arrives there is delivered again a moment later instead.
_SWALLOWING = ("__del__", "_gc_callback")
_REDELIVER_SECONDS = 0.05


def _interrupt(signum, frame):
    name = signal.Signals(signum).name
    if frame is not None and frame.f_code.co_name in _SWALLOWING:
        threading.Timer(_REDELIVER_SECONDS, os.kill, (os.getpid(), signum)).start()
        return
    _INTERRUPTS.append(name)
    # the run store records which signal stopped a run (stores/runs.py)
    raise KeyboardInterrupt(_SHOWN.get(name, name))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, WorkbenchWarning):
        progress_console().out(f"warning: {message}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
