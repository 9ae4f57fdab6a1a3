"""``workbench serve`` as a user runs it: start it, read what it prints, fetch the dashboard and the
runs page over HTTP, screenshot the runs page in headless Chromium, stop it with Ctrl-C (SIGINT)
and check that nothing is left running. (The SLURM variant is in tests/cluster/test_slurm.py.)"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request

import psutil
import pytest

from .cli.helpers import wait_for
from .test_dashboard import record_runs


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("headless Chromium is missing: tests/run installs Debian's chromium as root (apt-get install chromium)")
    return found




def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


def test_serve_local_dashboard_runs_page_screenshot_and_ctrl_c(tmp_path):
    browser = chromium()
    runs_dir = tmp_path / "runs"
    good, _, metrics = record_runs(runs_dir)
    log = tmp_path / "serve.out"
    proc = subprocess.Popen(
        ["workbench", "serve", "--workers", "2", "--runs-dir", str(runs_dir)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        text = wait_for(log, "press Ctrl-C", proc)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2  # the two worker processes (and their nannies)
        dashboard = re.search(r"^dashboard +(http://127\.0\.0\.1:\d+)/status$", text, re.MULTILINE).group(1)
        assert re.search(rf"^runs +{re.escape(dashboard)}/workbench/runs ", text, re.MULTILINE), text
        port = dashboard.rsplit(":", 1)[1]
        assert re.search(rf"ssh -N -L {port}:127\.0\.0\.1:{port} \S+@\S+", text), text
        assert re.search(r"^scheduler +tcp://127\.0\.0\.1:\d+", text, re.MULTILINE), text
        info = json.loads((tmp_path / "workbench-connection.json").read_text())
        assert info["address"].startswith("tcp://127.0.0.1:") and info["dashboard"] == f"{dashboard}/status"

        status, body = get(f"{dashboard}/status")
        assert status == 200 and "Dask" in body
        status, body = get(f"{dashboard}/workbench/runs")
        assert status == 200 and good in body and f"{metrics['roc_auc']:.4f}" in body
        assert "<script>alert(1)</script>" not in body and "&lt;script&gt;" in body  # NAME is escaped
        status, body = get(f"{dashboard}/workbench/runs/{good}")
        assert status == 200 and "<svg" in body

        shot = tmp_path / "runs.png"
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1280,900", f"--screenshot={shot}", f"{dashboard}/workbench/runs"],
            capture_output=True, timeout=120, check=True,
        )
        from PIL import Image

        image = Image.open(shot)
        assert image.size == (1280, 900)
        assert len(image.convert("RGB").getcolors(1_000_000)) > 50  # a rendered page, not a blank one

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "shutting down" in log.read_text()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, f"processes left behind: {alive}"
    assert not (tmp_path / "workbench-connection.json").exists()


def test_serve_refuses_a_second_server_on_the_same_connection_file(tmp_path):
    (tmp_path / "workbench-connection.json").write_text("{}")
    proc = subprocess.run(["workbench", "serve"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "workbench-connection.json already exists" in proc.stderr
    assert json.loads((tmp_path / "workbench-connection.json").read_text()) == {}  # not overwritten


def test_run_with_an_unreachable_scheduler_is_one_line(tmp_path):
    proc = subprocess.run(["workbench", "run", "x.yaml", "--connect", "tcp://127.0.0.1:9"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (tmp_path / "x.yaml").write_text("name: x\ndata: {path: nothing/*.parquet, target: y}\n")
    proc = subprocess.run(["workbench", "run", "x.yaml", "--connect", "tcp://127.0.0.1:9"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(errors) == 1 and errors[0].startswith("error: cannot reach the scheduler at tcp://127.0.0.1:9"), proc.stderr
