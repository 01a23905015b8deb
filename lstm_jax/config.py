r"""Experiment configs: YAML files loaded into typed, frozen dataclasses.

One YAML file per experiment; ``lstm-jax train CONFIG.yaml --set model.hidden_size=64`` loads it
with :func:`load_config`. Every key is checked: unknown keys, wrong types, unknown choices and
out-of-range values raise :class:`ConfigError`, one line that names the key path and, for a typo,
suggests the nearest valid name. ``--set`` overrides are merged into the YAML data *before*
validation, so they pass the same checks. :func:`save_config` writes the resolved config, which
:func:`load_config` reads back to an equal object.

YAML is read with PyYAML's safe loader plus one fix: ``1e-3`` is a float (YAML 1.2), not the
string YAML 1.1 makes of it. Values are never coerced, except that an int is accepted (and stored
as a float) where a float is expected.

Example::

    cfg = load_config("configs/adding.yaml", ["optim.learning_rate=3e-4", "task.params.T=200"])
    cfg.model.hidden_size, cfg.task.params["T"]
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from lstm_jax.cells import ACTIVATIONS
from lstm_jax.dropout import Dropout
from lstm_jax.init import INITIALIZERS
from lstm_jax.models import CELL_OPTIONS, CELLS, DTYPES, INPUT_LAYERS, ModelSpec, get_cell
from lstm_jax.registry import key_users
from lstm_jax.rundir import write_atomic
from lstm_jax.unroll import IMPLS, check_noise, check_options

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")
GRADIENTS = ("autodiff", "manual")
#: The keys that only some choices use, per section: ``{section: {key: (the key that chooses, the
#: choices that use it)}}``. Any other choice must leave the key at its default, so that a setting
#: never silently does nothing (``optim``: see ``train.make_optimizer``; ``model``: ``models.init_model``).
KEY_USERS = {
    "optim": {
        "momentum": ("name", ("rmsprop", "sgd")),
        "weight_decay": ("name", ("adamw",)),
        "warmup_steps": ("schedule", ("warmup_cosine",)),
        "decay_rate": ("schedule", ("exponential",)),
        "decay_steps": ("schedule", ("exponential",)),
    },
    "model": {
        # lstm_jax.registry: activation (rnn); proj_size, peepholes, layer_norm, forget_bias (lstm); update_bias (gru)
        **{key: ("cell", cells) for key, cells in key_users().items()},
        "zoneout_c": ("cell", ("lstm",)),  # zoneout of the LSTM's cell state
        "input_features": ("input_layer", ("dense", "embedding")),
    },
}
OPTIM_KEY_USERS = KEY_USERS["optim"]
MODEL_KEY_USERS = KEY_USERS["model"]

Scalar = typing.Union[int, float, str, bool]


class ConfigError(ValueError):
    """A config that cannot be read or is invalid; the message is one line starting ``config:``."""


class FrozenMapping(Mapping):
    """A read-only, hashable, picklable mapping: the ``params`` of a :class:`TaskConfig`."""

    __slots__ = ("_items",)

    def __init__(self, items=()):
        self._items = dict(items)

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self):
        return iter(self._items)

    def __len__(self):
        return len(self._items)

    def __hash__(self):
        return hash(frozenset(self._items.items()))

    def __repr__(self):
        return f"FrozenMapping({self._items!r})"


def _field(default=dataclasses.MISSING, *, choices=(), ge=None, gt=None, le=None, lt=None):
    """A dataclass field with its allowed ``choices`` and bounds (``value >= ge``, ``value > gt``, ...)."""
    return field(default=default, metadata={"choices": tuple(choices), "ge": ge, "gt": gt, "le": le, "lt": lt})


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskConfig:
    """The task, built by ``lstm_jax.tasks.make_task(name, **params)``."""

    _PATH: ClassVar[str] = "task."
    name: str = _field()
    params: Mapping[str, Scalar] = field(default_factory=FrozenMapping)

    def __post_init__(self):
        _validate(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """The recurrent network; ``cell`` is ``"lstm"``, ``"rnn"`` or ``"gru"`` (:data:`lstm_jax.registry.CELLS`).
    ``activation`` is for the RNN only; ``forget_bias`` and the LSTM's options ``proj_size`` (``< hidden_size``,
    as PyTorch), ``peepholes`` and ``layer_norm`` (:func:`lstm_jax.cells.lstm_cell`) for the LSTM only;
    ``input_features`` for an input layer only (:data:`MODEL_KEY_USERS`): otherwise they keep their defaults."""

    _PATH: ClassVar[str] = "model."
    cell: str = _field("lstm", choices=CELLS)
    hidden_size: int = _field(128, ge=1)
    num_layers: int = _field(1, ge=1)
    bidirectional: bool = False
    activation: str = _field("tanh", choices=ACTIVATIONS)
    forget_bias: float = 1.0
    update_bias: float = 0.0  # GRU: b_u, the update gate's bias (1: keep 73% of h_{t-1} at the start)
    proj_size: int | None = _field(None, ge=1)  # LSTM: h_t = W_hr (o_t ⊙ tanh c_t) of proj_size units (PyTorch's)
    peepholes: bool = False  # LSTM: c_{t-1} -> i, f and c_t -> o (Gers & Schmidhuber 2000)
    layer_norm: bool = False  # LSTM: layer normalisation of both pre-activations and of c_t (haste's LayerNormLSTM)
    recurrent_init: str = _field("orthogonal", choices=INITIALIZERS)
    recurrent_scale: float = _field(1.0, ge=0)
    input_init: str = _field("fan_in", choices=INITIALIZERS)
    unroll: int | None = _field(None, ge=1)  # lax.scan unroll; None: tuned per backend (unroll.DEFAULT_UNROLL)
    impl: str = _field("auto", choices=IMPLS)  # "auto" (fast path), "fast", "scan" (reference), "pallas" (GPU, LSTM)
    remat: str | int | None = None  # None, "step", "sqrt" or a chunk length: checkpointing for long T
    truncate: int | None = _field(None, ge=1)  # truncated BPTT: gradients reach back at most this many steps
    compute_dtype: str | None = _field(None, choices=("bfloat16", "float16"))  # matmul operands (fast path)
    dtype: str = _field("float32", choices=tuple(DTYPES))
    input_layer: str = _field("none", choices=INPUT_LAYERS)  # before the first recurrent layer
    input_features: int = _field(32, ge=1)  # its output size (dense or embedding only)
    # Regularisation (lstm_jax.dropout), off at evaluation: rates in [0, 1)
    dropout: float = _field(0.0, ge=0, lt=1)  # between stacked layers, a mask per step (PyTorch's dropout)
    input_dropout: float = _field(0.0, ge=0, lt=1)  # each layer's inputs, one mask per sequence (Keras's dropout)
    recurrent_dropout: float = _field(0.0, ge=0, lt=1)  # h_{t-1} before W_hh, one mask per sequence
    zoneout_h: float = _field(0.0, ge=0, lt=1)  # zoneout of the hidden state (Krueger et al. 2017)
    zoneout_c: float = _field(0.0, ge=0, lt=1)  # zoneout of the LSTM's cell state

    def dropout_rates(self) -> Dropout:
        """The regularisers' rates as :class:`lstm_jax.dropout.Dropout`."""
        return Dropout(self.dropout, self.input_dropout, self.recurrent_dropout, self.zoneout_h, self.zoneout_c)

    def __post_init__(self):
        _validate(self)
        _check_used(self)
        if self.dropout and self.num_layers == 1:
            raise ConfigError(
                f"config: model.dropout: acts between stacked layers: expected 0 with model.num_layers = 1, "
                f"got {self.dropout}"
            )
        if self.proj_size is not None and self.proj_size >= self.hidden_size:
            raise ConfigError(
                f"config: model.proj_size: must be < model.hidden_size ({self.hidden_size}), got {self.proj_size}"
            )
        options = {name: getattr(self, name) for name in CELL_OPTIONS}
        cell = get_cell(ModelSpec(cell=self.cell, **options))
        try:  # the unroll's own check of impl/remat/truncate/dropout, so the rules live in one place
            options = check_options(
                cell, impl=self.impl, remat=self.remat, truncate=self.truncate, compute_dtype=self.compute_dtype
            )
            check_noise(cell, self.dropout_rates(), None, False, options)
        except ValueError as error:
            raise ConfigError(f"config: model.{error}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimConfig:
    """The optax optimiser, its learning-rate schedule and global-norm clipping (``None``: off).

    ``momentum`` is for ``rmsprop`` and ``sgd``, ``weight_decay`` for ``adamw``, ``warmup_steps``
    for the ``warmup_cosine`` schedule, ``decay_rate`` and ``decay_steps`` for ``exponential``
    (:data:`OPTIM_KEY_USERS`); with any other choice they must keep their defaults.
    """

    _PATH: ClassVar[str] = "optim."
    name: str = _field("adam", choices=OPTIMIZERS)
    learning_rate: float = _field(1e-3, gt=0)
    momentum: float = _field(0.9, ge=0)
    weight_decay: float = _field(0.0, ge=0)
    schedule: str = _field("constant", choices=SCHEDULES)
    warmup_steps: int = _field(0, ge=0)
    decay_rate: float = _field(0.5, gt=0)
    decay_steps: int = _field(1000, ge=1)
    clip_norm: float | None = _field(1.0, gt=0)

    def __post_init__(self):
        _validate(self)
        _check_used(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """The training loop: steps, batches, evaluation, checkpoints and logging."""

    _PATH: ClassVar[str] = "train."
    steps: int = _field(1000, ge=1)
    batch_size: int = _field(64, ge=1, le=2**31 - 1)  # int32 sizes inside the jitted batch
    eval_every: int = _field(100, ge=1)
    eval_batches: int = _field(4, ge=1)  # generated tasks; a real-data task is scored on its whole test split
    checkpoint_every: int = _field(500, ge=1)
    gradients: str = _field("autodiff", choices=GRADIENTS)
    stop_when_solved: bool = True
    log_every: int = _field(10, ge=1)  # progress-bar updates (each reads the loss back from the device)
    tensorboard: bool = False  # TensorBoard event files in <run>/tensorboard (pip install 'lstm_jax[tensorboard]')

    def __post_init__(self):
        _validate(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """A whole experiment; ``name`` is the run directory's default name."""

    _PATH: ClassVar[str] = ""
    name: str = "run"
    seed: int = _field(0, ge=0, le=2**32 - 1)  # jax.random.key takes a uint32
    task: TaskConfig = _field()
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        _validate(self)
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ConfigError(f"config: name: expected a directory name, got {self.name!r}")
        if self.optim.warmup_steps > self.train.steps:
            raise ConfigError(
                f"config: optim.warmup_steps: must be <= train.steps ({self.train.steps}), got {self.optim.warmup_steps}"
            )


# ----------------------------------------------------------------------------------------------
# Validation


def _got(value) -> str:
    return "None" if value is None else f"{type(value).__name__} ({value!r})"


def _did_you_mean(word: str, candidates: Sequence[str], prefix: str = "") -> str:
    """``"; did you mean 'prefix+match'?"`` for the closest candidate (ignoring case), else ``""``."""
    lower = {c.lower(): c for c in reversed(candidates)}
    close = difflib.get_close_matches(str(word).lower(), list(lower), n=1)
    return f"; did you mean {prefix + lower[close[0]]!r}?" if close else ""


def _check_scalar(path: str, value, tp):
    """``value`` if it has type ``tp`` (bool is not an int; an int is made a float); else raise."""
    allowed = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    for t in allowed:
        if t is type(None) and value is None:
            return None
        if t is float and isinstance(value, float) and not math.isfinite(value):
            continue  # rejected below with its own message
        if t is not type(None) and isinstance(value, t) and not (t is int and isinstance(value, bool)):
            return value
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value) and float in allowed:
        raise ConfigError(f"config: {path}: expected a finite float, got {value!r}")
    expected = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
    raise ConfigError(f"config: {path}: expected {expected}, got {_got(value)}")


def _check_field(path: str, value, f: dataclasses.Field) -> None:
    """Check ``value`` against the ``choices`` and bounds in the metadata of field ``f``."""
    choices, ge, gt, le, lt = (f.metadata.get(k) for k in ("choices", "ge", "gt", "le", "lt"))
    if choices and value is not None and value not in choices:  # None passed the type check: Optional
        hint = _did_you_mean(value, choices)
        raise ConfigError(f"config: {path}: expected one of {list(choices)}, got {value!r}{hint}")
    if value is None:
        return
    if ge is not None and not value >= ge:
        raise ConfigError(f"config: {path}: must be >= {ge}, got {value!r}")
    if gt is not None and not value > gt:
        raise ConfigError(f"config: {path}: must be > {gt}, got {value!r}")
    if le is not None and not value <= le:
        raise ConfigError(f"config: {path}: must be <= {le}, got {value!r}")
    if lt is not None and not value < lt:
        raise ConfigError(f"config: {path}: must be < {lt}, got {value!r}")


def _validate(obj) -> None:
    """Check every field of a config dataclass; ints become floats and mappings frozen, in place."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        path, value, tp = obj._PATH + f.name, getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, tp):
                raise ConfigError(f"config: {path}: expected {tp.__name__}, got {_got(value)}")
        elif typing.get_origin(tp) is Mapping:
            if not isinstance(value, Mapping):
                raise ConfigError(f"config: {path}: expected a mapping, got {_got(value)}")
            _, value_type = typing.get_args(tp)
            for k in value:
                _check_scalar(f"{path} key", k, str)
            value = FrozenMapping({k: _check_scalar(f"{path}.{k}", v, value_type) for k, v in value.items()})
        else:
            value = _check_scalar(path, value, tp)
            _check_field(path, value, f)
        object.__setattr__(obj, f.name, value)


def _check_used(section) -> None:
    """Raise if a key of :data:`KEY_USERS` is not at its default while the section's choice ignores it."""
    defaults, path = {f.name: f.default for f in dataclasses.fields(section)}, section._PATH
    for key, (chooser, users) in KEY_USERS[path.rstrip(".")].items():
        value, chosen = getattr(section, key), getattr(section, chooser)
        if chosen not in users and value != defaults[key]:
            raise ConfigError(
                f"config: {path}{key}: expected the default {defaults[key]!r} with {path}{chooser} {chosen!r} "
                f"(only {path}{chooser} {' or '.join(map(repr, users))} uses it), got {value!r}"
            )


def _unknown_key(path: str, key: str, valid: Sequence[str]) -> str:
    hint = _did_you_mean(key, valid, path) or f"; valid keys: {', '.join(valid)}"
    return f"unknown key {path + key!r}{hint}"


def _build(cls, data, path: str):
    """The dataclass ``cls`` from the mapping ``data`` found at ``path`` (``""`` or ``"model."``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: {path.rstrip('.') or 'top level'}: expected a mapping, got {_got(data)}")
    fields, hints = {f.name: f for f in dataclasses.fields(cls)}, typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"config: {_unknown_key(path, str(key), list(fields))}")
    kwargs = {}
    for name, f in fields.items():
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], data.get(name, {}), f"{path}{name}.")
        elif name in data:
            kwargs[name] = data[name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"config: missing required key {path + name!r}")
    return cls(**kwargs)


def _task_registry() -> dict[str, dict[str, object]] | None:
    """``{task name: {parameter: default}}`` from :mod:`lstm_jax.tasks`, or None if it cannot be imported."""
    try:
        from lstm_jax import tasks

        return {name: tasks.task_parameters(name) for name in tasks.task_names()}
    except ImportError:
        return None


def _check_task(task: TaskConfig, registry: Mapping[str, Mapping[str, object]]) -> TaskConfig:
    """``task`` with its name and parameters checked against ``{task name: {parameter: default}}``."""
    if task.name not in registry:
        hint = _did_you_mean(task.name, list(registry))
        raise ConfigError(f"config: task.name: expected one of {sorted(registry)}, got {task.name!r}{hint}")
    defaults = registry[task.name]
    params = {}
    for key, value in task.params.items():
        if key not in defaults:
            raise ConfigError(f"config: {_unknown_key('task.params.', key, list(defaults))}")
        default = defaults[key]
        typed = isinstance(default, (int, float, str, bool))  # no check against a None default
        params[key] = _check_scalar(f"task.params.{key}", value, type(default)) if typed else value
    return dataclasses.replace(task, params=params)


# ----------------------------------------------------------------------------------------------
# YAML, overrides, loading and saving

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 floats (``1e-3``) and no duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


class _Dumper(yaml.SafeDumper):
    """The safe dumper that quotes strings such as ``'1e-3'`` which :class:`_Loader` reads as floats."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _parse_yaml(text: str, where: str, *, file: bool = True):
    """The YAML document ``text``; a syntax error in a file names its line and column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}:{mark.column + 1}" if mark and file else ""
        problem = getattr(e, "problem", None) or str(e).replace("\n", " ")
        raise ConfigError(f"config: {where}{line}: invalid YAML: {problem}") from None


def _check_override_key(keys: list[str], override: str) -> None:
    """Raise unless ``keys`` is a path of the schema (any one name is allowed below ``task.params``)."""
    cls = Config
    for i, key in enumerate(keys):
        fields, prefix = [f.name for f in dataclasses.fields(cls)], "".join(k + "." for k in keys[:i])
        if key not in fields:
            raise ConfigError(f"config: --set {override}: {_unknown_key(prefix, key, fields)}")
        cls = typing.get_type_hints(cls)[key]
        depth = 1 if typing.get_origin(cls) is Mapping else 0  # a task parameter's name follows
        if not dataclasses.is_dataclass(cls):
            if len(keys) > i + 1 + depth:
                raise ConfigError(f"config: --set {override}: {'.'.join(keys[: i + 1 + depth])!r} has no sub-keys")
            return


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``"dotted.key=value"`` override set; values are parsed as YAML.

    Args:
      data: the config as loaded from YAML (not modified).
      overrides: e.g. ``["model.hidden_size=64", "optim.learning_rate=1e-3", "task.params.T=200"]``.

    Returns:
      The new nested dict; missing sections or task parameters are created.

    Raises:
      ConfigError: an override without ``=``, with an unknown key, or with a value that is not YAML.
    """
    out = _to_dict(data)
    for override in overrides:
        key, sep, text = override.partition("=")
        keys = key.strip().split(".")
        if not sep or not all(keys):
            raise ConfigError(f"config: --set {override}: expected key=value, e.g. model.hidden_size=64")
        _check_override_key(keys, override)
        node = out
        for k in keys[:-1]:
            if not isinstance(node.get(k, {}), dict):
                raise ConfigError(f"config: --set {override}: {k!r} is not a mapping in the config")
            node = node.setdefault(k, {})
        node[keys[-1]] = _parse_yaml(text, f"--set {override}", file=False)
    return out


def config_from_dict(
    data: Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    tasks: Mapping[str, Mapping[str, object]] | None = None,
) -> Config:
    """The validated :class:`Config` of ``data`` (nested mappings, as from YAML) after ``overrides``.

    Args:
      data: the config as nested mappings; missing keys take their defaults; ``task.name`` is required.
      overrides: ``"dotted.key=value"`` strings, see :func:`apply_overrides`.
      tasks: ``{task name: {parameter: default}}`` to check ``task`` against; by default the
        :mod:`lstm_jax.tasks` registry (skipped if that cannot be imported).

    Raises:
      ConfigError: an unknown or missing key, a wrong type, an unknown choice or a value out of range.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config: expected a mapping at the top level, got {_got(data)}")
    config = _build(Config, apply_overrides(data, overrides), "")
    registry = _task_registry() if tasks is None else tasks
    if registry is not None:
        config = dataclasses.replace(config, task=_check_task(config.task, registry))
    return config


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (), **kwargs) -> Config:
    """The validated :class:`Config` of the YAML file ``path`` after ``overrides``.

    Args:
      path: a YAML file whose top level is a mapping.
      overrides: ``"dotted.key=value"`` strings, see :func:`apply_overrides`.
      **kwargs: passed to :func:`config_from_dict` (``tasks``).

    Raises:
      ConfigError: the file is missing, unreadable or not YAML, or the config is invalid.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config: no such file: {os.fspath(path)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config: cannot read {os.fspath(path)}: {e}") from None
    data = _parse_yaml(text, os.fspath(path))
    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else _got(data)
        raise ConfigError(f"config: {os.fspath(path)}: expected a mapping at the top level, got {got}")
    return config_from_dict(data, overrides, **kwargs)


def _to_dict(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: _to_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_dict(v) for v in value]
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """``config`` as plain nested dicts (every key, defaults included), for YAML or JSON."""
    return _to_dict(config)


def save_config(config: Config, path: str | os.PathLike, *, header: str | None = None) -> None:
    """Write ``config`` to ``path`` as YAML, atomically (:func:`lstm_jax.rundir.write_atomic`).

    Args:
      config: the resolved config; :func:`load_config` of the file gives an equal object.
      path: the file to write (its directory must exist).
      header: optional text written first as ``#`` comment lines (e.g. the command that ran).
    """
    text = yaml.dump(config_to_dict(config), Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    if header:
        text = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) + text
    write_atomic(path, text)
