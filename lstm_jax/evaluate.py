"""Use a finished (or interrupted) run: evaluate its latest checkpoint on held-out data (the whole
test split of a real-data task, fresh batches of a generated one), or sample text from a character
model."""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import jax

from lstm_jax import checkpoint, rundir
from lstm_jax.config import load_config
from lstm_jax.tasks import Task
from lstm_jax.train import (
    TrainState,
    check_trainable,
    evaluate,
    init_state,
    make_eval_step,
    make_optimizer,
    model_spec,
    precision,
    run_keys,
    tasks_for,
)

#: fold_in data for evaluation after training: never used by ``fit`` (which folds in step numbers).
_AFTER_TRAINING = 2**31 - 1


class Run(NamedTuple):
    config: object
    eval_task: Task
    state: TrainState


def load_run(run_dir) -> Run:
    """The config, held-out task and latest checkpoint of a run directory.

    Call inside ``train.precision(run.config)`` for float64 runs (``evaluate_run`` and
    ``sample_run`` do).
    """
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / rundir.CONFIG).is_file():
        raise ValueError(f"run directory: expected {run_dir / rundir.CONFIG}, got no such file")
    config = load_config(run_dir / rundir.CONFIG)
    check_trainable(config)
    _, eval_task = tasks_for(config)
    with precision(config):
        template = init_state(
            config, eval_task, make_optimizer(config.optim, config.train.steps), run_keys(config.seed)[0]
        )
        state = checkpoint.restore_checkpoint(run_dir / rundir.CHECKPOINTS, template)
    return Run(config, eval_task, state)


def evaluate_run(run_dir, *, num_batches: int = 8) -> dict:
    """Loss and metric of the run's latest checkpoint on the whole test split (real data), or on
    ``num_batches`` fresh held-out batches (generated data)."""
    if num_batches < 1:
        raise ValueError(f"--batches: expected >= 1, got {num_batches}")
    config, task, state = load_run(run_dir)
    with precision(config):
        eval_step = make_eval_step(model_spec(config, task), task)
        key = jax.random.fold_in(run_keys(config.seed)[2], _AFTER_TRAINING)
        loss, metric = evaluate(eval_step, task, state.params, key, num_batches, config.train.batch_size)
    return {
        "step": int(state.step),
        "loss": loss,
        "metric": metric,
        "metric_name": task.metric_name,
        "baseline": task.baseline,
        "solved": bool(task.solved(loss, metric)),
    }


def _corpus_params(config) -> dict:
    """The ``text`` and ``path`` parameters of a ``charlm`` run's config; a ValueError for any other task."""
    if config.task.name != "charlm":
        raise ValueError(f"sample: expected a run of the 'charlm' task, got {config.task.name!r}")
    params = dict(config.task.params)
    return {"text": params.get("text"), "path": params.get("path")}


def default_prompt(run_dir) -> str:
    """The prompt ``sample_run`` reads when given none: the first line of the run's own training text
    (:func:`lstm_jax.tasks.real.charlm_prompt`), read from its config without loading a checkpoint."""
    from lstm_jax.tasks.real import charlm_prompt

    config_file = pathlib.Path(run_dir) / rundir.CONFIG
    if not config_file.is_file():
        raise ValueError(f"run directory: expected {config_file}, got no such file")
    return charlm_prompt(**_corpus_params(load_config(config_file)))


def sample_run(
    run_dir, prompt: str | None = None, length: int = 200, *, temperature: float = 1.0, seed: int = 0
) -> str:
    """``length`` characters sampled from a ``charlm`` run's latest checkpoint after ``prompt``.

    ``prompt=None`` reads :func:`default_prompt`, the start of the run's own training text. The
    vocabulary is the run's (its training split's characters); a prompt with characters outside it
    is a ValueError naming them.
    """
    from lstm_jax.generate import sample
    from lstm_jax.tasks.real import charlm_prompt, charlm_vocabulary

    config, task, state = load_run(run_dir)
    corpus = _corpus_params(config)
    vocabulary = charlm_vocabulary(**corpus)
    if prompt is None:
        prompt = charlm_prompt(**corpus)
    with precision(config):
        spec = model_spec(config, task)
        return sample(spec, state.params, vocabulary, jax.random.key(seed), prompt, length, temperature)
