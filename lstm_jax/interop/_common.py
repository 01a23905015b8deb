r"""What every converter shares: gate-block reordering, checked reads of a foreign library's tensors,
and the layer stack that :func:`lstm_jax.init.init_layers` builds.

Our layout (every cell, :mod:`lstm_jax.cells`): ``w_ih (G·D, M)``, ``w_hh (G·D, D or P)``, ``b (G·D,)``
with the gate blocks stacked along the rows in :data:`OUR_GATES` order; one bias (a peer's two biases
are summed, :math:`b = b_{ih} + b_{hh}`, except the GRU's candidate :math:`b_{hn}`, which sits inside
:math:`r \odot (\cdot)` and stays its own field). A converter never reorders or drops anything
silently: every foreign tensor is read through a :class:`TensorReader`, which names the tensor in every
error and refuses tensors it was not asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from lstm_jax import _checks
from lstm_jax.cells import GRUParams, LSTMParams, LSTMVariantParams, RNNParams
from lstm_jax.unroll import Bidirectional

#: Our gate order per cell kind (rows of ``w_ih``, ``w_hh`` and ``b``); the GRU's update gate is PyTorch's ``z``.
OUR_GATES: dict[str, tuple[str, ...]] = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}

#: The floating dtypes a foreign tensor may have.
FLOATING = ("float16", "bfloat16", "float32", "float64")


def to_numpy(x) -> np.ndarray:
    """A NumPy array of a foreign tensor: a torch tensor (detached, on the CPU), a JAX, TF or Keras
    array or variable, or anything ``np.asarray`` reads. Nothing is cast."""
    if hasattr(x, "detach"):  # a torch.Tensor (NumPy has no bfloat16: such a tensor is refused)
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            raise ValueError(
                "tensor: expected a float16/float32/float64 torch tensor, got torch.bfloat16 (cast it first)"
            )
        return x.numpy()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray) and not hasattr(x, "__jax_array__"):
        try:
            return np.asarray(x.numpy())
        except TypeError:
            pass
    return np.asarray(x)


def reorder_gates(w, source: Sequence[str], target: Sequence[str], axis: int = 0):
    """``w`` with its gate blocks along ``axis`` moved from ``source`` order to ``target`` order.

    ``source`` and ``target`` hold the same gate names (e.g. Keras's ``"ifco"`` as ``("i","f","g","o")``);
    ``w.shape[axis]`` must split into ``len(source)`` equal blocks. Works on NumPy and JAX arrays.
    """
    source, target = tuple(source), tuple(target)
    if sorted(source) != sorted(target):
        raise ValueError(f"gate order: expected the same gates in {source} and {target}")
    size = w.shape[axis]
    if size % len(source):
        raise ValueError(
            f"gate blocks: expected axis {axis} of length a multiple of {len(source)}, got shape {w.shape}"
        )
    blocks = np.split(w, len(source), axis=axis) if isinstance(w, np.ndarray) else jnp.split(w, len(source), axis=axis)
    by_name = dict(zip(source, blocks))
    parts = [by_name[g] for g in target]
    return np.concatenate(parts, axis=axis) if isinstance(w, np.ndarray) else jnp.concatenate(parts, axis=axis)


class TensorReader:
    """Checked reads from a mapping ``name -> tensor`` of a foreign library (a state dict, a flat param dict).

    ``take(name, shape)`` returns the tensor as a NumPy array, raising a ``ValueError`` that names the
    tensor when it is missing, has another shape, is not floating, or has another dtype than the
    tensors read before it. ``finish()`` raises if tensors were left unread (nothing is dropped silently).
    ``source`` names the mapping in messages (e.g. ``"the torch state dict"``).
    """

    def __init__(self, tensors: Mapping[str, Any], source: str):
        if not isinstance(tensors, Mapping):
            raise ValueError(
                f"{source}: expected a mapping of tensor names to tensors, got {_checks.describe(tensors)}"
            )
        self.tensors = dict(tensors)
        self.source = source
        self.read: set[str] = set()
        self.dtype: np.dtype | None = None

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.tensors:
            raise ValueError(f"{name}: expected it in {self.source} (which has {sorted(self.tensors)}), missing")
        x = to_numpy(self.tensors[name])
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")
        if x.dtype.name not in FLOATING:
            raise ValueError(f"{name}: expected a floating dtype ({', '.join(FLOATING)}), got {x.dtype}")
        if self.dtype is None:
            self.dtype = x.dtype
        elif x.dtype != self.dtype:
            raise ValueError(f"{name}: expected dtype {self.dtype} like the tensors before it, got {x.dtype}")
        self.read.add(name)
        return x

    def finish(self) -> None:
        unread = sorted(set(self.tensors) - self.read)
        if unread:
            raise ValueError(f"{self.source}: expected only the tensors of the model, got unused tensors {unread}")


def cell_kind(params) -> str:
    """``"rnn"``, ``"lstm"`` or ``"gru"`` for one layer's (one direction's) parameters."""
    if isinstance(params, RNNParams):
        return "rnn"
    if isinstance(params, (LSTMParams, LSTMVariantParams)):
        return "lstm"
    if isinstance(params, GRUParams):
        return "gru"
    raise ValueError(
        f"params: expected RNNParams, LSTMParams, LSTMVariantParams or GRUParams, got {type(params).__name__}"
    )


def check_plain(params, target: str, *, projection: bool = False) -> None:
    """Raise unless an LSTM's options are ones ``target`` has: the projection when ``projection``,
    never peepholes or layer normalisation."""
    if not isinstance(params, LSTMVariantParams):
        return
    unsupported = [name for name in ("p_i", "gamma_z") if getattr(params, name) is not None]
    if params.w_hr is not None and not projection:
        unsupported.insert(0, "w_hr")
    if unsupported:
        raise ValueError(
            f"params: {target} has no LSTM with {unsupported} (projection/peepholes/layer norm), got them set"
        )


def layer_stack(layers) -> tuple[str, int, bool]:
    """``(cell kind, num_layers, bidirectional)`` of a stack as :func:`~lstm_jax.init.init_layers` builds it:
    a tuple of one cell's parameters per layer, or of :class:`~lstm_jax.unroll.Bidirectional` pairs."""
    if not isinstance(layers, (tuple, list)) or not layers:
        raise ValueError(
            f"layers: expected a non-empty tuple of layer parameters (init_layers), got {_checks.describe(layers)}"
        )
    bidirectional = isinstance(layers[0], Bidirectional)
    kinds = set()
    for k, layer in enumerate(layers):
        if isinstance(layer, Bidirectional) != bidirectional:
            raise ValueError(
                f"layers[{k}]: expected every layer {'' if bidirectional else 'not '}Bidirectional like layers[0]"
            )
        for direction in layer if bidirectional else (layer,):
            kinds.add(cell_kind(direction))
    if len(kinds) > 1:
        raise ValueError(f"layers: expected one cell kind in every layer, got {sorted(kinds)}")
    return kinds.pop(), len(layers), bidirectional


def directions(layer) -> tuple:
    """``(forward,)`` or ``(forward, backward)`` of one layer."""
    return (layer.forward, layer.backward) if isinstance(layer, Bidirectional) else (layer,)


def stack(per_layer: Sequence[Sequence]) -> tuple:
    """The stack of :func:`layer_stack` from one ``(forward,)`` or ``(forward, backward)`` tuple per layer."""
    return tuple(Bidirectional(*d) if len(d) == 2 else d[0] for d in per_layer)


def as_jax(x: np.ndarray, dtype=None) -> jnp.ndarray:
    """A NumPy array as a JAX array, in ``dtype`` if given (else its own)."""
    return jnp.asarray(x, dtype=dtype)
