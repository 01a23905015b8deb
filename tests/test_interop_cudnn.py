"""lstm_jax.interop.cudnn against ``jax.experimental.rnn`` on the CPU: its vector unpacked by its own
``unpack_lstm_weights`` and run by ``lstm_ref`` (the reference its cuDNN kernel is tested against) with
``seq_lengths`` and random initial carries, against our ``unroll_layers`` with ``lengths``: outputs, final
``(h, c)`` and the gradients of the inputs and initial carries within 1e-5 (float32); round trips; refusals.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax.interop import cudnn
from lstm_jax.unroll import Bidirectional

rnn = pytest.importorskip("jax.experimental.rnn", reason="jax.experimental.rnn (the cuDNN LSTM) is not in this jax")

M, D, T, B = 3, 5, 7, 2
LENGTHS = np.array([T, 4], np.int32)  # lstm_ref needs int32 lengths >= 1
TOL = dict(rtol=0, atol=1e-5)
CONFIGS = [(1, False), (2, True)]  # (num_layers, bidirectional); (2, False) and (1, True) are in the round trips


def _random(shape, seed: int, scale: float = 0.5):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _our_stack(num_layers: int, bidirectional: bool, seed: int):
    """A random LSTM stack: every weight and bias N(0, 0.5²)."""
    shapes = jax.eval_shape(
        lambda key: lj.init_layers(key, lj.init_lstm, M, D, num_layers, bidirectional=bidirectional), jax.random.key(0)
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(0.5 * rng.standard_normal(s.shape), s.dtype), shapes)


@functools.cache
def _runs(num_layers: int, bidirectional: bool):
    """Jitted ``(theirs(weights, ...), ours(layers, ...))``, each returning ``(y, h_n, c_n, dx, dh_0, dc_0)``."""
    lengths = jnp.asarray(LENGTHS)

    def theirs(weights, x, h0, c0):
        W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, M, D, num_layers, bidirectional)
        return rnn.lstm_ref(x, h0, c0, W_ih, W_hh, b_ih, b_hh, lengths, M, D, num_layers, 0.0, bidirectional)

    def ours(layers, x, h0, c0):
        carry0 = cudnn.carry_from_cudnn(h0, c0, bidirectional=bidirectional)
        carries, y = lj.unroll_layers(lj.lstm_cell(), layers, x, carry0, lengths=lengths)
        return (y, *cudnn.carry_to_cudnn(carries))

    def with_grads(run):
        @jax.jit
        def go(params, x, h0, c0, weights):
            def loss(params, x, h0, c0):
                out = run(params, x, h0, c0)
                return sum(jnp.sum(o * w) for o, w in zip(out, weights)), out

            # d/d(params too): as the flax tests do; the parameters' gradients are not compared
            (_, dx, dh0, dc0), out = jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(params, x, h0, c0)
            return (*out, dx, dh0, dc0)

        return go

    return with_grads(theirs), with_grads(ours)


def _data(num_layers: int, bidirectional: bool):
    """``x``, ``h_0``, ``c_0`` and the loss weights on ``(y, h_n, c_n)``."""
    dirs = 2 if bidirectional else 1
    carry = (dirs * num_layers, B, D)
    return (
        _random((B, T, M), 1, 1.0),
        _random(carry, 2),
        _random(carry, 3),
        (_random((B, T, dirs * D), 4, 1.0), _random(carry, 5, 1.0), _random(carry, 6, 1.0)),
    )


def _assert_same(ours, theirs):
    for name, a, b in zip(("y", "h_n", "c_n", "dx", "dh_0", "dc_0"), ours, theirs):
        np.testing.assert_allclose(a, b, **TOL, err_msg=name)
        assert float(jnp.abs(a).max()) > 0.05, name  # not vacuous


@pytest.mark.parametrize("num_layers, bidirectional", CONFIGS, ids=["1-layer", "2-layer-bidirectional"])
def test_parity_with_lstm_ref_both_ways(num_layers, bidirectional):
    theirs, ours = _runs(num_layers, bidirectional)
    x, h0, c0, weights = _data(num_layers, bidirectional)
    sizes = dict(input_size=M, hidden_size=D, num_layers=num_layers, bidirectional=bidirectional)
    # theirs -> ours: jax's own initialiser (U(-k, k) for every weight and both biases)
    vector = rnn.init_lstm_weight(jax.random.key(0), M, D, num_layers, bidirectional)
    layers = cudnn.from_cudnn(vector, **sizes)
    assert len(layers) == num_layers and isinstance(layers[0], Bidirectional) == bidirectional
    _assert_same(ours(layers, x, h0, c0, weights), theirs(vector, x, h0, c0, weights))
    # ours -> theirs
    mine = _our_stack(num_layers, bidirectional, 7)
    assert cudnn.cudnn_sizes(mine) == sizes
    _assert_same(ours(mine, x, h0, c0, weights), theirs(cudnn.to_cudnn(mine), x, h0, c0, weights))


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (1, True), (2, False), (3, True)])
def test_layout_round_trips_and_length(num_layers, bidirectional):
    sizes = dict(input_size=M, hidden_size=D, num_layers=num_layers, bidirectional=bidirectional)
    n = rnn.get_num_params_in_lstm(M, D, num_layers, bidirectional)
    assert cudnn.num_params(M, D, num_layers, bidirectional) == n
    mine = _our_stack(num_layers, bidirectional, 8)
    vector = cudnn.to_cudnn(mine)
    assert vector.shape == (n,) and vector.dtype == jnp.float32
    # jax's own unpacking finds our blocks where cuDNN keeps them: pseudo-layer p = dirs * layer + direction
    W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(vector, M, D, num_layers, bidirectional)
    flat = [p for layer in mine for p in (layer if bidirectional else (layer,))]
    for p, params in enumerate(flat):
        np.testing.assert_array_equal(W_ih[p], params.w_ih)
        np.testing.assert_array_equal(W_hh[p], params.w_hh)
        np.testing.assert_array_equal(b_ih[p], params.b)
        np.testing.assert_array_equal(b_hh[p], np.zeros_like(params.b))
    # ours -> cuDNN -> ours: bit-exact
    back = cudnn.from_cudnn(vector, **sizes)
    assert jax.tree.structure(back) == jax.tree.structure(mine)
    jax.tree.map(np.testing.assert_array_equal, back, mine)
    # cuDNN -> ours -> cuDNN: the matrices exact, the two biases summed into b_ih
    theirs = rnn.init_lstm_weight(jax.random.key(1), M, D, num_layers, bidirectional)
    again = cudnn.to_cudnn(cudnn.from_cudnn(theirs, **sizes))
    W = sum(np.prod(shape) for shape in jax.tree.leaves(jax.tree.map(jnp.shape, (W_ih, W_hh))))
    np.testing.assert_array_equal(again[:W], theirs[:W])
    u = rnn.unpack_lstm_weights(theirs, M, D, num_layers, bidirectional)
    v = rnn.unpack_lstm_weights(again, M, D, num_layers, bidirectional)
    for p in u[2]:
        np.testing.assert_array_equal(v[2][p], u[2][p] + u[3][p])
        np.testing.assert_array_equal(v[3][p], 0)


def test_works_under_jit_and_grad():
    """Both converters are jax.numpy: a loss through the vector reaches our parameters (b_hh's share is dropped)."""
    mine = _our_stack(2, True, 9)
    sizes = cudnn.cudnn_sizes(mine)
    grads = jax.jit(jax.grad(lambda layers: jnp.sum(cudnn.to_cudnn(layers) ** 2)))(mine)
    jax.tree.map(lambda g, p: np.testing.assert_allclose(g, 2 * p, rtol=1e-6), grads, mine)
    vector = cudnn.to_cudnn(mine)
    same = jax.jit(lambda w: cudnn.from_cudnn(w, **sizes))(vector)
    jax.tree.map(np.testing.assert_array_equal, same, mine)


def test_carries():
    h = _random((4, B, D), 0)
    c = _random((4, B, D), 1)
    two = cudnn.carry_from_cudnn(h, c, bidirectional=True)
    assert len(two) == 2 and all(isinstance(layer, Bidirectional) for layer in two)
    for p, state in enumerate((two[0].forward, two[0].backward, two[1].forward, two[1].backward)):
        assert isinstance(state, lj.LSTMState)
        np.testing.assert_array_equal(state.h, h[p])
        np.testing.assert_array_equal(state.c, c[p])
    for carries in (two, cudnn.carry_from_cudnn(h, c)):
        back = cudnn.carry_to_cudnn(carries)
        np.testing.assert_array_equal(back[0], h)
        np.testing.assert_array_equal(back[1], c)
    with pytest.raises(ValueError, match=r"h, c: expected two arrays .* dirs=2, got shapes \(3, 2, 5\)"):
        cudnn.carry_from_cudnn(h[:3], c[:3], bidirectional=True)
    with pytest.raises(ValueError, match=r"carries: expected one LSTMState"):
        cudnn.carry_to_cudnn((h,))


def test_refusals_name_the_problem():
    sizes = dict(input_size=M, hidden_size=D, num_layers=2, bidirectional=True)
    n = cudnn.num_params(M, D, 2, True)
    vector = jnp.zeros((n,))
    with pytest.raises(
        ValueError,
        match=rf"weights: expected a vector of {n} numbers .*num_layers=2, bidirectional=True\), got shape \({n - 1},\)",
    ):
        cudnn.from_cudnn(vector[1:], **sizes)
    with pytest.raises(ValueError, match=r"weights: expected a vector .* got shape \(1, \d+\)"):
        cudnn.from_cudnn(vector[None], **sizes)
    with pytest.raises(ValueError, match=r"weights: expected a floating dtype .* got int32"):
        cudnn.from_cudnn(jnp.zeros((n,), jnp.int32), **sizes)
    with pytest.raises(ValueError, match=r"num_layers: expected an int >= 1"):
        cudnn.from_cudnn(vector, **{**sizes, "num_layers": 0})
    with pytest.raises(ValueError, match=r"bidirectional: expected a bool"):
        cudnn.from_cudnn(vector, **{**sizes, "bidirectional": 1})
    gru = jax.eval_shape(lambda k: lj.init_layers(k, lj.init_gru, M, D, 1), jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"layers: expected an LSTM stack \(jax.experimental.rnn has only the LSTM\), got gru"
    ):
        cudnn.to_cudnn(gru)
    projected = jax.eval_shape(lambda k: lj.init_layers(k, lj.init_lstm, M, D, 1, proj_size=2), jax.random.key(0))
    with pytest.raises(ValueError, match=r"layers\[0\]: params: jax.experimental.rnn has no LSTM with \['w_hr'\]"):
        cudnn.to_cudnn(projected)
    mine = _our_stack(2, False, 0)
    narrow = (mine[0], mine[1]._replace(w_ih=mine[1].w_ih[:, :3]))
    with pytest.raises(ValueError, match=r"layers\[1\].w_ih: expected shape \(20, 5\) .* got \(20, 3\)"):
        cudnn.to_cudnn(narrow)
    with pytest.raises(ValueError, match=r"layers: expected a non-empty tuple"):
        cudnn.to_cudnn(())


def _on_cuda() -> bool:
    device = jax.devices()[0]
    return device.platform == "gpu" and "rocm" not in str(getattr(device.client, "platform_version", "")).lower()


@pytest.mark.skipif(not _on_cuda(), reason="the cuDNN kernel of jax.experimental.rnn.lstm needs a CUDA GPU")
def test_parity_with_the_cudnn_kernel():
    """Our stack through ``to_cudnn`` into cuDNN itself, in float32 matmuls as jax's own test of the kernel runs it."""
    num_layers, bidirectional = 2, True
    x, h0, c0, weights = _data(num_layers, bidirectional)
    mine = _our_stack(num_layers, bidirectional, 10)
    lengths = jnp.asarray(LENGTHS)

    def theirs(layers, x, h0, c0):
        return rnn.lstm(x, h0, c0, cudnn.to_cudnn(layers), lengths, **cudnn.cudnn_sizes(layers), dropout=0.0)

    def ours(layers, x, h0, c0):
        carry0 = cudnn.carry_from_cudnn(h0, c0, bidirectional=bidirectional)
        carries, y = lj.unroll_layers(lj.lstm_cell(), layers, x, carry0, lengths=lengths)
        return (y, *cudnn.carry_to_cudnn(carries))

    def run(fn):
        def loss(layers, x, h0, c0):
            out = fn(layers, x, h0, c0)
            return sum(jnp.sum(o * w) for o, w in zip(out, weights)), out

        grads, out = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(mine, x, h0, c0)
        return (*out, *grads[1:]), grads[0]

    with jax.default_matmul_precision("float32"):
        (got, d_mine), (expected, d_theirs) = run(ours), run(theirs)
    _assert_same(got, expected)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), d_mine, d_theirs)  # as jax does
