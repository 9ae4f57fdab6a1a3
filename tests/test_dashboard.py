"""The runs pages in the Dask dashboard: a real scheduler serving a real run store, fetched over HTTP
and rendered by a real headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import dask.config
import numpy as np
import pandas as pd
import pytest
from distributed import LocalCluster

import workbench
from workbench import dashboard
from workbench.metrics import metrics_from_table
from workbench.stores.runs import RunStore

ROUTES = "distributed.scheduler.http.routes"
NAME = "btc <script>alert(1)</script> & co"
ERROR = "DataError: no Parquet files match 'exports/<btc>-*.parquet'; check the path"
HISTORY = {"valid": {"auc": [0.81, 0.86, 0.88, 0.885], "aucpr": [0.2, 0.31, 0.35, 0.34], "logloss": [0.6, 0.4, 0.3, 0.29]}}


def score_table(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = (rng.random(20_000) < 0.02).astype("int8")
    score = np.clip(rng.normal(0.3 + 0.25 * label, 0.15), 0, 1).round(4)
    counts = pd.DataFrame({"label": label, "score": score}).groupby(["score", "label"]).size()
    table = counts.unstack(fill_value=0).reindex(columns=[0, 1], fill_value=0)
    table.columns = ["neg", "pos"]
    return table.sort_index().rename_axis("score").reset_index()


def record_runs(directory: Path) -> tuple[str, str, dict]:
    """One succeeded run (metrics with curves, history, data, timings) and one failed run."""
    store = RunStore(directory)
    cluster = {"profile": "local", "workers": 2, "threads": 4, "memory_limit": 4 * 2**30}
    spec = {"name": NAME, "model": {"num_boost_round": 50, "params": {"max_depth": 6}}}
    metrics = metrics_from_table(score_table(), 0.5).to_dict()
    with store.start(NAME, spec=spec, seeds={"split": 0, "sampling": 1, "model": 2},
                     versions={"dask": dask.__version__}, cluster=cluster) as run:
        for phase, seconds in [("read", 1.25), ("split", 0.5), ("rus", 0.75), ("train", 12.0), ("metrics", 0.25)]:
            run.log_timing(phase, seconds)
        run.log_data(rows_in_files=100_000, train={"rows": 72_000, "positive": 1_440},
                     sampled={"rows": 15_840, "positive": 1_440}, test={"rows": 20_000, "positive": 400},
                     class_ratio={"before": "1:49.0", "after": "1:10.0"}, model_type="xgboost", best_iteration=3,
                     boosted_rounds=4)
        run.log_history(HISTORY)
        succeeded = run.succeed(metrics)
    with store.start("broken", spec={"name": "broken"}, seeds={}, versions={}, cluster=cluster) as run:
        run.log_timing("read", 0.5)
        run.fail(ERROR)
    return succeeded.id, run.id, succeeded.metrics


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A scheduler started with the workbench pages, showing a store with two runs."""
    runs_dir = tmp_path_factory.mktemp("dashboard") / "runs"
    good, bad, metrics = record_runs(runs_dir)
    routes = [*dask.config.get(ROUTES), "workbench.dashboard"]
    with dask.config.set({ROUTES: routes, "workbench.runs.dir": str(runs_dir)}):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, host="127.0.0.1", protocol="tcp",
                          dashboard_address="127.0.0.1:0") as cluster:
            link = urlsplit(cluster.dashboard_link)
            yield {"base": f"http://{link.hostname}:{link.port}", "good": good, "bad": bad, "metrics": metrics,
                   "dir": runs_dir}


def fetch(url: str) -> tuple[int, str, str, str]:
    """Status, content type, body and final URL (after redirects)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode(), response.url
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode(), url


# ---------------------------------------------------------------- enabling


def test_enable_adds_the_module_once() -> None:
    with dask.config.set({ROUTES: ["distributed.http.scheduler.json"]}):
        assert dashboard.enable() == ["distributed.http.scheduler.json", "workbench.dashboard"]
        assert dashboard.enable() == ["distributed.http.scheduler.json", "workbench.dashboard"]
        assert dask.config.get(ROUTES) == ["distributed.http.scheduler.json", "workbench.dashboard"]
        assert dashboard.routes_config() == {ROUTES: ["distributed.http.scheduler.json", "workbench.dashboard"]}
    assert "workbench.dashboard" not in dask.config.get(ROUTES)
    assert dashboard.routes_config(["a"]) == {ROUTES: ["a", "workbench.dashboard"]}
    assert workbench.enable_dashboard is dashboard.enable
    assert {url for url, _, _ in dashboard.routes} >= {r"workbench/runs", r"workbench/runs\.json", r"workbench/runs/([^/]+)"}


def test_enable_in_a_fresh_interpreter() -> None:
    """Before anything imports distributed, its defaults are not in the Dask config yet."""
    code = "import workbench as wb; print(wb.enable_dashboard()[-1])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "workbench.dashboard"


# ---------------------------------------------------------------- the pages over HTTP


def test_the_runs_page_lists_the_runs_newest_first(served) -> None:
    status, content_type, body, _ = fetch(served["base"] + "/workbench/runs")
    assert status == 200 and content_type.startswith("text/html")
    assert "<title>workbench runs</title>" in body and '<a href="../status">' in body
    good, bad = served["good"], served["bad"]
    assert f'href="runs/{good}"' in body and f'href="runs/{bad}"' in body
    assert body.index(f'href="runs/{bad}"') < body.index(f'href="runs/{good}"')  # the failed run is newer
    assert "<script>" not in body and "btc &lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in body
    assert "exports/&lt;btc&gt;-*.parquet" in body
    assert f"{served['metrics']['roc_auc']:.4f}" in body and f"{served['metrics']['pr_auc']:.4f}" in body
    assert "72,000 → 15,840" in body and "1:10.0" in body and "2 × 4" in body
    assert body.count("<svg") == 1  # the ROC AUC / PR AUC chart of the succeeded run
    # self-contained: no script, stylesheet, image or font fetched from anywhere
    assert not any(tag in body.lower() for tag in ("<script", "<link", "src=", "@import"))
    assert not re.search(r"url\((?!#)", body)  # only references inside the page (SVG clip paths)
    assert 'href="http' not in body


def test_the_page_of_a_succeeded_run(served) -> None:
    good, metrics = served["good"], served["metrics"]
    status, content_type, body, _ = fetch(f"{served['base']}/workbench/runs/{good}")
    assert status == 200 and content_type.startswith("text/html")
    assert f"run {good}" in body and '<a href="../runs">' in body and '<a href="../../status">' in body
    assert body.count("<svg") == 3  # ROC curve, PR curve, history
    assert f'<div class="label">ROC AUC</div><div class="value">{metrics["roc_auc"]:.4f}</div>' in body
    assert f"{metrics['tn']:,}<small>TN</small>" in body and f"{metrics['tp']:,}<small>TP</small>" in body
    assert "xgboost: 4 trees kept (best validation round) of 4 trained" in body  # the model type's own view
    assert "&#34;max_depth&#34;: 6" in body  # the spec, pretty JSON, escaped
    assert "btc &lt;script&gt;" in body and "<script>" not in body
    assert "12.00 s" in body and "4.00 GiB" in body  # dask.utils.format_time and format_bytes


def test_the_page_of_a_failed_run(served) -> None:
    status, _, body, _ = fetch(f"{served['base']}/workbench/runs/{served['bad']}")
    assert status == 200
    assert "failed" in body and "no Parquet files match &#39;exports/&lt;btc&gt;-*.parquet&#39;" in body
    assert "<svg" not in body


def test_an_id_prefix_redirects_and_an_unknown_id_is_404(served) -> None:
    good = served["good"]
    status, _, body, url = fetch(f"{served['base']}/workbench/runs/{good[:-2]}")
    if served["bad"].startswith(good[:-2]):  # both runs in the same second and the same 2 hex digits
        assert status == 404 and "ambiguous" in body
    else:
        assert status == 200 and url.endswith(f"/workbench/runs/{good}")
    status, content_type, body, _ = fetch(f"{served['base']}/workbench/runs/19990101-000000-0000")
    assert status == 404 and content_type.startswith("text/plain")
    assert body.count("\n") == 1 and body.startswith("no run '19990101-000000-0000'")
    status, _, body, _ = fetch(f"{served['base']}/workbench/runs?status=nope")
    assert status == 400 and "unknown run status 'nope'" in body


def test_the_json_list(served) -> None:
    status, content_type, body, _ = fetch(served["base"] + "/workbench/runs.json")
    assert status == 200 and content_type.startswith("application/json")
    runs = json.loads(body)
    assert [r["id"] for r in runs] == [served["bad"], served["good"]]
    assert {"id", "name", "status", "created_at", "roc_auc", "pr_auc"} <= set(runs[0])
    assert (runs[0]["status"], runs[0]["roc_auc"], runs[0]["error"]) == ("failed", None, ERROR)
    assert (runs[1]["name"], runs[1]["status"]) == (NAME, "succeeded")
    assert (runs[1]["roc_auc"], runs[1]["pr_auc"]) == (served["metrics"]["roc_auc"], served["metrics"]["pr_auc"])
    status, _, body, _ = fetch(served["base"] + "/workbench/runs.json?status=failed&limit=5")
    assert [r["id"] for r in json.loads(body)] == [served["bad"]]


def test_the_store_is_read_at_request_time(served, tmp_path: Path) -> None:
    with dask.config.set({"workbench.runs.dir": str(tmp_path / "nothing")}):
        status, _, body, _ = fetch(served["base"] + "/workbench/runs")
        assert status == 200 and f"no runs recorded yet in <code>{tmp_path / 'nothing'}</code>" in body
        assert json.loads(fetch(served["base"] + "/workbench/runs.json")[2]) == []
    assert not (tmp_path / "nothing").exists()  # reading never creates a store
    assert served["good"] in fetch(served["base"] + "/workbench/runs")[2]


def test_the_dask_dashboard_still_serves_its_own_pages(served) -> None:
    status, _, body, _ = fetch(served["base"] + "/json/identity.json")
    assert status == 200 and json.loads(body)["type"] == "Scheduler"
    assert fetch(served["base"] + "/status")[0] == 200


# ---------------------------------------------------------------- a model type from outside the package


def test_a_model_type_registered_outside_shows_its_view_in_the_cli_and_on_the_page(served, tmp_path: Path,
                                                                                   capsys) -> None:
    """The CLI and the runs page both render a run's model section from its model type's ``show``."""
    from typing import Literal

    from pydantic import BaseModel

    from workbench.cli import main
    from workbench.train.registry import MODEL_TYPES, ModelType, ModelView, register_model_type

    class OutsideModel(BaseModel):
        type: Literal["outside_stump"] = "outside_stump"
        seed: int = 0

    def show(data: dict) -> ModelView:
        return ModelView((f"outside_stump: split on {data['split_on']} <at> {data['cut']}",),
                         {"stump leaves": [{"leaf": "left", "share": 0.25}, {"leaf": "right", "share": 0.75}]})

    register_model_type(ModelType("outside_stump", OutsideModel, lambda spec, context: None, show))
    try:
        store = RunStore(tmp_path / "runs")
        with store.start("stump", spec={"name": "stump"}, seeds={}, versions={}, cluster={}) as run:
            run.log_data(model_type="outside_stump", split_on="balance", cut=0.5)
            record = run.succeed(metrics_from_table(score_table(1), 0.5).to_dict())

        assert main(["runs", "show", record.id, "--runs-dir", str(tmp_path / "runs")]) == 0
        out = capsys.readouterr().out
        assert re.search(r"^  model +outside_stump: split on balance <at> 0\.5$", out, re.MULTILINE), out
        assert re.search(r"^  stump leaves:\n +leaf +share\n +left +0\.2500\n +right +0\.7500$", out, re.MULTILINE), out

        with dask.config.set({"workbench.runs.dir": str(tmp_path / "runs")}):
            status, _, body, _ = fetch(f"{served['base']}/workbench/runs/{record.id}")
        assert status == 200
        assert "<h2>model: outside_stump</h2>" in body
        assert "outside_stump: split on balance &lt;at&gt; 0.5" in body
        assert "<h3>stump leaves</h3>" in body
        assert "<tr><th>leaf</th><th>share</th></tr>" in body
        assert "<tr><td>left</td><td>0.2500</td></tr>" in body and "<tr><td>right</td><td>0.7500</td></tr>" in body
    finally:
        MODEL_TYPES.unregister("outside_stump")
    assert "outside_stump" not in MODEL_TYPES


# ---------------------------------------------------------------- headless Chromium


def chromium() -> str:
    found = shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)
    if found:
        return found
    pytest.fail("headless Chromium is missing: tests/run installs Debian's chromium as root (apt-get install chromium)")


@pytest.mark.parametrize("page", ["runs", "run"])
def test_a_browser_renders_the_pages(served, tmp_path: Path, page: str) -> None:
    from PIL import Image

    binary = chromium()
    url = served["base"] + ("/workbench/runs" if page == "runs" else f"/workbench/runs/{served['good']}")
    png = tmp_path / f"{page}.png"
    completed = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900", f"--screenshot={png}", url],
        capture_output=True, text=True, timeout=90,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1280, 900)
        pixels = np.asarray(image.convert("RGB"))
    colors = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colors) > 50  # text, charts, badges: not a blank or single-color page
    background = np.all(pixels == pixels[0, 0], axis=-1).mean()
    assert background < 0.95
    dark = (pixels.sum(axis=-1) < 200).mean()
    assert dark > 0.001  # dark text is drawn
