"""Losses from logits: stability, the manual ∂L_t/∂o_t, and the reductions over time with masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.losses import (
    LOSSES,
    OUTPUT_ACTIVATION,
    REDUCTIONS,
    sequence_loss,
    step_loss,
    step_loss_grad,
    time_weights,
)
from lstm_jax.unroll import valid_steps


def _targets(kind, key, shape):
    if kind == "softmax_cross_entropy":  # soft, unnormalised targets: the general formula
        return jax.random.uniform(key, shape, jnp.float64)
    if kind == "sigmoid_binary_cross_entropy":
        return jax.random.uniform(key, shape, jnp.float64)
    return jax.random.normal(key, shape, jnp.float64)


@pytest.mark.parametrize("kind", LOSSES)
def test_manual_step_loss_grad_equals_autodiff(kind, key):
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(key)
        logits = 3 * jax.random.normal(k1, (4, 5, 6), jnp.float64)
        targets = _targets(kind, k2, (4, 5, 6))
        auto = jax.grad(lambda o: jnp.sum(step_loss(kind, o, targets)))(logits)
        np.testing.assert_allclose(step_loss_grad(kind, logits, targets), auto, rtol=1e-12, atol=1e-15)


def test_cross_entropy_from_logits_is_stable_where_log_of_softmax_is_not():
    logits = jnp.array([[1000.0, 0.0, -1000.0]])
    y = jnp.array([[0.0, 0.0, 1.0]])
    assert not np.isfinite(float(-jnp.sum(y * jnp.log(jax.nn.softmax(logits)))))  # the naive way: inf
    np.testing.assert_allclose(step_loss("softmax_cross_entropy", logits, y), [2000.0], rtol=1e-6)
    g = step_loss_grad("softmax_cross_entropy", logits, y)
    np.testing.assert_allclose(g, [[1.0, 0.0, -1.0]], atol=1e-6)


def test_binary_cross_entropy_from_logits_is_stable():
    logits = jnp.array([[200.0, -200.0]])
    y = jnp.array([[0.0, 1.0]])
    np.testing.assert_allclose(step_loss("sigmoid_binary_cross_entropy", logits, y), [400.0], rtol=1e-6)
    np.testing.assert_allclose(step_loss("sigmoid_binary_cross_entropy", -logits, y), [0.0], atol=1e-6)


def test_step_losses_are_the_formulas():
    o = jnp.array([[0.5, -1.0, 2.0]])
    y = jnp.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(step_loss("softmax_cross_entropy", o, y), -np.log(jax.nn.softmax(o)[0, 1]), rtol=1e-6)
    p = 1 / (1 + np.exp(-np.asarray(o)))
    bce = -(np.asarray(y) * np.log(p) + (1 - np.asarray(y)) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(step_loss("sigmoid_binary_cross_entropy", o, y), bce, rtol=1e-6)
    np.testing.assert_allclose(step_loss("mse", o, y), [((0.5**2) + 4 + 4) / 3], rtol=1e-6)
    assert OUTPUT_ACTIVATION == {
        "softmax_cross_entropy": "softmax",
        "sigmoid_binary_cross_entropy": "sigmoid",
        "mse": "identity",
    }


def test_time_weights():
    mask = valid_steps(jnp.array([3, 1, 0]), 4)  # (3, 4)
    np.testing.assert_allclose(time_weights(mask, "sum_over_time"), np.asarray(mask) / 3)
    np.testing.assert_allclose(time_weights(mask, "mean"), np.asarray(mask) / 4)
    np.testing.assert_allclose(time_weights(mask, "last"), [[0, 0, 1 / 3, 0], [1 / 3, 0, 0, 0], [0, 0, 0, 0]])
    # "last" takes the last True of any mask pattern
    holes = jnp.array([[True, False, True, False]])
    np.testing.assert_allclose(time_weights(holes, "last"), [[0, 0, 1, 0]])


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sequence_loss_is_the_weighted_sum(kind, reduction, key):
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(key)
        logits = jax.random.normal(k1, (3, 5, 2), jnp.float64)
        targets = _targets(kind, k2, (3, 5, 2))
        lengths = np.array([5, 2, 0])
        per_step = np.asarray(step_loss(kind, logits, targets))
        if reduction == "sum_over_time":
            expected = sum(per_step[b, :n].sum() for b, n in enumerate(lengths)) / 3
        elif reduction == "mean":
            expected = sum(per_step[b, :n].sum() for b, n in enumerate(lengths)) / lengths.sum()
        else:
            expected = sum(per_step[b, n - 1] for b, n in enumerate(lengths) if n) / 3
        mask = valid_steps(jnp.asarray(lengths), 5)
        got = sequence_loss(kind, logits, targets, reduction=reduction, mask=mask)
        assert float(got) == pytest.approx(expected, rel=1e-12)
        # no mask: every step valid
        full = sequence_loss(kind, logits, targets, reduction=reduction)
        expected_full = {
            "sum_over_time": per_step.sum() / 3,
            "mean": per_step.mean(),
            "last": per_step[:, -1].sum() / 3,
        }
        assert float(full) == pytest.approx(expected_full[reduction], rel=1e-12)


def test_garbage_in_the_padding_cannot_reach_the_loss_or_its_gradient():
    logits = jnp.zeros((2, 4, 3))
    targets = jnp.full((2, 4, 3), jnp.nan).at[:, :2].set(jax.nn.one_hot(jnp.zeros((2, 2), int), 3))
    mask = valid_steps(jnp.array([2, 1]), 4)
    value, grad = jax.value_and_grad(lambda o: sequence_loss("softmax_cross_entropy", o, targets, mask=mask))(logits)
    assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad)))
    assert float(value) == pytest.approx(3 * np.log(3) / 2, rel=1e-6)
    assert bool(jnp.all(grad[:, 2:] == 0)) and bool(jnp.all(grad[1, 1:] == 0))


def test_last_reduction_accepts_one_target_per_sequence(key):
    logits = jax.random.normal(key, (3, 5, 2))
    targets = jax.nn.one_hot(jnp.array([0, 1, 1]), 2)
    lengths = jnp.array([5, 3, 1])
    mask = valid_steps(lengths, 5)
    short = sequence_loss("softmax_cross_entropy", logits, targets, reduction="last", mask=mask)
    full = jnp.broadcast_to(targets[:, None, :], logits.shape)
    assert float(short) == pytest.approx(
        float(sequence_loss("softmax_cross_entropy", logits, full, reduction="last", mask=mask))
    )
    last = logits[jnp.arange(3), lengths - 1]
    assert float(short) == pytest.approx(float(step_loss("softmax_cross_entropy", last, targets).mean()), rel=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_garbage_logits_in_the_padding_cannot_reach_the_loss_or_its_gradient(reduction):
    logits = jnp.zeros((2, 4, 3)).at[:, 2:].set(jnp.nan).at[1, 1].set(-jnp.inf)
    targets = jax.nn.one_hot(jnp.zeros((2, 4), int), 3)
    mask = valid_steps(jnp.array([2, 1]), 4)
    for kind in LOSSES:
        value, grad = jax.value_and_grad(lambda o: sequence_loss(kind, o, targets, reduction=reduction, mask=mask))(
            logits
        )
        assert np.isfinite(float(value)), (kind, reduction)
        assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.all(grad[:, 2:] == 0)), (kind, reduction)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_sixteen_bit_losses_count_and_sum_in_float32(dtype):
    """65,536 valid steps overflow float16 (max 65,504), and bf16 sums drift: both stay exact."""
    logits = jnp.zeros((64, 1024, 2), dtype)
    targets = jnp.full((64, 1024, 2), 0.5, dtype)
    mask = jnp.ones((64, 1024), bool)
    value = sequence_loss("mse", logits, targets, reduction="mean", mask=mask)
    assert value.dtype == jnp.float32
    assert float(value) == pytest.approx(0.25, rel=1e-6)
    assert float(time_weights(mask, "mean", dtype).astype(jnp.float32).sum()) == pytest.approx(1.0, rel=1e-2)
