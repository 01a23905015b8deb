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
  atomic checkpoints, ``metrics.jsonl``, ``summary.json`` and a learning curve
  (:mod:`lstm_jax.runwriter`); a graceful stop on SIGINT/SIGTERM (:mod:`lstm_jax.signals`); resource
  errors as one :class:`ResourceError`.

The loop never waits for the device between steps: a step that is not finite freezes the state on
the device (:func:`make_guarded_step`), and the host reads the flag only where it reads anything
else (evaluation, checkpoint, progress update, stop), so JAX's asynchronous dispatch runs ahead.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax import checkpoint, logs, rundir, runwriter, signals
from lstm_jax.bptt import manual_bptt
from lstm_jax.losses import sequence_loss
from lstm_jax.models import DTYPES, ModelParams, ModelSpec, apply_model, get_cell, init_model
from lstm_jax.tasks import Batch, Task, make_task, task_parameters

Array = jax.Array


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree of arrays: checkpointed as is)."""

    step: Array  # () int32: updates applied so far
    params: ModelParams
    opt_state: Any


class NonFiniteError(RuntimeError):
    """The loss or the gradient became NaN or infinite; the run stopped."""


class ResourceError(ValueError):
    """The device cannot run the config (out of memory, an XLA runtime error, no such platform)."""


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
        proj_size=m.proj_size,
        peepholes=m.peepholes,
        layer_norm=m.layer_norm,
        many_to_one=task.many_to_one,
        unroll=m.unroll,
        impl=m.impl,
        remat=m.remat,
        truncate=m.truncate,
        compute_dtype=m.compute_dtype,
        dropout=m.dropout_rates(),
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
        update_bias=m.update_bias,
        recurrent_init=m.recurrent_init,
        recurrent_scale=m.recurrent_scale,
        input_init=m.input_init,
    )
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


def batch_loss(
    spec: ModelSpec, task: Task, params: ModelParams, batch: Batch, key: Array | None = None, training: bool = False
) -> tuple[Array, Array]:
    """``(loss, logits)`` of the model on a batch, with the task's loss and reduction; ``training`` draws
    the dropout masks of ``spec.dropout`` from ``key`` (:func:`lstm_jax.models.apply_model`)."""
    inputs = batch.inputs.astype(params.head.w.dtype)
    logits = apply_model(spec, params, inputs, key=key, training=training)
    targets = batch.targets.astype(logits.dtype)
    if spec.many_to_one:  # one step per sequence: a (B, 1, N) "sequence" with the last-step loss
        return sequence_loss(task.loss, logits[..., None, :], targets[..., None, :], reduction="last"), logits
    return sequence_loss(task.loss, logits, targets, reduction=task.reduction, mask=batch.mask), logits


def loss_and_grads(spec: ModelSpec, task: Task, gradients: str) -> Callable:
    """``(params, batch, key) -> (loss, grads)`` of the training loss (dropout masks from ``key``), by
    ``jax.grad`` or by the manual BPTT formulas (no dropout).

    The manual formulas cover one unidirectional layer and a mask that is all ``True`` (every
    task here); the trainer rejects other models before it gets here.
    """
    if gradients == "autodiff":

        def autodiff(params, batch, key=None):
            value_and_grad = jax.value_and_grad(batch_loss, argnums=2, has_aux=True)
            (loss, _), grads = value_and_grad(spec, task, params, batch, key, True)
            return loss, grads

        return autodiff
    if gradients != "manual":
        raise ValueError(f"train.gradients: expected 'autodiff' or 'manual', got {gradients!r}")

    def manual(params, batch, key=None):
        (layer,) = params.layers
        dtype = params.head.w.dtype
        kw = dict(loss=task.loss, reduction="last" if spec.many_to_one else task.reduction)
        inputs, targets = batch.inputs.astype(dtype), batch.targets.astype(dtype)
        loss, g = manual_bptt(get_cell(spec), layer, params.head, inputs, targets, **kw)
        return loss, ModelParams((g.cell,), g.head, None)

    return manual


def make_train_step(
    spec: ModelSpec,
    task: Task,
    optimizer: optax.GradientTransformation,
    gradients: str = "autodiff",
    dropout_key: Array | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The jit-compiled ``train_step(state, batch) -> (state, metrics)``.

    With dropout (``spec.dropout``), step ``n`` draws its masks from ``fold_in(dropout_key, n)``
    (:func:`dropout_key`): the same masks whenever step ``n`` runs, resumed or not.

    ``metrics`` holds ``loss``, ``grad_norm`` (before clipping) and ``finite`` (loss, gradient and
    updated parameters all finite); when ``finite`` is false the returned state is the input
    state, untouched.
    """
    step = _update(spec, task, optimizer, gradients, dropout_key)
    return jax.jit(lambda state, batch: step(state, batch, True)[:2])


def make_guarded_step(
    spec: ModelSpec,
    task: Task,
    optimizer: optax.GradientTransformation,
    gradients: str = "autodiff",
    dropout_key: Array | None = None,
) -> Callable[[TrainState, Array, Batch], tuple[TrainState, Array, dict]]:
    """The jit-compiled ``guarded(state, first_bad, batch) -> (state, first_bad, metrics)``.

    ``first_bad`` is a device scalar: ``-1`` while every step has been finite, else the number of
    updates applied before the first step that was not. From that step on the state stays frozen as
    it was then (the last good state), so the host may read ``first_bad`` whenever it likes without
    losing that state, and never has to wait for the device after each step. The update is
    :func:`make_train_step`'s, bit for bit.
    """
    step = _update(spec, task, optimizer, gradients, dropout_key)

    @jax.jit
    def guarded(state: TrainState, first_bad: Array, batch: Batch):
        new, metrics, finite = step(state, batch, first_bad < 0)
        first_bad = jnp.where((first_bad < 0) & ~finite, state.step, first_bad)
        return new, first_bad, metrics  # all of the metrics: fewer outputs change XLA's fusion, and the bits

    return guarded


def _update(
    spec: ModelSpec, task: Task, optimizer: optax.GradientTransformation, gradients: str, dropout_key=None
) -> Callable:
    """``(state, batch, healthy) -> (new state, metrics, finite)``: one optimiser step, kept only where
    it is finite and ``healthy`` (else the input state is returned)."""
    value_and_grads = loss_and_grads(spec, task, gradients)

    def update(state: TrainState, batch: Batch, healthy):
        key = None if dropout_key is None else jax.random.fold_in(dropout_key, state.step)
        loss, grads = value_and_grads(state.params, batch, key)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(optax.tree.norm(new.params))
        keep = finite & healthy
        new = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state)
        return new, {"loss": loss, "grad_norm": grad_norm, "finite": finite}, finite

    return update


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


def dropout_key(seed: int) -> Array:
    """The key of a run's dropout masks (folded with each step's number); apart from :func:`run_keys`,
    whose three keys stay what they were before dropout existed."""
    return jax.random.fold_in(jax.random.key(seed), 0x64726F70)  # "drop"


def check_trainable(config) -> None:
    """Reject combinations the trainer cannot run, before anything is built."""
    m = config.model
    if config.train.gradients == "manual" and (m.num_layers != 1 or m.bidirectional or m.input_layer != "none"):
        raise ValueError(
            "train.gradients: expected 'autodiff' for this model (the manual BPTT covers one unidirectional "
            f"layer without input layer), got 'manual' with num_layers={m.num_layers}, "
            f"bidirectional={m.bidirectional}, input_layer={m.input_layer!r}"
        )
    if config.train.gradients == "manual" and m.dropout_rates().active:
        raise ValueError(
            "train.gradients: expected 'autodiff' with dropout or zoneout (the manual BPTT has none), got 'manual' "
            f"with {m.dropout_rates()}"
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


def fit(config, run_dir, *, resume: bool | str = False, progress: bool | str | None = "auto") -> dict:
    """Train ``config`` into ``run_dir`` and return the summary (also written to ``summary.json``).

    Args:
      config: a :class:`lstm_jax.config.Config`.
      run_dir: the run directory (created and locked; see :mod:`lstm_jax.runwriter`).
      resume: ``False``: a new run (the directory has no checkpoint); ``True``: continue from the
        newest intact checkpoint (one must exist); ``"auto"``: continue if there is a checkpoint,
        else start fresh, which makes one command right for a job that may be requeued. The result
        equals that of an uninterrupted run (same batches, same optimiser state); on resume the
        config may differ only in :data:`lstm_jax.runwriter.RESUMABLE_KEYS` (e.g. more steps).
      progress: ``True`` a progress bar on stderr, ``False`` one line per evaluation on stdout,
        ``"auto"`` a bar on a terminal and lines otherwise, ``None`` nothing.

    SIGINT and SIGTERM end the current step, checkpoint, mark the summary ``"interrupted"`` and
    raise :class:`lstm_jax.signals.Interrupted`; a second signal ends the process at once. Only
    process 0 of a multi-process run writes ``run_dir`` (:func:`is_writer`).

    Raises:
      ValueError: bad combinations, a directory that does not fit ``resume``, a changed config on
        resume, another run holding the directory (:class:`lstm_jax.rundir.RunLockedError`).
      ResourceError: out of memory, another XLA runtime error, or an unavailable platform.
      NonFiniteError: the loss or a gradient became NaN/inf (the last good checkpoint is kept).
      Interrupted: SIGINT or SIGTERM (a checkpoint of the last finished step is kept).
    """
    with resource_errors(config):  # a task may read a large text file
        task, eval_task = tasks_for(config)
    check_trainable(config)
    if config.train.tensorboard:
        logs.require_tensorboard()
    check_platform()
    writer = runwriter.for_this_process(run_dir, config, is_writer())
    # JAX's default dtype promotion whatever the caller's setting: optax mixes Python floats and int32 counts.
    promotion = jax.numpy_dtype_promotion("standard")
    with signals.stop_requests() as stop, promotion, precision(config), resource_errors(config), writer.session():
        return _fit(config, task, eval_task, writer, resume, progress if writer.writes else None, stop)


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


def check_platform() -> None:
    """Raise :class:`ResourceError` if JAX cannot start a backend (e.g. ``JAX_PLATFORMS=cuda`` without a GPU)."""
    try:
        jax.devices()
    except Exception as error:  # jax raises RuntimeError, or AssertionError when no plugin provides the platform
        platforms, line = os.environ.get("JAX_PLATFORMS", ""), _first_line(error)
        got = type(error).__name__ + (f": {line}" if line != type(error).__name__ else "")
        raise ResourceError(
            f"platform: expected a JAX backend that starts for JAX_PLATFORMS={platforms!r} (is its jax plugin, "
            f"e.g. jax[cuda12], installed? unset JAX_PLATFORMS for the CPU), got {got}"
        ) from None


def _first_line(error: BaseException) -> str:
    """The first line of an error, without XLA's repeated ``Error dispatching computation:`` prefixes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    line = re.sub(r"(?:Error dispatching computation: )+", "", lines[0]) if lines else ""
    return line or type(error).__name__


def _sizes(config) -> str:
    """The config values that set the memory a run needs, for an out-of-memory message."""
    task = ", ".join(f"task.params.{k}={v}" for k, v in config.task.params.items() if isinstance(v, int))
    return ", ".join(
        filter(
            None,
            [
                f"train.batch_size={config.train.batch_size}",
                task,
                f"model.hidden_size={config.model.hidden_size}",
                f"model.num_layers={config.model.num_layers}",
            ],
        )
    )


@contextlib.contextmanager
def resource_errors(config):
    """Turn the device's out-of-memory and runtime errors into one-line :class:`ResourceError` s."""
    try:
        yield
    except MemoryError:
        raise ResourceError(f"out of memory: the host cannot hold the data of this config ({_sizes(config)})") from None
    except jax.errors.JaxRuntimeError as error:
        text = str(error)
        if "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower():
            wanted = re.search(r"allocating (\d+) bytes", text)
            size = f" ({int(wanted.group(1)) / 2**30:.1f} GiB in one allocation)" if wanted else ""
            raise ResourceError(
                f"out of memory: the device cannot hold this config{size} with {_sizes(config)}; "
                f"make one of them smaller ({_first_line(error)})"
            ) from None
        raise ResourceError(f"XLA runtime error: {_first_line(error)}") from None


class _Clock:
    """Wall time of the run: seconds before this process (from the checkpoint) plus this process's."""

    def __init__(self, before: float = 0.0):
        self.before, self.t0 = before, time.perf_counter()

    def __call__(self) -> float:
        return self.before + time.perf_counter() - self.t0


def _restore(writer, template: TrainState) -> tuple[TrainState, float, list[str]]:
    """``(state, wall seconds so far, warnings)`` from the newest intact checkpoint; the warnings name
    the damaged checkpoints it skipped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", checkpoint.CheckpointWarning)
        restored = checkpoint.restore_latest(writer.checkpoints, template)
    skipped = [str(w.message) for w in caught if issubclass(w.category, checkpoint.CheckpointWarning)]
    if "wall_seconds" in restored.meta:
        return restored.tree, float(restored.meta["wall_seconds"]), skipped
    # A checkpoint from before checkpoints carried the wall time: the summary's, or the metrics' at its step.
    summary_path = writer.run_dir / rundir.SUMMARY
    summary = rundir.read_summary(writer.run_dir) if summary_path.is_file() else {}
    if summary.get("steps") == restored.step:
        return restored.tree, float(summary["wall_seconds"]), skipped
    times = [r["time"] for r in writer.records() if r["step"] == restored.step]
    return restored.tree, float(times[-1]) if times else 0.0, skipped


def _fit(config, task: Task, eval_task: Task, writer, resume, progress, stop) -> dict:
    tc = config.train
    batch_sharding, replicated = data_parallel(tc.batch_size)  # before anything is written
    resuming = runwriter.resume_decision(config, writer.run_dir, resume)
    optimizer = make_optimizer(config.optim, tc.steps)
    init_key, train_key, eval_key = run_keys(config.seed)
    spec = model_spec(config, task)
    state, last, before, skipped = init_state(config, task, optimizer, init_key), None, 0.0, []
    if resuming:
        state, before, skipped = _restore(writer, state)
        writer.resumed(config, int(state.step))
        last = next((r for r in writer.records() if r["step"] == int(state.step)), None)
    else:
        writer.start(config)
    if replicated is not None:
        state = jax.device_put(state, replicated)
    start = int(state.step)
    console = logs.Console(progress, tc.steps, start)
    try:
        for message in skipped:
            console.warn(message)
        step_fn = make_guarded_step(spec, task, optimizer, tc.gradients, dropout_key(config.seed))
        eval_step = make_eval_step(spec, eval_task)
        batch_at = jax.jit(
            lambda step: task.make_batch(jax.random.fold_in(train_key, step), tc.batch_size),
            out_shardings=batch_sharding,
        )
        clock = _Clock(before)
        # A resumed run that had already stopped as solved stays stopped, as the uninterrupted one did.
        status = "solved" if last is not None and last["solved"] and tc.stop_when_solved else "completed"
        first_bad = jnp.array(-1, jnp.int32)
        done, interrupted = start, False
        # One process stops at once; several agree on a stop at evaluations and checkpoints only, so
        # that none of them dispatches a step whose all-reduce the others never join.
        several = jax.process_count() > 1
        for step in range(start, tc.steps if status != "solved" else start):
            if not several and stop.signum is not None:
                interrupted = True
                break
            state, first_bad, metrics = step_fn(state, first_bad, batch_at(state.step))
            done = step + 1
            evaluate_now = done % tc.eval_every == 0 or done == tc.steps
            checkpoint_now = done % tc.checkpoint_every == 0
            show_now = console.wants_train_loss and done % tc.log_every == 0
            if not (evaluate_now or checkpoint_now or show_now):
                continue  # nothing read back from the device: the next step is dispatched at once
            _stop_if_not_finite(writer, config, eval_task, state, first_bad, last, clock, start)
            rate = (done - start) / max(clock() - before, 1e-9)
            if show_now:
                console.step(done, float(metrics["loss"]), rate)
            if evaluate_now:
                last = _evaluate(eval_step, eval_task, state, eval_key, tc, done, float(metrics["loss"]), clock())
                writer.append(last, rate)
                console.evaluation(last, rate)
                if last["solved"] and tc.stop_when_solved:
                    status = "solved"
                    break
            if checkpoint_now:
                writer.save(state, clock())
            if several and (evaluate_now or checkpoint_now) and _stop_agreed(stop):
                interrupted = True
                break
        _stop_if_not_finite(writer, config, eval_task, state, first_bad, last, clock, start)
        done, wall = int(state.step), clock()
        writer.save(state, wall, final=True)  # the summary's wall time, which a resume continues from
        if interrupted:  # a signal after the last step changes nothing: the run ended
            status = "interrupted"
        summary = _summary(config, eval_task, last, done, wall, start, status)
        writer.summary(summary)
        writer.plot(f"{config.name}: {task.name}, {config.model.cell}", eval_task.baseline)
    finally:
        console.close()
    if status == "interrupted":
        raise signals.Interrupted(
            stop.signum,
            f"{stop.name}: stopped after step {done} of {tc.steps}, checkpoint saved in {writer.checkpoints}; "
            f"continue with the same command and --resume (or --resume auto)",
        )
    return summary


def _stop_agreed(stop: signals.StopRequest) -> bool:
    """Whether any process of a multi-process run got a stop signal; every process calls this at the same step."""
    from jax.experimental import multihost_utils

    signum = int(np.max(multihost_utils.process_allgather(np.int32(stop.signum or 0))))
    if stop.signum is None and signum:
        stop.signum = signum
    return stop.signum is not None


def _stop_if_not_finite(writer, config, task: Task, state, first_bad, last, clock, start: int) -> None:
    """Raise :class:`NonFiniteError` if a step was not finite, after checkpointing the frozen last good state."""
    bad = int(first_bad)
    if bad < 0:
        return
    writer.save(state, clock())  # the state frozen at the last good step, `bad`
    writer.summary(_summary(config, task, last, bad, clock(), start, "non_finite"))
    raise NonFiniteError(
        f"non-finite loss, gradient or parameters at step {bad + 1}: run stopped; "
        f"the last good checkpoint is step {bad} in {writer.checkpoints}"
    )


def _evaluate(eval_step, task: Task, state, eval_key, tc, step: int, train_loss: float, elapsed: float) -> dict:
    loss, metric = evaluate(
        eval_step, task, state.params, jax.random.fold_in(eval_key, step), tc.eval_batches, tc.batch_size
    )
    return {
        "step": step,
        "loss": loss,
        "metric": metric,
        "metric_name": task.metric_name,
        "train_loss": train_loss,
        "baseline": task.baseline,
        "solved": bool(task.solved(loss, metric)),
        "time": elapsed,
    }


def _summary(config, task: Task, last: dict | None, steps: int, wall_seconds: float, start: int, status: str) -> dict:
    """The run's summary (``summary.json``)."""
    return {
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
        "wall_seconds": round(wall_seconds, 3),
        "devices": [str(d) for d in jax.local_devices()],
    }
