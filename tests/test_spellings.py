"""Every spelling of a built-in cell is the same ``Cell``, with the fast path's kernel.

``rnn_cell`` used to be an ``lru_cache`` over a ``functools.partial``: ``rnn_cell()``,
``rnn_cell("tanh")`` and ``rnn_cell(activation="tanh")`` were three cache entries, three unequal
partials, so only the spelling the fast path had registered was the built-in cell; the others ran as
plain step functions (the slow path) and ``impl="fast"`` refused them.
"""

import re

import jax
import numpy as np
import pytest
from _util import assert_trees_close

import lstm_jax as lj
from lstm_jax import cells, registry
from lstm_jax.cells import ACTIVATIONS, GRU_CELL, LSTM_CELL, RNN_CELLS
from lstm_jax.unroll import as_cell, unroll

B, T, M, D = 2, 3, 3, 4
F32 = dict(rtol=1e-5, atol=1e-6)

# (what is spelled, the cell it names, every public way to spell it)
SPELLINGS = [
    *(
        (
            f"rnn {a}",
            a,
            [
                lambda a=a: lj.rnn_cell(a),
                lambda a=a: lj.rnn_cell(activation=a),
                lambda a=a: cells.rnn_cell(a),
                lambda a=a: RNN_CELLS[a],
                lambda a=a: as_cell(lj.rnn_cell(a)),
            ]
            + ([lj.rnn_cell, lambda: cells.rnn_cell()] if a == "tanh" else []),
        )
        for a in ACTIVATIONS
    ),
    ("lstm", "lstm", [lj.lstm_cell, cells.lstm_cell, lambda: LSTM_CELL, lambda: as_cell(lj.lstm_cell())]),
    ("gru", "gru", [lj.gru_cell, cells.gru_cell, lambda: GRU_CELL, lambda: as_cell(lj.gru_cell())]),
]


def _problem(name):
    k_p, k_x = jax.random.split(jax.random.key(0))
    params = registry.cell_type(name if name in registry.CELLS else "rnn").init(k_p, M, D)  # builtin: lstm, gru or f
    return params, jax.random.normal(k_x, (B, T, M))


@pytest.mark.parametrize("name, builtin, spellings", SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_every_spelling_is_one_cell_with_the_fast_kernel(name, builtin, spellings):
    expected = {"lstm": LSTM_CELL, "gru": GRU_CELL}.get(builtin) or RNN_CELLS[builtin]
    for spell in spellings:
        cell = spell()
        assert cell is expected, (name, spell)
        assert cell == expected and hash(cell) == hash(expected)
        assert cell.kernel is not None, (name, spell)


@pytest.mark.parametrize("name, builtin, spellings", SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_impl_fast_takes_every_spelling(name, builtin, spellings):
    """``impl="fast"`` (which refuses a plain step function) runs each spelling, with the reference's numbers."""
    params, xs = _problem(builtin)
    reference = unroll(spellings[0](), params, xs, impl="scan")
    for spell in spellings:
        assert_trees_close(unroll(spell(), params, xs, impl="fast"), reference, **F32)


def test_the_rnn_cells_of_different_activations_differ():
    assert len({id(c) for c in RNN_CELLS.values()}) == len(ACTIVATIONS) == len(set(RNN_CELLS.values()))
    assert set(RNN_CELLS) == set(ACTIVATIONS)


def test_unroll_suggests_spellings_that_take_the_fast_path():
    """The message for a wrong ``cell`` names constructors; each of those, called as written, is a built-in cell."""
    params, xs = _problem("lstm")
    with pytest.raises(ValueError, match=r"^cell: expected a Cell \(") as error:
        unroll("lstm", params, xs)
    suggested = re.findall(r"\b(\w+_cell)\(\)", str(error.value))
    assert sorted(suggested) == ["gru_cell", "lstm_cell", "rnn_cell"]
    for constructor in suggested:
        cell = getattr(lj, constructor)()
        assert cell.kernel is not None, constructor
        params, xs = _problem(cell.name)
        hs = unroll(cell, params, xs, impl="fast")[1]
        assert hs.shape == (B, T, D) and np.all(np.isfinite(np.asarray(hs)))


def test_a_jitted_unroll_compiles_once_for_all_spellings():
    """A ``Cell`` is a static argument; equal spellings share one compiled function."""
    params, xs = _problem("tanh")
    jitted = jax.jit(lambda cell, p, x: unroll(cell, p, x)[1], static_argnums=0)
    outputs = [jitted(spell(), params, xs) for spell in SPELLINGS[0][2]]
    assert jitted._cache_size() == 1
    for out in outputs[1:]:
        np.testing.assert_array_equal(np.asarray(out), np.asarray(outputs[0]))
