"""Checks of the public API's arguments, each raising a ``ValueError`` ``"name: expected X, got Y"``:
shapes and dtypes (run while tracing), options (a choice, a real bool, a real int) and PRNG keys;
and the query they share about sharding (:func:`mesh_axes`)."""

from __future__ import annotations

from collections.abc import Hashable

import jax
import jax.numpy as jnp
import numpy as np


def describe(value) -> str:
    """A bad value as messages spell it: ``None``, ``type (repr)``, or an array's type, dtype and shape."""
    if value is None:
        return "None"
    if hasattr(value, "dtype") and hasattr(value, "shape") and np.ndim(value):
        return f"{type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    return f"{type(value).__name__} ({value!r})"


def check_choice(name: str, value, choices) -> None:
    """Raise unless ``value`` is one of ``choices`` (an unhashable value never is)."""
    if not (isinstance(value, Hashable) and value in choices):
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def is_int(value) -> bool:
    """A Python or NumPy integer, not a bool (``True`` is an ``int`` to Python, never a size here)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as a Python int if it is an integer (not a bool, a float or a string) ``>= minimum``."""
    if not (is_int(value) and (minimum is None or value >= minimum)):
        at_least = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name}: expected an int{at_least}, got {describe(value)}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """``value`` as a Python bool if it is a Python or NumPy bool; a string such as ``"no"`` or an int
    is a ValueError (either would be truthy or falsy by accident)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected a bool (True or False), got {describe(value)}")
    return bool(value)


def check_key(key, name: str = "key") -> None:
    """Raise unless ``key`` is one PRNG key: ``jax.random.key(seed)`` (a typed key of shape ``()``) or
    ``jax.random.PRNGKey(seed)`` (a raw uint32 array of the default implementation's key shape)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        ok = np.ndim(key) == 0
    else:
        ok = dtype == np.uint32 and np.shape(key) == jax.eval_shape(jax.random.PRNGKey, 0).shape
    if not ok:
        raise ValueError(
            f"{name}: expected one PRNG key, jax.random.key(seed) or jax.random.PRNGKey(seed), got {describe(key)}"
        )


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


def accumulation_dtype(dtype) -> jnp.dtype:
    """float32 for 16-bit floats, else ``dtype``: step counts and sums over steps never run in 16 bits."""
    return jnp.dtype(jnp.float32) if jnp.dtype(dtype).itemsize < 4 else jnp.dtype(dtype)
