r"""Dropout for recurrent layers, with every mask drawn once, outside the time loop.

Four regularisers, each a rate in ``[0, 1)`` of :class:`Dropout` (all 0: none):

=====================  ====================================================================  ==========================
field                  what is dropped                                                       the peers' name
=====================  ====================================================================  ==========================
``between_layers``     each stacked layer's outputs :math:`h^{(l)}_t` before layer ``l+1``   PyTorch ``dropout``
                       reads them (a new mask per step and unit; not after the last layer)
``input``              the inputs :math:`x_t` of every layer, **one mask per sequence**,     Keras ``dropout``
                       the same at every step (Gal & Ghahramani 2016)
``recurrent``          the recurrent operand: :math:`a_t = W_{hh} (m \odot h_{t-1})`, one     Keras ``recurrent_dropout``
                       mask per sequence (Gal & Ghahramani 2016)
``zoneout_h``,         zoneout (Krueger et al. 2017): each unit keeps its previous value      haste ``zoneout``
``zoneout_c``          with probability ``p``: :math:`h_t = d_t \odot h_{t-1} + (1-d_t)
                       \odot \tilde h_t`; ``zoneout_c`` on the LSTM's cell state
=====================  ====================================================================  ==========================

Dropout masks are inverted: kept units are scaled by :math:`1/(1-p)`, so the expectation of every
masked quantity is unchanged and evaluation uses no mask at all. Zoneout's masks :math:`d_t`
are 0/1 per step and unit; at evaluation :math:`d_t` is replaced by its expectation ``p``
(:math:`h_t = p\,h_{t-1} + (1-p)\,\tilde h_t`), as Krueger et al. do.

Every mask is a function of the key alone (:func:`draw`), drawn before the ``lax.scan``: the
per-sequence masks enter the steps as constants, the per-step ones as scanned inputs, so the fast
path keeps its single recurrent GEMM per step and its weight gradients as GEMMs after the loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import _checks

Array = jax.Array


class Dropout(NamedTuple):
    """Rates of the four regularisers (module docstring); hashable, so it can be static under ``jit``."""

    between_layers: float = 0.0
    input: float = 0.0
    recurrent: float = 0.0
    zoneout_h: float = 0.0
    zoneout_c: float = 0.0

    @property
    def active(self) -> bool:
        """Whether any rate is non-zero."""
        return any(rate > 0 for rate in self)


class LayerMasks(NamedTuple):
    """The masks of one layer (one direction), time-major; ``None`` where the rate is 0.

    ``zoneout`` has one leaf per carry leaf (``h``; ``h`` and ``c`` for the LSTM): the probability
    ``d`` of keeping the previous value, ``(T, *batch, D)``: 0/1 when training, the rate at evaluation.
    """

    input: Array | None = None  # (*batch, M), 0 or 1/(1-p)
    recurrent: Array | None = None  # (*batch, D), 0 or 1/(1-p)
    zoneout: Any = None  # a carry-shaped pytree of (T, *batch, D), or None


def check_dropout(dropout) -> Dropout:
    """``None`` as ``Dropout()``; every rate a float in ``[0, 1)``, else a ValueError naming it."""
    if dropout is None:
        return Dropout()
    if not isinstance(dropout, Dropout):
        raise ValueError(f"dropout: expected None or lstm_jax.Dropout(...), got {_checks.describe(dropout)}")
    for name, rate in zip(Dropout._fields, dropout):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"dropout.{name}: expected a rate in [0, 1), got {rate!r}")
    return dropout


def check_mode(dropout: Dropout, key, training) -> bool:
    """Validate ``training`` and ``key``: a key is needed to train with any non-zero rate."""
    training = _checks.check_bool("training", training)
    if training and dropout.active:
        if key is None:
            raise ValueError(
                "key: expected a PRNG key (jax.random.key(seed)) to draw dropout masks when training, got None"
            )
        _checks.check_key(key)
    return training


def keep_mask(key: Array, rate: float, shape: tuple[int, ...], dtype) -> Array | None:
    r"""Inverted dropout: :math:`m = \mathrm{Bernoulli}(1-p) / (1-p)`, so :math:`E[m] = 1`; ``None`` when ``rate`` is 0."""
    if rate == 0:
        return None
    keep = jax.random.bernoulli(key, 1 - rate, shape)
    return keep.astype(dtype) / jnp.asarray(1 - rate, dtype)


def apply(x: Array, mask: Array | None) -> Array:
    """``x ⊙ mask`` (``mask`` broadcast over the leading axes ``x`` has in addition); ``x`` when there is no mask."""
    if mask is None:
        return x
    return x * mask.reshape((1,) * (x.ndim - mask.ndim) + mask.shape)


def draw(
    dropout: Dropout, key: Array | None, training: bool, carry_shapes, num_steps: int, input_shape: tuple[int, ...]
) -> LayerMasks:
    """The masks of one layer: ``carry_shapes`` is the carry's pytree of ``ShapeDtypeStruct`` ``(*batch, D)``
    (``h`` first), ``input_shape`` is ``(*batch, M)``. At evaluation only zoneout has a mask (its rate)."""
    leaves, treedef = jax.tree.flatten(carry_shapes)
    dtype = leaves[0].dtype
    zoneout_rates = [dropout.zoneout_h] + [dropout.zoneout_c] * (len(leaves) - 1)  # h first: LSTMState(h, c)
    zoneout = None
    if any(zoneout_rates):
        if training:
            keys = jax.random.split(jax.random.fold_in(key, 2), len(leaves))
            drawn = [
                jax.random.bernoulli(k, rate, (num_steps, *leaf.shape)).astype(dtype)
                for k, rate, leaf in zip(keys, zoneout_rates, leaves)
            ]
        else:
            drawn = [jnp.full((num_steps, *leaf.shape), rate, dtype) for rate, leaf in zip(zoneout_rates, leaves)]
        zoneout = jax.tree.unflatten(treedef, drawn)
    if not training:
        return LayerMasks(zoneout=zoneout)
    return LayerMasks(
        input=keep_mask(jax.random.fold_in(key, 0), dropout.input, input_shape, dtype),
        recurrent=keep_mask(jax.random.fold_in(key, 1), dropout.recurrent, leaves[0].shape, dtype),
        zoneout=zoneout,
    )


def zone(keep, new, old):
    r"""Zoneout per leaf: :math:`d \odot \text{old} + (1-d) \odot \text{new}` (``keep`` = ``d``); ``new`` when ``keep`` is None."""
    if keep is None:
        return new
    return jax.tree.map(lambda d, n, o: n + d * (o - n), keep, new, old)
