"""lstm_jax: the simple RNN and the LSTM in JAX, with BPTT by ``jax.grad`` and by hand.

The public API, importable from the package root::

    import lstm_jax as lj
    params = lj.init_lstm(jax.random.key(0), input_size=3, hidden_size=8)
    carry, hs = lj.unroll(lj.lstm_cell(), params, xs, lengths=lengths)
"""

from lstm_jax.article import article_lstm_step, lstm_from_article, lstm_to_article
from lstm_jax.bptt import BPTTGrads, autodiff_bptt, lstm_bptt, model_loss, rnn_bptt
from lstm_jax.cells import (
    LSTM_GATE_ORDER,
    Cell,
    DenseParams,
    LSTMParams,
    LSTMState,
    RNNParams,
    dense,
    head,
    lstm_cell,
    lstm_step,
    rnn_cell,
    rnn_step,
)
from lstm_jax.init import init_dense, init_layers, init_lstm, init_rnn, initializer
from lstm_jax.losses import sequence_loss, step_loss, time_weights
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers, valid_steps

__version__ = "0.1.0"

__all__ = [
    "BPTTGrads",
    "Bidirectional",
    "Cell",
    "DenseParams",
    "LSTMParams",
    "LSTMState",
    "LSTM_GATE_ORDER",
    "RNNParams",
    "article_lstm_step",
    "autodiff_bptt",
    "dense",
    "head",
    "init_dense",
    "init_layers",
    "init_lstm",
    "init_rnn",
    "initializer",
    "lstm_bptt",
    "lstm_cell",
    "lstm_from_article",
    "lstm_step",
    "lstm_to_article",
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
