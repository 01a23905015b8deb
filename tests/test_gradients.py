"""Manual BPTT (docs/maths.md) against jax.grad and centred finite differences, in float64.

Every case has a non-zero initial carry and ragged lengths (one full sequence, one empty one, the
rest random), so the masking of the recursion is exercised as much as the formulas.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

from lstm_jax import gradcheck, registry
from lstm_jax.bptt import autodiff_bptt, lstm_bptt, manual_bptt, model_loss
from lstm_jax.cells import ACTIVATIONS
from lstm_jax.losses import LOSSES, REDUCTIONS
from lstm_jax.unroll import valid_steps

# (B, T, M, D, N): the default problem, a single step, one sequence, a wide output, a long one.
SIZES = [(3, 7, 4, 5, 3), (3, 1, 2, 2, 2), (1, 6, 3, 4, 2), (4, 5, 2, 3, 6), (3, 20, 3, 4, 2)]


def _latin_square(first, second):
    """Pairs of ``first × second``, each with a reduction such that every (item, reduction) pair occurs."""
    return [
        (a, b, REDUCTIONS[(i + j) % len(REDUCTIONS)], SIZES[(i * len(second) + j) % len(SIZES)])
        for (i, a), (j, b) in itertools.product(enumerate(first), enumerate(second))
    ]


RNN_CASES = _latin_square(sorted(ACTIVATIONS), LOSSES)
#: Every other cell (the LSTM, the GRU, any cell added to the registry): every loss × reduction.
GATED_CASES = [
    (model, loss, red, SIZES[i % len(SIZES)])
    for model in registry.CELLS
    if model != "rnn"
    for i, (loss, red) in enumerate(itertools.product(LOSSES, REDUCTIONS))
]


def _assert_row(row):
    assert row.manual_vs_autodiff <= gradcheck.MANUAL_TOL, row
    assert row.autodiff_vs_fd <= gradcheck.FD_TOL, row
    assert row.manual_vs_fd <= gradcheck.FD_TOL, row


@pytest.mark.parametrize("activation, loss, reduction, sizes", RNN_CASES)
def test_rnn_manual_bptt_matches_autodiff_and_finite_differences(activation, loss, reduction, sizes):
    B, T, M, D, N = sizes
    row = gradcheck.check_model(
        "rnn", 1, activation=activation, loss=loss, reduction=reduction, B=B, T=T, M=M, D=D, N=N
    )
    _assert_row(row)


@pytest.mark.parametrize("model, loss, reduction, sizes", GATED_CASES)
def test_manual_bptt_matches_autodiff_and_finite_differences(model, loss, reduction, sizes):
    B, T, M, D, N = sizes
    row = gradcheck.check_model(model, 2, loss=loss, reduction=reduction, B=B, T=T, M=M, D=D, N=N)
    _assert_row(row)


@pytest.mark.parametrize("model", registry.CELLS)
def test_defaults_no_lengths_zero_carry_and_no_head_bias(model):
    """lengths=None, carry0=None and a head without c take their own code paths."""
    with jax.enable_x64(True):
        p = gradcheck.random_problem(3, model)
        head = p.head._replace(b=None)
        kw = dict(loss="softmax_cross_entropy", reduction="mean")
        cell = registry.make_cell(model)
        loss_m, grads_m = manual_bptt(cell, p.params, head, p.xs, p.targets, **kw)
        loss_a, grads_a = autodiff_bptt(cell, p.params, head, p.xs, p.targets, **kw)
        assert grads_m.head.b is None
        assert_trees_close(grads_m, grads_a, rtol=1e-10, atol=1e-14)
        assert float(loss_m) == pytest.approx(float(loss_a), rel=1e-14)


def test_last_step_targets_one_per_sequence():
    """A many-to-one loss accepts targets (B, N) and uses the last valid step of each sequence."""
    with jax.enable_x64(True):
        p = gradcheck.random_problem(4, "lstm")
        last = jnp.maximum(p.lengths - 1, 0)
        per_sequence = p.targets[jnp.arange(p.targets.shape[0]), last]
        kw = dict(loss="softmax_cross_entropy", reduction="last", lengths=p.lengths)
        _, full = lstm_bptt(*p[:3], p.targets, p.carry0, **kw)
        _, short = lstm_bptt(*p[:3], per_sequence, p.carry0, **kw)
        assert_trees_close(short, full, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("model", registry.CELLS)
def test_gradients_are_not_trivially_zero(model):
    """The comparisons above would pass for all-zero gradients: make sure every leaf is live (the GRU's b_hn too)."""
    with jax.enable_x64(True):
        p = gradcheck.random_problem(0, model)
        _, grads = manual_bptt(registry.make_cell(model), *p[:5], loss="softmax_cross_entropy", lengths=p.lengths)
        for leaf in jax.tree.leaves(grads):
            assert float(jnp.max(jnp.abs(leaf))) > 1e-4


@pytest.mark.parametrize("model", registry.CELLS)
def test_nan_padding_leaves_both_bptts_untouched(model):
    with jax.enable_x64(True):
        p = gradcheck.random_problem(5, model)
        padded = ~valid_steps(p.lengths, p.xs.shape[1])[..., None]
        dirty_xs = jnp.where(padded, jnp.nan, p.xs)
        dirty_targets = jnp.where(padded, jnp.nan, p.targets)
        cell = registry.make_cell(model)
        manual = functools.partial(manual_bptt, cell)
        kw = dict(loss="softmax_cross_entropy", lengths=p.lengths)
        clean = manual(*p[:5], **kw)
        assert_trees_close(manual(p.params, p.head, dirty_xs, dirty_targets, p.carry0, **kw), clean, rtol=1e-14)
        dirty_auto = autodiff_bptt(cell, p.params, p.head, dirty_xs, dirty_targets, p.carry0, **kw)
        assert_trees_close(dirty_auto, clean, rtol=1e-10, atol=1e-15)


def test_relative_error_reports_nan_in_any_leaf():
    ones = jnp.ones(2)
    assert np.isnan(gradcheck.relative_error((ones, jnp.array([jnp.nan, 1.0])), (ones, ones)))
    assert gradcheck.relative_error((ones, 2 * ones), (ones, ones)) == pytest.approx(0.5)


def test_finite_differences_probe_every_leaf():
    """Every parameter (including the head bias and the initial state) gets probed."""
    with jax.enable_x64(True):
        p = gradcheck.random_problem(0, "lstm")
        args = (p.params, p.head, p.carry0)
        coords, _ = gradcheck.finite_differences(lambda a: sum(jnp.sum(x) for x in jax.tree.leaves(a)), args, 0)
        sizes = [leaf.size for leaf in jax.tree.leaves(args)]
        leaf_of = np.searchsorted(np.cumsum(sizes), coords, side="right")
        assert sorted(set(leaf_of)) == list(range(len(sizes)))


def test_manual_derivatives_cover_every_activation():
    from lstm_jax.cells import DERIVATIVE_FROM_OUTPUT

    assert set(DERIVATIVE_FROM_OUTPUT) == set(ACTIVATIONS)


# ---- T = 0 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", registry.CELLS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_no_steps_give_loss_zero_and_zero_gradients(model, reduction):
    """T = 0, which ``unroll`` accepts, is a batch of sequences that are all padding: the loss is 0 for every
    reduction (``losses.sequence_loss``: no valid step, no weight) and so is every gradient, in the manual
    BPTT, in autodiff through the scan and through the fast path, with or without ``lengths``."""
    with jax.enable_x64(True):
        p = gradcheck.random_problem(6, model, T=0)
        assert p.xs.shape[-2] == 0 and p.targets.shape[-2] == 0
        cell = registry.make_cell(model)
        manual = functools.partial(manual_bptt, cell)
        per_sequence = jnp.full(p.targets.shape[:-2] + p.targets.shape[-1:], 1 / p.targets.shape[-1], jnp.float64)
        targets = per_sequence if reduction == "last" else p.targets  # "last" also takes (B, N)
        kw = dict(loss="softmax_cross_entropy", reduction=reduction)
        expected = jax.tree.map(jnp.zeros_like, (p.params, p.head, p.carry0))
        for lengths in (None, p.lengths):
            loss_m, grads_m = manual(p.params, p.head, p.xs, p.targets, p.carry0, lengths=lengths, **kw)
            loss_a, grads_a = autodiff_bptt(cell, p.params, p.head, p.xs, targets, p.carry0, lengths=lengths, **kw)
            for loss, grads in ((loss_m, grads_m), (loss_a, grads_a)):
                assert loss.shape == () and loss.dtype == jnp.float64 and float(loss) == 0.0
                assert_trees_close(tuple(grads), expected, rtol=0)
        for impl in ("fast", "scan"):
            value, grads = jax.value_and_grad(model_loss, argnums=(1, 2, 5))(
                cell, p.params, p.head, p.xs, targets, p.carry0, impl=impl, **kw
            )
            assert float(value) == 0.0, impl
            assert_trees_close(grads, expected, rtol=0)


@pytest.mark.parametrize("reduction", ["mean", "last"])  # where "no step" needs a decision: no 0/0
def test_no_steps_lose_what_sequences_of_padding_lose(reduction):
    """The T = 0 result is the one of the same batch with T = 3 and every length 0 (where no step counts)."""
    with jax.enable_x64(True):
        empty = gradcheck.random_problem(7, "lstm", T=0)
        padded = gradcheck.random_problem(7, "lstm", T=3)
        kw = dict(loss="softmax_cross_entropy", reduction=reduction)
        zero_lengths = jnp.zeros_like(padded.lengths)
        assert_trees_close(
            lstm_bptt(*empty[:5], **kw), lstm_bptt(*padded[:5], lengths=zero_lengths, **kw), rtol=0, atol=0
        )
