r"""Gradient checks: manual BPTT vs ``jax.grad`` vs centred finite differences, in float64.

Errors are norm-wise relative errors, which stay meaningful when single entries are near zero:

.. math::
   \mathrm{err}(a, b) = \frac{\max_k |a_k - b_k|}{\max(\max_k |a_k|, \max_k |b_k|)}

taken over every leaf of a gradient pytree (the largest leaf error is reported). Finite
differences probe random coordinates ``k`` of the flattened parameters (``ravel_pytree``), with
:math:`g_k \approx (L(\theta + \epsilon e_k) - L(\theta - \epsilon e_k)) / 2\epsilon`, and are
compared against the full gradient's scale :math:`\max_k |g_k|`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lstm_jax.bptt import BPTTGrads, autodiff_bptt, lstm_bptt, model_loss, rnn_bptt
from lstm_jax.cells import LSTMState, lstm_cell, rnn_cell
from lstm_jax.init import init_dense, init_lstm, init_rnn

Array = jax.Array

#: Manual vs autodiff: the same maths in a different order, so only rounding separates them.
MANUAL_TOL = 1e-10
#: Either vs finite differences: truncation O(ε²) plus rounding O(u/ε) with ε = 1e-6 in float64.
FD_TOL = 1e-6


def relative_error(a, b) -> float:
    """Largest per-leaf norm-wise relative error between two pytrees of the same structure."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        raise ValueError(f"relative_error: structures differ: {jax.tree.structure(a)} vs {jax.tree.structure(b)}")
    errors = [
        float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), np.max(np.abs(y)), np.finfo(np.float64).tiny))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
        if np.size(x)
    ]
    return max(errors, default=0.0)


def finite_difference_error(
    loss_fn: Callable, args, grads, key: Array, *, num_coords: int = 24, eps: float = 1e-6
) -> float:
    """Error of ``grads`` against centred differences of ``loss_fn(args)`` on random coordinates.

    Args:
      loss_fn: scalar function of the pytree ``args``.
      grads: claimed gradient, same structure as ``args``.
      key: chooses ``num_coords`` coordinates of the flattened ``args``, without replacement.
    """
    flat, unravel = ravel_pytree(args)
    flat_grads, _ = ravel_pytree(grads)
    f = jax.jit(lambda v: loss_fn(unravel(v)))
    coords = jax.random.choice(key, flat.size, (min(num_coords, flat.size),), replace=False)
    errors = []
    for k in np.asarray(coords):
        step = jnp.zeros_like(flat).at[k].set(eps)
        fd = (f(flat + step) - f(flat - step)) / (2 * eps)
        errors.append(abs(float(fd) - float(flat_grads[k])))
    return max(errors) / max(float(jnp.max(jnp.abs(flat_grads))), np.finfo(np.float64).tiny)


class Problem(NamedTuple):
    """A random single-layer problem: parameters, head, data and non-zero initial carry."""

    params: object
    head: object
    xs: Array
    targets: Array
    carry0: object
    lengths: Array


def random_problem(
    key: Array, model: str, *, B: int = 3, T: int = 7, M: int = 4, D: int = 5, N: int = 3, loss: str = "softmax_cross_entropy"
) -> Problem:
    """Float64 problem with ragged ``lengths`` (one full, one empty when ``B >= 3``) and random carry.

    Call inside ``with jax.enable_x64(True):``. Weights are scaled up (gain 1.5) so that the
    gradients are far from zero at every step.
    """
    k_cell, k_head, k_x, k_y, k_h, k_c, k_len = jax.random.split(key, 7)
    f64 = jnp.float64
    if model == "rnn":
        params = init_rnn(k_cell, M, D, recurrent_init="scaled_normal", recurrent_scale=1.5, dtype=f64)
        carry0 = 0.5 * jax.random.normal(k_h, (B, D), f64)
    elif model == "lstm":
        params = init_lstm(k_cell, M, D, recurrent_init="scaled_normal", recurrent_scale=1.5, dtype=f64)
        params = params._replace(b=0.5 * jax.random.normal(k_c, params.b.shape, f64))
        carry0 = LSTMState(0.5 * jax.random.normal(k_h, (B, D), f64), jax.random.normal(k_c, (B, D), f64))
    else:
        raise ValueError(f"model: expected 'rnn' or 'lstm', got {model!r}")
    head = init_dense(k_head, D, N, dtype=f64)
    head = head._replace(b=0.1 * jax.random.normal(k_head, (N,), f64))
    xs = jax.random.normal(k_x, (B, T, M), f64)
    if loss == "softmax_cross_entropy":
        targets = jax.nn.one_hot(jax.random.randint(k_y, (B, T), 0, N), N, dtype=f64)
    elif loss == "sigmoid_binary_cross_entropy":
        targets = jax.random.bernoulli(k_y, 0.5, (B, T, N)).astype(f64)
    else:
        targets = jax.random.normal(k_y, (B, T, N), f64)
    lengths = jax.random.randint(k_len, (B,), 0, T + 1)
    if B >= 3:
        lengths = lengths.at[0].set(T).at[1].set(0)
    return Problem(params, head, xs, targets, carry0, lengths)


class GradcheckRow(NamedTuple):
    model: str
    manual_vs_autodiff: float
    autodiff_vs_fd: float
    manual_vs_fd: float

    @property
    def ok(self) -> bool:
        return self.manual_vs_autodiff <= MANUAL_TOL and max(self.autodiff_vs_fd, self.manual_vs_fd) <= FD_TOL


def check_model(
    model: str,
    key: Array,
    *,
    activation: str = "tanh",
    loss: str = "softmax_cross_entropy",
    reduction: str = "sum",
    **sizes: int,
) -> GradcheckRow:
    """Manual vs autodiff vs finite differences for one random problem (float64 inside).

    Args:
      model: ``"rnn"`` or ``"lstm"``; ``activation`` is the RNN's ``f``.
      loss, reduction: as in :func:`lstm_jax.losses.sequence_loss`.
      sizes: ``B, T, M, D, N`` for :func:`random_problem`.
    """
    with jax.enable_x64(True):
        k_problem, k_fd = jax.random.split(key)
        p = random_problem(k_problem, model, loss=loss, **sizes)
        cell = rnn_cell(activation) if model == "rnn" else lstm_cell()
        kw = dict(lengths=p.lengths, loss=loss, reduction=reduction)
        _, auto = autodiff_bptt(cell, p.params, p.head, p.xs, p.targets, p.carry0, **kw)
        if model == "rnn":
            _, manual = rnn_bptt(p.params, p.head, p.xs, p.targets, p.carry0, activation=activation, **kw)
        else:
            _, manual = lstm_bptt(p.params, p.head, p.xs, p.targets, p.carry0, **kw)

        def loss_fn(args: BPTTGrads):
            return model_loss(cell, args.cell, args.head, p.xs, p.targets, args.carry0, **kw)

        args = BPTTGrads(p.params, p.head, p.carry0)
        return GradcheckRow(
            model,
            relative_error(manual, auto),
            finite_difference_error(loss_fn, args, auto, k_fd),
            finite_difference_error(loss_fn, args, manual, k_fd),
        )


def run(seed: int = 0) -> list[GradcheckRow]:
    """The ``lstm-jax gradcheck`` report: one row for the RNN, one for the LSTM."""
    key = jax.random.key(seed)
    return [check_model(model, k) for model, k in zip(("rnn", "lstm"), jax.random.split(key))]
