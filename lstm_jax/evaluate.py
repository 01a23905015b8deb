"""Evaluate a finished (or interrupted) run: its latest checkpoint on fresh held-out batches."""

from __future__ import annotations

import pathlib

import jax

from lstm_jax import checkpoint, rundir
from lstm_jax.config import load_config
from lstm_jax.train import (
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


def evaluate_run(run_dir, *, num_batches: int = 8) -> dict:
    """Loss and metric of the run's latest checkpoint on ``num_batches`` fresh batches."""
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / rundir.CONFIG).exists():
        raise ValueError(f"run directory: expected {run_dir / rundir.CONFIG}, got no such file")
    if num_batches < 1:
        raise ValueError(f"--batches: expected >= 1, got {num_batches}")
    config = load_config(run_dir / rundir.CONFIG)
    _, task = tasks_for(config)  # the held-out evaluation task
    check_trainable(config)
    with precision(config):
        return _evaluate(config, task, run_dir, num_batches)


def _evaluate(config, task, run_dir: pathlib.Path, num_batches: int) -> dict:
    init_key, _, eval_key = run_keys(config.seed)
    template = init_state(config, task, make_optimizer(config.optim, config.train.steps), init_key)
    state = checkpoint.restore_checkpoint(run_dir / rundir.CHECKPOINTS, template)
    eval_step = make_eval_step(model_spec(config, task), task)
    key = jax.random.fold_in(eval_key, _AFTER_TRAINING)
    loss, metric = evaluate(eval_step, task, state.params, key, num_batches, config.train.batch_size)
    return {
        "step": int(state.step),
        "loss": loss,
        "metric": metric,
        "metric_name": task.metric_name,
        "baseline": task.baseline,
        "solved": bool(task.solved(loss, metric)),
    }
