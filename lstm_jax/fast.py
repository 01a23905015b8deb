r"""The fast path: the recurrence as a ``jax.custom_vjp`` whose backward pass does the least work.

``jax.grad`` through a plain ``lax.scan`` saves every intermediate of every step and, in the
reverse scan, recomputes what it did not save and forms the weight gradient one step at a time
(``T`` small matmuls accumulated into ``∂L/∂W_hh``). Here the forward scan saves only the carries
and, for the LSTM, the gate activations; the reverse scan computes only the pre-activation
gradients :math:`dz_t` and :math:`dh_{t-1} = W_{hh}^\top dz_t`; the weight gradient is then one GEMM
over all steps,

.. math:: \frac{\partial L}{\partial W_{hh}} = \sum_t dz_t\, h_{t-1}^\top
          = dZ^\top H_{\mathrm{prev}} \quad (dZ: (T·B, G·D),\ H_{\mathrm{prev}}: (T·B, D)),

:math:`\partial L/\partial b = \sum_t dz_t`, and :math:`dz_t` flows back through the hoisted input
projection :math:`W_{ih} x_t` (:func:`project`: one more GEMM of the same form for :math:`W_{ih}`).
The bias is added inside each step. The per-step formulas are those of the manual BPTT in
:mod:`lstm_jax.bptt` (``docs/maths.md``): :func:`rnn_grad_step` and :func:`lstm_grad_step` are
shared by both. The two time loops are pluggable (:class:`ScanLoops`, or the Pallas kernels of
:mod:`lstm_jax.pallas_lstm`).

A :class:`Kernel` holds a cell's two step functions; :data:`KERNELS` maps each built-in
:class:`~lstm_jax.cells.Cell` to its kernel. :func:`lstm_jax.unroll.unroll` uses the kernel by
default (``impl="auto"``), and the plain scan with ``impl="scan"``.

Limits: a ``custom_vjp`` has no forward-mode derivative, so ``jax.jvp``/``jax.jacfwd`` (and
forward-over-reverse Hessians) need ``impl="scan"``; reverse-over-reverse works, since the backward
pass is itself written in differentiable JAX.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax._checks import mesh_axes
from lstm_jax.cells import ACTIVATIONS, LSTM_CELL, Cell, LSTMState, add_bias, lstm_activations, rnn_cell
from lstm_jax.cells import lstm_activation_derivative as activation_derivative
from lstm_jax.losses import accumulation_dtype

Array = jax.Array

#: f'(a) written in terms of h = f(a), as the article does (f' = 1 − h² for tanh).
DERIVATIVE_FROM_OUTPUT: dict[str, Callable[[Array], Array]] = {
    "tanh": lambda h: 1 - h**2,
    "sigmoid": lambda h: h * (1 - h),
    "relu": lambda h: (h > 0).astype(h.dtype),
}


class Kernel(NamedTuple):
    """A cell's recurrence split for :func:`recurrence`'s ``custom_vjp``.

    Attributes:
      step: ``(w_hhᵀ, carry, z_t) -> (carry_t, saved_t)``: one forward step; ``saved_t`` is what the
        backward step needs besides the carries (the LSTM's gate activations; ``None`` for the RNN).
      grad_step: ``(w_hh, dcarry_t, carry_t, carry_prev, saved_t) -> (dcarry_prev, dz_t)``: given
        ``∂L/∂carry_t`` (output gradient already added to its ``h``), the gradients of the previous
        carry and of the pre-activation ``z_t``.
      hidden: ``carry -> h`` (the step's output and the operand of ``W_hh``).
    """

    step: Callable[[Array, Any, Array], tuple[Any, Any]]
    grad_step: Callable[[Array, Any, Any, Any, Any], tuple[Any, Array]]
    hidden: Callable[[Any], Array]


def matmul(a: Array, w: Array) -> Array:
    """``a @ w``; when ``w`` is narrower (16-bit), ``a`` is cast to it and the product accumulates in ``a``'s dtype.

    That is the ``compute_dtype`` option: matmul operands in bfloat16, the rest (the cell state, the
    pointwise work, the sums) in the parameters' float32. (A ``compute_dtype`` wider than the
    parameters is rejected by :func:`lstm_jax.unroll.unroll`.)
    """
    if a.dtype == w.dtype:
        return a @ w
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=a.dtype)


def _rnn_step(activation: str, w_t: Array, h: Array, z: Array) -> tuple[Array, None]:
    r""":math:`h_t = f(z_t + W_{hh} h_{t-1})`, given ``w_t`` = :math:`W_{hh}^\top`."""
    return ACTIVATIONS[activation](z + matmul(h, w_t)), None


def rnn_grad_step(activation: str, w_hh: Array, dh: Array, h: Array, h_prev: Array, saved=None):
    r"""One simple-RNN backward step: :math:`\delta_t = dh_t \odot f'(a_t)`, :math:`dh_{t-1} = W_{hh}^\top \delta_t`.

    ``dh`` is :math:`\partial L/\partial h_t` in total (from the output and from step ``t+1``);
    :math:`f'` is computed from :math:`h_t` (:data:`DERIVATIVE_FROM_OUTPUT`). Returns ``(dh_prev, δ_t)``.
    """
    delta = dh * DERIVATIVE_FROM_OUTPUT[activation](h)
    return matmul(delta, w_hh), delta


def _lstm_step(w_t: Array, carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
    """The LSTM step of :mod:`lstm_jax.cells` (``w_t`` = ``w_hh.T``), also returning the gate activations."""
    gates = lstm_activations(z + matmul(carry.h, w_t))
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = f * carry.c + i * g
    return LSTMState(o * jnp.tanh(c), c), gates


def lstm_grad_step(w_hh: Array, dcarry: LSTMState, carry: LSTMState, carry_prev: LSTMState, gates):
    r"""One LSTM backward step (``docs/maths.md``), given the fused gate activations ``[i; f; g; o]``.

    .. math::
       dc_t &\mathrel{+}= dh_t \odot o_t \odot (1 - \tanh^2 c_t), \quad
       dz_o = dh_t \odot \tanh c_t \odot o_t(1-o_t), \quad dz_f = dc_t \odot c_{t-1} \odot f_t(1-f_t) \\
       dz_i &= dc_t \odot \tilde c_t \odot i_t(1-i_t), \quad dz_g = dc_t \odot i_t \odot (1-\tilde c_t^2), \quad
       dh_{t-1} = W_{hh}^\top dz_t, \quad dc_{t-1} = f_t \odot dc_t

    ``dcarry`` is ``LSTMState(∂L/∂h_t in total, ∂L/∂c_t from step t+1)``. Returns
    ``(LSTMState(dh_prev, dc_prev), dz_t)`` with ``dz_t = [dz_i; dz_f; dz_g; dz_o]``.
    """
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    dh = dcarry.h
    tanh_c = jnp.tanh(carry.c)
    dc = dcarry.c + dh * o * (1 - tanh_c**2)  # back through h_t = o_t ⊙ tanh(c_t)
    # ∂L/∂gate for (i, f, g, o): dc ⊙ c̃, dc ⊙ c_{t-1}, dc ⊙ i, dh ⊙ tanh(c_t); then through the activation
    upstream = jnp.concatenate([dc * g, dc * carry_prev.c, dc * i, dh * tanh_c], axis=-1)
    dz = upstream * activation_derivative(gates)
    return LSTMState(matmul(dz, w_hh), dc * f), dz


def _rnn_kernel(activation: str) -> Kernel:
    def grad_step(w_hh, dh, h, h_prev, saved):
        return rnn_grad_step(activation, w_hh, dh, h, h_prev)

    return Kernel(functools.partial(_rnn_step, activation), grad_step, lambda h: h)


def _lstm_hidden(carry: LSTMState) -> Array:
    return carry.h


#: The kernel of every built-in cell (``Cell`` objects are hashable; ``rnn_cell`` returns one of ``cells.RNN_CELLS``).
KERNELS: dict[Cell, Kernel] = {
    LSTM_CELL: Kernel(_lstm_step, lstm_grad_step, _lstm_hidden),
    **{rnn_cell(a): _rnn_kernel(a) for a in ACTIVATIONS},
}


def kernel_for(cell: Cell) -> Kernel | None:
    """The fast kernel of ``cell``, or ``None`` when it has none (a plain step function)."""
    return KERNELS.get(cell)


# ----------------------------------------------------------------------------------------------
# The custom_vjp recurrence.


def _hold(valid, new, old):
    """Per leaf: ``new`` where the step is valid, ``old`` (the held carry) where it is padding."""
    if valid is None:
        return new
    keep = valid[..., None]
    return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, old)


def _forward(kernel: Kernel, reverse: bool, unroll, compute_dtype, w_hh, b, zs, carry0, valid):
    """The forward scan; returns ``((final carry, hs), (carries, saved))``.

    The bias is added to each step's ``z_t`` inside the step, where XLA fuses it into the step's
    pointwise work, rather than in a pass of its own over all ``T·B·G·D`` pre-activations (measured
    on the CPU at B=64, T=100, D=512: forward 197 -> 189 ms).
    """

    # With a batch, W_hh is transposed once outside the loop: (B, D) @ (D, G·D) ran faster on the CPU
    # than the dot with a transposed operand that XLA makes of ``h @ w_hh.T`` inside it. With one
    # sequence it is the other way round (a matrix-vector product reading W_hh's rows: B=1, D=256,
    # forward 3.5 -> 2.5 ms), so the transpose is left inside the loop for XLA to fold into the dot.
    w = w_hh.astype(compute_dtype or w_hh.dtype)
    fold = math.prod(zs.shape[1:-1]) == 1
    w_t_outside = None if fold else w.T

    def body(carry, inputs):
        z, v = inputs
        new, saved = kernel.step(w.T if fold else w_t_outside, carry, add_bias(z, b))
        held = _hold(v, new, carry)
        return held, (held, saved)

    final, (carries, saved) = jax.lax.scan(body, carry0, (zs, valid), reverse=reverse, unroll=unroll)
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

    def forward(self, kernel: Kernel, reverse: bool, compute_dtype, w_hh, b, zs, carry0, valid):
        """``((final carry, hs), (carries, saved))``: the outputs and what the backward pass needs."""
        return _forward(kernel, reverse, self.unroll, compute_dtype, w_hh, b, zs, carry0, valid)

    def backward(self, kernel: Kernel, reverse: bool, w_hh, carry0, carries, saved, valid, dfinal, dhs):
        """``(∂L/∂carry0, dz, h_prev)``: see :func:`backward`."""
        return backward(kernel, reverse, self.unroll, w_hh, carry0, carries, saved, valid, dfinal, dhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def recurrence(kernel: Kernel, reverse: bool, loops, compute_dtype, w_hh: Array, b: Array, zs: Array, carry0, valid):
    """``(final carry, hs)`` of the recurrence over projected inputs ``zs + b``, ``zs``: ``(T, *batch, G·D)``.

    The same numbers as :func:`lstm_jax.unroll.scan_cell` (``valid``: ``(T, *batch)`` bool or
    ``None``), with the cheaper backward pass described in the module docstring. ``loops`` runs the
    two time loops (:class:`ScanLoops` or :class:`lstm_jax.pallas_lstm.PallasLoops`); ``compute_dtype``
    (``None``: ``w_hh``'s) is the dtype of the matmul operands, forward and backward (:func:`matmul`).
    """
    return loops.forward(kernel, reverse, compute_dtype, w_hh, b, zs, carry0, valid)[0]


def _recurrence_fwd(kernel, reverse, loops, compute_dtype, w_hh, b, zs, carry0, valid):
    out, (carries, saved) = loops.forward(kernel, reverse, compute_dtype, w_hh, b, zs, carry0, valid)
    return out, (w_hh, carry0, carries, saved, valid)


def previous_carries(carries, carry0, reverse: bool):
    """Per leaf, the carry *before* each step (in scan order): ``carry0`` then all but the last."""
    if not jax.tree.leaves(carries)[0].shape[0]:  # T = 0: no step, nothing before it
        return carries
    if reverse:
        return jax.tree.map(lambda cs, c0: jnp.concatenate([cs[1:], c0[None]], axis=0), carries, carry0)
    return jax.tree.map(lambda cs, c0: jnp.concatenate([c0[None], cs[:-1]], axis=0), carries, carry0)


def _add_to_hidden(dcarry, dh):
    """``dcarry`` with ``dh`` added to its hidden-state leaf (the RNN's carry *is* ``h``)."""
    return dcarry._replace(h=dcarry.h + dh) if isinstance(dcarry, LSTMState) else dcarry + dh


def backward(kernel: Kernel, reverse: bool, unroll, w_hh, carry0, carries, saved, valid, dfinal, dhs):
    """The reverse scan of BPTT: ``(∂L/∂carry0, dz (T, *batch, G·D), h_prev (T, *batch, D))``.

    Args:
      carries: the carry after every step (held at padded steps), time-major, in step order.
      saved: the kernel's ``saved_t`` for every step.
      dfinal: ``∂L/∂`` final carry; dhs: ``∂L/∂h_t`` from the outputs, ``(T, *batch, D)``.
    """
    prev = previous_carries(carries, carry0, reverse)

    def body(dcarry, inputs):
        dh_out, carry, carry_prev, saved_t, v = inputs
        dcarry_prev, dz = kernel.grad_step(w_hh, _add_to_hidden(dcarry, dh_out), carry, carry_prev, saved_t)
        if v is not None:  # a padded step held the carry: its gradient passes through unchanged
            dcarry_prev = _hold(v, dcarry_prev, dcarry)
            dz = jnp.where(v[..., None], dz, jnp.zeros_like(dz))
        return dcarry_prev, dz

    dcarry0, dzs = jax.lax.scan(body, dfinal, (dhs, carries, prev, saved, valid), reverse=not reverse, unroll=unroll)
    return dcarry0, dzs, kernel.hidden(prev)


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


def sum_rows(dz: Array) -> Array:
    r""":math:`\sum_{t,b} dz_{t,b}` over all steps and batch entries, accumulated in float32 at least
    (the bias gradient :math:`\partial L/\partial b`)."""
    return dz.sum(tuple(range(dz.ndim - 1)), dtype=accumulation_dtype(dz.dtype)).astype(dz.dtype)


def _recurrence_bwd(kernel, reverse, loops, compute_dtype, residuals, cotangents):
    w_hh, carry0, carries, saved, valid = residuals
    dfinal, dhs = cotangents
    w = w_hh.astype(compute_dtype or w_hh.dtype)
    dcarry0, dzs, h_prev = loops.backward(kernel, reverse, w, carry0, carries, saved, valid, dfinal, dhs)
    return sum_over_steps(dzs, h_prev, compute_dtype), sum_rows(dzs), dzs, dcarry0, None


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
