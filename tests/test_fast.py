"""The fast path (custom_vjp recurrence, chunked remat, truncated BPTT) against the plain scan.

The reference is ``impl="scan"``: ``jax.grad`` through ``lax.scan``, itself checked against a
Python loop and finite differences elsewhere. float64 to 1e-10, float32 to 1e-5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

from lstm_jax import fast
from lstm_jax.cells import LSTMState, add_bias, lstm_cell, rnn_cell
from lstm_jax.init import init_layers, init_lstm, init_rnn
from lstm_jax.unroll import DEFAULT_UNROLL, Bidirectional, unroll, unroll_layers, valid_steps

M, D = 3, 4
F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-6)
CELLS = ["lstm", "tanh", "sigmoid", "relu"]


def _cell(name):
    return lstm_cell() if name == "lstm" else rnn_cell(name)


def _problem(name, key, batch=(3,), T=7, dtype=jnp.float64):
    """Parameters, inputs, a random non-zero initial carry and lengths (one sequence empty)."""
    k_p, k_x, k_c = jax.random.split(key, 3)
    cell = _cell(name)
    params = (init_lstm if name == "lstm" else init_rnn)(k_p, M, D, dtype=dtype)
    xs = jax.random.normal(k_x, (*batch, T, M), dtype)
    zeros = cell.zeros(params, batch)
    leaves = [jax.random.normal(k, z.shape, dtype) for k, z in zip(jax.random.split(k_c, 2), jax.tree.leaves(zeros))]
    carry0 = jax.tree.unflatten(jax.tree.structure(zeros), leaves)
    lengths = jnp.arange(np.prod(batch, dtype=int)).reshape(batch) * 3 % (T + 1)
    return cell, params, xs, carry0, lengths


def _loss(cell, **options):
    """A loss that reads every output and the final carry, with distinct weights per entry."""

    def loss(params, xs, carry0):
        carry, hs = unroll(cell, params, xs, carry0, **options)
        weights = jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
        return jnp.sum(weights * jnp.sin(hs)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))

    return loss


def _value_and_grads(cell, params, xs, carry0, **options):
    """``(final carry, hs)`` and the gradients of :func:`_loss` w.r.t. params, inputs and carry0."""
    outputs = unroll(cell, params, xs, carry0, **options)
    return outputs, jax.grad(_loss(cell, **options), argnums=(0, 1, 2))(params, xs, carry0)


# Lengths and reverse alone are in the combination (and in test_unroll's grid over every registry cell).
OPTIONS = [
    {},
    {"with_lengths": True, "reverse": True},
    {"unroll": 3},
    {"time_major": True},
]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(o) or "plain")
def test_fast_equals_scan_float64(name, options, key):
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem(name, key)
        options = dict(options)
        if options.pop("with_lengths", False):
            options["lengths"] = lengths
        if options.get("time_major"):
            xs = jnp.moveaxis(xs, -2, 0)
        fast_result = _value_and_grads(cell, params, xs, carry0, impl="fast", **options)
        scan_result = _value_and_grads(cell, params, xs, carry0, impl="scan", **options)
        assert_trees_close(fast_result, scan_result, **F64)


@pytest.mark.parametrize("name", ["lstm", "tanh"])
def test_fast_equals_scan_float32(name, key):
    cell, params, xs, carry0, lengths = _problem(name, key, T=50, dtype=jnp.float32)
    fast_result = _value_and_grads(cell, params, xs, carry0, impl="fast", lengths=lengths)
    scan_result = _value_and_grads(cell, params, xs, carry0, impl="scan", lengths=lengths)
    assert_trees_close(fast_result, scan_result, **F32)


@pytest.mark.parametrize("batch", [(), (2, 3)], ids=["unbatched", "two-batch-dims"])
def test_fast_any_batch_shape(batch, key):
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem("lstm", key, batch=batch)
        for options in ({}, {"lengths": lengths}):
            fast_result = _value_and_grads(cell, params, xs, carry0, impl="fast", **options)
            scan_result = _value_and_grads(cell, params, xs, carry0, impl="scan", **options)
            assert_trees_close(fast_result, scan_result, **F64)


def test_auto_is_fast_for_builtin_cells(key):
    """``impl="auto"`` (the default) runs the custom_vjp: jax.jvp, which it lacks, fails."""
    cell, params, xs, carry0, _ = _problem("lstm", key, dtype=jnp.float32)

    def outputs(p, impl):
        return unroll(cell, p, xs, carry0, impl=impl)[1]

    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda p: outputs(p, "auto"), (params,), (params,))
    jax.jvp(lambda p: outputs(p, "scan"), (params,), (params,))  # the reference has forward mode


def test_second_order_reverse_over_reverse(key):
    """Reverse-over-reverse through the custom backward pass equals it through the plain scan."""
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem("lstm", key)

        def grad_norm(p, impl):
            g = jax.grad(_loss(cell, impl=impl, lengths=lengths))(p, xs, carry0)
            return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(g))

        assert_trees_close(jax.grad(grad_norm)(params, "fast"), jax.grad(grad_norm)(params, "scan"), **F64)


@pytest.mark.parametrize("name", ["lstm", "tanh"])
def test_stacked_and_bidirectional_layers(name, key):
    with jax.enable_x64(True):
        k_p, k_x = jax.random.split(key)
        cell = _cell(name)
        init = init_lstm if name == "lstm" else init_rnn
        layers = init_layers(k_p, init, M, D, 2, bidirectional=True, dtype=jnp.float64)
        layers = (layers[0], layers[1].forward)  # a bidirectional layer, then a plain one
        xs = jax.random.normal(k_x, (3, 6, M), jnp.float64)
        lengths = jnp.array([6, 2, 0])

        def loss(layers, impl):
            finals, hs = unroll_layers(cell, layers, xs, lengths=lengths, impl=impl)
            return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(finals))

        assert isinstance(layers[0], Bidirectional)
        for f in (loss, jax.grad(loss)):
            assert_trees_close(f(layers, "fast"), f(layers, "scan"), **F64)


@pytest.mark.parametrize("remat", ["sqrt", 3, 7, 50, "step"])
@pytest.mark.parametrize("name", ["lstm", "tanh"])
def test_remat_changes_memory_not_numbers(name, remat, key):
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem(name, key, T=10)
        for options in ({}, {"lengths": lengths, "reverse": True}):
            result = _value_and_grads(cell, params, xs, carry0, remat=remat, **options)
            reference = _value_and_grads(cell, params, xs, carry0, impl="scan", **options)
            assert_trees_close(result, reference, **F64)


def test_remat_sqrt_needs_far_less_temporary_memory(key):
    """XLA's compiled memory analysis: the √T checkpointed scan against plain BPTT at T = 2000."""
    cell, params, _, carry0, _ = _problem("lstm", key, batch=(8,), T=1, dtype=jnp.float32)
    params = init_lstm(key, 32, 32)
    xs = jnp.zeros((8, 2000, 32))

    def temp_bytes(**options):
        loss = _loss(cell, **options)
        compiled = jax.jit(jax.grad(loss)).lower(params, xs, cell.zeros(params, (8,))).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, fast_path, chunked = temp_bytes(impl="scan"), temp_bytes(), temp_bytes(remat="sqrt")
    assert fast_path < plain
    assert chunked < plain / 4, (chunked, plain)


def _truncated_reference(cell, params, xs, carry0, k):
    """Truncated BPTT by hand: a Python loop over chunks, the carry cut from the graph between them."""
    carry, outputs = carry0, []
    for start in range(0, xs.shape[-2], k):
        carry, hs = unroll(cell, params, xs[..., start : start + k, :], jax.lax.stop_gradient(carry), impl="scan")
        outputs.append(hs)
    return carry, jnp.concatenate(outputs, axis=-2)


@pytest.mark.parametrize("name", ["lstm", "tanh"])
def test_truncated_bptt(name, key):
    with jax.enable_x64(True):
        cell, params, xs, carry0, _ = _problem(name, key, T=10)

        def loss(f):
            def value(p):
                carry, hs = f(p)
                return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))

            return value

        def truncated(p):
            return unroll(cell, p, xs, carry0, truncate=4)

        reference = loss(lambda p: _truncated_reference(cell, p, xs, carry0, 4))
        assert_trees_close(truncated(params), unroll(cell, params, xs, carry0), **F64)  # same forward
        assert_trees_close(jax.grad(loss(truncated))(params), jax.grad(reference)(params), **F64)
        full = jax.grad(loss(lambda p: unroll(cell, p, xs, carry0)))(params)
        assert not np.allclose(full.w_hh, jax.grad(reference)(params).w_hh)  # truncation does cut


def test_kernels_cover_every_builtin_cell():
    from lstm_jax import registry
    from lstm_jax.cells import ACTIVATIONS, BUILTIN_CELLS
    from lstm_jax.unroll import as_cell

    assert all(cell.kernel is not None for cell in BUILTIN_CELLS)
    assert {registry.make_cell(name, activation=a) for name in registry.CELLS for a in ACTIVATIONS} <= set(BUILTIN_CELLS)
    assert as_cell(lambda params, carry, x: (carry, x)).kernel is None  # a plain step function has none


def test_default_unroll_per_backend():
    """``unroll=None`` resolves to the backend's tuned factor (1 where none is listed)."""
    from lstm_jax.unroll import check_options

    expected = DEFAULT_UNROLL.get(jax.default_backend(), 1)
    assert check_options(lstm_cell()).unroll == expected
    assert check_options(lstm_cell(), unroll=3).unroll == 3
    assert DEFAULT_UNROLL["cpu"] == 1  # measured best on the CPU (docs/benchmarks.md)


@pytest.mark.parametrize("T", [0, 1])
@pytest.mark.parametrize("options", [{}, {"reverse": True}, {"with_lengths": True}, {"remat": "sqrt"}])
def test_zero_and_one_steps(T, options, key):
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem("lstm", key, T=T)
        options = dict(options)
        if options.pop("with_lengths", False):
            options["lengths"] = jnp.minimum(lengths, T)
        result = _value_and_grads(cell, params, xs, carry0, **options)
        reference = _value_and_grads(cell, params, xs, carry0, impl="scan", **{k: v for k, v in options.items()})
        assert_trees_close(result, reference, **F64)
        assert result[0][1].shape == xs.shape[:-1] + (D,)


def test_chunks_are_never_longer_than_the_sequence():
    from lstm_jax.unroll import Options, _chunk_length

    assert _chunk_length(Options(remat=4000), 4) == 4
    assert _chunk_length(Options(truncate=4000), 4) == 4
    assert _chunk_length(Options(remat="sqrt"), 10) == 4
    assert _chunk_length(Options(remat=3), 10) == 3
    assert _chunk_length(Options(remat="sqrt"), 0) == 1
    assert _chunk_length(Options(), 10) is None


def test_truncation_keeps_the_gradient_of_a_sequence_that_ended_in_an_earlier_chunk(key):
    """Sequence 0 (length 2) ends in the first chunk of 4: its final carry's gradient is the full one."""
    with jax.enable_x64(True):
        cell, params, xs, carry0, _ = _problem("lstm", key, batch=(2,), T=8)
        lengths = jnp.array([2, 8])

        def final_h0(p, **options):
            return jnp.sum(unroll(cell, p, xs, carry0, lengths=lengths, **options)[0].h[0])

        full, truncated = jax.grad(final_h0)(params), jax.grad(final_h0)(params, truncate=4)
        assert float(jnp.abs(full.w_hh).max()) > 0.1
        assert_trees_close(truncated, full, **F64)
        # the long sequence is cut: its final carry only sees its last chunk
        long = jax.grad(lambda p: jnp.sum(unroll(cell, p, xs, carry0, lengths=lengths, truncate=4)[0].h[1]))(params)
        reference = jax.grad(lambda p: jnp.sum(_truncated_reference(cell, p, xs, carry0, 4)[0].h[1]))(params)
        assert_trees_close(long, reference, **F64)


@pytest.mark.parametrize("unroll_value", [0, -1, 2.5, "x"])
def test_bad_unroll(unroll_value, key):
    cell, params, xs, carry0, _ = _problem("lstm", key, dtype=jnp.float32)
    with pytest.raises(ValueError, match="unroll: expected None, a bool or an int >= 1, got"):
        unroll(cell, params, xs, carry0, unroll=unroll_value)


def test_numpy_integers_are_chunk_lengths(key):
    with jax.enable_x64(True):
        cell, params, xs, carry0, _ = _problem("lstm", key)
        reference = unroll(cell, params, xs, carry0, remat=3)
        assert_trees_close(unroll(cell, params, xs, carry0, remat=np.int64(3)), reference, rtol=0)
        assert_trees_close(unroll(cell, params, xs, carry0, truncate=np.int32(3)), reference, rtol=0)


def test_bfloat16_fast_path_runs_close_to_float32(key):
    cell, params, xs, carry0, _ = _problem("lstm", key, T=20, dtype=jnp.float32)
    to16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, xs, carry0))
    (carry, hs), grads = _value_and_grads(cell, *to16)
    (carry32, hs32), grads32 = _value_and_grads(cell, params, xs, carry0)
    assert hs.dtype == jnp.bfloat16 and grads[0].w_hh.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(hs, np.float32), hs32, atol=0.05)
    np.testing.assert_allclose(np.asarray(grads[0].w_hh, np.float32), grads32[0].w_hh, rtol=0.1, atol=0.1)


def test_plain_step_function_runs_on_the_scan(key):
    """A plain step function has no kernel: ``auto`` and ``scan`` run it, remat and truncate too."""
    _, params, xs, carry0, _ = _problem("tanh", key, dtype=jnp.float32)

    def step(p, h, x):
        h = jnp.tanh(add_bias(x @ p.w_ih.T + h @ p.w_hh.T, p.b))
        return h, h

    reference = unroll(rnn_cell("tanh"), params, xs, carry0, impl="scan")
    for options in ({}, {"impl": "scan"}, {"remat": 3}, {"remat": "step"}, {"truncate": 2}):
        assert_trees_close(unroll(step, params, xs, carry0, **options), reference, **F32)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"impl": "cudnn"}, "impl: expected one of"),
        ({"impl": None}, "impl: expected one of"),
        ({"remat": "all"}, "remat: expected one of"),
        ({"remat": 0}, "remat: expected one of"),
        ({"remat": 2.5}, "remat: expected one of"),
        ({"remat": True}, "remat: expected one of"),
        ({"remat": "step", "impl": "fast"}, "remat: expected None, 'sqrt' or a chunk length with impl='fast'"),
        ({"truncate": 0}, "truncate: expected None or a chunk length >= 1, got 0"),
        ({"truncate": -3}, "truncate: expected None or a chunk length >= 1, got -3"),
        ({"truncate": True}, "truncate: expected None or a chunk length >= 1, got True"),
        ({"truncate": 4, "remat": 5}, "remat: expected None or the chunk length 4 of truncate, got 5"),
    ],
)
def test_bad_options(options, message, key):
    cell, params, xs, carry0, _ = _problem("lstm", key, dtype=jnp.float32)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        unroll(cell, params, xs, carry0, **options)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        unroll_layers(cell, [params], xs, [carry0], **options)


def test_fast_impl_rejects_plain_step_function(key):
    _, params, xs, carry0, _ = _problem("tanh", key, dtype=jnp.float32)
    with pytest.raises(ValueError, match="impl: expected 'auto' or 'scan' for the plain step function"):
        unroll(lambda p, h, x: (h, h), params, xs, carry0, impl="fast")
    with pytest.raises(ValueError, match="compute_dtype: expected None unless the fast path runs"):
        unroll(lambda p, h, x: (h, h), params, xs, carry0, compute_dtype="bfloat16")


def test_recurrence_shapes(key):
    """The kernel-level API: time-major projected inputs in, ``(final carry, hs)`` out."""
    cell, params, xs, carry0, _ = _problem("lstm", key, batch=(2,), T=5, dtype=jnp.float32)
    zs = fast.input_projection(params.w_ih, jnp.moveaxis(xs, -2, 0))  # the bias is added in the steps
    args = (cell.kernel, False, fast.ScanLoops(1), None, params.w_hh, params.b, (), zs, carry0, None)
    carry, hs = fast.recurrence(*args)
    assert isinstance(carry, LSTMState) and carry.h.shape == carry.c.shape == (2, D)
    assert hs.shape == (5, 2, D)
    np.testing.assert_array_equal(hs[-1], carry.h)
    reference = unroll(cell, params, jnp.moveaxis(xs, -2, 0), carry0, time_major=True, impl="scan")
    assert_trees_close((carry, hs), reference, **F32)


def test_recurrence_bias_gradient_is_the_sum_of_dz(key):
    """``∂L/∂b`` from the recurrence equals ``∂L/∂zs`` summed over steps and batch (``z_t + b`` in every step)."""
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem("lstm", key, batch=(2,), T=5)
        zs = fast.input_projection(params.w_ih, jnp.moveaxis(xs, -2, 0))
        valid = jnp.moveaxis(valid_steps(lengths, 5), -1, 0)

        def loss(b, zs):
            carry, hs = fast.recurrence(
                cell.kernel, False, fast.ScanLoops(), None, params.w_hh, b, (), zs, carry0, valid
            )
            return jnp.sum(jnp.sin(hs)) + jnp.sum(carry.c**2)

        d_b, d_zs = jax.grad(loss, argnums=(0, 1))(params.b, zs)
        np.testing.assert_allclose(d_b, d_zs.sum((0, 1)), rtol=1e-12)
        assert np.all(d_zs[~valid] == 0)  # padded steps: no gradient


@pytest.mark.parametrize("name", ["lstm", "tanh"])
def test_bfloat16_compute_with_float32_state(name, key):
    """compute_dtype="bfloat16": float32 parameters, carries and gradients; bf16 matmul operands."""
    cell, params, xs, carry0, lengths = _problem(name, key, T=20, dtype=jnp.float32)
    (carry, hs), grads = _value_and_grads(cell, params, xs, carry0, lengths=lengths, compute_dtype="bfloat16")
    (carry32, hs32), grads32 = _value_and_grads(cell, params, xs, carry0, lengths=lengths)
    assert hs.dtype == jnp.float32 and all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((carry, grads)))
    np.testing.assert_allclose(hs, hs32, atol=0.03)
    assert not np.array_equal(hs, hs32)  # the matmuls did run in bfloat16
    for g, g32 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads32)):
        np.testing.assert_allclose(g, g32, atol=0.05 * float(jnp.max(jnp.abs(g32))))
        # accumulated and kept in float32: not every entry survives a round trip through bfloat16
        assert not np.array_equal(g, np.asarray(g.astype(jnp.bfloat16), np.float32))
    same = _value_and_grads(cell, params, xs, carry0, lengths=lengths, compute_dtype="float32")
    assert_trees_close(same, ((carry32, hs32), grads32), rtol=0)  # the params' own dtype: no change


def test_bfloat16_compute_is_the_same_with_remat_reverse_and_layers(key):
    """Chunking recomputes the same bf16 products, so remat changes nothing beyond float32 sums."""
    k_p, k_x = jax.random.split(key)
    layers = init_layers(k_p, init_lstm, M, D, 2, bidirectional=True)
    xs = jax.random.normal(k_x, (3, 9, M))
    lengths = jnp.array([9, 4, 0])

    def loss(layers, **options):
        _, hs = unroll_layers(lstm_cell(), layers, xs, lengths=lengths, compute_dtype="bfloat16", **options)
        return jnp.sum(jnp.sin(hs))

    plain, chunked = jax.grad(loss)(layers), jax.grad(loss)(layers, remat=3)
    assert_trees_close(chunked, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"compute_dtype": "int8"}, "compute_dtype: expected None or a floating dtype such as 'bfloat16', got 'int8'"),
        ({"compute_dtype": "half-ish"}, "compute_dtype: expected None or a floating dtype"),
        ({"compute_dtype": "bfloat16", "impl": "scan"}, "compute_dtype: expected None unless the fast path runs"),
        ({"compute_dtype": "bfloat16", "remat": "step"}, "compute_dtype: expected None unless the fast path runs"),
        ({"compute_dtype": "float64"}, "compute_dtype: expected a dtype no wider than the parameters' float32, got"),
    ],
)
def test_bad_compute_dtype(options, message, key):
    cell, params, xs, carry0, _ = _problem("lstm", key, dtype=jnp.float32)
    with pytest.raises(ValueError, match=message):
        unroll(cell, params, xs, carry0, **options)


@pytest.mark.parametrize("options", [{}, {"reverse": True, "with_lengths": True}, {"unroll": 2}])
def test_long_sequences_run_in_cache_sized_chunks_with_the_same_numbers(options, key, monkeypatch):
    """Past 2 x DEFAULT_CHUNK steps the fast path projects and scans chunk by chunk: same numbers."""
    import importlib

    unroll_module = importlib.import_module("lstm_jax.unroll")  # the module, not the function
    monkeypatch.setitem(unroll_module.DEFAULT_CHUNK, jax.default_backend(), 8)
    assert unroll_module._cache_chunk(30) == 8 and unroll_module._cache_chunk(15) is None
    with jax.enable_x64(True):
        cell, params, xs, carry0, lengths = _problem("lstm", key, T=30)
        options = dict(options)
        if options.pop("with_lengths", False):
            options["lengths"] = lengths * 4
        result = _value_and_grads(cell, params, xs, carry0, **options)
        reference = _value_and_grads(cell, params, xs, carry0, impl="scan", **options)
        assert_trees_close(result, reference, **F64)


@pytest.mark.parametrize("max_bytes", [-1, 2**40], ids=["contract-leading-axes", "transpose-first"])
def test_sum_over_steps_both_gemm_forms(max_bytes, key, monkeypatch):
    """Both forms of the weight-gradient GEMM (``TRANSPOSE_FIRST_MAX_BYTES``) are Σ_n dz_n a_nᵀ, and differentiable."""
    monkeypatch.setitem(fast.TRANSPOSE_FIRST_MAX_BYTES, jax.default_backend(), max_bytes)
    with jax.enable_x64(True):
        dz = jax.random.normal(key, (5, 3, 8), jnp.float64)
        a = jax.random.normal(jax.random.fold_in(key, 1), (5, 3, 4), jnp.float64)
        expected = np.einsum("tbg,tbd->gd", np.asarray(dz), np.asarray(a))
        np.testing.assert_allclose(fast.sum_over_steps(dz, a), expected, rtol=1e-12)
        grad = jax.grad(lambda dz: jnp.sum(jnp.sin(fast.sum_over_steps(dz, a))))(dz)
        np.testing.assert_allclose(grad, np.einsum("gd,tbd->tbg", np.cos(expected), np.asarray(a)), rtol=1e-12)
