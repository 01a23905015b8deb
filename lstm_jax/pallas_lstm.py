r"""The LSTM's two time loops as persistent Pallas (Triton) kernels for the GPU.

:class:`PallasLoops` replaces the forward and reverse ``lax.scan`` of :func:`lstm_jax.fast.recurrence`
(``impl="pallas"``); everything around the loops — the hoisted input projection, the weight
gradients as single GEMMs, lengths, reverse, stacking, ``compute_dtype`` — is the fast path's.

Why: a ``lax.scan`` on the GPU launches at least one kernel per time step (the recurrent GEMM, then
the fused pointwise work), and at a small batch the launches, not the FLOPs, set the time (issue 4:
``B=16, T=1000, D=256`` costs 11.5 ms with the scan against cuDNN fp16's 6.4). Here each kernel
runs *all* ``T`` steps in one launch: one program per block of ``bb`` batch rows loops over time,
and within a step over tiles of ``bn`` hidden units,

.. math::
   a^{(k)}_t[:, n] = z^{(k)}_t[:, n] + h_{t-1} W^{(k)\top}_{hh}[:, n] \quad (k \in \{i, f, g, o\}),
   \qquad c_t[:, n] = f \odot c_{t-1}[:, n] + i \odot g, \quad h_t[:, n] = o \odot \tanh c_t[:, n],

writing ``h_t`` and ``c_t`` to the outputs, which the next step reads back (from L2: the program's
own writes, ordered by a barrier at the end of each step). :math:`W_{hh}` is read from L2 at every
step; the program never leaves the chip between steps, and no step waits for a launch. The reverse
kernel does the same for :func:`lstm_jax.fast.lstm_grad_step`: a pointwise phase writes
:math:`dz_t` and :math:`dc_{t-1}`, a barrier, then a GEMM phase :math:`dh_{t-1} = dz_t W_{hh}`.

Limits: the LSTM cell only; the hidden size a multiple of 16 (the smallest Triton dot); batch
rows padded to a multiple of ``block_batch``. One program per batch block, so a small batch uses a
few of the GPU's multiprocessors: this is the small-batch kernel, and large batches belong to the
``lax.scan`` path, whose per-step GEMMs fill the chip. ``interpret=True`` runs the same kernels in
Pallas's interpreter on any backend (slow; it is how the CPU tests check the arithmetic).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from lstm_jax._checks import accumulation_dtype, mesh_axes
from lstm_jax.cells import LSTMState, StepGrads
from lstm_jax.fast import Kernel, mask_outputs, previous_carries

Array = jax.Array

#: Gates in the fused layout ``[i; f; g; o]``, and which of them are sigmoids (``g`` is a tanh).
GATES = 4
_SIGMOID = (True, True, False, True)


class PallasLoops(NamedTuple):
    """The forward and reverse time loops as Pallas kernels (the interface of :class:`lstm_jax.fast.ScanLoops`).

    Attributes:
      interpret: run in Pallas's interpreter (any backend) instead of compiling for the GPU.
      block_batch: batch rows per program (a power of two, at least 16).
      block_hidden: hidden units per tile; the largest power of two up to this that divides ``D``.
      num_warps: Triton warps per program.
      num_stages: Triton's software-pipelining depth for the loops over k-blocks (1: none).
      reverse_tiles: visit the hidden tiles of a step last to first. The result must not change:
        the tests set it in the interpreter, where tiles run one after another, to show that no
        tile reads what another tile of the same step writes (on a GPU they run in any order).
    """

    interpret: bool = False
    block_batch: int = 16
    block_hidden: int = 64
    num_warps: int = 4
    num_stages: int = 1
    reverse_tiles: bool = False

    def forward(self, kernel: Kernel, reverse: bool, compute_dtype, w_hh, b, extras, zs, carry0, valid, masks=None):
        """``((final carry, hs), (carries, gates))``, as :meth:`lstm_jax.fast.ScanLoops.forward`."""
        del kernel, extras  # the LSTM's step is written into the kernel; the LSTM has no extras
        _check_no_masks(masks)
        num_steps, batch_shape = zs.shape[0], zs.shape[1:-1]
        hidden = w_hh.shape[1]
        if num_steps == 0:
            empty = jnp.zeros((0, *batch_shape, hidden), zs.dtype)
            return (carry0, empty), (LSTMState(empty, empty), zs)
        _check_local(self, zs)
        blocks = _blocks(self, hidden, batch_shape, num_steps)
        flat = _Flat(batch_shape, blocks.rows)
        w = w_hh.astype(compute_dtype or w_hh.dtype)
        hs, cs, gates = _forward_call(
            self,
            blocks,
            reverse,
            w.T,
            b,
            flat.steps(zs),
            flat.rows_of(carry0.h),
            flat.rows_of(carry0.c),
            flat.mask(valid),
        )
        carries = LSTMState(flat.unsteps(hs), flat.unsteps(cs))
        last = 0 if reverse else -1
        final = LSTMState(carries.h[last], carries.c[last])
        return (final, mask_outputs(carries.h, valid)), (carries, flat.unsteps(gates))

    def backward(
        self, kernel: Kernel, reverse: bool, w_hh, extras, carry0, carries, gates, valid, dfinal, dhs, masks=None
    ):
        """``(∂L/∂carry0, StepGrads(dz), h_prev)``, as :func:`lstm_jax.fast.backward`."""
        del kernel, extras
        _check_no_masks(masks)
        num_steps, batch_shape = dhs.shape[0], dhs.shape[1:-1]
        if num_steps == 0:
            return dfinal, StepGrads(jnp.zeros((0, *batch_shape, GATES * w_hh.shape[1]), dhs.dtype)), dhs
        _check_local(self, dhs)
        blocks = _blocks(self, w_hh.shape[1], batch_shape, num_steps)
        flat = _Flat(batch_shape, blocks.rows)
        steps, rows = flat.steps, flat.rows_of
        dzs, dh_buffers, dc_buffers = _backward_call(
            self,
            blocks,
            reverse,
            w_hh,
            *(steps(a) for a in (carries.c, gates, dhs)),  # h_t enters only through the gates and c_t
            rows(carry0.c),
            rows(dfinal.h),
            rows(dfinal.c),
            flat.mask(valid),
        )
        last = num_steps % 2  # the buffer written by the last step
        dcarry0 = LSTMState(flat.unrows(dh_buffers[last]), flat.unrows(dc_buffers[last]))
        return dcarry0, StepGrads(flat.unsteps(dzs)), previous_carries(carries.h, carry0.h, reverse)


def _check_no_masks(masks) -> None:
    if masks is not None and (masks.recurrent is not None or masks.zoneout is not None):
        raise ValueError(
            "impl: the Pallas kernels have no recurrent dropout or zoneout; expected impl 'fast' or 'scan'"
        )


class _Blocks(NamedTuple):
    """Static sizes of one call: hidden ``D``, batch rows per program ``bb``, hidden tile ``bn``, padded rows."""

    hidden: int
    bb: int
    bn: int
    rows: int
    reverse_tiles: bool = False

    def tile_index(self, n):
        """The hidden tile that loop iteration ``n`` computes (see ``PallasLoops.reverse_tiles``)."""
        return self.hidden // self.bn - 1 - n if self.reverse_tiles else n


def _impl(loops: PallasLoops) -> str:
    """The ``impl`` that selected these loops, for error messages."""
    return "impl='pallas_interpret'" if loops.interpret else "impl='pallas'"


def _check_local(loops: PallasLoops, a: Array) -> None:
    """Each program indexes rows of the whole batch: reject a batch sharded over an explicit mesh."""
    axes = mesh_axes(a)
    if any(axes):
        raise ValueError(
            f"{_impl(loops)}: expected a batch that is not sharded over an explicit mesh (call unroll inside "
            f"jax.shard_map, where each device holds its own rows), got time-major inputs sharded over {axes}; "
            "impl='auto', 'fast' and 'scan' take a sharded batch"
        )


def _blocks(loops: PallasLoops, hidden: int, batch_shape, num_steps: int) -> _Blocks:
    """The block sizes of one call, after checking that the kernels can take the problem."""
    if hidden % 16:
        raise ValueError(f"{_impl(loops)}: expected a hidden size that is a multiple of 16, got {hidden}")
    bb = loops.block_batch
    if bb < 16 or bb & (bb - 1):
        raise ValueError(f"block_batch: expected a power of two >= 16, got {bb}")
    bn = 16
    while bn * 2 <= loops.block_hidden and hidden % (bn * 2) == 0:
        bn *= 2
    num_rows = max(1, int(np.prod(batch_shape, dtype=int)))
    rows = -(-num_rows // bb) * bb
    elements = num_steps * rows * GATES * hidden  # the largest array, (T, rows, 4D)
    if elements >= 2**31:  # Triton computes the kernels' offsets in int32
        raise ValueError(
            f"{_impl(loops)}: expected T·rows·4D < 2**31 (int32 offsets), got {num_steps}·{rows}·{GATES * hidden}"
            f" = {elements}; use impl='fast', or remat/truncate to cut T into chunks"
        )
    return _Blocks(hidden, bb, bn, rows, loops.reverse_tiles)


class _Flat(NamedTuple):
    """Reshapes between ``(T, *batch, F)`` / ``(*batch, F)`` and the kernels' padded ``(T, rows, F)`` / ``(rows, F)``."""

    batch_shape: tuple
    rows: int

    @property
    def pad(self) -> int:
        return self.rows - int(np.prod(self.batch_shape, dtype=int))

    def steps(self, a: Array) -> Array:
        a = a.reshape(a.shape[0], -1, a.shape[-1])
        return jnp.pad(a, ((0, 0), (0, self.pad), (0, 0)))

    def rows_of(self, a: Array) -> Array:
        return jnp.pad(a.reshape(-1, a.shape[-1]), ((0, self.pad), (0, 0)))

    def mask(self, valid) -> Array | None:
        if valid is None:
            return None
        valid = valid.reshape(valid.shape[0], -1).astype(jnp.int32)
        return jnp.pad(valid, ((0, 0), (0, self.pad)))

    def unsteps(self, a: Array) -> Array:
        return a[:, : self.rows - self.pad].reshape(a.shape[0], *self.batch_shape, a.shape[-1])

    def unrows(self, a: Array) -> Array:
        return a[: self.rows - self.pad].reshape(*self.batch_shape, a.shape[-1])


# ----------------------------------------------------------------------------------------------
# The kernels. Refs are whole arrays (no block specs): each program indexes its own batch rows.


def _gate(a: Array, sigmoid: bool) -> Array:
    """σ(a) as ½ + ½ tanh(a/2) (the formula of :func:`lstm_jax.cells.lstm_activations`), or tanh(a)."""
    return 0.5 + 0.5 * jnp.tanh(0.5 * a) if sigmoid else jnp.tanh(a)


def _dot(a: Array, b: Array, acc_dtype) -> Array:
    """``a @ b`` accumulated in ``acc_dtype``. Float32 follows ``jax.default_matmul_precision`` as XLA's
    dots do (Triton's TF32 by default on a GPU); float64 is always full precision."""
    precision = jax.lax.Precision.HIGHEST if a.dtype == jnp.float64 else None
    return jnp.dot(a, b, precision=precision, preferred_element_type=acc_dtype)


def _gate_derivative(a: Array, sigmoid: bool) -> Array:
    """The derivative of :func:`_gate` from its output: a(1 − a) or 1 − a²."""
    return a * (1 - a) if sigmoid else 1 - a * a


def _step_indices(s, num_steps: int, reverse: bool, forward: bool):
    """For loop iteration ``s``: the step ``t`` it processes, the step before it in the forward
    recurrence (clamped into range), and whether ``t`` is the recurrence's first step."""
    runs_backwards = reverse == forward  # the time index falls as s rises
    t = num_steps - 1 - s if runs_backwards else s
    before = jnp.clip(t + 1 if reverse else t - 1, 0, num_steps - 1)
    first = t == (num_steps - 1 if reverse else 0)
    return t, before, first


def _forward_kernel(
    zs_ref, w_t_ref, b_ref, h0_ref, c0_ref, *refs, blocks: _Blocks, reverse: bool, masked: bool, barrier
):
    """All ``T`` forward steps for one block of batch rows (module docstring)."""
    valid_ref, (hs_ref, cs_ref, gates_ref) = (refs[0] if masked else None), refs[masked:]
    num_steps, D, bn = zs_ref.shape[0], blocks.hidden, blocks.bn
    rows = pl.ds(pl.program_id(0) * blocks.bb, blocks.bb)
    acc_dtype = accumulation_dtype(zs_ref.dtype)  # 16-bit parameters: float32 sums and pointwise work

    def step(s, _):
        t, before, first = _step_indices(s, num_steps, reverse, forward=True)

        def previous(ref0, ref, cols):  # the carry before step t: carry0 at the first step
            return jnp.where(first, ref0[rows, cols], ref[before, rows, cols]).astype(acc_dtype)

        def tile(n, _):
            n = blocks.tile_index(n)
            cols = pl.ds(n * bn, bn)

            def k_block(k, accs):
                ks = pl.ds(k * bn, bn)
                h = previous(h0_ref, hs_ref, ks).astype(w_t_ref.dtype)
                return tuple(
                    acc + _dot(h, w_t_ref[ks, pl.ds(gate * D + n * bn, bn)], acc_dtype) for gate, acc in enumerate(accs)
                )

            zero = jnp.zeros((blocks.bb, bn), acc_dtype)
            accs = jax.lax.fori_loop(0, D // bn, k_block, (zero,) * GATES)

            def pre_activation(gate, acc):  # z_t + b + h_{t-1} W_hhᵀ, the sum in fast._forward's order
                gate_cols = pl.ds(gate * D + n * bn, bn)
                z = zs_ref[t, rows, gate_cols] + b_ref[gate_cols][None, :]
                return z.astype(acc_dtype) + acc

            i, f, g, o = (_gate(pre_activation(gate, acc), _SIGMOID[gate]) for gate, acc in enumerate(accs))
            c_prev = previous(c0_ref, cs_ref, cols)
            c = f * c_prev + i * g
            h = o * jnp.tanh(c)
            if masked:  # a padded step holds the carry
                keep = valid_ref[t, rows][:, None] != 0
                c = jnp.where(keep, c, c_prev)
                h = jnp.where(keep, h, previous(h0_ref, hs_ref, cols))
            hs_ref[t, rows, cols] = h.astype(hs_ref.dtype)
            cs_ref[t, rows, cols] = c.astype(cs_ref.dtype)
            for gate, a in enumerate((i, f, g, o)):
                gates_ref[t, rows, pl.ds(gate * D + n * bn, bn)] = a.astype(gates_ref.dtype)

        jax.lax.fori_loop(0, D // bn, tile, None)
        barrier()  # step t's h and c are read by the next step's tiles

    jax.lax.fori_loop(0, num_steps, step, None)


def _backward_kernel(
    w_ref,
    cs_ref,
    gates_ref,
    dhs_ref,
    c0_ref,
    dh_final_ref,
    dc_final_ref,
    *refs,
    blocks: _Blocks,
    reverse: bool,
    masked: bool,
    barrier,
):
    """All ``T`` reverse steps of :func:`lstm_jax.fast.lstm_grad_step` for one block of batch rows.

    ``∂L/∂h`` and ``∂L/∂c`` carried between steps live in two buffers each, read from ``s mod 2`` and
    written to the other, so that no step overwrites what another thread of the same step still reads.
    """
    valid_ref, (dzs_ref, dh_ref, dc_ref) = (refs[0] if masked else None), refs[masked:]
    num_steps, D, bn = dhs_ref.shape[0], blocks.hidden, blocks.bn
    rows = pl.ds(pl.program_id(0) * blocks.bb, blocks.bb)
    acc_dtype = accumulation_dtype(dhs_ref.dtype)

    def load(ref, *index):
        return ref[index].astype(acc_dtype)

    def step(s, _):
        t, before, first = _step_indices(s, num_steps, reverse, forward=False)
        read = jax.lax.rem(s, 2)
        write = 1 - read

        def incoming(final_ref, ref, cols):  # ∂L/∂carry_t from step t+1: the final carry's at the start
            return jnp.where(s == 0, load(final_ref, rows, cols), load(ref, read, rows, cols))

        keep = (valid_ref[t, rows][:, None] != 0) if masked else None

        def pointwise(n, _):
            n = blocks.tile_index(n)
            cols = pl.ds(n * bn, bn)
            i, f, g, o = (load(gates_ref, t, rows, pl.ds(gate * D + n * bn, bn)) for gate in range(GATES))
            dh = incoming(dh_final_ref, dh_ref, cols) + load(dhs_ref, t, rows, cols)
            dc_in = incoming(dc_final_ref, dc_ref, cols)
            c_prev = jnp.where(first, load(c0_ref, rows, cols), load(cs_ref, before, rows, cols))
            tanh_c = jnp.tanh(load(cs_ref, t, rows, cols))
            dc = dc_in + dh * o * (1 - tanh_c * tanh_c)
            upstream = (dc * g, dc * c_prev, dc * i, dh * tanh_c)
            dc_prev = dc * f
            if masked:  # a padded step passes the gradient through and has none of its own
                dc_prev = jnp.where(keep, dc_prev, dc_in)
            for gate, (u, a) in enumerate(zip(upstream, (i, f, g, o))):
                dz = u * _gate_derivative(a, _SIGMOID[gate])
                if masked:
                    dz = jnp.where(keep, dz, jnp.zeros_like(dz))
                dzs_ref[t, rows, pl.ds(gate * D + n * bn, bn)] = dz.astype(dzs_ref.dtype)
            dc_ref[write, rows, cols] = dc_prev.astype(dc_ref.dtype)

        def recurrent(n, _):  # dh_{t-1}[:, n] = dz_t W_hh[:, n]
            n = blocks.tile_index(n)
            cols = pl.ds(n * bn, bn)

            def k_block(k, acc):
                ks = pl.ds(k * bn, bn)
                dz = dzs_ref[t, rows, ks].astype(w_ref.dtype)
                return acc + _dot(dz, w_ref[ks, cols], acc_dtype)

            dh_prev = jax.lax.fori_loop(0, GATES * D // bn, k_block, jnp.zeros((blocks.bb, bn), acc_dtype))
            if masked:
                dh_prev = jnp.where(keep, dh_prev, incoming(dh_final_ref, dh_ref, cols))
            dh_ref[write, rows, cols] = dh_prev.astype(dh_ref.dtype)

        jax.lax.fori_loop(0, D // bn, pointwise, None)
        barrier()  # the recurrent phase reads every tile's dz_t
        jax.lax.fori_loop(0, D // bn, recurrent, None)
        barrier()  # the next step reads dh_{t-1}, dc_{t-1}

    jax.lax.fori_loop(0, num_steps, step, None)


def _no_barrier() -> None:
    """The interpreter runs each program's steps in order: nothing to synchronise."""


def _call(loops: PallasLoops, body, blocks: _Blocks, out_shape, name: str):
    barrier = _no_barrier if loops.interpret else plt.debug_barrier
    return pl.pallas_call(
        functools.partial(body, barrier=barrier),
        out_shape=out_shape,
        grid=(blocks.rows // blocks.bb,),
        interpret=loops.interpret,
        compiler_params=plt.CompilerParams(num_warps=loops.num_warps, num_stages=loops.num_stages),
        name=name,
    )


def _output_like(a: Array):
    """``shape -> ShapeDtypeStruct`` of ``a``'s dtype that varies over the same manual mesh axes as ``a``
    (inside ``jax.shard_map``, where each device runs the kernels on its own rows)."""
    manual = jax.typeof(a).manual_axis_type
    return lambda shape: jax.ShapeDtypeStruct(shape, a.dtype, manual_axis_type=manual)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _forward_call(loops, blocks, reverse, w_t, b, zs, h0, c0, valid):
    masked = valid is not None
    num_steps, rows = zs.shape[0], zs.shape[1]
    out = _output_like(zs)
    out_shape = (out((num_steps, rows, blocks.hidden)), out((num_steps, rows, blocks.hidden)), out(zs.shape))
    body = functools.partial(_forward_kernel, blocks=blocks, reverse=reverse, masked=masked)
    args = (zs, w_t, b, h0, c0) + ((valid,) if masked else ())
    return _call(loops, body, blocks, out_shape, "lstm_forward")(*args)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _backward_call(loops, blocks, reverse, w_hh, cs, gates, dhs, c0, dh_final, dc_final, valid):
    masked = valid is not None
    rows = dhs.shape[1]
    out = _output_like(dhs)
    out_shape = (out(gates.shape), out((2, rows, blocks.hidden)), out((2, rows, blocks.hidden)))
    body = functools.partial(_backward_kernel, blocks=blocks, reverse=reverse, masked=masked)
    args = (w_hh, cs, gates, dhs, c0, dh_final, dc_final) + ((valid,) if masked else ())
    return _call(loops, body, blocks, out_shape, "lstm_backward")(*args)
