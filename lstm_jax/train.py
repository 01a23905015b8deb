"""Training with optax: optimisers and schedules by name, a jit-compiled step, evaluation, ``fit``.

The pieces are small pure functions, in the manner of the flax examples:

* :func:`make_optimizer` — ``clip_by_global_norm`` (Pascanu et al. 2013) chained with Adam, AdamW,
  RMSProp or SGD with momentum, on a learning-rate schedule;
* :func:`make_train_step` — ``train_step(state, batch) -> (state, metrics)``, gradients by
  ``jax.grad`` or by the article's manual BPTT (:mod:`lstm_jax.bptt`); a step whose loss or
  gradient is not finite leaves the state unchanged and says so in ``metrics["finite"]``;
* :func:`make_eval_step` — loss and the task's metric on a batch;
* :func:`fit` — the loop: fresh batches from ``fold_in(key, step)`` (so a resumed run sees exactly
  the batches an uninterrupted one would), evaluation on held-out batches from another key (on the
  whole test split, each example once, for a task on a finite data set),
  atomic checkpoints, ``metrics.jsonl``, ``summary.json`` and a learning curve.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax import checkpoint, rundir
from lstm_jax.bptt import lstm_bptt, rnn_bptt
from lstm_jax.losses import sequence_loss
from lstm_jax.models import DTYPES, ModelParams, ModelSpec, apply_model, init_model
from lstm_jax.tasks import Batch, Task, make_task, task_parameters

Array = jax.Array


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree of arrays: checkpointed as is)."""

    step: Array  # () int32: updates applied so far
    params: ModelParams
    opt_state: Any


class NonFiniteError(RuntimeError):
    """The loss or the gradient became NaN or infinite; the run stopped."""


# ----------------------------------------------------------------------------------------------
# Optimiser.


def make_schedule(optim, total_steps: int) -> optax.Schedule:
    """The learning-rate schedule named ``optim.schedule``."""
    lr = optim.learning_rate
    schedules = {
        "constant": lambda: optax.constant_schedule(lr),
        "cosine": lambda: optax.cosine_decay_schedule(lr, max(total_steps, 1)),
        "warmup_cosine": lambda: optax.warmup_cosine_decay_schedule(
            0.0, lr, optim.warmup_steps, max(total_steps, optim.warmup_steps + 1)
        ),
        "exponential": lambda: optax.exponential_decay(lr, optim.decay_steps, optim.decay_rate),
    }
    if optim.schedule not in schedules:
        raise ValueError(f"optim.schedule: expected one of {sorted(schedules)}, got {optim.schedule!r}")
    return schedules[optim.schedule]()


def make_optimizer(optim, total_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping (if ``optim.clip_norm``) chained with the optimiser ``optim.name``."""
    lr = make_schedule(optim, total_steps)
    optimizers = {
        "adam": lambda: optax.adam(lr),
        "adamw": lambda: optax.adamw(lr, weight_decay=optim.weight_decay),
        "rmsprop": lambda: optax.rmsprop(lr, momentum=optim.momentum),
        "sgd": lambda: optax.sgd(lr, momentum=optim.momentum),
    }
    if optim.name not in optimizers:
        raise ValueError(f"optim.name: expected one of {sorted(optimizers)}, got {optim.name!r}")
    clip = [optax.clip_by_global_norm(optim.clip_norm)] if optim.clip_norm else []
    return optax.chain(*clip, optimizers[optim.name]())


# ----------------------------------------------------------------------------------------------
# Model, loss and gradients.


def model_spec(config, task: Task) -> ModelSpec:
    m = config.model
    return ModelSpec(
        cell=m.cell,
        activation=m.activation,
        many_to_one=task.many_to_one,
        unroll=m.unroll,
        impl=m.impl,
        remat=m.remat,
        truncate=m.truncate,
        compute_dtype=m.compute_dtype,
    )


def init_state(config, task: Task, optimizer: optax.GradientTransformation, key: Array) -> TrainState:
    m = config.model
    params = init_model(
        key,
        model_spec(config, task),
        task.input_size,
        m.hidden_size,
        task.output_size,
        num_layers=m.num_layers,
        bidirectional=m.bidirectional,
        input_layer=m.input_layer,
        input_features=m.input_features,
        dtype=DTYPES[m.dtype],
        forget_bias=m.forget_bias,
        recurrent_init=m.recurrent_init,
        recurrent_scale=m.recurrent_scale,
        input_init=m.input_init,
    )
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


def batch_loss(spec: ModelSpec, task: Task, params: ModelParams, batch: Batch) -> tuple[Array, Array]:
    """``(loss, logits)`` of the model on a batch, with the task's loss and reduction."""
    inputs = batch.inputs.astype(params.head.w.dtype)
    logits = apply_model(spec, params, inputs)
    targets = batch.targets.astype(logits.dtype)
    if spec.many_to_one:  # one step per sequence: a (B, 1, N) "sequence" with the last-step loss
        return sequence_loss(task.loss, logits[..., None, :], targets[..., None, :], reduction="last"), logits
    return sequence_loss(task.loss, logits, targets, reduction=task.reduction, mask=batch.mask), logits


def loss_and_grads(spec: ModelSpec, task: Task, gradients: str) -> Callable:
    """``(params, batch) -> (loss, grads)``, by ``jax.grad`` or by the manual BPTT formulas.

    The manual formulas cover one unidirectional layer and a mask that is all ``True`` (every
    task here); the trainer rejects other models before it gets here.
    """
    if gradients == "autodiff":

        def autodiff(params, batch):
            (loss, _), grads = jax.value_and_grad(batch_loss, argnums=2, has_aux=True)(spec, task, params, batch)
            return loss, grads

        return autodiff
    if gradients != "manual":
        raise ValueError(f"train.gradients: expected 'autodiff' or 'manual', got {gradients!r}")

    def manual(params, batch):
        (layer,) = params.layers
        dtype = params.head.w.dtype
        kw = dict(loss=task.loss, reduction="last" if spec.many_to_one else task.reduction)
        inputs, targets = batch.inputs.astype(dtype), batch.targets.astype(dtype)
        if spec.cell == "lstm":
            loss, g = lstm_bptt(layer, params.head, inputs, targets, **kw)
        else:
            loss, g = rnn_bptt(layer, params.head, inputs, targets, activation=spec.activation, **kw)
        return loss, ModelParams((g.cell,), g.head, None)

    return manual


def make_train_step(
    spec: ModelSpec, task: Task, optimizer: optax.GradientTransformation, gradients: str = "autodiff"
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The jit-compiled ``train_step(state, batch) -> (state, metrics)``.

    ``metrics`` holds ``loss``, ``grad_norm`` (before clipping) and ``finite`` (loss, gradient and
    updated parameters all finite); when ``finite`` is false the returned state is the input
    state, untouched.
    """
    value_and_grads = loss_and_grads(spec, task, gradients)

    @jax.jit
    def train_step(state: TrainState, batch: Batch):
        loss, grads = value_and_grads(state.params, batch)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(new.params))
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        return new, {"loss": loss, "grad_norm": grad_norm, "finite": finite}

    return train_step


def make_eval_step(spec: ModelSpec, task: Task) -> Callable[[ModelParams, Batch], tuple[Array, Array]]:
    """The jit-compiled ``eval_step(params, batch) -> (loss, metric)``."""

    @jax.jit
    def eval_step(params, batch):
        loss, logits = batch_loss(spec, task, params, batch)
        return loss, task.metric(logits.astype(jnp.float32), batch)

    return eval_step


def evaluate(eval_step, task: Task, params, key: Array, num_batches: int, batch_size: int) -> tuple[float, float]:
    """Loss and metric on ``task.eval_batch`` (the whole finite data set, each example once; ``key``,
    ``num_batches`` and ``batch_size`` are then unused), else their means over ``num_batches``
    fresh batches drawn from ``key``."""
    if task.eval_batch is not None:
        loss, metric = eval_step(params, task.eval_batch)
        return float(loss), float(metric)
    make_batch = jax.jit(task.make_batch, static_argnums=1)
    results = [eval_step(params, make_batch(k, batch_size)) for k in jax.random.split(key, num_batches)]
    losses, metrics = zip(*results)
    return float(np.mean(losses)), float(np.mean(metrics))


# ----------------------------------------------------------------------------------------------
# The loop.


def run_keys(seed: int) -> tuple[Array, Array, Array]:
    """Independent keys for initialisation, training batches and held-out evaluation batches."""
    init_key, train_key, eval_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, train_key, eval_key


def check_trainable(config) -> None:
    """Reject combinations the trainer cannot run, before anything is built."""
    m = config.model
    if config.train.gradients == "manual" and (m.num_layers != 1 or m.bidirectional or m.input_layer != "none"):
        raise ValueError(
            "train.gradients: expected 'autodiff' for this model (the manual BPTT covers one unidirectional "
            f"layer without input layer), got 'manual' with num_layers={m.num_layers}, "
            f"bidirectional={m.bidirectional}, input_layer={m.input_layer!r}"
        )
    if config.train.gradients == "manual" and (m.remat is not None or m.truncate is not None):
        raise ValueError(
            "train.gradients: expected 'autodiff' with model.remat or model.truncate (the manual BPTT "
            f"stores every step and never truncates), got 'manual' with remat={m.remat!r}, truncate={m.truncate!r}"
        )


def data_parallel(batch_size: int):
    """``(batch sharding, replicated sharding)`` over all devices, or ``(None, None)`` on one.

    The batch is split along its first axis over a 1-D mesh of ``jax.devices()`` (every device of
    every process after ``jax.distributed.initialize()``); parameters and optimiser state are
    replicated. The jit-compiled step then runs data-parallel (XLA inserts the gradient all-reduce).
    """
    devices = jax.devices()
    if len(devices) == 1:
        return None, None
    if batch_size % len(devices):
        raise ValueError(f"train.batch_size: expected a multiple of the {len(devices)} devices, got {batch_size}")
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    P = jax.sharding.PartitionSpec
    return jax.sharding.NamedSharding(mesh, P("data")), jax.sharding.NamedSharding(mesh, P())


def _progress(enabled: bool):
    """A rich progress bar with loss and steps/s (or a no-op)."""
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TextColumn("{task.fields[rate]:.1f} steps/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def fit(config, run_dir, *, resume: bool = False, progress: bool = False) -> dict:
    """Train ``config`` into ``run_dir`` and return the summary (also written to ``summary.json``).

    Args:
      config: a :class:`lstm_jax.config.Config`.
      run_dir: the run directory (created); see :mod:`lstm_jax.rundir`.
      resume: continue from the latest checkpoint in ``run_dir``; the result equals that of an
        uninterrupted run (same batches, same optimiser state).
      progress: show a progress bar on stderr.

    Only process 0 of a multi-process run writes ``run_dir`` (:func:`is_writer`).

    Raises:
      ValueError: bad combinations, or an existing run directory without ``resume``.
      NonFiniteError: the loss or a gradient became NaN/inf (the last good checkpoint is kept).
    """
    task, eval_task = tasks_for(config)
    check_trainable(config)
    with precision(config):
        return _fit(config, task, eval_task, pathlib.Path(run_dir), resume, progress)


def tasks_for(config) -> tuple[Task, Task]:
    """``(training task, evaluation task)`` of a config.

    A task with a ``split`` parameter (real data: sunspots, digits, charlm) trains on ``"train"``
    and is evaluated on ``"test"``, on all of it (``eval_batch``), with that split's own baseline;
    generated tasks are evaluated on the same task, with fresh batches from a key training never uses.
    """
    params = dict(config.task.params)
    if "split" in params:
        raise ValueError(
            f"task.params.split: expected no value (the trainer trains on 'train' and evaluates on 'test'), "
            f"got {params['split']!r}"
        )
    task = make_task(config.task.name, **params)
    if "split" in task_parameters(config.task.name):
        return task, make_task(config.task.name, **params, split="test")
    return task, task


def is_writer() -> bool:
    """Whether this process writes the run directory: process 0 only (``jax.process_index()``).

    With several JAX processes (``jax.distributed.initialize()``) every process trains and
    evaluates the same model, but only process 0 writes the config, metrics, summary, checkpoints
    and plot; the others read the directory (a resumed run restores from it) and return the same
    summary without writing it.
    """
    return jax.process_index() == 0


def precision(config):
    """``jax.enable_x64`` for a float64 model, scoped to the run; nothing otherwise."""
    return jax.enable_x64(True) if config.model.dtype == "float64" else contextlib.nullcontext()


def _fit(config, task: Task, eval_task: Task, run_dir: pathlib.Path, resume: bool, progress: bool) -> dict:
    from lstm_jax.plots import plot_learning_curve

    tc = config.train
    ckpt_dir = run_dir / rundir.CHECKPOINTS
    _check_run_directory(config, run_dir, resume)
    batch_sharding, replicated = data_parallel(tc.batch_size)  # before anything is written
    writer = is_writer()  # every other process reads the run directory, never writes it
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.remove_temporaries(run_dir, ckpt_dir)  # left by a kill between a write and its rename
    optimizer = make_optimizer(config.optim, tc.steps)
    init_key, train_key, eval_key = run_keys(config.seed)
    spec = model_spec(config, task)
    state, last = init_state(config, task, optimizer, init_key), None
    if resume:
        state = checkpoint.restore_checkpoint(ckpt_dir, state)
        if writer:
            rundir.truncate_metrics(run_dir, int(state.step))
        last = next((r for r in rundir.read_metrics(run_dir) if r["step"] == int(state.step)), None)
    elif writer:
        (run_dir / rundir.METRICS).unlink(missing_ok=True)
        _save_config(config, run_dir)
    start = done = int(state.step)
    if replicated is not None:
        state = jax.device_put(state, replicated)
    train_step = make_train_step(spec, task, optimizer, tc.gradients)
    eval_step = make_eval_step(spec, eval_task)
    make_batch = jax.jit(task.make_batch, static_argnums=1, out_shardings=batch_sharding)

    t0 = time.perf_counter()
    # A resumed run that had already stopped as solved stays stopped, as the uninterrupted one did.
    status = "solved" if last is not None and last["solved"] and tc.stop_when_solved else "completed"
    with _progress(progress and writer and status != "solved") as bar:
        bar_task = bar.add_task("train", total=tc.steps, completed=start, loss=float("nan"), rate=0.0) if bar else None
        for step in range(start, tc.steps if status != "solved" else start):
            state, m = train_step(state, make_batch(jax.random.fold_in(train_key, step), tc.batch_size))
            if not bool(m["finite"]):  # the step left `state` as it was: keep it as the last good one
                if writer and checkpoint.latest_step(ckpt_dir) != step:
                    checkpoint.save_checkpoint(ckpt_dir, step, state)
                _write_summary(run_dir, config, eval_task, last, step, t0, start, "non_finite", writer)
                raise NonFiniteError(
                    f"non-finite loss, gradient or parameters at step {step + 1}: run stopped; "
                    f"the last good checkpoint is step {step} in {ckpt_dir}"
                )
            done = step + 1
            if bar is not None and (done % tc.log_every == 0 or done == tc.steps):
                rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
                bar.update(bar_task, completed=done, loss=float(m["loss"]), rate=rate)
            if done % tc.eval_every == 0 or done == tc.steps:
                loss = float(m["loss"])
                last = _evaluate_and_log(eval_step, eval_task, state, eval_key, tc, done, loss, t0, run_dir, writer)
                if last["solved"] and tc.stop_when_solved:
                    status = "solved"
                    break
            if writer and done % tc.checkpoint_every == 0:
                checkpoint.save_checkpoint(ckpt_dir, done, state)
    if writer and checkpoint.latest_step(ckpt_dir) != done:
        checkpoint.save_checkpoint(ckpt_dir, done, state)
    summary = _write_summary(run_dir, config, eval_task, last, done, t0, start, status, writer)
    records = rundir.read_metrics(run_dir) if writer else []
    if records:
        title = f"{config.name}: {task.name}, {config.model.cell}"
        plot_learning_curve(records, run_dir / rundir.CURVE, title=title, baseline=eval_task.baseline)
    return summary


def _check_run_directory(config, run_dir: pathlib.Path, resume: bool) -> None:
    """A new run needs a directory without checkpoints; a resumed one needs a checkpoint and the same config."""
    from lstm_jax.config import load_config

    has_checkpoint = checkpoint.latest_step(run_dir / rundir.CHECKPOINTS) is not None
    if not resume and has_checkpoint:
        raise ValueError(f"run directory: expected a new directory (or --resume), got {run_dir} with checkpoints")
    if resume and not has_checkpoint:
        raise ValueError(f"--resume: expected a checkpoint in {run_dir / rundir.CHECKPOINTS}, got none")
    if resume and load_config(run_dir / rundir.CONFIG) != config:
        raise ValueError(f"--resume: expected the config saved in {run_dir / rundir.CONFIG}, got a different one")


def _save_config(config, run_dir: pathlib.Path) -> None:
    from lstm_jax.config import save_config

    save_config(config, run_dir / rundir.CONFIG)


def _evaluate_and_log(eval_step, task, state, eval_key, tc, step, train_loss, t0, run_dir, writer: bool) -> dict:
    loss, metric = evaluate(
        eval_step, task, state.params, jax.random.fold_in(eval_key, step), tc.eval_batches, tc.batch_size
    )
    record = {
        "step": step,
        "loss": loss,
        "metric": metric,
        "metric_name": task.metric_name,
        "train_loss": train_loss,
        "baseline": task.baseline,
        "solved": bool(task.solved(loss, metric)),
        "time": time.perf_counter() - t0,
    }
    if writer:
        rundir.append_metrics(run_dir, record)
    return record


def _write_summary(
    run_dir, config, task: Task, last: dict | None, steps: int, t0: float, start: int, status: str, writer: bool
) -> dict:
    """The run's summary; written to ``summary.json`` by the writing process only."""
    summary = {
        "name": config.name,
        "task": {"name": task.name, "params": dict(config.task.params)},
        "model": {
            "cell": config.model.cell,
            "hidden_size": config.model.hidden_size,
            "layers": config.model.num_layers,
        },
        "status": status,
        "steps": steps,
        "resumed_from": start or None,
        "final": None if last is None else {"loss": last["loss"], task.metric_name: last["metric"]},
        "baseline": {"loss": task.baseline, "what": task.baseline_name},
        "beats_baseline": None if last is None else last["loss"] < task.baseline,
        "solved": None if last is None else last["solved"],
        "solved_rule": task.solved_rule,
        "metric_name": task.metric_name,
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "devices": [str(d) for d in jax.local_devices()],
    }
    if writer:
        rundir.write_summary(run_dir, summary)
    return summary
