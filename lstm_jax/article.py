r"""The article's fused LSTM layout (§2.2), to and from :class:`~lstm_jax.cells.LSTMParams`.

The article stacks the four gates in the order :math:`(\tilde c, o, i, f)` and puts the
recurrent and input weights side by side, acting on the concatenation :math:`[h_{t-1}; x_t]`:

.. math::
   \begin{bmatrix}\tilde c_t\\ o_t\\ i_t\\ f_t\end{bmatrix}
   = \begin{bmatrix}\tanh\\ \sigma\\ \sigma\\ \sigma\end{bmatrix}
     \left(W \begin{bmatrix}h_{t-1}\\ x_t\end{bmatrix} + b\right), \qquad
   W = \begin{bmatrix}W_c & U_c\\ W_o & U_o\\ W_i & U_i\\ W_f & U_f\end{bmatrix}
   \in \mathbb R^{4D\times(D+M)}, \quad
   b = \begin{bmatrix}b_c\\ b_o\\ b_i\\ b_f\end{bmatrix} \in \mathbb R^{4D}

with the biases and the candidate's ``tanh`` as corrected by errata E6 and E7, and
:math:`W_* \in \mathbb R^{D\times D}`, :math:`U_* \in \mathbb R^{D\times M}` as corrected by E8.

:class:`LSTMParams` keeps the same blocks in the order (i, f, g, o) (PyTorch's, cuDNN's), with
the recurrent columns in ``w_hh`` and the input columns in ``w_ih`` so that the input projection
of all steps can be hoisted out of the scan. The conversion only moves blocks, so the round trip
is exact, bit for bit.

For the simple RNN no conversion is needed: ``RNNParams.w_hh`` is the article's ``U`` and
``RNNParams.w_ih`` its ``W`` (§1.2's names; the BPTT section swaps them, erratum E1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.cells import LSTM_GATE_ORDER, LSTMParams, LSTMState, add_bias, check_params, lstm_cell

Array = jax.Array

#: The article's gate order (candidate, output, input, forget).
ARTICLE_GATE_ORDER = ("g", "o", "i", "f")

_TO_ARTICLE = [LSTM_GATE_ORDER.index(gate) for gate in ARTICLE_GATE_ORDER]  # ours -> article
_FROM_ARTICLE = [ARTICLE_GATE_ORDER.index(gate) for gate in LSTM_GATE_ORDER]  # article -> ours


def _reorder_blocks(x: Array, order: list[int]) -> Array:
    """Permute the four ``D``-row blocks of ``x`` (``(4D, ...)``)."""
    blocks = jnp.split(x, 4, axis=0)
    return jnp.concatenate([blocks[k] for k in order], axis=0)


def lstm_to_article(params: LSTMParams) -> tuple[Array, Array]:
    """``LSTMParams`` → the article's ``(W (4D, D+M), b (4D,))``, blocks (c̃, o, i, f), columns [h; x]."""
    check_params(lstm_cell(), params)
    W = jnp.concatenate([params.w_hh, params.w_ih], axis=1)
    return _reorder_blocks(W, _TO_ARTICLE), _reorder_blocks(params.b, _TO_ARTICLE)


def lstm_from_article(W: Array, b: Array) -> LSTMParams:
    """The article's ``(W (4D, D+M), b (4D,))`` → ``LSTMParams``; ``D`` and ``M`` come from the shapes."""
    _checks.check_floating("W", W)
    _checks.check_ndim("W", W, 2, "(4D, D+M)")
    if W.ndim != 2 or W.shape[0] % 4 or W.shape[1] <= W.shape[0] // 4:
        raise ValueError(f"W: expected shape (4D, D+M) with D >= 1 and M >= 1, got {W.shape}")
    D = W.shape[0] // 4
    _checks.check_shape("b", b, (4 * D,), f"(4D,) with D={D}")
    _checks.check_same_dtype("b", b, W.dtype, "W's")
    W, b = _reorder_blocks(W, _FROM_ARTICLE), _reorder_blocks(b, _FROM_ARTICLE)
    return LSTMParams(w_ih=W[:, D:], w_hh=W[:, :D], b=b)


def article_lstm_step(W: Array, b: Array, carry: LSTMState, x: Array) -> tuple[LSTMState, Array]:
    r"""One LSTM step written exactly as the article's fused equation (corrected), on ``[h; x]``.

    A literal transcription for checking the layout; :func:`lstm_jax.cells.lstm_step` is the one
    to use. Any leading batch dimensions.
    """
    z = add_bias(jnp.concatenate([carry.h, x], axis=-1) @ W.T, b)
    z_c, z_o, z_i, z_f = jnp.split(z, 4, axis=-1)
    c_tilde, o, i, f = jnp.tanh(z_c), jax.nn.sigmoid(z_o), jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f)
    c = f * carry.c + i * c_tilde
    h = o * jnp.tanh(c)
    return LSTMState(h, c), h
