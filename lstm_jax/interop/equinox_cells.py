r"""Equinox ``eqx.nn.LSTMCell`` and ``eqx.nn.GRUCell`` to and from our parameters.

Equinox's cells are ours, field for field (read in ``equinox/nn/_rnn.py``):

=========================  ===================  ==================================================================
Equinox                    shape                ours
=========================  ===================  ==================================================================
``weight_ih``              ``(G·D, M)``         ``w_ih`` (LSTM gates ``i, f, g, o``; GRU ``r, z, n``: ours, as they are)
``weight_hh``              ``(G·D, D)``         ``w_hh``
``bias``                   ``(G·D,)``           ``b`` (zeros with ``use_bias=False``)
``bias_n`` (GRU)           ``(D,)``             ``b_hn``
=========================  ===================  ==================================================================

The LSTM: ``lin = weight_ih @ x + weight_hh @ h + bias``, split ``i, f, g, o``, carry ``(h, c)`` as our
:class:`~lstm_jax.cells.LSTMState`. The GRU: ``igates = weight_ih @ x + bias``, ``hgates = weight_hh @ h``,
``new = tanh(i_n + reset * (h_n + bias_n))``, ``h' = new + inp * (h - new)``: our GRU with ``inp`` = our ``u``
and ``bias_n`` = our ``b_hn`` (the reset gate after the matmul, PyTorch's convention). Nothing is summed or
reordered, so both round trips are bit-exact. Equinox's cells are unbatched (``jax.vmap`` them) and have no
unroll (``jax.lax.scan`` them), no vanilla RNN cell (our RNN is refused), no projection, peepholes or layer
norm (refused).
"""

from __future__ import annotations

import jax
import numpy as np

from lstm_jax import _checks
from lstm_jax.cells import GRUParams, LSTMParams
from lstm_jax.interop._common import TensorReader, as_jax, cell_kind, check_plain, to_numpy
from lstm_jax.unroll import Bidirectional

__all__ = ["from_equinox", "to_equinox"]

#: Equinox's cell class per cell kind.
_CLASSES = {"lstm": "LSTMCell", "gru": "GRUCell"}


def _equinox():
    try:
        import equinox
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("lstm_jax.interop.equinox_cells needs Equinox: pip install equinox") from error
    return equinox


def _kind(eqx, module, where: str) -> str:
    for kind, name in _CLASSES.items():
        if isinstance(module, getattr(eqx.nn, name)):
            return kind
    raise ValueError(f"{where}: expected an eqx.nn.LSTMCell or eqx.nn.GRUCell, got {_checks.describe(module)}")


def _from_cell(eqx, module, where: str):
    kind = _kind(eqx, module, where)
    G, M, D = 4 if kind == "lstm" else 3, module.input_size, module.hidden_size
    tensors = {"weight_ih": module.weight_ih, "weight_hh": module.weight_hh}
    for name in ("bias", "bias_n"):
        if getattr(module, name, None) is not None:
            tensors[name] = getattr(module, name)
    reader = TensorReader(tensors, f"{where} ({type(module).__name__}({M}, {D}))")
    w_ih = reader.take("weight_ih", (G * D, M))
    w_hh = reader.take("weight_hh", (G * D, D))
    b = reader.take("bias", (G * D,)) if module.use_bias else np.zeros((G * D,), w_ih.dtype)
    if kind == "lstm":
        reader.finish()
        return LSTMParams(as_jax(w_ih), as_jax(w_hh), as_jax(b))
    b_hn = reader.take("bias_n", (D,)) if module.use_bias else np.zeros((D,), w_ih.dtype)
    reader.finish()
    return GRUParams(as_jax(w_ih), as_jax(w_hh), as_jax(b), as_jax(b_hn))


def from_equinox(cell_module):
    r"""Our parameters from an ``eqx.nn.LSTMCell`` (-> :class:`~lstm_jax.cells.LSTMParams`) or an
    ``eqx.nn.GRUCell`` (-> :class:`~lstm_jax.cells.GRUParams`), in the module's dtype: ``w_ih = weight_ih``,
    ``w_hh = weight_hh``, ``b = bias`` (zeros with ``use_bias=False``), ``b_hn = bias_n``.

    A tuple or list of cells (one per layer) gives a stack as :func:`lstm_jax.init.init_layers` builds it, and
    a :class:`~lstm_jax.unroll.Bidirectional` pair of cells a bidirectional layer.

    Raises:
      ValueError: anything but those cells; a tensor whose shape is not the cell's (from its ``input_size``
        and ``hidden_size``) or whose dtype differs from the others (each named).
    """
    eqx = _equinox()
    if isinstance(cell_module, Bidirectional):
        return Bidirectional(
            *(_from_cell(eqx, m, f"cell_module.{d}") for d, m in zip(Bidirectional._fields, cell_module))
        )
    if isinstance(cell_module, (tuple, list)):
        if not cell_module:
            raise ValueError("cell_module: expected at least one cell, got an empty sequence")
        return tuple(
            from_equinox(m) if isinstance(m, Bidirectional) else _from_cell(eqx, m, f"cell_module[{k}]")
            for k, m in enumerate(cell_module)
        )
    return _from_cell(eqx, cell_module, "cell_module")


def _to_cell(eqx, params, like, where: str):
    kind = cell_kind(params)
    if kind not in _CLASSES:
        raise ValueError(f"{where}: expected LSTMParams or GRUParams (Equinox has no vanilla RNN cell), got RNNParams")
    check_plain(params, "Equinox")
    G = 4 if kind == "lstm" else 3
    D, M = params.w_hh.shape[1], params.w_ih.shape[1]
    if params.w_ih.shape != (G * D, M) or params.w_hh.shape != (G * D, D) or params.b.shape != (G * D,):
        raise ValueError(
            f"{where}: expected w_ih ({G * D}, {M}), w_hh ({G * D}, {D}), b ({G * D},), got "
            f"{params.w_ih.shape}, {params.w_hh.shape}, {params.b.shape}"
        )
    cls = getattr(eqx.nn, _CLASSES[kind])
    if like is None:  # the module's structure only (eval_shape: no initialiser runs); every array is ours below
        like = eqx.filter_eval_shape(cls, M, D, use_bias=True, dtype=params.w_ih.dtype, key=jax.random.key(0))
    elif not isinstance(like, cls):
        raise ValueError(
            f"like: expected an eqx.nn.{_CLASSES[kind]} for {type(params).__name__}, got {_checks.describe(like)}"
        )
    elif (like.input_size, like.hidden_size) != (M, D):
        raise ValueError(
            f"like: expected an eqx.nn.{_CLASSES[kind]}({M}, {D}) (the parameters' sizes), got "
            f"({like.input_size}, {like.hidden_size})"
        )
    biases = ("b",) if kind == "lstm" else ("b", "b_hn")
    if not like.use_bias:
        for name in biases:
            if np.any(to_numpy(getattr(params, name)) != 0):
                raise ValueError(f"{where}.{name}: expected zeros for `like` with use_bias=False, got non-zero entries")
        return eqx.tree_at(lambda m: (m.weight_ih, m.weight_hh), like, (params.w_ih, params.w_hh))
    if kind == "lstm":
        return eqx.tree_at(lambda m: (m.weight_ih, m.weight_hh, m.bias), like, (params.w_ih, params.w_hh, params.b))
    return eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias, m.bias_n), like, (params.w_ih, params.w_hh, params.b, params.b_hn)
    )


def to_equinox(params, like=None):
    r"""An ``eqx.nn.LSTMCell`` / ``eqx.nn.GRUCell`` holding our parameters (the arrays themselves: no copy).

    Args:
      params: :class:`~lstm_jax.cells.LSTMParams` or :class:`~lstm_jax.cells.GRUParams`; a stack (tuple, one
        per layer) or a :class:`~lstm_jax.unroll.Bidirectional` pair gives the same structure of cells.
      like: ``None`` (a new cell with ``use_bias=True`` in the parameters' dtype; no key is needed, since
        nothing is drawn), or a cell (a structure of cells for a stack) of the same kind and sizes whose arrays
        are replaced (``eqx.tree_at``); with ``use_bias=False`` our biases must be zero.

    Raises:
      ValueError: RNN parameters (Equinox has no vanilla RNN cell), an LSTM with a projection, peepholes or
        layer norm, a ``like`` of another kind or size, non-zero biases for a ``like`` without bias.
    """
    eqx = _equinox()
    if isinstance(params, Bidirectional):
        like = like if like is not None else Bidirectional(None, None)
        return Bidirectional(
            *(_to_cell(eqx, p, m, f"params.{d}") for d, p, m in zip(Bidirectional._fields, params, like))
        )
    if isinstance(params, (tuple, list)) and not hasattr(params, "_fields"):
        like = like if like is not None else (None,) * len(params)
        if len(like) != len(params):
            raise ValueError(f"like: expected one cell per layer ({len(params)}), got {len(like)}")
        return tuple(to_equinox(p, m) for p, m in zip(params, like))
    return _to_cell(eqx, params, like, "params")
