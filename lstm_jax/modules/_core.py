r"""What the linen and the nnx modules share, free of either: the checked configuration of a stack, its
parameters as nested dicts, the carry in flax's order, flax's ``reverse``/``keep_order``, and the one
call of :func:`~lstm_jax.unroll.unroll` or :func:`~lstm_jax.unroll.unroll_layers` that does the work.

Parameters of a stack, in both frameworks (``variables["params"]`` in linen, ``nnx.state(module, nnx.Param)``
in nnx), are our layout (:mod:`lstm_jax.cells`: ``w_ih (G·D, M)``, ``w_hh (G·D, D)``, ``b (G·D,)``, the GRU's
``b_hn``, the LSTM options' fields), one dict per layer::

    {"layer_0": {"w_ih": ..., "w_hh": ..., "b": ...},                 # a unidirectional layer
     "layer_1": {"forward": {"w_ih": ...}, "backward": {"w_ih": ...}}}  # a bidirectional one

:func:`layers_from_tree` and :func:`tree_from_layers` convert to and from the tuple that
:func:`lstm_jax.init.init_layers` builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.cells import Cell, GRUParams, LSTMParams, LSTMState, LSTMVariantParams, RNNParams
from lstm_jax.dropout import Dropout
from lstm_jax.init import INITIALIZERS, layer_output_size
from lstm_jax.interop._common import layer_stack
from lstm_jax.registry import cell_type
from lstm_jax.unroll import Bidirectional, check_noise, check_options, unroll, unroll_layers

Array = jax.Array

#: The module attributes that hold dropout rates, as the fields of :class:`lstm_jax.dropout.Dropout` they fill.
RATES = {
    "dropout": "between_layers",
    "input_dropout": "input",
    "recurrent_dropout": "recurrent",
    "zoneout_h": "zoneout_h",
    "zoneout_c": "zoneout_c",
}
#: Parameter NamedTuple of each cell name (the LSTM's options give :class:`LSTMVariantParams`).
PARAMS = {"rnn": RNNParams, "lstm": LSTMParams, "gru": GRUParams}
#: What ``initial_carry`` of one layer (one direction) looks like, per cell, for messages.
CARRY_FORMS = {"lstm": "a pair (c, h) as flax's LSTM cells carry it (or an LSTMState(h, c))", "gru": "h", "rnn": "h"}


class Stack(NamedTuple):
    """A module's checked configuration: everything a call needs besides the parameters and the inputs
    (hashable: an nnx module keeps it as a static attribute)."""

    kind: str  # "lstm", "gru" or "rnn"
    cell: Cell
    features: int
    num_layers: int
    bidirectional: bool
    init_options: tuple  # (name, value) pairs for the registry entry's init (forget_bias, proj_size, input_init, ...)
    rates: Dropout
    unroll: Any
    impl: str
    remat: Any
    compute_dtype: Any


def check_stack(
    kind: str,
    *,
    features,
    num_layers,
    bidirectional,
    rates: Mapping[str, Any],
    impl,
    remat,
    unroll,
    compute_dtype,
    input_init,
    recurrent_init,
    cell_options: Mapping[str, Any],
) -> Stack:
    """Validate a module's attributes (each error names the attribute) and make its cell."""
    features = _checks.check_int("features", features, 1)
    num_layers = _checks.check_int("num_layers", num_layers, 1)
    bidirectional = _checks.check_bool("bidirectional", bidirectional)
    for name, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"{name}: expected a rate in [0, 1), got {rate!r}")
    if rates["dropout"] and num_layers == 1:
        raise ValueError(
            f"dropout: expected 0 with num_layers=1 (it drops the outputs between stacked layers, as PyTorch's "
            f"dropout; input_dropout drops the inputs), got {rates['dropout']}"
        )
    if rates["zoneout_c"] and kind != "lstm":
        raise ValueError(
            f"zoneout_c: expected 0 for the {kind} (no cell state; zoneout_h acts on h), got {rates['zoneout_c']}"
        )
    _checks.check_choice("input_init", input_init, INITIALIZERS)
    _checks.check_choice("recurrent_init", recurrent_init, INITIALIZERS)
    entry = cell_type(kind)
    cell = entry.make(**{name: cell_options[name] for name in entry.options})
    options = check_options(cell, unroll=unroll, impl=impl, remat=remat, compute_dtype=compute_dtype)
    dropout = Dropout(**{field: float(rates[name]) for name, field in RATES.items()})
    check_noise(cell, dropout, None, False, options)  # recurrent dropout and zoneout are not for the Pallas loops
    init_options = tuple((name, cell_options[name]) for name in entry.init_options + entry.layout_options)
    init_options += (("input_init", input_init), ("recurrent_init", recurrent_init))
    return Stack(
        kind, cell, features, num_layers, bidirectional, init_options, dropout, unroll, impl, remat, compute_dtype
    )


# ----------------------------------------------------------------------------------------------
# Parameters


def init_layer(stack: Stack, key: Array, input_size: int, dtype) -> Any:
    """One layer's parameters (a :class:`~lstm_jax.unroll.Bidirectional` pair when bidirectional), as
    :func:`lstm_jax.init.init_layers` draws a layer."""
    init, options = cell_type(stack.kind).init, dict(stack.init_options)
    if stack.bidirectional:
        k_f, k_b = jax.random.split(key)
        return Bidirectional(
            init(k_f, input_size, stack.features, dtype=dtype, **options),
            init(k_b, input_size, stack.features, dtype=dtype, **options),
        )
    return init(key, input_size, stack.features, dtype=dtype, **options)


def output_size(layer) -> int:
    """Features a layer outputs (the next layer's input size)."""
    return layer_output_size(layer)


def _cell_tree(params) -> dict:
    return {name: value for name, value in params._asdict().items() if value is not None}


def tree_from_layer(layer) -> dict:
    """One layer's parameters as the module stores them: a dict of arrays, or ``{"forward": ..., "backward": ...}``."""
    if isinstance(layer, Bidirectional):
        return {"forward": _cell_tree(layer.forward), "backward": _cell_tree(layer.backward)}
    return _cell_tree(layer)


def tree_from_layers(layers) -> dict:
    """``{"layer_0": ..., "layer_1": ...}`` of an :func:`~lstm_jax.init.init_layers` tuple (one cell kind, every
    layer bidirectional or none: :func:`lstm_jax.interop._common.layer_stack` checks)."""
    layer_stack(layers)
    return {f"layer_{k}": tree_from_layer(layer) for k, layer in enumerate(layers)}


def infer_kind(tree: Mapping[str, Any], where: str) -> str:
    """The cell of one direction's dict: ``b_hn`` makes a GRU; else the rows of ``w_hh`` per unit (1: RNN, 4: LSTM)."""
    if "b_hn" in tree:
        return "gru"
    if "w_hh" not in tree or not hasattr(tree["w_hh"], "shape") or len(tree["w_hh"].shape) != 2:
        raise ValueError(f"{where}.w_hh: expected a matrix (G·D, D), got {_checks.describe(tree.get('w_hh'))}")
    rows = tree["w_hh"].shape[0]
    units = tree["w_hr"].shape[1] if "w_hr" in tree else tree["w_hh"].shape[1]
    if rows == units:
        return "rnn"
    if rows == 4 * units:
        return "lstm"
    raise ValueError(
        f"{where}.w_hh: expected D or 4·D rows for D={units} (an RNN or an LSTM), got shape {tree['w_hh'].shape}"
    )


def _cell_params(kind: str | None, tree, where: str):
    if not isinstance(tree, Mapping):
        raise ValueError(f"{where}: expected a dict of arrays (w_ih, w_hh, b, ...), got {_checks.describe(tree)}")
    kind = infer_kind(tree, where) if kind is None else kind
    cls = PARAMS[kind]
    if kind == "lstm" and set(tree) - set(cls._fields):  # an option's fields: w_hr, p_i, ...
        cls = LSTMVariantParams
    missing = [name for name in PARAMS[kind]._fields if name not in tree]
    unknown = sorted(set(tree) - set(cls._fields))
    if missing or unknown:
        raise ValueError(
            f"{where}: expected the {kind}'s parameters {cls._fields}, got {tuple(tree)} "
            f"(missing {missing}, unknown {unknown})"
        )
    return cls(**{name: tree[name] for name in tree})


def layer_from_tree(kind: str | None, tree, bidirectional: bool | None, where: str):
    """One layer's parameters from the module's dict; ``kind``/``bidirectional`` ``None``: read from the dict."""
    if not isinstance(tree, Mapping):
        raise ValueError(f"{where}: expected a dict of parameters, got {_checks.describe(tree)}")
    if bidirectional is None:
        bidirectional = set(tree) == {"forward", "backward"}
    if bidirectional:
        if set(tree) != {"forward", "backward"}:
            raise ValueError(
                f"{where}: expected the keys ('forward', 'backward') of a bidirectional layer, got {tuple(tree)}"
            )
        return Bidirectional(
            _cell_params(kind, tree["forward"], f"{where}.forward"),
            _cell_params(kind, tree["backward"], f"{where}.backward"),
        )
    return _cell_params(kind, tree, where)


def layers_from_tree(tree: Mapping[str, Any], kind: str | None = None, bidirectional: bool | None = None) -> tuple:
    """The :func:`~lstm_jax.init.init_layers` tuple of ``{"layer_0": ..., ...}`` (``kind``: checked if given)."""
    if isinstance(tree, Mapping) and set(tree) == {"params"}:
        tree = tree["params"]
    if not isinstance(tree, Mapping) or not tree:
        raise ValueError(f"params: expected a dict {{'layer_0': ..., ...}}, got {_checks.describe(tree)}")
    names = [f"layer_{k}" for k in range(len(tree))]
    if sorted(tree) != sorted(names):
        raise ValueError(f"params: expected the keys {names}, got {sorted(tree)}")
    layers = tuple(layer_from_tree(kind, tree[name], bidirectional, f"params.{name}") for name in names)
    layer_stack(layers)  # one cell kind, every layer bidirectional or none
    return layers


# ----------------------------------------------------------------------------------------------
# The carry in flax's order


def _carry_in(kind: str, carry, dtype, where: str):
    """One direction's carry from flax's form: the LSTM's ``(c, h)`` (or an :class:`LSTMState`), else ``h``."""
    if kind == "lstm":
        if isinstance(carry, LSTMState):
            h, c = carry
        elif isinstance(carry, (tuple, list)) and len(carry) == 2:
            c, h = carry
        else:
            raise ValueError(f"{where}: expected {CARRY_FORMS[kind]}, got {_checks.describe(carry)}")
        return LSTMState(_as_carry_leaf(h, dtype, f"{where} h"), _as_carry_leaf(c, dtype, f"{where} c"))
    if isinstance(carry, (tuple, list)):
        raise ValueError(
            f"{where}: expected {CARRY_FORMS[kind]}, an array (*batch, features), got a {type(carry).__name__}"
        )
    return _as_carry_leaf(carry, dtype, where)


def _as_carry_leaf(x, dtype, where: str) -> Array:
    _checks.check_array(where, x)
    _checks.check_floating(where, x)
    return jnp.asarray(x, dtype)


def _carry_out(kind: str, carry):
    """One direction's carry in flax's form: the LSTM's ``(c, h)`` tuple, else ``h``."""
    return (carry.c, carry.h) if kind == "lstm" else carry


def carries_in(stack: Stack, initial_carry, dtype) -> tuple | None:
    """``initial_carry`` in flax's nesting (below) as one of our carries per layer, or ``None``.

    One layer: the carry of ``nn.RNN`` (the LSTM's ``(c, h)``; ``h``), or of ``nn.Bidirectional``
    (``(forward, backward)``); several layers: a tuple with one such carry per layer.
    """
    if initial_carry is None:
        return None
    per_layer = (initial_carry,) if stack.num_layers == 1 else initial_carry
    if not isinstance(per_layer, (tuple, list)) or len(per_layer) != stack.num_layers:
        raise ValueError(
            f"initial_carry: expected a tuple of {stack.num_layers} carries (one per layer), got {_checks.describe(per_layer)}"
        )
    carries = []
    for k, carry in enumerate(per_layer):
        where = "initial_carry" if stack.num_layers == 1 else f"initial_carry[{k}]"
        if stack.bidirectional:
            if not isinstance(carry, (tuple, list)) or len(carry) != 2:
                raise ValueError(
                    f"{where}: expected a pair (forward, backward) as nn.Bidirectional's, got {_checks.describe(carry)}"
                )
            carry = Bidirectional(
                _carry_in(stack.kind, carry[0], dtype, f"{where}[0]"),
                _carry_in(stack.kind, carry[1], dtype, f"{where}[1]"),
            )
        else:
            carry = _carry_in(stack.kind, carry, dtype, where)
        carries.append(carry)
    return tuple(carries)


def carries_out(stack: Stack, carries: tuple):
    """Our final carries (one per layer) in flax's nesting (:func:`carries_in`)."""
    out = []
    for carry in carries:
        if isinstance(carry, Bidirectional):
            out.append((_carry_out(stack.kind, carry.forward), _carry_out(stack.kind, carry.backward)))
        else:
            out.append(_carry_out(stack.kind, carry))
    return out[0] if stack.num_layers == 1 else tuple(out)


# ----------------------------------------------------------------------------------------------
# The call


def flip_sequences(x: Array, lengths: Array | None, time_major: bool) -> Array:
    """``x`` ``(*batch, T, F)`` (or ``(T, *batch, F)``) read backwards within each sequence's length; padded
    steps stay where they are (flax's ``flip_sequences`` permutes them among themselves: ours are zeros)."""
    axis = 0 if time_major else x.ndim - 2
    if lengths is None:
        return jnp.flip(x, axis=axis)
    steps = jnp.arange(x.shape[axis])
    lengths = lengths.astype(steps.dtype)
    if time_major:  # steps (T, 1...), lengths (1, *batch)
        steps = steps.reshape((-1,) + (1,) * lengths.ndim)
        lengths = lengths.reshape((1,) + lengths.shape)
    else:  # steps (1..., T), lengths (*batch, 1)
        steps = steps.reshape((1,) * lengths.ndim + (-1,))
        lengths = lengths[..., None]
    index = jnp.where(steps < lengths, lengths - 1 - steps, steps)
    return jnp.take_along_axis(x, index[..., None], axis=axis)


def check_inputs(inputs, seq_lengths, time_major: bool, dtype) -> tuple[Array, Array | None]:
    """Inputs floating with at least two dimensions, cast to the parameters' ``dtype`` (flax promotes them the
    same way); ``seq_lengths`` integers of the inputs' batch shape. Errors name the call's arguments."""
    _checks.check_array("inputs", inputs)
    _checks.check_floating("inputs", inputs)
    meaning = "(T, *batch, features)" if time_major else "(*batch, T, features)"
    _checks.check_ndim("inputs", inputs, 2, meaning)
    inputs = jnp.asarray(inputs, dtype)
    if seq_lengths is not None:
        _checks.check_array("seq_lengths", seq_lengths)
        if not jnp.issubdtype(jnp.result_type(seq_lengths), jnp.integer):
            raise ValueError(f"seq_lengths: expected an integer dtype, got {jnp.result_type(seq_lengths)}")
        batch_shape = inputs.shape[1:-1] if time_major else inputs.shape[:-2]
        _checks.check_shape("seq_lengths", seq_lengths, batch_shape, "(the batch shape of the inputs)")
    return inputs, seq_lengths


def apply(
    stack: Stack,
    layers: tuple,
    inputs: Array,
    *,
    initial_carry=None,
    seq_lengths: Array | None = None,
    return_carry: bool = False,
    time_major: bool = False,
    reverse: bool = False,
    keep_order: bool = False,
    key: Array | None = None,
    training: bool = False,
):
    """Run the stack as ``nn.RNN`` runs a cell (module docstrings): ``outputs`` or ``(carry, outputs)``."""
    return_carry = _checks.check_bool("return_carry", return_carry)
    time_major = _checks.check_bool("time_major", time_major)
    reverse = _checks.check_bool("reverse", reverse)
    keep_order = _checks.check_bool("keep_order", keep_order)
    if reverse and stack.bidirectional:
        raise ValueError(
            "reverse: expected False for a bidirectional module (its backward direction reads in reverse), got True"
        )
    dtype = jax.tree.leaves(layers)[0].dtype
    inputs, seq_lengths = check_inputs(inputs, seq_lengths, time_major, dtype)
    carry0 = carries_in(stack, initial_carry, dtype)
    options = dict(unroll=stack.unroll, impl=stack.impl, remat=stack.remat, compute_dtype=stack.compute_dtype)
    noise = dict(dropout=stack.rates, key=key, training=training)
    if stack.num_layers == 1 and not stack.bidirectional:  # the unroll runs backwards itself
        noise["dropout"] = stack.rates._replace(between_layers=0.0)
        carry, outputs = unroll(
            stack.cell,
            layers[0],
            inputs,
            None if carry0 is None else carry0[0],
            lengths=seq_lengths,
            time_major=time_major,
            reverse=reverse,
            **options,
            **noise,
        )
        carries = (carry,)
        if reverse and not keep_order:  # flax returns the outputs in the order they were computed
            outputs = flip_sequences(outputs, seq_lengths, time_major)
    else:
        if reverse:  # every layer backwards = the stack forwards on the sequences read backwards
            inputs = flip_sequences(inputs, seq_lengths, time_major)
        carries, outputs = unroll_layers(
            stack.cell, layers, inputs, carry0, lengths=seq_lengths, time_major=time_major, **options, **noise
        )
        if reverse and keep_order:
            outputs = flip_sequences(outputs, seq_lengths, time_major)
    return (carries_out(stack, carries), outputs) if return_carry else outputs


def training_mode(stack: Stack, deterministic) -> bool:
    """Whether to draw dropout masks: ``not deterministic``; ``deterministic`` may be ``None`` only when no rate is set."""
    if deterministic is None:
        if stack.rates.active:
            raise ValueError(
                "deterministic: expected True or False (as an attribute or a call argument) when a dropout or "
                "zoneout rate is set, got None"
            )
        return False
    return not _checks.check_bool("deterministic", deterministic)
