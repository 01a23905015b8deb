r"""flax linen modules over our fast path: :class:`LSTM`, :class:`GRU` and :class:`SimpleRNN`, called as ``nn.RNN``.

Each module is a whole recurrent stack (``num_layers``, ``bidirectional``, dropout between the layers)
run by :func:`lstm_jax.unroll.unroll_layers` (:func:`lstm_jax.unroll.unroll` for one layer), so a model
gets the hoisted input projection, the ``custom_vjp`` backward pass, ``remat`` and ``impl`` of the
library. It replaces a flax recurrent layer with the same call::

    import flax.linen as nn
    from lstm_jax.modules import linen as ljnn

    rnn = nn.RNN(nn.OptimizedLSTMCell(64))            # flax
    rnn = ljnn.LSTM(64)                               # ours: the same call, the same outputs
    y = rnn.apply(variables, x, seq_lengths=lengths)  # x (*batch, T, M) -> y (*batch, T, 64)
    (c, h), y = rnn.apply(variables, x, return_carry=True)

    nn.Bidirectional(nn.RNN(nn.GRUCell(32)), nn.RNN(nn.GRUCell(32)))  # flax
    ljnn.GRU(32, bidirectional=True)                                    # ours

Flax's weights convert with :func:`from_flax` (one ``nn.RNN`` or ``nn.Bidirectional``, or a list of
them, one per layer); ours with :func:`from_layers` (an :func:`~lstm_jax.init.init_layers` tuple, e.g.
from :mod:`lstm_jax.interop`) and back with :func:`to_layers`.

===================  ==============================================  ==============================================
                     ``nn.RNN(cell)`` / ``nn.Bidirectional``          these modules
===================  ==============================================  ==============================================
call                 ``(inputs, *, initial_carry, init_key,          the same, less ``init_key`` (the carry starts
                     seq_lengths, return_carry, time_major,          at zeros), plus ``deterministic``
                     reverse, keep_order)``
carry                LSTM ``(c, h)``; GRU, SimpleCell ``h``;          the same (flax's order: a drop-in); an
                     Bidirectional ``(forward, backward)``           ``LSTMState(h, c)`` is also accepted;
                                                                     ``num_layers > 1``: a tuple, one per layer
outputs at padding   not zeroed (the cell ran on)                    zeros
``reverse=True``     reversed within each length, outputs in         the same (bidirectional: refused, its backward
                     reversed order unless ``keep_order``            half already reads in reverse)
parameters           per-gate ``Dense`` kernels ``(M, D)``           ours: ``{"layer_k": {"w_ih" (G·D, M),
                                                                     "w_hh" (G·D, D), "b" (G·D,), ...}}``
initialisation       lecun normal, orthogonal, zero biases           the same distributions (``fan_in``,
                                                                     ``orthogonal``); LSTM ``forget_bias=1.0``
inputs' dtype        promoted with the parameters'                   cast to the parameters' dtype
===================  ==============================================  ==============================================

Dropout the flax way: the rates are attributes, ``deterministic`` an attribute or a call argument (the
call's wins; required when a rate is set), and the masks come from the ``'dropout'`` rng stream
(``module.apply(variables, x, deterministic=False, rngs={"dropout": key})``). ``dropout`` drops the
outputs between stacked layers (PyTorch's ``dropout``); ``input_dropout`` and ``recurrent_dropout`` are
Gal & Ghahramani's per-sequence masks (Keras's ``dropout`` and ``recurrent_dropout``), ``zoneout_h`` and
``zoneout_c`` zoneout (:mod:`lstm_jax.dropout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from lstm_jax.modules import _core
from lstm_jax.unroll import Bidirectional

Array = jax.Array


class Recurrent(nn.Module):
    r"""A stack of recurrent layers over :func:`lstm_jax.unroll.unroll_layers`; use :class:`LSTM`,
    :class:`GRU` or :class:`SimpleRNN`.

    Attributes:
      features: units ``D`` per layer (and direction).
      num_layers: stacked layers; layer ``l`` reads the outputs of layer ``l-1``.
      bidirectional: each layer runs both ways and outputs ``[h_fwd; h_bwd]`` (``2D`` features), as
        ``nn.Bidirectional(nn.RNN(cell), nn.RNN(cell))`` with flax's default merge.
      dropout: rate of the dropout of each layer's outputs but the last's (``num_layers > 1``).
      input_dropout, recurrent_dropout, zoneout_h, zoneout_c: the other rates of :mod:`lstm_jax.dropout`
        (``zoneout_c``: the LSTM only).
      impl: ``"auto"``, ``"fast"``, ``"scan"``, ``"pallas"`` (LSTM, GPU) or ``"pallas_interpret"``
        (:func:`lstm_jax.unroll.unroll`); all give the same numbers.
      remat: ``None``, ``"step"``, ``"sqrt"`` or a chunk length: checkpointing for long sequences.
      unroll: ``lax.scan``'s unroll factor; ``None``: the backend's default.
      compute_dtype: ``None`` or e.g. ``"bfloat16"``: the matmul operands' dtype on the fast path.
      input_init, recurrent_init: initialisers of ``w_ih`` and ``w_hh`` by name (:mod:`lstm_jax.init`).
      param_dtype: the parameters' dtype (inputs and carries are cast to it).
      time_major, return_carry, reverse, keep_order: defaults of the call arguments, as ``nn.RNN``'s.
      deterministic: no dropout (and zoneout by its expectation) when ``True``; the call argument wins.
    """

    features: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout_h: float = 0.0
    zoneout_c: float = 0.0
    impl: str = "auto"
    remat: str | int | None = None
    unroll: int | bool | None = None
    compute_dtype: Any = None
    input_init: str = "fan_in"
    recurrent_init: str = "orthogonal"
    param_dtype: Any = jnp.float32
    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False
    deterministic: bool | None = None

    #: The registry's cell name (:mod:`lstm_jax.registry`).
    kind: ClassVar[str] = ""

    def cell_options(self) -> dict[str, Any]:
        """The cell's own options (the registry entry's make and init options)."""
        return {}

    def __post_init__(self):
        super().__post_init__()
        self.stack()  # errors at construction, each naming the attribute

    @nn.nowrap
    def stack(self) -> _core.Stack:
        """The checked configuration (:class:`lstm_jax.modules._core.Stack`)."""
        if not self.kind:
            raise ValueError("Recurrent: expected a subclass with a cell (LSTM, GRU, SimpleRNN), got the base class")
        return _core.check_stack(
            self.kind,
            features=self.features,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            rates={name: getattr(self, name) for name in _core.RATES},
            impl=self.impl,
            remat=self.remat,
            unroll=self.unroll,
            compute_dtype=self.compute_dtype,
            input_init=self.input_init,
            recurrent_init=self.recurrent_init,
            cell_options=self.cell_options(),
        )

    @nn.compact
    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry=None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        deterministic: bool | None = None,
    ):
        """Run the stack over ``inputs`` as ``nn.RNN`` runs a cell.

        Args:
          inputs: ``(*batch, T, M)``, or ``(T, *batch, M)`` with ``time_major``.
          initial_carry: ``None`` (zeros) or the carry in flax's form (module docstring).
          seq_lengths: optional integers ``(*batch)``: valid steps per sequence (right padding).
          return_carry, time_major, reverse, keep_order: as ``nn.RNN``'s; ``None``: the attribute.
          deterministic: ``None``: the attribute.

        Returns:
          ``outputs`` ``(*batch, T, F)`` (``F = D``, ``2D`` bidirectional, ``proj_size`` with a projection;
          zeros at padded steps), or ``(carry, outputs)`` with ``return_carry``.
        """
        stack = self.stack()
        time_major = self.time_major if time_major is None else time_major
        inputs, _ = _core.check_inputs(inputs, None, bool(time_major), self.param_dtype)
        layers, input_size = [], inputs.shape[-1]
        for k in range(stack.num_layers):
            tree = self.param(
                f"layer_{k}",
                lambda key, size: _core.tree_from_layer(_core.init_layer(stack, key, size, self.param_dtype)),
                input_size,
            )
            layers.append(_core.layer_from_tree(stack.kind, tree, stack.bidirectional, f"params.layer_{k}"))
            input_size = _core.output_size(layers[-1])
        training = _core.training_mode(stack, self.deterministic if deterministic is None else deterministic)
        key = self.make_rng("dropout") if training and stack.rates.active else None
        return _core.apply(
            stack,
            tuple(layers),
            inputs,
            initial_carry=initial_carry,
            seq_lengths=seq_lengths,
            return_carry=self.return_carry if return_carry is None else return_carry,
            time_major=time_major,
            reverse=self.reverse if reverse is None else reverse,
            keep_order=self.keep_order if keep_order is None else keep_order,
            key=key,
            training=training,
        )


class LSTM(Recurrent):
    r"""LSTM layers (gates i, f, g, o; :func:`lstm_jax.cells.lstm_cell`), a drop-in for ``nn.RNN(nn.OptimizedLSTMCell(D))``.

    .. math::
       [z_i; z_f; z_g; z_o] = W_{ih} x_t + b + W_{hh} h_{t-1}, \quad
       c_t = \sigma(z_f) \odot c_{t-1} + \sigma(z_i) \odot \tanh(z_g), \quad h_t = \sigma(z_o) \odot \tanh(c_t)

    Attributes (besides :class:`Recurrent`'s):
      forget_bias: the initial bias of the forget gate (flax starts at 0; 1 is Gers et al.'s advice).
      proj_size, peepholes, layer_norm: the LSTM's options (:func:`lstm_jax.cells.lstm_cell`); with
        ``proj_size=P`` the outputs and ``h`` have ``P`` features (PyTorch's ``proj_size``).
    """

    forget_bias: float = 1.0
    proj_size: int | None = None
    peepholes: bool = False
    layer_norm: bool = False

    kind: ClassVar[str] = "lstm"

    def cell_options(self) -> dict[str, Any]:
        return dict(
            forget_bias=self.forget_bias, proj_size=self.proj_size, peepholes=self.peepholes, layer_norm=self.layer_norm
        )


class GRU(Recurrent):
    r"""GRU layers (gates r, u, n, reset after the matmul; :func:`lstm_jax.cells.gru_cell`), a drop-in for
    ``nn.RNN(nn.GRUCell(D))``.

    .. math::
       r_t, u_t = \sigma(W_{i\{r,u\}} x_t + b_{\{r,u\}} + W_{h\{r,u\}} h_{t-1}), \quad
       n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})), \quad
       h_t = (1 - u_t) \odot n_t + u_t \odot h_{t-1}

    Attributes (besides :class:`Recurrent`'s):
      update_bias: the initial bias of the update gate (flax: 0).
    """

    update_bias: float = 0.0

    kind: ClassVar[str] = "gru"

    def cell_options(self) -> dict[str, Any]:
        return dict(update_bias=self.update_bias)


class SimpleRNN(Recurrent):
    r"""Simple RNN layers, :math:`h_t = f(W_{ih} x_t + b + W_{hh} h_{t-1})` (:func:`lstm_jax.cells.rnn_cell`),
    a drop-in for ``nn.RNN(nn.SimpleCell(D))``.

    Attributes (besides :class:`Recurrent`'s):
      activation: ``f``: ``"tanh"`` (flax's), ``"relu"`` or ``"sigmoid"``.
    """

    activation: str = "tanh"

    kind: ClassVar[str] = "rnn"

    def cell_options(self) -> dict[str, Any]:
        return dict(activation=self.activation)


def from_layers(layers) -> dict:
    """The variables ``{"params": {"layer_0": ...}}`` of a module holding ``layers`` (an
    :func:`~lstm_jax.init.init_layers` tuple; arrays are shared, not copied)."""
    return {"params": _core.tree_from_layers(layers)}


def to_layers(variables) -> tuple:
    """The :func:`~lstm_jax.init.init_layers` tuple of a module's variables (``{"params": ...}`` or the params);
    the cell is read from the arrays (``b_hn``: GRU; ``w_hh`` with 4 or 1 row blocks: LSTM or RNN)."""
    return _core.layers_from_tree(variables)


def _flax_layer(variables, cell, where: str):
    """One layer's parameters of an ``nn.RNN``'s or an ``nn.Bidirectional``'s variables."""
    from lstm_jax.interop import flax_cells

    tree = variables["params"] if isinstance(variables, Mapping) and set(variables) == {"params"} else variables
    try:
        if isinstance(tree, Mapping) and set(tree) == {"forward_rnn", "backward_rnn"}:
            return Bidirectional(
                flax_cells.from_flax(tree["forward_rnn"], cell=cell),
                flax_cells.from_flax(tree["backward_rnn"], cell=cell),
            )
        return flax_cells.from_flax(variables, cell=cell)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def from_flax(variables, *, cell) -> dict:
    r"""Our module's variables from flax's, bit-exact (:func:`lstm_jax.interop.from_flax` per cell).

    Args:
      variables: the variables of one ``nn.RNN(cell)`` (``{"params": {"cell": ...}}``), of one
        ``nn.Bidirectional(nn.RNN(cell), nn.RNN(cell))`` (``{"params": {"forward_rnn": {"cell": ...},
        "backward_rnn": {"cell": ...}}}``), or a list of either, one per layer of a stack (the params
        without the ``"params"`` level are taken too).
      cell: the flax cell: ``"OptimizedLSTMCell"``, ``"LSTMCell"``, ``"GRUCell"``, ``"SimpleCell"``, its
        class or an instance (:func:`lstm_jax.interop.from_flax`).

    Returns:
      ``{"params": {"layer_0": ...}}`` for :class:`LSTM` / :class:`GRU` / :class:`SimpleRNN` with
      ``num_layers`` the number of layers given and ``bidirectional`` as they are; ``module.apply`` of it
      gives flax's outputs (at the valid steps) and carries.
    """
    per_layer = list(variables) if isinstance(variables, (list, tuple)) else [variables]
    if not per_layer:
        raise ValueError("variables: expected one nn.RNN's or nn.Bidirectional's variables, or a list of them, got []")
    where = "variables" if len(per_layer) == 1 and not isinstance(variables, (list, tuple)) else "variables[{k}]"
    return from_layers(tuple(_flax_layer(v, cell, where.format(k=k)) for k, v in enumerate(per_layer)))


def to_flax(variables, *, cell=None):
    """flax's variables of our module's (bit-exact; the inverse of :func:`from_flax`): one layer's
    ``{"params": {"cell": ...}}`` (or ``{"params": {"forward_rnn": ..., "backward_rnn": ...}}`` when
    bidirectional), a list of them with several layers. ``cell``: the flax cell to fill (default: the
    ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell`` of the parameters)."""
    from lstm_jax.interop import flax_cells

    out = []
    for layer in to_layers(variables):
        if isinstance(layer, Bidirectional):
            directions = {
                "forward_rnn": flax_cells.to_flax(layer.forward, cell=cell, wrap_rnn=True)["params"],
                "backward_rnn": flax_cells.to_flax(layer.backward, cell=cell, wrap_rnn=True)["params"],
            }
            out.append({"params": directions})
        else:
            out.append(flax_cells.to_flax(layer, cell=cell, wrap_rnn=True))
    return out[0] if len(out) == 1 else out
