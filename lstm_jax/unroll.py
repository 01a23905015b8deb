r"""Unroll any :class:`~lstm_jax.cells.Cell` over a batch of sequences with ``jax.lax.scan``.

The input projection :math:`z_t = W_{ih} x_t + b` of all ``T`` steps is one matmul before the
scan; the scan body does only the recurrent matmul and the pointwise work. Sequences are
batch-major ``(*batch, T, M)`` by default (like flax ``nn.RNN`` and Keras) and time-major
``(T, *batch, M)`` with ``time_major=True``; the scan always runs time-major.

Ragged batches are right-padded and described by ``lengths``: a step ``t >= length`` leaves the
carry unchanged and outputs zeros, so the final carry is each sequence's carry at its last valid
step. With ``reverse=True`` the scan runs from ``T-1`` down to 0; since padded steps leave the
carry untouched, each sequence is read backwards *within its own length*, which is what the
backward half of a bidirectional layer needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.cells import Cell, check_carry, check_input, check_params

Array = jax.Array


class Bidirectional(NamedTuple):
    """A pair of anything (parameters, carries) for the forward and the backward direction."""

    forward: Any
    backward: Any


def valid_steps(lengths: Array, num_steps: int) -> Array:
    """Boolean mask ``(*batch, T)``: ``True`` where ``t < lengths`` (right padding)."""
    _checks.check_lengths(lengths, jnp.shape(lengths), num_steps)
    steps = jnp.arange(num_steps, dtype=jnp.result_type(lengths)).reshape((1,) * jnp.ndim(lengths) + (num_steps,))
    return steps < lengths[..., None]


def scan_cell(
    cell: Cell,
    params,
    zs: Array,
    carry0,
    valid: Array | None = None,
    *,
    reverse: bool = False,
    unroll: int | bool = 1,
    emit_carry: bool = False,
):
    """The scan itself, over projected inputs ``zs`` ``(T, *batch, G·D)``; no checks.

    Args:
      valid: optional boolean ``(T, *batch)``; where ``False`` the carry is held and the output is 0.
      emit_carry: output ``(carry_t, h_t)`` for every step instead of ``h_t`` alone (the manual
        BPTT needs the carries).

    Returns:
      ``(final carry, outputs)`` with outputs stacked time-major.
    """

    def body(carry, inputs):
        z, v = inputs
        new_carry, h = cell.recur(params, carry, z)
        if v is not None:
            keep = v[..., None]
            new_carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_carry, carry)
            h = jnp.where(keep, h, jnp.zeros_like(h))
        return new_carry, ((new_carry, h) if emit_carry else h)

    return jax.lax.scan(body, carry0, (zs, valid), reverse=reverse, unroll=unroll)


def time_major_inputs(xs: Array, lengths: Array | None, time_major: bool = False) -> tuple[Array, Array | None]:
    """Inputs as ``(T, *batch, M)`` and, with ``lengths``, the valid-step mask ``(T, *batch)``.

    Padded inputs are set to zero: padding may hold anything (even NaN), and a NaN that entered
    a masked step would still poison the weight gradients (``0 · NaN = NaN``).
    """
    xs_tm = xs if time_major else jnp.moveaxis(xs, -2, 0)
    if lengths is None:
        return xs_tm, None
    num_steps, batch_shape = xs_tm.shape[0], xs_tm.shape[1:-1]
    _checks.check_lengths(lengths, batch_shape, num_steps)
    valid = jnp.moveaxis(valid_steps(lengths, num_steps), -1, 0)
    return jnp.where(valid[..., None], xs_tm, jnp.zeros_like(xs_tm)), valid


def unroll(
    cell: Cell,
    params,
    xs: Array,
    carry0=None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
    reverse: bool = False,
    unroll: int | bool = 1,
):
    r"""Run ``cell`` over sequences: :math:`(c_t, h_t) = \mathrm{cell}(c_{t-1}, x_t)` for each t.

    Args:
      cell: e.g. ``rnn_cell("tanh")`` or ``lstm_cell()``.
      params: the cell's parameters.
      xs: inputs ``(*batch, T, M)``, or ``(T, *batch, M)`` with ``time_major=True``.
      carry0: initial carry (``(*batch, D)``, or ``LSTMState`` of two); zeros when ``None``.
      lengths: optional integer ``(*batch)``: valid steps per sequence (right padding).
      time_major: layout of ``xs`` and of the returned outputs.
      reverse: run from the last step to the first (within each sequence's length).
      unroll: ``lax.scan``'s unroll factor.

    Returns:
      ``(final_carry, hs)``; ``hs`` has the layout of ``xs`` with ``D`` features, zero at padding.

    Raises:
      ValueError: when shapes or dtypes of inputs, parameters, carry or lengths do not fit.
    """
    check_params(cell, params)
    check_input(params, xs, 2, "(*batch, T, M)" if not time_major else "(T, *batch, M)")
    xs_tm, valid = time_major_inputs(xs, lengths, time_major)
    batch_shape = xs_tm.shape[1:-1]
    if carry0 is None:
        carry0 = cell.zeros(params, batch_shape)
    check_carry(cell, params, carry0, batch_shape)
    zs = cell.project(params, xs_tm)  # one GEMM for all steps
    carry, hs = scan_cell(cell, params, zs, carry0, valid, reverse=reverse, unroll=unroll)
    return carry, (hs if time_major else jnp.moveaxis(hs, 0, -2))


_unroll_one = unroll  # `unroll_layers` takes an argument named `unroll`, like lax.scan


def _layer(cell: Cell, params, hs: Array, carry, layer: int, kw: dict):
    """One layer of :func:`unroll_layers` on time-major ``hs``: ``(final carry, outputs)``."""
    if not isinstance(params, Bidirectional):
        return _unroll_one(cell, params, hs, carry, **kw)
    carry = carry if carry is not None else Bidirectional(None, None)
    if not isinstance(carry, Bidirectional):
        raise ValueError(
            f"carry0[{layer}]: expected Bidirectional(forward, backward) or None for a bidirectional "
            f"layer, got {type(carry).__name__}"
        )
    c_f, h_f = _unroll_one(cell, params.forward, hs, carry.forward, **kw)
    c_b, h_b = _unroll_one(cell, params.backward, hs, carry.backward, reverse=True, **kw)
    return Bidirectional(c_f, c_b), jnp.concatenate([h_f, h_b], axis=-1)


def unroll_layers(
    cell: Cell,
    layers: Sequence[Any],
    xs: Array,
    carry0: Sequence[Any] | None = None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
    unroll: int | bool = 1,
):
    """Stacked (and optionally bidirectional) layers: layer ``l`` reads the outputs of layer ``l-1``.

    Args:
      layers: one entry per layer: the cell's params, or ``Bidirectional(fwd_params, bwd_params)``
        whose outputs are concatenated ``[h_fwd; h_bwd]`` (``2D`` features) for the next layer.
        :func:`lstm_jax.init.init_layers` builds them.
      carry0: ``None`` or one initial carry per layer (a ``Bidirectional`` pair for a
        bidirectional layer); ``None`` entries mean zeros.
      lengths, time_major, unroll: as in :func:`unroll`.

    Returns:
      ``(final_carries, hs)``: a tuple with one final carry per layer, and the last layer's outputs.
    """
    if len(layers) == 0:
        raise ValueError("layers: expected at least one layer, got an empty sequence")
    if carry0 is None:
        carry0 = (None,) * len(layers)
    if len(carry0) != len(layers):
        raise ValueError(f"carry0: expected one carry per layer ({len(layers)}), got {len(carry0)}")
    first = layers[0].forward if isinstance(layers[0], Bidirectional) else layers[0]
    check_params(cell, first)
    check_input(first, xs, 2, "(*batch, T, M)" if not time_major else "(T, *batch, M)")  # in the caller's layout
    hs = xs if time_major else jnp.moveaxis(xs, -2, 0)
    if lengths is not None:
        _checks.check_lengths(lengths, hs.shape[1:-1], hs.shape[0])
    kw = dict(lengths=lengths, time_major=True, unroll=unroll)
    finals = []
    for layer, (params, carry) in enumerate(zip(layers, carry0)):
        try:
            carry, hs = _layer(cell, params, hs, carry, layer, kw)
        except ValueError as error:  # name the layer; shapes in the message are time-major
            raise ValueError(f"layer {layer}: {error}") from None
        finals.append(carry)
    return tuple(finals), (hs if time_major else jnp.moveaxis(hs, 0, -2))
