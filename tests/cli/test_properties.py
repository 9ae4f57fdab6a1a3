"""Property-based tests (Hypothesis) of the ``workbench`` command (issue 15): generated pipeline
files, sweep files and Parquet exports, valid and broken, each run through the real console script
(a subprocess, ``--connect`` to the test session's cluster).

The properties:

- the command ends with 0 or 2, and never prints a traceback;
- an exit of 2 is one ``error:`` line, the last line on stderr;
- a valid input trains: exit 0 and a succeeded run; a broken one is refused: exit 2.

Pipeline files are drawn from the keys and bounds of the real schema (workbench/pipeline/spec.py,
workbench/config.py, the xgboost and sklearn model specs); a broken file is a valid one with one
mistake in it: an unknown key, a value of the wrong type, a bad ratio, a value out of range, a
missing required key, or a file that is no mapping or no YAML. Sweep files the same way around a
valid pipeline. Exports mix the BigQuery types INT64, FLOAT64, BOOL, STRING, NUMERIC, TIMESTAMP and
DATE with nulls, NaN and ±inf, empty shards and shards whose schemas disagree.

Hypothesis runs with a fixed seed (``derandomize``), no example database, no shrinking (each example
is a subprocess) and few examples per property, so that the file stays within a few minutes on two
cores; a failure prints the example that failed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from workbench.config import DataSpec, MetricsSpec, SamplingSpec, SplitSpec
from workbench.data.synth import synth_bitcoin_export
from workbench.pipeline.spec import PipelineSpec
from workbench.stores.runs import RunStore
from workbench.sweep.plan import SweepSpec

from .helpers import TIMEOUT, assert_one_line_error

FAST = dict(deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def work(tmp_path_factory, client):
    root = tmp_path_factory.mktemp("properties")
    synth_bitcoin_export(root / "export", 3_000, positive_rate=0.1, rows_per_shard=1_500, seed=0)
    return SimpleNamespace(root=root, address=client.scheduler.address)


def command(work, *args) -> tuple[subprocess.CompletedProcess, Path]:
    """``workbench ARGS --connect <the session's cluster> --runs-dir R`` in a fresh directory of ``work``."""
    cwd = Path(tempfile.mkdtemp(dir=work.root, prefix="case-"))
    return cwd, [*args, "--connect", work.address, "--runs-dir", str(cwd / "R")]


def run(cwd: Path, files: dict[str, object], args: list) -> subprocess.CompletedProcess:
    for name, content in files.items():
        path = cwd / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True))
    proc = subprocess.run(["workbench", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr[-3000:])
    if proc.returncode == 2:
        assert_one_line_error(proc)
    return proc


def succeeded(cwd: Path, proc: subprocess.CompletedProcess, runs: int = 1) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunStore(cwd / "R").list()
    assert [r.status for r in records] == ["succeeded"] * runs, [(r.status, r.error) for r in records]
    for record in records:
        assert (Path(record.path) / record.artifacts["model"]).is_file()
    shutil.rmtree(cwd, ignore_errors=True)


def refused(cwd: Path, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr[-3000:])
    assert [r.status for r in RunStore(cwd / "R").list(status="running")] == []
    assert [str(p) for p in (cwd / "R").rglob("model.*")] == []  # no model file of a failed run
    shutil.rmtree(cwd, ignore_errors=True)


# ---------------------------------------------------------------- pipeline files from the schema


def _bounded(model, name: str, low: float, high: float):
    """Floats inside ``[low, high]`` and inside the field's own bounds (asserted, so that the test
    follows the schema if its bounds change)."""
    bounds = {type(m).__name__: m for m in model.model_fields[name].metadata}
    for kind, attr, check in (("Gt", "gt", lambda b: low > b), ("Ge", "ge", lambda b: low >= b),
                              ("Lt", "lt", lambda b: high < b), ("Le", "le", lambda b: high <= b)):
        if kind in bounds:
            assert check(getattr(bounds[kind], attr)), (model.__name__, name, bounds)
    return st.floats(low, high, allow_nan=False).map(lambda x: round(x, 4))


names = st.text(st.characters(categories=["L", "N"]) | st.sampled_from("-_ .:é"), min_size=1, max_size=16).filter(
    lambda s: s.strip() != "")
ratios = st.one_of(st.none(), st.integers(1, 8).map(lambda k: f"1:{k}"), st.floats(0.15, 1.0).map(lambda x: round(x, 3)))
xgboost_models = st.fixed_dictionaries(
    {"params": st.fixed_dictionaries({}, optional={"max_depth": st.integers(1, 5), "eta": st.floats(0.05, 0.5).map(
        lambda x: round(x, 3)), "min_child_weight": st.integers(0, 3)})},
    optional={"type": st.just("xgboost"), "num_boost_round": st.integers(1, 12),
              "early_stopping_rounds": st.none() | st.integers(1, 4),
              "scale_pos_weight": st.none() | st.just("auto") | st.floats(0.5, 4).map(lambda x: round(x, 2)),
              "seed": st.integers(0, 2**31 - 1), "memory": st.sampled_from(["auto", "in-memory"])})
sklearn_models = st.fixed_dictionaries(
    {"type": st.just("sklearn"), "estimator": st.sampled_from(["GaussianNB", "LogisticRegression"]),
     "preprocess": st.sampled_from([["impute"], ["impute", "scale"]])}, optional={"seed": st.integers(0, 99)})


@st.composite
def valid_pipelines(draw, path: str = "export/") -> dict:
    """A pipeline file with every section drawn inside the schema's bounds, for a small export."""
    split = draw(st.fixed_dictionaries({}, optional={
        "test_size": _bounded(SplitSpec, "test_size", 0.15, 0.4),
        "validation_size": st.just(0) | _bounded(SplitSpec, "validation_size", 0.1, 0.3),
        "seed": st.integers(0, 2**31 - 1)}))
    validation = split.get("validation_size", SplitSpec().validation_size) > 0
    thresholds = st.sampled_from(["auto"]) | _bounded(MetricsSpec, "threshold", 0.0, 1.0)
    if validation:
        thresholds |= st.just("f1")
    metrics = draw(st.fixed_dictionaries({"bootstrap": st.integers(10, 30)}, optional={
        "threshold": thresholds,
        "at_k": st.lists(st.integers(1, 50) | st.floats(0.01, 0.5).map(lambda x: round(x, 3)), min_size=1, max_size=3),
        "level": _bounded(MetricsSpec, "level", 0.8, 0.99),
        "pr_interval": st.sampled_from(["bootstrap", "logit"]),
        "calibration_bins": st.integers(2, 12),
        "save_scores": st.sampled_from(["auto", True, False]),
        "plots": st.sampled_from([False, False, False, True]),  # plots take a while: one in four
        "importances": st.integers(0, 5)}))
    spec = {"name": draw(names),
            "data": {"path": draw(st.sampled_from([path, [f"{path}btc_addresses-000000000000.parquet",
                                                          f"{path}btc_addresses-000000000001.parquet"]])),
                     "target": "is_miner", "drop": ["address"],
                     **draw(st.fixed_dictionaries({}, optional={"persist": st.sampled_from([True, False, "auto"]),
                                                                "infinite": st.sampled_from(["error", "missing"]),
                                                                "partition_size": st.sampled_from(["64MiB", 100_000])}))},
            "split": split,
            "sampling": draw(st.fixed_dictionaries({}, optional={"ratio": ratios, "seed": st.integers(0, 99),
                                                                 "correct_probabilities": st.booleans()})),
            "model": draw(st.one_of(xgboost_models, sklearn_models) if draw(st.integers(0, 4)) == 0 else xgboost_models),
            "metrics": metrics}
    if draw(st.booleans()):
        spec["cluster"] = "local"  # what the file names; --connect wins
    PipelineSpec.model_validate(spec)  # the strategy is right about the schema
    return spec


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    yield path


def _set(spec: dict, path: tuple, value) -> dict:
    node = spec
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return spec


def _delete(spec: dict, path: tuple) -> dict:
    node = spec
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return spec


SECTIONS = {(): PipelineSpec, ("data",): DataSpec, ("split",): SplitSpec, ("sampling",): SamplingSpec,
            ("metrics",): MetricsSpec}
OUT_OF_RANGE = [(("split", "test_size"), [0, 1, -0.2, 1.5]), (("split", "validation_size"), [1, -0.1, 2]),
                (("metrics", "level"), [0, 1, 95]), (("metrics", "bootstrap"), [0, 9, -1]),
                (("metrics", "calibration_bins"), [1, 101]), (("metrics", "threshold"), [-0.1, 1.01, "best"]),
                (("metrics", "at_k"), [[0], [-3], [1.5], []]), (("metrics", "importances"), [-1]),
                (("data", "infinite"), ["zero", "nan"]), (("data", "persist"), ["sometimes"]),
                (("model", "num_boost_round"), [0, -5]), (("model", "early_stopping_rounds"), [0]),
                (("model", "params", "max_depth"), [-1, "deep"]), (("model", "params", "eta"), [-0.5, "fast"]),
                (("model", "memory"), ["disk"]), (("model", "type"), ["xgbost", "catboost"]),
                (("data", "partition_size"), ["lots", "12 parsecs"]),
                (("model", "params", "objective"), ["binary:logitraw", "multi:softprob", "reg:squarederror"])]
BAD_RATIOS = ["10:1", "1:0", "1:-3", "one to ten", "1/10", 0, -0.5, 1.5, 10, True, ""]


@st.composite
def broken_pipelines(draw) -> tuple[str, object]:
    """(what is wrong, the file's content): a valid pipeline with one mistake, or no pipeline at all."""
    spec = draw(valid_pipelines())
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "bad_ratio", "out_of_range", "missing", "not_a_file",
                                 "estimator_value"]))
    if kind == "estimator_value":  # refused by scikit-learn only when it fits, unless checked before
        spec["model"] = {"type": "sklearn", "estimator": "LogisticRegression", "preprocess": ["impute"],
                         "params": draw(st.sampled_from([{"C": -1}, {"penalty": "l3"}, {"max_iter": 0}]))}
        return kind, spec
    if kind == "unknown_key":
        where = draw(st.sampled_from(sorted(SECTIONS)))
        known = set(SECTIONS[where].model_fields)
        key = draw(st.from_regex(r"[a-z][a-z_]{1,12}", fullmatch=True).filter(lambda k: k not in known))
        if where and where[0] not in spec:
            spec[where[0]] = {}
        return kind, _set(spec, (*where, key), draw(st.integers() | st.text(max_size=5) | st.booleans()))
    if kind == "wrong_type":
        path = draw(st.sampled_from([p for p in _leaves(spec) if p and p != ("model",)]))
        return kind, _set(spec, path, {"unexpected": [1, 2]})
    if kind == "bad_ratio":
        spec.setdefault("sampling", {})
        return kind, _set(spec, ("sampling", "ratio"), draw(st.sampled_from(BAD_RATIOS)))
    if kind == "out_of_range":
        path, values = draw(st.sampled_from(OUT_OF_RANGE))
        if path[0] == "model":
            spec["model"] = {"params": {}} if path[1] != "type" else {}
        spec.setdefault(path[0], {})
        return kind, _set(spec, path, draw(st.sampled_from(values)))
    if kind == "missing":
        return kind, _delete(spec, draw(st.sampled_from([("name",), ("data",), ("data", "path"), ("data", "target")])))
    return kind, draw(st.sampled_from(["", "- a\n- list\n", "just text\n", "name: [unclosed\n", "name: x\n\tdata: y\n",
                                       b"\x89PNG\r\n\x1a\n\x00\x00binary", "name: x\ndata: {path: nowhere/, target: y}\n"]))


LISTED = {"name": "listed", "data": {"path": ["export/btc_addresses-000000000000.parquet",
                                              "export/btc_addresses-000000000001.parquet"],
                                     "target": "is_miner", "drop": ["address"]},
          "model": {"num_boost_round": 3}, "metrics": {"bootstrap": 10}}


@settings(max_examples=4, **FAST)
@given(spec=valid_pipelines())
@example(spec=LISTED)  # relative shard files named one by one: once unreadable to a cluster started elsewhere
def test_a_valid_pipeline_file_trains(work, spec):
    cwd, args = command(work, "run", "p.yaml")
    (cwd / "export").symlink_to(work.root / "export")
    succeeded(cwd, run(cwd, {"p.yaml": spec}, args))


BASE = {"name": "b", "data": {"path": "export/", "target": "is_miner", "drop": ["address"]}}


@settings(max_examples=10, **FAST)
@given(case=broken_pipelines())
@example(case=("estimator_value", {**BASE, "model": {"type": "sklearn", "estimator": "LogisticRegression",
                                                     "preprocess": ["impute"], "params": {"C": -1}}}))
@example(case=("out_of_range", {**BASE, "model": {"params": {"objective": "binary:logitraw"}}}))
@example(case=("out_of_range", {**BASE, "data": {**BASE["data"], "partition_size": "lots"}}))
def test_a_broken_pipeline_file_is_one_line_and_exit_2(work, case):
    kind, content = case
    cwd, args = command(work, "run", "p.yaml")
    (cwd / "export").symlink_to(work.root / "export")
    refused(cwd, run(cwd, {"p.yaml": content}, args))


# ---------------------------------------------------------------- sweep files


@st.composite
def valid_sweeps(draw) -> dict:
    pipeline = draw(valid_pipelines())
    pipeline["model"] = {"params": {"max_depth": 2}, "num_boost_round": draw(st.integers(2, 5))}
    pipeline["metrics"] = {"bootstrap": 10, "plots": False, "importances": 0}
    axis = draw(st.sampled_from([{}, {"sampling.ratio": ["1:1", "1:3"]}, {"model.num_boost_round": [2, 3]},
                                 {"model.params.max_depth": [2]}, {"split.seed": [0, 1]}]))
    sweep = {"name": draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,12}", fullmatch=True)),
             "pipeline": pipeline, "axes": axis, "trials": 1 if axis else draw(st.integers(1, 2)),
             **draw(st.fixed_dictionaries({}, optional={"timeout": st.sampled_from([120, "5m", "300s"]),
                                                        "retries": st.integers(0, 1), "seeds": st.integers(0, 50),
                                                        "metrics": st.sampled_from([["roc_auc"], ["pr_auc", "f1"]])}))}
    SweepSpec.model_validate(sweep)
    return sweep


SWEEP_MISTAKES = [
    ("unknown key", lambda s: {**s, "trails": 3}),
    ("empty axis", lambda s: {**s, "axes": {"sampling.ratio": []}}),
    ("value twice", lambda s: {**s, "axes": {"sampling.ratio": ["1:2", "1:2"]}}),
    ("axis not a pipeline key", lambda s: {**s, "axes": {"sampling.ration": ["1:2"]}}),
    ("axis key malformed", lambda s: {**s, "axes": {"sampling..ratio": ["1:2"]}}),
    ("bad ratio on the axis", lambda s: {**s, "axes": {"sampling.ratio": ["1:2", "10:1"]}}),
    ("bad value on the axis", lambda s: {**s, "axes": {"split.test_size": [0.2, 1.5]}}),
    ("zero trials", lambda s: {**s, "trials": 0}),
    ("bad name", lambda s: {**s, "name": "no spaces please"}),
    ("bad timeout", lambda s: {**s, "timeout": "soon"}),
    ("negative retries", lambda s: {**s, "retries": -1}),
    ("no seeds", lambda s: {**s, "seeds": []}),
    ("unknown design", lambda s: {**s, "design": "random"}),
    ("pipeline file missing", lambda s: {**s, "pipeline": "nowhere.yaml"}),
    ("pipeline not a mapping", lambda s: {**s, "pipeline": [1, 2]}),
    ("broken pipeline", lambda s: {**s, "pipeline": {**s["pipeline"], "sampler": {}}}),
    ("workers and nodes", lambda s: {**s, "axes": {"workers": [1], "nodes": [1]}}),
    ("not a mapping", lambda s: ["a", "list"]),
]


@settings(max_examples=2, **FAST)
@given(sweep=valid_sweeps())
def test_a_valid_sweep_file_runs_every_cell(work, sweep):
    cwd, args = command(work, "sweep", "s.yaml")
    (cwd / "export").symlink_to(work.root / "export")
    proc = run(cwd, {"s.yaml": sweep}, args)
    cells = max(1, len(next(iter(sweep["axes"].values()), [None]))) * sweep["trials"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{cells} succeeded and 0 failed" in proc.stdout, proc.stdout
    succeeded(cwd, proc, runs=cells)


@settings(max_examples=8, **FAST)
@given(sweep=valid_sweeps(), mistake=st.sampled_from(SWEEP_MISTAKES))
def test_a_broken_sweep_file_is_one_line_and_exit_2(work, sweep, mistake):
    cwd, args = command(work, "sweep", "s.yaml")
    (cwd / "export").symlink_to(work.root / "export")
    refused(cwd, run(cwd, {"s.yaml": mistake[1](sweep)}, args))


# ---------------------------------------------------------------- Parquet exports of BigQuery types

TYPES = {
    "INT64": pa.int64(), "FLOAT64": pa.float64(), "BOOL": pa.bool_(), "STRING": pa.string(),
    "NUMERIC": pa.decimal128(38, 9), "TIMESTAMP": pa.timestamp("us"), "DATE": pa.date32(),
}
EPOCH = dt.datetime(2020, 1, 1)


def _values(kind: str, rng: np.random.Generator, n: int, label: np.ndarray, *, nulls: float, specials: bool) -> pa.Array:
    signal = label * 2.0 + rng.normal(size=n)
    if kind == "INT64":
        values = list(np.round(signal * 10).astype(np.int64).tolist())
    elif kind == "FLOAT64":
        values = signal.tolist()
        if specials and n:
            for i in rng.choice(n, size=min(n, 3), replace=False):
                values[i] = float(rng.choice([np.nan, np.inf, -np.inf]))
    elif kind == "BOOL":
        values = (signal > 1).tolist()
    elif kind == "STRING":
        values = [f"s{int(v * 3)}" for v in signal]
    elif kind == "NUMERIC":
        values = [decimal.Decimal(f"{v:.9f}") for v in signal]
    elif kind == "TIMESTAMP":
        values = [EPOCH + dt.timedelta(seconds=float(v) * 86_400) for v in signal]
    else:
        values = [(EPOCH + dt.timedelta(days=float(v) * 30)).date() for v in signal]
    mask = rng.random(n) < nulls
    return pa.array([None if m else v for v, m in zip(values, mask)], type=TYPES[kind])


@st.composite
def exports(draw, clean: bool):
    """(shards as pyarrow tables, data.infinite): ``clean`` ones hold one schema, no ±inf unless
    data.infinite is missing, and a target with both classes in every shard that has rows."""
    columns = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=4))
    if clean:
        columns = ["FLOAT64", *columns]  # at least one feature with values
    shards = draw(st.integers(1, 3))
    sizes = [draw(st.sampled_from([0, 150, 200]) if clean else st.sampled_from([0, 1, 5, 60, 200]))
             for _ in range(shards)]
    if clean and sum(sizes) < 300:
        sizes.append(300)
    nulls = draw(st.sampled_from([0.0, 0.1, 0.5]))
    specials = draw(st.booleans())
    infinite = draw(st.sampled_from(["error", "missing"]))
    if clean and specials:
        infinite = "missing"
    drift = not clean and draw(st.booleans())
    target = "BOOL" if clean else draw(st.sampled_from(["BOOL", "BOOL", "INT64", "STRING", "all null", "constant"]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    tables = []
    for s, n in enumerate(sizes):
        label = (rng.random(n) < 0.3).astype(np.int8)
        if n >= 2:
            label[:2] = [0, 1]
        fields = {f"c{i}_{kind.lower()}": _values(kind, rng, n, label, nulls=nulls, specials=specials)
                  for i, kind in enumerate(columns)}
        if drift and s == len(sizes) - 1:
            name = draw(st.sampled_from(sorted(fields)))
            how = draw(st.sampled_from(["missing", "retyped"]))
            if how == "missing" and len(fields) > 1:
                del fields[name]
            else:
                fields[name] = pa.array([None if v is None else str(v) for v in fields[name].to_pylist()], pa.string())
        if target == "BOOL":
            fields["is_miner"] = pa.array(label.astype(bool))
        elif target == "INT64":
            fields["is_miner"] = pa.array(label.astype(np.int64))
        elif target == "STRING":
            fields["is_miner"] = pa.array(np.where(label, "yes", "no"))
        elif target == "all null":
            fields["is_miner"] = pa.nulls(n, pa.bool_())
        else:
            fields["is_miner"] = pa.array(np.zeros(n, dtype=bool))
        tables.append(pa.table(fields))
    return tables, infinite


def _export_case(work, tables, infinite, statistics=True, model=None):
    cwd, args = command(work, "run", "p.yaml")
    (cwd / "export").mkdir()
    for i, table in enumerate(tables):
        pq.write_table(table, cwd / "export" / f"t-{i:012d}.parquet", write_statistics=statistics)
    spec = {"name": "types", "data": {"path": "export/", "target": "is_miner", "infinite": infinite},
            "split": {"test_size": 0.25, "validation_size": 0.2}, "sampling": {"ratio": "1:2"},
            "model": model or {"params": {"max_depth": 2}, "num_boost_round": 5},
            "metrics": {"bootstrap": 10, "plots": False, "importances": 3, "threshold": 0.5}}
    return cwd, run(cwd, {"p.yaml": spec}, args)


@settings(max_examples=4, **FAST)
@given(export=exports(clean=True), statistics=st.booleans())
def test_an_export_of_bigquery_types_trains(work, export, statistics):
    tables, infinite = export
    cwd, proc = _export_case(work, tables, infinite, statistics)
    succeeded(cwd, proc)


NO_FEATURE = [pa.table({"s": pa.array(["a", "b"] * 100), "is_miner": pa.array([False, True] * 100)})]
WITH_NULLS = [pa.table({"x": pa.array([None if i % 3 == 0 else float(i % 7) for i in range(200)]),
                        "is_miner": pa.array([i % 4 == 0 for i in range(200)])})]
NO_IMPUTE = {"type": "sklearn", "estimator": "LogisticRegression"}


@settings(max_examples=6, **FAST)
@given(export=exports(clean=False), statistics=st.booleans(), model=st.sampled_from([None, None, NO_IMPUTE]))
@example(export=(NO_FEATURE, "error"), statistics=True, model=None)  # once an IndexError (exit 1)
@example(export=(WITH_NULLS, "error"), statistics=True, model=NO_IMPUTE)  # once a ValueError from the worker (exit 1)
def test_any_export_ends_in_0_or_2_without_a_traceback(work, export, statistics, model):
    tables, infinite = export
    cwd, proc = _export_case(work, tables, infinite, statistics, model)
    if proc.returncode == 0:
        succeeded(cwd, proc)
    else:
        refused(cwd, proc)
