r"""Unroll any cell over a batch of sequences with ``jax.lax.scan``.

A cell is a :class:`~lstm_jax.cells.Cell` (``rnn_cell(...)``, ``lstm_cell()``, ``gru_cell()``), or any plain step
function ``step(params, carry, x) -> (carry, y)`` (then nothing is hoisted and ``carry0`` must be
given).

The input projection :math:`z_t = W_{ih} x_t + b` of all ``T`` steps is one matmul before the
scan (one per chunk where time is chunked: ``remat``, ``truncate``, and on the CPU's fast path
``T >= 256``, :data:`DEFAULT_CHUNK`); the scan body does only the recurrent matmul and the pointwise
work. Sequences are
batch-major ``(*batch, T, M)`` by default (like flax ``nn.RNN`` and Keras) and time-major
``(T, *batch, M)`` with ``time_major=True``; the scan always runs time-major.

Ragged batches are right-padded and described by ``lengths``: a step ``t >= length`` leaves the
carry unchanged and outputs zeros, so the final carry is each sequence's carry at its last valid
step. With ``reverse=True`` the scan runs from ``T-1`` down to 0; since padded steps leave the
carry untouched, each sequence is read backwards *within its own length*, which is what the
backward half of a bidirectional layer needs.

Implementations (``impl``): ``"fast"`` is the ``custom_vjp`` recurrence of :mod:`lstm_jax.fast`
(same forward numbers, a backward pass that leaves the weight gradient to one GEMM); ``"scan"`` is
the plain ``lax.scan`` differentiated by ``jax.grad`` (the reference, and the one with forward-mode
derivatives); ``"auto"`` (default) is ``"fast"`` for the built-in cells and ``"scan"`` otherwise.
``"pallas"`` (LSTM, GPU) is ``"fast"`` with its two time loops run by persistent Pallas kernels
(:mod:`lstm_jax.pallas_lstm`: one launch for all steps instead of one per step), and
``"pallas_interpret"`` runs those kernels in Pallas's interpreter on any backend (slow; for tests).

Long sequences (``remat``, ``truncate``): the time axis can be cut into chunks of ``K`` steps run by
an outer ``lax.scan``. With ``remat="sqrt"`` (``K = ⌈√T⌉``) or ``remat=K`` each chunk is a
``jax.checkpoint``: the backward pass keeps only the carries between chunks and recomputes one
chunk at a time, so the memory of BPTT falls from ``O(T)`` per-step intermediates to ``O(T/K + K)``
(plus the outputs). ``remat="step"`` checkpoints every step of the plain scan instead.
``truncate=K`` is chunk-aligned truncated BPTT: the carry enters each chunk under ``stop_gradient``;
the forward numbers are unchanged. The cuts sit at steps ``0, K, 2K, ...`` of the batch (not a
sliding window), so a loss at step ``t`` reaches back ``(t mod K) + 1`` steps, a sawtooth between 1
and ``K``. With ``reverse=True`` the first chunk the outer scan meets is the last, partial one (when ``K`` does not
divide ``T``), and a
loss at ``t`` reaches forward to the end of its chunk. A cut applies only to a sequence with valid
steps in the chunk: a sequence that ended in an earlier chunk is not cut again, so the gradient of
its final carry reaches back to the start of its last chunk; every sequence with ``length >= 1``
is cut before its first step, so no gradient reaches its ``carry0``, but a sequence of length 0 is
never cut: its final carry *is* its ``carry0``, and the final carry's gradient reaches it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from lstm_jax import _checks, fast
from lstm_jax import dropout as _dropout
from lstm_jax._sharding import check_replicated, sharded_as_batch, varying_as
from lstm_jax._unroll_options import (  # noqa: F401  (re-exported: the options are part of the unroll's API)
    DEFAULT_UNROLL,
    FAST_IMPLS,
    IMPLS,
    NAMED_FAST_IMPLS,
    NO_NOISE,
    PALLAS_IMPLS,
    REMATS,
    Noise,
    Options,
    check_noise,
    check_options,
    resolve_compute_dtype,
    runs_fast,
)
from lstm_jax.cells import Cell, check_carry, check_input, check_params, extras

Array = jax.Array


class Bidirectional(NamedTuple):
    """A pair of anything (parameters, carries) for the forward and the backward direction."""

    forward: Any
    backward: Any


def valid_steps(lengths: Array, num_steps: int) -> Array:
    """Boolean mask ``(*batch, T)``: ``True`` where ``t < lengths`` (right padding)."""
    num_steps = _checks.check_int("num_steps", num_steps, 0)
    _checks.check_lengths(lengths, jnp.shape(lengths), num_steps)
    return _valid_steps(lengths, num_steps)


def _valid_steps(lengths: Array, num_steps: int) -> Array:
    # Compare in int32 at least: an arange in the dtype of uint8 lengths would wrap past 255.
    steps = jnp.arange(num_steps)
    steps = steps.reshape((1,) * jnp.ndim(lengths) + (num_steps,))
    return steps < lengths.astype(steps.dtype)[..., None]


def as_cell(cell_or_step) -> Cell:
    """A :class:`Cell` as it is; a plain ``step(params, carry, x) -> (carry, y)`` wrapped as one.

    The wrapped step gets the raw ``x_t`` (no input projection is hoisted), its parameters are not
    checked (``gates=0``), and it has no zero carry.
    """
    if isinstance(cell_or_step, Cell):
        return cell_or_step
    if callable(cell_or_step):
        return Cell(getattr(cell_or_step, "__name__", "step"), 0, lambda params, x: x, cell_or_step, None)
    raise ValueError(
        "cell: expected a Cell (rnn_cell(), lstm_cell(), gru_cell()) or a step function (params, carry, x) -> (carry, y), "
        f"got {type(cell_or_step).__name__}"
    )


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
    masks: _dropout.LayerMasks | None = None,
):
    """The scan itself, over projected inputs ``zs`` ``(T, *batch, G·D)``; no checks.

    Args:
      valid: optional boolean ``(T, *batch)``; where ``False`` the carry is held and the output is 0.
      emit_carry: output ``(carry_t, h_t)`` for every step instead of ``h_t`` alone (the manual
        BPTT needs the carries).
      masks: recurrent dropout and zoneout (:mod:`lstm_jax.dropout`; a cell with a kernel only), or ``None``.

    Returns:
      ``(final carry, outputs)`` with outputs stacked time-major.
    """
    recur, zoneout = cell.recur, None
    if masks is not None:
        recur, zoneout = _masked_recur(cell, masks.recurrent), masks.zoneout

    def body(carry, inputs):
        z, v, keep = inputs
        new_carry, h = recur(params, carry, z)
        if keep is not None:  # zoneout: d ⊙ old + (1 − d) ⊙ new, and the output is the zoned-out h
            new_carry = _dropout.zone(keep, new_carry, carry)
            h = cell.kernel.hidden(new_carry)
        if v is not None:
            held = v[..., None]
            new_carry = jax.tree.map(lambda n, o: jnp.where(held, n, o), new_carry, carry)
            h = jnp.where(held, h, jnp.zeros_like(h))
        return new_carry, ((new_carry, h) if emit_carry else h)

    return jax.lax.scan(body, carry0, (zs, valid, zoneout), reverse=reverse, unroll=unroll)


def _masked_recur(cell: Cell, recurrent_mask):
    r"""``cell.recur`` with the recurrent operand :math:`m \odot h_{t-1}` (``mask`` None: ``cell.recur``)."""
    if recurrent_mask is None:
        return cell.recur

    def recur(params, carry, z):
        a = _dropout.apply(cell.kernel.hidden(carry), recurrent_mask) @ params.w_hh.T
        new, _ = cell.kernel.step(a, extras(params), carry, z)
        return new, cell.kernel.hidden(new)

    return recur


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
    valid = jnp.moveaxis(_valid_steps(lengths, num_steps), -1, 0)
    return jnp.where(valid[..., None], xs_tm, jnp.zeros_like(xs_tm)), valid


def check_layer_input(cell: Cell, params, xs: Array, meaning: str) -> None:
    """Parameters and inputs of one layer: fully for a :class:`Cell`, floating and rank for a plain step."""
    if cell.gates:
        check_params(cell, params)
        check_input(params, xs, 2, meaning)
    else:
        _checks.check_array("inputs", xs)
        _checks.check_floating("inputs", xs)
        _checks.check_ndim("inputs", xs, 2, meaning)


#: On the fast path, sequences of at least twice this many steps are projected and scanned in chunks of
#: about this length (an outer ``lax.scan``; the same numbers), so that a chunk's projected inputs
#: and saved gates stay in cache. Measured on the 2-core CPU at T = 1000: forward 0.6x and
#: training step 0.6-0.8x the unchunked time; no change at T <= 100. The GPU wants the one big GEMM.
DEFAULT_CHUNK = {"cpu": 128}


def _scan(cell: Cell, params, zs: Array, carry0, valid, options: Options, masks=None):
    """The recurrence over projected inputs (:func:`_project`) by the chosen implementation: ``(final carry, hs)``."""
    if runs_fast(cell, options.impl, options.remat):
        args = (cell.kernel, options.reverse, _loops(options), options.compute_dtype)
        return fast.recurrence(*args, params.w_hh, params.b, extras(params), zs, carry0, valid, masks)
    if options.remat == "step":
        recur = jax.checkpoint(_masked_recur(cell, None if masks is None else masks.recurrent))
        cell, masks = cell._replace(recur=recur), masks and masks._replace(recurrent=None)
    return scan_cell(cell, params, zs, carry0, valid, reverse=options.reverse, unroll=options.unroll, masks=masks)


def _loops(options: Options):
    """The fast path's time loops: ``lax.scan`` or the Pallas kernels."""
    if options.impl in PALLAS_IMPLS:
        from lstm_jax import pallas_lstm  # only here: importing Pallas costs time and is useless on a CPU

        return pallas_lstm.PallasLoops(interpret=options.impl == "pallas_interpret")
    return fast.ScanLoops(options.unroll)


def _project(cell: Cell, params, xs: Array, options: Options) -> Array:
    """The cell's input projection; on the fast path without the bias (the recurrence adds it in its
    steps) and, with a ``compute_dtype``, with operands in that dtype."""
    if runs_fast(cell, options.impl, options.remat):
        return fast.input_projection(params.w_ih, xs, options.compute_dtype)
    return cell.project(params, xs)


def _chunk_length(options: Options, num_steps: int) -> int | None:
    """The chunk length of ``remat``/``truncate`` (never more than ``T``: padding would be wasted work)."""
    if options.truncate is not None:
        length = options.truncate
    elif options.remat == "sqrt":
        length = math.isqrt(num_steps - 1) + 1 if num_steps > 1 else 1
    elif _checks.is_int(options.remat):
        length = options.remat
    else:
        return None
    return max(1, min(length, num_steps))


def _cache_chunk(num_steps: int) -> int | None:
    """:data:`DEFAULT_CHUNK` for the backend evened out over ``T`` (``T=300`` -> 3 chunks of 100); ``None``
    below two chunks' worth of steps or on a backend without one."""
    target = DEFAULT_CHUNK.get(jax.default_backend())
    if target is None or num_steps < 2 * target:
        return None
    chunks = -(-num_steps // target)  # ceil(T / target)
    return -(-num_steps // chunks)  # ceil(T / chunks): the least padding


def _cut(carry, valid_chunk):
    """Truncation at a chunk boundary: ``stop_gradient`` on the carry of every sequence that still has
    steps in the chunk. A sequence that has ended keeps its held carry's gradient, so the gradient
    of its final carry reaches back ``K`` steps from the chunk it ended in, not zero steps."""
    if valid_chunk is None:
        return jax.lax.stop_gradient(carry)
    active = jnp.any(valid_chunk, axis=0)[..., None]
    return jax.tree.map(lambda c: jnp.where(active, jax.lax.stop_gradient(c), c), carry)


def _chunked(cell: Cell, params, xs_tm: Array, carry0, valid, options: Options, length: int, masks=None):
    """Project and scan ``length`` steps at a time in an outer scan (checkpointed or truncated chunks).

    ``T`` is padded to a multiple of ``length`` with invalid steps, which hold the carry; zoneout's
    per-step masks are cut into the same chunks.
    """
    num_steps = xs_tm.shape[0]
    chunks = -(-num_steps // length)
    pad = chunks * length - num_steps
    if valid is None and pad:
        valid = jnp.ones_like(xs_tm[..., 0], bool)  # (T, *batch), sharded as the inputs are
    zoneout = None if masks is None else masks.zoneout

    def pad_steps(a):  # zeros after the last step (padded steps are invalid: what they hold is never used)
        return jnp.pad(a, ((0, pad),) + ((0, 0),) * (a.ndim - 1))

    if pad:
        xs_tm, valid, zoneout = pad_steps(xs_tm), pad_steps(valid), jax.tree.map(pad_steps, zoneout)

    def split(a):
        return a.reshape(chunks, length, *a.shape[1:])

    def chunk(carry, inputs):
        xs_chunk, valid_chunk, zoneout_chunk = inputs
        if options.truncate is not None:
            carry = _cut(carry, valid_chunk)
        chunk_masks = None if masks is None else masks._replace(zoneout=zoneout_chunk)
        zs = _project(cell, params, xs_chunk, options)
        return _scan(cell, params, zs, carry, valid_chunk, options, chunk_masks)

    if options.remat is not None:  # "sqrt" or a chunk length (never "step": no chunks then)
        chunk = jax.checkpoint(chunk)
    inputs = jax.tree.map(split, (xs_tm, valid, zoneout))
    carry, hs = jax.lax.scan(chunk, carry0, inputs, reverse=options.reverse)
    return carry, hs.reshape(chunks * length, *hs.shape[2:])[:num_steps]


def _layer(cell: Cell, params, xs_tm: Array, carry0, valid, options: Options, noise: Noise = NO_NOISE):
    """One layer on checked, time-major inputs: default and check the carry, draw the dropout masks, project, scan."""
    batch_shape = xs_tm.shape[1:-1]
    if carry0 is None:
        if cell.zeros is None:
            raise ValueError(f"carry0: expected an initial carry for the plain step function {cell.name}, got None")
        carry0 = cell.zeros(params, batch_shape)
    if cell.gates:
        check_carry(cell, params, carry0, batch_shape)
    check_replicated(params)  # on a mesh, every path must type the same: carry and parameters placed as the inputs
    carry0, params = varying_as((sharded_as_batch(carry0, xs_tm), params), xs_tm)
    if options.compute_dtype is not None:  # set only for a built-in cell (check_options)
        options = resolve_compute_dtype(options, params.w_hh.dtype)
    masks = None
    if noise.dropout.active:  # drawn once, outside the scan
        shapes = jax.eval_shape(lambda: carry0)
        masks = _dropout.draw(noise.dropout, noise.key, noise.training, shapes, xs_tm.shape[0], xs_tm.shape[1:])
        xs_tm = _dropout.apply(xs_tm, masks.input)  # the same mask at every step: before the projection
        if masks.recurrent is None and masks.zoneout is None:
            masks = None
    length = _chunk_length(options, xs_tm.shape[0])
    if length is None and runs_fast(cell, options.impl, options.remat):  # remat is None or "step" here
        length = _cache_chunk(xs_tm.shape[0])
    if length is not None:
        return _chunked(cell, params, xs_tm, carry0, valid, options, length, masks)
    zs = _project(cell, params, xs_tm, options)  # one GEMM for all steps
    return _scan(cell, params, zs, carry0, valid, options, masks)


def unroll(
    cell,
    params,
    xs: Array,
    carry0=None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
    reverse: bool = False,
    unroll: int | bool | None = None,
    impl: str = "auto",
    remat: str | int | None = None,
    truncate: int | None = None,
    compute_dtype=None,
    dropout: _dropout.Dropout | None = None,
    key: Array | None = None,
    training: bool = False,
):
    r"""Run ``cell`` over sequences: :math:`(c_t, h_t) = \mathrm{cell}(c_{t-1}, x_t)` for each t.

    Args:
      cell: ``rnn_cell("tanh")``, ``lstm_cell()``, or a plain ``step(params, carry, x)``.
      params: the cell's parameters.
      xs: inputs ``(*batch, T, M)``, or ``(T, *batch, M)`` with ``time_major=True``.
      carry0: initial carry (``(*batch, D)``, or ``LSTMState`` of two); zeros when ``None``.
      lengths: optional integer ``(*batch)``: valid steps per sequence (right padding).
      time_major: layout of ``xs`` and of the returned outputs.
      reverse: run from the last step to the first (within each sequence's length).
      unroll: ``lax.scan``'s unroll factor; ``None``: :data:`DEFAULT_UNROLL` for the backend.
      impl: ``"auto"``, ``"fast"``, ``"scan"``, ``"pallas"`` or ``"pallas_interpret"`` (module
        docstring); all give the same numbers.
      remat: ``None``, ``"step"``, ``"sqrt"`` or a chunk length: checkpointing for long sequences.
      truncate: ``None`` or ``K``: truncated BPTT, gradients reach back at most ``K`` steps.
      compute_dtype: ``None`` or e.g. ``"bfloat16"``: the dtype of the matmul operands on the fast
        path; the carry, the pointwise work and the sums stay in the parameters' dtype.
      dropout: ``None`` or :class:`lstm_jax.dropout.Dropout` rates (``input``, ``recurrent``, zoneout;
        ``between_layers`` is for :func:`unroll_layers`).
      key: PRNG key of the dropout masks (needed when ``training`` with a non-zero rate).
      training: draw masks from ``key``; ``False`` (evaluation): no dropout, zoneout by its expectation.

    Returns:
      ``(final_carry, hs)``; ``hs`` has the layout of ``xs`` with ``D`` features, zero at padding.

    Raises:
      ValueError: when shapes or dtypes of inputs, parameters, carry or lengths do not fit.
    """
    cell = as_cell(cell)
    time_major = _checks.check_bool("time_major", time_major)
    options = check_options(
        cell, reverse=reverse, unroll=unroll, impl=impl, remat=remat, truncate=truncate, compute_dtype=compute_dtype
    )
    noise = check_noise(cell, dropout, key, training, options)
    if noise.dropout.between_layers:
        raise ValueError(
            f"dropout.between_layers: expected 0 in unroll (one layer; it acts between the layers of unroll_layers), "
            f"got {noise.dropout.between_layers}"
        )
    check_layer_input(cell, params, xs, "(T, *batch, M)" if time_major else "(*batch, T, M)")
    xs_tm, valid = time_major_inputs(xs, lengths, time_major)
    carry, hs = _layer(cell, params, xs_tm, carry0, valid, options, noise)
    return carry, (hs if time_major else jnp.moveaxis(hs, 0, -2))


def _bidirectional_layer(
    cell: Cell, params: Bidirectional, hs: Array, carry, valid, options: Options, layer: int, noise: Noise = NO_NOISE
):
    """Both directions of one layer on time-major ``hs``; outputs concatenated ``[h_fwd; h_bwd]``."""
    carry = carry if carry is not None else Bidirectional(None, None)
    if not isinstance(carry, Bidirectional):
        raise ValueError(
            f"carry0[{layer}]: expected Bidirectional(forward, backward) or None for a bidirectional "
            f"layer, got {type(carry).__name__}"
        )
    outputs = []
    for index, direction in enumerate(Bidirectional._fields):
        check_layer_input(cell, getattr(params, direction), hs, "(T, *batch, features)")
        outputs.append(
            _layer(
                cell,
                getattr(params, direction),
                hs,
                getattr(carry, direction),
                valid,
                options._replace(reverse=direction == "backward"),
                noise.fold(index),
            )
        )
    (c_f, h_f), (c_b, h_b) = outputs
    return Bidirectional(c_f, c_b), jnp.concatenate([h_f, h_b], axis=-1)


def unroll_layers(
    cell,
    layers: Sequence[Any],
    xs: Array,
    carry0: Sequence[Any] | None = None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
    unroll: int | bool | None = None,
    impl: str = "auto",
    remat: str | int | None = None,
    truncate: int | None = None,
    compute_dtype=None,
    dropout: _dropout.Dropout | None = None,
    key: Array | None = None,
    training: bool = False,
):
    """Stacked (and optionally bidirectional) layers: layer ``l`` reads the outputs of layer ``l-1``.

    Args:
      cell: as in :func:`unroll`.
      layers: one entry per layer: the cell's params, or ``Bidirectional(fwd_params, bwd_params)``
        whose outputs are concatenated ``[h_fwd; h_bwd]`` (``2D`` features) for the next layer.
        :func:`lstm_jax.init.init_layers` builds them.
      carry0: ``None`` or one initial carry per layer (a ``Bidirectional`` pair for a
        bidirectional layer); ``None`` entries mean zeros.
      lengths, time_major, unroll, impl, remat, truncate, compute_dtype: as in :func:`unroll`; lengths are
        checked and masked once.
      dropout, key, training: as in :func:`unroll`, each layer (and direction) with masks of its own;
        ``dropout.between_layers`` drops each layer's outputs but the last's (a new mask per step).

    Returns:
      ``(final_carries, hs)``: a tuple with one final carry per layer, and the last layer's outputs.
    """
    cell = as_cell(cell)
    time_major = _checks.check_bool("time_major", time_major)
    options = check_options(cell, unroll=unroll, impl=impl, remat=remat, truncate=truncate, compute_dtype=compute_dtype)
    noise = check_noise(cell, dropout, key, training, options)
    if len(layers) == 0:
        raise ValueError("layers: expected at least one layer, got an empty sequence")
    if carry0 is None:
        carry0 = (None,) * len(layers)
    if len(carry0) != len(layers):
        raise ValueError(f"carry0: expected one carry per layer ({len(layers)}), got {len(carry0)}")
    first = layers[0].forward if isinstance(layers[0], Bidirectional) else layers[0]
    check_layer_input(cell, first, xs, "(T, *batch, M)" if time_major else "(*batch, T, M)")  # caller's layout
    hs, valid = time_major_inputs(xs, lengths, time_major)
    finals = []
    for layer, (params, carry) in enumerate(zip(layers, carry0)):
        layer_noise = noise.fold(layer)
        try:
            if isinstance(params, Bidirectional):
                carry, hs = _bidirectional_layer(cell, params, hs, carry, valid, options, layer, layer_noise)
            else:
                check_layer_input(cell, params, hs, "(T, *batch, features)")
                carry, hs = _layer(cell, params, hs, carry, valid, options, layer_noise)
        except ValueError as error:  # name the layer; shapes in the message are time-major
            raise ValueError(f"layer {layer}: {error}") from None
        rate = layer_noise.dropout.between_layers
        if rate and layer_noise.training and layer < len(layers) - 1:  # PyTorch's dropout: not after the last layer
            mask = _dropout.keep_mask(jax.random.fold_in(layer_noise.key, 3), rate, hs.shape, hs.dtype)
            hs = _dropout.apply(hs, mask)  # a mask per step and unit, drawn outside the scans
        finals.append(carry)
    return tuple(finals), (hs if time_major else jnp.moveaxis(hs, 0, -2))
