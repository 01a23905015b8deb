r"""flax nnx modules over our fast path: :class:`LSTM`, :class:`GRU` and :class:`SimpleRNN`, called as ``nnx.RNN``.

The nnx twins of :mod:`lstm_jax.modules.linen` (read its docstring for the conventions: the carry in
flax's order, zeros at padded steps, ``reverse``/``keep_order``, dropout), built as nnx cells are
(``in_features``, ``hidden_features``, ``rngs``) and called as ``nnx.RNN``::

    from flax import nnx
    from lstm_jax.modules import nnx as ljnnx

    rnn = nnx.RNN(nnx.OptimizedLSTMCell(3, 64, rngs=nnx.Rngs(0)))  # flax
    rnn = ljnnx.LSTM(3, 64, rngs=nnx.Rngs(0))                        # ours: the same call
    (c, h), y = rnn(x, seq_lengths=lengths, return_carry=True)

    rnn = ljnnx.LSTM.from_flax(flax_rnn)   # flax's weights (nnx.RNN / nnx.Bidirectional, or a list)
    layers = rnn.to_layers()                # the init_layers tuple, for lstm_jax.interop or unroll_layers

Parameters are one ``nnx.Param`` per array, under the paths of the linen module's params
(``layer_0/w_ih``, ``layer_1/forward/w_hh``, ...: ``nnx.state(module, nnx.Param).to_pure_dict()``
equals linen's ``variables["params"]``). Dropout the nnx way: ``deterministic`` an attribute (default
``False``; ``module.eval()`` sets it) or a call argument, the masks from the ``rngs`` given at
construction (its ``dropout`` stream) or to the call.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from lstm_jax import _checks
from lstm_jax.cells import RNN_CELLS
from lstm_jax.modules import _core
from lstm_jax.unroll import Bidirectional

Array = jax.Array


class _Cell(nnx.Module):
    """One direction of one layer: an ``nnx.Param`` per array of our parameters (``w_ih``, ``w_hh``, ``b``, ...)."""

    def __init__(self, params):
        self.names = tuple(name for name, value in params._asdict().items() if value is not None)
        for name in self.names:
            setattr(self, name, nnx.Param(getattr(params, name)))

    def tree(self) -> dict[str, Array]:
        return {name: _value(getattr(self, name)) for name in self.names}


class _Bidirectional(nnx.Module):
    """A bidirectional layer: its ``forward`` and ``backward`` :class:`_Cell`."""

    def __init__(self, layer: Bidirectional):
        self.forward = _Cell(layer.forward)
        self.backward = _Cell(layer.backward)

    def tree(self) -> dict[str, dict[str, Array]]:
        return {"forward": self.forward.tree(), "backward": self.backward.tree()}


def _value(variable: nnx.Variable) -> Array:
    """A variable's array (``get_value`` where flax has it: ``.value`` is deprecated from flax 0.12)."""
    get = getattr(variable, "get_value", None)
    return get() if get is not None else variable.value


def _module_of(layer) -> nnx.Module:
    return _Bidirectional(layer) if isinstance(layer, Bidirectional) else _Cell(layer)


def _key(rngs, where: str) -> Array:
    """A key from an ``nnx.Rngs`` (its ``dropout`` stream), an ``nnx.RngStream`` or a key."""
    if isinstance(rngs, nnx.Rngs):
        return rngs.dropout()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    if rngs is None:
        raise ValueError(
            f"{where}: expected nnx.Rngs to draw dropout masks (give rngs to the constructor or the call, "
            "or deterministic=True), got None"
        )
    _checks.check_key(rngs, where)
    return rngs


class Recurrent(nnx.Module):
    r"""A stack of recurrent layers over :func:`lstm_jax.unroll.unroll_layers`; use :class:`LSTM`,
    :class:`GRU` or :class:`SimpleRNN`.

    Args:
      in_features: input features ``M``.
      hidden_features: units ``D`` per layer (and direction).
      num_layers, bidirectional, dropout, input_dropout, recurrent_dropout, zoneout_h, zoneout_c, impl,
        remat, unroll, compute_dtype, input_init, recurrent_init, param_dtype, time_major, return_carry,
        reverse, keep_order: as the attributes of :class:`lstm_jax.modules.linen.Recurrent`.
      deterministic: no dropout (zoneout by its expectation) when ``True``; ``module.eval()`` sets it.
      rngs: ``nnx.Rngs``: ``params`` draws the parameters, ``dropout`` (or ``default``) the masks.
      cell_options: the cell's own options (the subclasses pass them).
      layers: parameters to hold (an :func:`~lstm_jax.init.init_layers` tuple) instead of drawing them;
        :meth:`from_layers` passes them with the sizes read from them.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        zoneout_h: float = 0.0,
        zoneout_c: float = 0.0,
        impl: str = "auto",
        remat: str | int | None = None,
        unroll: int | bool | None = None,
        compute_dtype: Any = None,
        input_init: str = "fan_in",
        recurrent_init: str = "orthogonal",
        param_dtype: Any = jnp.float32,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        deterministic: bool = False,
        rngs: nnx.Rngs,
        cell_options: dict[str, Any] | None = None,
        layers: tuple | None = None,
    ):
        if not self.kind:
            raise ValueError("Recurrent: expected a subclass with a cell (LSTM, GRU, SimpleRNN), got the base class")
        rates = dict(
            dropout=dropout,
            input_dropout=input_dropout,
            recurrent_dropout=recurrent_dropout,
            zoneout_h=zoneout_h,
            zoneout_c=zoneout_c,
        )
        self.stack = _core.check_stack(
            self.kind,
            features=hidden_features,
            num_layers=num_layers,
            bidirectional=bidirectional,
            rates=rates,
            impl=impl,
            remat=remat,
            unroll=unroll,
            compute_dtype=compute_dtype,
            input_init=input_init,
            recurrent_init=recurrent_init,
            cell_options=cell_options or {},
        )
        self.in_features = _checks.check_int("in_features", in_features, 1)
        self.time_major, self.return_carry = time_major, return_carry
        self.reverse, self.keep_order = reverse, keep_order
        self.deterministic = deterministic
        if layers is None:
            size, layers = in_features, []
            for key in jax.random.split(rngs.params(), num_layers):
                layers.append(_core.init_layer(self.stack, key, size, param_dtype))
                size = _core.output_size(layers[-1])
        for k, layer in enumerate(layers):
            setattr(self, f"layer_{k}", _module_of(layer))
        self.rngs = rngs.dropout.fork() if self.stack.rates.active else None

    def to_layers(self) -> tuple:
        """The parameters as the :func:`~lstm_jax.init.init_layers` tuple (for :mod:`lstm_jax.interop`, ``unroll_layers``)."""
        return tuple(
            _core.layer_from_tree(
                self.stack.kind, getattr(self, f"layer_{k}").tree(), self.stack.bidirectional, f"layer_{k}"
            )
            for k in range(self.stack.num_layers)
        )

    @classmethod
    def from_layers(cls, layers, *, rngs: nnx.Rngs | None = None, **options):
        """A module holding ``layers`` (an :func:`~lstm_jax.init.init_layers` tuple, e.g. from :mod:`lstm_jax.interop`).

        ``in_features``, ``hidden_features``, ``num_layers``, ``bidirectional`` (and the LSTM's
        ``proj_size``, ``peepholes``, ``layer_norm``) are read from the layers; ``options`` are the
        other constructor arguments; ``rngs`` only matters for dropout (default ``nnx.Rngs(0)``).
        """
        tree = _core.tree_from_layers(layers)  # checks the structure
        layers = _core.layers_from_tree(tree, cls.kind)  # checks the cell (names the layer)
        first = layers[0].forward if isinstance(layers[0], Bidirectional) else layers[0]
        read = dict(num_layers=len(layers), bidirectional=isinstance(layers[0], Bidirectional))
        read.update(cls._options_of(first))
        clash = sorted(set(read) & set(options))
        if clash:
            raise ValueError(f"options: expected none of {clash} (read from the layers), got them")
        hidden = first.w_hh.shape[0] // {"lstm": 4, "gru": 3, "rnn": 1}[cls.kind]
        module = cls(
            first.w_ih.shape[1], hidden, rngs=nnx.Rngs(0) if rngs is None else rngs, layers=layers, **read, **options
        )
        module.to_layers()  # every layer has the cell's fields and the module's bidirectional
        return module

    @classmethod
    def _options_of(cls, params) -> dict[str, Any]:
        """The cell options the parameters fix (the LSTM's projection, peepholes, layer norm)."""
        return {}

    @classmethod
    def from_flax(cls, rnns, *, rngs: nnx.Rngs | None = None, **options):
        """A module holding the weights of flax's ``nnx.RNN(cell)`` or ``nnx.Bidirectional`` (or a list, one per
        layer), bit-exact (:func:`lstm_jax.interop.from_nnx` per cell; a ``SimpleCell``'s ``activation_fn`` is
        read too); ``options`` as :meth:`from_layers`. The LSTM's ``forget_bias`` only sets a new module's
        initial bias: the converted bias is flax's."""
        from lstm_jax.interop import flax_cells

        per_layer = list(rnns) if isinstance(rnns, (list, tuple)) else [rnns]
        layers, cells = [], []
        for k, rnn in enumerate(per_layer):
            try:
                if isinstance(rnn, nnx.Bidirectional):
                    layers.append(
                        Bidirectional(
                            flax_cells.from_nnx(rnn.forward_rnn.cell), flax_cells.from_nnx(rnn.backward_rnn.cell)
                        )
                    )
                    cells += [rnn.forward_rnn.cell, rnn.backward_rnn.cell]
                elif isinstance(rnn, nnx.RNN):
                    layers.append(flax_cells.from_nnx(rnn.cell))
                    cells.append(rnn.cell)
                else:
                    raise ValueError(f"expected an nnx.RNN or nnx.Bidirectional, got {_checks.describe(rnn)}")
            except ValueError as error:
                raise ValueError(f"rnns[{k}]: {error}") from None
        read = cls._options_of_flax([flax_cells.flax_cell(cell) for cell in cells])
        return cls.from_layers(tuple(layers), rngs=rngs, **{**read, **options})

    @classmethod
    def _options_of_flax(cls, cells) -> dict[str, Any]:
        """The options that flax's cells fix besides their parameters (the simple cell's activation)."""
        return {}

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
        rngs=None,
    ):
        """Run the stack over ``inputs`` as ``nnx.RNN`` runs a cell (:meth:`lstm_jax.modules.linen.Recurrent.__call__`);
        ``rngs``: an ``nnx.Rngs``, ``nnx.RngStream`` or key for this call's dropout masks."""
        stack = self.stack
        training = _core.training_mode(stack, self.deterministic if deterministic is None else deterministic)
        key = _key(self.rngs if rngs is None else rngs, "rngs") if training and stack.rates.active else None
        return _core.apply(
            stack,
            self.to_layers(),
            inputs,
            initial_carry=initial_carry,
            seq_lengths=seq_lengths,
            return_carry=self.return_carry if return_carry is None else return_carry,
            time_major=self.time_major if time_major is None else time_major,
            reverse=self.reverse if reverse is None else reverse,
            keep_order=self.keep_order if keep_order is None else keep_order,
            key=key,
            training=training,
        )


class LSTM(Recurrent):
    r"""LSTM layers (:class:`lstm_jax.modules.linen.LSTM`), a drop-in for ``nnx.RNN(nnx.OptimizedLSTMCell(M, D))``.

    Args (besides :class:`Recurrent`'s): ``forget_bias`` (1.0; flax's 0), ``proj_size``, ``peepholes``, ``layer_norm``.
    """

    kind: ClassVar[str] = "lstm"

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        forget_bias: float = 1.0,
        proj_size: int | None = None,
        peepholes: bool = False,
        layer_norm: bool = False,
        **kwargs,
    ):
        options = dict(forget_bias=forget_bias, proj_size=proj_size, peepholes=peepholes, layer_norm=layer_norm)
        super().__init__(in_features, hidden_features, cell_options=options, **kwargs)

    @classmethod
    def _options_of(cls, params) -> dict[str, Any]:
        if not hasattr(params, "w_hr"):  # LSTMParams: no option
            return {}
        return dict(
            proj_size=None if params.w_hr is None else params.w_hr.shape[0],
            peepholes=params.p_i is not None,
            layer_norm=params.gamma_z is not None,
        )


class GRU(Recurrent):
    r"""GRU layers (:class:`lstm_jax.modules.linen.GRU`), a drop-in for ``nnx.RNN(nnx.GRUCell(M, D))``
    (whose cell has no :math:`b_{hn}`: converted, ours is zero).

    Args (besides :class:`Recurrent`'s): ``update_bias`` (0.0).
    """

    kind: ClassVar[str] = "gru"

    def __init__(self, in_features: int, hidden_features: int, *, update_bias: float = 0.0, **kwargs):
        super().__init__(in_features, hidden_features, cell_options=dict(update_bias=update_bias), **kwargs)


class SimpleRNN(Recurrent):
    r"""Simple RNN layers (:class:`lstm_jax.modules.linen.SimpleRNN`), a drop-in for ``nnx.RNN(nnx.SimpleCell(M, D))``.

    Args (besides :class:`Recurrent`'s): ``activation`` (``"tanh"``, ``"relu"``, ``"sigmoid"``).
    """

    kind: ClassVar[str] = "rnn"

    def __init__(self, in_features: int, hidden_features: int, *, activation: str = "tanh", **kwargs):
        super().__init__(in_features, hidden_features, cell_options=dict(activation=activation), **kwargs)

    @classmethod
    def _options_of_flax(cls, cells) -> dict[str, Any]:
        activations = {name for name, cell in RNN_CELLS.items() for ours in cells if ours is cell}
        if len(activations) != 1:
            raise ValueError(f"rnns: expected one activation_fn in every SimpleCell, got {sorted(activations)}")
        return dict(activation=activations.pop())
