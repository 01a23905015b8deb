"""flax modules over lstm_jax's fast path: LSTM, GRU and SimpleRNN layers (stacked, bidirectional, with dropout)
for flax linen (:mod:`lstm_jax.modules.linen`) and flax nnx (:mod:`lstm_jax.modules.nnx`), called as flax's
``nn.RNN`` / ``nnx.RNN`` and equal to them with converted weights::

    from lstm_jax.modules import linen as ljnn   # ljnn.LSTM(64), ljnn.GRU(32, bidirectional=True), ...
    from lstm_jax.modules import nnx as ljnnx    # ljnnx.LSTM(3, 64, rngs=nnx.Rngs(0)), ...

The submodules are imported on first use (``lstm_jax.modules.nnx`` imports ``flax.nnx``).
"""

from __future__ import annotations

import importlib

__all__ = ["linen", "nnx"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
