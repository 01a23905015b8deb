"""The options of :func:`lstm_jax.unroll.unroll`: validated once, resolved for the backend, as an
:class:`Options` record the layer functions read (and :class:`Noise`, a call's dropout settings)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax import dropout as _dropout
from lstm_jax.cells import LSTM_CELL, Cell

IMPLS = ("auto", "fast", "scan", "pallas", "pallas_interpret")
#: The implementations that run the fast path's recurrence (its ``custom_vjp``); of those, the ones that
#: ask for it by name (``"auto"`` falls back to the plain scan where it does not apply), and those whose
#: two time loops are the Pallas kernels of :mod:`lstm_jax.pallas_lstm` (the LSTM only).
FAST_IMPLS = ("auto", "fast", "pallas", "pallas_interpret")
NAMED_FAST_IMPLS = tuple(impl for impl in FAST_IMPLS if impl != "auto")
PALLAS_IMPLS = ("pallas", "pallas_interpret")
#: ``remat`` values besides a positive chunk length.
REMATS = (None, "step", "sqrt")
#: ``lax.scan`` unroll factor per backend when ``unroll=None``, measured with
#: ``experiments/bench.py`` (see ``docs/benchmarks.md``); other backends get 1.
DEFAULT_UNROLL = {"cpu": 1, "gpu": 8}


class Options(NamedTuple):
    """How a layer is run; :func:`check_options` validates and resolves the public arguments.

    ``truncate=K``: chunk-aligned truncated BPTT (cuts at steps ``0, K, 2K, ...``; see :mod:`lstm_jax.unroll`).
    ``remat="step"`` runs the plain scan with each step checkpointed, not the fast path (:func:`runs_fast`).
    """

    reverse: bool = False
    unroll: int | bool = 1
    impl: str = "auto"
    remat: str | int | None = None
    truncate: int | None = None
    compute_dtype: Any = None


def check_options(
    cell: Cell, *, reverse=False, unroll=None, impl="auto", remat=None, truncate=None, compute_dtype=None
) -> Options:
    """Validate ``reverse``, ``impl``, ``remat``, ``truncate``, ``compute_dtype``, ``unroll``; resolve
    ``unroll=None`` for the backend."""
    reverse = _checks.check_bool("reverse", reverse)
    _checks.check_choice("impl", impl, IMPLS)
    if impl in NAMED_FAST_IMPLS and cell.kernel is None:
        raise ValueError(
            f"impl: expected 'auto' or 'scan' for the plain step function {cell.name} (no fast kernel), got {impl!r}"
        )
    if impl in PALLAS_IMPLS:
        _check_pallas(cell, impl)
    if not (remat in REMATS or (_checks.is_int(remat) and remat >= 1)):
        raise ValueError(f"remat: expected one of {REMATS} or a chunk length >= 1, got {remat!r}")
    if remat == "step" and impl in NAMED_FAST_IMPLS:
        raise ValueError(f"remat: expected None, 'sqrt' or a chunk length with impl={impl!r}, got 'step'")
    if not (truncate is None or (_checks.is_int(truncate) and truncate >= 1)):
        raise ValueError(f"truncate: expected None or a chunk length >= 1, got {truncate!r}")
    if truncate is not None and remat not in (None, truncate):
        raise ValueError(f"remat: expected None or the chunk length {truncate} of truncate, got {remat!r}")
    if compute_dtype is not None:
        compute_dtype = _check_compute_dtype(cell, compute_dtype, impl, remat)
    if not (unroll is None or isinstance(unroll, bool) or (_checks.is_int(unroll) and unroll >= 1)):
        raise ValueError(f"unroll: expected None, a bool or an int >= 1, got {unroll!r}")
    if unroll is None:
        unroll = DEFAULT_UNROLL.get(jax.default_backend(), 1)
    return Options(reverse, unroll, impl, remat, truncate, compute_dtype)


def _check_pallas(cell: Cell, impl: str) -> None:
    if cell != LSTM_CELL:
        raise ValueError(
            f"impl: expected 'auto', 'fast' or 'scan' for {cell.name} (Pallas kernels: LSTM only), got {impl!r}"
        )
    if impl == "pallas" and jax.default_backend() != "gpu":
        raise ValueError(
            f"impl: 'pallas' compiles for a GPU, but the backend is {jax.default_backend()!r}; "
            "expected 'auto', 'fast', 'scan' or 'pallas_interpret' (the same kernels in Pallas's interpreter, slow)"
        )


def _check_compute_dtype(cell: Cell, compute_dtype, impl: str, remat) -> jnp.dtype:
    try:
        dtype = jnp.dtype(compute_dtype)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"compute_dtype: expected None or a floating dtype such as 'bfloat16', got {compute_dtype!r}")
    if not runs_fast(cell, impl, remat):
        raise ValueError(
            "compute_dtype: expected None unless the fast path runs (a built-in cell, impl not 'scan', "
            f"remat not 'step'), got {compute_dtype!r} with impl={impl!r}, remat={remat!r}, cell {cell.name}"
        )
    return dtype


def runs_fast(cell: Cell, impl: str, remat) -> bool:
    """Whether the fast path runs: a cell with a kernel, ``impl`` not ``"scan"``, ``remat`` not ``"step"``."""
    return impl in FAST_IMPLS and remat != "step" and cell.kernel is not None


def resolve_compute_dtype(options: Options, param_dtype) -> Options:
    """Reject a ``compute_dtype`` wider than the parameters; drop one equal to theirs (nothing to cast)."""
    if options.compute_dtype.itemsize > jnp.dtype(param_dtype).itemsize:
        raise ValueError(
            f"compute_dtype: expected a dtype no wider than the parameters' {param_dtype}, got {options.compute_dtype}"
        )
    return options._replace(compute_dtype=None) if options.compute_dtype == param_dtype else options


class Noise(NamedTuple):
    """Dropout settings of one call: the rates, the key of this layer (and direction), training or evaluation."""

    dropout: _dropout.Dropout = _dropout.Dropout()
    key: Any = None
    training: bool = False

    def fold(self, data: int) -> Noise:
        """The noise of a sub-part (a layer, a direction): the key folded with ``data``."""
        return self if self.key is None else self._replace(key=jax.random.fold_in(self.key, data))


#: No dropout (the default of the internal layer functions).
NO_NOISE = Noise()


def check_noise(cell: Cell, rates, key, training, options: Options) -> Noise:
    """The checked :class:`Noise` of a call; recurrent dropout and zoneout need a cell with a kernel and
    loops that take masks (not Pallas)."""
    rates = _dropout.check_dropout(rates)
    noise = Noise(rates, key, _dropout.check_mode(rates, key, training))
    if not (rates.recurrent or rates.zoneout_h or rates.zoneout_c):
        return noise
    if cell.kernel is None:
        raise ValueError(
            f"dropout: recurrent dropout and zoneout need a built-in cell (rnn_cell(), lstm_cell(), gru_cell()), "
            f"got the plain step function {cell.name}"
        )
    if options.impl in PALLAS_IMPLS:
        raise ValueError(
            f"impl: expected 'auto', 'fast' or 'scan' with recurrent dropout or zoneout, got {options.impl!r}"
        )
    return noise
