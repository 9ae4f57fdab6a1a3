"""XGBoost parameters checked by XGBoost itself: typos with a suggestion, parameters of another
booster or objective, refused values, and the pipeline-file errors at the key's own line."""

from __future__ import annotations

import time
import warnings

import pytest
import xgboost
import yaml

from workbench.errors import ConfigError
from workbench.pipeline import load_pipeline
from workbench.train import DEFAULT_PARAMS
from workbench.train._xgb_params import (
    _probe,
    check_xgboost_params,
    param_problems,
    unknown_params,
    xgboost_parameter_names,
)

# ---------------------------------------------------------------- what XGBoost knows


@pytest.mark.parametrize("params", [
    {},
    dict(DEFAULT_PARAMS),
    {"eval_metric": ["logloss", "auc", "aucpr"], "seed": 3, "nthread": 4},
    {"eval_metric": "auc", "n_jobs": 2, "random_state": 1},
    # documented aliases, each accepted by XGBoost
    {"eta": 0.1, "learning_rate": 0.1, "alpha": 1, "reg_alpha": 1, "lambda": 1, "reg_lambda": 1,
     "gamma": 0.5, "min_split_loss": 0.5},
    {"max_bin": 64, "scale_pos_weight": 3.0, "subsample": 0.8, "colsample_bytree": 0.5, "min_child_weight": 2,
     "max_delta_step": 1, "grow_policy": "lossguide", "max_leaves": 31, "tree_method": "approx"},
    {"verbosity": 0, "validate_parameters": False, "device": "cpu", "max_cached_hist_node": 1024},
    # more constraints than the probe's two features: not a refusal
    {"monotone_constraints": "(1,0,0,-1,0)", "interaction_constraints": [[0, 3], [1, 2, 4]]},
    {"booster": "dart", "rate_drop": 0.1, "skip_drop": 0.5},
    {"booster": "gblinear", "feature_selector": "shuffle", "updater": "coord_descent"},
    {"objective": "reg:tweedie", "tweedie_variance_power": 1.5},
], ids=lambda p: ",".join(p) or "empty")
def test_parameters_xgboost_uses_pass(params):
    assert param_problems(params) == []
    assert unknown_params(params) == []
    check_xgboost_params(params)


@pytest.mark.parametrize("typo, meant", [
    ("max_dept", "max_depth"),
    ("maxdepth", "max_depth"),
    ("lamda", "lambda"),
    ("learningrate", "learning_rate"),
    ("colsample_by_tree", "colsample_bytree"),
    ("min_child_weigth", "min_child_weight"),
    ("subsampel", "subsample"),
    ("scale_pos_weigth", "scale_pos_weight"),
    ("eval_metrics", "eval_metric"),
])
def test_a_typo_is_unknown_with_a_suggestion(typo, meant):
    assert unknown_params({"max_depth": 4, typo: 1}) == [(typo, meant)]
    [problem] = param_problems({typo: 1})
    assert (problem.key, problem.kind) == (typo, "unknown")
    assert problem.describe() == f"unknown XGBoost parameter (did you mean {meant!r}?)"


def test_a_name_like_nothing_is_unknown_without_a_suggestion():
    assert unknown_params({"zzqqxx": 1, "eta": 0.2}) == [("zzqqxx", None)]
    [problem] = param_problems({"zzqqxx": 1})
    assert problem.describe().startswith("unknown XGBoost parameter (see https://xgboost.readthedocs.io")
    assert "did you mean" not in problem.describe()


def test_every_unknown_key_is_reported_in_the_order_given():
    assert unknown_params({"zeta": 1, "max_depth": 3, "max_dept": 6}) == [("zeta", "eta"), ("max_dept", "max_depth")]


def test_a_verbosity_of_zero_does_not_hide_a_typo_nor_change_the_global_one():
    before = xgboost.get_config()["verbosity"]
    assert unknown_params({"verbosity": 0, "max_dept": 6}) == [("max_dept", "max_depth")]
    assert xgboost.get_config()["verbosity"] == before


def test_a_parameter_of_another_objective_is_not_used():
    # tweedie_variance_power is XGBoost's, but binary:logistic (the workbench's default) ignores it
    [problem] = param_problems({"tweedie_variance_power": 1.5})
    assert problem.kind == "unused"
    assert problem.describe() == ("XGBoost does not use this parameter with booster 'gbtree' "
                                  "and objective 'binary:logistic'")
    assert unknown_params({"tweedie_variance_power": 1.5}) == [("tweedie_variance_power", None)]
    assert param_problems({"tweedie_variance_power": 1.5}, defaults={"objective": "reg:tweedie"}) == []


@pytest.mark.parametrize("key, meant", [("n_estimators", "num_boost_round"), ("num_boost_round", "num_boost_round"),
                                        ("early_stopping_rounds", "early_stopping_rounds")])
def test_a_training_argument_in_params_points_beside_params(key, meant):
    [problem] = param_problems({key: 10})
    assert problem.kind == "outside"
    assert problem.describe() == f"not an XGBoost parameter (did you mean {meant!r}, beside params?)"


def test_the_suggested_names_come_from_xgboost_s_configuration():
    names = xgboost_parameter_names()
    # tree, linear and dart boosters, objectives with parameters, aliases, and what save_config lacks
    assert {"max_depth", "eta", "learning_rate", "reg_alpha", "alpha", "min_split_loss", "gamma", "feature_selector",
            "rate_drop", "tweedie_variance_power", "huber_slope", "eval_metric", "verbosity"} <= names
    assert not {"name", "max_dept", "n_estimators", "gbtree_train_param"} & names


# ---------------------------------------------------------------- refused values


@pytest.mark.parametrize("params, key, words", [
    ({"max_depth": -1}, "max_depth", "value -1 for Parameter max_depth should be greater equal to 0"),
    ({"objective": "nope"}, "objective", "Unknown objective function: `nope`"),
    ({"eta": -1}, "eta", "value -1 for Parameter learning_rate should be greater equal to 0"),
    ({"subsample": 2}, "subsample", "value 2 for Parameter subsample exceed bound [0,1]"),
    ({"tree_method": "gpu_hist"}, "tree_method", "Invalid Input: 'gpu_hist', valid values are:"),
    ({"eval_metric": ["auc", "nope"]}, "eval_metric", "Unknown metric function nope"),
    ({"max_depth": "six"}, "max_depth", "Invalid Parameter format for max_depth expect int but value='six'"),
    # refused only together: the key the message names is the one at fault
    ({"objective": "reg:tweedie", "tweedie_variance_power": 5}, "tweedie_variance_power",
     "value 5 for Parameter tweedie_variance_power exceed bound [1,2]"),
])
def test_a_refused_value_is_one_line_at_its_key(params, key, words):
    [problem] = param_problems(params)
    assert (problem.key, problem.kind) == (key, "value")
    assert words in problem.detail
    assert "\n" not in problem.detail and "Stack trace" not in problem.detail and ".cc:" not in problem.detail
    with pytest.raises(ConfigError) as info:
        check_xgboost_params(params)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_refused_value_does_not_hide_a_typo_beside_it():
    assert [(p.key, p.kind) for p in param_problems({"max_depth": -1, "max_dept": 3})] == \
        [("max_depth", "value"), ("max_dept", "unknown")]


# ---------------------------------------------------------------- the Python API's check


def test_check_xgboost_params_is_a_one_line_config_error():
    with pytest.raises(ConfigError) as info:
        check_xgboost_params({"max_dept": 6})
    assert info.value.problem == "unknown XGBoost parameter 'max_dept' in params"
    assert info.value.fix == "did you mean 'max_depth'?"
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match=r"params\['n_estimators'\] is not an XGBoost parameter; "
                                          r"pass num_boost_round= to the training function instead"):
        check_xgboost_params({"n_estimators": 100})
    check_xgboost_params(None)


def test_numpy_scalars_from_python_code_are_values_like_any_other():
    import numpy as np

    check_xgboost_params({"max_depth": np.int64(6), "eta": np.float32(0.1), "max_bin": np.array(64)})
    with pytest.raises(ConfigError, match=r"params\['max_depth'\] = np.int64\(-1\): value -1 for Parameter"):
        check_xgboost_params({"max_depth": np.int64(-1)})


# ---------------------------------------------------------------- cheap and quiet


def test_checked_once_then_cached_and_fast():
    param_problems({"max_depth": 5})  # XGBoost, its configuration names and the probe's DMatrix are ready
    started = time.perf_counter()
    first = param_problems({"max_depth": 5, "min_child_weigth": 7.25})
    assert time.perf_counter() - started < 0.2
    misses = _probe.cache_info().misses
    assert param_problems({"min_child_weigth": 7.25, "max_depth": 5}) == first  # key order does not matter
    assert _probe.cache_info().misses == misses


def test_the_check_leaks_no_xgboost_warning_or_output(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert unknown_params({"max_deptt": 2, "device": "cuda"})
    assert caught == []
    assert capfd.readouterr() == ("", "")


# ---------------------------------------------------------------- in a pipeline file


def write(tmp_path, model_yaml: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"name: x\ndata:\n  path: a.parquet\n  target: t\nmodel:\n{model_yaml}")
    return path


def test_a_typo_in_params_names_the_line_of_the_key(tmp_path):
    path = write(tmp_path, "  params:\n    eta: 0.3\n    max_dept: 6\n  num_boost_round: 20\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    assert str(info.value) == (f"{path}:8: model.params.max_dept: unknown XGBoost parameter (did you mean 'max_depth'?); "
                               "fix `model.params.max_dept` (see docs/pipeline.md)")
    assert path.read_text().splitlines()[7].strip() == "max_dept: 6"


def test_a_refused_value_in_params_names_its_line(tmp_path):
    path = write(tmp_path, "  params:\n    objective: nope\n")
    with pytest.raises(ConfigError, match=r"pipeline\.yaml:7: model\.params\.objective: XGBoost refuses this value: "
                                          r"Unknown objective function: `nope`; fix"):
        load_pipeline(path)


def test_valid_params_load(tmp_path):
    spec = load_pipeline(write(tmp_path, "  params:\n    max_depth: 4\n    learning_rate: 0.2\n    lambda: 2\n"))
    assert spec.model.params == {"max_depth": 4, "learning_rate": 0.2, "lambda": 2}


def test_halving_grid_keys_and_values_name_their_line(tmp_path):
    grid = "  type: xgboost_halving\n  grid:\n    max_depth: [3, 6]\n    subsampel: [0.5, 1.0]\n"
    with pytest.raises(ConfigError, match=r":9: model\.grid\.subsampel: unknown XGBoost parameter "
                                          r"\(did you mean 'subsample'\?\)"):
        load_pipeline(write(tmp_path, grid))
    values = "  type: xgboost_halving\n  grid:\n    max_depth: [3, 6]\n    subsample:\n      - 0.5\n      - 2\n"
    with pytest.raises(ConfigError, match=r":11: model\.grid\.subsample\.1: XGBoost refuses this value: "
                                          r"value 2 for Parameter subsample exceed bound"):
        load_pipeline(write(tmp_path, values))
    rounds = "  type: xgboost_halving\n  grid:\n    max_depth: [3, 6]\n    n_estimators: [100]\n"
    with pytest.raises(ConfigError, match=r"model\.grid\.n_estimators: not an XGBoost parameter "
                                          r"\(did you mean 'max_rounds', beside grid\?\)"):
        load_pipeline(write(tmp_path, rounds))


def test_halving_candidate_list_names_the_candidate_s_key(tmp_path):
    model = {"type": "xgboost_halving", "grid": [{"max_depth": 3}, {"max_depth": 4, "colsample_bytre": 0.5}]}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "data": {"path": "a", "target": "t"}, "model": model}, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    line = int(str(info.value).split(":")[1])
    assert path.read_text().splitlines()[line - 1].strip() == "colsample_bytre: 0.5"
    assert "model.grid.1.colsample_bytre: unknown XGBoost parameter (did you mean 'colsample_bytree'?)" in str(info.value)
    ok = {"type": "xgboost_halving", "grid": {"max_depth": [3, 6], "eta": [0.1, 0.3]}}
    path.write_text(yaml.safe_dump({"name": "x", "data": {"path": "a", "target": "t"}, "model": ok}))
    assert load_pipeline(path).model.grid == ok["grid"]
