r"""What every cell shares: the :class:`Cell` and :class:`Kernel` records, the input projection, checks, the head.

Parameters are NamedTuples of arrays in the article's column-vector layout (``W`` has shape
``(out, in)`` and acts as ``W x``; the code computes ``x @ W.T`` so any leading batch dimensions
work). Every cell's parameters start with the fields ``w_ih`` (input → gates), ``w_hh`` (state →
gates) and ``b``, with ``G·D`` rows where ``G`` is the number of gate blocks (1 for the RNN, 4 for
the LSTM, 3 for the GRU); a cell may add fields after them (the GRU's ``b_hn``, the LSTM variants'
projection, peepholes and layer-norm gains), its *extras*. ``w_hh`` has ``D`` columns, or ``P`` for a
cell whose state ``h`` is a projection of size ``P`` (``Cell.proj_size``).

Every step is split in two so that the input projection of all time steps can be one GEMM before
``lax.scan`` (see :mod:`lstm_jax.unroll`):

* ``project(params, x) = x W_ihᵀ + b``, the part that does not depend on the carry;
* ``recur(params, carry, z) -> (carry, h)``, the rest of the step, already in ``lax.scan`` order.

Each built-in cell writes its step once, as a :class:`Kernel`: the forward step and its hand-derived
backward step (the manual BPTT of :mod:`lstm_jax.bptt` and the fast path of :mod:`lstm_jax.fast`
both run it); :func:`cell_from_kernel` derives ``recur`` from the forward step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import _checks

Array = jax.Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
}

#: The output nonlinearity ``g`` of the head; "purlin" is MATLAB's name for the identity.
OUTPUT_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "softmax": jax.nn.softmax,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda o: o,
    "purlin": lambda o: o,
}


class DenseParams(NamedTuple):
    r"""An affine map :math:`o = V h + c`; the article's output head. ``b`` may be ``None`` (no c)."""

    w: Array  # (N, D)  the article's V
    b: Array | None  # (N,) the article's c


class StepGrads(NamedTuple):
    r"""What one backward step returns besides the previous carry's gradient.

    ``dz`` is :math:`\partial L/\partial z_t` for the input pre-activation :math:`z_t = W_{ih} x_t + b`
    (it gives :math:`\partial L/\partial W_{ih}`, :math:`\partial L/\partial b` and :math:`\partial L/\partial x_t`);
    ``da`` is :math:`\partial L/\partial a_t` for the recurrent pre-activation :math:`a_t = W_{hh} h_{t-1}`
    (it gives :math:`\partial L/\partial W_{hh}`), ``None`` where it equals ``dz`` (the gates are a plain
    sum :math:`z_t + a_t`: the RNN and the LSTM). The GRU's ``r ⊙ (a_n + b_hn)`` makes them differ.
    ``extra`` holds per-step gradients that only the extras' gradients need (the LSTM projection's
    :math:`\partial L/\partial h_t`); the loops stack it and zero it at padded steps like ``dz``.
    """

    dz: Array  # (*batch, G·D)
    da: Array | None = None  # (*batch, G·D), or None: the same as dz
    extra: Any = None  # what Kernel.extra_grads needs from each step besides dz and da (arrays (*batch, ·)), or None

    @property
    def recurrent(self) -> Array:
        r""":math:`\partial L/\partial a_t`, the factor of :math:`\partial L/\partial W_{hh} = \sum_t da_t h_{t-1}^\top`."""
        return self.dz if self.da is None else self.da


class Kernel(NamedTuple):
    """One cell's step written once, forward and backward (the hand-derived BPTT).

    ``extras`` below is the tuple of the cell's parameters after ``(w_ih, w_hh, b)`` (empty for the
    RNN and the LSTM, ``(b_hn,)`` for the GRU, the nine optional fields of an LSTM variant with ``None``
    for the options that are off).

    The kernel does a step's pointwise work; the caller does its matmul with ``W_hh``, forward
    (:math:`a_t = W_{hh} h_{t-1}`) and backward (:math:`W_{hh}^\top da_t`), so that every loop (the
    plain scan, the fast path, the manual BPTT) runs the same step, and an option that changes the
    recurrent operand (recurrent dropout) is written once, in the loop.

    Attributes:
      step: ``(a_t, extras, carry, z_t) -> (carry_t, saved_t)``: one forward step from the recurrent
        pre-activation ``a_t = W_hh h_{t-1}`` and the projected input ``z_t = W_ih x_t + b``;
        ``saved_t`` is what the backward step needs besides the carries (the LSTM's gate
        activations; ``None`` for the RNN).
      grad_step: ``(extras, dcarry_t, carry_t, carry_prev, saved_t) -> (dcarry_prev, StepGrads)``:
        given ``∂L/∂carry_t`` (the output gradient already added to its ``h``), the gradients of the
        pre-activations (:class:`StepGrads`) and of the previous carry through every path but
        :math:`a_t` (the caller adds :math:`W_{hh}^\top da_t` to its ``h``).
      hidden: ``carry -> h`` (the step's output and the operand of ``W_hh``).
      extra_grads: ``(extras, grads, carries, prev_carries, saved) -> d extras``, the extras' gradients
        from all steps' :class:`StepGrads` stacked (after the loop, as the weight GEMMs; ``None`` for an
        extra that is ``None``); ``None`` for a cell without extras.
    """

    step: Callable[[Array, tuple, Any, Array], tuple[Any, Any]]
    grad_step: Callable[[tuple, Any, Any, Any, Any], tuple[Any, StepGrads]]
    hidden: Callable[[Any], Array]
    extra_grads: Callable[..., tuple] | None = None


class Cell(NamedTuple):
    """A recurrent cell as pure functions, in the manner of optax's ``GradientTransformation``.

    Attributes:
      name: ``"rnn"``, ``"lstm"``, ``"gru"`` (used in messages).
      gates: number of ``D``-row blocks in ``w_ih``, ``w_hh`` and ``b`` (1, 4 or 3); 0 for a plain
        step function wrapped by :func:`lstm_jax.unroll.as_cell` (no parameter layout to check).
      project: ``(params, x[..., M]) -> z[..., G·D]``, the input projection ``x W_ihᵀ + b``.
      recur: ``(params, carry, z_t) -> (carry, h_t)``, the rest of one step.
      zeros: ``(params, batch_shape) -> carry`` of zeros, or ``None`` (the caller gives a carry).
      kernel: the :class:`Kernel` the step was derived from (the fast path and the manual BPTT run
        it), or ``None`` for a plain step function.
      extra_shapes: ``D -> {field: shape}`` of the parameters after ``(w_ih, w_hh, b)``; ``None``: none.
        A shape of ``None`` means the field must be ``None`` (an option of the cell that is off).
      proj_size: the size ``P`` of the state ``h`` (the operand of ``W_hh``, the output) when it is not
        the cell size ``D``: the LSTM with a projection; ``None``: ``h`` has ``D`` units.

    A ``Cell`` is hashable, so it can be a static argument: ``jax.jit(unroll, static_argnums=0)``.
    """

    name: str
    gates: int
    project: Callable[[Any, Array], Array]
    recur: Callable[[Any, Any, Array], tuple[Any, Array]]
    zeros: Callable[[Any, tuple[int, ...]], Any] | None
    kernel: Kernel | None = None
    extra_shapes: Callable[[int], dict[str, tuple[int, ...] | None]] | None = None
    proj_size: int | None = None


def extras(params) -> tuple:
    """The parameters after ``(w_ih, w_hh, b)``: the GRU's ``(b_hn,)``; ``()`` for the RNN and the LSTM;
    an LSTM variant's optional fields, ``None`` where its option is off."""
    return tuple(params[3:])


def matmul(a: Array, w: Array) -> Array:
    """``a @ w``; when ``w`` is narrower (16-bit), ``a`` is cast to it and the product accumulates in ``a``'s dtype.

    That is the ``compute_dtype`` option: matmul operands in bfloat16, the rest (the cell state, the
    pointwise work, the sums) in the parameters' float32. (A ``compute_dtype`` wider than the
    parameters is rejected by :func:`lstm_jax.unroll.unroll`.)
    """
    if a.dtype == w.dtype:
        return a @ w
    return jnp.matmul(a.astype(w.dtype), w, preferred_element_type=a.dtype)


def cell_from_kernel(name: str, gates: int, kernel: Kernel, zeros, extra_shapes=None, proj_size=None) -> Cell:
    """A :class:`Cell` whose ``recur`` is ``kernel.step`` (the step is written once, in the kernel)."""

    def recur(params, carry, z):
        a = kernel.hidden(carry) @ params.w_hh.T  # W_hh h_{t-1}
        new, _ = kernel.step(a, extras(params), carry, z)
        return new, kernel.hidden(new)

    return Cell(name, gates, project_input, recur, zeros, kernel, extra_shapes, proj_size)


def sum_rows(dz: Array) -> Array:
    r""":math:`\sum_{t,b} dz_{t,b}` over all leading axes (steps and batch entries), accumulated in float32
    at least (a bias gradient :math:`\partial L/\partial b`)."""
    return dz.sum(tuple(range(dz.ndim - 1)), dtype=_checks.accumulation_dtype(dz.dtype)).astype(dz.dtype)


def sum_outer(dy: Array, a: Array) -> Array:
    r""":math:`\sum_{t,b} dy_{t,b}\, a_{t,b}^\top` over all leading axes as one GEMM, accumulated in float32 at
    least (a weight gradient formed after the loop, such as the LSTM projection's :math:`\partial L/\partial W_{hr}`)."""
    acc = _checks.accumulation_dtype(dy.dtype)
    dy, a = dy.reshape(-1, dy.shape[-1]), a.reshape(-1, a.shape[-1])
    return jnp.einsum("np,nd->pd", dy, a, preferred_element_type=acc).astype(dy.dtype)


def sigmoid(x: Array) -> Array:
    r""":math:`\sigma(x) = \tfrac12 + \tfrac12\tanh(x/2)`, the form :func:`~lstm_jax.cells.lstm_activations` uses
    (the same values to rounding; on the CPU XLA's logistic costs more than a ``tanh``)."""
    return 0.5 * jnp.tanh(0.5 * x) + 0.5


def carry_is_hidden(h: Array) -> Array:
    """``Kernel.hidden`` of a cell whose carry is its hidden state (the RNN, the GRU)."""
    return h


def zeros_like_state(params, batch_shape: tuple[int, ...]) -> Array:
    """A zero hidden state ``(*batch, D)`` in the parameters' dtype (``D = w_hh.shape[1]``)."""
    return jnp.zeros((*batch_shape, params.w_hh.shape[1]), params.w_hh.dtype)


def add_bias(y: Array, b: Array) -> Array:
    """``y + b`` over the last axis, with ``b``'s rank made explicit (no implicit rank promotion)."""
    return y + b.reshape((1,) * (y.ndim - b.ndim) + b.shape)


def project_input(params, x: Array) -> Array:
    r""":math:`z = W_{ih} x + b` for any leading dimensions of ``x``; shared by every cell."""
    return add_bias(jnp.einsum("...m,gm->...g", x, params.w_ih), params.b)


# ----------------------------------------------------------------------------------------------
# Checks shared by the single step and the unroll.


def check_params(cell: Cell, params) -> tuple[int, int]:
    """Validate a cell's parameters and return ``(D, M)``: hidden and input sizes."""
    fields = ("w_ih", "w_hh", "b")
    if not all(hasattr(params, name) for name in fields):
        every = ", ".join((*fields, *(cell.extra_shapes(1) if cell.extra_shapes else {})))  # the names only
        raise ValueError(
            f"{cell.name} params: expected a NamedTuple with fields ({every}), got {type(params).__name__}"
        )
    for name in fields:
        _checks.check_floating(f"params.{name}", getattr(params, name))
    G, P = cell.gates, cell.proj_size
    rows = f"{G}·D" if G > 1 else "D"
    cols = "D" if P is None else "P"
    _checks.check_ndim("params.w_hh", params.w_hh, 2, f"({rows}, {cols})")
    if P is None:  # D from the columns: h has D units
        D = params.w_hh.shape[1]
        _checks.check_shape("params.w_hh", params.w_hh, (G * D, D), f"({rows}, D) with D={D}")
    else:  # D from the rows: h is a projection of size P
        D = params.w_hh.shape[0] // G
        _checks.check_shape("params.w_hh", params.w_hh, (G * D, P), f"({rows}, P) with D={D}, P={P}")
    _checks.check_ndim("params.w_ih", params.w_ih, 2, f"({rows}, M)")
    M = params.w_ih.shape[1]
    _checks.check_shape("params.w_ih", params.w_ih, (G * D, M), f"({rows}, M) with D={D}")
    _checks.check_shape("params.b", params.b, (G * D,), f"({rows},) with D={D}")
    extra = cell.extra_shapes(D) if cell.extra_shapes else {}
    if tuple(getattr(params, "_fields", ())) != (*fields, *extra):
        expected = ", ".join((*fields, *extra))
        raise ValueError(
            f"{cell.name} params: expected a NamedTuple with fields ({expected}), got {type(params).__name__}"
            f"{tuple(getattr(params, '_fields', ()))}"
        )
    used = [name for name, shape in extra.items() if shape is not None]
    for name, shape in extra.items():
        value = getattr(params, name)
        if shape is None:  # an option of the cell that is off
            if value is not None:
                raise ValueError(f"params.{name}: expected None for {cell.name}, got {_checks.describe(value)}")
            continue
        if value is None:
            raise ValueError(f"params.{name}: expected an array of shape {shape} for {cell.name}, got None")
        _checks.check_floating(f"params.{name}", value)
        meaning = f"with D={D}" if P is None else f"with D={D}, P={P}"
        _checks.check_shape(f"params.{name}", value, shape, meaning)
    for name in ("w_ih", "b", *used):
        _checks.check_same_dtype(f"params.{name}", getattr(params, name), params.w_hh.dtype)
    return D, M


def check_carry(cell: Cell, params, carry, batch_shape: tuple[int, ...]) -> None:
    """Validate a carry against the structure, shape and dtype of ``cell.zeros`` (shapes only, no arrays)."""
    expected = jax.eval_shape(lambda: cell.zeros(params, batch_shape))
    if jax.tree.structure(carry) != jax.tree.structure(expected):
        raise ValueError(
            f"carry: expected {jax.tree.structure(expected)} for the {cell.name}, got {jax.tree.structure(carry)}"
        )
    for path, leaf in jax.tree_util.tree_leaves_with_path(carry):
        ref = _leaf_at(expected, path)
        projected = cell.proj_size is not None and path == (jax.tree_util.GetAttrKey("h"),)  # h of P units
        _checks.check_shape("carry", leaf, ref.shape, "(*batch, P)" if projected else "(*batch, D)")
        _checks.check_same_dtype("carry", leaf, ref.dtype)


def _leaf_at(tree, path):
    """The leaf of ``tree`` at a ``tree_leaves_with_path`` path."""
    for key in path:
        tree = getattr(tree, key.name) if isinstance(key, jax.tree_util.GetAttrKey) else tree[key.idx]
    return tree


def check_input(params, x, min_ndim: int, meaning: str) -> None:
    """Validate inputs: floating, the parameters' dtype, at least ``min_ndim`` dims, last dim ``M``."""
    _checks.check_array("inputs", x)
    _checks.check_floating("inputs", x)
    _checks.check_same_dtype("inputs", x, params.w_ih.dtype)
    _checks.check_ndim("inputs", x, min_ndim, meaning)
    M = params.w_ih.shape[1]
    if x.shape[-1] != M:
        raise ValueError(f"inputs: expected last dimension M={M} (params.w_ih.shape[1]), got shape {x.shape}")


def step(cell: Cell, params, carry, x: Array):
    """One checked step of ``cell``: ``recur(params, carry, project(params, x))``."""
    check_params(cell, params)
    check_input(params, x, 1, "(..., M)")
    check_carry(cell, params, carry, x.shape[:-1])
    return cell.recur(params, carry, cell.project(params, x))


def dense(params: DenseParams, h: Array) -> Array:
    r""":math:`o = V h + c` for any leading dimensions of ``h`` (``c`` omitted when ``params.b`` is None)."""
    _checks.check_floating("params.w", params.w)
    if jnp.ndim(params.w) != 2:
        raise ValueError(f"params.w: expected 2 dimensions (N, D), got shape {jnp.shape(params.w)}")
    _checks.check_array("inputs", h)
    _checks.check_floating("inputs", h)
    _checks.check_same_dtype("inputs", h, params.w.dtype)
    if h.shape[-1:] != params.w.shape[1:]:
        raise ValueError(
            f"inputs: expected last dimension D={params.w.shape[1]} (params.w.shape[1]), got shape {h.shape}"
        )
    o = jnp.einsum("...d,nd->...n", h, params.w)
    if params.b is not None:
        _checks.check_shape("params.b", params.b, params.w.shape[:1], "(N,)")
        _checks.check_same_dtype("params.b", params.b, params.w.dtype)
        o = add_bias(o, params.b)
    return o


def head(params: DenseParams, h: Array, activation: str = "identity") -> Array:
    r"""The article's output :math:`y_t = g(V h_t + c)`, ``g`` one of :data:`OUTPUT_ACTIVATIONS`.

    For training, keep the logits :func:`dense` and use a loss from logits (:mod:`lstm_jax.losses`).
    """
    _checks.check_choice("activation", activation, OUTPUT_ACTIVATIONS)
    return OUTPUT_ACTIVATIONS[activation](dense(params, h))
