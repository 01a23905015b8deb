r"""The fast path: the recurrence as a ``jax.custom_vjp`` whose backward pass does the least work.

``jax.grad`` through a plain ``lax.scan`` saves every intermediate of every step and, in the
reverse scan, recomputes what it did not save and forms the weight gradient one step at a time
(``T`` small matmuls accumulated into ``∂L/∂W_hh``). Here the forward scan saves only the carries
and, for the LSTM, the gate activations; the reverse scan computes only the pre-activation
gradients :math:`dz_t` and :math:`dh_{t-1} = W_{hh}^\top dz_t`; the weight gradient is then one GEMM
over all the steps of one call (``G`` gate blocks: 1 RNN, 4 LSTM, 3 GRU),

.. math:: \frac{\partial L}{\partial W_{hh}} = \sum_t dz_t\, h_{t-1}^\top
          = dZ^\top H_{\mathrm{prev}} \quad (dZ: (T·B, G·D),\ H_{\mathrm{prev}}: (T·B, D)),

:math:`\partial L/\partial b = \sum_t dz_t`, and :math:`dz_t` flows back through the hoisted input
projection :math:`W_{ih} x_t` (:func:`project`: one more GEMM of the same form for :math:`W_{ih}`).
The bias is added inside each step: ``zs`` holds :math:`W_{ih} x_t` alone, the step sees
:math:`z_t = W_{ih} x_t + b`, and the ``custom_vjp`` differentiates ``(w_hh, b, extras, zs, carry0)``,
with :math:`\partial L/\partial b = \sum_t dz_t` and ``zs``'s cotangent :math:`dz_t`. A call covers
all ``T`` steps, or one chunk of them: :func:`lstm_jax.unroll.unroll` calls it once per chunk under
``remat``/``truncate`` and, on the CPU, for ``T >= 256`` (``unroll.DEFAULT_CHUNK``, about 128 steps),
so "one GEMM" is one per chunk there. The per-step formulas are each cell's
:class:`~lstm_jax.cells.Kernel` (``docs/maths.md``), which the manual BPTT of :mod:`lstm_jax.bptt`
runs too. A cell whose gates are not a plain sum of the two projections (the GRU) returns the
recurrent pre-activation's gradient :math:`da_t` apart from :math:`dz_t`
(:class:`~lstm_jax.cells.StepGrads`), and :math:`\partial L/\partial W_{hh} = \sum_t da_t h_{t-1}^\top`;
its further parameters (the GRU's :math:`b_{hn}`), the *extras*, get their gradients from the
stacked step gradients after the loop (``Kernel.extra_grads``). The two time loops are pluggable
(:class:`ScanLoops`, or the Pallas kernels of :mod:`lstm_jax.pallas_lstm`).

:func:`lstm_jax.unroll.unroll` uses a cell's kernel by default (``impl="auto"``), and the plain
scan with ``impl="scan"``.

Limits: a ``custom_vjp`` has no forward-mode derivative, so ``jax.jvp``/``jax.jacfwd`` (and
forward-over-reverse Hessians) need ``impl="scan"``; reverse-over-reverse works, since the backward
pass is itself written in differentiable JAX.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import dropout
from lstm_jax._checks import accumulation_dtype, mesh_axes
from lstm_jax.cells import Kernel, StepGrads, add_bias, sum_rows
from lstm_jax.cells import matmul as matmul  # re-exported: lstm_jax.fast.matmul

Array = jax.Array


# ----------------------------------------------------------------------------------------------
# The custom_vjp recurrence.


def _hold(valid, new, old):
    """Per leaf: ``new`` where the step is valid, ``old`` (the held carry) where it is padding."""
    if valid is None:
        return new
    keep = valid[..., None]
    return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)


def _forward(kernel: Kernel, reverse: bool, unroll, compute_dtype, w_hh, b, extras, zs, carry0, valid, masks):
    r"""The forward scan; returns ``((final carry, hs), (carries, saved))``.

    With dropout masks (:class:`lstm_jax.dropout.LayerMasks`; ``None``: none), the recurrent operand is
    :math:`m \odot h_{t-1}` and zoneout blends each new carry with the previous one; ``saved`` then
    also holds the carries before zoneout, ``(saved, raw)``, which the backward steps differentiate.

    The bias is added to each step's ``zs`` row (:math:`W_{ih} x_t`, giving :math:`z_t`) inside the step,
    where XLA fuses it into the step's pointwise work, rather than in a pass of its own over all
    ``T·B·G·D`` pre-activations (measured on the CPU at B=64, T=100, D=512: forward 197 -> 189 ms).
    """

    # With a batch, W_hh is transposed once outside the loop: (B, D) @ (D, G·D) ran faster on the CPU
    # than the dot with a transposed operand that XLA makes of ``h @ w_hh.T`` inside it. With one
    # sequence it is the other way round (a matrix-vector product reading W_hh's rows: B=1, D=256,
    # forward 3.5 -> 2.5 ms), so the transpose is left inside the loop for XLA to fold into the dot.
    w = w_hh.astype(compute_dtype or w_hh.dtype)
    fold = math.prod(zs.shape[1:-1]) == 1
    w_t_outside = None if fold else w.T

    recurrent_mask, zoneout = (None, None) if masks is None else (masks.recurrent, masks.zoneout)

    def body(carry, inputs):
        z, v, keep = inputs
        h = dropout.apply(kernel.hidden(carry), recurrent_mask)
        a = matmul(h, w.T if fold else w_t_outside)  # W_hh h_{t-1}: the step's one GEMM
        raw, saved = kernel.step(a, extras, carry, add_bias(z, b))
        held = _hold(v, dropout.zone(keep, raw, carry), carry)
        return held, (held, saved if keep is None else (saved, raw))

    final, (carries, saved) = jax.lax.scan(body, carry0, (zs, valid, zoneout), reverse=reverse, unroll=unroll)
    return (final, mask_outputs(kernel.hidden(carries), valid)), (carries, saved)


def mask_outputs(hs: Array, valid) -> Array:
    """The outputs ``h_t`` with zeros at padded steps (``valid``: ``(T, *batch)`` or ``None``)."""
    if valid is None:
        return hs
    return jnp.where(valid[..., None], hs, jnp.zeros_like(hs))


class ScanLoops(NamedTuple):
    """The forward and reverse time loops of :func:`recurrence` as ``lax.scan``s (the default).

    Another implementation of the two loops (:class:`lstm_jax.pallas_lstm.PallasLoops`) has the same
    two methods and returns the same numbers.
    """

    unroll: int | bool = 1

    def forward(self, kernel: Kernel, reverse: bool, compute_dtype, w_hh, b, extras, zs, carry0, valid, masks=None):
        """``((final carry, hs), (carries, saved))``: the outputs and what the backward pass needs."""
        return _forward(kernel, reverse, self.unroll, compute_dtype, w_hh, b, extras, zs, carry0, valid, masks)

    def backward(
        self, kernel: Kernel, reverse: bool, w_hh, extras, carry0, carries, saved, valid, dfinal, dhs, masks=None
    ):
        """``(∂L/∂carry0, StepGrads of every step, h_prev)``: see :func:`backward`."""
        args = (w_hh, extras, carry0, carries, saved, valid, dfinal, dhs, masks)
        return backward(kernel, reverse, self.unroll, *args)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def recurrence(
    kernel: Kernel,
    reverse: bool,
    loops,
    compute_dtype,
    w_hh: Array,
    b: Array,
    extras: tuple,
    zs: Array,
    carry0,
    valid,
    masks=None,
):
    """``(final carry, hs)`` of the recurrence over projected inputs ``zs + b``, ``zs``: ``(T, *batch, G·D)``.

    The same numbers as :func:`lstm_jax.unroll.scan_cell` (``valid``: ``(T, *batch)`` bool or
    ``None``), with the cheaper backward pass described in the module docstring. ``loops`` runs the
    two time loops (:class:`ScanLoops` or :class:`lstm_jax.pallas_lstm.PallasLoops`); ``compute_dtype``
    (``None``: ``w_hh``'s) is the dtype of the matmul operands, forward and backward (:func:`matmul`).
    ``masks``: recurrent dropout and zoneout (:class:`lstm_jax.dropout.LayerMasks`), or ``None``.
    """
    return loops.forward(kernel, reverse, compute_dtype, w_hh, b, extras, zs, carry0, valid, masks)[0]


def _recurrence_fwd(kernel, reverse, loops, compute_dtype, w_hh, b, extras, zs, carry0, valid, masks=None):
    out, (carries, saved) = loops.forward(kernel, reverse, compute_dtype, w_hh, b, extras, zs, carry0, valid, masks)
    return out, (w_hh, extras, carry0, carries, saved, valid, masks)


def previous_carries(carries, carry0, reverse: bool):
    """Per leaf, the carry *before* each step (in scan order): ``carry0`` then all but the last."""
    if not jax.tree.leaves(carries)[0].shape[0]:  # T = 0: no step, nothing before it
        return carries
    if reverse:
        return jax.tree.map(lambda cs, c0: jnp.concatenate([cs[1:], c0[None]], axis=0), carries, carry0)
    return jax.tree.map(lambda cs, c0: jnp.concatenate([c0[None], cs[:-1]], axis=0), carries, carry0)


def _add_to_hidden(dcarry, dh):
    """``dcarry`` with ``dh`` added to its hidden state: its ``h`` field, or itself where the carry *is* ``h``."""
    return dcarry + dh if isinstance(dcarry, jax.Array) else dcarry._replace(h=dcarry.h + dh)


def backward(
    kernel: Kernel, reverse: bool, unroll, w_hh, extras, carry0, carries, saved, valid, dfinal, dhs, masks=None
):
    r"""The reverse scan of BPTT: ``(∂L/∂carry0, StepGrads (T, *batch, G·D) each, h_prev (T, *batch, D))``.

    ``h_prev`` is the recurrent operand of each step: :math:`m \odot h_{t-1}` under recurrent dropout.
    With ``reverse=True`` the step before step ``t`` is step ``t+1`` (:func:`previous_carries`): the
    formulas read :math:`h_{t+1}`, and ``carry0`` enters at each sequence's last valid step.
    Under zoneout (``saved`` is ``(saved, raw)``, :func:`_forward`) a step's carry gradient splits:
    :math:`(1-d_t) \odot dc_t` to the step's own output, :math:`d_t \odot dc_t` straight to the previous carry.

    Args:
      carries: the carry after every step (held at padded steps), time-major, in step order.
      saved: the kernel's ``saved_t`` for every step.
      dfinal: ``∂L/∂`` final carry; dhs: ``∂L/∂h_t`` from the outputs, ``(T, *batch, D)``.
    """
    prev = previous_carries(carries, carry0, reverse)
    recurrent_mask, zoneout = (None, None) if masks is None else (masks.recurrent, masks.zoneout)
    saved, raws = (saved, carries) if zoneout is None else saved

    def body(dcarry, inputs):
        dh_out, raw, carry_prev, saved_t, v, keep = inputs
        # dtotal: the h field is the total dh_t (output + W_hhᵀ da_{t+1}); the LSTM's c field is only
        # what step t+1 sent (f_{t+1} ⊙ dc_{t+1}, plus peephole terms): grad_step adds the path through h_t.
        dtotal = _add_to_hidden(dcarry, dh_out)
        draw = dtotal if keep is None else jax.tree.map(lambda d, g: (1 - d) * g, keep, dtotal)
        dcarry_prev, grads = kernel.grad_step(extras, draw, raw, carry_prev, saved_t)
        dh_prev = dropout.apply(matmul(grads.recurrent, w_hh), recurrent_mask)  # W_hhᵀ da_t, through the mask
        dcarry_prev = _add_to_hidden(dcarry_prev, dh_prev)
        if keep is not None:  # zoneout: the kept share of the carry passes straight through
            dcarry_prev = jax.tree.map(lambda g, d, gt: g + d * gt, dcarry_prev, keep, dtotal)
        if v is not None:  # a padded step held the carry: its gradient passes through unchanged
            dcarry_prev = _hold(v, dcarry_prev, dcarry)
            grads = jax.tree.map(lambda g: jnp.where(v[..., None], g, jnp.zeros_like(g)), grads)
        return dcarry_prev, grads

    inputs = (dhs, raws, prev, saved, valid, zoneout)
    dcarry0, grads = jax.lax.scan(body, dfinal, inputs, reverse=not reverse, unroll=unroll)
    return dcarry0, grads, dropout.apply(kernel.hidden(prev), recurrent_mask)


#: Per backend, the largest ``dz`` (in bytes) whose transpose :func:`sum_over_steps` writes out before
#: its GEMM. XLA's CPU GEMM contracting the leading axis of both operands (``dZᵀ H``) ran 1.3–1.4×
#: slower than a plain product here; a transposed copy of ``dZ`` first, then the plain product, was
#: faster up to 13 MB (2.1 -> 1.6 ms at (1600, 512)ᵀ(1600, 128); 14.1 -> 9.9 ms at (3200, 1024)ᵀ
#: (3200, 256)) and slower at 52 MB (84 -> 93 ms at (6400, 2048)ᵀ(6400, 512)), when the copy leaves cache.
TRANSPOSE_FIRST_MAX_BYTES = {"cpu": 16 * 2**20}


def sum_over_steps(dz: Array, a: Array, compute_dtype=None) -> Array:
    r""":math:`\sum_{t,b} dz_{t,b}\, a_{t,b}^\top` as one GEMM over all steps and batch entries, accumulated
    in float32 at least (the weight gradients :math:`\partial L/\partial W = \sum_t dz_t a_t^\top`).

    On the CPU a small ``dz`` is transposed first (:data:`TRANSPOSE_FIRST_MAX_BYTES`); over a batch
    sharded on an explicit mesh the sum is one contraction of the leading axes, replicated."""
    out, acc = dz.dtype, accumulation_dtype(dz.dtype)
    if compute_dtype is not None:  # 16-bit operands, float32 sums
        dz, a = dz.astype(compute_dtype), a.astype(compute_dtype)
    if any(mesh_axes(dz)):
        # An axis sharded over an explicit mesh: no reshape may merge a sharded batch axis with the
        # steps, so the leading axes are contracted as they are; a contraction over a sharded axis
        # needs its output sharding named (explicit mode): the gradient is replicated, as the weights are.
        rows = tuple(range(dz.ndim - 1))
        total = jax.lax.dot_general(
            dz, a, ((rows, rows), ((), ())), preferred_element_type=acc, out_sharding=jax.sharding.PartitionSpec()
        )
        return total.astype(out)
    dz, a = dz.reshape(-1, dz.shape[-1]), a.reshape(-1, a.shape[-1])
    if dz.size * dz.dtype.itemsize <= TRANSPOSE_FIRST_MAX_BYTES.get(jax.default_backend(), -1):
        # The barrier keeps XLA from folding the transpose back into the dot's operand.
        total = jnp.matmul(jax.lax.optimization_barrier(dz.T), a, preferred_element_type=acc)
    else:
        total = jnp.einsum("ng,nd->gd", dz, a, preferred_element_type=acc)
    return total.astype(out)


def _recurrence_bwd(kernel, reverse, loops, compute_dtype, residuals, cotangents):
    w_hh, extras, carry0, carries, saved, valid, masks = residuals
    dfinal, dhs = cotangents
    w = w_hh.astype(compute_dtype or w_hh.dtype)
    dcarry0, grads, h_prev = loops.backward(
        kernel, reverse, w, extras, carry0, carries, saved, valid, dfinal, dhs, masks
    )
    dextras = extra_grads(kernel, reverse, extras, grads, carry0, carries, saved, masks)
    dw_hh = sum_over_steps(grads.recurrent, h_prev, compute_dtype)
    return dw_hh, sum_rows(grads.dz), dextras, grads.dz, dcarry0, None, None


def extra_grads(
    kernel: Kernel, reverse: bool, extras: tuple, grads: StepGrads, carry0, carries, saved, masks=None
) -> tuple:
    """The gradients of a cell's extras (``Kernel.extra_grads``) from all steps' :class:`StepGrads`; ``()`` without.

    The kernel gets each step's own new carry (before zoneout, if any) and the carry it started from."""
    if not extras:
        return ()
    prev = previous_carries(carries, carry0, reverse)
    if masks is not None and masks.zoneout is not None:
        saved, carries = saved  # the kernel's saved values and the carries before zoneout (_forward)
    return kernel.extra_grads(extras, grads, carries, prev, saved)


recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


# ----------------------------------------------------------------------------------------------
# The input projection (its bias is added in the recurrence's steps).


def input_projection(w_ih: Array, xs: Array, compute_dtype=None) -> Array:
    r""":math:`W_{ih} x_t` for all steps, one GEMM; the bias is added by :func:`recurrence`, in the steps.

    With a ``compute_dtype``, the operands are cast to it and the products accumulate in ``w_ih``'s
    dtype. The backward pass (:func:`project`) forms :math:`\partial L/\partial W_{ih}` with
    :func:`sum_over_steps`, as the recurrence forms :math:`\partial L/\partial W_{hh}`."""
    return project(compute_dtype, w_ih, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def project(compute_dtype, w_ih: Array, xs: Array) -> Array:
    r""":math:`W_{ih} x_t` with the matmul operands in ``compute_dtype`` (``None``: ``w_ih``'s) and the
    result in ``w_ih``'s dtype.

    Its backward pass keeps every gradient in the parameters' dtype: :math:`\partial L/\partial W_{ih}
    = \sum_t dz_t x_t^\top` is one GEMM of ``compute_dtype`` operands accumulated in float32 at least
    (:func:`sum_over_steps`), and :math:`\partial L/\partial x_t = W_{ih}^\top dz_t`. (Plain
    autodiff of ``astype`` would round ``∂L/∂W_ih`` to the compute dtype.)
    """
    dtype = compute_dtype or w_ih.dtype
    return jnp.einsum("...m,gm->...g", xs.astype(dtype), w_ih.astype(dtype), preferred_element_type=w_ih.dtype)


def _project_fwd(compute_dtype, w_ih, xs):
    return project(compute_dtype, w_ih, xs), (w_ih, xs)


def _project_bwd(compute_dtype, residuals, dz):
    w_ih, xs = residuals
    dw = sum_over_steps(dz, xs, compute_dtype).astype(w_ih.dtype)
    dxs = matmul(dz, w_ih.astype(compute_dtype or w_ih.dtype)).astype(xs.dtype)
    return dw, dxs


project.defvjp(_project_fwd, _project_bwd)
