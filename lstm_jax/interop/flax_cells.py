r"""flax's recurrent cells (linen and nnx) in and out: ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``.

Every flax cell computes one of our cells with the same gate order (LSTM ``i, f, g, o``; GRU ``r, z, n``
with flax's ``z`` our update gate ``u``); only the storage differs. A flax kernel is ``(in, out)``,
the transpose of our row blocks; flax keeps one bias per gate (on the recurrent Dense for the LSTM,
on the input Dense for the GRU and the simple cell), so nothing is summed and every conversion is
bit-exact both ways. Verified against the source of flax 0.12.8 and 0.12.12 (``linen/recurrent.py``,
``nnx/nn/recurrent.py``):

=================================  ===================================================  ==========================
flax cell                          its parameters (kernels ``(in, out)``)               ours
=================================  ===================================================  ==========================
linen ``LSTMCell``,                ``i{g}/kernel (M, D)``, ``h{g}/kernel (D, D)``,      ``w_ih = [i{g}ᵀ]``,
linen ``OptimizedLSTMCell``        ``h{g}/bias (D,)`` for ``g`` in ``i, f, g, o``       ``w_hh = [h{g}ᵀ]``,
(same names)                       (the input Dense layers have no bias)                ``b = [h{g}/bias]``
nnx ``LSTMCell``                   as linen, but ``if_`` for ``if`` (a Python keyword)  as linen
nnx ``OptimizedLSTMCell``          ``dense_i/kernel (M, 4D)``, ``dense_h/kernel         ``w_ih = dense_iᵀ``,
                                   (D, 4D)``, ``dense_h/bias (4D,)``                    ``w_hh = dense_hᵀ``, ``b``
linen ``GRUCell``                  ``i{g}/kernel (M, D)``, ``i{g}/bias``, ``h{g}/       ``b = [i{g}/bias]``,
                                   kernel (D, D)`` for ``g`` in ``r, z, n``;            ``b_hn = hn/bias``
                                   ``hn/bias`` (inside :math:`r \odot (\cdot)`)
nnx ``GRUCell``                    ``dense_i/kernel (M, 3D)``, ``dense_i/bias (3D,)``,  ``b_hn = 0`` (exported only
                                   ``dense_h/kernel (D, 3D)``: **no** :math:`b_{hn}`    when it is zero)
linen ``SimpleCell``               ``i/kernel (M, D)``, ``i/bias (D,)``,                ``w_hh = hᵀ`` (``+ I`` with
nnx ``SimpleCell``                 ``h/kernel (D, D)`` (nnx: ``dense_i``, ``dense_h``)  ``residual=True``)
=================================  ===================================================  ==========================

The simple cell's ``activation_fn`` (``tanh``, ``sigmoid`` or ``relu``: :func:`flax_cell` gives the
:func:`~lstm_jax.cells.rnn_cell` to run) is a cell option, not a parameter; its ``residual=True``
(:math:`h_t = f(W_i x_t + b + W_h h_{t-1} + h_{t-1})`) is folded into ``w_hh`` as :math:`W_h + I` on
import and taken out on export (exact to one rounding of the diagonal). The LSTM and GRU must keep
flax's ``gate_fn=sigmoid`` and ``activation_fn=tanh``; another function is refused by name.

The carry: flax's LSTM carry is ``(c, h)``, ours is :class:`~lstm_jax.cells.LSTMState` ``(h, c)``
(:func:`carry_from_flax`, :func:`carry_to_flax`); the GRU's and the simple cell's is ``h`` in both.
``nn.RNN(cell)`` runs batch-major like :func:`~lstm_jax.unroll.unroll`; its ``seq_lengths`` is our
``lengths`` (its padded outputs are not zeroed, ours are; the final carries agree).

flax has no multi-layer or bidirectional cell: a stack is ``nn.RNN`` layers, each converted on its
own into the tuple :func:`~lstm_jax.init.init_layers` builds (an ``nn.Bidirectional`` holds its two
``nn.RNN`` under ``forward_rnn`` and ``backward_rnn``, each with its ``cell``)::

    class Encoder(nn.Module):  # flax: two bidirectional LSTM layers
        def setup(self):
            rnn = lambda: nn.RNN(nn.OptimizedLSTMCell(D))
            self.layers = [nn.Bidirectional(rnn(), rnn()) for _ in range(2)]

        def __call__(self, xs, seq_lengths):
            for layer in self.layers:
                xs = layer(xs, seq_lengths=seq_lengths)
            return xs

    p = variables["params"]  # {"layers_0": {"forward_rnn": {"cell": {...}}, "backward_rnn": ...}, "layers_1": ...}
    layers = stack([(from_flax(p[f"layers_{k}"]["forward_rnn"], cell="OptimizedLSTMCell"),
                     from_flax(p[f"layers_{k}"]["backward_rnn"], cell="OptimizedLSTMCell")) for k in range(2)])
    carries, ys = unroll_layers(lstm_cell(), layers, xs, lengths=seq_lengths)  # ys == Encoder's at valid steps

    # and back: one {"cell": ...} per direction
    p = {f"layers_{k}": {"forward_rnn": to_flax(layer.forward, wrap_rnn=True)["params"],
                        "backward_rnn": to_flax(layer.backward, wrap_rnn=True)["params"]}
         for k, layer in enumerate(layers)}

(``stack`` is :func:`lstm_jax.interop._common.stack`; a one-direction layer is ``(params,)``.) Beware
flax's naming: cells built inside an ``@nn.compact`` method are adopted by that method's module, so
their parameters sit there as ``OptimizedLSTMCell_0``, ``OptimizedLSTMCell_1``, ... (in the order
built: forward then backward, layer by layer) with no ``nn.Bidirectional`` or ``nn.RNN`` level; pass
each of those dicts to :func:`from_flax` as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax import _checks
from lstm_jax.cells import (
    GRU_CELL,
    LSTM_CELL,
    GRUParams,
    LSTMParams,
    LSTMState,
    LSTMVariantParams,
    RNNParams,
    check_params,
    rnn_cell,
)
from lstm_jax.cells import Cell as _Cell
from lstm_jax.interop._common import TensorReader, as_jax, cell_kind, check_plain, to_numpy
from lstm_jax.unroll import Bidirectional

#: The flax cell classes we convert, by name, and our cell kind of each.
FLAX_CELLS: dict[str, str] = {"LSTMCell": "lstm", "OptimizedLSTMCell": "lstm", "GRUCell": "gru", "SimpleCell": "rnn"}

#: The flax cell ``to_flax`` / ``to_nnx`` write when given no cell, per kind.
DEFAULT_CELL: dict[str, str] = {"lstm": "OptimizedLSTMCell", "gru": "GRUCell", "rnn": "SimpleCell"}

#: Per API and cell: each of our fields, from these flax tensors (in our gate order), row blocks concatenated.
#: A ``.../kernel`` is ``(in, out)`` and transposed; a ``.../bias`` is taken as it is.
_LSTM_GATES, _GRU_GATES = ("i", "f", "g", "o"), ("r", "z", "n")
_LINEN_LSTM = {
    "w_ih": tuple(f"i{g}/kernel" for g in _LSTM_GATES),
    "w_hh": tuple(f"h{g}/kernel" for g in _LSTM_GATES),
    "b": tuple(f"h{g}/bias" for g in _LSTM_GATES),
}
_LAYOUTS: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("linen", "LSTMCell"): _LINEN_LSTM,
    ("linen", "OptimizedLSTMCell"): _LINEN_LSTM,  # flax creates the LSTMCell's parameters, then fuses them
    ("linen", "GRUCell"): {
        "w_ih": tuple(f"i{g}/kernel" for g in _GRU_GATES),
        "w_hh": tuple(f"h{g}/kernel" for g in _GRU_GATES),
        "b": tuple(f"i{g}/bias" for g in _GRU_GATES),
        "b_hn": ("hn/bias",),
    },
    ("linen", "SimpleCell"): {"w_ih": ("i/kernel",), "w_hh": ("h/kernel",), "b": ("i/bias",)},
    ("nnx", "LSTMCell"): {
        "w_ih": tuple(f"i{'f_' if g == 'f' else g}/kernel" for g in _LSTM_GATES),
        "w_hh": _LINEN_LSTM["w_hh"],
        "b": _LINEN_LSTM["b"],
    },
    ("nnx", "OptimizedLSTMCell"): {"w_ih": ("dense_i/kernel",), "w_hh": ("dense_h/kernel",), "b": ("dense_h/bias",)},
    ("nnx", "GRUCell"): {"w_ih": ("dense_i/kernel",), "w_hh": ("dense_h/kernel",), "b": ("dense_i/bias",)},
    ("nnx", "SimpleCell"): {"w_ih": ("dense_i/kernel",), "w_hh": ("dense_h/kernel",), "b": ("dense_i/bias",)},
}


class _Spec(NamedTuple):
    """A flax cell as far as its parameters and maths go."""

    api: str  # "linen" or "nnx"
    name: str  # the class name, a key of FLAX_CELLS
    kind: str  # "lstm", "gru" or "rnn"
    activation: str  # the simple cell's f ("tanh" for the others)
    residual: bool  # SimpleCell(residual=True)
    features: int | None  # D, when known from a module
    in_features: int | None  # M, when known from an nnx module


# the flax classes ------------------------------------------------------------------------------


def _classes(api: str) -> dict[type, str]:
    """The flax cell classes of ``api`` -> their names (imported here: ``flax.nnx`` only when asked for)."""
    if api == "linen":
        import flax.linen as module
    else:
        from flax import nnx as module
    return {getattr(module, name): name for name in FLAX_CELLS}


def _activation_name(fn) -> str | None:
    """``"tanh"``, ``"sigmoid"`` or ``"relu"`` for those functions (flax's are JAX's), else ``None``."""
    known = {jnp.tanh: "tanh", jax.nn.sigmoid: "sigmoid", jax.nn.relu: "relu"}
    try:
        return known.get(fn)
    except TypeError:  # unhashable
        return None


def _function_name(fn) -> str:
    return getattr(fn, "__name__", None) or getattr(getattr(fn, "__wrapped__", None), "__name__", None) or repr(fn)


def _spec_of_module(module, api: str, name: str) -> _Spec:
    """The spec of a flax cell instance: its activations checked against what our cell can run."""
    kind = FLAX_CELLS[name]
    activation = _activation_name(module.activation_fn)
    if kind == "rnn":
        if activation is None:
            raise ValueError(
                f"cell.activation_fn: expected tanh, sigmoid or relu (lstm_jax's simple RNN has no other), "
                f"got {_function_name(module.activation_fn)}"
            )
        residual = bool(module.residual)
    else:
        if activation != "tanh":
            raise ValueError(
                f"cell.activation_fn: expected tanh (lstm_jax's {kind.upper()} has no other), "
                f"got {_function_name(module.activation_fn)}"
            )
        if _activation_name(module.gate_fn) != "sigmoid":
            raise ValueError(
                f"cell.gate_fn: expected sigmoid (lstm_jax's {kind.upper()} has no other), "
                f"got {_function_name(module.gate_fn)}"
            )
        residual = False
    if api == "linen":
        return _Spec(api, name, kind, activation, residual, module.features, None)
    return _Spec(api, name, kind, activation, residual, module.hidden_features, module.in_features)


def _spec(cell, api: str, arg: str = "cell") -> _Spec:
    """A spec from a class name, a flax class, or a flax module of ``api`` (defaults for a name or class);
    ``arg`` names the argument in messages."""
    classes = _classes(api)
    where = "flax.linen" if api == "linen" else "flax.nnx"
    if isinstance(cell, str):
        if cell not in FLAX_CELLS:
            raise ValueError(f"{arg}: expected one of {list(FLAX_CELLS)} (a {where} cell), got {cell!r}")
        return _Spec(api, cell, FLAX_CELLS[cell], "tanh", False, None, None)
    if isinstance(cell, type):
        if cell not in classes:
            raise ValueError(f"{arg}: expected one of {where}'s {list(FLAX_CELLS)}, got the class {cell.__name__}")
        return _Spec(api, classes[cell], FLAX_CELLS[classes[cell]], "tanh", False, None, None)
    if type(cell) not in classes:  # exactly flax's classes: a subclass may compute something else
        got = f"a {type(cell).__module__}.{type(cell).__qualname__}" if cell is not None else "None"
        raise ValueError(f"{arg}: expected a {where} cell ({', '.join(FLAX_CELLS)}), its name or class, got {got}")
    return _spec_of_module(cell, api, classes[type(cell)])


# nested dicts ----------------------------------------------------------------------------------


def _flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": x}}`` -> ``{prefix + "a/b": x}``; any non-mapping is a leaf."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _unflatten(flat: Mapping[str, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree


def _unwrap(variables) -> tuple[str, Mapping]:
    """``(prefix, the cell's own parameter dict)`` of ``{"params": p}``, ``p``, or an ``nn.RNN``'s ``{"cell": p}`` in either."""
    expected = "the cell's variables {'params': {...}}, the params dict, or an nn.RNN's {'params': {'cell': {...}}}"
    if not isinstance(variables, Mapping):
        raise ValueError(f"variables: expected {expected}, got {_checks.describe(variables)}")
    prefix, tree = "", variables
    if "params" in tree:
        if set(tree) != {"params"}:
            raise ValueError(f"variables: expected only the 'params' collection, got {sorted(tree)}")
        prefix, tree = "params/", tree["params"]
        if not isinstance(tree, Mapping):
            raise ValueError(f"variables['params']: expected a dict of parameters, got {_checks.describe(tree)}")
    if "cell" in tree:
        if set(tree) != {"cell"} or not isinstance(tree["cell"], Mapping):
            raise ValueError(
                f"{prefix}cell: expected an nn.RNN's parameters {{'cell': {{...}}}} alone, got {sorted(tree)}"
            )
        prefix, tree = f"{prefix}cell/", tree["cell"]
    return prefix, tree


# reading and writing a layout ------------------------------------------------------------------


def _piece_shape(name: str, field: str, rows: int, M: int, D: int) -> tuple[int, ...]:
    """The shape flax gives one of the tensors of our ``field``, which holds ``rows`` of our rows."""
    if name.endswith("/bias"):
        return (rows,)
    return (M if field == "w_ih" else D, rows)  # a kernel (in, out)


def _gates(kind: str) -> int:
    return {"lstm": 4, "gru": 3, "rnn": 1}[kind]


def _size(tensors: Mapping[str, Any], reader: TensorReader, name: str) -> int:
    """Axis 0 of the kernel ``name`` (its input size), or the reader's error when it is missing."""
    if name not in tensors:
        reader.take(name, ())  # raises: names the tensor and lists what there is
    shape = np.shape(to_numpy(tensors[name]))
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a kernel (in_features, out_features), got shape {shape}")
    return shape[0]


def _read(spec: _Spec, tensors: Mapping[str, Any], source: str, prefix: str = ""):
    """Our parameters from flax's ``tensors`` (flat ``"a/b"`` names with ``prefix``), every tensor checked and used."""
    layout = _LAYOUTS[spec.api, spec.name]
    reader = TensorReader(tensors, source)
    D = spec.features if spec.features is not None else _size(tensors, reader, prefix + layout["w_hh"][0])
    M = spec.in_features if spec.in_features is not None else _size(tensors, reader, prefix + layout["w_ih"][0])
    G = _gates(spec.kind)
    fields = {}
    for field, names in layout.items():
        rows = (D if field == "b_hn" else G * D) // len(names)
        pieces = [reader.take(prefix + name, _piece_shape(name, field, rows, M, D)) for name in names]
        fields[field] = np.concatenate([p if name.endswith("/bias") else p.T for p, name in zip(pieces, names)])
    reader.finish()
    fields = {field: as_jax(x) for field, x in fields.items()}
    if spec.residual:  # h_t = f(W_i x + b + W_h h + h): our w_hh is W_h + I
        fields["w_hh"] = fields["w_hh"] + jnp.eye(D, dtype=fields["w_hh"].dtype)
    if spec.kind == "gru":
        if "b_hn" not in fields:  # nnx's GRUCell: n = tanh(W_in x + b_in + r ⊙ W_hn h), no b_hn
            fields["b_hn"] = jnp.zeros((D,), fields["b"].dtype)
        return GRUParams(**fields)
    return LSTMParams(**fields) if spec.kind == "lstm" else RNNParams(**fields)


def _plain(params, target: str):
    """``params`` as LSTMParams / GRUParams / RNNParams, checked (an LSTM's options refused)."""
    kind = cell_kind(params)
    check_plain(params, target)
    if isinstance(params, LSTMVariantParams):
        params = LSTMParams(params.w_ih, params.w_hh, params.b)
    check_params({"lstm": LSTM_CELL, "gru": GRU_CELL, "rnn": rnn_cell()}[kind], params)
    return kind, params


def _write(spec: _Spec, params) -> dict[str, Any]:
    """flax's tensors (flat ``"a/b"`` names) of our checked ``params`` for ``spec``'s cell."""
    layout = _LAYOUTS[spec.api, spec.name]
    fields = params._asdict()
    D = params.w_hh.shape[1]
    if spec.residual:
        fields["w_hh"] = fields["w_hh"] - jnp.eye(D, dtype=fields["w_hh"].dtype)
    if spec.kind == "gru" and "b_hn" not in layout:
        b_hn = to_numpy(params.b_hn)
        if np.any(b_hn != 0):
            raise ValueError(
                f"params.b_hn: expected zeros: flax.nnx's GRUCell has no candidate recurrent bias "
                f"(n = tanh(W_in x + b_in + r * W_hn h)), got max |b_hn| = {np.abs(b_hn).max():.3g} "
                f"(use flax.linen's GRUCell, which has it)"
            )
    flat = {}
    for field, names in layout.items():
        pieces = jnp.split(jnp.asarray(fields[field]), len(names))
        for name, piece in zip(names, pieces):
            flat[name] = piece if name.endswith("/bias") else piece.T
    return flat


def _spec_for_params(cell, kind: str, api: str) -> _Spec:
    arg = "cell" if api == "linen" else "module"
    spec = _spec(DEFAULT_CELL[kind] if cell is None else cell, api, arg)
    if spec.kind != kind:
        raise ValueError(f"{arg}: expected a flax cell for {kind.upper()} parameters, got {spec.name} ({spec.kind})")
    return spec


# public ----------------------------------------------------------------------------------------


def from_flax(variables, *, cell):
    r"""Our parameters of one flax linen cell (the module table above).

    Args:
      variables: what the cell's ``init`` returns (``{"params": {...}}``), its ``"params"`` dict, or the
        variables of ``nn.RNN(cell)`` (``{"params": {"cell": {...}}}``, or ``{"cell": {...}}``:
        one direction of an ``nn.Bidirectional``). Arrays of any floating dtype, all alike.
      cell: the flax cell: its class name (``"LSTMCell"``, ``"OptimizedLSTMCell"``, ``"GRUCell"``,
        ``"SimpleCell"``), the ``flax.linen`` class, or the module instance (then its ``features``,
        activations and ``residual`` are checked and used).

    Returns:
      :class:`~lstm_jax.cells.LSTMParams`, :class:`~lstm_jax.cells.GRUParams` or
      :class:`~lstm_jax.cells.RNNParams` as JAX arrays in the variables' dtype; run them with
      ``flax_cell(cell)``.

    Raises:
      ValueError: naming the tensor (its flax path, e.g. ``params/cell/hi/kernel``) when one is
        missing, of another shape or dtype, or not used; naming the option when the cell has a
        ``gate_fn`` / ``activation_fn`` our cells do not have.
    """
    spec = _spec(cell, "linen")
    prefix, tree = _unwrap(variables)
    return _read(spec, _flatten(tree, prefix), f"the flax {spec.name} variables", prefix)


def to_flax(params, *, cell=None, wrap_rnn: bool = False) -> dict:
    r"""The variables of a flax linen cell holding our ``params`` (the inverse of :func:`from_flax`, bit-exact).

    Args:
      params: one cell's :class:`~lstm_jax.cells.LSTMParams` (or an ``LSTMVariantParams`` with no option
        set), :class:`~lstm_jax.cells.GRUParams` or :class:`~lstm_jax.cells.RNNParams`.
      cell: the flax cell to fill, as in :func:`from_flax`; ``None``: :data:`DEFAULT_CELL` of the
        parameters' kind (``LSTMCell`` and ``OptimizedLSTMCell`` have the same parameters). A
        ``SimpleCell(residual=True)`` gets ``w_hh - I``.
      wrap_rnn: ``False``: ``{"params": cell_params}``, what the cell's ``apply`` takes; ``True``:
        ``{"params": {"cell": cell_params}}``, what ``nn.RNN(cell).apply`` takes.

    Returns:
      A dict of dicts of JAX arrays in the parameters' dtype.
    """
    kind, params = _plain(params, "flax")
    spec = _spec_for_params(cell, kind, "linen")
    if spec.features is not None and spec.features != params.w_hh.shape[1]:
        raise ValueError(f"cell.features: expected D={params.w_hh.shape[1]} of the params, got {spec.features}")
    tree = _unflatten(_write(spec, params))
    return {"params": {"cell": tree} if _checks.check_bool("wrap_rnn", wrap_rnn) else tree}


def from_nnx(module):
    r"""Our parameters of a ``flax.nnx`` cell (``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``SimpleCell``).

    nnx's ``GRUCell`` has no :math:`b_{hn}` (``dense_h`` has no bias): ``b_hn`` comes back as zeros.
    Returns JAX arrays in the module's parameter dtype; errors as :func:`from_flax`.
    """
    from flax import nnx

    spec = _spec(module, "nnx", "module")
    if isinstance(module, type) or isinstance(module, str):
        raise ValueError(f"module: expected a flax.nnx cell instance, got {module!r}")
    tensors = _flatten(nnx.to_pure_dict(nnx.state(module, nnx.Param)))
    return _read(spec, tensors, f"the flax.nnx {spec.name}'s parameters")


def to_nnx(params, module=None):
    r"""A ``flax.nnx`` cell holding our ``params`` (bit-exact; :func:`from_nnx` gives them back).

    Args:
      params: one cell's parameters, as in :func:`to_flax`.
      module: ``None`` (the :data:`DEFAULT_CELL` of the parameters' kind), a class name, a ``flax.nnx``
        cell class (a new cell of the parameters' sizes and dtype is built, its initialisers not run:
        every parameter is ours), or a cell instance: a copy of it is returned with our parameters, the
        given module is left as it was (``nnx.update(module, nnx.state(new, nnx.Param))`` writes them in
        place). Its sizes and parameter dtype must be those of ``params``.

    Returns:
      The nnx cell. Raises ``ValueError`` for a GRU with a non-zero ``b_hn`` (nnx's ``GRUCell`` has none).
    """
    from flax import nnx

    kind, params = _plain(params, "flax.nnx")
    spec = _spec_for_params(module, kind, "nnx")
    D, M = params.w_hh.shape[1], params.w_ih.shape[1]
    if module is None or isinstance(module, (str, type)):
        cls = {name: c for c, name in _classes("nnx").items()}[spec.name]
        new = nnx.eval_shape(lambda: cls(M, D, param_dtype=params.w_ih.dtype, rngs=nnx.Rngs(0)))  # shapes only
    else:
        if (spec.in_features, spec.features) != (M, D):
            raise ValueError(
                f"module: expected in_features={M}, hidden_features={D} of the params, "
                f"got {spec.in_features}, {spec.features}"
            )
        new = nnx.clone(module)
    state = nnx.state(new, nnx.Param)
    have = _flatten(nnx.to_pure_dict(state))
    flat = _write(spec, params)
    for name, value in flat.items():
        old = have[name]
        if (tuple(old.shape), old.dtype) != (tuple(value.shape), value.dtype):
            raise ValueError(
                f"{name}: expected the module's {old.dtype}{tuple(old.shape)}, got {value.dtype}{tuple(value.shape)} "
                f"(build the module with param_dtype={value.dtype})"
            )
    nnx.replace_by_pure_dict(state, _unflatten(flat))
    nnx.update(new, state)
    abstract = [leaf for leaf in jax.tree.leaves(nnx.state(new)) if isinstance(leaf, jax.ShapeDtypeStruct)]
    if abstract:  # a flax version whose cells hold state other than the parameters written above
        raise ValueError(f"module: expected only parameters in a new flax.nnx {spec.name}, got {len(abstract)} more")
    return new


def flax_cell(cell) -> _Cell:
    """The :class:`~lstm_jax.cells.Cell` that runs a flax cell's converted parameters.

    ``cell``: a flax linen or nnx cell instance, class, or class name. ``lstm_cell()`` for an LSTM,
    ``gru_cell()`` for a GRU, ``rnn_cell(activation)`` for a ``SimpleCell`` (its ``activation_fn``).
    """
    import flax.linen as nn

    linen = isinstance(cell, (str, nn.Module)) or (isinstance(cell, type) and issubclass(cell, nn.Module))
    spec = _spec(cell, "linen" if linen else "nnx")
    return {"lstm": LSTM_CELL, "gru": GRU_CELL}.get(spec.kind) or rnn_cell(spec.activation)


def carry_from_flax(carry):
    """A flax cell's carry as ours: the LSTM's ``(c, h)`` -> ``LSTMState(h, c)``; the GRU's and simple cell's ``h`` as it is.

    For an ``nn.Bidirectional``'s ``(forward, backward)`` carry, convert each and wrap them in
    :class:`~lstm_jax.unroll.Bidirectional`.
    """
    if isinstance(carry, (LSTMState, Bidirectional)):
        raise ValueError(f"carry: expected flax's carry ((c, h) or h), got a {type(carry).__name__} (ours already)")
    if isinstance(carry, (tuple, list)):
        if len(carry) != 2:
            raise ValueError(f"carry: expected flax's LSTM carry (c, h), got a sequence of {len(carry)}")
        c, h = carry
        return LSTMState(h=h, c=c)
    return carry


def carry_to_flax(carry):
    """Our carry as flax's: ``LSTMState(h, c)`` -> ``(c, h)``; ``h`` as it is; a ``Bidirectional`` pair ->
    ``(forward, backward)``, what ``nn.Bidirectional``'s ``initial_carry`` takes."""
    if isinstance(carry, Bidirectional):
        return (carry_to_flax(carry.forward), carry_to_flax(carry.backward))
    if isinstance(carry, LSTMState):
        return (carry.c, carry.h)
    if isinstance(carry, (tuple, list)):
        raise ValueError(f"carry: expected an LSTMState, Bidirectional or an array, got a {type(carry).__name__}")
    return carry
