"""The LSTM's options (projection, peepholes, layer normalisation): the step against the equations written out
gate by gate, PyTorch's ``nn.LSTM(proj_size=P)``, the hand-derived BPTT against ``jax.grad`` and finite
differences, the fast path against the plain scan, the checks, the model and the trainer.

float64 to 1e-10 (manual vs autodiff, fast vs scan), float32 to 1e-5.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

import lstm_jax as lj
from lstm_jax import cells, gradcheck, registry
from lstm_jax.cells import LSTM_CELL, LSTMParams, LSTMState, LSTMVariantParams, lstm_cell
from lstm_jax.init import init_lstm
from lstm_jax.models import ModelSpec, apply_model, init_model
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers

M, D, P, B, T = 3, 5, 3, 3, 7
F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-6)

#: Every combination of the three options but none (the plain LSTM).
COMBINATIONS = [
    {k: v for k, v in zip(("proj_size", "peepholes", "layer_norm"), values) if v}
    for values in itertools.product((None, P), (False, True), (False, True))
][1:]
#: Each option alone, and all three.
VARIANTS = [
    {"proj_size": P},
    {"peepholes": True},
    {"layer_norm": True},
    {"proj_size": P, "peepholes": True, "layer_norm": True},
]


def _id(options):
    return "+".join(k if v is True else f"{k}={v}" for k, v in options.items())


def _random_params(seed, options, dtype=jnp.float64):
    """Parameters of ``lstm_cell(**options)`` with every entry random, biases, peepholes and gains included."""
    rng = np.random.default_rng(seed)
    template = init_lstm(jax.random.key(0), M, D, dtype=dtype, **options)

    def draw(name, leaf):
        if leaf is None:
            return None
        mean = 1.0 if name.startswith("gamma") else 0.0
        return jnp.asarray(mean + 0.5 * rng.standard_normal(leaf.shape), dtype)

    return type(template)(*(draw(name, leaf) for name, leaf in zip(template._fields, template)))


def _random_carry(seed, params, batch, dtype=jnp.float64):
    zeros = lstm_cell(**_options_of(params)).zeros(params, batch)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda z: jnp.asarray(0.5 * rng.standard_normal(z.shape), dtype), zeros)


def _options_of(params):
    """The options a parameter NamedTuple was made for (its fields that are set)."""
    if isinstance(params, LSTMParams):
        return {}
    return {
        k: v
        for k, v in {
            "proj_size": None if params.w_hr is None else params.w_hr.shape[0],
            "peepholes": params.p_i is not None,
            "layer_norm": params.gamma_z is not None,
        }.items()
        if v
    }


# ----------------------------------------------------------------------------------------------
# The forward equations, written out per gate in NumPy float64.


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _layer_norm(v, gain, bias):
    """Ba et al.'s normalisation over the features, biased variance, ε = 1e-5; ``bias`` may be None."""
    mu = v.mean(-1, keepdims=True)
    var = ((v - mu) ** 2).mean(-1, keepdims=True)
    out = gain * (v - mu) / np.sqrt(var + 1e-5)
    return out if bias is None else out + bias


def _written_out_step(params, h, c, x):
    """One step with one matrix per gate: ``(h_t, c_t)`` (module docstring of ``cells.lstm_variants``)."""
    p = {k: None if v is None else np.asarray(v, np.float64) for k, v in params._asdict().items()}
    W_i, W_f, W_g, W_o = np.split(p["w_ih"], 4)  # acting on x_t
    R_i, R_f, R_g, R_o = np.split(p["w_hh"], 4)  # acting on h_{t-1}
    b_i, b_f, b_g, b_o = np.split(p["b"], 4)
    zero = np.zeros(c.shape[-1])
    p_i, p_f, p_o = (p[k] if p.get(k) is not None else zero for k in ("p_i", "p_f", "p_o"))
    pre = [(x @ W.T + b, h @ R.T) for W, b, R in [(W_i, b_i, R_i), (W_f, b_f, R_f), (W_g, b_g, R_g), (W_o, b_o, R_o)]]
    if p.get("gamma_z") is not None:  # normalise the whole 4D input and recurrent pre-activations, then add β
        z = _layer_norm(np.concatenate([zk for zk, _ in pre], -1), p["gamma_z"], p["beta"])
        a = _layer_norm(np.concatenate([ak for _, ak in pre], -1), p["gamma_a"], None)
        pre = list(zip(np.split(z, 4, -1), np.split(a, 4, -1)))
    (z_i, a_i), (z_f, a_f), (z_g, a_g), (z_o, a_o) = pre
    i = _sigmoid(z_i + a_i + p_i * c)  # input gate, peephole from c_{t-1}
    f = _sigmoid(z_f + a_f + p_f * c)  # forget gate, peephole from c_{t-1}
    g = np.tanh(z_g + a_g)  # candidate
    c_new = f * c + i * g
    o = _sigmoid(z_o + a_o + p_o * c_new)  # output gate, peephole from c_t
    n = c_new if p.get("gamma_c") is None else _layer_norm(c_new, p["gamma_c"], p["beta_c"])
    m = o * np.tanh(n)
    h_new = m if p.get("w_hr") is None else m @ p["w_hr"].T  # projection h_t = W_hr m_t
    return h_new, c_new


@pytest.mark.parametrize("options", COMBINATIONS, ids=_id)
def test_step_and_unroll_equal_the_equations_written_out(options):
    with jax.enable_x64(True):
        cell = lstm_cell(**options)
        params = _random_params(0, options)
        carry = _random_carry(1, params, (B,))
        xs = jnp.asarray(np.random.default_rng(2).standard_normal((B, T, M)))
        (h1, c1), out = cells.step(cell, params, carry, xs[:, 0])
        h_ref, c_ref = _written_out_step(params, np.asarray(carry.h), np.asarray(carry.c), np.asarray(xs[:, 0]))
        np.testing.assert_allclose(h1, h_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(c1, c_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(out, h1)
        assert h1.shape == (B, options.get("proj_size", D)) and c1.shape == (B, D)
        h, c, hs = np.asarray(carry.h), np.asarray(carry.c), []
        for t in range(T):
            h, c = _written_out_step(params, h, c, np.asarray(xs[:, t]))
            hs.append(h)
        for impl in ("scan", "fast"):
            final, outs = unroll(cell, params, xs, carry, impl=impl)
            np.testing.assert_allclose(outs, np.stack(hs, 1), rtol=1e-11, atol=1e-13)
            np.testing.assert_allclose(final.c, c, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize(
    "options", [{"peepholes": True}, {"layer_norm": True}, {"peepholes": True, "layer_norm": True}]
)
def test_initial_options_leave_the_function_of_the_plain_lstm_or_of_haste(options, key):
    """``init_lstm`` with peepholes starts as the plain LSTM (peepholes 0) from the same key; with layer
    normalisation it starts with ``b = 0`` and the forget bias in ``beta``, so with ``layer_norm`` alone it is
    haste's ``LayerNormLSTM`` (``b`` of haste = ``beta``, ``gamma`` = (``gamma_z``, ``gamma_a``))."""
    plain = init_lstm(key, M, D)
    params = init_lstm(key, M, D, **options)
    np.testing.assert_array_equal(params.w_ih, plain.w_ih)
    np.testing.assert_array_equal(params.w_hh, plain.w_hh)
    xs = jax.random.normal(key, (B, T, M))
    if not options.get("layer_norm"):
        assert_trees_close(unroll(lstm_cell(**options), params, xs), unroll(LSTM_CELL, plain, xs), rtol=0)
    else:
        assert float(jnp.abs(params.b).max()) == 0 and float(params.beta[D]) == 1.0  # forget bias after normalising
        assert [float(params.gamma_z.min()), float(params.gamma_a.max()), float(params.gamma_c.min())] == [1, 1, 1]


def test_options_pick_one_cached_cell_each():
    assert lstm_cell() is LSTM_CELL and lstm_cell(None, False, False) is LSTM_CELL and lj.lstm_cell() is LSTM_CELL
    assert lstm_cell(proj_size=P) is lstm_cell(proj_size=np.int64(P)) is registry.make_cell("lstm", proj_size=P)
    cells_made = {lstm_cell(**options) for options in COMBINATIONS}
    assert len(cells_made) == len(COMBINATIONS) and LSTM_CELL not in cells_made
    assert lstm_cell(proj_size=P, layer_norm=True).name == "lstm(proj_size=3, layer_norm=True)"
    assert lstm_cell(proj_size=P).proj_size == P and lstm_cell(peepholes=True).proj_size is None
    assert registry.cell_type("lstm").layout_options == ("proj_size", "peepholes", "layer_norm")


# ----------------------------------------------------------------------------------------------
# PyTorch's projection.


@pytest.mark.parametrize("dtype", ["float64"])
def test_projection_equals_torch_lstm(dtype):
    """``nn.LSTM(proj_size=P)``: outputs, final state and every gradient, ragged lengths via packed sequences.

    Mapping: ``w_ih = weight_ih_l0``, ``w_hh = weight_hh_l0`` (4D, P), ``b = bias_ih_l0 + bias_hh_l0``,
    ``w_hr = weight_hr_l0`` (P, D); PyTorch's ``(h_n, c_n)`` is ``LSTMState(h, c)``.
    """
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(M, D, proj_size=P, batch_first=True, dtype=getattr(torch, dtype))
    rng = np.random.default_rng(5)
    xs_np = rng.standard_normal((B, T, M)).astype(dtype)
    h0_np, c0_np = rng.standard_normal((B, P)).astype(dtype), rng.standard_normal((B, D)).astype(dtype)
    weights_np = rng.standard_normal((B, T, P)).astype(dtype)
    lengths = np.array([T, 4, 1])

    xs_t = torch.tensor(xs_np, requires_grad=True)
    h0_t, c0_t = torch.tensor(h0_np[None], requires_grad=True), torch.tensor(c0_np[None], requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xs_t, torch.tensor(lengths), batch_first=True, enforce_sorted=False
    )
    out_packed, (hn_t, cn_t) = lstm(packed, (h0_t, c0_t))
    out_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out_packed, batch_first=True, total_length=T)
    loss_t = (torch.tensor(weights_np) * torch.sin(out_t)).sum() + (hn_t**2).sum() + (cn_t**3).sum()
    loss_t.backward()

    def t2j(tensor):
        return jnp.asarray(tensor.detach().numpy())

    with jax.enable_x64(dtype == "float64"):
        params = LSTMVariantParams(
            t2j(lstm.weight_ih_l0),
            t2j(lstm.weight_hh_l0),
            t2j(lstm.bias_ih_l0 + lstm.bias_hh_l0),
            t2j(lstm.weight_hr_l0),
        )
        carry0 = LSTMState(jnp.asarray(h0_np), jnp.asarray(c0_np))
        xs, weights = jnp.asarray(xs_np), jnp.asarray(weights_np)

        def loss(p, xs, carry0):
            final, hs = unroll(lstm_cell(proj_size=P), p, xs, carry0, lengths=jnp.asarray(lengths))  # the fast path
            return jnp.sum(weights * jnp.sin(hs)) + jnp.sum(final.h**2) + jnp.sum(final.c**3), (final, hs)

        (value, (final, hs)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(params, xs, carry0)
        tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else F32
        np.testing.assert_allclose(hs, out_t.detach().numpy(), **tol)
        np.testing.assert_allclose(final.h, hn_t.detach().numpy()[0], **tol)
        np.testing.assert_allclose(final.c, cn_t.detach().numpy()[0], **tol)
        np.testing.assert_allclose(value, loss_t.item(), **tol)
        d_params, d_xs, d_carry0 = grads
        expected = LSTMVariantParams(
            *(t2j(w.grad) for w in (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.weight_hr_l0))
        )
        assert_trees_close(d_params, expected, **tol)
        np.testing.assert_allclose(d_params.b, lstm.bias_hh_l0.grad.numpy(), **tol)  # both biases act as b
        np.testing.assert_allclose(d_xs, xs_t.grad.numpy(), **tol)
        np.testing.assert_allclose(d_carry0.h, h0_t.grad.numpy()[0], **tol)
        np.testing.assert_allclose(d_carry0.c, c0_t.grad.numpy()[0], **tol)


# ----------------------------------------------------------------------------------------------
# Manual BPTT (the hand-derived kernel) vs jax.grad vs finite differences.


def test_manual_bptt_equals_autodiff_and_finite_differences():
    """Every option on; ragged lengths (one full sequence, one empty), a non-zero initial carry, float64.

    Each option alone is a row of ``lstm-jax gradcheck`` (:data:`lstm_jax.gradcheck.LSTM_VARIANTS`), which
    ``tests/test_cli.py`` runs and requires within the same tolerances."""
    row = gradcheck.check_model("lstm", 3, options=VARIANTS[-1])
    assert row.manual_vs_autodiff <= 1e-10, row
    assert max(row.autodiff_vs_fd, row.manual_vs_fd) <= gradcheck.FD_TOL, row


def test_manual_bptt_all_options_many_to_one():
    """Another loss, the last-step reduction and other sizes, every option on."""
    kw = dict(loss="sigmoid_binary_cross_entropy", reduction="last", B=4, T=5, M=2, D=6, N=2)
    row = gradcheck.check_model("lstm", 4, options=VARIANTS[-1], **kw)
    assert row.manual_vs_autodiff <= 1e-10 and max(row.autodiff_vs_fd, row.manual_vs_fd) <= gradcheck.FD_TOL, row


def test_no_extra_gradient_is_trivially_zero():
    """Every leaf's gradient, the projection, peepholes, gains and biases included, is live (so the checks
    above compare something)."""
    with jax.enable_x64(True):
        p = gradcheck.random_problem(3, "lstm", **VARIANTS[-1])
        kw = dict(loss="softmax_cross_entropy", lengths=p.lengths)
        _, grads = jax.jit(functools.partial(lj.manual_bptt, lstm_cell(**VARIANTS[-1]), **kw))(*p[:5])
        for name, leaf in grads.cell._asdict().items():
            assert leaf.shape == getattr(p.params, name).shape and float(jnp.abs(leaf).max()) > 1e-6, name


def test_gradcheck_report_has_a_row_per_option():
    assert list(gradcheck.LSTM_VARIANTS) == ["lstm+proj", "lstm+peep", "lstm+ln"]
    assert [o for o in gradcheck.LSTM_VARIANTS.values()] == [
        {"proj_size": 3},
        {"peepholes": True},
        {"layer_norm": True},
    ]


# ----------------------------------------------------------------------------------------------
# The fast path against the plain scan.


def _problem(options, dtype=jnp.float64, batch=(B,), steps=T):
    params = _random_params(0, options, dtype)
    carry0 = _random_carry(1, params, batch, dtype)
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((*batch, steps, M)), dtype)
    lengths = jnp.asarray(np.array([steps, 0, 4])[: batch[0]])
    return lstm_cell(**options), params, xs, carry0, lengths


def _loss(fn):
    """A loss of every output and of every leaf of the final carry, with distinct weights per entry."""

    def loss(*args):
        carry, hs = fn(*args)
        weights = jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
        return jnp.sum(weights * jnp.sin(hs)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))

    return loss


def _outputs_and_grads(fn, *args):
    """``fn(*args)`` and the gradients of :func:`_loss` of it w.r.t. every argument, as one jitted program
    (one compilation instead of many small ones: the file's run time is mostly compiling)."""

    @jax.jit
    def both(*args):
        return fn(*args), jax.grad(_loss(fn), argnums=tuple(range(len(args))))(*args)

    return both(*args)


UNROLL_OPTIONS = [
    {"lengths": True, "reverse": True},
    {"lengths": True, "remat": 3, "reverse": True},
    {"lengths": True, "truncate": 2, "reverse": True},
    {"time_major": True, "remat": "sqrt"},
]


#: The kernel is one function with the options as flags: every unroll option runs with all of them on,
#: and each option alone runs once.
FAST_CASES = [(VARIANTS[-1], o) for o in UNROLL_OPTIONS] + [(v, UNROLL_OPTIONS[0]) for v in VARIANTS[:-1]]


@pytest.mark.parametrize("options, unroll_options", FAST_CASES, ids=[f"{_id(v)}-{'-'.join(o)}" for v, o in FAST_CASES])
def test_fast_equals_scan_float64(options, unroll_options):
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem(options)
        kw = dict(unroll_options)
        if kw.pop("lengths", False):
            kw["lengths"] = lengths
        if kw.get("time_major"):
            xs = jnp.moveaxis(xs, 1, 0)
        results = [
            _outputs_and_grads(functools.partial(unroll, cell, impl=impl, **kw), params, xs, carry0)
            for impl in ("fast", "scan")
        ]
        assert_trees_close(*results, **F64)


def test_fast_equals_scan_stacked_bidirectional_layers():
    """Two bidirectional layers (the second reads ``2P`` features), ragged lengths, float64, every option on."""
    options = VARIANTS[-1]
    with jax.enable_x64(True):
        cell, _, xs, _, lengths = _problem(options)
        width = options.get("proj_size", D)

        def layer(seed, inputs):
            params = _random_params(seed, options)
            w_ih = np.random.default_rng(seed).standard_normal((4 * D, inputs))
            return params._replace(w_ih=jnp.asarray(0.5 * w_ih))

        layers = tuple(
            Bidirectional(layer(2 * k, inputs), layer(2 * k + 1, inputs)) for k, inputs in enumerate((M, 2 * width))
        )
        results = [
            _outputs_and_grads(functools.partial(unroll_layers, cell, lengths=lengths, impl=impl), layers, xs)
            for impl in ("fast", "scan")
        ]
        assert_trees_close(*results, **F64)
        assert results[0][0][1].shape == (B, T, 2 * width)


def test_fast_equals_scan_float32():
    cell, params, xs, carry0, lengths = _problem(VARIANTS[-1], jnp.float32, steps=30)
    results = [
        _outputs_and_grads(functools.partial(unroll, cell, lengths=lengths, impl=impl), params, xs, carry0)
        for impl in ("fast", "scan")
    ]
    assert_trees_close(*results, **F32)


def test_bfloat16_compute_with_float32_state():
    """compute_dtype="bfloat16": float32 state and gradients, close to float32; chunked remat changes nothing.

    Every option on. The tolerance on the gradients is 10% of each leaf's largest entry (the plain LSTM's
    test has 5%): the normalisations divide by each row's standard deviation, which magnifies the rounding
    of the bfloat16 matmuls (one entry of 20 was 6% off with these parameters).
    """
    cell, params, xs, carry0, lengths = _problem(VARIANTS[-1], jnp.float32, steps=12)

    def run(**kw):
        return _outputs_and_grads(functools.partial(unroll, cell, lengths=lengths, **kw), params, xs, carry0)

    (carry, hs), grads = run(compute_dtype="bfloat16")
    (carry32, hs32), grads32 = run()
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((carry, hs, grads)))
    np.testing.assert_allclose(hs, hs32, atol=0.03)
    assert not np.array_equal(hs, hs32)  # the matmuls did run in bfloat16
    for g, g32 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads32)):
        np.testing.assert_allclose(g, g32, atol=0.1 * float(jnp.max(jnp.abs(g32))))
    assert_trees_close(run(compute_dtype="bfloat16", remat=4), ((carry, hs), grads), **F32)


# ----------------------------------------------------------------------------------------------
# Checks and errors.


def test_bad_options_are_named():
    for value in (0, -1, True, 2.0, "3"):
        with pytest.raises(ValueError, match=r"^proj_size: expected None or an int >= 1, got"):
            lstm_cell(proj_size=value)
    with pytest.raises(ValueError, match=r"^peepholes: expected a bool \(True or False\), got str"):
        lstm_cell(peepholes="yes")
    with pytest.raises(ValueError, match=r"^layer_norm: expected a bool \(True or False\), got int"):
        lstm_cell(layer_norm=1)
    with pytest.raises(ValueError, match=r"^proj_size: expected an int < hidden_size \(5\), as PyTorch, got 5$"):
        init_lstm(jax.random.key(0), M, D, proj_size=D)


def test_parameters_that_do_not_fit_the_options_are_named(key):
    xs = jnp.ones((B, T, M))
    proj = init_lstm(key, M, D, proj_size=P)
    cell = lstm_cell(proj_size=P)
    cases = [
        (
            cell,
            proj._replace(w_hh=jnp.ones((4 * D, D))),
            r"params.w_hh: expected shape \(20, 3\) \(4·D, P\) with D=5, P=3",
        ),
        (cell, proj._replace(w_hr=jnp.ones((P, D + 1))), r"params.w_hr: expected shape \(3, 5\) with D=5, P=3"),
        (cell, proj._replace(w_hr=None), r"params.w_hr: expected an array of shape \(3, 5\) for lstm\(proj_size=3\)"),
        (cell, proj._replace(p_i=jnp.ones(D)), r"params.p_i: expected None for lstm\(proj_size=3\), got"),
        (cell, LSTMParams(*proj[:3]), r"lstm\(proj_size=3\) params: expected a NamedTuple with fields \(w_ih, w_hh"),
        (LSTM_CELL, proj, r"params.w_hh: expected shape \(12, 3\) \(4·D, D\) with D=3, got \(20, 3\)"),
        (lstm_cell(layer_norm=True), init_lstm(key, M, D, peepholes=True), r"params.p_i: expected None for lstm"),
        (
            lstm_cell(layer_norm=True),
            init_lstm(key, M, D, layer_norm=True)._replace(beta_c=jnp.ones(D, jnp.int32)),
            r"params.beta_c: expected a floating dtype",
        ),
    ]
    for c, params, message in cases:
        with pytest.raises(ValueError, match=message):
            unroll(c, params, xs)
    with pytest.raises(ValueError, match=r"carry: expected shape \(3, 3\) \(\*batch, P\), got \(3, 5\)"):
        unroll(cell, proj, xs, LSTMState(jnp.ones((B, D)), jnp.ones((B, D))))


def test_pallas_kernels_are_the_plain_lstms_only(key):
    params = init_lstm(key, M, D, peepholes=True)
    with pytest.raises(ValueError, match=r"impl: expected 'auto', 'fast' or 'scan' for lstm\(peepholes=True\)"):
        unroll(lstm_cell(peepholes=True), params, jnp.ones((B, T, M)), impl="pallas_interpret")


# ----------------------------------------------------------------------------------------------
# Models and training.


@pytest.mark.parametrize("options", [VARIANTS[0], VARIANTS[-1]], ids=_id)
def test_model_sizes_follow_the_projection(options, key):
    spec = ModelSpec(cell="lstm", **options)
    params = init_model(key, spec, M, D, 4, num_layers=2, bidirectional=True, forget_bias=2.0)
    width = options.get("proj_size", D)
    assert params.head.w.shape == (4, 2 * width) and params.layers[1].forward.w_ih.shape == (4 * D, 2 * width)
    forget = params.layers[0].forward.beta if options.get("layer_norm") else params.layers[0].forward.b
    assert float(forget[D]) == 2.0
    logits = apply_model(spec, params, jax.random.normal(key, (B, T, M)))
    assert logits.shape == (B, T, 4) and bool(jnp.all(jnp.isfinite(logits)))
    with pytest.raises(ValueError, match=r"^proj_size: expected it in the ModelSpec \(spec.proj_size\)"):
        init_model(key, ModelSpec(), M, D, 4, proj_size=P)


@pytest.fixture
def _standard_dtype_promotion():
    """optax's Adam mixes Python floats with int32 counts, which strict promotion rejects (see test_train)."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _tiny_config(options, **train):
    from lstm_jax.config import config_from_dict

    return config_from_dict(
        {
            "task": {"name": "adding", "params": {"T": 6}},
            "model": {"cell": "lstm", "hidden_size": 6, **options},
            "train": {"steps": 4, "batch_size": 8, "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2, **train},
        }
    )


@pytest.mark.usefixtures("_standard_dtype_promotion")
@pytest.mark.parametrize("options", VARIANTS[:-1], ids=_id)
def test_a_training_step_changes_every_parameter(options):
    """Each option alone (all three together train in :func:`test_fit_with_manual_gradients_follows_autodiff_and_restores`)."""
    from lstm_jax import train
    from lstm_jax.tasks import make_task

    config = _tiny_config(options)
    task = make_task("adding", T=6)
    optimizer = train.make_optimizer(config.optim, config.train.steps)
    init_key, batch_key, _ = train.run_keys(0)
    state = train.init_state(config, task, optimizer, init_key)
    assert isinstance(state.params.layers[0], LSTMVariantParams)
    new, metrics = train.make_train_step(train.model_spec(config, task), task, optimizer)(
        state, task.make_batch(batch_key, 8)
    )
    assert int(new.step) == 1 and bool(metrics["finite"])
    for old, updated in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
        assert not np.array_equal(old, updated)


@pytest.mark.usefixtures("_standard_dtype_promotion")
def test_fit_with_manual_gradients_follows_autodiff_and_restores(tmp_path):
    """``lstm_jax.train.fit`` with all three options: manual gradients give autodiff's losses, and the
    checkpoint (with the ``None`` fields of LSTMVariantParams) restores into the model's template."""
    from lstm_jax import checkpoint, rundir, train
    from lstm_jax.tasks import make_task

    config = _tiny_config(VARIANTS[-1], gradients="manual", stop_when_solved=False)
    summary = train.fit(config, tmp_path / "run", progress=False)
    assert summary["status"] == "completed" and summary["steps"] == 4
    train.fit(_tiny_config(VARIANTS[-1], stop_when_solved=False), tmp_path / "auto", progress=False)
    losses = [[r["loss"] for r in rundir.read_metrics(tmp_path / run)] for run in ("run", "auto")]
    assert len(losses[0]) == 2
    np.testing.assert_allclose(*losses, rtol=1e-4)
    task = make_task("adding", T=6)
    template = train.init_state(config, task, train.make_optimizer(config.optim, 4), train.run_keys(0)[0])
    restored = checkpoint.restore_checkpoint(tmp_path / "run" / rundir.CHECKPOINTS, template)
    layer = restored.params.layers[0]
    assert isinstance(layer, LSTMVariantParams) and layer.w_hr.shape == (P, 6) and int(restored.step) == 4
    assert not np.array_equal(layer.p_i, template.params.layers[0].p_i)  # trained, not the template's zeros
