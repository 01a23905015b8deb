"""experiments/gradient_flow.py: its per-step state gradients against the manual BPTT of lstm_jax.bptt.

On a tiny setting (T=10, D=4), in float64. ``∂L/∂h_t`` (and the LSTM's carry part of ``∂L/∂c_t``) is
the gradient for the initial carry of the same model run on the suffix ``x_{t+1..T}`` from the
state ``h_t``: ``rnn_bptt``/``lstm_bptt`` compute that with the hand-written δ recursion.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import load_experiment

from lstm_jax.bptt import lstm_bptt, rnn_bptt
from lstm_jax.cells import DenseParams, LSTMState, dense, lstm_cell, lstm_gates, rnn_cell
from lstm_jax.init import init_lstm, init_rnn

T, D, M, B, N = 10, 4, 3, 2, 2


gf = load_experiment("gradient_flow")


def _problem(seed):
    """Time-major inputs, a head and targets, and the mse last-step loss of h_T as rnn_bptt computes it."""
    rng = np.random.default_rng(seed)  # numpy draws: no op-by-op compilation, a faster test
    xs_tm = jnp.asarray(rng.normal(size=(T, B, M)))
    head = DenseParams(jnp.asarray(rng.normal(size=(N, D))), None)
    targets = jnp.asarray(rng.normal(size=(B, N)))

    def final_loss(h_T):  # sequence_loss("mse", reduction="last"): mean over sequences and outputs
        return jnp.mean((dense(head, h_T) - targets) ** 2)

    return xs_tm, head, targets, final_loss


def _suffix(xs_tm, t):
    """Inputs of steps t+2..T (0-based rows t+1..T-1) for a run that starts from state t, batch-major and
    right-padded to T-1 steps (one shape, one compilation), with their lengths."""
    rest = jnp.moveaxis(xs_tm[t + 1 :], 0, 1)
    padded = jnp.concatenate([rest, jnp.zeros((B, t, M), rest.dtype)], axis=1)
    return padded, jnp.full((B,), T - 1 - t)


_rnn_bptt = jax.jit(rnn_bptt, static_argnames=("activation", "loss", "reduction"))
_lstm_bptt = jax.jit(lstm_bptt, static_argnames=("loss", "reduction"))


def test_rnn_state_gradients_match_manual_bptt(key):
    with jax.enable_x64(True):
        params = init_rnn(key, M, D, recurrent_init="scaled_normal", recurrent_scale=1.5, dtype=jnp.float64)
        xs_tm, head, targets, final_loss = _problem(1)
        cell = rnn_cell("tanh")
        dh = gf.state_gradients(cell, params, xs_tm, final_loss)
        hs = gf.forward_states(cell, params, xs_tm)
        assert dh.shape == (T, B, D)
        np.testing.assert_allclose(dh[-1], jax.grad(final_loss)(hs[-1]), rtol=1e-12)
        for t in range(T - 1):
            suffix, lengths = _suffix(xs_tm, t)
            _, grads = _rnn_bptt(params, head, suffix, targets, hs[t], loss="mse", reduction="last", lengths=lengths)
            np.testing.assert_allclose(dh[t], grads.carry0, rtol=1e-10, atol=1e-15)
        assert float(jnp.linalg.norm(dh[0])) > 0


def test_lstm_state_gradients_match_manual_bptt(key):
    with jax.enable_x64(True):
        params = init_lstm(key, M, D, forget_bias=1.0, dtype=jnp.float64)
        xs_tm, head, targets, final_loss = _problem(1)
        cell = lstm_cell()
        grads = gf.state_gradients(cell, params, xs_tm, final_loss)
        carries = gf.forward_states(cell, params, xs_tm)
        h_prev = jnp.concatenate([jnp.zeros_like(carries.h[:1]), carries.h[:-1]], axis=0)
        o = lstm_gates(cell.project(params, xs_tm) + h_prev @ params.w_hh.T)[3]
        local = o * (1 - jnp.tanh(carries.c) ** 2)  # ∂h_t/∂c_t, elementwise
        np.testing.assert_allclose(grads.h[-1], jax.grad(final_loss)(carries.h[-1]), rtol=1e-12)
        np.testing.assert_allclose(grads.c[-1], grads.h[-1] * local[-1], rtol=1e-12)
        for t in range(T - 1):
            carry = LSTMState(carries.h[t], carries.c[t])
            suffix, lengths = _suffix(xs_tm, t)
            _, bp = _lstm_bptt(params, head, suffix, targets, carry, loss="mse", reduction="last", lengths=lengths)
            np.testing.assert_allclose(grads.h[t], bp.carry0.h, rtol=1e-10, atol=1e-15)
            # Total dc_t = (what c_{t+1} sends back: f_{t+1} ⊙ dc_{t+1}) + dh_t ⊙ o_t ⊙ (1 − tanh² c_t).
            np.testing.assert_allclose(grads.c[t], bp.carry0.c + grads.h[t] * local[t], rtol=1e-10, atol=1e-15)


def test_perturbed_steps_are_the_library_cells_at_zero(key):
    with jax.enable_x64(True):
        k_p, k_z, k_h, k_c = jax.random.split(key, 4)
        z = jax.random.normal(k_z, (B, 4 * D), jnp.float64)
        carry = LSTMState(jax.random.normal(k_h, (B, D), jnp.float64), jax.random.normal(k_c, (B, D), jnp.float64))
        params = init_lstm(k_p, M, D, dtype=jnp.float64)
        zero = jax.tree.map(jnp.zeros_like, carry)
        expected, _ = lstm_cell().recur(params, carry, z)
        np.testing.assert_array_equal(gf.perturbed_lstm_step(params, carry, z, zero).c, expected.c)
        np.testing.assert_allclose(gf.perturbed_lstm_step(params, carry, z, zero).h, expected.h, rtol=1e-15)
        rnn = init_rnn(k_p, M, D, dtype=jnp.float64)
        h_expected, _ = rnn_cell("tanh").recur(rnn, carry.h, z[:, :D])
        np.testing.assert_array_equal(gf.perturbed_rnn_step(rnn, carry.h, z[:, :D], zero.h), h_expected)


def test_cell_path_norms_is_the_product_of_forget_gates():
    rng = np.random.default_rng(0)
    forget = rng.uniform(0.2, 0.9, (T, B, D))
    dc_last = rng.normal(size=(B, D))
    norms = gf.cell_path_norms(forget, dc_last)
    for lag in (0, 1, 5, T - 1):
        product = np.prod(forget[T - lag :], axis=0)  # f of the last `lag` steps
        np.testing.assert_allclose(norms[lag], np.linalg.norm(product * dc_last, axis=-1), rtol=1e-12)


@pytest.mark.parametrize("rate", [0.3, 0.95, 1.02])
def test_fitted_rate_recovers_a_geometric_decay(rate):
    curve = 2.0 * rate ** np.arange(gf.T, dtype=np.float64)
    assert gf.fitted_rate(curve) == pytest.approx(rate, rel=1e-10)
