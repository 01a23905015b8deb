"""Experiment configs: YAML -> frozen dataclasses, validation, ``--set`` overrides, saving."""

import dataclasses
import os
import pickle

import pytest

from lstm_jax.config import (
    KEY_USERS,
    Config,
    ConfigError,
    ModelConfig,
    OptimConfig,
    TaskConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

# A stand-in for the lstm_jax.tasks registry: {task name: {parameter: default}}.
TASKS = {"adding": {"T": 50, "noise": 0.0, "curriculum": False}, "copy": {"length": 10, "alphabet": "abc"}}

EXAMPLE = """\
# lstm-jax train configs/adding.yaml
# Expected: test MSE < 0.01 (baseline 0.167) after ~3000 steps; about 2 minutes on one CPU.
name: adding_lstm
seed: 1
task:
  name: adding
  params: {T: 100}
model:
  hidden_size: 64
optim:
  learning_rate: 1e-3   # YAML 1.1 would read this as a string
  clip_norm: null
train:
  steps: 5000
"""


def load(data, overrides=()):
    return config_from_dict(data, overrides, tasks=TASKS)


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_with_header_comment_loads(tmp_path):
    c = load_config(write(tmp_path, EXAMPLE), tasks=TASKS)
    assert (c.name, c.seed, c.task.name, dict(c.task.params)) == ("adding_lstm", 1, "adding", {"T": 100})
    assert c.model.hidden_size == 64 and c.model.cell == "lstm"
    assert c.optim.learning_rate == 1e-3 and c.optim.clip_norm is None
    assert c.train.steps == 5000


def test_defaults():
    c = load({"task": {"name": "copy"}})
    assert c == Config(task=TaskConfig(name="copy"))
    assert (c.name, c.seed, dict(c.task.params)) == ("run", 0, {})
    assert c.model == ModelConfig() and c.model.recurrent_init == "orthogonal" and c.model.dtype == "float32"
    assert c.optim == OptimConfig() and c.optim.clip_norm == 1.0
    assert c.train.gradients == "autodiff" and c.train.eval_batches == 4


def test_int_is_accepted_where_a_float_is_expected():
    c = load({"task": {"name": "adding", "params": {"noise": 1}}, "model": {"forget_bias": 2}})
    assert c.model.forget_bias == 2.0 and isinstance(c.model.forget_bias, float)
    assert isinstance(c.task.params["noise"], float)


def test_round_trip(tmp_path):
    c = load(
        {
            "name": "1e3",  # a string that looks like a float must be quoted when saved
            "task": {"name": "copy", "params": {"length": 20, "alphabet": "0.5"}},
            "model": {"cell": "rnn", "activation": "relu", "bidirectional": True},
            "optim": {"name": "sgd", "learning_rate": 1e-10, "clip_norm": None},
        }
    )
    path = tmp_path / "resolved.yaml"
    save_config(c, path, header="lstm-jax train x.yaml\nresolved config")
    assert path.read_text().startswith("# lstm-jax train x.yaml\n# resolved config\nname: '1e3'\n")
    assert load_config(path, tasks=TASKS) == c
    assert config_from_dict(config_to_dict(c), tasks=TASKS) == c
    assert os.listdir(tmp_path) == ["resolved.yaml"]  # no temporary file left behind


def test_frozen_hashable_and_picklable():
    c = load({"task": {"name": "adding", "params": {"T": 5}}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.model.hidden_size = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.seed = 3
    with pytest.raises(TypeError):
        c.task.params["T"] = 6
    assert hash(c) == hash(load({"task": {"name": "adding", "params": {"T": 5}}}))
    assert pickle.loads(pickle.dumps(c)) == c
    assert dataclasses.replace(c, seed=2).seed == 2


@pytest.mark.parametrize(
    "data, message",
    [
        ({"model": {"hiden_size": 3}}, "unknown key 'model.hiden_size'; did you mean 'model.hidden_size'\\?"),
        ({"optimizer": {}}, "unknown key 'optimizer'; did you mean 'optim'\\?"),
        ({"model": {"zzz": 1}}, "unknown key 'model.zzz'; valid keys: cell, hidden_size, "),
        ({"model": {"hidden_size": "abc"}}, r"model.hidden_size: expected int, got str \('abc'\)"),
        ({"model": {"hidden_size": 64.0}}, r"model.hidden_size: expected int, got float \(64.0\)"),
        ({"model": {"num_layers": True}}, r"model.num_layers: expected int, got bool \(True\)"),
        ({"train": {"stop_when_solved": 1}}, r"train.stop_when_solved: expected bool, got int \(1\)"),
        ({"model": {"hidden_size": None}}, "model.hidden_size: expected int, got None"),
        ({"optim": {"clip_norm": "big"}}, r"optim.clip_norm: expected float or None, got str \('big'\)"),
        ({"model": 3}, r"model: expected a mapping, got int \(3\)"),
        (
            {"model": {"cell": "lsmt"}},
            r"model.cell: expected one of \['rnn', 'lstm', 'gru'\], got 'lsmt'; did you mean 'lstm'",
        ),
        ({"optim": {"name": "adamw2"}}, "optim.name: .*got 'adamw2'; did you mean 'adamw'"),
        ({"optim": {"schedule": "cosin"}}, "optim.schedule: .*did you mean 'cosine'"),
        ({"train": {"gradients": "manul"}}, "train.gradients: .*did you mean 'manual'"),
        ({"model": {"dtype": "float16"}}, r"model.dtype: expected one of \['float32', 'bfloat16', 'float64'\]"),
        ({"model": {"recurrent_init": "orthogonl"}}, "model.recurrent_init: .*did you mean 'orthogonal'"),
        ({"model": {"activation": "relu6"}}, "model.activation: .*did you mean 'relu'"),
        ({"model": {"hidden_size": 0}}, "model.hidden_size: must be >= 1, got 0"),
        (
            {"model": {"impl": "cudnn"}},
            r"model.impl: expected one of \['auto', 'fast', 'scan', 'pallas', 'pallas_interpret'\], got 'cudnn'",
        ),
        ({"model": {"remat": "all"}}, r"model.remat: expected one of \(None, 'step', 'sqrt'\) or a chunk length"),
        ({"model": {"remat": 0}}, r"model.remat: expected one of .* or a chunk length >= 1, got 0"),
        ({"model": {"remat": 2.5}}, r"model.remat: expected str or int or None, got float \(2.5\)"),
        ({"model": {"remat": "step", "impl": "fast"}}, "model.remat: expected None, 'sqrt' or a chunk length with"),
        ({"model": {"truncate": 0}}, "model.truncate: must be >= 1, got 0"),
        ({"model": {"truncate": 4, "remat": 5}}, "model.remat: expected None or the chunk length 4 of truncate"),
        ({"model": {"unroll": 0}}, "model.unroll: must be >= 1, got 0"),
        (
            {"model": {"compute_dtype": "int8"}},
            r"model.compute_dtype: expected one of \['bfloat16', 'float16'\], got 'int8'",
        ),
        (
            {"model": {"compute_dtype": "bfloat16", "impl": "scan"}},
            "model.compute_dtype: expected None unless the fast path runs",
        ),
        ({"model": {"proj_size": 0}}, "model.proj_size: must be >= 1, got 0"),
        ({"model": {"proj_size": 2.0}}, r"model.proj_size: expected int or None, got float \(2.0\)"),
        (
            {"model": {"proj_size": 16, "hidden_size": 16}},
            r"model.proj_size: must be < model.hidden_size \(16\), got 16$",
        ),
        ({"model": {"peepholes": "yes"}}, r"model.peepholes: expected bool, got str \('yes'\)"),
        ({"model": {"layer_norm": 1}}, r"model.layer_norm: expected bool, got int \(1\)"),
        (
            {"model": {"layer_norm": True, "impl": "pallas_interpret"}},
            r"model.impl: expected 'auto', 'fast' or 'scan' for lstm\(layer_norm=True\) \(Pallas kernels: LSTM only\)",
        ),
        ({"train": {"batch_size": -1}}, "train.batch_size: must be >= 1, got -1"),
        ({"train": {"log_every": 0}}, "train.log_every: must be >= 1, got 0"),
        ({"optim": {"learning_rate": 0}}, "optim.learning_rate: must be > 0, got 0.0"),
        ({"optim": {"clip_norm": -1.0}}, "optim.clip_norm: must be > 0, got -1.0"),
        ({"optim": {"warmup_steps": -1}}, "optim.warmup_steps: must be >= 0, got -1"),
        (
            {"optim": {"schedule": "warmup_cosine", "warmup_steps": 11}, "train": {"steps": 10}},
            r"optim.warmup_steps: must be <= train.steps \(10\)",
        ),
    ],
)
def test_invalid_values_name_the_key_path(data, message):
    with pytest.raises(ConfigError, match="^config: " + message):
        load({"task": {"name": "adding"}, **data})


@pytest.mark.parametrize(
    "optim, message",
    [
        (
            {"momentum": 0.5},
            r"optim.momentum: expected the default 0.9 with optim.name 'adam' \(only optim.name "
            r"'rmsprop' or 'sgd' uses it\), got 0.5$",
        ),
        ({"name": "adamw", "momentum": 0.0}, r"optim.momentum: expected the default 0.9 with optim.name 'adamw'"),
        (
            {"weight_decay": 1e-4},
            r"optim.weight_decay: expected the default 0.0 with optim.name 'adam' \(only "
            r"optim.name 'adamw' uses it\), got 0.0001$",
        ),
        ({"name": "sgd", "weight_decay": 0.1}, r"optim.weight_decay: expected the default 0.0 with optim.name 'sgd'"),
        (
            {"warmup_steps": 5},
            r"optim.warmup_steps: expected the default 0 with optim.schedule 'constant' \(only "
            r"optim.schedule 'warmup_cosine' uses it\), got 5$",
        ),
        (
            {"schedule": "cosine", "decay_rate": 0.9},
            r"optim.decay_rate: expected the default 0.5 with optim.schedule "
            r"'cosine' \(only optim.schedule 'exponential' uses it\), got 0.9$",
        ),
        (
            {"schedule": "warmup_cosine", "decay_steps": 10},
            r"optim.decay_steps: expected the default 1000 with "
            r"optim.schedule 'warmup_cosine'",
        ),
    ],
)
def test_a_key_the_chosen_optimiser_or_schedule_ignores_must_keep_its_default(optim, message):
    _assert_unused_key_rejected("optim", optim, message)


def _assert_unused_key_rejected(section: str, keys: dict, message: str) -> None:
    """From YAML data, from ``--set`` overrides and from the section's dataclass, the same error."""
    with pytest.raises(ConfigError, match="^config: " + message):
        load({"task": {"name": "adding"}, section: keys})
    with pytest.raises(ConfigError, match="^config: " + message):  # --set overrides too
        load({"task": {"name": "adding"}}, [f"{section}.{k}={v}" for k, v in keys.items()])
    with pytest.raises(ConfigError, match="^config: " + message):
        {"optim": OptimConfig, "model": ModelConfig}[section](**keys)


@pytest.mark.parametrize(
    "optim",
    [
        {"name": "sgd", "momentum": 0.5},
        {"name": "rmsprop", "momentum": 0.0},
        {"name": "adamw", "weight_decay": 1e-4},
        {"schedule": "warmup_cosine", "warmup_steps": 5},
        {"schedule": "exponential", "decay_rate": 0.9, "decay_steps": 10},
        {"name": "adam", "momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 0, "decay_rate": 0.5},  # defaults
    ],
)
def test_a_key_the_chosen_optimiser_or_schedule_uses_is_accepted(optim):
    c = load({"task": {"name": "adding"}, "optim": optim})
    assert all(getattr(c.optim, k) == v for k, v in optim.items())
    assert config_from_dict(config_to_dict(c), tasks=TASKS) == c  # as saved: every key, defaults included


@pytest.mark.parametrize(
    "model, message",
    [
        (
            {"activation": "relu"},
            r"model.activation: expected the default 'tanh' with model.cell 'lstm' \(only model.cell 'rnn' "
            r"uses it\), got 'relu'$",
        ),
        (
            {"cell": "rnn", "forget_bias": 2.0},
            r"model.forget_bias: expected the default 1.0 with model.cell 'rnn' \(only model.cell 'lstm' "
            r"uses it\), got 2.0$",
        ),
        (
            {"cell": "lstm", "update_bias": 1.0},
            r"model.update_bias: expected the default 0.0 with model.cell 'lstm' \(only model.cell 'gru' "
            r"uses it\), got 1.0$",
        ),
        (
            {"input_features": 64},
            r"model.input_features: expected the default 32 with model.input_layer 'none' \(only "
            r"model.input_layer 'dense' or 'embedding' uses it\), got 64$",
        ),
        (
            {"cell": "rnn", "proj_size": 4},
            r"model.proj_size: expected the default None with model.cell 'rnn' \(only model.cell 'lstm' "
            r"uses it\), got 4$",
        ),
        (
            {"cell": "gru", "proj_size": 4},
            r"model.proj_size: expected the default None with model.cell 'gru' \(only model.cell 'lstm' "
            r"uses it\), got 4$",
        ),
        (
            {"cell": "rnn", "peepholes": True},
            r"model.peepholes: expected the default False with model.cell 'rnn' \(only model.cell 'lstm' "
            r"uses it\), got True$",
        ),
        (
            {"cell": "gru", "peepholes": True},
            r"model.peepholes: expected the default False with model.cell 'gru' \(only model.cell 'lstm'",
        ),
        (
            {"cell": "rnn", "layer_norm": True},
            r"model.layer_norm: expected the default False with model.cell 'rnn' \(only model.cell 'lstm'",
        ),
        (
            {"cell": "gru", "layer_norm": True},
            r"model.layer_norm: expected the default False with model.cell 'gru' \(only model.cell 'lstm' "
            r"uses it\), got True$",
        ),
    ],
)
def test_a_key_the_chosen_cell_or_input_layer_ignores_must_keep_its_default(model, message):
    _assert_unused_key_rejected("model", model, message)


@pytest.mark.parametrize(
    "model",
    [
        {"cell": "rnn", "activation": "relu"},
        {"cell": "lstm", "forget_bias": 2.0},
        {"cell": "gru", "update_bias": 1.0},
        {"cell": "lstm", "proj_size": 4},
        {"cell": "lstm", "peepholes": True},
        {"cell": "lstm", "layer_norm": True},
        {"cell": "lstm", "proj_size": 127, "peepholes": True, "layer_norm": True, "forget_bias": 0.5},
        {"cell": "gru", "proj_size": None, "peepholes": False, "layer_norm": False},  # defaults, spelled out
        {"input_layer": "dense", "input_features": 64},
        {"input_layer": "embedding", "input_features": 8},
        {"cell": "rnn", "activation": "tanh", "forget_bias": 1.0, "input_features": 32},  # defaults, spelled out
    ],
)
def test_a_key_the_chosen_cell_or_input_layer_uses_is_accepted(model):
    c = load({"task": {"name": "adding"}, "model": model})
    assert all(getattr(c.model, k) == v for k, v in model.items())
    assert config_from_dict(config_to_dict(c), tasks=TASKS) == c


def test_key_users_name_fields_and_choices_of_their_section():
    """One table for both sections: each key and its chooser are fields, and the users are choices of the chooser."""
    sections = {"optim": OptimConfig, "model": ModelConfig}
    assert set(KEY_USERS) == set(sections)
    for section, table in KEY_USERS.items():
        fields = {f.name: f for f in dataclasses.fields(sections[section])}
        for key, (chooser, users) in table.items():
            assert key in fields and chooser in fields, (section, key)
            assert users and set(users) < set(fields[chooser].metadata["choices"]), (section, key)


@pytest.mark.parametrize(
    "task, message",
    [
        ({}, "missing required key 'task.name'"),
        ({"name": "addng"}, "task.name: expected one of \\['adding', 'copy'\\], got 'addng'; did you mean 'adding'"),
        ({"name": "adding", "params": {"t": 5}}, "unknown key 'task.params.t'; did you mean 'task.params.T'"),
        ({"name": "adding", "params": {"T": 5.5}}, r"task.params.T: expected int, got float \(5.5\)"),
        ({"name": "adding", "params": {"curriculum": "yes"}}, r"task.params.curriculum: expected bool, got str"),
        ({"name": "adding", "params": {"T": [1]}}, r"task.params.T: expected int or float or str or bool, got list"),
    ],
)
def test_invalid_tasks(task, message):
    with pytest.raises(ConfigError, match="^config: " + message):
        load({"task": task})


def test_direct_construction_is_validated_too():
    with pytest.raises(ConfigError, match="^config: model.hidden_size: must be >= 1, got 0$"):
        ModelConfig(hidden_size=0)
    with pytest.raises(ConfigError, match="^config: model: expected ModelConfig, got dict"):
        Config(task=TaskConfig(name="adding"), model={})


def test_overrides():
    data = {"task": {"name": "adding", "params": {"T": 50}}, "model": {"hidden_size": 32}}
    c = load(
        data,
        [
            "model.hidden_size=64",
            "model.num_layers = 2",
            "optim.learning_rate=1e-3",
            "optim.weight_decay=-0.0",
            "optim.clip_norm=null",
            "model.bidirectional=true",
            "train.stop_when_solved=false",
            "task.params.T=200",
            "task.params.noise=1",
            "name=adding_T200",
        ],
    )
    assert (c.model.hidden_size, c.model.num_layers, c.model.bidirectional) == (64, 2, True)
    assert c.optim.learning_rate == 1e-3 and c.optim.clip_norm is None and c.train.stop_when_solved is False
    assert dict(c.task.params) == {"T": 200, "noise": 1.0} and c.name == "adding_T200"
    assert data == {"task": {"name": "adding", "params": {"T": 50}}, "model": {"hidden_size": 32}}  # not modified


def test_overrides_create_sections():
    assert apply_overrides({}, ["task.params.T=7", "optim.learning_rate=2.5e-4"]) == {
        "task": {"params": {"T": 7}},
        "optim": {"learning_rate": 2.5e-4},
    }


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.hidden_size", "--set model.hidden_size: expected key=value"),
        ("=3", "--set =3: expected key=value"),
        (
            "model.hiden_size=3",
            "--set model.hiden_size=3: unknown key 'model.hiden_size'; did you mean 'model.hidden_size'",
        ),
        ("modle.cell=rnn", "--set modle.cell=rnn: unknown key 'modle'; did you mean 'model'"),
        ("model.hidden_size.x=3", "--set model.hidden_size.x=3: 'model.hidden_size' has no sub-keys"),
        ("model.hidden_size=[1", "--set model.hidden_size=\\[1: invalid YAML"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match="^config: " + message):
        apply_overrides({}, [override])


def test_overrides_pass_the_same_validation():
    with pytest.raises(ConfigError, match=r"^config: model.hidden_size: expected int, got str \('abc'\)$"):
        load({"task": {"name": "adding"}}, ["model.hidden_size=abc"])
    with pytest.raises(ConfigError, match="^config: unknown key 'task.params.TT'; did you mean 'task.params.T'"):
        load({"task": {"name": "adding"}}, ["task.params.TT=3"])


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="^config: no such file: .*missing.yaml$"):
        load_config(tmp_path / "missing.yaml")
    bad = write(tmp_path, "# header\nmodel:\n  hidden_size: [1, 2\ntrain: {}\n")
    with pytest.raises(ConfigError, match=r"^config: .*c.yaml:4:\d+: invalid YAML: ") as info:
        load_config(bad)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="^config: .*c.yaml:3:1: invalid YAML: duplicate key 'model'"):
        load_config(write(tmp_path, "model: {}\ntask: {name: adding}\nmodel: {}\n"))
    with pytest.raises(ConfigError, match=r"^config: .*c.yaml: expected a mapping at the top level, got list"):
        load_config(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="^config: .*c.yaml: expected a mapping at the top level, got an empty file"):
        load_config(write(tmp_path, "# only a comment\n"))


def test_the_task_registry_is_used_by_default():
    tasks = pytest.importorskip("lstm_jax.tasks")
    try:
        names = tasks.task_names()
    except ImportError:
        pytest.skip("the task modules are not importable yet")
    assert config_from_dict({"task": {"name": names[0]}}).task.name == names[0]
    with pytest.raises(ConfigError, match="^config: task.name: expected one of"):
        config_from_dict({"task": {"name": "no_such_task"}})


@pytest.mark.parametrize(
    "model",
    [
        {"remat": "sqrt"},
        {"remat": 10},
        {"remat": "step", "impl": "scan"},
        {"truncate": 20},
        {"unroll": None},
        {"compute_dtype": "bfloat16"},
    ],
)
def test_fast_path_options_are_accepted_and_round_trip(model, tmp_path):
    config = load({"task": {"name": "adding"}, "model": model})
    for key, value in model.items():
        assert getattr(config.model, key) == value
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


def test_lstm_options_reach_the_model_spec_and_the_cell():
    """``model.proj_size``, ``model.peepholes`` and ``model.layer_norm`` are the registry's options of the LSTM:
    each is in ``KEY_USERS`` (so any other cell rejects it by name) and reaches ``lstm_cell``."""
    from lstm_jax import registry
    from lstm_jax.cells import lstm_cell
    from lstm_jax.models import ModelSpec, get_cell
    from lstm_jax.tasks import make_task
    from lstm_jax.train import model_spec

    assert set(registry.OPTIONS) <= set(ModelSpec._fields) & {f.name for f in dataclasses.fields(ModelConfig)}
    options = {"proj_size": 4, "peepholes": True, "layer_norm": True}
    for key in options:
        assert KEY_USERS["model"][key] == ("cell", ("lstm",)) and key in registry.cell_type("lstm").options
    config = load({"task": {"name": "adding"}, "model": {"hidden_size": 8, **options}})
    spec = model_spec(config, make_task("adding", T=5))
    assert {key: getattr(spec, key) for key in options} == options
    assert get_cell(spec) is lstm_cell(**options)
