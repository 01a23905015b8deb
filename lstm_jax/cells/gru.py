r"""The GRU in the cuDNN convention (PyTorch ``nn.GRU``, flax ``GRUCell``, Keras ``reset_after=True``).

Gate rows in PyTorch's order ``(r, u, n)`` (PyTorch calls the update gate ``z``; here ``z`` is the
input pre-activation, as for every cell):

.. math::
   [z_r; z_u; z_n] &= W_{ih} x_t + b, \qquad [a_r; a_u; a_n] = W_{hh} h_{t-1} \\
   r_t &= \sigma(z_r + a_r), \quad u_t = \sigma(z_u + a_u), \quad
   n_t = \tanh\big(z_n + r_t \odot (a_n + b_{hn})\big) \\
   h_t &= (1 - u_t) \odot n_t + u_t \odot h_{t-1}

The reset gate multiplies the recurrent part of the candidate *after* the matmul (cuDNN's choice,
"reset after"), so :math:`b_{hn}` cannot be folded into :math:`b`; PyTorch's other recurrent biases
can (:math:`b = b_{ih} + [b_{hr}; b_{hz}; 0]`), which makes these parameters PyTorch's without its
two redundant bias blocks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax.cells._base import (
    Cell,
    Kernel,
    StepGrads,
    carry_is_hidden,
    cell_from_kernel,
    sigmoid,
    step,
    sum_rows,
    zeros_like_state,
)

Array = jax.Array

#: Row-block order of the GRU's fused weights: reset gate, update gate, candidate (PyTorch's r, z, n).
GRU_GATE_ORDER = ("r", "u", "n")


class GRUParams(NamedTuple):
    r"""GRU parameters, gate blocks stacked in the order (r, u, n) along the rows.

    From PyTorch's ``weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0``: ``w_ih`` and ``w_hh`` as
    they are, ``b = bias_ih + [bias_hr; bias_hz; 0]`` and ``b_hn = bias_hh[2D:]``.
    """

    w_ih: Array  # (3D, M)  W_ir, W_iu, W_in stacked
    w_hh: Array  # (3D, D)  W_hr, W_hu, W_hn stacked
    b: Array  # (3D,)    b_r, b_u, b_in (each gate's input and recurrent biases summed, but b_hn)
    b_hn: Array  # (D,)   the candidate's recurrent bias, inside r ⊙ (·)


class GRUSaved(NamedTuple):
    """What the forward step keeps for the backward step: the gates and the candidate's recurrent term."""

    gates: Array  # (*batch, 3D)  [r; u; n]
    q: Array  # (*batch, D)      a_n + b_hn


def _gru_step(a: Array, extras: tuple, h: Array, z: Array) -> tuple[Array, GRUSaved]:
    r"""One GRU step from :math:`a_t = W_{hh} h_{t-1}` and :math:`z_t = W_{ih} x_t + b` (``extras`` = ``(b_hn,)``)."""
    (b_hn,) = extras
    z_ru, z_n = jnp.split(z, [2 * h.shape[-1]], axis=-1)
    a_ru, a_n = jnp.split(a, [2 * h.shape[-1]], axis=-1)
    ru = sigmoid(z_ru + a_ru)
    r, u = jnp.split(ru, 2, axis=-1)
    q = a_n + b_hn.reshape((1,) * (a_n.ndim - 1) + b_hn.shape)
    n = jnp.tanh(z_n + r * q)
    h_new = n + u * (h - n)  # (1 − u) ⊙ n + u ⊙ h_{t-1}
    return h_new, GRUSaved(jnp.concatenate([ru, n], axis=-1), q)


def gru_grad_step(extras: tuple, dh: Array, h: Array, h_prev: Array, saved: GRUSaved):
    r"""One GRU backward step (``docs/maths.md``), given the gates ``[r; u; n]`` and :math:`q = a_n + b_{hn}`.

    .. math::
       dz_n &= dh_t \odot (1-u_t) \odot (1-n_t^2), \quad
       dz_u = dh_t \odot (h_{t-1} - n_t) \odot u_t(1-u_t), \quad
       dz_r = dz_n \odot q_t \odot r_t(1-r_t) \\
       da_t &= [dz_r;\ dz_u;\ r_t \odot dz_n], \qquad
       dh_{t-1} = u_t \odot dh_t + W_{hh}^\top da_t, \qquad \partial L/\partial b_{hn} \mathrel{+}= r_t \odot dz_n

    ``dh`` is :math:`\partial L/\partial h_t` in total. Returns ``(u_t ⊙ dh_t, StepGrads(dz_t, da_t))``
    (the caller adds :math:`W_{hh}^\top da_t`):
    the input pre-activation :math:`z_t` and the recurrent one :math:`a_t` get different gradients in
    the candidate block, where the reset gate sits between them.
    """
    r, u, n = jnp.split(saved.gates, 3, axis=-1)
    dz_n = dh * (1 - u) * (1 - n * n)  # back through h_t = (1−u) n + u h_{t-1}, then n = tanh(·)
    dz_u = dh * (h_prev - n) * u * (1 - u)  # back through u = σ(·)
    dz_r = dz_n * saved.q * r * (1 - r)  # back through r ⊙ q, then r = σ(·)
    da_n = dz_n * r  # back through r ⊙ (a_n + b_hn) to a_n
    dz = jnp.concatenate([dz_r, dz_u, dz_n], axis=-1)
    da = jnp.concatenate([dz_r, dz_u, da_n], axis=-1)
    return dh * u, StepGrads(dz, da)


def _gru_extra_grads(extras: tuple, grads: StepGrads, carries, prev, saved) -> tuple[Array]:
    r""":math:`\partial L/\partial b_{hn} = \sum_t r_t \odot dz_{n,t}`: the candidate block of ``da``, summed."""
    (b_hn,) = extras
    return (sum_rows(grads.da[..., 2 * b_hn.shape[0] :]),)


def _gru_extra_shapes(D: int) -> dict[str, tuple[int, ...]]:
    return {"b_hn": (D,)}


GRU_KERNEL = Kernel(_gru_step, gru_grad_step, carry_is_hidden, _gru_extra_grads)

#: The GRU as a :class:`Cell`.
GRU_CELL: Cell = cell_from_kernel("gru", 3, GRU_KERNEL, zeros_like_state, _gru_extra_shapes)


def gru_cell() -> Cell:
    """The GRU as a :class:`Cell` (the same object every call)."""
    return GRU_CELL


def gru_step(params: GRUParams, h: Array, x: Array) -> tuple[Array, Array]:
    r"""One GRU step (PyTorch's ``nn.GRUCell``), for any leading batch dimensions.

    .. math::
       r_t &= \sigma(W_{ir} x_t + W_{hr} h_{t-1} + b_r), \quad u_t = \sigma(W_{iu} x_t + W_{hu} h_{t-1} + b_u) \\
       n_t &= \tanh\big(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})\big), \quad
       h_t = (1 - u_t) \odot n_t + u_t \odot h_{t-1}

    Returns:
      ``(h_t, h_t)``: the new carry and the step's output.
    """
    return step(GRU_CELL, params, h, x)
