"""Every branch of the sweep commands through the real entry point: ``sweep`` (--ratios, --trials,
--seeds, --metrics, --timeout, --retries, --report, --axis, --workers, --connect to a scheduler started
elsewhere and its refusal to scale it, --retry-failed), ``sweeps``, ``report`` (a sweep id or a table,
--out, --alpha, --time, --column) and ``recommend`` (--sweep, the latest sweep, --table, --workers,
--tolerance, --time, --column), and each one's bad input: one ``error:`` line, exit 2, no traceback.

The sweeps are real ``workbench sweep`` subprocesses on a 20,000-row export with ten boosting rounds
and one worker (or the session's two-worker cluster for --connect); one sweep checks several options
at once. Commands that start no cluster run in this process through ``workbench.cli.main``.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from workbench.data.synth import synth_bitcoin_export
from workbench.stores.runs import RunStore
from workbench.stores.sweeps import SweepStore

from .helpers import SAY_LINE, assert_one_line_error, in_process, workbench

WATCHDOG = "timed out after 3s (watchdog)"


def write_sweep(directory: Path, export: Path, name: str, **model) -> Path:
    """One worker, one ratio, one trial: the flags of each test make the sweep it needs."""
    spec = {
        "name": name,
        "pipeline": {
            "name": "cell",
            "data": {"path": str(export / "btc_addresses-*.parquet"), "target": "is_miner", "drop": ["address"]},
            "split": {"test_size": 0.2, "validation_size": 0.1, "seed": 0},
            "sampling": {"ratio": "1:1"},
            "model": {"params": {"max_depth": 3}, "num_boost_round": 10, "early_stopping_rounds": 5, **model},
        },
        "axes": {"workers": [1], "sampling.ratio": ["1:1"]},
        "trials": 1,
        "timeout": 120,
        "retries": 1,
        "cluster": {"type": "local", "threads_per_worker": 1, "memory_limit": "2GiB"},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with a 20,000-row export and three sweep files: tiny, slow (a cell no watchdog
    of a few seconds lets finish) and joined (for --connect)."""
    cwd = tmp_path_factory.mktemp("sweep-cli")
    export = cwd / "export"
    synth_bitcoin_export(export, 20_000, positive_rate=0.03, rows_per_shard=5_000, seed=0)
    write_sweep(cwd, export, "tiny")
    write_sweep(cwd, export, "slow", num_boost_round=100_000, early_stopping_rounds=None,
                params={"max_depth": 6, "eta": 0.01})
    write_sweep(cwd, export, "joined")
    return cwd


@pytest.fixture
def cli(capsys, monkeypatch, work):
    """``workbench ARGS`` in this process, from the work directory (or ``cwd=``)."""
    return in_process(capsys, monkeypatch, work)


def assert_ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


# ---------------------------------------------------------------- one sweep, many options


@pytest.fixture(scope="module")
def swept(work):
    """``sweep tiny.yaml`` with --ratios, --trials, --seeds, --metrics, --timeout, --retries and --report
    (6 cells), then ``sweep slow.yaml --timeout 3 --retries 1`` into the same store."""
    runs = work / "R"
    tiny = workbench("sweep", "tiny.yaml", "--ratios", "1:1,1:4", "--trials", 3, "--seeds", "11,12,13",
                     "--metrics", "roc_auc,recall", "--timeout", "5m", "--retries", 0, "--report",
                     "--runs-dir", runs, cwd=work)
    assert_ok(tiny)
    slow = workbench("sweep", "slow.yaml", "--timeout", 3, "--retries", 1, "--runs-dir", runs, cwd=work)
    # (not assert_ok: a worker the watchdog restarts may log distributed's heartbeat traceback on stderr)
    assert slow.returncode == 0, slow.stderr[-3000:]
    assert not [line for line in slow.stderr.splitlines() if line.startswith("error:")], slow.stderr[-3000:]
    return SimpleNamespace(runs=runs, tiny=tiny, slow=slow)


def test_ratios_trials_and_seeds_make_the_cells(swept):
    assert swept.tiny.stdout.startswith("sweep tiny: 6 cells; 6 succeeded and 0 failed in this run, 0 recorded before;")
    table = SweepStore(swept.runs).table("tiny")
    assert len(table) == 6 and (table["status"] == "succeeded").all()
    assert sorted(table["sampling.ratio"]) == ["1:1"] * 3 + ["1:4"] * 3
    assert sorted(table["trial"]) == [0, 0, 1, 1, 2, 2]
    assert table.groupby("trial")["seed"].agg(set).to_dict() == {0: {11}, 1: {12}, 2: {13}}
    rows = table.groupby("sampling.ratio")["rows"].agg(["min", "max"])
    assert (rows["min"] == rows["max"]).all() and rows.loc["1:4", "min"] > 2 * rows.loc["1:1", "min"]
    runs = RunStore(swept.runs)
    for cell in SweepStore(swept.runs).cells("tiny"):  # each trial's seed went into its pipeline
        run = runs.get(cell["run_id"])
        assert (run.seeds["sampling"], run.seeds["model"]) == (cell["seed"], cell["seed"])
        assert run.spec["sampling"]["ratio"] == cell["axes"]["sampling.ratio"]
    spec = SweepStore(swept.runs).get("tiny")["spec"]
    assert (spec["trials"], spec["seeds"], spec["timeout"], spec["retries"]) == (3, [11, 12, 13], "5m", 0)


def test_metrics_keeps_only_the_metrics_asked_for(swept):
    cells = SweepStore(swept.runs).cells("tiny")
    # with ROC AUC, its interval: roc_auc_low and roc_auc_high
    assert [sorted(c["metrics"]) for c in cells] == [["recall", "roc_auc", "roc_auc_high", "roc_auc_low"]] * 6
    assert all(c["metrics"]["roc_auc_low"] < c["metrics"]["roc_auc"] < c["metrics"]["roc_auc_high"] for c in cells)
    assert all(0.5 < c["metrics"]["roc_auc"] <= 1 and 0 <= c["metrics"]["recall"] <= 1 for c in cells)
    table = SweepStore(swept.runs).table("tiny")
    assert "recall" in table.columns and "pr_auc" not in table.columns
    # each cell's line shows the metrics kept, not one it was told not to keep
    lines = [line for line in swept.tiny.stderr.splitlines() if re.search(r"cell workers=1 ratio=\S+ trial=\d: \d", line)]
    assert len(lines) == 6, swept.tiny.stderr
    # ROC AUC with its interval; the first cell reads the split for the others, which reuse it
    shown = r" rows, ROC AUC 0\.\d{4} \[0\.\d{4}, [01]\.\d{4}\], recall \d\.\d{4}; "
    assert re.search(shown + r"split read once for group \w+ \(.+, kept\) \|", lines[0]), lines[0]
    assert all(re.search(shown + r"split reused \(group \w+\) \|", line) for line in lines[1:]), lines
    assert "PR AUC" not in swept.tiny.stderr


def test_report_writes_the_report_when_the_sweep_ends(swept, work):
    assert swept.tiny.stdout.splitlines()[2] == f"  report        {Path('reports') / 'tiny' / 'index.html'}"
    directory = work / "reports" / "tiny"
    assert "Sweep tiny" in (directory / "index.html").read_text()
    markdown = (directory / "report.md").read_text()
    assert "6 succeeded, 0 failed" in markdown and "Significance level 0.05." in markdown
    # each cell's interval, and DeLong's paired test between the two ratios of each trial (same test rows)
    assert "Cells with their intervals" in markdown and "Paired tests of ROC AUC between ratios" in markdown
    paired = markdown[markdown.index("Paired tests of ROC AUC between ratios"):]
    rows = [line for line in paired.splitlines() if re.match(r"\| 1 \| [012] \| 1:1 \| 1:4 \| ", line)]
    assert len(rows) == 3, paired[:2000]
    figures = sorted((directory / "figures").glob("*.png"))
    assert figures and all(p.stat().st_size > 5_000 for p in figures)
    # without --report the command names the report command instead
    assert swept.slow.stdout.splitlines()[2] == f"  report        workbench report slow --runs-dir {swept.runs}"
    assert not (work / "reports" / "slow").exists()


def test_the_timed_lines_of_a_sweep_are_on_one_clock(swept):
    stamps = [float(s) for s in re.findall(r"^\[ *(\d+\.\d)s\] ", swept.tiny.stderr, re.MULTILINE)]
    assert len(stamps) >= 14 and stamps == sorted(stamps), swept.tiny.stderr


def test_timeout_cancels_each_attempt_and_retries_tries_again(swept):
    assert swept.slow.stdout.startswith("sweep slow: 1 cells; 0 succeeded and 1 failed in this run")
    [cell] = SweepStore(swept.runs).cells("slow")
    assert cell["status"] == "failed" and cell["attempts"] == 2 and cell["error"].startswith(WATCHDOG)
    attempts = SweepStore(swept.runs).attempts("slow")
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, "failed"), (2, "failed")]
    assert all(a["fault"].startswith(WATCHDOG) for a in attempts)
    assert re.search(rf"^{SAY_LINE}cell workers=1 ratio=1:1 trial=0: attempt 1 failed \({re.escape(WATCHDOG)}",
                     swept.slow.stderr, re.MULTILINE), swept.slow.stderr
    assert all(RunStore(swept.runs).get(a["run_id"]).status == "failed" for a in attempts)
    spec = SweepStore(swept.runs).get("slow")["spec"]
    assert (spec["timeout"], spec["retries"]) == ("3", 1)


def test_sweeps_lists_newest_first(cli, swept):
    proc = cli("sweeps", "--runs-dir", swept.runs)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["sweep", "planned", "succeeded", "failed", "updated", "(UTC)"]
    assert [line.split()[:4] for line in lines[1:]] == [["slow", "1", "0", "1"], ["tiny", "6", "6", "0"]]


def test_sweeps_on_an_empty_store(cli, tmp_path):
    proc = cli("sweeps", "--runs-dir", tmp_path / "empty")
    assert proc.returncode == 0 and proc.stdout == f"no sweeps recorded in {tmp_path / 'empty' / 'runs.sqlite'}\n"


# ---------------------------------------------------------------- report and recommend from a sweep


def test_report_of_a_sweep_by_prefix_with_out_and_alpha(cli, swept, tmp_path):
    proc = cli("report", "ti", "--runs-dir", swept.runs, "--out", tmp_path / "out", "--alpha", 0.2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"report {tmp_path / 'out' / 'index.html'}"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.startswith("# Sweep tiny\n") and "Significance level 0.2." in markdown
    assert "time measure: train_seconds" in markdown
    assert (tmp_path / "out" / "index.html").is_file()


def test_recommend_from_a_named_sweep(cli, swept):
    proc = cli("recommend", "--rows", 2000, "--sweep", "tiny", "--runs-dir", swept.runs, "--workers", "1,2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Ernest model from sweep tiny: 6 cells, R² ")
    assert re.match(r"^  +1 +\S+s", lines[3]) and re.match(r"^  +2 +\S+s", lines[4]), lines
    assert re.fullmatch(r"recommend: [12] worker\(s\) for 2,000 rows \(fastest\); [12] worker\(s\) is the cheapest "
                        r"within 10% of it", lines[-1]), lines


def test_recommend_defaults_to_the_latest_sweep(cli, swept):
    # the latest sweep is `slow`, whose one cell failed: there is nothing to fit, which --sweep tiny avoids
    line = assert_one_line_error(cli("recommend", "--rows", 2000, "--runs-dir", swept.runs))
    assert line == "error: sweep 'slow' has no succeeded cells (1 failed); fix what failed and run `workbench sweep FILE --retry-failed`"


def test_recommend_with_another_time_column(cli, swept):
    proc = cli("recommend", "--rows", 2000, "--sweep", "tiny", "--runs-dir", swept.runs, "--time", "pipeline_seconds")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].startswith("  pipeline_seconds ≈ ")


# ---------------------------------------------------------------- report and recommend from a table


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """Another tool's results: ``nodes`` for workers, two time columns with different Ernest models.

    train_seconds = 1 + 1e-5·rows/w + 0.5·w: at 1,000,000 rows 11.5, 8, 5.5, 6.25 s on 1, 2, 4, 8 workers.
    total         = 2 + 1e-5·rows/w + 0.05·w: at 1,000,000 rows 12.05, 7.1, 4.7, 3.65 s.
    """
    rng = np.random.default_rng(0)
    rows = [(w, n, t) for w in (1, 2, 4, 8) for n in (100_000, 500_000, 1_000_000) for t in range(3)]
    frame = pd.DataFrame(rows, columns=["nodes", "rows", "trial"])
    noise = 1 + rng.uniform(-0.01, 0.01, len(frame))
    frame["train_seconds"] = (1 + 1e-5 * frame["rows"] / frame["nodes"] + 0.5 * frame["nodes"]) * noise
    frame["total"] = (2 + 1e-5 * frame["rows"] / frame["nodes"] + 0.05 * frame["nodes"]) * noise
    path = tmp_path_factory.mktemp("results") / "results.csv"
    frame.to_csv(path, index=False)
    return path


def last_line(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_recommend_from_a_table_with_column_tolerance_workers_and_time(cli, table):
    base = ("recommend", "--rows", 1_000_000, "--table", table, "--column", "workers=nodes")
    proc = cli(*base)
    fit = re.match(rf"Ernest model from {re.escape(str(table))}: 36 cells, R² (\d\.\d{{3}}),", proc.stdout)
    assert fit and float(fit.group(1)) >= 0.99, proc.stdout
    assert "measured 100,000-1,000,000 rows on 1, 2, 4, 8 node(s)" in proc.stdout
    assert last_line(proc) == "recommend: 4 node(s) for 1,000,000 rows (fastest); 4 node(s) is the cheapest within 10% of it"
    assert last_line(cli(*base, "--tolerance", 0.6)) == \
        "recommend: 4 node(s) for 1,000,000 rows (fastest); 2 node(s) is the cheapest within 60% of it"
    limited = cli(*base, "--workers", "1,2")
    assert [line.split()[0] for line in limited.stdout.splitlines()[3:5]] == ["1", "2"]
    assert last_line(limited) == "recommend: 2 node(s) for 1,000,000 rows (fastest); 2 node(s) is the cheapest within 10% of it"
    other = cli(*base, "--column", "seconds=total", "--time", "seconds")
    assert other.stdout.splitlines()[1].startswith("  seconds ≈ ")
    assert last_line(other) == "recommend: 8 node(s) for 1,000,000 rows (fastest); 8 node(s) is the cheapest within 10% of it"


def test_recommend_notes_an_extrapolation(cli, table):
    proc = cli("recommend", "--rows", 5_000_000, "--table", table, "--column", "workers=nodes")
    assert "  note: 5,000,000 rows is outside the measured range; the prediction extrapolates" in proc.stdout
    assert last_line(proc).startswith("recommend: 8 node(s) for 5,000,000 rows (fastest)")


def test_report_of_a_table_with_column_time_alpha_and_out(cli, table, tmp_path):
    out = tmp_path / "table-report"
    proc = cli("report", table, "--column", "workers=nodes", "--column", "seconds=total", "--time", "seconds",
               "--alpha", 0.01, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"report {out / 'index.html'}", f"       {out / 'report.md'}",
                                        f"       {len(list((out / 'figures').glob('*.png')))} figures in {out / 'figures'}"]
    markdown = (out / "report.md").read_text()
    assert "36 measured cells; time measure: seconds; node counts 1, 2, 4, 8" in markdown
    assert "Significance level 0.01." in markdown and "α = 0.01" in markdown
    assert not (tmp_path / "reports").exists()  # --out, not the default reports/results


# ---------------------------------------------------------------- --connect, --axis, --retry-failed


@pytest.fixture(scope="module")
def joined(work, client):
    """``sweep joined.yaml --connect ADDRESS`` on the session's two-worker cluster: --workers 2, an --axis
    and a ratio no cell can take, with --retries 2; then the same with --retry-failed."""
    args = ("sweep", "joined.yaml", "--connect", client.scheduler.address, "--workers", 2,
            "--axis", "model.num_boost_round=3,6", "--ratios", "1:1,1:100000", "--retries", 2, "--runs-dir", work / "J")
    first = workbench(*args, cwd=work)
    assert_ok(first)
    before = {a["cell_key"]: a["attempt"] for a in SweepStore(work / "J").attempts("joined")}
    again = workbench(*args, "--retry-failed", cwd=work)
    assert_ok(again)
    return SimpleNamespace(runs=work / "J", first=first, again=again, attempts_before=before)


def test_connect_runs_the_cells_on_the_running_cluster_with_an_axis(joined, client):
    assert joined.first.stdout.startswith("sweep joined: 4 cells; 2 succeeded and 2 failed in this run")
    cells = SweepStore(joined.runs).cells("joined")
    assert sorted((c["axes"]["model.num_boost_round"], c["axes"]["sampling.ratio"]) for c in cells) == \
        [(3, "1:1"), (3, "1:100000"), (6, "1:1"), (6, "1:100000")]
    runs = RunStore(joined.runs)
    for cell in (c for c in cells if c["status"] == "succeeded"):
        run = runs.get(cell["run_id"])
        assert run.spec["model"]["num_boost_round"] == cell["axes"]["model.num_boost_round"]
        assert run.cluster["scheduler"] == client.scheduler.address and run.cluster["workers"] == 2
    assert "cluster: starting" not in joined.first.stderr
    assert len(client.scheduler_info()["workers"]) == 2


def test_bad_input_in_a_cell_is_not_retried_and_retry_failed_runs_it_again(joined):
    assert sorted(joined.attempts_before.values()) == [1, 1, 1, 1]  # --retries 2, but bad input is not retried
    assert SweepStore(joined.runs).get("joined")["spec"]["retries"] == 2
    assert joined.again.stdout.startswith("sweep joined: 4 cells; 0 succeeded and 2 failed in this run, 2 recorded before")
    cells = {c["cell_key"]: c for c in SweepStore(joined.runs).cells("joined")}
    failed = sorted(k for k, c in cells.items() if c["status"] == "failed")
    assert len(failed) == 2 and all('"1:100000"' in k for k in failed)
    assert all("choose a ratio of at most" in cells[k]["error"] for k in failed)
    attempts = SweepStore(joined.runs).attempts("joined")
    assert sorted((a["cell_key"], a["attempt"]) for a in attempts if a["cell_key"] in failed) == \
        [(failed[0], 1), (failed[0], 2), (failed[1], 1), (failed[1], 2)]
    assert sorted(a["attempt"] for a in attempts if a["cell_key"] not in failed) == [1, 1]  # succeeded: left alone


def test_connect_refuses_worker_counts_it_cannot_scale_to_before_running_anything(work, client):
    proc = workbench("sweep", "joined.yaml", "--connect", client.scheduler.address, "--workers", "2,1",
                     "--runs-dir", work / "refused", cwd=work)
    line = assert_one_line_error(proc)
    assert line == (f"error: the cluster at {client.scheduler.address} has 2 workers and cannot be scaled from here to 1; "
                    "sweep only --workers 2 on it, or let the sweep start its own cluster (drop --connect)")
    assert not (work / "refused").exists()  # not even the 2-worker cells ran
    assert len(client.scheduler_info()["workers"]) == 2


def test_connect_to_a_file_that_is_no_connection_file_is_one_line(cli, tmp_path):
    # (an unreachable address is the same cluster.connect path `run --connect` takes, see tests/test_serve.py)
    (tmp_path / "serve.json").write_text("{}")
    line = assert_one_line_error(cli("sweep", "tiny.yaml", "--connect", tmp_path / "serve.json", "--runs-dir", "nowhere"))
    assert line == (f"error: {tmp_path / 'serve.json'} is not a workbench connection file ('address'); "
                    "pass the file `workbench serve` printed, or a scheduler address")
    assert not (Path.cwd() / "nowhere").exists()


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


@pytest.mark.parametrize("args, words", [
    (("--ratios", "10:1"), "axes.sampling.ratio[0]: pipeline key sampling.ratio: ratio '10:1' is not of the form '1:k'"),
    (("--seeds", "x"), "seeds: Input should be a valid integer"),
    (("--seeds", "1,2", "--trials", "3"), "seeds: seeds lists 2 seeds for 3 trials"),
    (("--metrics", "nope"), "metrics: unknown metric 'nope'; choose from roc_auc, pr_auc,"),
    (("--timeout", "-3"), "timeout: timeout '-3' is not a positive duration"),
    (("--timeout", "soon"), "timeout: timeout 'soon' is not a positive duration"),
    (("--trials", "0"), "trials: Input should be greater than or equal to 1"),
    (("--retries", "-1"), "retries: Input should be greater than or equal to 0"),
    (("--workers", "0,1"), "workers must be whole numbers of at least 1"),
    (("--axis", "nokey"), "error: --axis 'nokey' is not KEY=V1,V2; e.g. --axis model.params.max_depth=4,6,8"),
    (("--axis", "=3"), "error: --axis '=3' is not KEY=V1,V2"),
    (("--axis", "model.params.max_depth="), "error: --axis 'model.params.max_depth=' is not KEY=V1,V2"),
    (("--axis", "model.params.max_depth=3,3"), "axis 'model.params.max_depth' lists a value twice"),
    (("--axis", "sampling.ration=1:2"), "pipeline key sampling.ration: unknown key (did you mean 'ratio'?)"),
])
def test_bad_sweep_options_are_one_line(cli, args, words):
    line = assert_one_line_error(cli("sweep", "tiny.yaml", *args, "--runs-dir", "never"))
    assert words in line, line
    assert not (Path.cwd() / "never").exists()


def test_a_missing_sweep_file_is_one_line(cli):
    line = assert_one_line_error(cli("sweep", "nosuch.yaml"))
    assert line.startswith("error: sweep file 'nosuch.yaml' does not exist")


@pytest.mark.parametrize("args, line", [
    (("--rows", "0"), "error: --rows 0 is not a positive number of rows; give the training rows after RUS"),
    (("--rows", "100", "--tolerance", "-1"), "error: --tolerance -1.0 is negative; e.g. --tolerance 0.1 for 10 %"),
    (("--rows", "100", "--workers", "0,2"), "error: --workers 0,2 lists a count below 1; give worker counts of at least 1"),
    (("--rows", "100", "--column", "workers"), "error: --column 'workers' is not OURS=THEIRS; e.g. --column workers=nodes"),
])
def test_bad_recommend_options_are_one_line(cli, table, args, line):
    assert assert_one_line_error(cli("recommend", "--table", table, "--column", "workers=nodes", *args)) == line


def test_recommend_errors_about_its_sources_are_one_line(cli, table, swept, tmp_path):
    line = assert_one_line_error(cli("recommend", "--rows", 100, "--table", table))
    assert line.startswith(f"error: {table} lacks the column(s) workers; ")
    line = assert_one_line_error(cli("recommend", "--rows", 100, "--table", table, "--column", "workers=nodes",
                                     "--time", "nosuch"))
    assert line.startswith(f"error: {table} lacks the column(s) nosuch; ")
    line = assert_one_line_error(cli("recommend", "--rows", 100, "--table", tmp_path / "missing.csv"))
    assert line == f"error: results table {str(tmp_path / 'missing.csv')!r} does not exist; give a CSV or Parquet file"
    line = assert_one_line_error(cli("recommend", "--rows", 100, "--sweep", "nosuch", "--runs-dir", swept.runs))
    assert line == f"error: no sweep 'nosuch' in {swept.runs / 'runs.sqlite'}; list the recorded sweeps with `workbench sweeps`"
    line = assert_one_line_error(cli("recommend", "--rows", 100, "--runs-dir", tmp_path / "empty"))
    assert line == f"error: no sweeps recorded in {tmp_path / 'empty' / 'runs.sqlite'}; run `workbench sweep FILE` first, or give --table"


def test_bad_report_input_is_one_line(cli, table, swept, tmp_path):
    line = assert_one_line_error(cli("report", "nosuchsweep", "--runs-dir", swept.runs, cwd=tmp_path))
    assert line == f"error: no sweep 'nosuchsweep' in {swept.runs / 'runs.sqlite'}; list the recorded sweeps with `workbench sweeps`"
    for alpha in ("1.5", "0"):
        line = assert_one_line_error(cli("report", "tiny", "--runs-dir", swept.runs, "--alpha", alpha, cwd=tmp_path))
        assert line == f"error: --alpha {float(alpha)} is not between 0 and 1; e.g. --alpha 0.05"
    # (every sweep's table has a nodes column now: the distinct hosts of each cell)
    line = assert_one_line_error(cli("report", "tiny", "--runs-dir", swept.runs, "--column", "workers=machines", cwd=tmp_path))
    assert line.startswith("error: sweep tiny has no column 'machines' (asked for as workers); its columns are: ")
    line = assert_one_line_error(cli("report", table, "--column", "workers=nodes", "--time", "nosuch", cwd=tmp_path))
    assert line.startswith(f"error: {table} lacks the column(s) nosuch; ")
    line = assert_one_line_error(cli("report", table, "--column", "nodes", cwd=tmp_path))
    assert line == "error: --column 'nodes' is not OURS=THEIRS; e.g. --column workers=nodes"
    assert not (tmp_path / "reports").exists()
