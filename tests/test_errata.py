r"""Pins the source article's errata E1–E13; ``docs/errata.md`` explains each one.

Pattern: the article's formula *as written* is transcribed here (it does not belong in the
library), and the test shows that it fails the check — it disagrees with ``jax.grad`` or with the
article's own per-gate equations, or it cannot be evaluated because the shapes do not match —
while the corrected formula, the one the library implements, passes. The two wording errata (E12, E13)
pin the numerical fact the corrected wording states, and the quoted text.

Everything runs in float64 (``jax.enable_x64`` around each test, never globally). "Passes" means a
relative error (:func:`lstm_jax.gradcheck.relative_error`) of at most ``1e-10``; "fails" means at
least ``0.1``, which no rounding error can produce. Sizes have ``M != D != N`` so that a swapped
dimension is a shape error rather than a silent coincidence.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import article, bptt, cells, gradcheck, losses
from lstm_jax.cells import LSTMState, add_bias
from lstm_jax.gradcheck import relative_error
from lstm_jax.unroll import unroll

PASS = 1e-10  # corrected formula vs reference: rounding only
FAIL = 0.1  # the article's formula vs reference: a real disagreement
B, T, M, D, N = 3, 6, 4, 5, 3  # batch, steps, input, hidden, output sizes; M != D != N
LOSS = "softmax_cross_entropy"  # the article's g = softmax, with the loss that belongs to it (E2)
SEEDS = (0, 1)


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _normal(rng, *shape, scale=1.0):
    return jnp.asarray(scale * rng.standard_normal(shape), jnp.float64)


def _one_hot(rng, *batch):
    return jax.nn.one_hot(rng.integers(0, N, batch), N, dtype=jnp.float64)


def _problem(seed: int, model: str) -> gradcheck.Problem:
    """The gradient checks' float64 random problem at this file's sizes (recurrent gain 1.5, random
    biases and carry); the unrolls here ignore its ragged lengths and start from zero, as the article does."""
    return gradcheck.random_problem(seed, model, B=B, T=T, M=M, D=D, N=N)


def _rnn_problem(seed: int) -> gradcheck.Problem:
    return _problem(seed, "rnn")


def _rnn_forward(p):
    """Hidden states h_t (B, T, D) and predictions ŷ_t = softmax(V h_t + c) (B, T, N)."""
    _, hs = unroll(cells.rnn_cell("tanh"), p.params, p.xs)
    return hs, jax.nn.softmax(cells.dense(p.head, hs))


def _rnn_grads(p):
    """(jax.grad, manual BPTT) of L = Σ_t L_t, averaged over the batch (``reduction="sum_over_time"``)."""
    _, auto = bptt.autodiff_bptt(cells.rnn_cell("tanh"), p.params, p.head, p.xs, p.targets, loss=LOSS)
    _, manual = bptt.rnn_bptt(p.params, p.head, p.xs, p.targets, loss=LOSS)
    return auto, manual


# ----------------------------------------------------------------------------------------------
# E1: the BPTT section writes a_t = W h_{t-1} + U x_t + b, swapping the forward section's names.


@pytest.mark.parametrize("seed", SEEDS)
def test_e1_bptt_section_swaps_u_and_w(seed):
    p = _rnn_problem(seed)
    # The forward section's names and shapes: U (D, D) state→state, W (D, M) input→state.
    U, W, b = p.params.w_hh, p.params.w_ih, p.params.b
    assert U.shape == (D, D) and W.shape == (D, M)
    h_prev, x = p.carry0, p.xs[:, 0]

    def forward_section(h, x):  # h_t = tanh(U h_{t-1} + W x_t + b)
        return jnp.tanh(add_bias(h @ U.T + x @ W.T, b))

    def bptt_section(h, x):  # a_t = W h_{t-1} + U x_t + b, h_t = tanh(a_t), same U and W
        return jnp.tanh(add_bias(h @ W.T + x @ U.T, b))

    _, expected = cells.rnn_step(p.params, h_prev, x)
    assert relative_error(forward_section(h_prev, x), expected) <= PASS
    with pytest.raises(TypeError, match="shape"):
        bptt_section(h_prev, x)  # W (D, M) cannot multiply h_{t-1} ∈ R^D when M != D


# ----------------------------------------------------------------------------------------------
# E2: binary cross-entropy with softmax, and softmax' = ŷ(1 − ŷ) taken elementwise.


@pytest.mark.parametrize("seed", SEEDS)
def test_e2_softmax_jacobian_is_not_elementwise(seed):
    o = _normal(np.random.default_rng(seed), N)
    y_hat = jax.nn.softmax(o)
    jacobian = jax.jacfwd(jax.nn.softmax)(o)
    article_jacobian = jnp.diag(y_hat * (1 - y_hat))  # "softmax' = ŷ(1 − ŷ)"
    # The diagonal is right, the off-diagonals −ŷ_j ŷ_k are not zero.
    assert relative_error(jnp.diag(jacobian), y_hat * (1 - y_hat)) <= PASS
    assert relative_error(jacobian, article_jacobian) >= FAIL
    assert relative_error(jacobian, jnp.diag(y_hat) - jnp.outer(y_hat, y_hat)) <= PASS


@pytest.mark.parametrize("seed", SEEDS)
def test_e2_binary_cross_entropy_on_softmax_is_not_y_hat_minus_y(seed):
    rng = np.random.default_rng(seed)
    o, y = _normal(rng, B, N), _one_hot(rng, B)
    y_hat = jax.nn.softmax(o)

    def article_loss(o):  # L_t = −(y ln ŷ + (1 − y) ln(1 − ŷ)) with ŷ = softmax(o), summed
        s = jax.nn.softmax(o)
        return -jnp.sum(y * jnp.log(s) + (1 - y) * jnp.log(1 - s))

    # The article's elementwise chain rule does simplify to ŷ − y ...
    article_chain = -(y / y_hat - (1 - y) / (1 - y_hat)) * y_hat * (1 - y_hat)
    assert relative_error(article_chain, y_hat - y) <= PASS
    # ... but that is not the gradient of its loss: softmax couples the outputs.
    assert relative_error(jax.grad(article_loss)(o), y_hat - y) >= FAIL


@pytest.mark.parametrize("seed", SEEDS)
def test_e2_matched_pairs_give_y_hat_minus_y(seed):
    rng = np.random.default_rng(seed)
    o = _normal(rng, B, N)

    def grad_of(kind, y):
        return jax.grad(lambda o: jnp.sum(losses.step_loss(kind, o, y)))(o)

    # softmax + categorical cross-entropy −Σ_k y_k ln ŷ_k, y one-hot
    y = _one_hot(rng, B)
    kind = "softmax_cross_entropy"
    assert relative_error(grad_of(kind, y), jax.nn.softmax(o) - y) <= PASS
    assert relative_error(grad_of(kind, y), losses.step_loss_grad(kind, o, y)) <= PASS
    # sigmoid + binary cross-entropy, y ∈ {0, 1}^N
    y = jnp.asarray(rng.integers(0, 2, (B, N)), jnp.float64)
    kind = "sigmoid_binary_cross_entropy"
    assert relative_error(grad_of(kind, y), jax.nn.sigmoid(o) - y) <= PASS
    assert relative_error(grad_of(kind, y), losses.step_loss_grad(kind, o, y)) <= PASS


@pytest.mark.parametrize("seed", SEEDS)
def test_e2_mse_gradient_is_two_over_n(seed):
    """The library's mse is (1/N) Σ_k (o_k − y_k)², so ∂L_t/∂o = (2/N)(o − y); o − y belongs to ½‖o − y‖²."""
    rng = np.random.default_rng(seed)
    o, y = _normal(rng, B, N), _normal(rng, B, N)
    assert relative_error(losses.step_loss("mse", o, y), jnp.mean((o - y) ** 2, axis=-1)) <= PASS
    auto = jax.grad(lambda o: jnp.sum(losses.step_loss("mse", o, y)))(o)
    assert relative_error(o - y, auto) >= FAIL  # N = 3: off by the factor 2/N
    assert relative_error(2 / N * (o - y), auto) <= PASS
    assert relative_error(losses.step_loss_grad("mse", o, y), auto) <= PASS
    assert relative_error(jax.grad(lambda o: jnp.sum(0.5 * (o - y) ** 2))(o), o - y) <= PASS


# ----------------------------------------------------------------------------------------------
# E3: ∂L/∂c = −Σ_t (ŷ_t − y_t); the sign is wrong.


@pytest.mark.parametrize("seed", SEEDS)
def test_e3_head_bias_gradient_sign(seed):
    p = _rnn_problem(seed)
    _, y_hat = _rnn_forward(p)
    y = p.targets
    auto, manual = _rnn_grads(p)
    # L = Σ_t L_t per sequence, averaged over the batch: the article's sums, then / B.
    article_dc = -jnp.sum(y_hat - y, axis=(0, 1)) / B
    corrected_dc = jnp.sum(y_hat - y, axis=(0, 1)) / B
    # The article's own previous line, −(y/ŷ − (1−y)/(1−ŷ)) · ŷ(1 − ŷ), summed, gives the + sign.
    previous_line = jnp.sum(-(y / y_hat - (1 - y) / (1 - y_hat)) * y_hat * (1 - y_hat), axis=(0, 1)) / B
    assert relative_error(previous_line, corrected_dc) <= PASS

    assert relative_error(article_dc, auto.head.b) >= FAIL  # exactly 2: the opposite vector
    assert relative_error(corrected_dc, auto.head.b) <= PASS
    assert relative_error(manual.head.b, auto.head.b) <= PASS


# ----------------------------------------------------------------------------------------------
# E4: ∂L/∂V = −Σ_t (ŷ_t − y_t) h_t; wrong sign, and it must be an outer product.


@pytest.mark.parametrize("seed", SEEDS)
def test_e4_head_weight_gradient_is_an_outer_product(seed):
    p = _rnn_problem(seed)
    hs, y_hat = _rnn_forward(p)
    e = y_hat - p.targets  # (B, T, N)
    auto, manual = _rnn_grads(p)
    with pytest.raises(TypeError, match="shape"):
        -jnp.sum(e * hs, axis=1)  # as written: (ŷ_t − y_t) ∈ R^N times h_t ∈ R^D, N != D
    article_dv = -jnp.einsum("btn,btd->nd", e, hs) / B  # read as an outer product, sign kept
    corrected_dv = jnp.einsum("btn,btd->nd", e, hs) / B  # Σ_t (ŷ_t − y_t) h_tᵀ
    assert corrected_dv.shape == p.head.w.shape == (N, D)
    assert relative_error(article_dv, auto.head.w) >= FAIL
    assert relative_error(corrected_dv, auto.head.w) <= PASS
    assert relative_error(manual.head.w, auto.head.w) <= PASS


# ----------------------------------------------------------------------------------------------
# E5: ∂L/∂W (recurrent) written as a chain through L_T only.


def _article_recurrent_grad(U, V, hs, h0, e_T):
    r"""The article's last line, term by term, with explicit Jacobians, summed over the batch:

    .. math:: \sum_{t=1}^T \frac{\partial L}{\partial \hat y_T}\frac{\partial \hat y_T}{\partial o_T}
              \frac{\partial o_T}{\partial h_T}\frac{\partial h_T}{\partial h_t}
              \frac{\partial h_t}{\partial W}

    ``U`` is the state→state matrix (the article's ``W`` in that section, erratum E1) and
    ``e_T = ∂L/∂o_T``, ``(B, N)``. ``∂h_t/∂W`` is the immediate partial: h_{t-1} held fixed.
    """
    f_prime = 1 - hs**2  # tanh'(a_t), (B, T, D)
    h_prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)
    dL_dhT = e_T @ V  # ∂L/∂ŷ_T ∂ŷ_T/∂o_T ∂o_T/∂h_T, (B, D)
    dhT_dht = jnp.broadcast_to(jnp.eye(D), (B, D, D))  # ∂h_T/∂h_T = I
    grad = jnp.zeros((D, D), U.dtype)
    for t in reversed(range(T)):
        # ∂h_t/∂W_jk = [i = j] f'(a_t)_j h_{t-1,k}
        v = jnp.einsum("bi,bij->bj", dL_dhT, dhT_dht)
        grad = grad + jnp.einsum("bj,bk->jk", v * f_prime[:, t], h_prev[:, t])
        if t > 0:  # ∂h_T/∂h_{t-1} = ∂h_T/∂h_t · diag(f'(a_t)) U
            dhT_dht = jnp.einsum("bij,bj,jk->bik", dhT_dht, f_prime[:, t], U)
    return grad


@pytest.mark.parametrize("seed", SEEDS)
def test_e5_recurrent_gradient_needs_every_step_loss(seed):
    p = _rnn_problem(seed)
    hs, y_hat = _rnn_forward(p)
    e_T = (y_hat[:, -1] - p.targets[:, -1]) / B  # ∂L/∂o_T, batch-averaged like the loss
    article_dU = _article_recurrent_grad(p.params.w_hh, p.head.w, hs, jnp.zeros((B, D), jnp.float64), e_T)

    cell = cells.rnn_cell("tanh")
    _, last_only = bptt.autodiff_bptt(cell, p.params, p.head, p.xs, p.targets, loss=LOSS, reduction="last")
    auto, manual = _rnn_grads(p)  # L = Σ_t L_t
    # The transcription is faithful: it is exactly the gradient of the last step's loss L_T ...
    assert relative_error(article_dU, last_only.cell.w_hh) <= PASS
    # ... which is not the gradient of L = Σ_t L_t. The δ_t recursion (rnn_bptt) is.
    assert relative_error(article_dU, auto.cell.w_hh) >= FAIL
    assert relative_error(manual.cell, auto.cell) <= PASS


# ----------------------------------------------------------------------------------------------
# E6–E8: the LSTM's gate equations (§2.2).


def _lstm_problem(seed: int):
    """LSTM params with four clearly different bias blocks, a random carry and one input step."""
    p = _problem(seed, "lstm")
    offsets = jnp.repeat(jnp.array([-1.0, 1.0, 0.5, -0.5], jnp.float64), D)  # b_i, b_f, b_c, b_o
    params = p.params._replace(b=p.params.b + offsets)
    return params, p.carry0, p.xs[:, 0]


def _article_blocks(params):
    """The article's W (4D, D+M) and b (4D,) cut into named blocks along its [h_{t-1}; x_t] split."""
    W, b = article.lstm_to_article(params)
    names = article.ARTICLE_GATE_ORDER  # (g, o, i, f): c̃, o, i, f
    rows = dict(zip(names, jnp.split(W, 4, axis=0)))
    biases = dict(zip(names, jnp.split(b, 4)))
    Ws = {k: r[:, :D] for k, r in rows.items()}  # multiply h_{t-1}
    Us = {k: r[:, D:] for k, r in rows.items()}  # multiply x_t
    return W, b, Ws, Us, biases


def _per_gate(Ws, Us, bs, carry, x):
    """The article's left-hand per-gate equations, f_t = σ(W_f h_{t-1} + U_f x_t + b_f) etc."""
    h = carry.h

    def pre(k):
        return add_bias(h @ Ws[k].T + x @ Us[k].T, bs[k])

    f, i, o = (jax.nn.sigmoid(pre(k)) for k in "fio")
    c_tilde = jnp.tanh(pre("g"))
    c = f * carry.c + i * c_tilde
    return LSTMState(o * jnp.tanh(c), c)


def _fused_lines(W, b, carry, x, *, bias_of_every_line=None, candidate=jnp.tanh):
    """The right-hand sides of §2.2's gate lines, σ([W_k, U_k]·[h_{t-1}, x_t]ᵀ + b_?) per gate.

    ``bias_of_every_line="f"`` gives every line ``b_f``, as the article prints (E6);
    ``candidate=σ`` uses the article's σ on the candidate's line (E7).
    """
    hx = jnp.concatenate([carry.h, x], axis=-1)
    names = article.ARTICLE_GATE_ORDER
    rows = dict(zip(names, jnp.split(W, 4, axis=0)))
    biases = dict(zip(names, jnp.split(b, 4)))

    def pre(k):
        return add_bias(hx @ rows[k].T, biases[bias_of_every_line or k])

    f, i, o = (jax.nn.sigmoid(pre(k)) for k in "fio")
    c_tilde = candidate(pre("g"))
    c = f * carry.c + i * c_tilde
    return LSTMState(o * jnp.tanh(c), c)


@pytest.mark.parametrize("seed", SEEDS)
def test_e6_each_gate_has_its_own_bias(seed):
    params, carry, x = _lstm_problem(seed)
    W, b, Ws, Us, bs = _article_blocks(params)
    expected, _ = cells.lstm_step(params, carry, x)
    assert relative_error(_per_gate(Ws, Us, bs, carry, x), expected) <= PASS  # the left-hand forms

    as_printed = _fused_lines(W, b, carry, x, bias_of_every_line="f")
    assert relative_error(as_printed, expected) >= FAIL
    assert relative_error(_fused_lines(W, b, carry, x), expected) <= PASS
    state, _ = article.article_lstm_step(W, b, carry, x)
    assert relative_error(state, expected) <= PASS


@pytest.mark.parametrize("seed", SEEDS)
def test_e7_candidate_uses_tanh(seed):
    params, carry, x = _lstm_problem(seed)
    W, b, _, _, _ = _article_blocks(params)
    expected, _ = cells.lstm_step(params, carry, x)
    assert relative_error(_fused_lines(W, b, carry, x, candidate=jax.nn.sigmoid), expected) >= FAIL
    assert relative_error(_fused_lines(W, b, carry, x, candidate=jnp.tanh), expected) <= PASS


@pytest.mark.parametrize("seed", SEEDS)
def test_e8_weight_dimensions(seed):
    params, carry, x = _lstm_problem(seed)
    W, b, Ws, Us, bs = _article_blocks(params)
    assert W.shape == (4 * D, D + M)
    # Cut along the article's own [h_{t-1}; x_t]: W_* is (D, D), U_* is (D, M), not as §2.2 states.
    assert all(Ws[k].shape == (D, D) and Us[k].shape == (D, M) for k in Ws)
    expected, _ = cells.lstm_step(params, carry, x)
    assert relative_error(_per_gate(Ws, Us, bs, carry, x), expected) <= PASS

    # The stated dimensions, W_* ∈ R^{D×M} and U_* ∈ R^{D×D} (the same D+M columns, cut at M):
    stated_Ws = {k: r[:, :M] for k, r in zip(article.ARTICLE_GATE_ORDER, jnp.split(W, 4, axis=0))}
    stated_Us = {k: r[:, M:] for k, r in zip(article.ARTICLE_GATE_ORDER, jnp.split(W, 4, axis=0))}
    assert all(stated_Ws[k].shape == (D, M) and stated_Us[k].shape == (D, D) for k in stated_Ws)
    with pytest.raises(TypeError, match="shape"):
        _per_gate(stated_Ws, stated_Us, bs, carry, x)  # W_f h_{t-1}: (D, M) times R^D


@pytest.mark.parametrize("seed", SEEDS)
def test_e5_jacobian_product_is_in_descending_order(seed):
    r"""∂h_s/∂h_t = diag(f'(a_s)) U ⋯ diag(f'(a_{t+1})) U: the latest step's factor on the left.

    The factors do not commute, so :math:`\prod_{k=t+1}^{s}` read with k ascending is another matrix.
    """
    p = _rnn_problem(seed)
    U, xs = p.params.w_hh, p.xs[0]  # one sequence: (T, M)
    t, s = 1, 5  # h_1 → h_5, four factors

    def run(h, start, stop):  # h_start → h_stop (steps counted from 1; xs[k - 1] is x_k)
        for k in range(start + 1, stop + 1):
            _, h = cells.rnn_step(p.params, h, xs[k - 1])
        return h

    hs = [jnp.zeros(D, jnp.float64)]  # h_0 = 0, as the article
    for k in range(1, s + 1):
        hs.append(run(hs[-1], k - 1, k))
    jacobian = jax.jacobian(lambda h: run(h, t, s))(hs[t])  # (D, D)
    factors = [jnp.diag(1 - hs[k] ** 2) @ U for k in range(t + 1, s + 1)]  # diag(f'(a_k)) U, k = t+1..s
    descending = ascending = jnp.eye(D, dtype=jnp.float64)
    for factor in factors:
        descending = factor @ descending  # diag(f'(a_s)) U ⋯ diag(f'(a_{t+1})) U
        ascending = ascending @ factor  # diag(f'(a_{t+1})) U ⋯ diag(f'(a_s)) U
    assert relative_error(descending, jacobian) <= PASS
    assert relative_error(ascending, jacobian) >= FAIL


# ----------------------------------------------------------------------------------------------
# E9: L_t = −(y_t ln ŷ_t + (1 − y_t) ln(1 − ŷ_t)) has no Σ over the N outputs: a vector, not a loss.


@pytest.mark.parametrize("seed", SEEDS)
def test_e9_step_loss_sums_over_the_outputs(seed):
    rng = np.random.default_rng(seed)
    o = _normal(rng, N)
    y = jnp.asarray(rng.integers(0, 2, N), jnp.float64)

    def article_step_loss(o):  # as printed: elementwise in the N outputs
        y_hat = jax.nn.sigmoid(o)
        return -(y * jnp.log(y_hat) + (1 - y) * jnp.log(1 - y_hat))

    def corrected_step_loss(o):  # −Σ_k (y_k ln ŷ_k + (1 − y_k) ln(1 − ŷ_k))
        return jnp.sum(article_step_loss(o))

    assert article_step_loss(o).shape == (N,)  # one value per output, not a scalar loss
    with pytest.raises(TypeError, match="scalar"):
        jax.grad(article_step_loss)(o)  # gradient descent needs a scalar L
    assert corrected_step_loss(o).shape == ()
    kind = "sigmoid_binary_cross_entropy"
    assert relative_error(corrected_step_loss(o), losses.step_loss(kind, o, y)) <= PASS
    assert relative_error(jax.grad(corrected_step_loss)(o), losses.step_loss_grad(kind, o, y)) <= PASS


# ----------------------------------------------------------------------------------------------
# E10: the BPTT section writes ∂h_t/∂W for the total derivative (its T line) and for the immediate
# partial, h_{t-1} held fixed (its general line); the doc's ∂⁺h_t/∂W names the immediate one.


def _rnn_recurrent_jacobians(p, U):
    """∂h_t/∂U for t = 1..T, one sequence per batch row: (total, immediate), each (T, B, D, D, D).

    total: through h_1, …, h_{t-1} too (``jax.jacobian`` of the unroll); immediate (∂⁺): h_{t-1} held fixed.
    """
    cell = cells.rnn_cell("tanh")

    def hs_of(U):
        return unroll(cell, p.params._replace(w_hh=U), p.xs)[1]  # (B, T, D)

    hs = hs_of(U)
    total = jnp.moveaxis(jax.jacobian(hs_of)(U), 1, 0)  # (T, B, D, D, D)
    h_prev = jnp.concatenate([jnp.zeros((B, 1, D), jnp.float64), hs[:, :-1]], axis=1)

    def step_of(U, t):
        return cells.rnn_step(p.params._replace(w_hh=U), h_prev[:, t], p.xs[:, t])[1]

    immediate = jnp.stack([jax.jacobian(step_of)(U, t) for t in range(T)])
    return hs, total, immediate


@pytest.mark.parametrize("seed", SEEDS)
def test_e10_bptt_mixes_immediate_and_total_partials(seed):
    p = _rnn_problem(seed)
    U = p.params.w_hh  # the article's W in its BPTT section (E1)
    hs, total, immediate = _rnn_recurrent_jacobians(p, U)
    y_hat = jax.nn.softmax(cells.dense(p.head, hs))
    dL_dhT = (y_hat[:, -1] - p.targets[:, -1]) / B @ p.head.w  # ∂L_T/∂h_T, batch-averaged, (B, D)
    _, last_only = bptt.autodiff_bptt(
        cells.rnn_cell("tanh"), p.params, p.head, p.xs, p.targets, loss=LOSS, reduction="last"
    )
    reference = last_only.cell.w_hh  # jax.grad of L_T

    # The T line: ∂L/∂W = ∂L/∂ŷ_T ∂ŷ_T/∂o_T ∂o_T/∂h_T ∂h_T/∂W is right only with the total derivative.
    def t_line(dhT_dW):
        return jnp.einsum("bi,bijk->jk", dL_dhT, dhT_dW)

    assert relative_error(t_line(total[-1]), reference) <= PASS
    assert relative_error(t_line(immediate[-1]), reference) >= FAIL

    # The general line: Σ_t ... ∂h_T/∂h_t ∂h_t/∂W is right only with the immediate partial ∂⁺h_t/∂W.
    dhT_dht = [
        jax.jacobian(lambda h, t=t: unroll(cells.rnn_cell("tanh"), p.params, p.xs[:, t + 1 :], h)[0])(hs[:, t])
        for t in range(T)
    ]
    dhT_dht = jnp.stack([jnp.einsum("bibj->bij", j) for j in dhT_dht])  # (T, B, D, D): the sequences are independent

    def general_line(dht_dW):
        return jnp.einsum("bi,tbij,tbjkl->kl", dL_dhT, dhT_dht, dht_dW)

    assert relative_error(general_line(immediate), reference) <= PASS
    assert relative_error(general_line(total), reference) >= FAIL  # counts the earlier steps again


# ----------------------------------------------------------------------------------------------
# E11: [W_f, U_f]·[h_{t-1}, x_t]^T: with column vectors, [h_{t-1}, x_t] is a D × 2 matrix (only when
# M = D), and its transpose cannot meet [W_f, U_f]; the column meant is [h_{t-1}; x_t] ∈ R^{D+M}.


@pytest.mark.parametrize("seed", SEEDS)
def test_e11_concatenation_is_a_column(seed):
    params, carry, x = _lstm_problem(seed)
    _, _, Ws, Us, bs = _article_blocks(params)
    h, x = carry.h[0], x[0]  # one sequence: column vectors h_{t-1} ∈ R^D, x_t ∈ R^M
    W_f, U_f = Ws["f"], Us["f"]
    fused = jnp.concatenate([W_f, U_f], axis=1)  # [W_f, U_f] ∈ R^{D×(D+M)}
    with pytest.raises((TypeError, ValueError), match="shape"):
        jnp.stack([h, x], axis=1)  # [h_{t-1}, x_t] side by side: columns of different lengths, M != D
    square = _normal(np.random.default_rng(seed), D)  # even an x_t ∈ R^D, where the pair exists ...
    assert jnp.stack([h, square], axis=1).T.shape == (2, D)
    with pytest.raises(TypeError, match="dot_general"):
        fused @ jnp.stack([h, square], axis=1).T  # ... gives [h, x]ᵀ ∈ R^{2×D}, which (D, D+M) cannot multiply
    column = jnp.concatenate([h, x])  # [h_{t-1}; x_t] = [h_{t-1}ᵀ, x_tᵀ]ᵀ ∈ R^{D+M}
    assert relative_error(fused @ column, W_f @ h + U_f @ x) <= PASS
    assert relative_error(jax.nn.sigmoid(fused @ column + bs["f"]), jax.nn.sigmoid(W_f @ h + U_f @ x + bs["f"])) <= PASS


# ----------------------------------------------------------------------------------------------
# E12: σ's range written [0, 1]; σ(x) = 1 / (1 + e^{−x}) ∈ (0, 1), both ends open (wording only).


def test_e12_sigmoid_range_is_open():
    x = jnp.linspace(-700.0, 700.0, 2801, dtype=jnp.float64)
    # In log space float64 resolves both ends: ln σ(x) < 0 (σ < 1) and ln(1 − σ(x)) = ln σ(−x) < 0 (σ > 0),
    # finite (σ > 0): neither 0 nor 1 is attained, so a gate is never fully shut or fully open.
    for log_value in (jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)):
        assert bool(jnp.all(jnp.isfinite(log_value))) and bool(jnp.all(log_value < 0))
    # σ itself rounds to 1 for x ≥ 37 (1 − σ(37) ≈ 8.5e-17 < ε/2): a closed [0, 1] is what floats show, not σ.
    assert float(jax.nn.sigmoid(jnp.float64(37.0))) == 1.0
    assert float(jax.nn.log_sigmoid(jnp.float64(37.0))) < 0
    # σ(x) = ½ + ½ tanh(x/2), and |tanh| < 1.
    assert relative_error(jax.nn.sigmoid(x), 0.5 + 0.5 * jnp.tanh(x / 2)) <= PASS


# ----------------------------------------------------------------------------------------------
# E13: §2.2 says the cell state does "现行的循环信息传递" ("current" recurrent transmission), a typo for
# "线性的" (linear): c_t is linear in c_{t-1}, ∂c_t/∂c_{t-1} = diag(f_t), which the cell-state argument rests on.

ARTICLE_LINE_164 = "专门进行现行的循环信息传递，同时输出（非线性地）输出信息给隐层状态"  # as printed (excerpt)
CORRECTED_LINE_164 = ARTICLE_LINE_164.replace("现行", "线性")
REPO = Path(__file__).resolve().parents[1]
SEED_ARTICLE = REPO.parent / "shared" / "seed" / "rnn_lstm_article.zh.md"  # the helpers' copy; absent in CI


@pytest.mark.parametrize("seed", SEEDS)
def test_e13_cell_state_is_linear_not_current(seed):
    text = (REPO / "docs" / "errata.md").read_text(encoding="utf-8")
    section = text[text.index("## E13") :]
    assert ARTICLE_LINE_164 in section and CORRECTED_LINE_164 in section  # the doc quotes both
    # The word the argument needs: with the gates fixed by (h_{t-1}, x_t), c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t is
    # linear in c_{t-1} (no peepholes), ∂c_t/∂c_{t-1} = diag(f_t) whatever c_{t-1}; h_t = o_t ⊙ tanh(c_t) is not.
    params, carry, x = _lstm_problem(seed)
    h, c, x = carry.h[0], carry.c[0], x[0]

    def step(c):
        return cells.lstm_step(params, LSTMState(h, c), x)[0]

    f = jax.nn.sigmoid(add_bias(h @ params.w_hh.T + x @ params.w_ih.T, params.b)[D : 2 * D])  # gate order i, f, g, o
    for c_prev in (c, 3 * c + 1):
        assert relative_error(jax.jacobian(lambda c: step(c).c)(c_prev), jnp.diag(f)) <= PASS
    dh_dc = [jax.jacobian(lambda c: step(c).h)(c_prev) for c_prev in (c, 3 * c + 1)]
    assert relative_error(dh_dc[0], dh_dc[1]) >= FAIL  # tanh(c_t): the output side is nonlinear


def test_e13_article_has_the_typo_at_line_164():
    if not SEED_ARTICLE.exists():
        pytest.skip(f"the article is not shipped with the repository ({SEED_ARTICLE} absent)")
    lines = SEED_ARTICLE.read_text(encoding="utf-8").splitlines()
    assert ARTICLE_LINE_164 in lines[163]  # line 164, counted from 1
    assert "线性的循环" not in "\n".join(lines)
