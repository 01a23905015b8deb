r"""PyTorch's ``nn.RNN``, ``nn.LSTM`` (with ``proj_size``) and ``nn.GRU``: weights in and out.

PyTorch stacks the gate blocks of every weight along the rows in the order we use (``i, f, g, o``;
``r, z, n``, whose ``z`` our GRU calls ``u``), and its weights are ``(out, in)`` like ours, so
nothing is reordered or transposed. Layer ``k`` of a state dict maps to ``layers[k]`` of the stack
:func:`lstm_jax.init.init_layers` builds; the suffix ``_reverse`` is the ``backward`` half of a
:class:`~lstm_jax.unroll.Bidirectional` layer. ``G`` is the number of gate blocks (1, 4, 3),
``D`` the hidden size, ``P`` the LSTM's ``proj_size``, ``M_k`` the layer's input features.

==========================================  ==============================================================
PyTorch (``_l{k}[_reverse]``)               ours (``layers[k]``, ``.forward`` / ``.backward``)
==========================================  ==============================================================
``weight_ih`` ``(G·D, M_k)``                ``w_ih``
``weight_hh`` ``(G·D, D)``, ``(4D, P)``     ``w_hh``
``bias_ih + bias_hh`` ``(G·D,)``            ``b`` (RNN, LSTM)
``bias_ih + [bias_hr; bias_hz; 0]``         ``b`` (GRU)
``bias_hh[2D:]`` ``(D,)``                   ``b_hn`` (GRU: the candidate's bias inside :math:`r \odot (\cdot)`)
``weight_hr`` ``(P, D)``                    ``w_hr`` (:class:`~lstm_jax.cells.LSTMVariantParams`)
==========================================  ==============================================================

Two biases that act as one are summed (:math:`b = b_{ih} + b_{hh}`); on the way out ``bias_ih = b``
and ``bias_hh = 0`` (GRU: ``[0; 0; b_hn]``), which PyTorch computes as the same function. A module
made with ``bias=False`` has no bias tensors: ours are zeros, and :func:`to_torch` with ``bias=False``
refuses a non-zero one. The RNN's ``nonlinearity`` (``"tanh"`` or ``"relu"``) is not a parameter:
:func:`torch_cell` gives the matching :class:`~lstm_jax.cells.Cell` (``rnn_cell("relu")``), as it
gives ``lstm_cell(proj_size=P)`` for a projection. PyTorch's ``(h_n, c_n)`` of shape
``(num_layers · directions, B, H)`` are our final carries: ``h_n[2k + d]`` is ``finals[k].h`` of
direction ``d`` (``LSTMState(h, c)``; the RNN's and the GRU's carry is ``h`` itself).

::

    import torch
    from lstm_jax import unroll_layers
    from lstm_jax.interop.pytorch import from_torch, to_torch_module, torch_cell

    lstm = torch.nn.LSTM(3, 16, num_layers=2, bidirectional=True, batch_first=True)
    layers = from_torch(lstm)                        # or from_torch(lstm.state_dict())
    finals, ys = unroll_layers(torch_cell(lstm), layers, xs, lengths=lengths)
    back = to_torch_module(layers)                   # an nn.LSTM computing the same function
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from lstm_jax import _checks
from lstm_jax.cells import Cell, GRUParams, LSTMParams, LSTMVariantParams, RNNParams, gru_cell, lstm_cell, rnn_cell
from lstm_jax.interop._common import (
    TensorReader,
    as_jax,
    check_plain,
    directions,
    layer_stack,
    stack,
    to_numpy,
)

__all__ = ["TorchLayout", "from_torch", "to_torch", "to_torch_module", "torch_cell", "torch_layout"]

#: Gate blocks per cell kind.
GATES = {"rnn": 1, "lstm": 4, "gru": 3}

#: ``nn.RNNBase.mode`` -> (our cell kind, the RNN's nonlinearity).
MODES = {"RNN_TANH": ("rnn", "tanh"), "RNN_RELU": ("rnn", "relu"), "LSTM": ("lstm", None), "GRU": ("gru", None)}

#: Our cell kind -> the ``torch.nn`` class.
MODULES = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}

#: The nonlinearities ``nn.RNN`` has.
NONLINEARITIES = ("tanh", "relu")

_STATE_DICT = "the torch state dict"


class TorchLayout(NamedTuple):
    """What shapes a PyTorch recurrent module's state dict: its constructor's arguments.

    ``proj_size`` is 0 without a projection (PyTorch's convention); ``nonlinearity`` is the RNN's
    (``None`` where nothing says it: a bare state dict, our parameters, an LSTM or a GRU).
    """

    cell: str  # "rnn", "lstm" or "gru"
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    proj_size: int
    bias: bool
    nonlinearity: str | None = None

    @property
    def module(self) -> str:
        """The ``torch.nn`` class name: ``"RNN"``, ``"LSTM"`` or ``"GRU"``."""
        return MODULES[self.cell]

    @property
    def output_size(self) -> int:
        """Features of one direction's output ``h``: ``proj_size`` if set, else ``hidden_size``."""
        return self.proj_size or self.hidden_size

    def kwargs(self, *, batch_first: bool = True, nonlinearity: str | None = None) -> dict[str, Any]:
        """The keyword arguments of ``torch.nn.<module>`` (``proj_size`` for an LSTM, ``nonlinearity`` for an RNN)."""
        kwargs = dict(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            bias=self.bias,
            batch_first=batch_first,
            bidirectional=self.bidirectional,
        )
        if self.cell == "lstm":
            kwargs["proj_size"] = self.proj_size
        if self.cell == "rnn":
            kwargs["nonlinearity"] = nonlinearity or self.nonlinearity or "tanh"
        return kwargs


def _name(kind: str, layer: int, reverse: bool) -> str:
    return f"{kind}_l{layer}{'_reverse' if reverse else ''}"


def _is_torch_rnn(source) -> bool:
    """Whether ``source`` looks like a ``torch.nn.RNNBase`` (checked without importing torch)."""
    return callable(getattr(source, "state_dict", None)) and isinstance(getattr(source, "mode", None), str)


def _tensors(source, prefix: str) -> dict[str, np.ndarray]:
    """``{name: NumPy array}`` of a state dict's tensors under ``prefix`` (stripped), each converted with its name."""
    if not isinstance(prefix, str):
        raise ValueError(f"prefix: expected a string such as 'lstm.', got {_checks.describe(prefix)}")
    if not isinstance(source, Mapping):
        raise ValueError(
            "source: expected a torch nn.RNN, nn.LSTM or nn.GRU, or a state dict (a mapping of names to "
            f"tensors), got {type(source).__name__}"
            + (
                " (a module inside a model: pass model.state_dict() and prefix='name.')"
                if hasattr(source, "state_dict")
                else ""
            )
        )
    tensors = {}
    for key, value in source.items():
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        try:
            tensors[key[len(prefix) :]] = to_numpy(value)
        except ValueError as error:
            raise ValueError(f"{key}: {error}") from None
    return tensors


def _shape_of(tensors: dict, name: str, source: str, ndim: int) -> tuple[int, ...]:
    if name not in tensors:
        raise ValueError(f"{name}: expected it in {source} (which has {sorted(tensors)}), missing")
    shape = tuple(np.shape(tensors[name]))
    if len(shape) != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d tensor, got shape {shape}")
    return shape


def _layout_of_state_dict(tensors: dict, source: str) -> TorchLayout:
    """The layout a state dict's names and shapes say: ``weight_hh_l0`` ``(G·D, D)`` gives ``G`` (the cell)
    and ``D``; ``weight_hr_l0`` ``(P, D)`` an LSTM with a projection. Every tensor is checked when read."""
    w_ih = _shape_of(tensors, "weight_ih_l0", source, 2)
    w_hh = _shape_of(tensors, "weight_hh_l0", source, 2)
    proj_size = 0
    if "weight_hr_l0" in tensors:
        proj_size, hidden = _shape_of(tensors, "weight_hr_l0", source, 2)
        if w_hh != (4 * hidden, proj_size):
            raise ValueError(
                f"weight_hh_l0: expected shape (4·{hidden}, {proj_size}) beside weight_hr_l0 {(proj_size, hidden)} "
                f"(an LSTM with proj_size={proj_size}), got {w_hh}"
            )
        kind = "lstm"
    else:
        hidden = w_hh[1]
        gates = w_hh[0] // hidden if hidden and w_hh[0] % hidden == 0 else None
        kind = {1: "rnn", 3: "gru", 4: "lstm"}.get(gates)
        if kind is None:
            raise ValueError(
                f"weight_hh_l0: expected shape (G·D, D) with G = 1 (RNN), 3 (GRU) or 4 (LSTM) gate blocks, got {w_hh}"
            )
    num_layers = 0
    while f"weight_ih_l{num_layers}" in tensors:
        num_layers += 1
    bias = "bias_ih_l0" in tensors or "bias_hh_l0" in tensors
    return TorchLayout(kind, w_ih[1], hidden, num_layers, "weight_ih_l0_reverse" in tensors, proj_size, bias)


def _layout_of_module(module) -> TorchLayout:
    mode = module.mode
    if mode not in MODES:
        raise ValueError(f"source.mode: expected one of {sorted(MODES)} (nn.RNN, nn.LSTM, nn.GRU), got {mode!r}")
    kind, nonlinearity = MODES[mode]
    return TorchLayout(
        kind,
        int(module.input_size),
        int(module.hidden_size),
        int(module.num_layers),
        bool(module.bidirectional),
        int(getattr(module, "proj_size", 0) or 0),
        bool(module.bias),
        nonlinearity,
    )


def _check_cell(cell, layout: TorchLayout, what: str) -> None:
    if cell is None:
        return
    _checks.check_choice("cell", cell, tuple(GATES))
    if cell != layout.cell:
        raise ValueError(f"cell: expected {layout.cell!r}, as {what} says, got {cell!r}")


def _read(source, cell, prefix: str) -> tuple[TorchLayout, dict[str, np.ndarray], str]:
    """The layout, the tensors and the name of ``source`` in messages."""
    if _is_torch_rnn(source):
        layout = _layout_of_module(source)
        _check_cell(cell, layout, f"the module (nn.{layout.module})")
        return layout, _tensors(source.state_dict(), ""), f"the state dict of the nn.{layout.module}"
    tensors = _tensors(source, prefix)
    where = _STATE_DICT + (f" (keys under {prefix!r})" if prefix else "")
    layout = _layout_of_state_dict(tensors, where)
    _check_cell(cell, layout, "weight_hh_l0's shape")
    return layout, tensors, where


def _layout_of_layers(layers) -> TorchLayout:
    """The PyTorch layout of our stack, every parameter checked: one hidden size, one ``proj_size``,
    each layer reading the previous one's outputs, one dtype, no option PyTorch lacks."""
    kind, num_layers, bidirectional = layer_stack(layers)
    gates = GATES[kind]
    first = directions(layers[0])[0]
    if not hasattr(first.w_ih, "shape") or np.ndim(first.w_ih) != 2:
        raise ValueError(f"layers[0].w_ih: expected a 2-d array (G·D, M), got {_checks.describe(first.w_ih)}")
    hidden, input_size = first.w_ih.shape[0] // gates, first.w_ih.shape[1]
    proj = getattr(first, "w_hr", None)
    proj_size = 0 if proj is None else int(np.shape(proj)[0])
    dtype = np.dtype(first.w_ih.dtype)
    out = proj_size or hidden
    for k, layer in enumerate(layers):
        pair = directions(layer)
        for name, params in zip(("forward", "backward") if bidirectional else ("",), pair):
            where = f"layers[{k}]" + (f".{name}" if name else "")
            check_plain(params, "PyTorch", projection=True)
            expected = {
                "w_ih": (gates * hidden, input_size if k == 0 else out * len(pair)),
                "w_hh": (gates * hidden, out),
                "b": (gates * hidden,),
            }
            if kind == "gru":
                expected["b_hn"] = (hidden,)
            w_hr = getattr(params, "w_hr", None)
            if (w_hr is None) != (proj_size == 0):
                raise ValueError(
                    f"{where}.w_hr: expected {'a projection' if proj_size else 'none'} like layers[0] "
                    f"(PyTorch has one proj_size for every layer), got {'none' if w_hr is None else 'one'}"
                )
            if proj_size:
                expected["w_hr"] = (proj_size, hidden)
            for field, shape in expected.items():
                value = getattr(params, field)
                if tuple(np.shape(value)) != shape:
                    raise ValueError(
                        f"{where}.{field}: expected shape {shape} (one hidden size {hidden} for every layer, as "
                        f"PyTorch has), got {tuple(np.shape(value))}"
                    )
                if np.dtype(value.dtype) != dtype:
                    raise ValueError(f"{where}.{field}: expected dtype {dtype} like layers[0].w_ih, got {value.dtype}")
    return TorchLayout(kind, input_size, hidden, num_layers, bidirectional, proj_size, True)


def torch_layout(source) -> TorchLayout:
    """The :class:`TorchLayout` of a torch ``nn.RNN``/``nn.LSTM``/``nn.GRU``, of a state dict (from its
    names and shapes), or of our layer stack (``bias`` then ``True``; ``nonlinearity`` ``None``)."""
    if isinstance(source, (tuple, list)):
        return _layout_of_layers(source)
    return _read(source, None, "")[0]


def torch_cell(source, *, nonlinearity: str | None = None, prefix: str = "") -> Cell:
    """Our :class:`~lstm_jax.cells.Cell` that computes what a PyTorch module computes with its weights:
    ``rnn_cell(nonlinearity)``, ``lstm_cell()`` / ``lstm_cell(proj_size=P)`` or ``gru_cell()``.

    ``source`` is the module or its state dict (as :func:`from_torch` takes). A state dict does not
    say the RNN's nonlinearity: ``nonlinearity`` does (default ``"tanh"``, PyTorch's); given with a
    module, it must agree with the module's.
    """
    layout = _read(source, None, prefix)[0]
    if nonlinearity is not None:
        _checks.check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        if layout.cell != "rnn":
            raise ValueError(
                f"nonlinearity: expected None for an nn.{layout.module} (only nn.RNN has one), got {nonlinearity!r}"
            )
        if layout.nonlinearity not in (None, nonlinearity):
            raise ValueError(f"nonlinearity: expected {layout.nonlinearity!r}, the module's, got {nonlinearity!r}")
    if layout.cell == "rnn":
        return rnn_cell(nonlinearity or layout.nonlinearity or "tanh")
    if layout.cell == "gru":
        return gru_cell()
    return lstm_cell(proj_size=layout.proj_size or None)


def _check_x64(dtype: np.dtype, name: str) -> None:
    if dtype == np.float64 and not jax.config.jax_enable_x64:
        raise ValueError(
            f"{name}: expected float64 tensors inside `with jax.enable_x64(True):` (JAX would make them float32), "
            "got them with x64 off"
        )


def from_torch(source, *, cell: str | None = None, prefix: str = "") -> tuple:
    r"""Our layer stack from a PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` or its state dict.

    Args:
      source: the module (its ``state_dict()``, ``mode``, ``proj_size``, ``bias``, ``bidirectional``,
        ``num_layers`` are read; ``batch_first`` does not matter), or a state dict: a mapping of
        PyTorch's names (table in the module docstring) to torch tensors or arrays. A state dict's
        layout is read from its names and shapes: ``weight_hh_l0`` ``(G·D, D)`` tells ``G`` (1: RNN,
        3: GRU, 4: LSTM) and ``D`` without ambiguity, ``weight_hr_l0`` an LSTM with a projection,
        ``*_reverse`` a bidirectional stack, no ``bias_*`` a module made with ``bias=False``.
      cell: ``None`` (the layout says it), or ``"rnn"``, ``"lstm"``, ``"gru"``: then it must be what
        the module or the shapes say (a check, never a reinterpretation).
      prefix: read only the keys that start with it (stripped), e.g. ``"lstm."`` for the ``nn.LSTM``
        named ``lstm`` inside a model's ``state_dict()``; other keys are then not ours to read.

    Returns:
      One entry per layer as :func:`lstm_jax.init.init_layers` builds: :class:`~lstm_jax.cells.RNNParams`,
      :class:`~lstm_jax.cells.LSTMParams`, :class:`~lstm_jax.cells.LSTMVariantParams` (``w_hr`` set: a
      projection) or :class:`~lstm_jax.cells.GRUParams`, or :class:`~lstm_jax.unroll.Bidirectional`
      pairs; JAX arrays in the tensors' dtype (float64 needs ``jax.enable_x64``). The RNN's
      nonlinearity is not a parameter: run them with :func:`torch_cell` (``rnn_cell("relu")`` for
      ``nonlinearity="relu"``).

    Raises:
      ValueError: naming the tensor, for a missing tensor, a wrong shape, a dtype unlike the others or
        not floating, an unused tensor, or a ``cell`` unlike the source's.
    """
    layout, tensors, where = _read(source, cell, prefix)
    reader = TensorReader(tensors, where)
    gates, hidden, out = GATES[layout.cell], layout.hidden_size, layout.output_size
    num_directions = 2 if layout.bidirectional else 1
    per_layer = []
    for k in range(layout.num_layers):
        pair = []
        for reverse in (False, True)[:num_directions]:
            w_ih = reader.take(
                _name("weight_ih", k, reverse), (gates * hidden, layout.input_size if k == 0 else out * num_directions)
            )
            _check_x64(w_ih.dtype, _name("weight_ih", k, reverse))
            w_hh = reader.take(_name("weight_hh", k, reverse), (gates * hidden, out))
            if layout.bias:
                b_ih = reader.take(_name("bias_ih", k, reverse), (gates * hidden,))
                b_hh = reader.take(_name("bias_hh", k, reverse), (gates * hidden,))
            else:
                b_ih = b_hh = np.zeros((gates * hidden,), w_ih.dtype)
            if layout.cell == "gru":  # b_hn stays inside r ⊙ (·): only b_hr, b_hz fold into b
                b = b_ih + np.concatenate([b_hh[: 2 * hidden], np.zeros((hidden,), b_hh.dtype)])
                params = GRUParams(*map(as_jax, (w_ih, w_hh, b, b_hh[2 * hidden :])))
            elif layout.proj_size:
                w_hr = reader.take(_name("weight_hr", k, reverse), (layout.proj_size, hidden))
                params = LSTMVariantParams(*map(as_jax, (w_ih, w_hh, b_ih + b_hh, w_hr)))
            else:
                kind = LSTMParams if layout.cell == "lstm" else RNNParams
                params = kind(*map(as_jax, (w_ih, w_hh, b_ih + b_hh)))
            pair.append(params)
        per_layer.append(tuple(pair))
    reader.finish()
    return stack(per_layer)


def _zero_or_refuse(value, where: str, torch_name: str) -> None:
    array = np.asarray(value)
    if np.any(array != 0):
        raise ValueError(
            f"{where}: expected zeros with bias=False (PyTorch would have no {torch_name}), "
            f"got a nonzero bias (max |b| = {float(np.max(np.abs(array.astype(np.float64)))):.3g})"
        )


def to_torch(layers, *, bias: bool = True) -> dict[str, np.ndarray]:
    """A PyTorch state dict of our layer stack: ``{name: NumPy array}`` in the stack's dtype, under the names
    and in the order of the matching ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (:func:`torch_layout`), ready for
    ``module.load_state_dict({k: torch.from_numpy(v) for k, v in ...})``.

    ``bias_ih = b`` and ``bias_hh = 0`` (GRU: ``[0; 0; b_hn]``); ``bias=False`` writes no bias and refuses
    a nonzero ``b`` or ``b_hn`` (a ``ValueError`` naming it). Peepholes, layer normalisation, layers of
    unequal hidden sizes or projections, which PyTorch's modules do not have, are refused too.
    """
    bias = _checks.check_bool("bias", bias)
    layout = _layout_of_layers(layers)
    hidden = layout.hidden_size
    state = {}
    for k, layer in enumerate(layers):
        for reverse, params in zip((False, True), directions(layer)):
            where = f"layers[{k}]" + ((".backward" if reverse else ".forward") if layout.bidirectional else "")
            state[_name("weight_ih", k, reverse)] = np.array(params.w_ih)
            state[_name("weight_hh", k, reverse)] = np.array(params.w_hh)
            b = np.array(params.b)
            b_hh = np.zeros_like(b)
            if layout.cell == "gru":
                b_hh[2 * hidden :] = np.asarray(params.b_hn)
            if bias:
                state[_name("bias_ih", k, reverse)] = b
                state[_name("bias_hh", k, reverse)] = b_hh
            else:
                _zero_or_refuse(b, f"{where}.b", _name("bias_ih", k, reverse))
                if layout.cell == "gru":
                    _zero_or_refuse(params.b_hn, f"{where}.b_hn", _name("bias_hh", k, reverse))
            if layout.proj_size:
                state[_name("weight_hr", k, reverse)] = np.array(params.w_hr)
    return state


def _torch_tensor(torch, array: np.ndarray):
    if array.dtype.name == "bfloat16":  # NumPy has no bfloat16 of its own: through float32, exactly
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array))


def to_torch_module(layers, *, nonlinearity: str = "tanh", batch_first: bool = True, bias: bool = True):
    """The ``torch.nn.RNN`` / ``nn.LSTM`` (``proj_size``) / ``nn.GRU`` that computes what our stack does, weights
    loaded (strict), in the stack's dtype.

    ``nonlinearity`` is the RNN's (``"tanh"`` or ``"relu"``: PyTorch has no other; an LSTM or a GRU takes
    only ``"tanh"``); ``batch_first=True`` is our layout (``(B, T, M)``); ``bias`` as in :func:`to_torch`.
    """
    import torch

    layout = _layout_of_layers(layers)
    if layout.cell == "rnn":
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity: expected one of {NONLINEARITIES} (PyTorch's nn.RNN has no other), got {nonlinearity!r}"
            )
    elif nonlinearity != "tanh":
        raise ValueError(
            f"nonlinearity: expected 'tanh' for an nn.{layout.module} (it has no option), got {nonlinearity!r}"
        )
    state = to_torch(layers, bias=bias)
    dtype = getattr(torch, next(iter(state.values())).dtype.name)
    kwargs = layout._replace(bias=bias).kwargs(
        batch_first=_checks.check_bool("batch_first", batch_first), nonlinearity=nonlinearity
    )
    module = getattr(torch.nn, layout.module)(**kwargs, dtype=dtype)
    module.load_state_dict({name: _torch_tensor(torch, array) for name, array in state.items()}, strict=True)
    return module
