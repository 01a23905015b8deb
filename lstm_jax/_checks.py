"""Shape and dtype checks that run while tracing and raise a ValueError naming expected vs actual,
and the query they share about sharding (:func:`mesh_axes`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def check_array(name: str, x) -> None:
    """Raise unless ``x`` is an array (a list would be converted with a guessed dtype, or fail inside JAX)."""
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        raise ValueError(f"{name}: expected an array (jax or numpy), got {type(x).__name__}")


def check_floating(name: str, x) -> None:
    """Raise unless ``x`` has a floating dtype (integer inputs would silently change the maths)."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name}: expected a floating dtype, got {dtype}")


def check_shape(name: str, x, expected: tuple[int, ...], meaning: str) -> None:
    """Raise unless ``x.shape == expected``; ``meaning`` spells the shape in symbols, e.g. ``(B, D)``."""
    if tuple(jnp.shape(x)) != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} {meaning}, got {tuple(jnp.shape(x))}")


def check_ndim(name: str, x, min_ndim: int, meaning: str) -> None:
    """Raise unless ``x`` has at least ``min_ndim`` dimensions."""
    if jnp.ndim(x) < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions {meaning}, got shape {tuple(jnp.shape(x))}")


def check_same_dtype(name: str, x, dtype, source: str = "the parameters'") -> None:
    """Raise unless ``x`` has exactly ``dtype`` (no silent promotion between inputs and parameters)."""
    if jnp.result_type(x) != dtype:
        raise ValueError(
            f"{name}: expected dtype {jnp.dtype(dtype)} ({source} dtype), got {jnp.result_type(x)}; cast with .astype"
        )


def check_lengths(lengths, batch_shape: tuple[int, ...], num_steps: int) -> None:
    """Lengths must be integers of the batch shape; when concrete, within ``[0, num_steps]``.

    Under ``jit`` the values are unknown while tracing, so only the shape and dtype are checked;
    a traced length above ``T`` then behaves as ``T`` and a negative one as ``0``.
    """
    check_array("lengths", lengths)
    dtype = jnp.result_type(lengths)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"lengths: expected an integer dtype, got {dtype}")
    check_shape("lengths", lengths, batch_shape, "(the batch shape of the inputs)")
    if isinstance(lengths, jax.core.Tracer):
        return
    values = np.asarray(lengths)
    if values.size and (values.min() < 0 or values.max() > num_steps):
        raise ValueError(
            f"lengths: expected values in [0, T={num_steps}], got min {values.min()} and max {values.max()}"
        )


def mesh_axes(x) -> tuple:
    """Per dimension of ``x``, the mesh axes it is sharded over under an explicit mesh (``None``: not
    sharded); all ``None`` without one, with automatic mesh axes, and inside ``jax.shard_map``."""
    return (tuple(jax.typeof(x).sharding.spec) + (None,) * x.ndim)[: x.ndim]
