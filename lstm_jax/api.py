"""The trainer from Python: what ``lstm-jax train`` and ``lstm-jax list`` do, as functions.

::

    import lstm_jax as lj
    summary = lj.fit("configs/quickstart.yaml", "runs/q", overrides=["train.steps=300"])
    run = lj.load_run("runs/q")          # run.config, run.params, run.summary
    logits = run.apply(inputs)           # the trained model on (B, T, M) inputs
    for entry in lj.catalog().tasks: print(entry.name, entry.parameters)

These are imported lazily from the package root, so ``import lstm_jax`` stays light.
"""

from __future__ import annotations

import inspect
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any, NamedTuple, Sequence

from lstm_jax import rundir
from lstm_jax.config import Config, config_from_dict, load_config

#: Where ``catalog`` looks for configs by default: ``configs/`` beside the package (a source
#: checkout or editable install), else ``./configs``.
_SOURCE_CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def as_config(config: Config | Mapping | str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """A validated :class:`~lstm_jax.config.Config` from a Config, a nested dict or a YAML path."""
    if isinstance(config, Config):
        if overrides:
            from lstm_jax.config import config_to_dict

            return config_from_dict(config_to_dict(config), overrides)
        return config
    if isinstance(config, Mapping):
        return config_from_dict(config, overrides)
    if isinstance(config, (str, os.PathLike)):
        return load_config(config, overrides)
    raise ValueError(f"config: expected a Config, a mapping or a YAML path, got {type(config).__name__}")


def fit(
    config: Config | Mapping | str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: bool | str = False,
    progress: bool | str | None = "auto",
) -> dict:
    """Train a config into ``run_dir`` (default ``runs/<config name>``) and return its summary.

    ``config`` is a :class:`~lstm_jax.config.Config`, a nested dict as in the YAML files, or a
    YAML path; ``overrides`` are ``--set`` strings. ``resume`` and ``progress`` are those of
    :func:`lstm_jax.train.fit` (``resume="auto"``: continue where a checkpoint exists, else start).
    """
    from lstm_jax import train

    config = as_config(config, overrides)
    if run_dir is not None and os.fspath(run_dir) == "":
        raise ValueError("run_dir: expected a directory path, got ''")
    run_dir = pathlib.Path("runs") / config.name if run_dir is None else pathlib.Path(run_dir)
    return train.fit(config, run_dir, resume=resume, progress=progress)


class LoadedRun(NamedTuple):
    """A run directory read back: its config, the newest intact checkpoint's parameters, the summary."""

    config: Config
    params: Any  # lstm_jax.models.ModelParams
    summary: dict | None  # None while the run has not ended
    step: int

    def apply(self, inputs):
        """The model's outputs (logits) on ``inputs`` ``(B, T, M)``: ``(B, N)`` many-to-one, else ``(B, T, N)``."""
        from lstm_jax import train
        from lstm_jax.models import apply_model

        task, _ = train.tasks_for(self.config)
        with train.precision(self.config):
            return apply_model(train.model_spec(self.config, task), self.params, inputs)


def load_run(run_dir: str | os.PathLike) -> LoadedRun:
    """The config, trained parameters, summary and step of a run directory (finished or not)."""
    from lstm_jax.evaluate import load_run as restore_run

    run = restore_run(run_dir)
    summary_path = pathlib.Path(run_dir) / rundir.SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    return LoadedRun(run.config, run.state.params, summary, int(run.state.step))


class ConfigEntry(NamedTuple):
    path: pathlib.Path
    purpose: str  # the file's first comment line


class TaskEntry(NamedTuple):
    name: str
    purpose: str  # the first line of the task factory's docstring
    parameters: dict  # {parameter: default}, what ``task.params`` accepts


class Catalog(NamedTuple):
    configs: list[ConfigEntry]
    tasks: list[TaskEntry]


def _purpose(path: pathlib.Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def catalog(configs_dir: str | os.PathLike | None = None) -> Catalog:
    """The configs in ``configs_dir`` (default: the source tree's ``configs/``, else ``./configs``)
    with their one-line purpose, and every task with its purpose and parameters' defaults."""
    from lstm_jax import tasks

    if configs_dir is None:
        configs_dir = _SOURCE_CONFIGS if _SOURCE_CONFIGS.is_dir() else pathlib.Path("configs")
    configs_dir = pathlib.Path(configs_dir)
    if not configs_dir.is_dir() and configs_dir != pathlib.Path("configs"):
        raise ValueError(f"configs: expected a directory of YAML files, got {configs_dir}")
    configs = [ConfigEntry(p, _purpose(p)) for p in sorted(configs_dir.glob("*.yaml"))] if configs_dir.is_dir() else []
    entries = []
    for name in tasks.task_names():
        factory = tasks._factory(name)
        doc = inspect.getdoc(factory) or ""
        entries.append(TaskEntry(name, doc.splitlines()[0] if doc else "", tasks.task_parameters(name)))
    return Catalog(configs, entries)
