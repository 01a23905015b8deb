"""Checks and metrics shared by the task modules (:mod:`~lstm_jax.tasks.synthetic`, :mod:`~lstm_jax.tasks.real`)."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.tasks import Batch

Array = jax.Array


def check_int(name: str, value, minimum: int, why: str) -> int:
    """``value`` as a Python int ``>= minimum``; else a ValueError naming what was expected and got."""
    if isinstance(value, bool) or isinstance(value, jax.core.Tracer):
        kind = type(value).__name__
        raise ValueError(f"{name}: expected a Python integer (static under jit), got {kind} {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum} ({why}), got {number}")
    return number


def check_batch_size(batch_size) -> int:
    return check_int("batch_size", batch_size, 1, "a positive Python int; under jax.jit pass it as a static argument")


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of the strings ``choices``; else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_logits(logits, batch: Batch, meaning: str) -> None:
    """Floating logits of exactly the targets' shape (no broadcasting, no (B, T, N) for many-to-one)."""
    _checks.check_array("logits", logits)
    _checks.check_floating("logits", logits)
    _checks.check_shape("logits", logits, batch.targets.shape, meaning)


@jax.jit
def mse(logits: Array, targets: Array) -> Array:
    """Mean squared error over all axes, in float32 (16-bit logits are cast, not promoted)."""
    return jnp.mean(jnp.square(logits.astype(jnp.float32) - targets))


@jax.jit
def accuracy(logits: Array, targets: Array) -> Array:
    """Fraction of argmax(logits) == argmax(targets) over all leading axes, float32 scalar."""
    hits = jnp.argmax(logits, axis=-1) == jnp.argmax(targets, axis=-1)
    return jnp.mean(hits.astype(jnp.float32))
