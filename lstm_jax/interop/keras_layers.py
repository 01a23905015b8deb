r"""Keras 3 ``LSTM``, ``GRU`` and ``SimpleRNN`` layers (and ``RNN`` over their cells, ``Bidirectional``)
to and from our parameters, and a whole model as a ``keras.Model`` and back (:func:`to_keras_model`,
:func:`from_keras_model`).

Keras keeps one layer's weights as ``[kernel, recurrent_kernel, bias]`` (``layer.get_weights()``; no
``bias`` with ``use_bias=False``), gate blocks along the *columns*; we keep them along the rows:

=====================  ================================  =====================================================
Keras (``D`` units)    shape                             ours
=====================  ================================  =====================================================
``kernel``             ``(M, G·D)``                      ``w_ih = kernel.T`` ``(G·D, M)``, gate blocks reordered
``recurrent_kernel``   ``(D, G·D)``                      ``w_hh = recurrent_kernel.T`` ``(G·D, D)``, reordered
``bias`` (LSTM, RNN)   ``(G·D,)``                        ``b`` (zeros with ``use_bias=False``)
``bias`` (GRU)         ``(2, 3D)``: input, recurrent     ``b = b_in + [b_rec,r; b_rec,z; 0]``, ``b_hn = b_rec,n``
=====================  ================================  =====================================================

Gate orders (read in ``keras/src/layers/rnn/{lstm,gru}.py``): the LSTM's ``i, f, c, o`` is ours
(``c`` is our ``g``); the GRU's ``z, r, h`` is ours ``u, r, n`` reordered to ``r, u, n``, and Keras's update
rule :math:`h_t = z \odot h_{t-1} + (1 - z) \odot \tilde h` is ours with :math:`z = u`. Only the GRU with
``reset_after=True`` (Keras's default, cuDNN's convention) is ours: with ``reset_after=False`` the reset gate
multiplies :math:`h_{t-1}` *before* the matmul, :math:`W_{hn} (r \odot h_{t-1})`, which no re-arrangement
of our parameters computes, and it is refused. The LSTM and the GRU must keep ``activation="tanh"`` and
``recurrent_activation="sigmoid"``; ``SimpleRNN``'s ``activation`` is our RNN's ``f`` (tanh, relu or sigmoid:
:func:`keras_cell` gives our cell of a layer).

Export puts the GRU's summed bias back as ``b_in = b`` and ``b_rec = [0; 0; b_hn]`` (same outputs, and
ours -> Keras -> ours is bit-exact). Carries: Keras's LSTM states are ``[h, c]`` like our
:class:`~lstm_jax.cells.LSTMState`; a ``Bidirectional`` layer's are ``[h_fwd, c_fwd, h_bwd, c_bwd]``.
Masks: Keras masks steps (``mask=`` of shape ``(B, T)``), we take ``lengths``; with right padding they
agree (``zero_output_for_mask=True`` makes Keras's padded outputs zero, as ours are).

Keras is imported only inside these functions, with ``KERAS_BACKEND`` defaulting to ``"jax"``; reading and
writing weights works on any backend.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import jax
import numpy as np

from lstm_jax import _checks
from lstm_jax.cells import (
    Cell,
    DenseParams,
    GRUParams,
    LSTMParams,
    LSTMVariantParams,
    RNNParams,
    gru_cell,
    lstm_cell,
    rnn_cell,
)
from lstm_jax.interop._common import (
    OUR_GATES,
    TensorReader,
    as_jax,
    cell_kind,
    check_plain,
    layer_stack,
    reorder_gates,
    to_numpy,
)
from lstm_jax.models import ModelParams, ModelSpec
from lstm_jax.unroll import Bidirectional

__all__ = ["KERAS_GATES", "from_keras", "from_keras_model", "keras_cell", "to_keras", "to_keras_model"]

#: Keras's gate order per cell kind, in our gate names (columns of ``kernel``, ``recurrent_kernel`` and ``bias``).
KERAS_GATES: dict[str, tuple[str, ...]] = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("z", "r", "n")}

#: Keras's cell class per cell kind (a layer's ``.cell``; ``keras.layers.RNN(LSTMCell(D))`` is an LSTM too).
_CELLS = {"rnn": "SimpleRNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}
#: The activations our cells have, by Keras's name.
_ACTIVATIONS = ("tanh", "sigmoid", "relu")


def _keras():
    """``keras``, imported on first use with the JAX backend unless ``KERAS_BACKEND`` says otherwise."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("lstm_jax.interop.keras_layers needs Keras 3: pip install keras") from error
    return keras


@contextlib.contextmanager
def _keras_numerics():
    """Keras's JAX backend broadcasts ``(B, D) + (D,)`` implicitly (its initialisers and cells): allow it, since
    a user's ``jax_numpy_rank_promotion="raise"`` (our test suite's) would stop Keras's own code, not ours."""
    with jax.numpy_rank_promotion("allow"):
        yield


# --------------------------------------------------------------------------------------------------------------
# Keras -> ours
# --------------------------------------------------------------------------------------------------------------


def _activation_name(keras, fn) -> str:
    """``"tanh"``, ``"sigmoid"``, ``"relu"`` for those Keras activations; else Keras's own name for ``fn``."""
    for name in _ACTIVATIONS:
        if fn is getattr(keras.activations, name):
            return name
    try:
        return str(keras.activations.serialize(fn))
    except Exception:  # noqa: BLE001 - any object: name it as Python does
        return repr(fn)


def _layer_kind(keras, layer, where: str) -> str:
    """The cell kind of a Keras recurrent layer (``LSTM``, ``GRU``, ``SimpleRNN``, or ``RNN`` over their cells),
    after refusing what our cells cannot compute (activations, ``reset_after=False``)."""
    cell = getattr(layer, "cell", None)
    kind = next((k for k, name in _CELLS.items() if isinstance(cell, getattr(keras.layers, name))), None)
    if not isinstance(layer, keras.layers.RNN) or kind is None:
        raise ValueError(
            f"{where}: expected a Keras LSTM, GRU, SimpleRNN, RNN over one of their cells, or Bidirectional of "
            f"one, got {type(layer).__name__}" + (f" over {type(cell).__name__}" if cell is not None else "")
        )
    if not layer.built:
        raise ValueError(f"{where}: expected a built layer (call it on an input or build() it first), got it unbuilt")
    activation = _activation_name(keras, cell.activation)
    if kind == "rnn":
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{where}.activation: expected one of {list(_ACTIVATIONS)} (our RNN's f), got {activation!r}"
            )
        return kind
    if activation != "tanh":
        raise ValueError(f"{where}.activation: expected 'tanh' (our {kind.upper()}'s), got {activation!r}")
    recurrent = _activation_name(keras, cell.recurrent_activation)
    if recurrent != "sigmoid":
        raise ValueError(f"{where}.recurrent_activation: expected 'sigmoid' (our gates'), got {recurrent!r}")
    if kind == "gru" and not cell.reset_after:
        raise ValueError(
            f"{where}.reset_after: expected True (our GRU, cuDNN's and PyTorch's: r ⊙ (W_hn h + b_hn)), got False "
            "(the reset gate before the matmul, W_hn (r ⊙ h), which our GRU cannot compute)"
        )
    return kind


def _rows(reader: TensorReader, name: str, meaning: str) -> int:
    """The first dimension of the 2-D tensor ``name`` (``M`` of ``kernel``, ``D`` of ``recurrent_kernel``)."""
    if not reader.has(name):
        reader.take(name, ())  # raises: missing, naming what the mapping has
    shape = np.shape(to_numpy(reader.tensors[name]))
    if len(shape) != 2:
        raise ValueError(f"{name}: expected 2 dimensions {meaning}, got shape {tuple(shape)}")
    return shape[0]


def _read_direction(reader: TensorReader, kind: str, prefix: str = ""):
    """One direction's parameters from ``{prefix}kernel``, ``{prefix}recurrent_kernel`` and ``{prefix}bias``."""
    G = len(OUR_GATES[kind])
    D = _rows(reader, f"{prefix}recurrent_kernel", f"(units, {G}·units)")
    M = _rows(reader, f"{prefix}kernel", f"(input features, {G}·units)")
    kernel = reader.take(f"{prefix}kernel", (M, G * D))
    recurrent = reader.take(f"{prefix}recurrent_kernel", (D, G * D))
    keras_order, ours = KERAS_GATES[kind], OUR_GATES[kind]
    w_ih = reorder_gates(kernel.T, keras_order, ours)
    w_hh = reorder_gates(recurrent.T, keras_order, ours)
    name, dtype = f"{prefix}bias", kernel.dtype
    if kind != "gru":
        b = reader.take(name, (G * D,)) if reader.has(name) else np.zeros((G * D,), dtype)
        params = (RNNParams if kind == "rnn" else LSTMParams)(w_ih, w_hh, reorder_gates(b, keras_order, ours))
    else:
        if reader.has(name) and np.shape(to_numpy(reader.tensors[name])) == (3 * D,):
            raise ValueError(
                f"{name}: expected shape (2, {3 * D}) (a GRU with reset_after=True), got ({3 * D},): a GRU with "
                "reset_after=False, whose reset gate acts before the matmul, W_hn (r ⊙ h), which our GRU cannot compute"
            )
        bias = reader.take(name, (2, 3 * D)) if reader.has(name) else np.zeros((2, 3 * D), dtype)
        b_in, b_rec = (reorder_gates(row, keras_order, ours) for row in bias)
        b = b_in + np.concatenate([b_rec[: 2 * D], np.zeros((D,), dtype)])
        params = GRUParams(w_ih, w_hh, b, b_rec[2 * D :])
    return type(params)(*(as_jax(x) for x in params))


def _layer_tensors(layer) -> dict:
    """``{"kernel", "recurrent_kernel"[, "bias"]}`` of a built recurrent layer's cell."""
    cell = layer.cell
    tensors = {"kernel": cell.kernel, "recurrent_kernel": cell.recurrent_kernel}
    if cell.bias is not None:
        tensors["bias"] = cell.bias
    return {name: getattr(v, "value", v) for name, v in tensors.items()}  # the backend's array of each variable


def _from_layer(keras, layer, where: str, cell: str | None):
    """One Keras layer (a recurrent one or a ``Bidirectional``) as our params or a ``Bidirectional`` pair."""
    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode != "concat":
            raise ValueError(
                f"{where}.merge_mode: expected 'concat' (our Bidirectional layers concatenate [h_fwd; h_bwd]), "
                f"got {layer.merge_mode!r}"
            )
        forward, backward = layer.forward_layer, layer.backward_layer
        kinds = [
            _layer_kind(keras, forward, f"{where}.forward_layer"),
            _layer_kind(keras, backward, f"{where}.backward_layer"),
        ]
        if forward.go_backwards or not backward.go_backwards:
            raise ValueError(
                f"{where}: expected go_backwards False on the forward layer and True on the backward layer, got "
                f"{forward.go_backwards} and {backward.go_backwards}"
            )
        if kinds[0] != kinds[1] or (cell is not None and kinds[0] != cell):
            raise ValueError(f"{where}: expected one cell kind {cell or kinds[0]!r} in both directions, got {kinds}")
        tensors = {
            f"{d}/{k}": v
            for d, sub in (("forward", forward), ("backward", backward))
            for k, v in _layer_tensors(sub).items()
        }
        reader = TensorReader(tensors, f"the weights of Keras layer {layer.name!r}")
        params = Bidirectional(
            _read_direction(reader, kinds[0], "forward/"), _read_direction(reader, kinds[0], "backward/")
        )
        reader.finish()
        return params
    kind = _layer_kind(keras, layer, where)
    if cell is not None and kind != cell:
        raise ValueError(f"cell: expected the kind of {where} ({kind!r}), got {cell!r}")
    if layer.go_backwards:
        raise ValueError(
            f"{where}.go_backwards: expected False (a layer on its own), got True; its weights are a cell's like any "
            f"other: from_keras(layer.get_weights(), cell={kind!r}) and unroll(..., reverse=True)"
        )
    reader = TensorReader(_layer_tensors(layer), f"the weights of Keras layer {layer.name!r}")
    params = _read_direction(reader, kind)
    reader.finish()
    return params


def _from_weights(weights: Sequence, cell: str | None):
    """Our params from ``layer.get_weights()`` of a layer of kind ``cell`` (2 or 3 arrays; 4 or 6: Bidirectional)."""
    if cell is None:
        raise ValueError(
            "cell: expected 'rnn', 'lstm' or 'gru' with a list of weight arrays (which does not say which), got None"
        )
    _checks.check_choice("cell", cell, tuple(OUR_GATES))
    names = ("kernel", "recurrent_kernel", "bias")
    if len(weights) in (2, 3):
        tensors = dict(zip(names, weights))
        prefixes = ("",)
    elif len(weights) in (4, 6):
        half = len(weights) // 2
        tensors = {f"forward/{n}": w for n, w in zip(names, weights[:half])}
        tensors.update({f"backward/{n}": w for n, w in zip(names, weights[half:])})
        prefixes = ("forward/", "backward/")
    else:
        raise ValueError(
            "weights: expected the list get_weights() returns: [kernel, recurrent_kernel, bias] (2 arrays without "
            f"bias; twice that for a Bidirectional layer), got {len(weights)} arrays"
        )
    reader = TensorReader(tensors, "the Keras weights list (kernel, recurrent_kernel[, bias] per direction)")
    directions = [_read_direction(reader, cell, prefix) for prefix in prefixes]
    reader.finish()
    return directions[0] if len(directions) == 1 else Bidirectional(*directions)


def _recurrent_layers(keras, model) -> list:
    """The layers of a ``keras.Sequential`` (or any model) or a list of layers, all recurrent."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for k, layer in enumerate(layers):
        if not isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            raise ValueError(
                f"layers[{k}] ({layer.name!r}): expected a recurrent layer (from_keras converts a stack of LSTM, GRU, "
                f"SimpleRNN or Bidirectional layers; from_keras_model reads a whole model), got {type(layer).__name__}"
            )
    return layers


def from_keras(layer_or_weights, *, cell: str | None = None):
    r"""Our parameters from a Keras 3 recurrent layer, its weights, or a stack of layers.

    ========================================================  ======================================================
    argument                                                  returns
    ========================================================  ======================================================
    a built ``LSTM`` / ``GRU`` / ``SimpleRNN`` (or ``RNN``     :class:`~lstm_jax.cells.LSTMParams` /
    over ``LSTMCell`` / ``GRUCell`` / ``SimpleRNNCell``)       :class:`~lstm_jax.cells.GRUParams` / ``RNNParams``
    a ``Bidirectional`` layer (``merge_mode="concat"``)        :class:`~lstm_jax.unroll.Bidirectional` of two
    ``layer.get_weights()`` (a list of 2, 3, 4 or 6 arrays)    as for the layer; ``cell`` says its kind
    a ``keras.Sequential`` or a list of such layers            a stack, as :func:`lstm_jax.init.init_layers` builds
    ========================================================  ======================================================

    The mapping (module docstring): ``w_ih = kernel.T``, ``w_hh = recurrent_kernel.T`` with the gate blocks
    reordered (LSTM ``i,f,c,o`` = ours; GRU ``z,r,h`` -> ``r,u,n``), ``b = bias`` (zeros with
    ``use_bias=False``); the GRU's ``(2, 3D)`` bias gives ``b = b_in + [b_rec,r; b_rec,z; 0]`` and
    ``b_hn = b_rec,n``. Arrays keep Keras's dtype. Run a ``SimpleRNN`` with our cell of the same activation:
    :func:`keras_cell`.

    Args:
      layer_or_weights: a Keras layer, a list of weight arrays, or a stack of layers (see the table).
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"``: needed with a list of arrays; with a layer, checked against it.

    Raises:
      ValueError: naming the tensor or the layer option that does not fit: a wrong shape or dtype, a
        GRU with ``reset_after=False``, an LSTM or GRU activation other than tanh / sigmoid, a SimpleRNN
        activation we do not have, a ``merge_mode`` other than ``"concat"``, a non-recurrent layer in a stack.
    """
    if cell is not None:
        _checks.check_choice("cell", cell, tuple(OUR_GATES))
    keras = _keras()
    if isinstance(layer_or_weights, keras.layers.Layer) and not isinstance(layer_or_weights, keras.Model):
        return _from_layer(keras, layer_or_weights, f"layer {layer_or_weights.name!r}", cell)
    if isinstance(layer_or_weights, keras.Model):
        layers = _recurrent_layers(keras, layer_or_weights)
    elif (
        isinstance(layer_or_weights, (list, tuple))
        and layer_or_weights
        and all(isinstance(x, keras.layers.Layer) for x in layer_or_weights)
    ):
        layers = list(layer_or_weights)
    elif isinstance(layer_or_weights, (list, tuple)):
        return _from_weights(layer_or_weights, cell)
    else:
        raise ValueError(
            "layer_or_weights: expected a Keras recurrent layer, a list of its weight arrays (get_weights()), or a "
            f"Sequential / list of recurrent layers, got {_checks.describe(layer_or_weights)}"
        )
    if not layers:
        raise ValueError("layer_or_weights: expected at least one recurrent layer, got none")
    converted = tuple(
        _from_layer(keras, layer, f"layers[{k}] ({layer.name!r})", cell) for k, layer in enumerate(layers)
    )
    layer_stack(converted)  # one cell kind, every layer (not) bidirectional
    return converted


def keras_cell(layer) -> Cell:
    """Our :class:`~lstm_jax.cells.Cell` that computes what a Keras recurrent layer computes (its kind, and a
    ``SimpleRNN``'s activation): ``unroll(keras_cell(layer), from_keras(layer), xs)`` is ``layer(xs)``."""
    keras = _keras()
    where = f"layer {getattr(layer, 'name', '?')!r}"
    if isinstance(layer, keras.layers.Bidirectional):
        layer = layer.forward_layer
    kind = _layer_kind(keras, layer, where)
    if kind == "rnn":
        return rnn_cell(_activation_name(keras, layer.cell.activation))
    return lstm_cell() if kind == "lstm" else gru_cell()


# --------------------------------------------------------------------------------------------------------------
# ours -> Keras
# --------------------------------------------------------------------------------------------------------------


def _check_zero(x: np.ndarray, name: str) -> None:
    if np.any(x != 0):
        raise ValueError(f"{name}: expected zeros for a Keras layer with use_bias=False, got non-zero entries")


def _direction_weights(params, use_bias: bool, where: str) -> list[np.ndarray]:
    """``[kernel, recurrent_kernel(, bias)]`` of one direction's parameters."""
    kind = cell_kind(params)
    check_plain(params, "Keras")
    ours, keras_order = OUR_GATES[kind], KERAS_GATES[kind]
    kernel = np.ascontiguousarray(reorder_gates(to_numpy(params.w_ih), ours, keras_order).T)
    recurrent = np.ascontiguousarray(reorder_gates(to_numpy(params.w_hh), ours, keras_order).T)
    b = to_numpy(params.b)
    if kind == "gru":
        b_hn = to_numpy(params.b_hn)
        D = b_hn.shape[0]
        bias = np.stack(
            [
                reorder_gates(b, ours, keras_order),
                reorder_gates(np.concatenate([np.zeros((2 * D,), b_hn.dtype), b_hn]), ours, keras_order),
            ]
        )
        if not use_bias:
            _check_zero(b, f"{where}.b")
            _check_zero(b_hn, f"{where}.b_hn")
    else:
        bias = reorder_gates(b, ours, keras_order)
        if not use_bias:
            _check_zero(b, f"{where}.b")
    return [kernel, recurrent, bias] if use_bias else [kernel, recurrent]


def _one_layer(layer) -> bool:
    return isinstance(layer, (Bidirectional, RNNParams, LSTMParams, LSTMVariantParams, GRUParams))


def to_keras(params, *, use_bias: bool = True) -> list:
    r"""The list of NumPy arrays ``layer.set_weights`` takes, from our parameters.

    ``params`` is one cell's parameters (-> ``[kernel, recurrent_kernel, bias]`` for a Keras ``LSTM``, ``GRU``
    with ``reset_after=True``, or ``SimpleRNN`` of ``D`` units), a :class:`~lstm_jax.unroll.Bidirectional`
    pair (-> the six arrays of ``Bidirectional(LSTM(D))``: forward's, then backward's), or a stack as
    :func:`lstm_jax.init.init_layers` builds it (-> a list with one such list per layer).

    ``kernel = w_ih.T``, ``recurrent_kernel = w_hh.T`` with the gate blocks in Keras's order, ``bias = b``;
    the GRU's bias is ``(2, 3D)``: ``[b; [0, 0, b_hn]]`` in Keras's ``z, r, h`` order. Arrays keep our dtype.

    Args:
      params: as above.
      use_bias: ``False`` for a layer built with ``use_bias=False``: no bias arrays (ours must then be zero).

    Raises:
      ValueError: an LSTM with a projection, peepholes or layer normalisation (Keras has none), or non-zero
        biases with ``use_bias=False``.
    """
    use_bias = _checks.check_bool("use_bias", use_bias)
    if isinstance(params, Bidirectional):
        return [
            *_direction_weights(params.forward, use_bias, "params.forward"),
            *_direction_weights(params.backward, use_bias, "params.backward"),
        ]
    if _one_layer(params):
        return _direction_weights(params, use_bias, "params")
    if not isinstance(params, (tuple, list)):
        raise ValueError(
            "params: expected RNNParams, LSTMParams, GRUParams, a Bidirectional pair of them or a stack (init_layers), "
            f"got {_checks.describe(params)}"
        )
    layer_stack(params)  # a stack: one kind, checked
    return [to_keras(layer, use_bias=use_bias) for layer in params]


#: Initialisers of the layers :func:`to_keras_model` builds and fills at once: Keras's defaults (Glorot, an
#: orthogonal QR) would compile and run for weights overwritten the next line; :func:`_default_initializers`
#: puts the defaults back on the layers afterwards, so the model's config is Keras's usual one.
_ZEROS = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}


def _default_initializers(keras, layer) -> None:
    """Keras's default initialisers on a layer built with :data:`_ZEROS` (its config, e.g. for ``clone_model``)."""
    for sub in (
        (layer.forward_layer, layer.backward_layer) if isinstance(layer, keras.layers.Bidirectional) else (layer,)
    ):
        target = getattr(sub, "cell", sub)  # a recurrent layer's config reads its cell's initialisers
        target.kernel_initializer = keras.initializers.get("glorot_uniform")
        if hasattr(target, "recurrent_initializer"):
            target.recurrent_initializer = keras.initializers.get("orthogonal")


def _keras_layer(keras, kind: str, units: int, activation: str, return_sequences: bool, dtype: str, name: str):
    # zero_output_for_mask as Bidirectional sets it: zeros at padded steps (ours) for sequences; the last output
    # (each sequence's last valid step's, held through the padding) for many-to-one.
    options = dict(return_sequences=return_sequences, zero_output_for_mask=return_sequences, dtype=dtype, name=name)
    options.update(_ZEROS)
    if kind == "rnn":
        return keras.layers.SimpleRNN(units, activation=activation, **options)
    if kind == "gru":
        return keras.layers.GRU(units, reset_after=True, **options)
    return keras.layers.LSTM(units, **options)


def to_keras_model(params, spec, input_size: int, *, mask_value: float | None = None):
    r"""Our whole model (:func:`lstm_jax.models.apply_model`) as a ``keras.Model`` that computes the same logits.

    The model: ``keras.Input((None, input_size))``, then (if the model has an input layer) a ``Dense`` named
    ``"input_layer"`` (no bias for an embedding), the recurrent stack (``LSTM`` / ``GRU`` / ``SimpleRNN`` with
    ``spec.activation``, each in a ``Bidirectional`` when ours is; the last with ``return_sequences=False``
    when ``spec.many_to_one``), and the head ``Dense`` named ``"head"`` with no activation: logits ``(B, T, N)``
    or ``(B, N)``, exactly what ``apply_model(spec, params, x)`` returns (apply the task's softmax/sigmoid
    yourself, as our losses do). Dropout and the run's numerics options (``impl``, ``remat``,
    ``compute_dtype``, ...) are not carried over: the Keras model is the evaluation-time model.

    Args:
      params: :class:`~lstm_jax.models.ModelParams`.
      spec: its :class:`~lstm_jax.models.ModelSpec`.
      input_size: the features of ``x`` (``M``).
      mask_value: ``None`` (no mask), or a value such that steps whose features all equal it are padding:
        a ``keras.layers.Masking`` first, the counterpart of our ``lengths`` for right-padded batches.

    Raises:
      ValueError: a cell Keras lacks (an LSTM projection, peepholes, layer normalisation), a spec whose cell
        is not the parameters', or an ``input_size`` the first layer does not read.
    """
    if not isinstance(params, ModelParams):
        raise ValueError(f"params: expected ModelParams, got {_checks.describe(params)}")
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec: expected ModelSpec, got {_checks.describe(spec)}")
    input_size = _checks.check_int("input_size", input_size, 1)
    for option in ("proj_size", "peepholes", "layer_norm"):
        if getattr(spec, option):
            raise ValueError(f"spec.{option}: expected it off (Keras's LSTM has none), got {getattr(spec, option)!r}")
    kind, num_layers, bidirectional = layer_stack(params.layers)
    if kind != spec.cell:
        raise ValueError(f"spec.cell: expected the parameters' cell {kind!r}, got {spec.cell!r}")
    if kind == "rnn":
        _checks.check_choice("spec.activation", spec.activation, _ACTIVATIONS)
    many_to_one = _checks.check_bool("spec.many_to_one", spec.many_to_one)
    first = params.input if params.input is not None else params.layers[0]
    first_w = first.w if isinstance(first, DenseParams) else (first.forward if bidirectional else first).w_ih
    if first_w.shape[1] != input_size:
        raise ValueError(
            f"input_size: expected {first_w.shape[1]} (what the model's first layer reads), got {input_size}"
        )
    dtype = str(np.dtype(params.head.w.dtype))
    keras = _keras()
    with _keras_numerics():
        inputs = keras.Input(shape=(None, input_size), dtype=dtype, name="inputs")
        x = inputs
        if mask_value is not None:
            x = keras.layers.Masking(mask_value=mask_value, dtype=dtype, name="masking")(x)
        if params.input is not None:
            x = _dense(keras, params.input, x, "input_layer", dtype)
        for k, layer in enumerate(params.layers):
            units = (layer.forward if bidirectional else layer).w_hh.shape[1]
            return_sequences = not (many_to_one and k == num_layers - 1)
            rnn = _keras_layer(keras, kind, units, spec.activation, return_sequences, dtype, f"{kind}_{k}")
            if bidirectional:
                rnn = keras.layers.Bidirectional(rnn, merge_mode="concat", dtype=dtype, name=f"bidirectional_{k}")
            x = rnn(x)
            rnn.set_weights(to_keras(layer))
            _default_initializers(keras, rnn)
        x = _dense(keras, params.head, x, "head", dtype)
        return keras.Model(inputs, x, name="lstm_jax_model")


def _dense(keras, params: DenseParams, x, name: str, dtype: str):
    """A Keras ``Dense`` with our ``V (N, F)``, ``c (N,)`` (``kernel = V.T``), applied to ``x``."""
    w = to_numpy(params.w)
    dense = keras.layers.Dense(
        w.shape[0], use_bias=params.b is not None, kernel_initializer="zeros", dtype=dtype, name=name
    )
    y = dense(x)
    dense.set_weights([np.ascontiguousarray(w.T)] + ([to_numpy(params.b)] if params.b is not None else []))
    _default_initializers(keras, dense)
    return y


def _dense_params(keras, layer, where: str) -> DenseParams:
    """Our ``DenseParams`` of a Keras ``Dense`` with no activation (``w = kernel.T``; ``b = None`` without bias)."""
    activation = _activation_name(keras, layer.activation)
    if activation != "linear":
        raise ValueError(
            f"{where}.activation: expected 'linear' (our model's layers are affine; apply_model returns logits), "
            f"got {activation!r}"
        )
    tensors = {"kernel": layer.kernel.value}
    if layer.bias is not None:
        tensors["bias"] = layer.bias.value
    reader = TensorReader(tensors, f"the weights of Keras layer {layer.name!r}")
    if np.ndim(to_numpy(tensors["kernel"])) != 2:
        raise ValueError(f"kernel: expected 2 dimensions (features in, units), got shape {np.shape(tensors['kernel'])}")
    F, N = np.shape(to_numpy(tensors["kernel"]))
    w = reader.take("kernel", (F, N))
    b = reader.take("bias", (N,)) if reader.has("bias") else None
    reader.finish()
    return DenseParams(as_jax(np.ascontiguousarray(w.T)), None if b is None else as_jax(b))


def from_keras_model(model) -> tuple[ModelParams, ModelSpec]:
    r"""Our model from a Keras model shaped as :func:`to_keras_model` builds it: ``(params, spec)`` such that
    ``apply_model(spec, params, x)`` is ``model(x)``.

    The model is a chain: an optional ``Masking`` (our ``lengths`` take its place), an optional ``Dense`` input
    layer (no activation; no bias: an embedding), recurrent layers as :func:`from_keras` reads them, and a
    ``Dense`` head with no activation (logits). ``spec`` has the cell, the RNN's activation and ``many_to_one``
    (the last recurrent layer's ``return_sequences=False``); its other fields are :class:`ModelSpec`'s defaults.

    Raises:
      ValueError: another chain of layers (their types listed), a ``Dense`` with an activation, or what
        :func:`from_keras` refuses.
    """
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise ValueError(f"model: expected a keras.Model, got {_checks.describe(model)}")
    layers = [layer for layer in model.layers if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Masking))]
    k, input_layer, recurrent = 0, None, []
    if layers and isinstance(layers[0], keras.layers.Dense):
        input_layer, k = layers[0], 1
    while k < len(layers) and isinstance(layers[k], (keras.layers.RNN, keras.layers.Bidirectional)):
        recurrent.append(layers[k])
        k += 1
    if not recurrent or k != len(layers) - 1 or not isinstance(layers[k], keras.layers.Dense):
        raise ValueError(
            "model.layers: expected [Masking], [Dense], recurrent layers, Dense (what to_keras_model builds), got "
            f"{[type(layer).__name__ for layer in model.layers]}"
        )
    stack = from_keras(recurrent)
    kind = layer_stack(stack)[0]
    last = recurrent[-1]
    last_inner = last.forward_layer if isinstance(last, keras.layers.Bidirectional) else last
    activation = _activation_name(keras, last_inner.cell.activation) if kind == "rnn" else "tanh"
    params = ModelParams(
        stack,
        _dense_params(keras, layers[-1], f"layer {layers[-1].name!r}"),
        None if input_layer is None else _dense_params(keras, input_layer, f"layer {input_layer.name!r}"),
    )
    return params, ModelSpec(cell=kind, activation=activation, many_to_one=not last_inner.return_sequences)
