r"""Gradient checks: manual BPTT vs ``jax.grad`` vs centred finite differences, in float64.

Errors are norm-wise relative errors, which stay meaningful when single entries are near zero:

.. math::
   \mathrm{err}(a, b) = \frac{\max_k |a_k - b_k|}{\max(\max_k |a_k|, \max_k |b_k|)}

taken over every leaf of a gradient pytree (the largest leaf error is reported). Finite
differences probe random coordinates ``k`` of the flattened parameters (``ravel_pytree``), with
:math:`g_k \approx (L(\theta + \epsilon e_k) - L(\theta - \epsilon e_k)) / 2\epsilon`, and each
probe's error is scaled by the largest gradient entry of its own leaf.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lstm_jax import registry
from lstm_jax.bptt import BPTTGrads, autodiff_bptt, manual_bptt, model_loss
from lstm_jax.cells import DenseParams

Array = jax.Array

#: Manual vs autodiff: the same maths in a different order, so only rounding separates them.
MANUAL_TOL = 1e-10
#: Either vs finite differences: truncation O(ε²) plus rounding O(u/ε) with ε = 1e-6 in float64.
FD_TOL = 1e-6


def relative_error(a, b) -> float:
    """Largest per-leaf norm-wise relative error between two pytrees of the same structure.

    NaN anywhere makes the result NaN (which fails every ``<=`` tolerance check).
    """
    if jax.tree.structure(a) != jax.tree.structure(b):
        raise ValueError(f"relative_error: structures differ: {jax.tree.structure(a)} vs {jax.tree.structure(b)}")
    errors = [0.0]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.size:
            scale = max(np.max(np.abs(x)), np.max(np.abs(y)), np.finfo(np.float64).tiny)
            errors.append(np.max(np.abs(x - y)) / scale)
    return float(np.max(errors))


def finite_differences(loss_fn: Callable, args, seed: int, *, per_leaf: int = 4, eps: float = 1e-6):
    """Centred differences of ``loss_fn(args)`` along random coordinates, ``per_leaf`` from every leaf.

    Returns:
      ``(coords, values)``: indices into the flattened ``args`` (``ravel_pytree``, leaf by leaf),
      chosen without replacement with NumPy's generator seeded by ``seed``, and the difference
      quotients there.
    """
    flat, unravel = ravel_pytree(args)
    rng = np.random.default_rng(seed)
    sizes = [np.size(leaf) for leaf in jax.tree.leaves(args)]
    starts = np.cumsum([0, *sizes[:-1]])
    coords = np.concatenate(
        [start + rng.choice(size, min(per_leaf, size), replace=False) for start, size in zip(starts, sizes) if size]
    )

    @jax.jit
    @jax.vmap
    def centred_difference(k):
        step = jnp.zeros_like(flat).at[k].set(eps)
        return (loss_fn(unravel(flat + step)) - loss_fn(unravel(flat - step))) / (2 * eps)

    return coords, np.asarray(centred_difference(jnp.asarray(coords)))


def finite_difference_error(grads, coords: np.ndarray, values: np.ndarray) -> float:
    """``max_k |g_k - fd_k| / max_{j in leaf(k)} |g_j|``: each probe scaled by its own leaf's gradient.

    Scaling per leaf (not by the whole gradient) keeps a parameter with small gradients, such as
    the initial state's, as tightly checked as the large ones.
    """
    leaves = [np.ravel(np.asarray(leaf)) for leaf in jax.tree.leaves(grads)]
    flat_grads = np.concatenate(leaves)
    tiny = np.finfo(np.float64).tiny
    leaf_scale = np.concatenate([np.full(leaf.size, max(np.max(np.abs(leaf), initial=0.0), tiny)) for leaf in leaves])
    return float(np.max(np.abs(flat_grads[coords] - values) / leaf_scale[coords]))


class Problem(NamedTuple):
    """A random single-layer problem: parameters, head, data and non-zero initial carry."""

    params: object
    head: object
    xs: Array
    targets: Array
    carry0: object
    lengths: Array


def random_problem(
    seed: int,
    model: str,
    *,
    B: int = 3,
    T: int = 7,
    M: int = 4,
    D: int = 5,
    N: int = 3,
    loss: str = "softmax_cross_entropy",
    **options,
) -> Problem:
    """Float64 problem with ragged ``lengths`` (one full, one empty when ``B >= 3``) and random carry.

    Drawn with NumPy (no compilation); call inside ``with jax.enable_x64(True):``. Recurrent
    weights have gain 1.5 and biases are random, so no gradient is near zero by construction.
    ``options`` are the cell's layout options (the LSTM's ``proj_size``, ``peepholes``, ``layer_norm``):
    the fields they add are random too (a gain :math:`1 + 0.5 N(0, 1)`, anything else 0.5 N(0, 1)).
    """
    rng = np.random.default_rng(seed)

    def normal(*shape, scale=1.0, mean=0.0):
        return jnp.asarray(mean + scale * rng.standard_normal(shape), jnp.float64)

    entry = registry.cell_type(model)
    shapes = jax.eval_shape(lambda: entry.init(jax.random.key(0), M, D, dtype=jnp.float64, **options))
    P = shapes.w_hh.shape[1]  # h's size: D, or proj_size
    scales = {"w_ih": M**-0.5, "w_hh": 1.5 * P**-0.5, "w_hr": D**-0.5}  # the biases and any further field: 0.5

    def draw(name, leaf):
        if leaf is None:  # an option that is off
            return None
        return normal(*leaf.shape, scale=scales.get(name, 0.5), mean=1.0 if name.startswith("gamma") else 0.0)

    params = type(shapes)(*(draw(name, leaf) for name, leaf in zip(shapes._fields, shapes)))
    zeros = jax.eval_shape(lambda: registry.make_cell(model, **options).zeros(params, (B,)))
    carry0 = jax.tree.map(lambda leaf: normal(*leaf.shape, scale=0.5), zeros)  # h_0 (and c_0)
    head = DenseParams(normal(N, P, scale=P**-0.5), normal(N, scale=0.1))
    if loss == "softmax_cross_entropy":
        targets = jax.nn.one_hot(rng.integers(0, N, (B, T)), N, dtype=jnp.float64)
    elif loss == "sigmoid_binary_cross_entropy":
        targets = jnp.asarray(rng.integers(0, 2, (B, T, N)), jnp.float64)
    else:
        targets = normal(B, T, N)
    lengths = rng.integers(0, T + 1, (B,))
    if B >= 3:
        lengths[:2] = T, 0
    return Problem(params, head, normal(B, T, M), targets, carry0, jnp.asarray(lengths, jnp.int32))


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
    seed: int,
    *,
    activation: str = "tanh",
    options: dict | None = None,
    label: str | None = None,
    loss: str = "softmax_cross_entropy",
    reduction: str = "sum_over_time",
    **sizes: int,
) -> GradcheckRow:
    """Manual vs autodiff vs finite differences for one random problem (float64 inside).

    Args:
      model: a cell name (:data:`lstm_jax.registry.CELLS`); ``activation`` is the RNN's ``f``.
      options: the cell's layout options, e.g. ``{"proj_size": 3}`` for the LSTM (:data:`LSTM_VARIANTS`).
      label: the row's name (default ``model``).
      loss, reduction: as in :func:`lstm_jax.losses.sequence_loss`.
      sizes: ``B, T, M, D, N`` for :func:`random_problem`.
    """
    options = dict(options or {})
    with jax.enable_x64(True):
        p = random_problem(seed, model, loss=loss, **sizes, **options)
        cell = registry.make_cell(model, activation=activation, **options)
        kw = dict(lengths=p.lengths, loss=loss, reduction=reduction)
        _, auto = jax.jit(functools.partial(autodiff_bptt, cell, **kw))(*p[:5])
        _, manual = jax.jit(functools.partial(manual_bptt, cell, **kw))(*p[:5])

        def loss_fn(args: BPTTGrads):
            return model_loss(cell, args.cell, args.head, p.xs, p.targets, args.carry0, **kw)

        fd = finite_differences(loss_fn, BPTTGrads(p.params, p.head, p.carry0), seed)
        return GradcheckRow(
            label or model,
            relative_error(manual, auto),
            finite_difference_error(auto, *fd),
            finite_difference_error(manual, *fd),
        )


#: The LSTM's options as ``lstm-jax gradcheck`` rows, one each (``P = 3`` with ``D = 5``); their combinations
#: are checked in ``tests/test_lstm_variants.py``.
LSTM_VARIANTS: dict[str, dict] = {
    "lstm+proj": {"proj_size": 3},
    "lstm+peep": {"peepholes": True},
    "lstm+ln": {"layer_norm": True},
}


def run(seed: int = 0) -> list[GradcheckRow]:
    """The ``lstm-jax gradcheck`` report: one row per built-in cell (:data:`lstm_jax.registry.CELLS`), then
    one per LSTM variant (:data:`LSTM_VARIANTS`)."""
    rows = [check_model(model, seed) for model in registry.CELLS]
    return rows + [check_model("lstm", seed, options=o, label=name) for name, o in LSTM_VARIANTS.items()]
