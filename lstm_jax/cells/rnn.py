r"""The simple RNN (article §1.2): :math:`h_t = f(U h_{t-1} + W x_t + b)`, forward and backward step."""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.cells._base import (
    ACTIVATIONS,
    Cell,
    Kernel,
    StepGrads,
    carry_is_hidden,
    cell_from_kernel,
    step,
    zeros_like_state,
)

Array = jax.Array


class RNNParams(NamedTuple):
    r"""Simple-RNN parameters, :math:`h_t = f(U h_{t-1} + W x_t + b)` (article §1.2)."""

    w_ih: Array  # (D, M)  the article's W: input -> state
    w_hh: Array  # (D, D)  the article's U: state -> state
    b: Array  # (D,)


#: f'(a) written in terms of h = f(a), as the article does (f' = 1 − h² for tanh).
DERIVATIVE_FROM_OUTPUT: dict[str, Callable[[Array], Array]] = {
    "tanh": lambda h: 1 - h**2,
    "sigmoid": lambda h: h * (1 - h),
    "relu": lambda h: (h > 0).astype(h.dtype),
}


def _rnn_step(activation: str, a: Array, extras: tuple, h: Array, z: Array) -> tuple[Array, None]:
    r""":math:`h_t = f(z_t + a_t)`, given :math:`a_t = U h_{t-1}` and :math:`z_t = W x_t + b`."""
    return ACTIVATIONS[activation](z + a), None


def rnn_grad_step(activation: str, extras: tuple, dh: Array, h: Array, h_prev: Array, saved=None):
    r"""One simple-RNN backward step: :math:`\delta_t = dh_t \odot f'(a_t)`; the caller adds :math:`dh_{t-1} = U^\top \delta_t`.

    ``dh`` is :math:`\partial L/\partial h_t` in total (from the output and from step ``t+1``);
    :math:`f'` is computed from :math:`h_t` (:data:`DERIVATIVE_FROM_OUTPUT`). Returns
    ``(0, StepGrads(δ_t))``: :math:`h_{t-1}` reaches the loss only through :math:`U h_{t-1}`.
    """
    delta = dh * DERIVATIVE_FROM_OUTPUT[activation](h)  # back through f
    return jnp.zeros_like(dh), StepGrads(delta)


def _rnn_kernel(activation: str) -> Kernel:
    return Kernel(
        functools.partial(_rnn_step, activation), functools.partial(rnn_grad_step, activation), carry_is_hidden
    )


#: The simple RNN as a :class:`Cell`, one per activation ``f``: :func:`rnn_cell` returns these objects.
#: Built once here, since two ``functools.partial`` of the same function and argument are not equal: a
#: ``Cell`` made per call would recompile under jit.
RNN_CELLS: dict[str, Cell] = {
    activation: cell_from_kernel("rnn", 1, _rnn_kernel(activation), zeros_like_state) for activation in ACTIVATIONS
}


def rnn_cell(activation: str = "tanh") -> Cell:
    """The simple RNN as a :class:`Cell`; ``activation`` is ``f``, one of :data:`ACTIVATIONS`.

    Every spelling of one activation gives the same object: ``rnn_cell() is rnn_cell(activation="tanh")``.
    """
    _checks.check_choice("activation", activation, ACTIVATIONS)
    return RNN_CELLS[activation]


def rnn_step(params: RNNParams, h: Array, x: Array, activation: str = "tanh") -> tuple[Array, Array]:
    r"""One simple-RNN step (article §1.2), for any leading batch dimensions.

    .. math:: h_t = f(U h_{t-1} + W x_t + b)

    Args:
      params: :class:`RNNParams` with ``w_hh`` = U ``(D, D)``, ``w_ih`` = W ``(D, M)``, ``b`` ``(D,)``.
      h: previous state :math:`h_{t-1}`, ``(*batch, D)``.
      x: input :math:`x_t`, ``(*batch, M)``.
      activation: ``f``, one of ``"tanh"``, ``"sigmoid"``, ``"relu"``.

    Returns:
      ``(h_t, h_t)``: the new carry and the step's output, in ``lax.scan`` order.
    """
    return step(rnn_cell(activation), params, h, x)
