"""Equinox cells to and from our parameters (lstm_jax.interop.equinox_cells), against the real Equinox: eqx.nn.LSTMCell
and eqx.nn.GRUCell run by jax.lax.scan (vmapped over the batch) against our unroll; outputs, final carries and
input gradients within 1e-5 in float32, both round trips bit-exact, every refusal naming what it refuses."""

import functools

import pytest

eqx = pytest.importorskip("equinox", reason="equinox is in the test extra (pip install equinox); without it: skipped")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lstm_jax.cells import GRUParams, LSTMParams, gru_cell, lstm_cell  # noqa: E402
from lstm_jax.init import init_gru, init_lstm, init_rnn  # noqa: E402
from lstm_jax.interop.equinox_cells import from_equinox, to_equinox  # noqa: E402
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers  # noqa: E402

B, T, M, D = 2, 7, 3, 5
TOL = 1e-5


def _inputs():
    return jnp.asarray(np.random.default_rng(0).standard_normal((B, T, M)).astype(np.float32))


def _random_like(make, seed):
    """The pytree ``make()`` returns with every array random (biases too), drawn by NumPy from its shapes."""
    shapes = eqx.filter_eval_shape(make)
    rng = np.random.default_rng(seed)

    def draw(x):
        return jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype) if isinstance(x, jax.ShapeDtypeStruct) else x

    return jax.tree.map(draw, shapes)


def _loss(outputs):
    """A loss with a varied weight per output entry, so the input gradients compared are not trivial."""
    return sum(
        jnp.sum(y * jnp.sin(0.7 * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) + k))
        for k, y in enumerate(outputs)
    )


def _with_grad(run):
    """``(outputs, d loss / d x)`` of ``run(params, x) -> outputs``, jitted."""

    def both(params, x):
        (_, outputs), grad = jax.value_and_grad(lambda x: (_loss(run(params, x)), run(params, x)), has_aux=True)(x)
        return outputs, grad

    return jax.jit(both)


def _scan_cells(cells, x):
    """Equinox's way: each cell vmapped over the batch, jax.lax.scan over time, layer after layer.
    Returns ``[ys, *final carry leaves]`` (an LSTMCell's carry is ``(h, c)``)."""
    finals = []
    hs = jnp.swapaxes(x, 0, 1)
    for cell in cells:
        lstm = isinstance(cell, eqx.nn.LSTMCell)
        zeros = jnp.zeros((x.shape[0], cell.hidden_size), x.dtype)

        def step(carry, x_t, cell=cell, lstm=lstm):
            carry = jax.vmap(cell)(x_t, carry)
            return carry, carry[0] if lstm else carry

        final, hs = jax.lax.scan(step, (zeros, zeros) if lstm else zeros, hs)
        finals.append(final)
    return [jnp.swapaxes(hs, 0, 1), *jax.tree.leaves(finals)]


_equinox_run = _with_grad(lambda cells, x: _scan_cells(cells, x))


@functools.cache
def _ours_run(kind):
    cell = lstm_cell() if kind == "lstm" else gru_cell()

    def run(layers, x):
        finals, ys = unroll_layers(cell, layers, x)
        return [ys, *jax.tree.leaves(finals)]  # LSTMState(h, c): Equinox's (h, c)

    return _with_grad(run)


def _assert_parity(theirs, ours):
    (y_theirs, g_theirs), (y_ours, g_ours) = theirs, ours
    assert len(y_theirs) == len(y_ours)
    for a, b in zip(y_ours, y_theirs):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    assert float(jnp.max(jnp.abs(g_theirs))) > 0.1  # a gradient that can fail
    np.testing.assert_allclose(g_ours, g_theirs, rtol=0, atol=TOL)


def _assert_exact(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert np.asarray(a).dtype == np.asarray(e).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


def _eqx_cell(kind, m, use_bias=True):
    cls = eqx.nn.LSTMCell if kind == "lstm" else eqx.nn.GRUCell
    return lambda: cls(m, D, use_bias=use_bias, key=jax.random.key(0))


@pytest.mark.parametrize(
    "kind, layers, use_bias", [("lstm", 1, True), ("gru", 1, True), ("lstm", 2, False), ("gru", 2, False)]
)
def test_from_equinox_and_to_equinox_match_equinox(kind, layers, use_bias):
    x = _inputs()
    # Equinox -> ours (every array random, biases too)
    cells = tuple(_random_like(_eqx_cell(kind, M if k == 0 else D, use_bias), k) for k in range(layers))
    params = from_equinox(cells)
    assert all(isinstance(p, LSTMParams if kind == "lstm" else GRUParams) for p in params)
    if not use_bias:
        assert not any(np.any(np.asarray(leaf)) for p in params for leaf in p[2:])
    _assert_parity(_equinox_run(cells, x), _ours_run(kind)(params, x))
    _assert_exact(to_equinox(params, like=cells), cells)
    # ours -> Equinox (a new cell, or into `like`), then back
    init = init_lstm if kind == "lstm" else init_gru
    ours = tuple(
        _random_like(lambda k=k: init(jax.random.key(0), M if k == 0 else D, D), 10 + k) for k in range(layers)
    )
    exported = to_equinox(ours)
    assert all(c.use_bias and c.weight_ih.dtype == jnp.float32 for c in exported)
    _assert_parity(_equinox_run(exported, x), _ours_run(kind)(ours, x))
    _assert_exact(from_equinox(exported), ours)
    _assert_exact(to_equinox(ours, like=exported), exported)
    if layers == 1:
        _assert_exact(from_equinox(exported[0]), ours[0])


def test_bidirectional_pairs_map_to_pairs():
    pair = Bidirectional(*(_random_like(_eqx_cell("gru", M), k) for k in (1, 2)))
    params = from_equinox(pair)
    assert isinstance(params, Bidirectional) and isinstance(params.backward, GRUParams)
    back = to_equinox(params)
    assert isinstance(back, Bidirectional)
    _assert_exact(back, pair)
    # our backward direction runs reversed: Equinox's cell on the reversed sequence is the same
    x = _inputs()
    _, ys = unroll(gru_cell(), params.backward, x, reverse=True)
    theirs = _scan_cells([pair.backward], x[:, ::-1])[0][:, ::-1]
    np.testing.assert_allclose(ys, theirs, rtol=0, atol=TOL)


def test_to_equinox_refuses_what_equinox_lacks():
    rnn = _random_like(lambda: init_rnn(jax.random.key(0), M, D), 0)
    with pytest.raises(
        ValueError, match=r"params: expected LSTMParams or GRUParams \(Equinox has no vanilla RNN cell\)"
    ):
        to_equinox(rnn)
    with pytest.raises(ValueError, match=r"Equinox has no LSTM with \['w_hr'\]"):
        to_equinox(_random_like(lambda: init_lstm(jax.random.key(0), M, D, proj_size=2), 0))
    with pytest.raises(ValueError, match=r"Equinox has no LSTM with \['gamma_z'\]"):
        to_equinox(_random_like(lambda: init_lstm(jax.random.key(0), M, D, layer_norm=True), 0))
    lstm = _random_like(lambda: init_lstm(jax.random.key(0), M, D), 0)
    gru_like = _random_like(_eqx_cell("gru", M), 0)
    with pytest.raises(ValueError, match="like: expected an eqx.nn.LSTMCell for LSTMParams, got GRUCell"):
        to_equinox(lstm, like=gru_like)
    with pytest.raises(ValueError, match=r"like: expected an eqx.nn.LSTMCell\(3, 5\) .* got \(4, 5\)"):
        to_equinox(lstm, like=_random_like(_eqx_cell("lstm", 4), 0))
    no_bias = _random_like(_eqx_cell("lstm", M, use_bias=False), 0)
    with pytest.raises(ValueError, match=r"params\.b: expected zeros for `like` with use_bias=False"):
        to_equinox(lstm, like=no_bias)
    zero_b = lstm._replace(b=jnp.zeros_like(lstm.b))
    _assert_exact(from_equinox(to_equinox(zero_b, like=no_bias)), zero_b)
    with pytest.raises(ValueError, match=r"like: expected one cell per layer \(2\), got 1"):
        to_equinox((lstm, lstm._replace(w_ih=lstm.w_hh)), like=(no_bias,))


def test_from_equinox_names_the_tensor_at_fault():
    cell = _random_like(_eqx_cell("gru", M), 0)
    with pytest.raises(ValueError, match=r"^weight_hh: expected shape \(15, 5\), got \(15, 4\)"):
        from_equinox(eqx.tree_at(lambda c: c.weight_hh, cell, cell.weight_hh[:, :4]))
    with pytest.raises(ValueError, match=r"^bias_n: expected dtype float32 like the tensors before it, got float16"):
        from_equinox(eqx.tree_at(lambda c: c.bias_n, cell, cell.bias_n.astype(jnp.float16)))
    with pytest.raises(ValueError, match=r"^cell_module: expected an eqx.nn.LSTMCell or eqx.nn.GRUCell, got Linear"):
        from_equinox(eqx.nn.Linear(M, D, key=jax.random.key(0)))
    with pytest.raises(ValueError, match=r"^cell_module\[1\]: expected an eqx.nn.LSTMCell"):
        from_equinox([cell, 3])
