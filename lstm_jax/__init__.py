"""lstm_jax: the simple RNN, the LSTM (with a projection, peepholes or layer normalisation) and the GRU in JAX,
with BPTT by ``jax.grad`` and by hand.

The public API, importable from the package root::

    import lstm_jax as lj
    params = lj.init_lstm(jax.random.key(0), input_size=3, hidden_size=8)
    carry, hs = lj.unroll(lj.lstm_cell(), params, xs, lengths=lengths)

The trainer from Python (imported on first use, :mod:`lstm_jax.api`)::

    summary = lj.fit("configs/quickstart.yaml", "runs/q", overrides=["train.steps=300"])
    run = lj.load_run("runs/q")  # run.config, run.params, run.summary, run.apply(inputs)
"""

from lstm_jax.article import article_lstm_step, lstm_from_article, lstm_to_article
from lstm_jax.bptt import BPTTGrads, autodiff_bptt, gru_bptt, lstm_bptt, manual_bptt, model_loss, rnn_bptt
from lstm_jax.cells import (
    LSTM_GATE_ORDER,
    Cell,
    DenseParams,
    GRUParams,
    LSTMParams,
    LSTMState,
    LSTMVariantParams,
    RNNParams,
    dense,
    gru_cell,
    gru_step,
    head,
    lstm_cell,
    lstm_step,
    rnn_cell,
    rnn_step,
)
from lstm_jax.dropout import Dropout
from lstm_jax.init import init_dense, init_gru, init_layers, init_lstm, init_rnn, initializer
from lstm_jax.losses import sequence_loss, step_loss, time_weights
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers, valid_steps

__version__ = "0.1.0"

#: Names of the trainer's Python API, imported from :mod:`lstm_jax.api` on first use so that
#: ``import lstm_jax`` does not load optax, the tasks and the config machinery.
_LAZY = {
    "fit": "lstm_jax.api",
    "load_run": "lstm_jax.api",
    "catalog": "lstm_jax.api",
    "LoadedRun": "lstm_jax.api",
    "Config": "lstm_jax.config",
    "load_config": "lstm_jax.config",
    "config_from_dict": "lstm_jax.config",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lstm_jax' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BPTTGrads",
    "Bidirectional",
    "Cell",
    "Config",
    "DenseParams",
    "Dropout",
    "GRUParams",
    "LSTMParams",
    "LSTMState",
    "LSTMVariantParams",
    "LSTM_GATE_ORDER",
    "LoadedRun",
    "RNNParams",
    "article_lstm_step",
    "autodiff_bptt",
    "catalog",
    "config_from_dict",
    "dense",
    "fit",
    "gru_bptt",
    "gru_cell",
    "gru_step",
    "head",
    "init_dense",
    "init_gru",
    "init_layers",
    "init_lstm",
    "init_rnn",
    "initializer",
    "load_config",
    "load_run",
    "lstm_bptt",
    "lstm_cell",
    "lstm_from_article",
    "lstm_step",
    "lstm_to_article",
    "manual_bptt",
    "model_loss",
    "rnn_bptt",
    "rnn_cell",
    "rnn_step",
    "sequence_loss",
    "step_loss",
    "time_weights",
    "unroll",
    "unroll_layers",
    "valid_steps",
]
