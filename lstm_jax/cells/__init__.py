r"""One time step of each recurrent cell as pure functions: the simple RNN and the LSTM of the article
(§1.2, §2.2), the LSTM's options (projection, peepholes, layer normalisation) and the GRU.

One module per cell (:mod:`~lstm_jax.cells.rnn`, :mod:`~lstm_jax.cells.lstm` and its options
:mod:`~lstm_jax.cells.lstm_variants`, :mod:`~lstm_jax.cells.gru`), each holding its parameters, its
forward step and its hand-derived backward step (a :class:`Kernel`); :mod:`~lstm_jax.cells._base` holds
what they share. Every name is importable from here: ``from lstm_jax.cells import gru_cell, GRUParams``.
"""

from lstm_jax.cells._base import (
    ACTIVATIONS,
    OUTPUT_ACTIVATIONS,
    Cell,
    DenseParams,
    Kernel,
    StepGrads,
    add_bias,
    cell_from_kernel,
    check_carry,
    check_input,
    check_params,
    dense,
    extras,
    head,
    matmul,
    project_input,
    step,
    sum_outer,
    sum_rows,
)
from lstm_jax.cells.gru import GRU_CELL, GRU_GATE_ORDER, GRUParams, gru_cell, gru_grad_step, gru_step
from lstm_jax.cells.lstm import (
    LSTM_CELL,
    LSTM_GATE_ORDER,
    LSTMParams,
    LSTMState,
    lstm_activation_derivative,
    lstm_activations,
    lstm_gates,
    lstm_grad_step,
    lstm_step,
)
from lstm_jax.cells.lstm_variants import LAYER_NORM_EPS, LSTMVariantParams, lstm_cell
from lstm_jax.cells.rnn import DERIVATIVE_FROM_OUTPUT, RNN_CELLS, RNNParams, rnn_cell, rnn_grad_step, rnn_step

#: Every built-in cell object (the RNN once per activation).
BUILTIN_CELLS: tuple[Cell, ...] = (*RNN_CELLS.values(), LSTM_CELL, GRU_CELL)

__all__ = [
    "ACTIVATIONS",
    "BUILTIN_CELLS",
    "Cell",
    "DERIVATIVE_FROM_OUTPUT",
    "DenseParams",
    "GRUParams",
    "GRU_CELL",
    "GRU_GATE_ORDER",
    "Kernel",
    "LAYER_NORM_EPS",
    "LSTMParams",
    "LSTMState",
    "LSTMVariantParams",
    "LSTM_CELL",
    "LSTM_GATE_ORDER",
    "OUTPUT_ACTIVATIONS",
    "RNNParams",
    "RNN_CELLS",
    "StepGrads",
    "add_bias",
    "cell_from_kernel",
    "check_carry",
    "check_input",
    "check_params",
    "dense",
    "extras",
    "gru_cell",
    "gru_grad_step",
    "gru_step",
    "head",
    "lstm_activation_derivative",
    "lstm_activations",
    "lstm_cell",
    "lstm_gates",
    "lstm_grad_step",
    "lstm_step",
    "matmul",
    "project_input",
    "rnn_cell",
    "rnn_grad_step",
    "rnn_step",
    "step",
    "sum_outer",
    "sum_rows",
]
