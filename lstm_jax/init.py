r"""Parameter initialisers, chosen by name, with explicit PRNG keys.

Weights are ``(out, in)`` matrices (the article's layout). Gate-stacked matrices ``(G·D, in)`` are
initialised one ``(D, in)`` block at a time, so an orthogonal recurrent matrix is orthogonal per
gate, as flax linen's ``LSTMCell`` and ``OptimizedLSTMCell`` are (Keras's ``recurrent_kernel`` and
flax nnx's fused ``OptimizedLSTMCell`` and ``GRUCell`` draw one orthogonal matrix over all the gates).

=================  ==============================================================================
name               distribution of each block ``(D, fan_in)``, with gain ``scale``
=================  ==============================================================================
``orthogonal``     ``scale · Q``, Q with orthonormal rows or columns (Saxe et al. 2014)
``fan_in``         truncated normal, variance ``scale² / fan_in`` (LeCun; flax's default kernel)
``scaled_normal``  normal, variance ``scale² / fan_in``: a square matrix then has spectral
                   radius ≈ ``scale`` (the vanishing/exploding-gradient experiments, Pascanu 2013)
``uniform``        ``U(-scale/√fan_in, scale/√fan_in)``; PyTorch's ``nn.RNN``/``nn.LSTM`` draw
                   every weight and bias from ``U(-1/√D, 1/√D)``: the same for ``w_hh``, not
                   for ``w_ih`` when M ≠ D, and our biases start at 0
``zeros``          zeros
=================  ==============================================================================
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.cells import (
    GRU_GATE_ORDER,
    LSTM_GATE_ORDER,
    DenseParams,
    GRUParams,
    LSTMParams,
    LSTMVariantParams,
    RNNParams,
)
from lstm_jax.cells.lstm_variants import LSTMOptions
from lstm_jax.cells.lstm_variants import check_options as check_lstm_options
from lstm_jax.unroll import Bidirectional

Array = jax.Array
Initializer = Callable[[Array, tuple[int, ...], jnp.dtype], Array]

# Our matrices are (out, in): tell jax.nn.initializers which axis is fan-in.
_AXES = dict(in_axis=-1, out_axis=-2)


def _uniform(scale: float) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        bound = scale / jnp.sqrt(shape[-1]).astype(dtype)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


_FACTORIES: dict[str, Callable[[float], Initializer]] = {
    "orthogonal": lambda s: jax.nn.initializers.orthogonal(scale=s),
    "fan_in": lambda s: jax.nn.initializers.variance_scaling(s**2, "fan_in", "truncated_normal", **_AXES),
    "scaled_normal": lambda s: jax.nn.initializers.variance_scaling(s**2, "fan_in", "normal", **_AXES),
    "uniform": _uniform,
    "zeros": lambda s: jax.nn.initializers.zeros,
}

INITIALIZERS = tuple(sorted(_FACTORIES))


def initializer(name: str, scale: float = 1.0) -> Initializer:
    """The initialiser called ``name`` (one of :data:`INITIALIZERS`) with gain ``scale``."""
    _checks.check_choice("initializer", name, INITIALIZERS)
    return _FACTORIES[name](scale)


def _blocks(key: Array, init: Initializer, gates: int, rows: int, cols: int, dtype) -> Array:
    """``gates`` independent ``(rows, cols)`` blocks stacked along the rows.

    Drawn in at least float32 and then cast, so bf16/fp16 parameters work with every initialiser
    (the QR behind ``orthogonal`` has no 16-bit kernel).
    """
    keys = jax.random.split(key, gates)
    draw_dtype = jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype
    return jnp.concatenate([init(k, (rows, cols), draw_dtype) for k in keys], axis=0).astype(dtype)


def _check_key_and_sizes(key, **sizes: int) -> None:
    """A PRNG key and sizes that are ints >= 1 (a float or a string would fail inside JAX, a bool pass)."""
    _checks.check_key(key)
    for name, size in sizes.items():
        _checks.check_int(name, size, 1)


def _cell_weights(
    key,
    gates,
    input_size,
    hidden_size,
    input_init,
    input_scale,
    recurrent_init,
    recurrent_scale,
    dtype,
    state_size=None,
):
    """``w_ih`` ``(G·D, M)`` and ``w_hh`` ``(G·D, state_size)`` (``state_size``: ``D`` unless ``h`` is a projection)."""
    _check_key_and_sizes(key, input_size=input_size, hidden_size=hidden_size)
    _checks.check_floating("dtype", dtype)
    k_ih, k_hh = jax.random.split(key)
    w_ih = _blocks(k_ih, initializer(input_init, input_scale), gates, hidden_size, input_size, dtype)
    cols = hidden_size if state_size is None else state_size
    w_hh = _blocks(k_hh, initializer(recurrent_init, recurrent_scale), gates, hidden_size, cols, dtype)
    return w_ih, w_hh


def init_rnn(
    key: Array,
    input_size: int,
    hidden_size: int,
    *,
    input_init: str = "fan_in",
    input_scale: float = 1.0,
    recurrent_init: str = "orthogonal",
    recurrent_scale: float = 1.0,
    dtype=jnp.float32,
) -> RNNParams:
    """Simple-RNN parameters: W ``(D, M)`` and U ``(D, D)`` by name, b = 0."""
    w_ih, w_hh = _cell_weights(
        key, 1, input_size, hidden_size, input_init, input_scale, recurrent_init, recurrent_scale, dtype
    )
    return RNNParams(w_ih, w_hh, jnp.zeros((hidden_size,), dtype))


def init_lstm(
    key: Array,
    input_size: int,
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    proj_size: int | None = None,
    peepholes: bool = False,
    layer_norm: bool = False,
    input_init: str = "fan_in",
    input_scale: float = 1.0,
    recurrent_init: str = "orthogonal",
    recurrent_scale: float = 1.0,
    dtype=jnp.float32,
) -> LSTMParams | LSTMVariantParams:
    """LSTM parameters, gates (i, f, g, o); biases 0 except ``b_f = forget_bias``.

    A forget-gate bias of 1 (Gers et al. 2000; Jozefowicz et al. 2015) starts the cell state with
    a per-step retention of σ(1) ≈ 0.73 instead of 0.5.

    With any option of :func:`lstm_jax.cells.lstm_cell` (pass the same ones to both), the parameters are
    :class:`~lstm_jax.cells.LSTMVariantParams`:

    * ``proj_size=P`` (``1 <= P < hidden_size``, PyTorch's rule): ``w_hh`` ``(4D, P)`` drawn by
      ``recurrent_init`` per gate block, ``w_hr`` ``(P, D)`` by ``fan_in`` (variance ``1/D``);
    * ``peepholes``: ``p_i, p_f, p_o`` zero, so the cell starts as the plain LSTM;
    * ``layer_norm``: gains ``gamma_z, gamma_a, gamma_c`` one and ``beta_c`` zero (PyTorch's
      ``nn.LayerNorm``); the forget bias goes into the gates' bias ``beta`` (after the normalisations),
      and ``b``, a shift before the input normalisation, is zero.
    """
    options = check_lstm_options(proj_size, peepholes, layer_norm)
    w_ih, w_hh = _cell_weights(  # the plain LSTM's draws: an option whose extras start at 0 starts as that LSTM
        key,
        4,
        input_size,
        hidden_size,
        input_init,
        input_scale,
        recurrent_init,
        recurrent_scale,
        dtype,
        options.proj_size,
    )
    if options.proj_size is not None and options.proj_size >= hidden_size:
        raise ValueError(f"proj_size: expected an int < hidden_size ({hidden_size}), as PyTorch, got {proj_size}")
    forget = jnp.zeros((4, hidden_size), dtype).at[LSTM_GATE_ORDER.index("f")].set(forget_bias).reshape(-1)
    if options == LSTMOptions():
        return LSTMParams(w_ih, w_hh, forget)
    D, zeros, ones = hidden_size, jnp.zeros((hidden_size,), dtype), jnp.ones((hidden_size,), dtype)
    fields = {}
    if options.proj_size is not None:
        k_hr = jax.random.fold_in(key, 1)  # independent of the draws of w_ih and w_hh
        fields["w_hr"] = _blocks(k_hr, initializer("fan_in"), 1, options.proj_size, D, dtype)
    if options.peepholes:
        fields.update(p_i=zeros, p_f=zeros, p_o=zeros)
    if options.layer_norm:
        gains = jnp.ones((4 * D,), dtype)
        fields.update(gamma_z=gains, gamma_a=gains, beta=forget, gamma_c=ones, beta_c=zeros)
    b = jnp.zeros_like(forget) if options.layer_norm else forget
    return LSTMVariantParams(w_ih, w_hh, b, **fields)


def init_gru(
    key: Array,
    input_size: int,
    hidden_size: int,
    *,
    input_init: str = "fan_in",
    input_scale: float = 1.0,
    recurrent_init: str = "orthogonal",
    recurrent_scale: float = 1.0,
    update_bias: float = 0.0,
    dtype=jnp.float32,
) -> GRUParams:
    """GRU parameters, gates (r, u, n), each block drawn apart (an orthogonal ``W_hr``, ``W_hu``, ``W_hn``);
    biases 0 (``b`` and ``b_hn``), as flax's ``GRUCell`` and Keras's ``GRU`` start, except ``b_u = update_bias``.

    ``update_bias = 1`` starts the update gate at σ(1) ≈ 0.73, the share of :math:`h_{t-1}` each step keeps:
    the GRU's counterpart of the LSTM's forget bias 1 (its success rate on temporal order at T = 100 against
    the default's: ``experiments/README.md``, "initial gate biases")."""
    w_ih, w_hh = _cell_weights(
        key, 3, input_size, hidden_size, input_init, input_scale, recurrent_init, recurrent_scale, dtype
    )
    b = jnp.zeros((3, hidden_size), dtype).at[GRU_GATE_ORDER.index("u")].set(update_bias).reshape(-1)
    return GRUParams(w_ih, w_hh, b, jnp.zeros((hidden_size,), dtype))


def init_dense(
    key: Array, input_size: int, output_size: int, *, use_bias: bool = True, init: str = "fan_in", dtype=jnp.float32
) -> DenseParams:
    """Head parameters V ``(N, D)`` by name and c = 0 ``(N,)`` (or None without bias)."""
    _check_key_and_sizes(key, input_size=input_size, output_size=output_size)
    use_bias = _checks.check_bool("use_bias", use_bias)
    _checks.check_floating("dtype", dtype)
    w = _blocks(key, initializer(init), 1, output_size, input_size, dtype)
    return DenseParams(w, jnp.zeros((output_size,), dtype) if use_bias else None)


def init_layers(
    key: Array,
    init_fn: Callable[..., RNNParams | LSTMParams | GRUParams],
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    bidirectional: bool = False,
    **kwargs,
) -> tuple:
    """Parameters for :func:`lstm_jax.unroll.unroll_layers`: ``num_layers`` layers of ``init_fn``.

    Layer 0 reads ``input_size`` features; later layers read the previous layer's outputs:
    ``hidden_size`` of them (``proj_size`` with an LSTM projection), twice that when bidirectional.
    ``kwargs`` go to ``init_fn`` (e.g. ``forget_bias``, ``proj_size``).
    """
    _check_key_and_sizes(key, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
    bidirectional = _checks.check_bool("bidirectional", bidirectional)
    if not callable(init_fn):
        raise ValueError(f"init_fn: expected a function such as init_lstm or init_rnn, got {_checks.describe(init_fn)}")
    layers = []
    for k in jax.random.split(key, num_layers):
        if bidirectional:
            k_f, k_b = jax.random.split(k)
            layer = Bidirectional(
                init_fn(k_f, input_size, hidden_size, **kwargs), init_fn(k_b, input_size, hidden_size, **kwargs)
            )
        else:
            layer = init_fn(k, input_size, hidden_size, **kwargs)
        layers.append(layer)
        input_size = layer_output_size(layer)
    return tuple(layers)


def layer_output_size(layer) -> int:
    """The number of features a layer outputs: its ``h`` (``w_hh.shape[1]``: ``D``, or ``P`` with a
    projection), both directions' for a :class:`~lstm_jax.unroll.Bidirectional` layer."""
    if isinstance(layer, Bidirectional):
        return layer_output_size(layer.forward) + layer_output_size(layer.backward)
    return layer.w_hh.shape[1]
