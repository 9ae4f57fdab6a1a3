"""The sweep report: its PNG figures, the HTML and Markdown, written whole or not at all, and the
HTML opened in a real headless Chromium through the DevTools protocol (no console errors, no failed
loads, every image decoded)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

from workbench import analysis as A
from workbench.report import write_report

from .test_analysis import study
from .test_dashboard import chromium

FIGURES = {"time_vs_size.png", "time_vs_size_loglog.png", "time_vs_workers.png", "boxplots.png",
           "auc_vs_workers.png", "auc_vs_ratio.png", "ernest_fit.png"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "study"
    return write_report(study(trials=4), out, title="A <study> & co")


def test_every_figure_exists_and_is_a_real_png(report):
    assert {p.name for p in report.figures} == FIGURES
    for path in report.figures:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 300
            pixels = np.asarray(image.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, path.name  # lines, text: not blank


def test_the_html_and_markdown_carry_every_section(report):
    page = report.html.read_text()
    markdown = report.markdown.read_text()
    for text in ("Speed-up and parallel efficiency", "ANOVA and Tukey HSD of worker counts",
                 "Tukey HSD groupings", "Where more workers pay off", "Performance model (Ernest)",
                 "Effects relative to the baseline cell", "train_seconds, ratio 1:1000", "roc_auc, ratio 1:1"):
        assert text in page and text in markdown, text
    assert "<title>A &lt;study&gt; &amp; co</title>" in page and "<study>" not in page
    assert page.count("<img ") == len(FIGURES) and markdown.count("](figures/") == len(FIGURES)
    assert "| workers | mean | group |" in markdown
    assert not re.search(r"<script|<link|src=\"http", page)  # self-contained apart from its own PNGs


def test_the_report_opens_in_headless_chromium_without_errors(report):
    seen = browse(report.html.resolve().as_uri())
    assert seen["errors"] == [], seen["errors"]
    assert seen["title"] == "A <study> & co"
    assert len(seen["images"]) == len(FIGURES) and all(ok for _, ok in seen["images"]), seen["images"]
    assert seen["tables"] > 20


def test_the_browser_check_does_see_a_broken_page(tmp_path):
    (tmp_path / "broken.html").write_text('<html><body><img src="figures/missing.png"></body></html>')
    seen = browse((tmp_path / "broken.html").as_uri())
    assert seen["errors"] and seen["images"] == [["figures/missing.png", False]]


def test_a_report_is_replaced_whole_or_left_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "r"
    first = write_report(study(trials=3), out)
    before = first.html.read_text()
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(study(seed=1, trials=3), out)
    assert first.html.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary directory left
    monkeypatch.undo()
    second = write_report(study(seed=1, trials=3), out)
    assert second.html.read_text() != before and {p.name for p in second.figures} == FIGURES


def test_a_table_without_rows_or_auc_still_reports(tmp_path):
    table = study(trials=3).drop(columns=["rows", "roc_auc", "pr_auc"])
    written = write_report(table, tmp_path / "bare")
    names = {p.name for p in written.figures}
    assert names == {"time_vs_size.png", "time_vs_size_loglog.png", "time_vs_workers.png", "boxplots.png"}
    assert "Performance model" not in written.html.read_text()
    assert len(A.load_results(table)) == len(table)


def test_the_report_command_on_a_published_table(tmp_path):
    study(trials=3).rename(columns={"workers": "nodes", "train_seconds": "time_s"}).to_csv(tmp_path / "pub.csv", index=False)
    proc = subprocess.run(["workbench", "report", "pub.csv", "--column", "workers=nodes", "--time", "time_s",
                           "--out", "out"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "report out/index.html" in proc.stdout and "7 figures" in proc.stdout
    assert "time_s, ratio 1:1000" in (tmp_path / "out" / "report.md").read_text()
    proc = subprocess.run(["workbench", "report", "pub.csv", "--out", "bad"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: pub.csv lacks the column(s) workers, train_seconds")
    assert not (tmp_path / "bad").exists()
    proc = subprocess.run(["workbench", "recommend", "--table", "pub.csv", "--column", "workers=nodes", "--time",
                           "time_s", "--rows", "3000000", "-w", "1,2,4,8,16,32"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # the table's scaling unit is nodes (--column workers=nodes): fitted and advised in nodes
    assert re.search(r"^recommend: (16|32) node\(s\) for 3,000,000 rows", proc.stdout, re.M), proc.stdout


# ---------------------------------------------------------------- Chromium through the DevTools protocol


def browse(url: str, timeout: float = 60) -> dict:
    """Open ``url`` in headless Chromium and report console errors, exceptions, failed loads, the
    title, the number of tables and, for every image, whether it decoded."""
    profile = tempfile.mkdtemp(prefix="wb-chromium-")
    proc = subprocess.Popen(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            line = proc.stderr.readline()
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                port = found.group(1)
            assert time.monotonic() < deadline and (line or proc.poll() is None), "Chromium did not start"
        return asyncio.run(_devtools(port, url, timeout))
    finally:
        proc.kill()
        proc.wait()


async def _devtools(port: str, url: str, timeout: float) -> dict:
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect

    response = await AsyncHTTPClient().fetch(
        HTTPRequest(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT", body=""))
    socket = await websocket_connect(json.loads(response.body)["webSocketDebuggerUrl"])
    events: list[dict] = []
    counter = iter(range(1, 1_000_000))

    async def call(method: str, **params):
        ident = next(counter)
        await socket.write_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(socket.read_message(), timeout))
            if message.get("id") == ident:
                return message.get("result", {})
            events.append(message)

    for domain in ("Page", "Runtime", "Log", "Network"):
        await call(f"{domain}.enable")
    await call("Page.navigate", url=url)
    while not any(e.get("method") == "Page.loadEventFired" for e in events):
        events.append(json.loads(await asyncio.wait_for(socket.read_message(), timeout)))
    page = await call("Runtime.evaluate", returnByValue=True, expression=(
        "({title: document.title, tables: document.querySelectorAll('table').length, images: "
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])})"))
    socket.close()
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(params["exceptionDetails"].get("text"))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            errors.append(params["entry"]["text"])
        elif method == "Network.loadingFailed":
            errors.append(f"load failed: {params.get('errorText')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            errors.append(str(params.get("args")))
    return {"errors": errors, **page["result"]["value"]}
