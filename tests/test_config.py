"""Pipeline files and cluster profiles: YAML → pydantic, with errors that point at the line."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import dask.config
import pytest
from pydantic import ValidationError

from workbench.cluster import LocalProfile, describe, load_profile, make_cluster
from workbench.config import DataSpec, SamplingSpec, load_yaml, validate
from workbench.errors import ClusterError, ConfigError, WorkbenchError
from workbench.pipeline import PipelineSpec, load_pipeline

MINIMAL = """\
name: minimal
data:
  path: exports/btc-*.parquet
  target: is_miner
"""


def write(directory: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert "\n" not in message
    return info.value


# ---------------------------------------------------------------- load_yaml


def test_load_yaml_indexes_the_line_of_every_key(tmp_path):
    path = write(
        tmp_path,
        """\
        # a comment
        name: lines

        data:
          path: [a.parquet, b.parquet]
          target: y
          synth:
            rows: 10
        model:
          params:
            max_depth: 3
        """,
    )
    data, lines = load_yaml(path)
    assert data["data"]["synth"] == {"rows": 10}
    assert lines[("name",)] == 2
    assert lines[("data",)] == 4
    assert lines[("data", "path")] == 5
    assert lines[("data", "path", 1)] == 5
    assert lines[("data", "target")] == 6
    assert lines[("data", "synth", "rows")] == 8
    assert lines[("model", "params", "max_depth")] == 11


def test_load_yaml_of_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"pipeline file '.*nosuch\.yaml' does not exist; check the path"):
        load_yaml(tmp_path / "nosuch.yaml", "pipeline file")


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = write(tmp_path, "name: broken\ndata:\n  path: a.parquet\n  target: [y\nsplit:\n  seed: 0\n")
    error = config_error(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: invalid YAML \(", str(error))
    line = int(re.match(rf"{re.escape(str(path))}:(\d+):", str(error)).group(1))
    assert 4 <= line <= 6


def test_tab_indentation_is_invalid_yaml_at_its_line(tmp_path):
    path = write(tmp_path, "name: tabs\ndata:\n\tpath: a.parquet\n")
    error = config_error(path)
    assert str(error).startswith(f"{path}:3: invalid YAML")


def test_a_file_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path, "- name: x\n- data: y\n")
    with pytest.raises(ConfigError, match=r"expected a mapping of keys, found list"):
        load_pipeline(path)
    empty = write(tmp_path, "", "empty.yaml")
    with pytest.raises(ConfigError, match=r"expected a mapping of keys, found NoneType"):
        load_pipeline(empty)


# ---------------------------------------------------------------- validation


def test_defaults_are_filled_in(tmp_path):
    spec = load_pipeline(write(tmp_path, MINIMAL))
    assert isinstance(spec, PipelineSpec)
    assert spec.name == "minimal"
    assert spec.cluster == "local"
    assert spec.runs_dir is None
    assert spec.data.path == "exports/btc-*.parquet"
    assert spec.data.target == "is_miner"
    assert spec.data.drop == []
    assert spec.data.positive is None
    assert spec.data.persist == "auto"
    assert spec.data.synth is None
    assert (spec.split.test_size, spec.split.validation_size, spec.split.seed) == (0.2, 0.1, 0)
    assert (spec.sampling.ratio, spec.sampling.seed, spec.sampling.correct_probabilities) == (None, 0, True)
    assert spec.model.type == "xgboost"
    assert spec.model.params == {}
    assert (spec.model.num_boost_round, spec.model.early_stopping_rounds) == (200, 20)
    assert spec.model.scale_pos_weight is None
    assert spec.metrics.threshold == "auto"  # F1 on the validation set when there is one, else 0.5


def test_synth_defaults(tmp_path):
    spec = load_pipeline(write(tmp_path, MINIMAL + "  synth:\n    rows: 1000\n"))
    synth = spec.data.synth
    assert synth.rows == 1000
    assert (synth.positive_rate, synth.signal, synth.seed) == (0.005, 1.0, 0)
    assert (synth.rows_per_shard, synth.table) == (250_000, "btc_addresses")


def test_the_quickstart_pipeline_is_valid():
    path = Path(__file__).resolve().parents[1] / "pipelines" / "quickstart.yaml"
    spec = load_pipeline(path)
    assert spec.name == "quickstart"
    assert spec.sampling.ratio == "1:10"
    assert spec.data.synth is not None and spec.data.synth.rows >= 1
    assert spec.model.early_stopping_rounds == 20


def test_a_bad_nested_value_names_key_and_line(tmp_path):
    path = write(tmp_path, MINIMAL + "split:\n  seed: 1\n  test_size: 2\n")
    error = config_error(path)
    assert str(error).startswith(f"{path}:7: split.test_size: ")
    assert "less than 1" in str(error)
    assert "fix `split.test_size`" in str(error)


def test_a_wrong_type_deep_inside_names_its_line(tmp_path):
    path = write(tmp_path, MINIMAL + "  synth:\n    rows: lots\n")
    error = config_error(path)
    assert str(error).startswith(f"{path}:6: data.synth.rows: ")
    assert "integer" in str(error)


def test_union_member_tags_are_not_part_of_the_key(tmp_path):
    path = write(tmp_path, MINIMAL + "model:\n  scale_pos_weight: automatic\n")
    error = config_error(path)
    assert str(error).startswith(f"{path}:6: model.scale_pos_weight: ")
    assert "model.scale_pos_weight:" in str(error)
    assert "literal" not in str(error).split(": ")[1]


def test_an_unknown_model_type_names_its_line_and_the_types(tmp_path):
    path = write(tmp_path, MINIMAL + "model:\n  seed: 1\n  type: sklern\n")
    error = str(config_error(path))
    assert error.startswith(f"{path}:7: model.type: unknown model type 'sklern' (did you mean 'sklearn'?); "
                            "model types are xgboost, sklearn, ")


def test_the_model_section_is_validated_by_its_type(tmp_path):
    spec = load_pipeline(write(tmp_path, MINIMAL + "model:\n  type: sklearn\n  estimator: GaussianNB\n"))
    assert type(spec.model).__name__ == "SklearnModel"
    assert spec.model_dump(mode="json")["model"] == {
        "estimator": "GaussianNB", "params": {}, "preprocess": [], "type": "sklearn", "seed": 0}
    assert type(load_pipeline(write(tmp_path, MINIMAL)).model).__name__ == "XGBoostModel"


def test_a_negative_scale_pos_weight_is_refused(tmp_path):
    error = config_error(write(tmp_path, MINIMAL + "model:\n  scale_pos_weight: -1\n"))
    assert "model.scale_pos_weight" in str(error)


@pytest.mark.parametrize(
    "extra, key, line, suggestion",
    [
        ("model:\n  num_boost_rounds: 10\n", "model.num_boost_rounds", 6, "num_boost_round"),
        ("split:\n  seed: 0\n  tset_size: 0.3\n", "split.tset_size", 7, "test_size"),
        ("sampling:\n  ratoi: '1:5'\n", "sampling.ratoi", 6, "ratio"),
        ("  taget: y\n", "data.taget", 5, "target"),
        ("  synth:\n    rows: 5\n    positive_rat: 0.1\n", "data.synth.positive_rat", 7, "positive_rate"),
        ("runsdir: r\n", "runsdir", 5, "runs_dir"),
    ],
)
def test_an_unknown_key_names_key_line_and_close_match(tmp_path, extra, key, line, suggestion):
    path = write(tmp_path, MINIMAL + extra)
    error = config_error(path)
    assert str(error).startswith(f"{path}:{line}: {key}: unknown key (did you mean {suggestion!r}?)")


@pytest.mark.parametrize(
    "extra, key, home",
    [
        ("split:\n  ratio: '1:5'\n", "split.ratio", "sampling"),
        ("model:\n  test_size: 0.3\n", "model.test_size", "split"),
        ("model:\n  type: sklearn\n  estimator: GaussianNB\n  test_size: 0.3\n", "model.test_size", "split"),
    ],
    ids=["ratio-under-split", "test_size-under-xgboost-model", "test_size-under-sklearn-model"],
)
def test_a_misplaced_key_names_the_section_it_belongs_under(tmp_path, extra, key, home):
    """A key of another section is still unknown here: the fix is where it belongs, not the same name back."""
    path = write(tmp_path, MINIMAL + extra)
    error = str(config_error(path))
    line = MINIMAL.count("\n") + extra.count("\n")  # the misplaced key is the last line
    assert error.startswith(f"{path}:{line}: {key}: unknown key (it belongs under {home!r});"), error


def test_an_unknown_key_without_a_close_match(tmp_path):
    error = config_error(write(tmp_path, MINIMAL + "zzzzzz: 1\n"))
    assert ": zzzzzz: unknown key;" in str(error)
    assert "did you mean" not in str(error)


def test_an_unknown_key_is_reported_before_a_missing_one(tmp_path):
    # synth lacks its required `rows` and has a misspelt key: the misspelling is the real mistake.
    path = write(tmp_path, MINIMAL + "  synth:\n    row: 5\n")
    error = config_error(path)
    assert str(error).startswith(f"{path}:6: data.synth.row: unknown key (did you mean 'rows'?)")


def test_a_missing_required_key(tmp_path):
    path = write(tmp_path, "name: x\nsplit:\n  seed: 0\ndata:\n  path: a.parquet\n")
    error = config_error(path)
    assert str(error).startswith(f"{path}:4: data.target: required key is missing")


def test_a_missing_required_section(tmp_path):
    path = write(tmp_path, "name: x\nsplit:\n  seed: 0\n")
    error = config_error(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: data: required key is missing", str(error))


@pytest.mark.parametrize("ratio, value", [("'1:5'", "1:5"), ("'1: 2.5'", "1: 2.5"), ("0.1", 0.1), ("1", 1),
                                          ("null", None)])
def test_valid_ratios(tmp_path, ratio, value):
    spec = load_pipeline(write(tmp_path, MINIMAL + f"sampling:\n  ratio: {ratio}\n"))
    assert spec.sampling.ratio == value


def test_no_ratio_means_no_under_sampling(tmp_path):
    assert load_pipeline(write(tmp_path, MINIMAL)).sampling.ratio is None


def test_an_unquoted_ratio_read_as_base_60_is_explained(tmp_path):
    path = write(tmp_path, MINIMAL + "sampling:\n  ratio: 1:10\n")
    error = str(config_error(path))
    assert error.startswith(f"{path}:6: sampling.ratio: ratio 70 is an integer")
    assert "base-60" in error and 'ratio: "1:10"' in error


@pytest.mark.parametrize(
    "ratio, expected",
    [
        ("'10:1'", "is not of the form '1:k'"),
        ("'1:0'", "is not of the form '1:k'"),
        ("'one to ten'", "is not of the form '1:k'"),
        ("1.5", "outside (0, 1]"),
        ("0", "outside (0, 1]"),
        ("-0.5", "outside (0, 1]"),
    ],
)
def test_invalid_ratios(tmp_path, ratio, expected):
    path = write(tmp_path, MINIMAL + f"sampling:\n  seed: 3\n  ratio: {ratio}\n")
    error = config_error(path)
    assert str(error).startswith(f"{path}:7: sampling.ratio: ")
    assert expected in str(error)
    assert "Value error" not in str(error)


def test_validate_directly_with_a_source_name():
    data = {"name": "x", "data": {"path": "a", "target": "y", "persist": "sometimes"}}
    lines = {(): 1, ("name",): 1, ("data",): 2, ("data", "path"): 3, ("data", "target"): 4, ("data", "persist"): 5}
    with pytest.raises(ConfigError) as info:
        validate(PipelineSpec, data, lines, "inline")
    assert str(info.value).startswith("inline:5: data.persist: ")
    spec = validate(SamplingSpec, {"ratio": "1:3"}, {}, "inline")
    assert spec.ratio == "1:3"
    with pytest.raises(ConfigError, match=r"^inline: drop: "):
        validate(DataSpec, {"path": "a", "target": "y", "drop": "address"}, {}, "inline")


def test_specs_are_frozen(tmp_path):
    spec = load_pipeline(write(tmp_path, MINIMAL))
    with pytest.raises(ValidationError, match="frozen_instance|Instance is frozen"):
        spec.name = "other"
    assert spec.name == "minimal"


# ---------------------------------------------------------------- cluster profiles


def test_builtin_local_profile_without_a_clusters_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profile = load_profile("local")
    assert profile == LocalProfile()
    assert load_profile(None) == LocalProfile()
    described = describe("local")
    assert described["type"] == "local"
    assert described["host"] == "127.0.0.1"
    assert described["n_workers"] == 1
    assert described["threads_per_worker"] == max(1, os.cpu_count() or 1)
    assert described["processes"] is True
    assert described["dashboard_address"] == "127.0.0.1:0"
    three = describe("local", workers=3)
    assert three["n_workers"] == 3
    assert three["threads_per_worker"] == max(1, (os.cpu_count() or 1) // 3)  # the cores are shared


def test_local_profile_from_the_repository_clusters_directory(monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    profile = load_profile("local")
    assert profile.host == "127.0.0.1"
    assert profile.n_workers == 1
    assert describe("local")["host"] == "127.0.0.1"


def test_profile_from_a_yaml_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "type: local\nn_workers: 3\nthreads_per_worker: 1\nmemory_limit: 1GiB\n", "big.yaml")
    profile = load_profile(path)
    assert (profile.n_workers, profile.threads_per_worker, profile.memory_limit) == (3, 1, "1GiB")
    described = describe(str(path))
    assert {k: described[k] for k in ("type", "n_workers", "threads_per_worker", "memory_limit")} == {
        "type": "local", "n_workers": 3, "threads_per_worker": 1, "memory_limit": "1GiB",
    }


@pytest.mark.parametrize("name", ["small", "small.yaml", "clusters/small.yaml"])
def test_profile_name_resolved_in_the_clusters_directory(tmp_path, monkeypatch, name):
    (tmp_path / "clusters").mkdir()
    write(tmp_path / "clusters", "n_workers: 2\nprocesses: false\n", "small.yaml")
    monkeypatch.chdir(tmp_path)
    profile = load_profile(name)
    assert profile.type == "local"
    assert (profile.n_workers, profile.processes) == (2, False)


def test_a_clusters_file_named_local_replaces_the_builtin(tmp_path, monkeypatch):
    (tmp_path / "clusters").mkdir()
    write(tmp_path / "clusters", "n_workers: 4\n", "local.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_profile("local").n_workers == 4


def test_an_unknown_profile_lists_the_known_ones(tmp_path, monkeypatch):
    (tmp_path / "clusters").mkdir()
    write(tmp_path / "clusters", "n_workers: 2\n", "small.yaml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_profile("nosuch")
    assert str(info.value) == (
        "unknown cluster profile 'nosuch'; give a profile file path or one of: local, small"
    )
    with pytest.raises(ConfigError, match="unknown cluster profile 'nosuch'"):
        describe("nosuch")


def test_an_unknown_cluster_type(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "# a batch cluster\ntype: torque\ncores: 8\n", "hpc.yaml")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(info.value) == f"{path}:2: type: unknown cluster type 'torque'; cluster types are local, slurm, pbs, sge, lsf, slurm-allocation; see docs/clusters/README.md"
    with pytest.raises(ConfigError, match="unknown cluster type 'htcondor'"):
        load_profile({"type": "htcondor"})


def test_an_unknown_profile_key_names_line_and_close_match(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "type: local\nhost: 127.0.0.1\nn_worker: 2\n", "typo.yaml")
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(info.value).startswith(f"{path}:3: n_worker: unknown key (did you mean 'n_workers'?)")


def test_a_bad_profile_value(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "n_workers: 0\n", "zero.yaml")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:1: n_workers: .*greater than or equal to 1"):
        load_profile(path)


def test_profile_from_a_mapping():
    assert load_profile({"n_workers": 2}).n_workers == 2
    with pytest.raises(ConfigError, match=r"^cluster profile: n_wrokers: unknown key \(did you mean 'n_workers'\?\)"):
        load_profile({"n_wrokers": 2})


def test_dask_config_supplies_defaults_that_a_profile_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = {
        "workbench.cluster.local.n_workers": 3,
        "workbench.cluster.local.memory_limit": "2GiB",
        "workbench.cluster.local.threads_per_worker": 1,
        "workbench.cluster.local.host": "127.0.0.1",
    }
    with dask.config.set(settings):
        from_config = describe("local")
        assert (from_config["n_workers"], from_config["memory_limit"], from_config["threads_per_worker"]) == (
            3, "2GiB", 1,
        )
        path = write(tmp_path, "n_workers: 2\nmemory_limit: 512MiB\n", "mine.yaml")
        overridden = describe(path)
        assert (overridden["n_workers"], overridden["memory_limit"]) == (2, "512MiB")
        assert overridden["threads_per_worker"] == 1  # not in the profile: from the Dask config
        assert describe(path, workers=5)["n_workers"] == 5
    assert describe("local")["memory_limit"] == "auto"  # the setting is gone again


def test_threads_default_to_the_cores_shared_between_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cores = os.cpu_count() or 1
    with dask.config.set({"workbench.cluster.local.n_workers": 2}):
        assert describe("local")["threads_per_worker"] == max(1, cores // 2)
    assert LocalProfile(n_workers=64).cluster_kwargs()["threads_per_worker"] == max(1, cores // 64)


def test_unset_dask_config_keys_are_left_out(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with dask.config.set({"workbench.cluster.local.dashboard_address": None}):
        assert "dashboard_address" not in describe("local")


def test_make_cluster_refuses_zero_workers_before_starting_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClusterError, match=r"--workers 0 is not a positive number"):
        make_cluster("local", workers=0)
    with pytest.raises(ClusterError, match=r"--workers -1 is not a positive number"):
        describe("local", workers=-1)
    assert issubclass(ClusterError, WorkbenchError)
