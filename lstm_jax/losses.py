r"""Losses from logits, and their reduction over time with padding masks.

Every loss here is a weighted sum of per-step losses,

.. math:: L = \sum_{b,t} w_{b,t}\, L_t(o_{b,t}, y_{b,t}),

where :math:`o_t = V h_t + c` are the logits and the weights :math:`w` (:func:`time_weights`)
encode the reduction and the padding mask:

* ``"sum_over_time"``: :math:`w = m / B`, the article's :math:`L = \sum_t L_t` per sequence,
  averaged over the batch (not PyTorch's ``"sum"``, which would also sum over the batch);
* ``"mean"``: :math:`w = m / \sum m`, the mean over all valid steps of the batch;
* ``"last"``: :math:`w = [t = \text{last valid step}] / B`, a many-to-one loss.

Per-step losses, each paired with the output nonlinearity ``g`` that makes
:math:`\partial L_t / \partial o_t` simple (erratum E2):

* ``"softmax_cross_entropy"`` (g = softmax): :math:`-\sum_k y_k \log \mathrm{softmax}(o)_k`,
  computed with ``log_softmax``; :math:`\partial L_t/\partial o = \hat y \sum_k y_k - y`, which is
  the article's :math:`\hat y - y` when :math:`y` is a distribution;
* ``"sigmoid_binary_cross_entropy"`` (g = sigmoid):
  :math:`-\sum_k \big[y_k \log\sigma(o_k) + (1-y_k)\log(1-\sigma(o_k))\big]`, via ``log_sigmoid``;
  :math:`\partial L_t/\partial o = \hat y - y`;
* ``"mse"`` (g = identity): :math:`\frac1N \sum_k (o_k - y_k)^2`;
  :math:`\partial L_t/\partial o = \frac2N (o - y)`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lstm_jax import _checks
from lstm_jax._checks import accumulation_dtype

Array = jax.Array

_STEP_LOSSES: dict[str, Callable[[Array, Array], Array]] = {
    "softmax_cross_entropy": optax.softmax_cross_entropy,
    "sigmoid_binary_cross_entropy": lambda o, y: optax.sigmoid_binary_cross_entropy(o, y).sum(-1),
    "mse": lambda o, y: optax.squared_error(o, y).mean(-1),
}

LOSSES = tuple(_STEP_LOSSES)
REDUCTIONS = ("sum_over_time", "mean", "last")

#: The head nonlinearity ``g`` that turns logits into predictions for each loss.
OUTPUT_ACTIVATION = {"softmax_cross_entropy": "softmax", "sigmoid_binary_cross_entropy": "sigmoid", "mse": "identity"}


def _check_logits_targets(logits: Array, targets: Array) -> None:
    """Floating logits ``(..., N)`` and targets of exactly their shape and dtype (no broadcasting)."""
    _checks.check_floating("logits", logits)
    _checks.check_ndim("logits", logits, 1, "(..., N)")
    _checks.check_floating("targets", targets)
    _checks.check_same_dtype("targets", targets, jnp.result_type(logits), "the logits'")
    _checks.check_shape("targets", targets, jnp.shape(logits), "like the logits")


def step_loss(kind: str, logits: Array, targets: Array) -> Array:
    """Per-step loss :math:`L_t`, reducing the last (feature) axis: ``(..., N) -> (...)``."""
    _checks.check_choice("loss", kind, LOSSES)
    _check_logits_targets(logits, targets)
    return _STEP_LOSSES[kind](logits, targets)


def step_loss_grad(kind: str, logits: Array, targets: Array) -> Array:
    r"""The manual :math:`\partial L_t / \partial o_t`, ``(..., N)`` (see the module docstring)."""
    _checks.check_choice("loss", kind, LOSSES)
    _check_logits_targets(logits, targets)
    if kind == "softmax_cross_entropy":
        return jax.nn.softmax(logits) * targets.sum(-1, keepdims=True) - targets
    if kind == "sigmoid_binary_cross_entropy":
        return jax.nn.sigmoid(logits) - targets
    return 2 * (logits - targets) / logits.shape[-1]


def _check_mask(mask: Array) -> None:
    _checks.check_ndim("mask", mask, 1, "(*batch, T)")
    if jnp.result_type(mask) != jnp.bool_:
        raise ValueError(f"mask: expected dtype bool, got {jnp.result_type(mask)}")


def time_weights(mask: Array, reduction: str, dtype=jnp.float32) -> Array:
    """Weights ``w`` ``(*batch, T)`` with ``loss = Σ w · L_t`` (see the module docstring).

    Args:
      mask: boolean ``(*batch, T)``, ``True`` at valid steps (any pattern; ``"last"`` takes the
        last ``True`` of each row, and a row with none contributes nothing).
      reduction: ``"sum_over_time"``, ``"mean"`` or ``"last"``.
      dtype: dtype of the weights; the counts behind them are taken in at least float32.
    """
    _checks.check_choice("reduction", reduction, REDUCTIONS)
    _check_mask(mask)
    _checks.check_floating("dtype", dtype)
    m = mask.astype(accumulation_dtype(dtype))
    if not m.shape[-1]:  # T = 0: no step and no weight, as when every step is padding
        return m.astype(dtype)
    num_sequences = max(1, m[..., 0].size)
    if reduction == "sum_over_time":
        w = m / num_sequences
    elif reduction == "mean":
        w = m / jnp.maximum(m.sum(), 1)
    else:
        num_steps = m.shape[-1]
        last = num_steps - 1 - jnp.argmax(jnp.flip(mask, -1), axis=-1)
        is_last = jnp.arange(num_steps).reshape((1,) * last.ndim + (num_steps,)) == last[..., None]
        w = (is_last & mask.any(-1, keepdims=True)).astype(m.dtype) / num_sequences
    return w.astype(dtype)


def prepare(kind: str, logits: Array, targets: Array, reduction: str, mask: Array | None) -> tuple[Array, Array, Array]:
    """Validate a sequence loss's arguments; return ``(logits, targets, mask)`` ready to weight.

    With ``reduction="last"`` the targets may be ``(*batch, N)``, one per sequence; they come back
    shaped like the logits. A missing mask becomes all ``True``. Logits and targets at masked steps
    are set to zero, so padding holding garbage (even NaN or inf) reaches neither the loss nor its
    gradient (a ``0 · NaN`` would).
    """
    _checks.check_choice("loss", kind, LOSSES)
    _checks.check_choice("reduction", reduction, REDUCTIONS)
    _checks.check_floating("logits", logits)
    _checks.check_ndim("logits", logits, 2, "(*batch, T, N)")
    if not jnp.issubdtype(jnp.result_type(targets), jnp.floating):
        raise ValueError(
            f"targets: expected a floating dtype (one-hot or probabilities: use jax.nn.one_hot for "
            f"class ids), got {jnp.result_type(targets)}"
        )
    _checks.check_same_dtype("targets", targets, logits.dtype, "the logits'")
    if reduction == "last" and targets.shape == logits.shape[:-2] + logits.shape[-1:]:
        targets = jnp.broadcast_to(targets[..., None, :], logits.shape)
    expected = "(*batch, T, N)" + (" or (*batch, N)" if reduction == "last" else "")
    _checks.check_shape("targets", targets, logits.shape, f"{expected} like the logits")
    if mask is None:
        return logits, targets, jnp.ones(logits.shape[:-1], bool)
    _checks.check_shape("mask", mask, logits.shape[:-1], "(*batch, T)")
    _check_mask(mask)
    keep = mask[..., None]
    return jnp.where(keep, logits, jnp.zeros_like(logits)), jnp.where(keep, targets, jnp.zeros_like(targets)), mask


def sequence_loss(
    kind: str, logits: Array, targets: Array, *, reduction: str = "sum_over_time", mask: Array | None = None
) -> Array:
    """Scalar loss ``Σ_{b,t} w_{b,t} L_t`` over a batch of sequences of logits.

    Args:
      kind: one of :data:`LOSSES`.
      logits: ``(*batch, T, N)``, the head's pre-activations :math:`o_t`.
      targets: ``(*batch, T, N)`` floats (one-hot, probabilities or values); ``(*batch, N)`` with
        ``reduction="last"``.
      reduction: one of :data:`REDUCTIONS`.
      mask: optional boolean ``(*batch, T)``; ``lstm_jax.unroll.valid_steps(lengths, T)`` builds it.

    Returns:
      The loss, in float32 for 16-bit logits (the sum over steps is accumulated in float32). With no
      valid step at all (``T = 0``, or a mask without ``True``) it is 0 for every reduction, gradients 0.
    """
    logits, targets, mask = prepare(kind, logits, targets, reduction, mask)
    acc = accumulation_dtype(logits.dtype)
    return jnp.sum(time_weights(mask, reduction, acc) * _STEP_LOSSES[kind](logits, targets).astype(acc))
