"""The unroll: a Python loop over the step gives the same numbers, and every option does what it says.

Every test that takes a ``model`` runs for every built-in cell (:data:`lstm_jax.registry.CELLS`), so a new
cell is tested by adding it to the registry. ``test_fast_equals_scan_in_every_mode`` is the one grid that
runs every cell through every mode of the unroll (lengths, reverse, time-major, stacked and bidirectional
layers, remat, truncation, a 16-bit compute dtype) with ``impl="fast"`` against ``impl="scan"``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

from lstm_jax import cells, registry
from lstm_jax.cells import LSTMState
from lstm_jax.init import init_layers, init_lstm
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers, valid_steps

B, T, M, D = 3, 6, 4, 5
# float32: the hoisted input GEMM sums in another order than a per-step matmul.
F32 = dict(rtol=1e-5, atol=1e-6)
F64 = dict(rtol=1e-10, atol=1e-12)


def _random_like(key, tree, scale=1.0):
    """A pytree of the structure, shapes and dtypes of ``tree`` with normal entries."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _random_biases(key, params):
    """``params`` with every field after ``(w_ih, w_hh)`` random (``b``, the GRU's ``b_hn``): initialisers
    start biases at 0, which would hide a bias a path forgot."""
    fields = params._fields[2:]
    return params._replace(**_random_like(key, {name: getattr(params, name) for name in fields}, 0.5))


def _init_layers(key, model, input_size, num_layers, bidirectional=False, dtype=jnp.float32):
    """Stacked layers of ``model`` from ``init_layers`` with random biases."""
    layers = init_layers(
        key, registry.cell_type(model).init, input_size, D, num_layers, bidirectional=bidirectional, dtype=dtype
    )
    keys = iter(jax.random.split(jax.random.fold_in(key, 1), 2 * num_layers))
    return jax.tree.map(lambda p: _random_biases(next(keys), p), layers, is_leaf=lambda x: hasattr(x, "w_hh"))


def _setup(model, key, batch=(B,), dtype=jnp.float32, steps=T):
    """The cell, its checked one-step function, random parameters (biases too), inputs and a random carry."""
    k_p, k_b, k_x, k_h = jax.random.split(key, 4)
    cell = registry.make_cell(model)
    params = _random_biases(k_b, registry.cell_type(model).init(k_p, M, D, dtype=dtype))
    carry0 = _random_like(k_h, cell.zeros(params, batch))
    step = functools.partial(cells.step, cell)  # rnn_step, lstm_step, gru_step: (params, carry, x)
    xs = jax.random.normal(k_x, (*batch, steps, M), dtype)
    return cell, step, params, xs, carry0


def _python_loop(step, params, xs, carry, steps):
    """The reference: call the one-step function ``steps`` times, batch-major inputs."""
    outputs = []
    for t in steps:
        carry, h = step(params, carry, xs[..., t, :])
        outputs.append(h)
    return carry, outputs


@pytest.mark.parametrize("model", registry.CELLS)
def test_scan_equals_python_loop(model, key):
    with jax.enable_x64(True):
        cell, step, params, xs, carry0 = _setup(model, key, dtype=jnp.float64)
        carry, hs = unroll(cell, params, xs, carry0)
        carry_ref, hs_ref = _python_loop(step, params, xs, carry0, range(T))
        assert_trees_close(carry, carry_ref, rtol=1e-13)
        assert_trees_close(hs, jnp.stack(hs_ref, axis=-2), rtol=1e-13)


@pytest.mark.parametrize("model", registry.CELLS)
def test_zero_carry_by_default(model, key):
    cell, _, params, xs, carry0 = _setup(model, key)
    zeros = jax.tree.map(jnp.zeros_like, carry0)
    assert_trees_close(unroll(cell, params, xs), unroll(cell, params, xs, zeros), rtol=0)


@pytest.mark.parametrize("model", registry.CELLS)
def test_time_major_is_a_transpose(model, key):
    cell, _, params, xs, carry0 = _setup(model, key)
    carry_b, hs_b = unroll(cell, params, xs, carry0)
    carry_t, hs_t = unroll(cell, params, jnp.swapaxes(xs, 0, 1), carry0, time_major=True)
    assert_trees_close(carry_t, carry_b, **F32)
    assert_trees_close(jnp.swapaxes(hs_t, 0, 1), hs_b, **F32)


def test_numpy_bools_and_ints_are_taken_as_python_ones(key):
    """The options are strict (a string or 0/1 is no bool: test_bad_input) but take NumPy's bools and ints."""
    cell, _, params, xs, carry0 = _setup("lstm", key)
    xs_tm = jnp.swapaxes(xs, 0, 1)
    expected = unroll(cell, params, xs_tm, carry0, time_major=True, reverse=True, unroll=2, remat=3)
    got = unroll(
        cell, params, xs_tm, carry0, time_major=np.True_, reverse=np.True_, unroll=np.int64(2), remat=np.int8(3)
    )
    assert_trees_close(got, expected, rtol=0)
    layers = unroll_layers(cell, [params], xs_tm, [carry0], time_major=np.bool_(True), truncate=np.int32(2))
    assert_trees_close(layers, unroll_layers(cell, [params], xs_tm, [carry0], time_major=True, truncate=2), rtol=0)


@pytest.mark.parametrize("model", registry.CELLS)
@pytest.mark.parametrize("unroll_factor", [2, 4, True])
def test_unroll_factor_changes_nothing(model, unroll_factor, key):
    cell, _, params, xs, carry0 = _setup(model, key)
    assert_trees_close(unroll(cell, params, xs, carry0, unroll=unroll_factor), unroll(cell, params, xs, carry0), **F32)


@pytest.mark.parametrize("model", registry.CELLS)
def test_lengths_freeze_carry_and_zero_outputs(model, key):
    cell, step, params, xs, carry0 = _setup(model, key)
    lengths = jnp.array([T, 2, 0])
    carry, hs = unroll(cell, params, xs, carry0, lengths=lengths)
    for b, n in enumerate(np.asarray(lengths)):
        row = functools.partial(jax.tree.map, lambda a: a[b])
        carry_ref, hs_ref = _python_loop(step, params, xs[b], row(carry0), range(n))
        assert_trees_close(row(carry), carry_ref, **F32)
        if n:
            assert_trees_close(hs[b, :n], jnp.stack(hs_ref), **F32)
        assert jnp.all(hs[b, n:] == 0)


@pytest.mark.parametrize("model", registry.CELLS)
def test_reverse_reads_each_sequence_backwards_within_its_length(model, key):
    cell, step, params, xs, carry0 = _setup(model, key)
    lengths = jnp.array([T, 3, 1])
    carry, hs = unroll(cell, params, xs, carry0, lengths=lengths, reverse=True)
    for b, n in enumerate(np.asarray(lengths)):
        row = functools.partial(jax.tree.map, lambda a: a[b])
        carry_ref, hs_ref = _python_loop(step, params, xs[b], row(carry0), reversed(range(n)))
        assert_trees_close(row(carry), carry_ref, **F32)
        assert_trees_close(hs[b, :n], jnp.stack(hs_ref[::-1]), **F32)  # h at position t
        assert jnp.all(hs[b, n:] == 0)


def test_plumbing_with_a_trivial_step_function():
    """A plain step that adds its input to the carry: the unroll is then a (masked, reversed) cumsum."""

    def counter(params, carry, x):
        return carry + x, carry + x

    xs = jnp.ones((2, T, 1))
    lengths = jnp.array([4, 0])
    carry, hs = unroll(counter, None, xs, jnp.zeros((2, 1)), lengths=lengths)
    np.testing.assert_array_equal(carry[:, 0], [4, 0])
    np.testing.assert_array_equal(hs[0, :, 0], [1, 2, 3, 4, 0, 0])
    np.testing.assert_array_equal(hs[1], 0)
    carry, hs = unroll(counter, None, xs, jnp.zeros((2, 1)), lengths=lengths, reverse=True)
    np.testing.assert_array_equal(hs[0, :, 0], [4, 3, 2, 1, 0, 0])


@pytest.mark.parametrize("model", registry.CELLS)
def test_a_plain_step_function_gives_the_cell_result(model, key):
    """``unroll(step, ...)`` (no hoisted projection) equals ``unroll(cell, ...)``."""
    cell, step, params, xs, carry0 = _setup(model, key)
    lengths = jnp.array([T, 2, 4])
    assert_trees_close(
        unroll(step, params, xs, carry0, lengths=lengths), unroll(cell, params, xs, carry0, lengths=lengths), **F32
    )


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.int8, jnp.int16])
def test_narrow_integer_lengths_do_not_wrap(dtype):
    """T = 300 steps does not fit in int8/uint8: the mask must still be t < length."""
    lengths = jnp.array([100, 0, 7], dtype)
    mask = valid_steps(lengths, 300)
    np.testing.assert_array_equal(mask.sum(-1), [100, 0, 7])


@pytest.mark.parametrize("model", registry.CELLS)
def test_any_leading_batch_dimensions(model, key):
    cell, _, params, xs, carry0 = _setup(model, key, batch=(2, 3))
    carry, hs = unroll(cell, params, xs, carry0)
    assert hs.shape == (2, 3, T, D)
    flat = jax.tree.map(lambda a: a.reshape(6, *a.shape[2:]), (xs, carry0))
    carry_flat, hs_flat = unroll(cell, params, flat[0], flat[1])
    assert_trees_close(hs.reshape(6, T, D), hs_flat, **F32)
    # and no batch at all: (T, M)
    c1, h1 = unroll(cell, params, xs[0, 0], jax.tree.map(lambda a: a[0, 0], carry0))
    assert h1.shape == (T, D)
    assert_trees_close(h1, hs[0, 0], **F32)


@pytest.mark.parametrize("model", registry.CELLS)
def test_jit_grad_and_vmap(model, key):
    cell, _, params, xs, carry0 = _setup(model, key)
    lengths = jnp.array([T, 2, 4])

    def run(p, x, c, n):
        return unroll(cell, p, x, c, lengths=n)

    eager = run(params, xs, carry0, lengths)
    assert_trees_close(jax.jit(run)(params, xs, carry0, lengths), eager, **F32)
    # vmap over the batch: each sequence alone, unbatched inside
    assert_trees_close(jax.vmap(run, in_axes=(None, 0, 0, 0))(params, xs, carry0, lengths), eager, **F32)
    # vmap over parameters: an ensemble of two models
    ensemble = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), params)
    per_model = jax.vmap(run, in_axes=(0, None, None, None))(ensemble, xs, carry0, lengths)
    assert_trees_close(jax.tree.map(lambda a: a[0], per_model), eager, **F32)
    doubled = run(jax.tree.map(lambda a: 2 * a, params), xs, carry0, lengths)
    assert_trees_close(jax.tree.map(lambda a: a[1], per_model), doubled, **F32)
    grads = jax.grad(lambda p: jnp.sum(run(p, xs, carry0, lengths)[1] ** 2))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("model", registry.CELLS)
def test_stacked_layers_chain_single_layers(model, key):
    cell, _, _, xs, _ = _setup(model, key)
    layers = _init_layers(jax.random.key(1), model, M, num_layers=3)
    assert [p.w_ih.shape[1] for p in layers] == [M, D, D]
    lengths = jnp.array([T, 2, 5])
    finals, hs = unroll_layers(cell, layers, xs, lengths=lengths)
    h, expected_finals = xs, []
    for p in layers:
        final, h = unroll(cell, p, h, lengths=lengths)
        expected_finals.append(final)
    assert_trees_close(finals, tuple(expected_finals), **F32)
    assert_trees_close(hs, h, **F32)


@pytest.mark.parametrize("model", registry.CELLS)
def test_bidirectional_backward_half_reads_reversed_sequences(model, key):
    cell, _, _, xs, _ = _setup(model, key)
    layers = _init_layers(jax.random.key(2), model, M, num_layers=2, bidirectional=True)
    assert isinstance(layers[0], Bidirectional) and layers[1].forward.w_ih.shape == (cell.gates * D, 2 * D)
    lengths = jnp.array([T, 3, 1])
    finals, hs = unroll_layers(cell, layers[:1], xs, lengths=lengths)
    assert hs.shape == (B, T, 2 * D)
    fwd_final, fwd = unroll(cell, layers[0].forward, xs, lengths=lengths)
    assert_trees_close(hs[..., :D], fwd, **F32)
    assert_trees_close(finals[0].forward, fwd_final, **F32)
    for b, n in enumerate(np.asarray(lengths)):
        # flip the valid prefix of sequence b, run forwards, flip the outputs back
        rev_final, rev = unroll(cell, layers[0].backward, xs[b, :n][::-1])
        assert_trees_close(hs[b, :n, D:], rev[::-1], **F32)
        assert_trees_close(jax.tree.map(lambda a: a[b], finals[0].backward), rev_final, **F32)
        assert jnp.all(hs[b, n:] == 0)
    # two bidirectional layers equal the two layers run one after the other
    finals2, hs2 = unroll_layers(cell, layers, xs, lengths=lengths)
    (second_final,), second = unroll_layers(cell, layers[1:], hs, lengths=lengths)
    assert_trees_close(hs2, second, **F32)
    assert_trees_close(finals2, (finals[0], second_final), **F32)


def test_stacked_initial_carries_are_used(key):
    cell, _, _, xs, _ = _setup("lstm", key)
    layers = init_layers(jax.random.key(3), init_lstm, M, D, num_layers=2)
    carry = LSTMState(jnp.ones((B, D)), jnp.ones((B, D)))
    finals, hs = unroll_layers(cell, layers, xs, (carry, None))
    _, h0 = unroll(cell, layers[0], xs, carry)
    _, h1 = unroll(cell, layers[1], h0)
    assert_trees_close(hs, h1, **F32)


@pytest.mark.parametrize("model", registry.CELLS)
def test_nan_in_the_padding_reaches_neither_outputs_nor_gradients(model, key):
    cell, _, params, xs, carry0 = _setup(model, key)
    lengths = jnp.array([T, 2, 0])
    dirty = jnp.where(valid_steps(lengths, T)[..., None], xs, jnp.nan)

    def loss(p, x):
        carry, hs = unroll(cell, p, x, carry0, lengths=lengths)
        return jnp.sum(hs**2) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

    clean_value, clean_grads = jax.value_and_grad(loss)(params, xs)
    value, grads = jax.value_and_grad(loss)(params, dirty)
    assert float(value) == pytest.approx(float(clean_value), rel=1e-6)
    assert_trees_close(grads, clean_grads, **F32)


# ---- one grid: every cell through every mode, the fast path against the plain scan ------------

# Each mode: unroll options, whether ragged lengths (one empty sequence) are given, and which
# options the reference (impl="scan") shares: remat changes memory, not numbers, so its reference
# is the plain scan; truncation changes the gradients, so its reference is the truncated scan.
# Options are combined (four modes, not eight) to keep the compilations few.
MODES = {
    "time-major-lengths-reverse": (dict(time_major=True, reverse=True), True, ("reverse",)),
    "remat-3-reverse": (dict(remat=3, reverse=True), False, ("reverse",)),  # T = 7: padded to 9 in the chunks
    "truncate-3": (dict(truncate=3), True, ("truncate",)),
    "layers-remat-sqrt": (dict(layers=True, remat="sqrt"), True, ()),  # a bidirectional layer, then a plain one
}


def _grid_loss(cell, layers, **options):
    """A scalar of every output and every final carry leaf, distinct weights per entry; the unroll or the layers."""

    def loss(params, xs, carry0):
        if layers:
            carry, hs = unroll_layers(cell, params, xs, carry0, **options)
        else:
            carry, hs = unroll(cell, params, xs, carry0, **options)
        weights = jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
        return jnp.sum(weights * jnp.sin(hs)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry)), (carry, hs)

    return loss


def _grid_problem(model, key, dtype, steps, layers):
    cell, _, params, xs, carry0 = _setup(model, key, dtype=dtype, steps=steps)
    if layers:
        stack = _init_layers(jax.random.fold_in(key, 7), model, M, num_layers=2, bidirectional=True, dtype=dtype)
        params = (stack[0], stack[1].forward)
        carry0 = (Bidirectional(carry0, None), _random_like(jax.random.fold_in(key, 8), carry0))
    return cell, params, xs, carry0


def _values_and_grads(cell, params, xs, carry0, layers, **options):
    """``(loss, (final carry, hs))`` and its gradients w.r.t. the parameters, the inputs and the initial carry."""
    fn = jax.value_and_grad(_grid_loss(cell, layers, **options), argnums=(0, 1, 2), has_aux=True)
    return jax.jit(fn)(params, xs, carry0)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", registry.CELLS)
def test_fast_equals_scan_in_every_mode(model, mode, key):
    """Values (outputs, final carry) and ``jax.grad`` of a loss that reads both: float64 to 1e-10."""
    options, with_lengths, shared = MODES[mode]
    options = dict(options)
    layers = options.pop("layers", False)
    with jax.enable_x64(True):
        cell, params, xs, carry0 = _grid_problem(model, key, jnp.float64, 7, layers)
        if options.get("time_major"):
            xs = jnp.swapaxes(xs, 0, 1)
        if with_lengths:
            options["lengths"] = jnp.array([7, 0, 4])
        reference = {k: v for k, v in options.items() if k in (*shared, "lengths", "time_major")}
        fast = _values_and_grads(cell, params, xs, carry0, layers, impl="fast", **options)
        scan = _values_and_grads(cell, params, xs, carry0, layers, impl="scan", **reference)
        assert_trees_close(fast, scan, **F64)
        grads = jax.tree.leaves(fast[1])
        assert all(float(jnp.abs(g).max()) > 0 for g in grads if g.size)  # nothing trivially zero


@pytest.mark.parametrize("model", registry.CELLS)
def test_fast_equals_scan_float32(model, key):
    """The plain path (no lengths, forwards, batch-major) in float32, 20 steps: to 1e-5."""
    cell, params, xs, carry0 = _grid_problem(model, key, jnp.float32, 20, False)
    fast = _values_and_grads(cell, params, xs, carry0, False, impl="fast")
    scan = _values_and_grads(cell, params, xs, carry0, False, impl="scan")
    assert_trees_close(fast, scan, **F32)


@pytest.mark.parametrize("model", registry.CELLS)
def test_bfloat16_compute_dtype(model, key):
    """compute_dtype="bfloat16": bf16 matmul operands, float32 carry and gradients, close to float32."""
    cell, params, xs, carry0 = _grid_problem(model, key, jnp.float32, 12, False)
    lengths = jnp.array([12, 0, 5])
    (value, (carry, hs)), grads = _values_and_grads(
        cell, params, xs, carry0, False, lengths=lengths, compute_dtype="bfloat16"
    )
    (value32, (carry32, hs32)), grads32 = _values_and_grads(
        cell, params, xs, carry0, False, lengths=lengths, impl="scan"
    )
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((value, carry, hs, grads)))
    np.testing.assert_allclose(hs, hs32, atol=0.03)
    assert not np.array_equal(hs, hs32)  # the matmuls did run in bfloat16
    for g, g32 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads32)):
        np.testing.assert_allclose(g, g32, atol=0.05 * float(jnp.max(jnp.abs(g32))))
