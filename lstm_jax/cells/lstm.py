r"""The LSTM (article §2.2, corrected per errata E6–E8), forward and backward step.

.. math::
   [z_i; z_f; z_g; z_o] &= W_{ih} x_t + b + W_{hh} h_{t-1}, \qquad
   i, f, o = \sigma(z_{i,f,o}), \quad \tilde c = \tanh(z_g) \\
   c_t &= f_t \odot c_{t-1} + i_t \odot \tilde c_t, \qquad h_t = o_t \odot \tanh(c_t)

Its options (a projection, peepholes, layer normalisation) are in :mod:`~lstm_jax.cells.lstm_variants`,
whose :func:`~lstm_jax.cells.lstm_variants.lstm_cell` returns :data:`LSTM_CELL` when all are off.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.cells._base import Cell, Kernel, StepGrads, cell_from_kernel, step, zeros_like_state

Array = jax.Array

#: Row-block order of the LSTM's fused weights: input gate, forget gate, candidate ``c̃``, output
#: gate, as in PyTorch, cuDNN and Equinox. The article stacks ``(c̃, o, i, f)``; see ``article.py``.
LSTM_GATE_ORDER = ("i", "f", "g", "o")


class LSTMParams(NamedTuple):
    r"""LSTM parameters, gate blocks stacked in the order (i, f, g, o) along the rows.

    The article's per-gate matrices are row blocks: ``w_hh[k*D:(k+1)*D]`` is its ``W_k`` (acts on
    :math:`h_{t-1}`) and ``w_ih[k*D:(k+1)*D]`` its ``U_k`` (acts on :math:`x_t`), with ``k`` the
    position of the gate in :data:`LSTM_GATE_ORDER`.
    """

    w_ih: Array  # (4D, M)  the article's U_i, U_f, U_c, U_o stacked
    w_hh: Array  # (4D, D)  the article's W_i, W_f, W_c, W_o stacked
    b: Array  # (4D,)    b_i, b_f, b_c, b_o


class LSTMState(NamedTuple):
    """The LSTM carry: hidden state and cell state, each ``(*batch, D)``.

    Note the order ``(h, c)``, as in PyTorch's ``(h_n, c_n)``; flax's ``LSTMCell`` carry is
    ``(c, h)``: convert with ``LSTMState(h=flax_carry[1], c=flax_carry[0])``.
    """

    h: Array
    c: Array


def lstm_activations(z: Array) -> Array:
    r"""The gate activations of a fused pre-activation ``(..., 4D)``: :math:`[\sigma(z_i); \sigma(z_f); \tanh(z_g); \sigma(z_o)]`.

    One ``tanh`` serves all four blocks, through :math:`\sigma(x) = \tfrac12 + \tfrac12 \tanh(x/2)`:
    ``a = tanh(s ⊙ z) ⊙ s + (s ≠ 1)/2`` with ``s = ½`` on the sigmoid blocks and 1 on ``g``. Same values
    to rounding (absolute, not relative, near saturation), and on the CPU XLA's logistic costs more than
    a step's matmul (B=16, D=128: 66 µs per step with three sigmoids, 40 with this, 41 with no activation).
    """
    scale, offset = _activation_constants(z)
    return jnp.tanh(z * scale) * scale + offset


def _activation_constants(z: Array) -> tuple[np.ndarray, np.ndarray]:
    """``s`` (½ on i, f, o; 1 on g) and ``off`` (½ on i, f, o; 0 on g), shaped to broadcast against ``z``."""
    D, rank = z.shape[-1] // 4, (1,) * (z.ndim - 1)  # explicit ranks: no implicit rank promotion
    scale = np.repeat(np.array([0.5, 0.5, 1.0, 0.5]), D).astype(z.dtype).reshape(*rank, 4 * D)
    offset = np.repeat(np.array([0.5, 0.5, 0.0, 0.5]), D).astype(z.dtype).reshape(*rank, 4 * D)
    return scale, offset


def lstm_activation_derivative(a: Array) -> Array:
    r"""The derivative of :func:`lstm_activations` from its output ``a``: :math:`a(1-a)` on the sigmoid blocks, :math:`1-a^2` on ``g``.

    One expression for all blocks: ``s² − (a − off)²`` with the ``s`` and ``off`` of :func:`lstm_activations`.
    """
    scale, offset = _activation_constants(a)
    return scale * scale - (a - offset) ** 2


def lstm_gates(z: Array) -> tuple[Array, Array, Array, Array]:
    r"""Split a fused pre-activation ``(..., 4D)`` into the gates :math:`(i, f, \tilde c, o)`.

    .. math::
       i = \sigma(z_i), \quad f = \sigma(z_f), \quad \tilde c = \tanh(z_g), \quad o = \sigma(z_o)
    """
    i, f, g, o = jnp.split(lstm_activations(z), 4, axis=-1)
    return i, f, g, o


def _lstm_step(a: Array, extras: tuple, carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
    r"""One LSTM step from :math:`a_t = W_{hh} h_{t-1}` and :math:`z_t = W_{ih} x_t + b`; also returns the gate activations.

    .. math::
       [z_i; z_f; z_g; z_o] &= z_t + a_t \\
       c_t &= f_t \odot c_{t-1} + i_t \odot \tilde c_t, \qquad h_t = o_t \odot \tanh(c_t)
    """
    gates = lstm_activations(z + a)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = f * carry.c + i * g
    return LSTMState(o * jnp.tanh(c), c), gates


def lstm_grad_step(extras: tuple, dcarry: LSTMState, carry: LSTMState, carry_prev: LSTMState, gates):
    r"""One LSTM backward step (``docs/maths.md``), given the fused gate activations ``[i; f; g; o]``.

    .. math::
       dc_t &\mathrel{+}= dh_t \odot o_t \odot (1 - \tanh^2 c_t), \quad
       dz_o = dh_t \odot \tanh c_t \odot o_t(1-o_t), \quad dz_f = dc_t \odot c_{t-1} \odot f_t(1-f_t) \\
       dz_i &= dc_t \odot \tilde c_t \odot i_t(1-i_t), \quad dz_g = dc_t \odot i_t \odot (1-\tilde c_t^2), \quad
       dc_{t-1} = f_t \odot dc_t, \quad dh_{t-1} = W_{hh}^\top dz_t \;\text{(added by the caller)}

    ``dcarry`` is ``LSTMState(∂L/∂h_t in total, ∂L/∂c_t from step t+1)``. Returns
    ``(LSTMState(0, dc_prev), StepGrads(dz_t))`` with ``dz_t = [dz_i; dz_f; dz_g; dz_o]``.
    """
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    dh = dcarry.h
    tanh_c = jnp.tanh(carry.c)
    dc = dcarry.c + dh * o * (1 - tanh_c**2)  # back through h_t = o_t ⊙ tanh(c_t)
    # ∂L/∂gate for (i, f, g, o): dc ⊙ c̃, dc ⊙ c_{t-1}, dc ⊙ i, dh ⊙ tanh(c_t); then through the activation
    upstream = jnp.concatenate([dc * g, dc * carry_prev.c, dc * i, dh * tanh_c], axis=-1)
    dz = upstream * lstm_activation_derivative(gates)
    return LSTMState(jnp.zeros_like(dh), dc * f), StepGrads(dz)


def _lstm_hidden(carry: LSTMState) -> Array:
    return carry.h


def _lstm_zeros(params: LSTMParams, batch_shape: tuple[int, ...]) -> LSTMState:
    zeros = zeros_like_state(params, batch_shape)
    return LSTMState(zeros, zeros)


LSTM_KERNEL = Kernel(_lstm_step, lstm_grad_step, _lstm_hidden)

#: The LSTM as a :class:`Cell` (``lstm_cell()`` with no option).
LSTM_CELL: Cell = cell_from_kernel("lstm", 4, LSTM_KERNEL, _lstm_zeros)


def lstm_step(params: LSTMParams, carry: LSTMState, x: Array) -> tuple[LSTMState, Array]:
    r"""One LSTM step (article §2.2 with errata E6–E8 corrected), for any leading batch dims.

    .. math::
       f_t &= \sigma(W_f h_{t-1} + U_f x_t + b_f), \quad
       i_t = \sigma(W_i h_{t-1} + U_i x_t + b_i), \quad
       o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o) \\
       \tilde c_t &= \tanh(W_c h_{t-1} + U_c x_t + b_c) \\
       c_t &= f_t \odot c_{t-1} + i_t \odot \tilde c_t, \qquad h_t = o_t \odot \tanh(c_t)

    Returns:
      ``(LSTMState(h_t, c_t), h_t)``.
    """
    return step(LSTM_CELL, params, carry, x)
