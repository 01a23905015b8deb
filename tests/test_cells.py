"""Cells, head, initialisers and the article's fused layout: shapes, equations, exact round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

from lstm_jax.article import ARTICLE_GATE_ORDER, article_lstm_step, lstm_from_article, lstm_to_article
from lstm_jax.cells import (
    LSTM_GATE_ORDER,
    DenseParams,
    LSTMParams,
    LSTMState,
    RNNParams,
    dense,
    head,
    lstm_step,
    rnn_step,
)
from lstm_jax.init import INITIALIZERS, init_dense, init_layers, init_lstm, init_rnn, initializer

M, D, N = 3, 4, 2
F32 = dict(rtol=1e-5, atol=1e-6)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
@pytest.mark.parametrize(
    "activation, f", [("tanh", np.tanh), ("sigmoid", _sigmoid), ("relu", lambda a: np.maximum(a, 0))]
)
def test_rnn_step_is_the_article_equation(batch, activation, f, key):
    """h_t = f(U h_{t-1} + W x_t + b), with U = w_hh and W = w_ih, for any leading batch dims."""
    k1, k2, k3 = jax.random.split(key, 3)
    params = init_rnn(k1, M, D)._replace(b=jnp.linspace(-1, 1, D))
    h, x = jax.random.normal(k2, (*batch, D)), jax.random.normal(k3, (*batch, M))
    carry, out = rnn_step(params, h, x, activation)
    U, W, b = (np.asarray(a, np.float64) for a in (params.w_hh, params.w_ih, params.b))
    expected = f(np.einsum("de,...e->...d", U, h) + np.einsum("dm,...m->...d", W, x) + b)
    assert carry.shape == out.shape == (*batch, D)
    np.testing.assert_allclose(carry, expected, **F32)
    np.testing.assert_array_equal(carry, out)


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_lstm_step_is_the_article_per_gate_equations(batch, key):
    """The left-hand forms of §2.2, one gate at a time, with W_k = w_hh block, U_k = w_ih block."""
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    params = init_lstm(k1, M, D)._replace(b=jax.random.normal(k5, (4 * D,)))
    carry = LSTMState(jax.random.normal(k2, (*batch, D)), jax.random.normal(k3, (*batch, D)))
    x = jax.random.normal(k4, (*batch, M))
    new, out = lstm_step(params, carry, x)

    def gate(name, act):
        k = LSTM_GATE_ORDER.index(name)
        rows = slice(k * D, (k + 1) * D)
        W, U, b = (
            np.asarray(params.w_hh[rows], np.float64),
            np.asarray(params.w_ih[rows], np.float64),
            np.asarray(params.b[rows], np.float64),
        )
        return act(np.einsum("de,...e->...d", W, carry.h) + np.einsum("dm,...m->...d", U, x) + b)

    f, i, o, c_tilde = gate("f", _sigmoid), gate("i", _sigmoid), gate("o", _sigmoid), gate("g", np.tanh)
    c = f * np.asarray(carry.c) + i * c_tilde
    h = o * np.tanh(c)
    np.testing.assert_allclose(new.c, c, **F32)
    np.testing.assert_allclose(new.h, h, **F32)
    np.testing.assert_array_equal(out, new.h)
    assert new.h.shape == new.c.shape == (*batch, D)


def test_head_activations_and_optional_bias(key):
    params = init_dense(key, D, N)._replace(b=jnp.array([0.5, -1.0]))
    h = jax.random.normal(key, (7, D))
    logits = dense(params, h)
    assert logits.shape == (7, N)
    np.testing.assert_allclose(logits, np.asarray(h) @ np.asarray(params.w).T + np.asarray(params.b), **F32)
    np.testing.assert_allclose(head(params, h, "softmax"), jax.nn.softmax(logits), **F32)
    np.testing.assert_allclose(head(params, h, "sigmoid"), jax.nn.sigmoid(logits), **F32)
    np.testing.assert_array_equal(head(params, h, "purlin"), head(params, h, "identity"))
    no_bias = init_dense(key, D, N, use_bias=False)
    assert no_bias.b is None
    np.testing.assert_allclose(dense(no_bias, h), h @ no_bias.w.T, **F32)


def test_initialiser_shapes_dtypes_and_determinism(key):
    rnn = init_rnn(key, M, D, dtype=jnp.bfloat16)
    assert [a.shape for a in rnn] == [(D, M), (D, D), (D,)] and all(a.dtype == jnp.bfloat16 for a in rnn)
    lstm = init_lstm(key, M, D)
    assert [a.shape for a in lstm] == [(4 * D, M), (4 * D, D), (4 * D,)]
    assert_trees_close(init_lstm(key, M, D), lstm, rtol=0)
    assert not np.allclose(init_lstm(jax.random.key(9), M, D).w_hh, lstm.w_hh)
    head_params = init_dense(key, D, N)
    assert head_params.w.shape == (N, D) and head_params.b.shape == (N,)
    for init in ("orthogonal", "fan_in"):  # 16-bit parameters are drawn in float32, then cast
        assert init_dense(key, D, N, init=init, dtype=jnp.bfloat16).w.dtype == jnp.bfloat16


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 3.0])
def test_forget_bias_sets_only_the_forget_block(forget_bias, key):
    b = np.asarray(init_lstm(key, M, D, forget_bias=forget_bias).b).reshape(4, D)
    f = LSTM_GATE_ORDER.index("f")
    np.testing.assert_array_equal(b[f], forget_bias)
    np.testing.assert_array_equal(np.delete(b, f, axis=0), 0)


def test_orthogonal_recurrent_weights_per_gate(key):
    w_hh = np.asarray(init_lstm(key, M, 16).w_hh, np.float64)
    for block in np.split(w_hh, 4):
        np.testing.assert_allclose(block @ block.T, np.eye(16), atol=1e-5)


@pytest.mark.parametrize(
    "name, scale, std", [("scaled_normal", 1.5, 1.5), ("fan_in", 1.0, 1.0), ("uniform", 1.0, 3**-0.5)]
)
def test_fan_in_scaled_initialisers_have_the_stated_variance(name, scale, std, key):
    """Each entry of a (D, fan_in) block has standard deviation std/sqrt(fan_in)."""
    fan_in = 400
    w = np.asarray(initializer(name, scale)(key, (300, fan_in), jnp.float32))
    assert w.std() * np.sqrt(fan_in) == pytest.approx(std, rel=0.03)
    if name == "uniform":
        assert np.abs(w).max() <= scale / np.sqrt(fan_in)


def test_scaled_normal_recurrent_matrix_has_spectral_radius_near_its_scale(key):
    """Pascanu et al. 2013: N(0, g²/D) entries give a spectral radius ≈ g for large D."""
    w_hh = np.asarray(init_rnn(key, M, 400, recurrent_init="scaled_normal", recurrent_scale=0.9).w_hh)
    assert np.abs(np.linalg.eigvals(w_hh)).max() == pytest.approx(0.9, rel=0.05)


def test_every_named_initialiser_runs(key):
    for name in INITIALIZERS:
        w = initializer(name)(key, (D, M), jnp.float32)
        assert w.shape == (D, M) and w.dtype == jnp.float32
    np.testing.assert_array_equal(initializer("zeros")(key, (D, M), jnp.float32), 0)


def test_initialisers_take_numpy_ints_and_either_kind_of_key():
    """Strict, not narrow: NumPy integers are sizes, NumPy bools are bools, and a raw ``PRNGKey`` holds the
    same bits as the typed key of its seed (test_bad_input has what is refused: floats, strings, ints as keys)."""
    typed = init_lstm(jax.random.key(0), M, D)
    assert_trees_close(init_lstm(jax.random.PRNGKey(0), np.int64(M), np.int32(D)), typed, rtol=0)
    assert_trees_close(
        init_dense(jax.random.PRNGKey(0), np.int16(D), N, use_bias=np.True_), init_dense(jax.random.key(0), D, N)
    )
    layers = init_layers(jax.random.PRNGKey(1), init_rnn, M, D, np.int8(2), bidirectional=np.bool_(True))
    assert [type(layer).__name__ for layer in layers] == ["Bidirectional"] * 2
    assert layers[1].forward.w_ih.shape == (D, 2 * D)


def test_init_layers_sizes():
    layers = init_layers(jax.random.key(0), init_rnn, M, D, num_layers=3)
    assert [p.w_ih.shape for p in layers] == [(D, M), (D, D), (D, D)]
    bi = init_layers(jax.random.key(0), init_lstm, M, D, num_layers=2, bidirectional=True, forget_bias=2.0)
    assert bi[0].forward.w_ih.shape == (4 * D, M) and bi[1].backward.w_ih.shape == (4 * D, 2 * D)
    assert float(bi[1].backward.b[D]) == 2.0
    assert not np.allclose(bi[0].forward.w_hh, bi[0].backward.w_hh)


# ----------------------------------------------------------------------------------------------
# The article's fused layout.


def test_article_layout_round_trip_is_exact(key):
    params = init_lstm(key, M, D)._replace(b=jax.random.normal(key, (4 * D,)))
    W, b = lstm_to_article(params)
    assert W.shape == (4 * D, D + M) and b.shape == (4 * D,)
    assert_trees_close(lstm_from_article(W, b), params, rtol=0)
    W2, b2 = lstm_to_article(lstm_from_article(W, b))
    np.testing.assert_array_equal(W2, W)
    np.testing.assert_array_equal(b2, b)


def test_article_layout_blocks_are_where_the_article_puts_them(key):
    """Row block k of W is gate ARTICLE_GATE_ORDER[k] = (c̃, o, i, f); columns are [W_* | U_*]."""
    params = init_lstm(key, M, D)._replace(b=jnp.arange(4 * D, dtype=jnp.float32))
    W, b = lstm_to_article(params)
    assert ARTICLE_GATE_ORDER == ("g", "o", "i", "f")
    for k, gate in enumerate(ARTICLE_GATE_ORDER):
        ours = slice(LSTM_GATE_ORDER.index(gate) * D, (LSTM_GATE_ORDER.index(gate) + 1) * D)
        rows = slice(k * D, (k + 1) * D)
        np.testing.assert_array_equal(W[rows, :D], params.w_hh[ours])  # W_k acts on h_{t-1}
        np.testing.assert_array_equal(W[rows, D:], params.w_ih[ours])  # U_k acts on x_t
        np.testing.assert_array_equal(b[rows], params.b[ours])


def test_article_fused_step_equals_lstm_step(key):
    k1, k2, k3 = jax.random.split(key, 3)
    params = init_lstm(k1, M, D)._replace(b=jax.random.normal(k2, (4 * D,)))
    carry = LSTMState(jax.random.normal(k3, (6, D)), jax.random.normal(k2, (6, D)))
    x = jax.random.normal(k1, (6, M))
    W, b = lstm_to_article(params)
    assert_trees_close(article_lstm_step(W, b, carry, x), lstm_step(params, carry, x), **F32)


def test_rnn_params_are_the_article_names():
    """RNNParams is (w_ih=W, w_hh=U, b): no conversion needed, the docs rely on this order."""
    assert RNNParams._fields == ("w_ih", "w_hh", "b")
    assert LSTMParams._fields == ("w_ih", "w_hh", "b")
    assert DenseParams._fields == ("w", "b")


@pytest.mark.parametrize("dtype, atol", [(jnp.float64, 1e-15), (jnp.float32, 2e-7), (jnp.bfloat16, 1e-2)])
def test_lstm_activations_one_tanh_equals_sigmoid_and_tanh(dtype, atol):
    """σ(x) = ½ + ½ tanh(x/2) on the i, f, o blocks, tanh on g; saturated inputs included."""
    from lstm_jax.cells import lstm_activations

    with jax.enable_x64(True):
        z = jnp.concatenate([jnp.linspace(-60, 60, 4 * 31), jnp.array([0.0, 1e-8, -1e-8, 7.0])]).astype(dtype)
        z = z.reshape(2, 4 * 16)
        i, f, g, o = jnp.split(z.astype(jnp.float64), 4, axis=-1)
        expected = jnp.concatenate([jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)], axis=-1)
        actual = lstm_activations(z)
        assert actual.dtype == dtype and actual.shape == z.shape
        np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=0, atol=atol)


def test_lstm_activation_derivative_equals_autodiff():
    """``s² − (a − off)²`` from the output equals the elementwise derivative of the activations."""
    from lstm_jax.cells import lstm_activation_derivative, lstm_activations

    with jax.enable_x64(True):
        z = jnp.linspace(-8.0, 8.0, 4 * 12).reshape(3, 16)
        expected = jax.vmap(jax.vmap(jax.grad(lambda zk, k: lstm_activations(z[0].at[k].set(zk))[k])))(
            z, jnp.broadcast_to(jnp.arange(16), z.shape)
        )
        np.testing.assert_allclose(lstm_activation_derivative(lstm_activations(z)), expected, rtol=1e-12, atol=1e-14)
