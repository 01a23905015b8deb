r"""Backpropagation through time, twice: by ``jax.grad`` and by the article's formulas written out.

The model is one recurrent layer and the article's head, :math:`o_t = V h_t + c`, with a loss
from :mod:`lstm_jax.losses`, :math:`L = \sum_{b,t} w_{b,t} L_t(o_t, y_t)`. Writing
:math:`e_t = w_t\, \partial L_t / \partial o_t` (the article's :math:`\hat y_t - y_t`, weighted):

.. math::
   \frac{\partial L}{\partial c} = \sum_t e_t, \qquad
   \frac{\partial L}{\partial V} = \sum_t e_t h_t^\top, \qquad
   \frac{\partial L}{\partial h_t} = V^\top e_t + (\text{what step } t{+}1 \text{ sends back}).

The recursion for the last term is cell-specific: each cell's hand-derived backward step
(``Kernel.grad_step`` in :mod:`lstm_jax.cells`; :func:`rnn_bptt`, :func:`lstm_bptt`, :func:`gru_bptt`
show its equations). :func:`manual_bptt` runs it as a reverse ``lax.scan`` that only produces the
pre-activation gradients; the weight gradients are then single matmuls summed over all steps
(and the input's gradient would be :math:`W_{ih}^\top dz_t`, which stacked layers get from
:func:`lstm_jax.fast.project`'s ``custom_vjp``). Padded steps (``t >= length``) held the carry in the
forward pass, so there the gradient passes through unchanged and no parameter gradient is added.

``docs/maths.md`` derives every line; ``docs/errata.md`` shows where the article's own formulas go wrong.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import fast
from lstm_jax.cells import (
    GRU_CELL,
    LSTM_CELL,
    Cell,
    DenseParams,
    GRUParams,
    LSTMParams,
    LSTMState,
    RNNParams,
    check_carry,
    check_input,
    check_params,
    dense,
    extras,
    rnn_cell,
)
from lstm_jax.losses import prepare, sequence_loss, step_loss_grad, time_weights
from lstm_jax.unroll import scan_cell, time_major_inputs, unroll, valid_steps

Array = jax.Array


class BPTTGrads(NamedTuple):
    """Gradients of the loss, each shaped like what it differentiates."""

    cell: Any  # RNNParams, LSTMParams or GRUParams
    head: DenseParams
    carry0: Any  # h_0 (RNN, GRU), or LSTMState(h_0, c_0)


def model_loss(
    cell: Cell,
    params,
    head: DenseParams,
    xs: Array,
    targets: Array,
    carry0=None,
    *,
    loss: str,
    reduction: str = "sum_over_time",
    lengths: Array | None = None,
    impl: str = "auto",
) -> Array:
    """The forward pass the gradients are of: :func:`unroll`, then ``V h_t + c``, then the loss.

    Args:
      xs: ``(*batch, T, M)``; targets ``(*batch, T, N)`` (or ``(*batch, N)`` for ``"last"``).
      loss, reduction: see :func:`lstm_jax.losses.sequence_loss`.
      lengths: optional ``(*batch)`` valid steps (right padding); masks both the unroll and the loss.
      impl: the unroll's implementation (:func:`lstm_jax.unroll.unroll`).
    """
    _, hs = unroll(cell, params, xs, carry0, lengths=lengths, impl=impl)
    mask = None if lengths is None else valid_steps(lengths, xs.shape[-2])
    return sequence_loss(loss, dense(head, hs), targets, reduction=reduction, mask=mask)


def autodiff_bptt(
    cell: Cell, params, head: DenseParams, xs: Array, targets: Array, carry0=None, **loss_kwargs
) -> tuple[Array, BPTTGrads]:
    """``(loss, BPTTGrads)`` by ``jax.value_and_grad`` of :func:`model_loss` through the scan."""
    check_params(cell, params)
    check_input(params, xs, 2, "(*batch, T, M)")
    if carry0 is None:
        carry0 = cell.zeros(params, xs.shape[:-2])

    def f(p, h, c0):  # jax.grad through the plain lax.scan, not the fast path's custom_vjp
        return model_loss(cell, p, h, xs, targets, c0, impl="scan", **loss_kwargs)

    value, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(params, head, carry0)
    return value, BPTTGrads(*grads)


class _Forward(NamedTuple):
    """What the manual backward passes need from the forward pass, all time-major."""

    loss: Array  # ()
    xs: Array  # (T, *batch, M)   inputs, zero at padded steps
    zs: Array  # (T, *batch, G·D) input projections W_ih x_t + b
    carries: Any  # (T, *batch, D) per leaf: the carry after each step
    carry0: Any  # (*batch, D) per leaf
    valid: Array  # (T, *batch) bool
    dh_out: Array  # (T, *batch, D)   V^T e_t
    head_grads: DenseParams


def _forward(cell, params, head, xs, targets, carry0, loss, reduction, lengths) -> _Forward:
    """Run the layer keeping every carry, then the head, the loss and the output errors e_t."""
    check_params(cell, params)
    check_input(params, xs, 2, "(*batch, T, M)")
    num_steps, batch_shape = xs.shape[-2], xs.shape[:-2]
    carry0 = cell.zeros(params, batch_shape) if carry0 is None else carry0
    check_carry(cell, params, carry0, batch_shape)
    if lengths is None:
        lengths = jnp.full(batch_shape, num_steps)
    xs_tm, valid = time_major_inputs(xs, lengths)  # padded inputs zeroed; valid (T, *batch)
    mask = jnp.moveaxis(valid, 0, -1)  # (*batch, T)
    zs = cell.project(params, xs_tm)
    _, (carries, hs) = scan_cell(cell, params, zs, carry0, valid, emit_carry=True)
    hs_bm = jnp.moveaxis(hs, 0, -2)

    logits = dense(head, hs_bm)
    value = sequence_loss(loss, logits, targets, reduction=reduction, mask=mask)
    logits, targets, _ = prepare(loss, logits, targets, reduction, mask)
    e = time_weights(mask, reduction, logits.dtype)[..., None] * step_loss_grad(loss, logits, targets)  # w_t(ŷ_t − y_t)

    head_grads = DenseParams(
        w=jnp.einsum("...tn,...td->nd", e, hs_bm),  # ∂L/∂V = Σ_t e_t h_tᵀ      (E4: + sign, outer product)
        b=None if head.b is None else e.reshape(-1, e.shape[-1]).sum(0),  # ∂L/∂c = Σ_t e_t  (E3: + sign)
    )
    dh_out = jnp.moveaxis(e @ head.w, -2, 0)  # Vᵀ e_t, time-major
    return _Forward(value, xs_tm, zs, carries, carry0, valid, dh_out, head_grads)


def manual_bptt(
    cell: Cell,
    params,
    head: DenseParams,
    xs: Array,
    targets: Array,
    carry0=None,
    *,
    loss: str,
    reduction: str = "sum_over_time",
    lengths: Array | None = None,
) -> tuple[Array, BPTTGrads]:
    r"""Manual BPTT for any cell with a hand-derived backward step (every built-in cell).

    The forward scan keeps every carry; what the backward steps need besides (the LSTM's gates, the
    GRU's gates) is recomputed for all steps at once from the stored carries, with no scan. The
    reverse scan runs ``cell.kernel.grad_step`` (:func:`lstm_jax.fast.backward`, the fast path's
    own), then the weight gradients are single GEMMs over all steps:

    .. math::
       \frac{\partial L}{\partial W_{ih}} = \sum_t dz_t x_t^\top, \quad
       \frac{\partial L}{\partial W_{hh}} = \sum_t da_t h_{t-1}^\top, \quad
       \frac{\partial L}{\partial b} = \sum_t dz_t

    (:math:`da_t = dz_t` but for the GRU's candidate block).

    Args:
      cell: a :class:`~lstm_jax.cells.Cell` with a kernel (``rnn_cell(...)``, ``lstm_cell()``, ``gru_cell()``).
      params, head: the layer and the head :math:`o_t = V h_t + c`.
      xs: ``(*batch, T, M)``; targets: see :func:`model_loss`.
      carry0: the initial carry; zeros when ``None``.
      loss, reduction, lengths: as in :func:`model_loss`.

    Returns:
      ``(loss, BPTTGrads)``, equal to :func:`autodiff_bptt` to rounding.
    """
    if getattr(cell, "kernel", None) is None:
        raise ValueError(
            f"cell: expected a built-in cell with a hand-derived backward step (rnn_cell(), lstm_cell(), gru_cell()), "
            f"got {getattr(cell, 'name', type(cell).__name__)}"
        )
    fwd = _forward(cell, params, head, xs, targets, carry0, loss, reduction, lengths)
    prev = fast.previous_carries(fwd.carries, fwd.carry0, False)  # the carry before each step; T = 0 too
    a = cell.kernel.hidden(prev) @ params.w_hh.T  # W_hh h_{t-1} of every step
    _, saved = cell.kernel.step(a, extras(params), prev, fwd.zs)  # every step at once
    return fwd.loss, _backward(cell, params, fwd, saved)


def _backward(cell: Cell, params, fwd: _Forward, saved) -> BPTTGrads:
    """The reverse scan of :mod:`lstm_jax.fast` (the per-step formulas are the cell's kernel), then the weight GEMMs."""
    dfinal = jax.tree.map(jnp.zeros_like, fwd.carry0)
    args = (params.w_hh, extras(params), fwd.carry0, fwd.carries, saved, fwd.valid, dfinal, fwd.dh_out)
    dcarry0, grads, h_prev = fast.backward(cell.kernel, False, 1, *args)
    dextras = fast.extra_grads(cell.kernel, False, extras(params), grads, fwd.carry0, fwd.carries, saved)
    cell_grads = type(params)(
        fast.sum_over_steps(grads.dz, fwd.xs),  # Σ_t dz_t x_tᵀ
        fast.sum_over_steps(grads.recurrent, h_prev),  # Σ_t da_t h_{t-1}ᵀ
        fast.sum_rows(grads.dz),  # Σ_t dz_t
        *dextras,
    )
    return BPTTGrads(cell_grads, fwd.head_grads, dcarry0)


def rnn_bptt(
    params: RNNParams,
    head: DenseParams,
    xs: Array,
    targets: Array,
    carry0: Array | None = None,
    *,
    activation: str = "tanh",
    loss: str,
    reduction: str = "sum_over_time",
    lengths: Array | None = None,
) -> tuple[Array, BPTTGrads]:
    r"""Manual BPTT for the simple RNN (``docs/maths.md``), as a reverse ``lax.scan``.

    .. math::
       \delta_t &= \big(V^\top e_t + U^\top \delta_{t+1}\big) \odot f'(a_t), \qquad \delta_{T+1} = 0 \\
       \frac{\partial L}{\partial U} &= \sum_t \delta_t h_{t-1}^\top, \quad
       \frac{\partial L}{\partial W} = \sum_t \delta_t x_t^\top, \quad
       \frac{\partial L}{\partial b} = \sum_t \delta_t, \quad
       \frac{\partial L}{\partial h_0} = U^\top \delta_1

    Every :math:`L_t` reaches :math:`U, W, b` through this recursion (erratum E5).

    Args:
      params, head: the layer and the head :math:`o_t = V h_t + c`.
      xs: ``(*batch, T, M)``; targets: see :func:`model_loss`.
      carry0: initial state :math:`h_0`, ``(*batch, D)``; zeros when ``None``.

    Returns:
      ``(loss, BPTTGrads(cell=RNNParams, head=DenseParams, carry0=dL/dh0))``, equal to
      :func:`autodiff_bptt` to rounding.
    """
    kw = dict(loss=loss, reduction=reduction, lengths=lengths)  # steps: lstm_jax.cells.rnn_grad_step
    return manual_bptt(rnn_cell(activation), params, head, xs, targets, carry0, **kw)


def lstm_bptt(
    params: LSTMParams,
    head: DenseParams,
    xs: Array,
    targets: Array,
    carry0: LSTMState | None = None,
    *,
    loss: str,
    reduction: str = "sum_over_time",
    lengths: Array | None = None,
) -> tuple[Array, BPTTGrads]:
    r"""Manual BPTT for the LSTM (``docs/maths.md``), as a reverse ``lax.scan``.

    Given :math:`dh_t = V^\top e_t + (\text{from step } t{+}1)` and what step :math:`t{+}1` sends back to
    :math:`c_t`, with :math:`o^{\text{gate}}_t` the output gate (:math:`o_t` is the logits here):

    .. math::
       dc_t &= f_{t+1} \odot dc_{t+1} + dh_t \odot o^{\text{gate}}_t \odot (1 - \tanh^2 c_t) \\
       dz_o &= dh_t \odot \tanh c_t \odot o^{\text{gate}}_t(1-o^{\text{gate}}_t), \quad dz_f = dc_t \odot c_{t-1} \odot f_t(1-f_t) \\
       dz_i &= dc_t \odot \tilde c_t \odot i_t(1-i_t), \quad dz_g = dc_t \odot i_t \odot (1-\tilde c_t^2) \\
       dh_{t-1} &= W_{hh}^\top dz_t \;(+\,V^\top e_{t-1}), \qquad \text{step } t{-}1 \text{ receives } f_t \odot dc_t \\
       \frac{\partial L}{\partial W_{ih}} &= \sum_t dz_t x_t^\top, \quad
       \frac{\partial L}{\partial W_{hh}} = \sum_t dz_t h_{t-1}^\top, \quad
       \frac{\partial L}{\partial b} = \sum_t dz_t

    with :math:`dz_t = [dz_i; dz_f; dz_g; dz_o]` in our gate order.

    Returns:
      ``(loss, BPTTGrads(cell=LSTMParams, head=DenseParams, carry0=LSTMState(dL/dh0, dL/dc0)))``.
    """
    kw = dict(loss=loss, reduction=reduction, lengths=lengths)  # steps: lstm_jax.cells.lstm_grad_step
    return manual_bptt(LSTM_CELL, params, head, xs, targets, carry0, **kw)


def gru_bptt(
    params: GRUParams,
    head: DenseParams,
    xs: Array,
    targets: Array,
    carry0: Array | None = None,
    *,
    loss: str,
    reduction: str = "sum_over_time",
    lengths: Array | None = None,
) -> tuple[Array, BPTTGrads]:
    r"""Manual BPTT for the GRU (``docs/maths.md``), as a reverse ``lax.scan``.

    Given :math:`dh_t = V^\top e_t + (\text{from step } t{+}1)`, with :math:`q_t = W_{hn} h_{t-1} + b_{hn}`:

    .. math::
       dz_n &= dh_t \odot (1-u_t) \odot (1-n_t^2), \quad
       dz_u = dh_t \odot (h_{t-1} - n_t) \odot u_t(1-u_t), \quad
       dz_r = dz_n \odot q_t \odot r_t(1-r_t) \\
       da_t &= [dz_r; dz_u; r_t \odot dz_n], \qquad
       dh_{t-1} = u_t \odot dh_t + W_{hh}^\top da_t \;(+\,V^\top e_{t-1}) \\
       \frac{\partial L}{\partial W_{ih}} &= \sum_t dz_t x_t^\top, \quad
       \frac{\partial L}{\partial W_{hh}} = \sum_t da_t h_{t-1}^\top, \quad
       \frac{\partial L}{\partial b} = \sum_t dz_t, \quad
       \frac{\partial L}{\partial b_{hn}} = \sum_t r_t \odot dz_{n,t}

    with :math:`dz_t = [dz_r; dz_u; dz_n]` in PyTorch's gate order (r, z, n).

    Returns:
      ``(loss, BPTTGrads(cell=GRUParams, head=DenseParams, carry0=dL/dh0))``.
    """
    kw = dict(loss=loss, reduction=reduction, lengths=lengths)  # steps: lstm_jax.cells.gru_grad_step
    return manual_bptt(GRU_CELL, params, head, xs, targets, carry0, **kw)
