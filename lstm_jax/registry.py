"""The built-in cells by name: one entry per cell, the only place that lists them.

Each :class:`CellType` holds what the rest of the package needs to know about a cell: how to make
its :class:`~lstm_jax.cells.Cell` (the step, its hand-derived backward step, how to read ``h`` from
its carry: ``cell.kernel``), how to initialise its parameters, and which model options it reads.
:mod:`lstm_jax.models`, :mod:`lstm_jax.config` (which config keys a cell uses), :mod:`lstm_jax.train`
(the manual gradients) and :mod:`lstm_jax.gradcheck` all read from here, so adding a cell is one
module in :mod:`lstm_jax.cells`, one initialiser and one entry below; an unknown name is an error,
never a fallback.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from lstm_jax import _checks
from lstm_jax.cells import Cell, gru_cell, lstm_cell, rnn_cell
from lstm_jax.init import init_gru, init_lstm, init_rnn


class CellType(NamedTuple):
    """A built-in cell, by name.

    Attributes:
      name: the config's ``model.cell``.
      make: ``(**options) -> Cell``.
      init: ``(key, input_size, hidden_size, **init_options, **layout_options, ...) -> params``.
      options: the keyword arguments of ``make`` (model config keys, e.g. the RNN's ``activation``, the
        LSTM's ``proj_size``, ``peepholes``, ``layer_norm``).
      init_options: the keyword arguments of ``init`` that only this cell reads (the LSTM's ``forget_bias``, the GRU's ``update_bias``).
      layout_options: the ``options`` that ``init`` reads too, since they change which parameters the cell
        has (the LSTM's options; not the RNN's ``activation``). ``make`` and ``init`` must get the same values.
    """

    name: str
    make: Callable[..., Cell]
    init: Callable[..., Any]
    options: tuple[str, ...] = ()
    init_options: tuple[str, ...] = ()
    layout_options: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every cell-specific option this cell reads."""
        return self.options + self.init_options


#: The LSTM's options (:func:`lstm_jax.cells.lstm_cell`): projection, peepholes, layer normalisation.
LSTM_OPTIONS = ("proj_size", "peepholes", "layer_norm")

CELL_TYPES: dict[str, CellType] = {
    "rnn": CellType("rnn", rnn_cell, init_rnn, options=("activation",)),
    "lstm": CellType(
        "lstm",
        lstm_cell,
        init_lstm,
        options=LSTM_OPTIONS,
        init_options=("forget_bias",),
        layout_options=LSTM_OPTIONS,
    ),
    "gru": CellType("gru", gru_cell, init_gru, init_options=("update_bias",)),
}

#: The cell names, in the order of :data:`CELL_TYPES`.
CELLS: tuple[str, ...] = tuple(CELL_TYPES)
#: Every cell's ``make`` options, each once (:class:`lstm_jax.models.ModelSpec` has a field of each name).
OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(key for entry in CELL_TYPES.values() for key in entry.options))


def cell_type(name: str) -> CellType:
    """The entry called ``name`` (one of :data:`CELLS`); a ValueError naming the choices otherwise."""
    _checks.check_choice("cell", name, CELLS)
    return CELL_TYPES[name]


def make_cell(name: str, **options: Any) -> Cell:
    """The :class:`~lstm_jax.cells.Cell` called ``name``, given the options it reads (others are ignored:
    callers pass a whole model spec; :func:`key_users` says which option each cell reads)."""
    entry = cell_type(name)
    return entry.make(**{key: options[key] for key in entry.options if key in options})


def key_users() -> dict[str, tuple[str, ...]]:
    """``{option: the cells that read it}`` for every cell-specific option."""
    users: dict[str, tuple[str, ...]] = {}
    for entry in CELL_TYPES.values():
        for key in entry.keys:
            users[key] = users.get(key, ()) + (entry.name,)
    return users


def init_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without the cell-specific ones that cell ``name``'s ``init`` does not read (its
    ``init_options`` and ``layout_options`` stay, as do options no cell claims: ``recurrent_init``, ``dtype``)."""
    entry = cell_type(name)
    reads = entry.init_options + entry.layout_options
    return {key: value for key, value in options.items() if key not in key_users() or key in reads}
