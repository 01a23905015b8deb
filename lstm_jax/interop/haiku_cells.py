r"""Haiku ``hk.LSTM`` and ``hk.VanillaRNN`` parameters (and ``hk.DeepRNN`` stacks of them) to and from ours.

A transformed Haiku function keeps its parameters as ``{module path: {name: array}}``; the cores' modules
(read in ``haiku/_src/recurrent.py``):

=================================  ==========================================  ===========================================
Haiku                              shape                                       ours
=================================  ==========================================  ===========================================
``lstm/linear`` ``w``              ``(M + D, 4D)``: rows ``[x; h]``,           ``w_ih = w[:M].T``, ``w_hh = w[M:].T``,
                                   columns in gate order ``i, g, f, o``        rows reordered to ``i, f, g, o``
``lstm/linear`` ``b``              ``(4D,)``; :math:`\sigma(z_f + 1)` at run   ``b`` reordered, ``b_f = b_f + 1``
``vanilla_rnn/linear`` ``w, b``    ``(M, D)``, ``(D,)``: input to hidden       ``w_ih = w.T``; ``b = b + b_1``
``vanilla_rnn/linear_1`` ``w, b``  ``(D, D)``, ``(D,)`` (no ``b`` with          ``w_hh = w.T``
                                   ``double_bias=False``): hidden to hidden
=================================  ==========================================  ===========================================

``hk.LSTM`` adds 1 to the forget gate's pre-activation at every step (``jax.nn.sigmoid(f + 1)``, "as in
sonnet"); we keep no such constant, so it goes into our ``b_f`` on import and comes out on export. That sum
rounds: ours -> Haiku -> ours gives ``(b_f - 1) + 1``, equal to ``b_f`` to two roundings (at most 1.2e-7
in float32 for :math:`|b_f| < 1`), every other entry bit-exact. ``hk.VanillaRNN`` computes
:math:`h_t = \mathrm{ReLU}(\cdot)`: run it with ``rnn_cell("relu")``; its two biases are summed on import and
exported as ``b`` and zeros.

Not ours, and refused: ``hk.GRU`` applies the reset gate *before* the matmul, :math:`W_{ha}(r_t \odot h_{t-1})`
(and keeps :math:`z` for the candidate's share, our :math:`1 - u`): no re-arrangement of our GRU's parameters
computes it. Haiku has no bidirectional core; ``hk.deep_rnn_with_skip_connections`` feeds every layer the
input too (``concat[x, h^{(l-1)}]``) and outputs all layers' ``h``: its layers convert one by one, but do not
run as our stack. Carries: ``hk.LSTMState(hidden, cell)`` is our ``LSTMState(h, c)``.

Haiku is not needed to convert (the parameters are plain nested dicts); only the tests import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from lstm_jax import _checks
from lstm_jax.cells import ACTIVATIONS, LSTMParams, RNNParams
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
from lstm_jax.unroll import Bidirectional

__all__ = ["FORGET_OFFSET", "HAIKU_GATES", "HAIKU_NAMES", "from_haiku", "to_haiku"]

#: ``hk.LSTM``'s gate order (columns of its ``w`` and ``b``), in our gate names.
HAIKU_GATES: dict[str, tuple[str, ...]] = {"rnn": ("h",), "lstm": ("i", "g", "f", "o")}

#: The constant ``hk.LSTM`` adds to the forget gate's pre-activation at every step.
FORGET_OFFSET = 1.0

#: Haiku's default module name per cell kind (a second core of a kind in one transform is ``lstm_1``, ...).
HAIKU_NAMES: dict[str, str] = {"rnn": "vanilla_rnn", "lstm": "lstm"}

_GRU_REFUSED = (
    "hk.GRU applies its reset gate before the matmul, W_ha (r ⊙ h) (and gives the candidate the share z, our 1 - u): "
    "no re-arrangement of our GRU's parameters (r ⊙ (W_hn h + b_hn), PyTorch's, cuDNN's, Keras's reset_after=True, "
    "Equinox's) computes it"
)


def _forget_offset(D: int, dtype) -> np.ndarray:
    """``+1`` on our ``b_f`` block, zero elsewhere (our gate order), in ``dtype``."""
    offset = np.zeros((4, D), dtype)
    offset[OUR_GATES["lstm"].index("f")] = FORGET_OFFSET
    return offset.reshape(-1)


def _names(module_name, kind: str) -> tuple[list[str], bool]:
    """``(module names, one cell?)`` from ``module_name``: ``None`` (Haiku's default), a name, or a list of names."""
    if module_name is None:
        return [HAIKU_NAMES[kind]], True
    if isinstance(module_name, str):
        return [module_name], True
    if isinstance(module_name, Sequence) and module_name and all(isinstance(n, str) for n in module_name):
        return list(module_name), False
    raise ValueError(
        f"module_name: expected None, a module name such as {HAIKU_NAMES[kind]!r} or a list of them (a stack), "
        f"got {_checks.describe(module_name)}"
    )


def _flat(params, names: list[str]) -> dict:
    """``{"module/param": array}`` of the modules ``names`` and their submodules (Haiku's ``{module: {param: x}}``)."""
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected Haiku's {{module: {{name: array}}}} dict, got {_checks.describe(params)}")
    flat = {}
    for module, entries in params.items():
        if any(module == n or module.startswith(f"{n}/") for n in names):
            if not isinstance(entries, Mapping):
                raise ValueError(f"{module}: expected a dict of parameters, got {_checks.describe(entries)}")
            flat.update({f"{module}/{name}": x for name, x in entries.items()})
    return flat


def _shape(reader: TensorReader, name: str, ndim: int) -> tuple[int, ...]:
    if not reader.has(name):
        reader.take(name, ())  # raises: missing, naming what the modules hold
    shape = tuple(np.shape(to_numpy(reader.tensors[name])))
    if len(shape) != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {shape}")
    return shape


def _read_lstm(reader: TensorReader, name: str) -> LSTMParams:
    rows, cols = _shape(reader, f"{name}/linear/w", 2)
    D, M = cols // 4, rows - cols // 4
    if cols % 4 or M < 1:
        raise ValueError(f"{name}/linear/w: expected shape (M + D, 4D) with M >= 1, got {(rows, cols)}")
    w = reader.take(f"{name}/linear/w", (M + D, 4 * D))
    b = reader.take(f"{name}/linear/b", (4 * D,))
    theirs, ours = HAIKU_GATES["lstm"], OUR_GATES["lstm"]
    return LSTMParams(
        as_jax(reorder_gates(w[:M].T, theirs, ours)),
        as_jax(reorder_gates(w[M:].T, theirs, ours)),
        as_jax(reorder_gates(b, theirs, ours) + _forget_offset(D, b.dtype)),
    )


def _read_rnn(reader: TensorReader, name: str) -> RNNParams:
    M, D = _shape(reader, f"{name}/linear/w", 2)
    w_ih = reader.take(f"{name}/linear/w", (M, D))
    b = reader.take(f"{name}/linear/b", (D,))
    w_hh = reader.take(f"{name}/linear_1/w", (D, D))
    if reader.has(f"{name}/linear_1/b"):  # double_bias=True, Haiku's default
        b = b + reader.take(f"{name}/linear_1/b", (D,))
    return RNNParams(as_jax(w_ih.T), as_jax(w_hh.T), as_jax(b))


def from_haiku(params, *, cell: str, module_name: str | Sequence[str] | None = None):
    r"""Our parameters from a Haiku parameter dict (``transformed.init(...)``): one core's, or a stack's.

    Args:
      params: ``{module path: {name: array}}``, e.g. ``{"lstm/linear": {"w": ..., "b": ...}}``; it may hold
        other modules (a head, an encoder): only ``module_name``'s (and their submodules') are read, and all of
        those must be.
      cell: ``"lstm"`` (``hk.LSTM``) or ``"rnn"`` (``hk.VanillaRNN``: run it with ``rnn_cell("relu")``);
        ``"gru"`` is refused (``hk.GRU``'s reset gate acts before its matmul: module docstring).
      module_name: the core's module path: ``None`` for Haiku's default (``"lstm"``, ``"vanilla_rnn"``), a path
        such as ``"model/lstm"``, or a list of paths (an ``hk.DeepRNN``'s cores in order: ``["lstm", "lstm_1"]``)
        for a stack as :func:`lstm_jax.init.init_layers` builds it.

    Returns:
      :class:`~lstm_jax.cells.LSTMParams` / :class:`~lstm_jax.cells.RNNParams` (a tuple of them for a list of
      names), in the parameters' dtype: ``w_ih = w_x.T``, ``w_hh = w_h.T`` with the gates reordered
      ``i, g, f, o -> i, f, g, o``, ``b_f = b_f + 1`` (Haiku's forget offset); the RNN's ``b = b + b_1``.

    Raises:
      ValueError: naming the tensor: missing, of another shape or dtype, or left unread in the module; or
        ``cell="gru"``.
    """
    if cell == "gru":
        raise ValueError(f"cell: expected 'lstm' or 'rnn', got 'gru': {_GRU_REFUSED}")
    _checks.check_choice("cell", cell, tuple(HAIKU_NAMES))
    names, single = _names(module_name, cell)
    reader = TensorReader(_flat(params, names), f"the Haiku modules {names}")
    read = _read_lstm if cell == "lstm" else _read_rnn
    layers = tuple(read(reader, name) for name in names)
    reader.finish()
    return layers[0] if single else layers


def _write(params, name: str, activation: str | None, double_bias: bool) -> dict:
    """One core's ``{module: {name: array}}`` from our parameters."""
    kind = cell_kind(params)
    if kind == "gru":
        raise ValueError(f"params: expected LSTMParams or RNNParams, got GRUParams: {_GRU_REFUSED}")
    check_plain(params, "Haiku")
    w_ih, w_hh, b = (to_numpy(x) for x in (params.w_ih, params.w_hh, params.b))
    if kind == "lstm":
        ours, theirs = OUR_GATES["lstm"], HAIKU_GATES["lstm"]
        w = np.concatenate([reorder_gates(w_ih, ours, theirs).T, reorder_gates(w_hh, ours, theirs).T], axis=0)
        b = reorder_gates(b - _forget_offset(w_hh.shape[1], b.dtype), ours, theirs)
        return {f"{name}/linear": {"w": jnp.asarray(w), "b": jnp.asarray(b)}}
    if activation != "relu":
        raise ValueError(
            f"activation: expected 'relu' (hk.VanillaRNN computes ReLU; our RNNParams do not say which f they were "
            f"trained with: pass activation='relu' for rnn_cell('relu')), got {activation!r}"
        )
    hidden = {"w": jnp.asarray(w_hh.T)}
    if double_bias:
        hidden["b"] = jnp.asarray(np.zeros_like(b))
    return {f"{name}/linear": {"w": jnp.asarray(w_ih.T), "b": jnp.asarray(b)}, f"{name}/linear_1": hidden}


def to_haiku(
    params,
    *,
    module_name: str | Sequence[str] | None = None,
    activation: str | None = None,
    double_bias: bool = True,
) -> dict:
    r"""Haiku's parameter dict (``{module path: {name: jax array}}``) from our LSTM or RNN parameters, for
    ``transformed.apply(haiku_params, None, ...)`` of ``hk.LSTM`` / ``hk.VanillaRNN`` (merge it into a bigger
    dict with ``{**params, **to_haiku(...)}``).

    ``hk.LSTM``: ``w = [w_ih.T; w_hh.T]`` ``(M + D, 4D)`` with the gate columns in Haiku's ``i, g, f, o``, and
    ``b`` with 1 taken off ``b_f`` (Haiku adds it back at run time). ``hk.VanillaRNN``: ``linear`` holds
    ``w_ih.T`` and ``b``, ``linear_1`` holds ``w_hh.T`` and zeros (``double_bias=True``, Haiku's default).

    Args:
      params: :class:`~lstm_jax.cells.LSTMParams` or :class:`~lstm_jax.cells.RNNParams`, or a stack of them
        (one per layer, as :func:`lstm_jax.init.init_layers` builds it) for an ``hk.DeepRNN``.
      module_name: the core's module path; ``None``: Haiku's default (``"lstm"``, ``"vanilla_rnn"``; for a
        stack ``"lstm"``, ``"lstm_1"``, ... as Haiku names the cores of a ``DeepRNN``); a list for a stack.
      activation: for RNN parameters, ``"relu"``: the only ``f`` of ``hk.VanillaRNN`` (ours do not record theirs).
      double_bias: the ``hk.VanillaRNN`` option (a second bias in ``linear_1``, set to zero).

    Raises:
      ValueError: GRU parameters (``hk.GRU`` is not our GRU), an LSTM with a projection, peepholes or layer
        norm, a bidirectional stack (Haiku has no bidirectional core), an RNN whose ``activation`` is not relu.
    """
    double_bias = _checks.check_bool("double_bias", double_bias)
    if activation is not None:
        _checks.check_choice("activation", activation, tuple(ACTIVATIONS))
    if isinstance(params, Bidirectional) or (
        isinstance(params, (tuple, list)) and params and isinstance(params[0], Bidirectional)
    ):
        raise ValueError(
            "params: expected one direction (Haiku has no bidirectional core), got Bidirectional layers: convert "
            "each direction apart, to_haiku(layer.forward, module_name=...) and to_haiku(layer.backward, ...)"
        )
    if isinstance(params, (tuple, list)) and not hasattr(params, "_fields"):
        kind, num_layers, _ = layer_stack(params)
        base = HAIKU_NAMES.get(kind, kind)
        names = module_name if module_name is not None else [base] + [f"{base}_{k}" for k in range(1, num_layers)]
        names, single = _names(names, kind)
        if single or len(names) != num_layers:
            raise ValueError(f"module_name: expected {num_layers} names (one per layer), got {module_name!r}")
        out = {}
        for layer, name in zip(params, names):
            out.update(_write(layer, name, activation, double_bias))
        return out
    kind = cell_kind(params)
    names, single = _names(module_name, kind if kind in HAIKU_NAMES else "lstm")
    if not single:
        raise ValueError(f"module_name: expected one name for one cell's parameters, got {module_name!r}")
    return _write(params, names[0], activation, double_bias)
