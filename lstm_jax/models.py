r"""Sequence models: an optional input layer, stacked recurrent layers (RNN, LSTM, GRU) from
:mod:`lstm_jax.unroll`, then the article's head.

.. math::
   h^{(0)}_t = E x_t \;(+\, e), \qquad h^{(l)}_t = \mathrm{cell}_l(h^{(l)}_{t-1}, h^{(l-1)}_t), \qquad
   o_t = V h^{(L)}_t + c

The input layer is ``"dense"`` (affine, :math:`E x_t + e`), ``"embedding"`` (linear, no bias: on
one-hot symbols :math:`E x_t` is column :math:`k` of :math:`E`, a lookup table as in ``nn.Embed``)
or ``"none"`` (:math:`h^{(0)}_t = x_t`; the first layer's ``w_ih`` then plays that role).

Many-to-many models return logits for every step, ``(B, T, N)``; many-to-one models apply the
head to the final carry of the last layer (each sequence's last valid step; for a bidirectional
layer ``[h_fwd(T); h_bwd(1)]``), ``(B, N)``. The first layer's ``w_ih`` is the input layer: on
one-hot inputs it is exactly an embedding table (``x W_ihᵀ`` picks a column).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import _checks, registry
from lstm_jax.cells import Cell, DenseParams, dense
from lstm_jax.dropout import Dropout
from lstm_jax.init import init_dense, init_layers, layer_output_size
from lstm_jax.registry import CELLS
from lstm_jax.unroll import Bidirectional, unroll_layers

Array = jax.Array

__all__ = ["CELLS", "DTYPES", "INPUT_LAYERS", "ModelParams", "ModelSpec", "apply_model", "get_cell", "init_model"]


INPUT_LAYERS = ("none", "dense", "embedding")

#: Parameter dtypes a config can name.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


class ModelParams(NamedTuple):
    """All trainable arrays of a model."""

    layers: tuple  # per layer: the cell's params (RNNParams, LSTMParams, LSTMVariantParams, GRUParams) or Bidirectional
    head: DenseParams  # V (N, D or 2D; P or 2P with an LSTM projection), c (N,)
    input: DenseParams | None = None  # E (F, M), e (F,) or None; None: no input layer


class ModelSpec(NamedTuple):
    """The static (non-array) description a model needs to run: hashable, so jit can close over it."""

    cell: str = "lstm"  # a name in lstm_jax.registry.CELLS: "lstm", "rnn", "gru"
    activation: str = "tanh"  # the RNN's f
    proj_size: int | None = None  # the LSTM's projection: h has proj_size units (lstm_jax.cells.lstm_cell)
    peepholes: bool = False  # the LSTM's peepholes
    layer_norm: bool = False  # the LSTM's layer normalisation
    many_to_one: bool = False
    unroll: int | None = None  # lax.scan unroll factor; None: tuned per backend
    impl: str = "auto"  # the unroll's implementation (lstm_jax.unroll.IMPLS)
    remat: str | int | None = None  # None, "step", "sqrt" or a chunk length
    truncate: int | None = None  # truncated BPTT chunk length
    compute_dtype: str | None = None  # matmul operand dtype on the fast path (e.g. "bfloat16")
    dropout: Dropout = Dropout()  # regularisers' rates (lstm_jax.dropout); used when apply_model trains


#: The fields of :class:`ModelSpec` that are a cell's options: those of :data:`lstm_jax.registry.CELL_TYPES`.
CELL_OPTIONS: tuple[str, ...] = registry.OPTIONS


def cell_options(spec: ModelSpec) -> dict[str, Any]:
    """``{option: value}`` of the cell options in ``spec`` (each cell reads its own: :func:`lstm_jax.registry.key_users`)."""
    return {name: getattr(spec, name) for name in CELL_OPTIONS}


def get_cell(spec: ModelSpec) -> Cell:
    """The :class:`~lstm_jax.cells.Cell` of ``spec`` (:func:`lstm_jax.registry.make_cell`)."""
    return registry.make_cell(spec.cell, **cell_options(spec))


def init_model(
    key: Array,
    spec: ModelSpec,
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    input_layer: str = "none",
    input_features: int = 32,
    dtype=jnp.float32,
    **cell_init: Any,
) -> ModelParams:
    """Parameters for :func:`apply_model`; ``cell_init`` goes to the cell's initialiser (``init_lstm``,
    ``init_rnn``, ``init_gru``: ``forget_bias``, ``recurrent_init``, ``recurrent_scale``, ``input_init``),
    without the cell-specific options that cell does not read (:func:`lstm_jax.registry.init_options`).
    The cell's options that shape its parameters (the LSTM's ``proj_size``, ``peepholes``, ``layer_norm``)
    come from ``spec``.

    ``input_layer`` is one of :data:`INPUT_LAYERS`; with ``"dense"`` or ``"embedding"`` the first
    recurrent layer reads ``input_features`` features instead of ``input_size``.
    """
    get_cell(spec)
    for name in CELL_OPTIONS:
        if name in cell_init:
            raise ValueError(f"{name}: expected it in the ModelSpec (spec.{name}), got it as an init keyword")
    _checks.check_key(key)
    _checks.check_choice("input_layer", input_layer, INPUT_LAYERS)
    _checks.check_int("input_features", input_features, 1)
    k_layers, k_head, k_input = jax.random.split(key, 3)
    embed = None
    if input_layer != "none":
        embed = init_dense(k_input, input_size, input_features, use_bias=input_layer == "dense", dtype=dtype)
        input_size = input_features
    init_fn = registry.cell_type(spec.cell).init
    cell_init = registry.init_options(spec.cell, {**cell_options(spec), **cell_init})
    layers = init_layers(
        k_layers, init_fn, input_size, hidden_size, num_layers, bidirectional=bidirectional, dtype=dtype, **cell_init
    )
    return ModelParams(layers, init_dense(k_head, layer_output_size(layers[-1]), output_size, dtype=dtype), embed)


def _final_h(cell: Cell, carry) -> Array:
    """The hidden state of a layer's final carry (``cell.kernel.hidden``: ``h`` of an LSTM, the carry of an RNN)."""
    if isinstance(carry, Bidirectional):
        return jnp.concatenate([_final_h(cell, carry.forward), _final_h(cell, carry.backward)], axis=-1)
    return cell.kernel.hidden(carry)


def apply_model(
    spec: ModelSpec,
    params: ModelParams,
    inputs: Array,
    lengths: Array | None = None,
    *,
    key: Array | None = None,
    training: bool = False,
) -> Array:
    """Logits: ``(B, T, N)`` for a many-to-many model, ``(B, N)`` for a many-to-one model.

    Args:
      spec: the static description.
      params: from :func:`init_model`.
      inputs: ``(B, T, M)`` (any leading batch dimensions).
      lengths: optional ``(B,)`` valid steps per sequence (right padding).
      key, training: the dropout masks' key, and whether to draw them (``spec.dropout``; evaluation:
        none, zoneout by its expectation). See :func:`lstm_jax.unroll.unroll_layers`.
    """
    many_to_one = _checks.check_bool("spec.many_to_one", spec.many_to_one)
    if params.input is not None:
        inputs = dense(params.input, inputs)
    cell = get_cell(spec)
    finals, hs = unroll_layers(
        cell,
        params.layers,
        inputs,
        lengths=lengths,
        unroll=spec.unroll,
        impl=spec.impl,
        remat=spec.remat,
        truncate=spec.truncate,
        compute_dtype=spec.compute_dtype,
        dropout=spec.dropout,
        key=key,
        training=training,
    )
    return dense(params.head, _final_h(cell, finals[-1]) if many_to_one else hs)
