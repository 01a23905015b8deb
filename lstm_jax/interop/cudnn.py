r"""``jax.experimental.rnn``'s flat weight vector (cuDNN's layout) in and out: an LSTM stack only.

``jax.experimental.rnn.lstm`` runs cuDNN's LSTM (GPU, float32) on one opaque vector of parameters;
``lstm_ref`` is the reference it is tested against and ``unpack_lstm_weights`` cuts the vector up.
Verified against the source of jax 0.10.2 and 0.12.0.1 (``jax/experimental/rnn.py``, the same file).

A bidirectional stack of ``L`` layers has ``2L`` *pseudo-layers* ``p = 2k + d`` (layer ``k``, direction
``d``: 0 forward, 1 reverse); one direction has ``p = k``. The vector holds, each matrix row-major:

.. math::
   \big(W_{ih}^{0}, W_{hh}^{0}, W_{ih}^{1}, W_{hh}^{1}, \dots,\;
        b_{ih}^{0}, b_{hh}^{0}, b_{ih}^{1}, b_{hh}^{1}, \dots\big)

every matrix first, then every bias: ``W_ih^p (4D, M)`` for layer 0 and ``(4D, dirs·D)`` above it,
``W_hh^p (4D, D)``, ``b_ih^p`` and ``b_hh^p (4D,)``, the gate blocks in the order ``i, f, g, o`` (ours,
PyTorch's). Its length is ``get_num_params_in_lstm(M, D, L, bidirectional)``. The map to ours:

===========================================  ====================================================================
cuDNN (pseudo-layer ``p = dirs·k + d``)      ours (``layers[k]``, or its ``.forward`` / ``.backward``)
===========================================  ====================================================================
``W_ih^p``, ``W_hh^p``                       ``w_ih``, ``w_hh`` as they are
``b_ih^p + b_hh^p``                          ``b`` (on export ``b_ih = b``, ``b_hh = 0``)
``h_0[p]``, ``c_0[p]``                       ``LSTMState(h, c)`` of the layer and direction (:func:`carry_from_cudnn`)
===========================================  ====================================================================

The reverse direction reads each sequence backwards within its length, as ours does; outputs are
``[h_fwd; h_bwd]`` and zero at padded steps in both. A stack with a projection, peepholes or layer
normalisation, a GRU or a simple RNN has no cuDNN vector here (``jax.experimental.rnn`` has the plain
LSTM only) and is refused. Everything is ``jax.numpy``: :func:`to_cudnn` and :func:`from_cudnn` work
under ``jit`` and ``grad`` (train our parameters through the cuDNN kernel)::

    y, h_n, c_n = jax.experimental.rnn.lstm(x, h_0, c_0, to_cudnn(layers), seq_lengths,
                                            **cudnn_sizes(layers), dropout=0.0)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.cells import LSTMParams, LSTMState, LSTMVariantParams
from lstm_jax.interop._common import FLOATING, check_plain, directions, layer_stack, stack, to_numpy

_GATES = 4  # the LSTM's: i, f, g, o


def _pieces(input_size: int, hidden_size: int, num_layers: int, bidirectional: bool) -> list[tuple[str, tuple]]:
    """``(name, shape)`` of every tensor in the vector, in its order (``W_ih[p]``, ``W_hh[p]``, ..., ``b_ih[p]``, ...)."""
    dirs = 2 if bidirectional else 1
    rows, pseudo = _GATES * hidden_size, range(num_layers * dirs)
    weights = []
    for p in pseudo:
        weights.append((f"W_ih[{p}]", (rows, input_size if p < dirs else dirs * hidden_size)))
        weights.append((f"W_hh[{p}]", (rows, hidden_size)))
    biases = [(f"{name}[{p}]", (rows,)) for p in pseudo for name in ("b_ih", "b_hh")]
    return weights + biases


def num_params(input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False) -> int:
    """The vector's length: ``jax.experimental.rnn.get_num_params_in_lstm``'s, without importing it."""
    return sum(_size(shape) for _, shape in _pieces(input_size, hidden_size, num_layers, bidirectional))


def _size(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _check_sizes(input_size, hidden_size, num_layers, bidirectional) -> tuple[int, int, int, bool]:
    return (
        _checks.check_int("input_size", input_size, 1),
        _checks.check_int("hidden_size", hidden_size, 1),
        _checks.check_int("num_layers", num_layers, 1),
        _checks.check_bool("bidirectional", bidirectional),
    )


def from_cudnn(weights, *, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False):
    r"""Our LSTM stack (what :func:`~lstm_jax.init.init_layers` builds) from ``jax.experimental.rnn``'s vector.

    Args:
      weights: the 1-D vector ``jax.experimental.rnn.lstm`` takes (``init_lstm_weight``'s), any floating
        dtype (cuDNN's kernel takes float32).
      input_size, hidden_size, num_layers, bidirectional: the arguments ``jax.experimental.rnn.lstm``
        was called with.

    Returns:
      A tuple of ``num_layers`` :class:`~lstm_jax.cells.LSTMParams` (or
      :class:`~lstm_jax.unroll.Bidirectional` pairs) in the vector's dtype, each ``b = b_ih + b_hh``.
      Run it with ``unroll_layers(lstm_cell(), layers, x, lengths=seq_lengths)``.

    Raises:
      ValueError: ``weights`` is not a floating vector of :func:`num_params` numbers (the message says
        which sizes it was expecting), or a size is not a positive integer.
    """
    M, D, L, bidirectional = _check_sizes(input_size, hidden_size, num_layers, bidirectional)
    w = weights if isinstance(weights, jax.Array) else jnp.asarray(to_numpy(weights))
    expected = num_params(M, D, L, bidirectional)
    sizes = f"input_size={M}, hidden_size={D}, num_layers={L}, bidirectional={bidirectional}"
    if w.ndim != 1 or w.shape[0] != expected:
        raise ValueError(
            f"weights: expected a vector of {expected} numbers (get_num_params_in_lstm with {sizes}), "
            f"got shape {tuple(w.shape)}"
        )
    if jnp.dtype(w.dtype).name not in FLOATING:
        raise ValueError(f"weights: expected a floating dtype ({', '.join(FLOATING)}), got {w.dtype}")
    tensors, offset = {}, 0
    for name, shape in _pieces(M, D, L, bidirectional):
        tensors[name] = w[offset : offset + _size(shape)].reshape(shape)
        offset += _size(shape)
    dirs = 2 if bidirectional else 1
    per_layer = []
    for k in range(L):
        pseudo = [dirs * k + d for d in range(dirs)]
        per_layer.append(
            tuple(
                LSTMParams(tensors[f"W_ih[{p}]"], tensors[f"W_hh[{p}]"], tensors[f"b_ih[{p}]"] + tensors[f"b_hh[{p}]"])
                for p in pseudo
            )
        )
    return stack(per_layer)


def _check_stack(layers) -> tuple[int, int, int, bool]:
    """``(M, D, L, bidirectional)`` of a plain LSTM stack whose every layer has the sizes cuDNN's layout needs."""
    kind, L, bidirectional = layer_stack(layers)
    if kind != "lstm":
        raise ValueError(f"layers: expected an LSTM stack (jax.experimental.rnn has only the LSTM), got {kind}")
    first = directions(layers[0])[0]
    D, M = first.w_hh.shape[1], first.w_ih.shape[1]
    dirs = 2 if bidirectional else 1
    for k, layer in enumerate(layers):
        for direction, params in zip(("forward", "backward"), directions(layer)):
            where = f"layers[{k}]" + (f".{direction}" if bidirectional else "")
            if isinstance(params, LSTMVariantParams):
                try:
                    check_plain(params, "jax.experimental.rnn")
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from None
            expected = {
                "w_ih": (_GATES * D, M if k == 0 else dirs * D),
                "w_hh": (_GATES * D, D),
                "b": (_GATES * D,),
            }
            for field, shape in expected.items():
                got = tuple(jnp.shape(getattr(params, field)))
                if got != shape:
                    raise ValueError(
                        f"{where}.{field}: expected shape {shape} (cuDNN: every layer of hidden size {D}, "
                        f"layer 0 reading {M} features, the others {dirs * D}), got {got}"
                    )
    return M, D, L, bidirectional


def cudnn_sizes(layers) -> dict:
    """The keyword arguments of ``jax.experimental.rnn.lstm`` for our stack: ``input_size``, ``hidden_size``,
    ``num_layers``, ``bidirectional``."""
    M, D, L, bidirectional = _check_stack(layers)
    return {"input_size": M, "hidden_size": D, "num_layers": L, "bidirectional": bidirectional}


def to_cudnn(layers) -> jax.Array:
    r"""``jax.experimental.rnn``'s flat vector of our LSTM stack (the inverse of :func:`from_cudnn`, bit-exact).

    ``layers``: what :func:`~lstm_jax.init.init_layers` builds with ``init_lstm`` (no projection,
    peepholes or layer normalisation), every layer of one hidden size. Each ``b`` becomes ``b_ih``,
    ``b_hh`` is zero. Returns a JAX vector of :func:`num_params` numbers in the parameters' dtype;
    :func:`cudnn_sizes` gives the sizes ``jax.experimental.rnn.lstm`` needs.
    """
    _check_stack(layers)
    params = [p for layer in layers for p in directions(layer)]  # pseudo-layer order: layer, then direction
    dtype = jnp.result_type(*(p.w_ih for p in params))
    parts = [jnp.ravel(m) for p in params for m in (p.w_ih, p.w_hh)]
    parts += [v for p in params for v in (jnp.asarray(p.b), jnp.zeros_like(p.b))]
    return jnp.concatenate([jnp.asarray(x, dtype) for x in parts])


def carry_from_cudnn(h, c, *, bidirectional: bool = False) -> tuple:
    """Our per-layer carries from cuDNN's ``h, c`` of shape ``(dirs·num_layers, B, D)`` (``h_0, c_0`` or ``h_n, c_n``).

    Returns a tuple with one :class:`~lstm_jax.cells.LSTMState` per layer (a ``Bidirectional`` pair of
    them when ``bidirectional``): ``unroll_layers``'s ``carry0``, and the form of its final carries.
    """
    bidirectional = _checks.check_bool("bidirectional", bidirectional)
    dirs = 2 if bidirectional else 1
    if jnp.ndim(h) != 3 or jnp.shape(h) != jnp.shape(c) or jnp.shape(h)[0] % dirs:
        raise ValueError(
            f"h, c: expected two arrays (dirs·num_layers, B, D) alike, with dirs={dirs}, "
            f"got shapes {tuple(jnp.shape(h))} and {tuple(jnp.shape(c))}"
        )
    per_layer = [
        tuple(LSTMState(h[dirs * k + d], c[dirs * k + d]) for d in range(dirs)) for k in range(jnp.shape(h)[0] // dirs)
    ]
    return stack(per_layer)


def carry_to_cudnn(carries) -> tuple[jax.Array, jax.Array]:
    """cuDNN's ``(h, c)``, each ``(dirs·num_layers, B, D)``, from one :class:`~lstm_jax.cells.LSTMState` per layer
    (or ``Bidirectional`` pair): ``unroll_layers``'s final carries, or a ``carry0``."""
    states = [state for layer in carries for state in directions(layer)]
    if not states or not all(isinstance(s, LSTMState) for s in states):
        raise ValueError(
            f"carries: expected one LSTMState (or Bidirectional pair of them) per layer, got {_checks.describe(carries)}"
        )
    return jnp.stack([s.h for s in states]), jnp.stack([s.c for s in states])
