"""The Pallas LSTM kernels (``impl="pallas"``) against the plain scan, and their GPU lowering.

Without a GPU the kernels run in Pallas's interpreter (``impl="pallas_interpret"``): the same kernel
code, the same indexing, one program after another. That checks the arithmetic (float64 to 1e-10
against ``impl="scan"``) but not the GPU's concurrency; ``jax.export`` for ``cuda`` then lowers the
kernels to Triton for an abstract H200 on this CPU machine, which catches what Triton cannot express. Timing and the
compiled kernel's behaviour on the GPU are checked by ``experiments/device_check.sh`` on a GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close
from jax import export

from lstm_jax import fast, pallas_lstm
from lstm_jax.cells import LSTM_CELL, LSTMState, lstm_cell, rnn_cell
from lstm_jax.config import ConfigError, ModelConfig
from lstm_jax.init import init_layers, init_lstm
from lstm_jax.unroll import Bidirectional, check_options, unroll, unroll_layers, valid_steps

M = 3
F64 = dict(rtol=1e-10, atol=1e-12)
INTERPRET = dict(impl="pallas_interpret")


def _problem(key, batch=(3,), T=6, D=48, dtype=jnp.float64):
    """LSTM parameters, inputs, a random initial carry and lengths (one sequence empty, one full)."""
    k_p, k_x, k_h, k_c = jax.random.split(key, 4)
    params = init_lstm(k_p, M, D, dtype=dtype)
    xs = jax.random.normal(k_x, (*batch, T, M), dtype)
    carry0 = LSTMState(jax.random.normal(k_h, (*batch, D), dtype), jax.random.normal(k_c, (*batch, D), dtype))
    lengths = jnp.arange(np.prod(batch, dtype=int)).reshape(batch) * 5 % (T + 1)
    return params, xs, carry0, lengths


def _value_and_grads(params, xs, carry0, **options):
    """``(final carry, hs)`` and the gradients of a loss reading every output and the final carry."""

    def loss(params, xs, carry0):
        carry, hs = unroll(lstm_cell(), params, xs, carry0, **options)
        weights = jnp.cos(jnp.arange(hs.size, dtype=hs.dtype)).reshape(hs.shape)
        return jnp.sum(weights * jnp.sin(hs)) + jnp.sum(carry.h**2) + jnp.sum(jnp.cos(carry.c))

    outputs = unroll(lstm_cell(), params, xs, carry0, **options)
    return outputs, jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)


@pytest.mark.parametrize(
    "options",
    [{}, {"reverse": True}, {"with_lengths": True}, {"with_lengths": True, "reverse": True}],
    ids=["plain", "reverse", "lengths", "lengths-reverse"],
)
def test_pallas_equals_scan_float64(options, key):
    """Three hidden tiles of 16 (and three k-blocks), one batch block of 16 rows with 13 padded."""
    with jax.enable_x64(True):
        params, xs, carry0, lengths = _problem(key)
        options = dict(options)
        if options.pop("with_lengths", False):
            options["lengths"] = lengths
        result = _value_and_grads(params, xs, carry0, **INTERPRET, **options)
        assert_trees_close(result, _value_and_grads(params, xs, carry0, impl="scan", **options), **F64)


@pytest.mark.parametrize("batch", [(), (4, 5)], ids=["unbatched", "two-batch-dims-two-blocks"])
def test_pallas_any_batch_shape(batch, key):
    """No batch axis (one row), and 20 rows: two programs of 16 rows, the second one part padding."""
    with jax.enable_x64(True):
        params, xs, carry0, lengths = _problem(key, batch=batch, D=32)
        options = {"lengths": lengths} if batch else {}
        result = _value_and_grads(params, xs, carry0, **INTERPRET, **options)
        assert_trees_close(result, _value_and_grads(params, xs, carry0, impl="scan", **options), **F64)


def test_pallas_stacked_bidirectional_layers(key):
    with jax.enable_x64(True):
        k_p, k_x = jax.random.split(key)
        layers = init_layers(k_p, init_lstm, M, 16, 2, bidirectional=True, dtype=jnp.float64)
        assert isinstance(layers[0], Bidirectional)
        xs = jax.random.normal(k_x, (3, 5, M), jnp.float64)
        lengths = jnp.array([5, 2, 0])

        def loss(layers, impl):
            finals, hs = unroll_layers(lstm_cell(), layers, xs, lengths=lengths, impl=impl)
            return jnp.sum(jnp.sin(hs)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(finals))

        grads = [jax.value_and_grad(loss)(layers, impl) for impl in ("pallas_interpret", "scan")]
        assert_trees_close(*grads, **F64)


def test_pallas_zero_steps(key):
    """T = 0: the final carry is carry0, no outputs, and the gradient reaches carry0 unchanged."""
    with jax.enable_x64(True):
        params, xs, carry0, _ = _problem(key, T=0, D=16)
        result = _value_and_grads(params, xs, carry0, **INTERPRET)
        assert result[0][1].shape == (3, 0, 16)
        assert_trees_close(result, _value_and_grads(params, xs, carry0, impl="scan"), **F64)


def test_pallas_remat_chunks(key):
    """The kernels inside checkpointed chunks (``remat=3``: two chunks, the last one padded)."""
    with jax.enable_x64(True):
        params, xs, carry0, lengths = _problem(key, T=5, D=16)
        result = _value_and_grads(params, xs, carry0, lengths=lengths, remat=3, **INTERPRET)
        assert_trees_close(result, _value_and_grads(params, xs, carry0, lengths=lengths, impl="scan"), **F64)


def test_pallas_bfloat16_compute_equals_fast_path(key):
    """``compute_dtype="bfloat16"``: the kernels round the same matmul operands as the scan loops.

    They agree to about 3e-6 (the order of the float32 sums); kernels that skipped the rounding
    differ from the fast path by about 1e-3 and fail this (checked with such a mutant)."""
    params, xs, carry0, lengths = _problem(key, D=16, dtype=jnp.float32)
    options = dict(lengths=lengths, compute_dtype="bfloat16")
    result = _value_and_grads(params, xs, carry0, **INTERPRET, **options)
    assert_trees_close(result, _value_and_grads(params, xs, carry0, impl="fast", **options), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_pallas_16bit_parameters(dtype, key):
    """16-bit parameters: the kernels sum and do the pointwise work in float32 and store 16-bit carries,
    so they differ from the fast path (16-bit throughout) by 16-bit rounding, not more."""
    params, xs, carry0, lengths = _problem(key, D=16, dtype=jnp.float32)
    params, xs, carry0 = jax.tree.map(lambda a: a.astype(dtype), (params, xs, carry0))
    ours = _value_and_grads(params, xs, carry0, lengths=lengths, **INTERPRET)
    ref = _value_and_grads(params, xs, carry0, lengths=lengths, impl="fast")
    assert jax.tree.map(lambda a: a.dtype, ours) == jax.tree.map(lambda a: a.dtype, ref)
    tolerance = 4 * float(jnp.finfo(dtype).eps)  # 2^-6 for bfloat16, 2^-8 for float16
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.linalg.norm(a - b) <= tolerance * np.linalg.norm(b)


def test_pallas_tile_order_does_not_matter(key):
    """Hidden tiles visited last to first give the same numbers: no tile of a step reads what another
    tile of that step writes (the interpreter runs tiles in order; a GPU runs them in any)."""
    with jax.enable_x64(True):
        params, xs, carry0, lengths = _problem(key)
        zs = fast.input_projection(params.w_ih, jnp.moveaxis(xs, -2, 0))
        valid = jnp.moveaxis(valid_steps(lengths, xs.shape[-2]), -1, 0)
        kernel = LSTM_CELL.kernel

        def run(loops):
            def loss(w_hh, b, zs, carry0):
                carry, hs = fast.recurrence(kernel, True, loops, None, w_hh, b, (), zs, carry0, valid)
                return jnp.sum(jnp.sin(hs)) + jnp.sum(carry.c**2)

            return jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(params.w_hh, params.b, zs, carry0)

        forward_order = run(pallas_lstm.PallasLoops(interpret=True))
        assert_trees_close(run(pallas_lstm.PallasLoops(interpret=True, reverse_tiles=True)), forward_order, **F64)
        assert_trees_close(forward_order, run(fast.ScanLoops()), **F64)


def test_pallas_rejects_int32_overflow():
    with pytest.raises(ValueError, match=r"expected T·rows·4D < 2\*\*31 \(int32 offsets\), got 2048·256·4096"):
        pallas_lstm._blocks(pallas_lstm.PallasLoops(), 1024, (256,), 2048)


def test_pallas_loops_shapes_and_dtypes(key):
    """``PallasLoops.forward``/``backward`` return what ``ScanLoops``' do: same shapes, dtypes, values."""
    with jax.enable_x64(True):
        params, xs, carry0, lengths = _problem(key, batch=(2, 3), D=32)
        zs = fast.input_projection(params.w_ih, jnp.moveaxis(xs, -2, 0))
        valid = jnp.moveaxis(valid_steps(lengths, xs.shape[-2]), -1, 0)
        kernel = LSTM_CELL.kernel
        args = (kernel, False, None, params.w_hh, params.b, (), zs, carry0, valid)
        ours = pallas_lstm.PallasLoops(interpret=True).forward(*args)
        ref = fast.ScanLoops().forward(*args)
        assert jax.tree.map(lambda a: (a.shape, a.dtype), ours) == jax.tree.map(lambda a: (a.shape, a.dtype), ref)
        assert_trees_close(ours, ref, **F64)
        (final, hs), (carries, gates) = ref
        dfinal, dhs = LSTMState(jnp.sin(final.h), jnp.cos(final.c)), jnp.cos(hs)
        args = (kernel, False, params.w_hh, (), carry0, carries, gates, valid, dfinal, dhs)
        assert_trees_close(
            pallas_lstm.PallasLoops(interpret=True).backward(*args), fast.ScanLoops().backward(*args), **F64
        )


# ----------------------------------------------------------------------------------------------
# Lowering for the GPU, on this machine: jax.export runs the Pallas -> Triton lowering for "cuda".

# From jax 0.11 the Triton lowering takes its GPU from the abstract mesh when the machine has none
# (before, it fell back to compute capability 9.0): an H200, the GPU experiments/device_check.sh runs on.
H200 = jax.sharding.AbstractDevice(device_kind="NVIDIA H200", num_cores=132, platform="gpu")


def _export_for_cuda(fn, *args):
    """The text of ``jit(fn)`` exported for CUDA on an abstract H200 (a Triton call has no stable ABI)."""
    skip = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
    with jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((), (), abstract_device=H200)):
        return export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=skip)(*args).mlir_module()


def _lower_for_cuda(B, T, D, dtype=jnp.float32, **options):
    """Export the training step's gradient for CUDA; returns the exported module's text."""

    def loss(params, xs):
        carry, hs = unroll(lstm_cell(), params, xs, **options)
        return jnp.sum(hs.astype(jnp.float32) ** 2) + jnp.sum(carry.c.astype(jnp.float32))

    params = jax.eval_shape(lambda: init_lstm(jax.random.key(0), M, D, dtype=dtype))
    return _export_for_cuda(jax.grad(loss), params, jax.ShapeDtypeStruct((B, T, M), dtype))


@pytest.mark.parametrize(
    "case",
    [
        dict(B=8, T=150, D=256),
        dict(B=16, T=20, D=48, reverse=True, compute_dtype="bfloat16"),
        dict(B=40, T=10, D=64, dtype=jnp.bfloat16),
        dict(B=8, T=10, D=64, dtype=jnp.float16),
        dict(B=3, T=7, D=32, lengths=True),
    ],
    ids=["f32-8x150x256", "bf16-compute-reverse-D48", "bf16-params-3-blocks", "f16-params", "lengths"],
)
def test_pallas_lowers_to_triton_for_cuda(case, monkeypatch):
    """The two kernels lower to two Triton calls (``impl="pallas"`` checks for a GPU: patched here)."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    case = dict(case)
    if case.pop("lengths", False):
        case["lengths"] = jnp.array([7, 3, 0])
    text = _lower_for_cuda(**case, impl="pallas")
    assert text.count('name = "lstm_forward"') == 1
    assert text.count('name = "lstm_backward"') == 1


# ----------------------------------------------------------------------------------------------
# Bad options.


def test_pallas_needs_a_gpu_backend():
    with pytest.raises(ValueError, match="'pallas' compiles for a GPU, but the backend is 'cpu'"):
        check_options(lstm_cell(), impl="pallas")
    with pytest.raises(ConfigError, match="model.impl: 'pallas' compiles for a GPU"):
        ModelConfig(impl="pallas")


def test_pallas_is_lstm_only():
    with pytest.raises(ValueError, match="Pallas kernels: LSTM only"):
        check_options(rnn_cell("tanh"), impl="pallas_interpret")
    with pytest.raises(ConfigError, match="Pallas kernels: LSTM only"):
        ModelConfig(cell="rnn", impl="pallas_interpret")


def test_pallas_rejects_step_remat():
    with pytest.raises(ValueError, match="remat: expected None, 'sqrt' or a chunk length with impl='pallas_interpret'"):
        check_options(lstm_cell(), impl="pallas_interpret", remat="step")


def test_pallas_hidden_size_multiple_of_16(key):
    params, xs, carry0, _ = _problem(key, D=20, dtype=jnp.float32)
    with pytest.raises(ValueError, match="expected a hidden size that is a multiple of 16, got 20"):
        unroll(lstm_cell(), params, xs, carry0, **INTERPRET)


@pytest.mark.parametrize("block_batch", [8, 24])
def test_pallas_block_batch_power_of_two(block_batch):
    loops = pallas_lstm.PallasLoops(interpret=True, block_batch=block_batch)
    with pytest.raises(ValueError, match=f"block_batch: expected a power of two >= 16, got {block_batch}"):
        pallas_lstm._blocks(loops, 16, (3,), 5)


@pytest.mark.parametrize(("hidden", "block_hidden", "tile"), [(16, 64, 16), (48, 64, 16), (256, 64, 64), (96, 128, 32)])
def test_pallas_hidden_tile(hidden, block_hidden, tile):
    """The tile is the largest power of two up to ``block_hidden`` that divides ``D``."""
    blocks = pallas_lstm._blocks(pallas_lstm.PallasLoops(block_hidden=block_hidden), hidden, (20,), 5)
    assert (blocks.bn, blocks.rows) == (tile, 32)


@pytest.mark.parametrize(
    "loops",
    [pallas_lstm.PallasLoops(block_hidden=128, num_warps=8, num_stages=3), pallas_lstm.PallasLoops(block_hidden=32)],
    ids=["128-8-3", "32-4-1"],
)
def test_pallas_block_settings_lower_for_cuda(loops):
    """The settings ``experiments/loops_tune.py`` tries lower to Triton too (D=256: tiles of 128 and 32)."""
    kernel, D = LSTM_CELL.kernel, 256

    def loss(w_hh, b, zs, carry0):
        return jnp.sum(fast.recurrence(kernel, False, loops, jnp.bfloat16, w_hh, b, (), zs, carry0, None)[1])

    args = (jax.ShapeDtypeStruct((4 * D, D), jnp.float32), jax.ShapeDtypeStruct((4 * D,), jnp.float32))
    args += (jax.ShapeDtypeStruct((10, 16, 4 * D), jnp.float32),)
    carry0 = LSTMState(*(jax.ShapeDtypeStruct((16, D), jnp.float32),) * 2)
    text = _export_for_cuda(jax.grad(loss), *args, carry0)
    assert f"num_warps = {loops.num_warps} : i32" in text and f"num_stages = {loops.num_stages} : i32" in text
