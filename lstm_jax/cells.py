r"""One time step of the simple RNN and the LSTM (article §1.2 and §2.2) as pure functions.

Parameters are NamedTuples of arrays in the article's column-vector layout (``W`` has shape
``(out, in)`` and acts as ``W x``; the code computes ``x @ W.T`` so any leading batch dimensions
work). Both cells share the field names ``w_ih`` (input → state), ``w_hh`` (state → state) and ``b``,
with ``G·D`` rows where ``G`` is the number of gate blocks (1 for the RNN, 4 for the LSTM).

Every step is split in two so that the input projection of all time steps can be one GEMM before
``lax.scan`` (see :mod:`lstm_jax.unroll`):

* ``project(params, x) = x W_ihᵀ + b``, the part that does not depend on the carry;
* ``recur(params, carry, z) -> (carry, h)``, the rest of the step, already in ``lax.scan`` order.

``rnn_step`` and ``lstm_step`` compose the two for a single step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax import _checks

Array = jax.Array

#: Row-block order of the LSTM's fused weights: input gate, forget gate, candidate ``c̃``, output
#: gate, as in PyTorch, cuDNN and Equinox. The article stacks ``(c̃, o, i, f)``; see ``article.py``.
LSTM_GATE_ORDER = ("i", "f", "g", "o")

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
}

#: The output nonlinearity ``g`` of the head; "purlin" is MATLAB's name for the identity.
OUTPUT_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "softmax": jax.nn.softmax,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda o: o,
    "purlin": lambda o: o,
}


class RNNParams(NamedTuple):
    r"""Simple-RNN parameters, :math:`h_t = f(U h_{t-1} + W x_t + b)` (article §1.2)."""

    w_ih: Array  # (D, M)  the article's W: input -> state
    w_hh: Array  # (D, D)  the article's U: state -> state
    b: Array  # (D,)


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


class DenseParams(NamedTuple):
    r"""An affine map :math:`o = V h + c`; the article's output head. ``b`` may be ``None`` (no c)."""

    w: Array  # (N, D)  the article's V
    b: Array | None  # (N,) the article's c


class Cell(NamedTuple):
    """A recurrent cell as pure functions, in the manner of optax's ``GradientTransformation``.

    Attributes:
      name: ``"rnn"`` or ``"lstm"`` (used in messages).
      gates: number of ``D``-row blocks in ``w_ih``, ``w_hh`` and ``b`` (1 or 4); 0 for a plain
        step function wrapped by :func:`lstm_jax.unroll.as_cell` (no parameter layout to check).
      project: ``(params, x[..., M]) -> z[..., G·D]``, the input projection ``x W_ihᵀ + b``.
      recur: ``(params, carry, z_t) -> (carry, h_t)``, the rest of one step.
      zeros: ``(params, batch_shape) -> carry`` of zeros, or ``None`` (the caller gives a carry).

    A ``Cell`` is hashable, so it can be a static argument: ``jax.jit(unroll, static_argnums=0)``.
    """

    name: str
    gates: int
    project: Callable[[Any, Array], Array]
    recur: Callable[[Any, Any, Array], tuple[Any, Array]]
    zeros: Callable[[Any, tuple[int, ...]], Any] | None


def add_bias(y: Array, b: Array) -> Array:
    """``y + b`` over the last axis, with ``b``'s rank made explicit (no implicit rank promotion)."""
    return y + b.reshape((1,) * (y.ndim - b.ndim) + b.shape)


def project_input(params: RNNParams | LSTMParams, x: Array) -> Array:
    r""":math:`z = W_{ih} x + b` for any leading dimensions of ``x``; shared by both cells."""
    return add_bias(jnp.einsum("...m,gm->...g", x, params.w_ih), params.b)


def _rnn_recur(activation: str, params: RNNParams, h: Array, z: Array) -> tuple[Array, Array]:
    r""":math:`h_t = f(z_t + U h_{t-1})`, with :math:`z_t = W x_t + b` precomputed."""
    h = ACTIVATIONS[activation](z + h @ params.w_hh.T)
    return h, h


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


def _lstm_recur(params: LSTMParams, carry: LSTMState, z: Array) -> tuple[LSTMState, Array]:
    r"""One LSTM step after the input projection (article §2.2, corrected per E6–E8).

    .. math::
       [z_i; z_f; z_g; z_o] &= z_t + W_{hh} h_{t-1} \\
       c_t &= f_t \odot c_{t-1} + i_t \odot \tilde c_t \\
       h_t &= o_t \odot \tanh(c_t)
    """
    i, f, g, o = lstm_gates(z + carry.h @ params.w_hh.T)
    c = f * carry.c + i * g
    h = o * jnp.tanh(c)
    return LSTMState(h, c), h


def _zeros_like_state(params, batch_shape: tuple[int, ...]) -> Array:
    return jnp.zeros((*batch_shape, params.w_hh.shape[1]), params.w_hh.dtype)


#: The simple RNN as a :class:`Cell`, one per activation ``f``: :func:`rnn_cell` returns these objects.
#: Built once here, since two ``functools.partial`` of the same function and argument are not equal: a
#: ``Cell`` made per call would miss the fast path's kernels (keyed by ``Cell``) and recompile under jit.
RNN_CELLS: dict[str, Cell] = {
    activation: Cell("rnn", 1, project_input, functools.partial(_rnn_recur, activation), _zeros_like_state)
    for activation in ACTIVATIONS
}


def rnn_cell(activation: str = "tanh") -> Cell:
    """The simple RNN as a :class:`Cell`; ``activation`` is ``f``, one of :data:`ACTIVATIONS`.

    Every spelling of one activation gives the same object: ``rnn_cell() is rnn_cell(activation="tanh")``.
    """
    _checks.check_choice("activation", activation, ACTIVATIONS)
    return RNN_CELLS[activation]


def _lstm_zeros(params: LSTMParams, batch_shape: tuple[int, ...]) -> LSTMState:
    zeros = _zeros_like_state(params, batch_shape)
    return LSTMState(zeros, zeros)


#: The LSTM as a :class:`Cell`.
LSTM_CELL = Cell("lstm", 4, project_input, _lstm_recur, _lstm_zeros)


def lstm_cell() -> Cell:
    """The LSTM as a :class:`Cell` (the same object every call)."""
    return LSTM_CELL


# ----------------------------------------------------------------------------------------------
# Checks shared by the single step and the unroll.


def check_params(cell: Cell, params) -> tuple[int, int]:
    """Validate a cell's parameters and return ``(D, M)``: hidden and input sizes."""
    for name in ("w_ih", "w_hh", "b"):
        if not hasattr(params, name):
            raise ValueError(
                f"{cell.name} params: expected a NamedTuple with fields (w_ih, w_hh, b), got {type(params).__name__}"
            )
        _checks.check_floating(f"params.{name}", getattr(params, name))
    G = cell.gates
    _checks.check_ndim("params.w_hh", params.w_hh, 2, f"({G}·D, D)")
    D = params.w_hh.shape[1]
    rows = f"{G}·D" if G > 1 else "D"
    _checks.check_shape("params.w_hh", params.w_hh, (G * D, D), f"({rows}, D) with D={D}")
    _checks.check_ndim("params.w_ih", params.w_ih, 2, f"({rows}, M)")
    M = params.w_ih.shape[1]
    _checks.check_shape("params.w_ih", params.w_ih, (G * D, M), f"({rows}, M) with D={D}")
    _checks.check_shape("params.b", params.b, (G * D,), f"({rows},) with D={D}")
    for name in ("w_ih", "b"):
        _checks.check_same_dtype(f"params.{name}", getattr(params, name), params.w_hh.dtype)
    return D, M


def check_carry(cell: Cell, params, carry, batch_shape: tuple[int, ...]) -> None:
    """Validate a carry against the structure, shape and dtype of ``cell.zeros`` (shapes only, no arrays)."""
    expected = jax.eval_shape(lambda: cell.zeros(params, batch_shape))
    if jax.tree.structure(carry) != jax.tree.structure(expected):
        raise ValueError(
            f"carry: expected {jax.tree.structure(expected)} for the {cell.name}, got {jax.tree.structure(carry)}"
        )
    for leaf, ref in zip(jax.tree.leaves(carry), jax.tree.leaves(expected)):
        _checks.check_shape("carry", leaf, ref.shape, "(*batch, D)")
        _checks.check_same_dtype("carry", leaf, ref.dtype)


def check_input(params, x, min_ndim: int, meaning: str) -> None:
    """Validate inputs: floating, the parameters' dtype, at least ``min_ndim`` dims, last dim ``M``."""
    _checks.check_array("inputs", x)
    _checks.check_floating("inputs", x)
    _checks.check_same_dtype("inputs", x, params.w_ih.dtype)
    _checks.check_ndim("inputs", x, min_ndim, meaning)
    M = params.w_ih.shape[1]
    if x.shape[-1] != M:
        raise ValueError(f"inputs: expected last dimension M={M} (params.w_ih.shape[1]), got shape {x.shape}")


def step(cell: Cell, params, carry, x: Array):
    """One checked step of ``cell``: ``recur(params, carry, project(params, x))``."""
    check_params(cell, params)
    check_input(params, x, 1, "(..., M)")
    check_carry(cell, params, carry, x.shape[:-1])
    return cell.recur(params, carry, cell.project(params, x))


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


def dense(params: DenseParams, h: Array) -> Array:
    r""":math:`o = V h + c` for any leading dimensions of ``h`` (``c`` omitted when ``params.b`` is None)."""
    _checks.check_floating("params.w", params.w)
    if jnp.ndim(params.w) != 2:
        raise ValueError(f"params.w: expected 2 dimensions (N, D), got shape {jnp.shape(params.w)}")
    _checks.check_array("inputs", h)
    _checks.check_floating("inputs", h)
    _checks.check_same_dtype("inputs", h, params.w.dtype)
    if h.shape[-1:] != params.w.shape[1:]:
        raise ValueError(
            f"inputs: expected last dimension D={params.w.shape[1]} (params.w.shape[1]), got shape {h.shape}"
        )
    o = jnp.einsum("...d,nd->...n", h, params.w)
    if params.b is not None:
        _checks.check_shape("params.b", params.b, params.w.shape[:1], "(N,)")
        _checks.check_same_dtype("params.b", params.b, params.w.dtype)
        o = add_bias(o, params.b)
    return o


def head(params: DenseParams, h: Array, activation: str = "identity") -> Array:
    r"""The article's output :math:`y_t = g(V h_t + c)`, ``g`` one of :data:`OUTPUT_ACTIVATIONS`.

    For training, keep the logits :func:`dense` and use a loss from logits (:mod:`lstm_jax.losses`).
    """
    _checks.check_choice("activation", activation, OUTPUT_ACTIVATIONS)
    return OUTPUT_ACTIVATIONS[activation](dense(params, h))
