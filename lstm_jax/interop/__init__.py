"""Weights in and out of the peers: PyTorch, flax (linen and nnx), Keras 3, Haiku, Equinox and cuDNN's
flat vector (``jax.experimental.rnn``).

Every ``from_X`` returns the structures :func:`lstm_jax.init.init_layers` builds (one cell's
parameters per layer, or :class:`~lstm_jax.unroll.Bidirectional` pairs) or one cell's parameters;
every ``to_X`` goes back. The peer libraries are imported only by the functions that need them, so
``import lstm_jax.interop`` needs none of them. ``docs/coming_from.md`` maps the conventions.
"""

from __future__ import annotations

import importlib

#: Public name -> the submodule that defines it (imported on first use: the peers are optional).
_EXPORTS = {
    # PyTorch nn.RNN / nn.LSTM (proj_size) / nn.GRU state dicts
    "from_torch": "pytorch",
    "to_torch": "pytorch",
    "to_torch_module": "pytorch",
    "torch_cell": "pytorch",
    "torch_layout": "pytorch",
    "TorchLayout": "pytorch",
    # flax linen and nnx cells
    "from_flax": "flax_cells",
    "to_flax": "flax_cells",
    "from_nnx": "flax_cells",
    "to_nnx": "flax_cells",
    "flax_cell": "flax_cells",
    "carry_from_flax": "flax_cells",
    "carry_to_flax": "flax_cells",
    # Keras 3 LSTM / GRU / SimpleRNN layers
    "from_keras": "keras_layers",
    "to_keras": "keras_layers",
    "to_keras_model": "keras_layers",
    "from_keras_model": "keras_layers",
    "keras_cell": "keras_layers",
    # Haiku LSTM / VanillaRNN (hk.GRU puts its reset gate before the matmul: refused)
    "from_haiku": "haiku_cells",
    "to_haiku": "haiku_cells",
    # Equinox LSTMCell / GRUCell
    "from_equinox": "equinox_cells",
    "to_equinox": "equinox_cells",
    # jax.experimental.rnn's cuDNN flat weight vector
    "from_cudnn": "cudnn",
    "to_cudnn": "cudnn",
    "cudnn_sizes": "cudnn",
    "carry_from_cudnn": "cudnn",
    "carry_to_cudnn": "cudnn",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__():
    return __all__
