"""What the command-line tests share: the console script as a user runs it, and small pipeline files."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

TIMEOUT = 300
RUN_ID = r"\d{8}-\d{6}-[0-9a-f]{4}"
SAY_LINE = r"\[ *\d+\.\ds\] "  # the timed lines every command prints on stderr


def workbench(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["workbench", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT
    )


def assert_one_line_error(proc) -> str:
    """Exit status 2, exactly one ``error:`` line, last on stderr, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1] == errors[0], proc.stderr
    return errors[0]


def pipeline_text(path, *, name="happy", target="is_miner", ratio="1:5", rounds=40, split_block=None,
                  model_extra="") -> str:
    split_block = split_block or "split:\n  test_size: 0.2\n  validation_size: 0.1\n  seed: 0\n"
    return (
        f"name: {name}\n"
        "cluster: local\n"
        "data:\n"
        f"  path: {path}\n"
        f"  target: {target}\n"
        "  drop: [address]\n"
        f"{split_block}"
        "sampling:\n"
        f"  ratio: \"{ratio}\"\n"
        "  seed: 0\n"
        "model:\n"
        "  params:\n"
        "    max_depth: 4\n"
        "    eta: 0.3\n"
        f"  num_boost_round: {rounds}\n"
        "  early_stopping_rounds: 5\n"
        "  seed: 0\n"
        f"{model_extra}"
        "metrics:\n"
        "  threshold: 0.5\n"
    )


def small_pipeline_text(name: str = "small", *, target: str = "is_miner") -> str:
    """A pipeline that makes its own 20,000-row export (4 shards) under data/small/ on its first run."""
    return (
        f"name: {name}\n"
        "cluster: local\n"
        "data:\n"
        "  path: data/small/btc_addresses-*.parquet\n"
        f"  target: {target}\n"
        "  drop: [address]\n"
        "  synth:\n"
        "    rows: 20000\n"
        "    rows_per_shard: 5000\n"
        "    positive_rate: 0.03\n"
        "    seed: 0\n"
        "split:\n  test_size: 0.2\n  validation_size: 0.1\n  seed: 0\n"
        "sampling:\n  ratio: \"1:4\"\n  seed: 0\n"
        "model:\n  params:\n    max_depth: 3\n    eta: 0.3\n  num_boost_round: 20\n  early_stopping_rounds: 5\n"
        "  seed: 0\n"
        "metrics:\n  threshold: 0.5\n"
    )


# A cluster profile file: one worker process with two threads, the smallest cluster a command starts.
SMALL_PROFILE = "type: local\nn_workers: 1\nthreads_per_worker: 2\n"


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> str:
    """The text of ``path`` once it holds ``text``; fails if ``proc`` (workbench serve) exits first."""
    deadline = time.monotonic() + timeout
    while text not in (content := path.read_text()):
        assert proc.poll() is None, f"workbench serve exited early:\n{content}"
        assert time.monotonic() < deadline, content
        time.sleep(0.2)
    return content


def in_process(capsys, monkeypatch, default_cwd: Path):
    """``workbench ARGS`` run by ``workbench.cli.main`` in this process, from ``default_cwd`` (or
    ``cwd=``): its exit code, stdout and stderr. For commands that start no cluster."""
    from types import SimpleNamespace

    from workbench.cli import main

    def call(*args, cwd: Path = default_cwd):
        monkeypatch.chdir(cwd)
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return call
