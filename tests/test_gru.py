"""The GRU: its step against the equations written out, flax's ``nn.GRUCell`` and PyTorch's ``nn.GRU``;
its hand-derived BPTT against ``jax.grad`` and finite differences.

The GRU also runs through every unroll mode in ``tests/test_unroll.py``, through the gradient grid of
``tests/test_gradients.py`` and through the bad-input grid of ``tests/test_bad_input.py`` (all three
iterate over :data:`lstm_jax.registry.CELLS`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

import lstm_jax as lj
from lstm_jax import gradcheck
from lstm_jax.bptt import autodiff_bptt, gru_bptt
from lstm_jax.cells import GRU_GATE_ORDER, GRUParams

M, D = 4, 5
F64 = dict(rtol=1e-12, atol=1e-14)
F32 = dict(rtol=1e-5, atol=1e-6)


def _random_params(seed, dtype=np.float64, M=M, D=D):
    """GRU parameters with every entry random, the biases included (``init_gru`` starts them at 0)."""
    rng = np.random.default_rng(seed)
    shapes = {"w_ih": (3 * D, M), "w_hh": (3 * D, D), "b": (3 * D,), "b_hn": (D,)}
    return GRUParams(**{name: jnp.asarray(0.6 * rng.standard_normal(shape), dtype) for name, shape in shapes.items()})


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _written_out_step(params, h, x):
    """The GRU step in NumPy float64 with one matrix and one bias per gate, PyTorch's (r, z, n) equations.

    PyTorch's ``bias_hr`` and ``bias_hz`` are folded into ``b_r`` and ``b_z``; ``b_hn`` stays inside ``r ⊙ (·)``.
    """
    W_ir, W_iz, W_in = np.split(np.asarray(params.w_ih, np.float64), 3)
    W_hr, W_hz, W_hn = np.split(np.asarray(params.w_hh, np.float64), 3)
    b_r, b_z, b_in = np.split(np.asarray(params.b, np.float64), 3)
    b_hn = np.asarray(params.b_hn, np.float64)
    h, x = np.asarray(h, np.float64), np.asarray(x, np.float64)
    r = _sigmoid(x @ W_ir.T + h @ W_hr.T + b_r)
    z = _sigmoid(x @ W_iz.T + h @ W_hz.T + b_z)
    n = np.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    return (1 - z) * n + z * h


def test_gate_order_is_pytorchs():
    assert GRU_GATE_ORDER == ("r", "u", "n")  # PyTorch's (r, z, n): u is its z


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)], ids=["unbatched", "batch", "two-batch-dims"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_step_equals_the_equations_written_out(batch, dtype):
    rng = np.random.default_rng(1)
    with jax.enable_x64(dtype == jnp.float64):
        params = _random_params(0, dtype)
        h = jnp.asarray(rng.standard_normal((*batch, D)), dtype)
        x = jnp.asarray(rng.standard_normal((*batch, M)), dtype)
        carry, out = lj.gru_step(params, h, x)
        assert carry.shape == (*batch, D) and carry.dtype == dtype
        np.testing.assert_array_equal(carry, out)
        expected = _written_out_step(params, h, x)
        np.testing.assert_allclose(carry, expected, **(F64 if dtype == jnp.float64 else F32))


def _flax_to_ours(variables) -> GRUParams:
    """flax ``nn.GRUCell`` variables as :class:`GRUParams`.

    flax 0.12 (``linen/recurrent.py``): Dense layers ``ir, iz, in`` on the input (kernel and bias),
    ``hr, hz`` on the state (kernel only) and ``hn`` (kernel and bias: its ``b_hn``); kernels are
    ``(in, out)``, the transpose of our blocks.
    """
    p = variables["params"]
    return GRUParams(
        w_ih=jnp.concatenate([p[k]["kernel"].T for k in ("ir", "iz", "in")]),
        w_hh=jnp.concatenate([p[k]["kernel"].T for k in ("hr", "hz", "hn")]),
        b=jnp.concatenate([p[k]["bias"] for k in ("ir", "iz", "in")]),
        b_hn=p["hn"]["bias"],
    )


def _ours_to_flax(params: GRUParams) -> dict:
    """:class:`GRUParams` as flax ``nn.GRUCell`` variables (the inverse of :func:`_flax_to_ours`)."""
    w_i, w_h, b = (jnp.split(a, 3) for a in (params.w_ih, params.w_hh, params.b))
    p = {f"i{g}": {"kernel": w.T, "bias": c} for g, w, c in zip("rzn", w_i, b)}
    p |= {f"h{g}": {"kernel": w.T} for g, w in zip("rzn", w_h)}
    p["hn"]["bias"] = params.b_hn
    return {"params": p}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_step_equals_flax_gru_cell(dtype):
    import flax.linen as nn

    rng = np.random.default_rng(2)
    with jax.enable_x64(dtype == jnp.float64):
        cell = nn.GRUCell(features=D, dtype=dtype, param_dtype=dtype, bias_init=nn.initializers.normal(0.5))
        h = jnp.asarray(rng.standard_normal((2, 3, D)), dtype)
        x = jnp.asarray(rng.standard_normal((2, 3, M)), dtype)
        variables = cell.init(jax.random.key(0), h, x)
        # the layout this mapping assumes: a flax version that changes it fails here, not in the numbers
        assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, _ours_to_flax(_random_params(0, dtype)))
        params = _flax_to_ours(variables)
        assert all(float(jnp.abs(leaf).max()) > 0 for leaf in params)  # random biases: each one is live
        tol = F64 if dtype == jnp.float64 else F32
        flax_h, flax_out = cell.apply(variables, h, x)
        ours_h, ours_out = lj.gru_step(params, h, x)
        assert_trees_close((ours_h, ours_out), (flax_h, flax_out), **tol)
        # and the other way: our parameters into flax
        ours = _random_params(3, dtype)
        assert_trees_close(lj.gru_step(ours, h, x)[0], cell.apply(_ours_to_flax(ours), h, x)[0], **tol)
        assert_trees_close(_flax_to_ours(_ours_to_flax(ours)), ours, rtol=0)


def _torch_to_ours(gru) -> GRUParams:
    """PyTorch ``nn.GRU`` weights (layer 0) as :class:`GRUParams`: ``b = bias_ih + [bias_hr; bias_hz; 0]``,
    ``b_hn = bias_hh[2D:]``."""
    w_ih, w_hh, b_ih, b_hh = (
        getattr(gru, f"{kind}_l0").detach().numpy() for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    b = b_ih + np.concatenate([b_hh[: 2 * D], np.zeros(D, b_hh.dtype)])
    return GRUParams(*(jnp.asarray(a) for a in (w_ih, w_hh, b, b_hh[2 * D :])))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unroll_and_gradients_equal_torch_gru(dtype):
    """Outputs, final state and every gradient of ``torch.nn.GRU`` (ragged lengths via packed sequences)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    B, T = 3, 6
    gru = torch.nn.GRU(M, D, batch_first=True, dtype=getattr(torch, dtype))
    rng = np.random.default_rng(4)
    xs_np, h0_np = rng.standard_normal((B, T, M)).astype(dtype), rng.standard_normal((B, D)).astype(dtype)
    weights_np = rng.standard_normal((B, T, D)).astype(dtype)
    lengths = np.array([T, 4, 1])

    # torch: a loss of every output and of the final state
    xs_t, h0_t = torch.tensor(xs_np, requires_grad=True), torch.tensor(h0_np[None], requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xs_t, torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out_packed, hn_t = gru(packed, h0_t)
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_packed, batch_first=True, total_length=T)
    loss_t = (torch.tensor(weights_np) * torch.sin(out_t)).sum() + (hn_t**2).sum()
    loss_t.backward()

    with jax.enable_x64(dtype == "float64"):
        params = _torch_to_ours(gru)
        xs, h0, weights = jnp.asarray(xs_np), jnp.asarray(h0_np), jnp.asarray(weights_np)

        def loss(p, xs, h0):
            final, hs = lj.unroll(lj.gru_cell(), p, xs, h0, lengths=jnp.asarray(lengths))  # the fast path
            return jnp.sum(weights * jnp.sin(hs)) + jnp.sum(final**2), (final, hs)

        (value, (final, hs)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, h0)
        tol = F64 if dtype == "float64" else F32
        np.testing.assert_allclose(hs, out_t.detach().numpy(), **tol)
        np.testing.assert_allclose(final, hn_t.detach().numpy()[0], **tol)
        np.testing.assert_allclose(value, loss_t.item(), **tol)
        d_params, d_xs, d_h0 = grads
        expected = GRUParams(
            gru.weight_ih_l0.grad.numpy(),
            gru.weight_hh_l0.grad.numpy(),
            gru.bias_ih_l0.grad.numpy(),
            gru.bias_hh_l0.grad.numpy()[2 * D :],
        )
        assert_trees_close(d_params, jax.tree.map(jnp.asarray, expected), **tol)
        # torch's bias_hr, bias_hz act as b_r, b_z do: the same gradient
        np.testing.assert_allclose(d_params.b[: 2 * D], gru.bias_hh_l0.grad.numpy()[: 2 * D], **tol)
        np.testing.assert_allclose(d_xs, xs_t.grad.numpy(), **tol)
        np.testing.assert_allclose(d_h0, h0_t.grad.numpy()[0], **tol)


def test_b_hn_is_not_a_bias_of_the_sum():
    """Reset after the matmul: moving ``b_hn`` into ``b``'s n block changes the step (unless r = 1)."""
    with jax.enable_x64(True):
        params = _random_params(5)
        h = jnp.asarray(np.random.default_rng(6).standard_normal((3, D)))
        x = jnp.asarray(np.random.default_rng(7).standard_normal((3, M)))
        folded = params._replace(b=params.b.at[2 * D :].add(params.b_hn), b_hn=jnp.zeros_like(params.b_hn))
        assert float(jnp.abs(lj.gru_step(folded, h, x)[0] - lj.gru_step(params, h, x)[0]).max()) > 1e-3


# ---- BPTT ------------------------------------------------------------------------------------
# tests/test_gradients.py runs manual_bptt(gru_cell()) against jax.grad and finite differences
# (gradcheck.check_model("gru", ...)) for every loss × reduction, with defaults, NaN padding and T = 0.


@pytest.mark.parametrize(
    "loss, reduction",
    [("softmax_cross_entropy", "sum_over_time"), ("mse", "mean"), ("sigmoid_binary_cross_entropy", "last")],
)
def test_gru_bptt_equals_autodiff(loss, reduction):
    """The public ``gru_bptt`` equals ``jax.grad`` through the scan to 1e-10, with ragged lengths (one full,
    one empty) and a non-zero initial state."""
    with jax.enable_x64(True):
        p = gradcheck.random_problem(11, "gru", B=4, T=6, loss=loss)
        assert set(np.asarray(p.lengths)[:2]) == {6, 0} and float(jnp.abs(p.carry0).min()) > 0
        kw = dict(loss=loss, reduction=reduction, lengths=p.lengths)
        loss_a, auto = jax.jit(functools.partial(autodiff_bptt, lj.gru_cell(), **kw))(*p[:5])
        loss_m, manual = jax.jit(functools.partial(gru_bptt, **kw))(*p[:5])
        assert isinstance(manual.cell, GRUParams)
        assert gradcheck.relative_error(manual, auto) <= gradcheck.MANUAL_TOL
        assert float(loss_m) == pytest.approx(float(loss_a), rel=1e-13)


def test_update_bias_sets_the_update_gates_block_only():
    """``init_gru(update_bias=1)`` (the GRU's counterpart of the LSTM's forget bias): b = [0; 1; 0] by gate."""
    D = 4
    plain = lj.init_gru(jax.random.key(0), 3, D)
    biased = lj.init_gru(jax.random.key(0), 3, D, update_bias=1.0)
    np.testing.assert_array_equal(biased.b.reshape(3, D), np.array([[0.0] * D, [1.0] * D, [0.0] * D]))
    assert_trees_close(biased._replace(b=plain.b), plain, rtol=0)  # nothing else changes
