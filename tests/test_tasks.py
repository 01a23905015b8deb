"""Synthetic tasks: shapes, purity under jit, the layouts of the papers, baselines as scored, metrics and rules.

Compiling a generator dominates the run time, so the tests share one cached batch of ``BIG``
sequences per parameter set (drawn from ``jax.random.key(0)``).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.losses import LOSSES, REDUCTIONS, sequence_loss
from lstm_jax.tasks import Batch, make_task, task_names, task_parameters
from lstm_jax.tasks.synthetic import TEMPORAL_ORDER_CLASSES, TEMPORAL_ORDER_SYMBOLS

BIG = 4096  # sequences per shared batch: the adding baseline's standard error is then 0.003

# (name, params, steps per sequence, input size, output size)
CASES = [
    ("adding", (("T", 2),), 2, 2, 1),
    ("adding", (("T", 7),), 7, 2, 1),
    ("adding", (), 100, 2, 1),
    ("copy", (("T", 1),), 21, 10, 9),
    ("copy", (), 120, 10, 9),
    ("copy", (("T", 30), ("num_symbols", 3), ("copy_length", 4)), 38, 5, 4),
    ("temporal_order", (("T", 10),), 10, 8, 4),
    ("temporal_order", (("T", 37),), 37, 8, 4),
    ("temporal_order", (), 100, 8, 4),
]
IDS = [f"{name}-{dict(params)}" for name, params, *_ in CASES]
NAMES = ["adding", "copy", "temporal_order"]


def _task_and_batch(name, params=()):
    """``(task, batch of BIG sequences from key 0)``, cached across tests; ``params`` as ``(name, value)`` pairs."""
    return _cached_task_and_batch(name, tuple(sorted(params)))


@functools.lru_cache(maxsize=None)
def _cached_task_and_batch(name, params):
    task = make_task(name, **dict(params))
    return task, task.make_batch(jax.random.key(0), BIG)


def _ids(one_hot) -> np.ndarray:
    """Symbol ids from a one-hot array, after checking that it is one-hot."""
    one_hot = np.asarray(one_hot)
    assert set(np.unique(one_hot)) <= {0.0, 1.0}
    np.testing.assert_array_equal(one_hot.sum(-1), 1.0)
    return one_hot.argmax(-1)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _sequence_loss(kind, reduction, logits, targets, mask):
    return sequence_loss(kind, logits, targets, reduction=reduction, mask=mask)


def _loss(task, logits, batch):
    """The task's loss of ``logits`` ``(B, T, N)`` on ``batch``, as training would compute it."""
    return float(_sequence_loss(task.loss, task.reduction, logits, batch.targets, batch.mask))


def _at_last_step(task, batch, logits):
    """Many-to-one ``(B, N)`` logits placed on the last step of ``(B, T, N)`` zeros, for the sequence loss."""
    full = jnp.zeros(batch.inputs.shape[:2] + logits.shape[-1:], logits.dtype)
    return full.at[:, -1].set(logits)


# --- registry and parameters -------------------------------------------------------------


def test_registry_lists_the_three_tasks_with_their_parameters():
    assert set(NAMES) <= set(task_names())
    assert task_parameters("adding") == {"T": 100}
    assert task_parameters("copy") == {"T": 100, "num_symbols": 8, "copy_length": 10}
    assert task_parameters("temporal_order") == {"T": 100}


@pytest.mark.parametrize(
    "name, params, match",
    [
        ("no_such_task", {}, "expected one of"),
        ("adding", {"length": 10}, "unknown"),
        ("copy", {"delay": 10}, "unknown"),
        ("adding", {"T": 1}, r"T: expected an integer >= 2 .*got 1"),
        ("adding", {"T": 100.0}, "T: expected an integer, got float"),
        ("adding", {"T": True}, "T: expected a Python integer"),
        ("copy", {"T": 0}, r"T: expected an integer >= 1 .*got 0"),
        ("copy", {"num_symbols": 0}, r"num_symbols: expected an integer >= 1 .*got 0"),
        ("copy", {"copy_length": -3}, r"copy_length: expected an integer >= 1 .*got -3"),
        ("temporal_order", {"T": 9}, r"T: expected an integer >= 10 .*got 9"),
        ("temporal_order", {"T": "100"}, "T: expected an integer, got str"),
    ],
)
def test_bad_names_and_parameters_raise_value_error(name, params, match):
    with pytest.raises(ValueError, match=match):
        make_task(name, **params)


@pytest.mark.parametrize("batch_size", [0, -1, 2.0, True])
def test_bad_batch_size_raises(batch_size, key):
    with pytest.raises(ValueError, match="batch_size: expected"):
        make_task("adding").make_batch(key, batch_size)


def test_traced_batch_size_asks_for_a_static_argument(key):
    with pytest.raises(ValueError, match="static"):
        jax.jit(make_task("copy").make_batch)(key, 4)


# --- shapes, purity, jit -----------------------------------------------------------------


@pytest.mark.parametrize("name, params, steps, input_size, output_size", CASES, ids=IDS)
def test_shapes_dtypes_and_fields(name, params, steps, input_size, output_size):
    task, batch = _task_and_batch(name, params)
    assert (task.name, task.input_size, task.output_size) == (name, input_size, output_size)
    assert task.loss in LOSSES and task.reduction in REDUCTIONS
    assert task.reduction == ("last" if task.many_to_one else "mean")
    assert isinstance(batch, Batch)
    assert batch.inputs.shape == (BIG, steps, input_size) and batch.inputs.dtype == jnp.float32
    target_shape = (BIG, output_size) if task.many_to_one else (BIG, steps, output_size)
    assert batch.targets.shape == target_shape and batch.targets.dtype == jnp.float32
    assert batch.mask.shape == (BIG, steps) and batch.mask.dtype == jnp.bool_
    assert bool(batch.mask.all())


@pytest.mark.parametrize("name", NAMES)
def test_make_batch_is_a_pure_function_of_the_key_and_jits(name):
    task, first = _task_and_batch(name)
    again = make_task(name).make_batch(jax.random.key(0), BIG)  # a new task instance, same draw
    jitted = jax.jit(task.make_batch, static_argnums=1)(jax.random.key(0), BIG)
    other = task.make_batch(jax.random.key(1), BIG)
    for a, b, c in zip(first, again, jitted):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(first.inputs, other.inputs)
    assert not np.array_equal(first.targets, other.targets)


def test_make_batch_takes_raw_uint32_keys_too():
    batch = make_task("adding", T=2).make_batch(jax.random.PRNGKey(0), 3)
    assert batch.inputs.shape == (3, 2, 2) and batch.targets.shape == (3, 1)


# --- layouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("T", [2, 7, 100])
def test_adding_one_marker_per_half_and_target_is_the_marked_sum(T):
    _, batch = _task_and_batch("adding", () if T == 100 else (("T", T),))
    values, markers = np.asarray(batch.inputs[..., 0]), np.asarray(batch.inputs[..., 1])
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(np.unique(markers)) <= {0.0, 1.0}
    half = T // 2
    np.testing.assert_array_equal(markers[:, :half].sum(1), 1.0)
    np.testing.assert_array_equal(markers[:, half:].sum(1), 1.0)
    first, second = markers[:, :half].argmax(1), half + markers[:, half:].argmax(1)
    # every step of each half is drawn, the last one too for odd T
    assert set(first) == set(range(half)) and set(second) == set(range(half, T))
    rows = np.arange(len(values))
    np.testing.assert_array_equal(batch.targets[:, 0], values[rows, first] + values[rows, second])


@pytest.mark.parametrize("params", [(("T", 1),), (), (("T", 30), ("num_symbols", 3), ("copy_length", 4))])
def test_copy_layout(params):
    task, batch = _task_and_batch("copy", params)
    T, K, c = (dict(task_parameters("copy"), **dict(params))[p] for p in ("T", "num_symbols", "copy_length"))
    inputs, targets = _ids(batch.inputs), _ids(batch.targets)
    data = inputs[:, :c]
    assert set(np.unique(data)) == set(range(1, K + 1))  # uniform over 1..K, every symbol drawn
    np.testing.assert_array_equal(inputs[:, c : c + T - 1], 0)
    np.testing.assert_array_equal(inputs[:, c + T - 1], K + 1)  # the delimiter, T steps after the data
    np.testing.assert_array_equal(inputs[:, c + T :], 0)
    np.testing.assert_array_equal(targets[:, : T + c], 0)
    np.testing.assert_array_equal(targets[:, T + c :], data)


def test_copy_default_is_the_papers_sequence():
    """Arjovsky et al. §4.1, T = 100: 10 symbols from 8, then 99 blanks, the delimiter, 10 blanks: 120 steps."""
    _, batch = _task_and_batch("copy")
    inputs = _ids(batch.inputs)
    assert inputs.shape == (BIG, 120)
    assert ((inputs[:, :10] >= 1) & (inputs[:, :10] <= 8)).all()
    assert (inputs[:, 10:109] == 0).all() and (inputs[:, 109] == 9).all() and (inputs[:, 110:] == 0).all()
    np.testing.assert_array_equal(_ids(batch.targets)[:, 110:], inputs[:, :10])


@pytest.mark.parametrize(
    "T, t1_window, t2_window", [(10, (1, 2), (5, 6)), (37, (3, 6), (18, 21)), (100, (10, 20), (50, 60))]
)
def test_temporal_order_layout(T, t1_window, t2_window):
    symbol = {s: i for i, s in enumerate(TEMPORAL_ORDER_SYMBOLS)}
    _, batch = _task_and_batch("temporal_order", () if T == 100 else (("T", T),))
    ids = _ids(batch.inputs)
    np.testing.assert_array_equal(ids[:, 0], symbol["E"])  # 1997: "starts with an E, ends with a B"
    np.testing.assert_array_equal(ids[:, -1], symbol["B"])
    relevant = (ids == symbol["X"]) | (ids == symbol["Y"])
    np.testing.assert_array_equal(relevant.sum(1), 2)
    t1 = relevant.argmax(1)
    t2 = T - 1 - relevant[:, ::-1].argmax(1)
    assert set(t1) == set(range(*t1_window)) and set(t2) == set(range(*t2_window))
    middle = ids[:, 1:-1][~relevant[:, 1:-1]]
    assert set(np.unique(middle)) == {symbol[s] for s in "abcd"}
    rows = np.arange(len(ids))
    pair = [TEMPORAL_ORDER_SYMBOLS[a] + TEMPORAL_ORDER_SYMBOLS[b] for a, b in zip(ids[rows, t1], ids[rows, t2])]
    labels = [TEMPORAL_ORDER_CLASSES[i] for i in _ids(batch.targets)]
    assert pair == labels
    assert set(labels) == set(TEMPORAL_ORDER_CLASSES)


# --- baselines, metrics and the solved rules ---------------------------------------------


def test_adding_baseline_is_the_score_of_predicting_one():
    task, batch = _task_and_batch("adding")
    ones = jnp.ones((BIG, 1), jnp.float32)
    loss = _loss(task, _at_last_step(task, batch, ones), batch)
    assert task.baseline == pytest.approx(1 / 6)
    assert loss == pytest.approx(task.baseline, abs=0.01)  # standard error sqrt(7/180)/64 = 0.003
    mse = float(task.metric(ones, batch))
    assert mse == pytest.approx(loss, rel=1e-5)
    assert not task.solved(loss, mse)


@pytest.mark.parametrize("params", [(), (("T", 30), ("num_symbols", 3), ("copy_length", 4))])
def test_copy_baseline_is_the_score_of_the_memoryless_strategy(params):
    task, batch = _task_and_batch("copy", params)
    T, K, c = (dict(task_parameters("copy"), **dict(params))[p] for p in ("T", "num_symbols", "copy_length"))
    # From the shapes only: the blank with certainty, then uniform over the K data symbols.
    blank = jnp.zeros((BIG, T + c, K + 1), jnp.float32).at[..., 0].set(60.0)
    guess = jnp.zeros((BIG, c, K + 1), jnp.float32).at[..., 0].set(-60.0)
    logits = jnp.concatenate([blank, guess], axis=1)
    loss = _loss(task, logits, batch)
    assert task.baseline == pytest.approx(c * math.log(K) / (T + 2 * c), rel=1e-12)
    assert loss == pytest.approx(task.baseline, rel=1e-5)
    accuracy = float(task.metric(logits, batch))
    assert accuracy == pytest.approx(1 / K, abs=0.03)  # the argmax of a tie picks symbol 1
    assert not task.solved(loss, accuracy)


def test_copy_default_baseline_is_10_ln_8_over_T_plus_20():
    for T in (1, 100, 500):
        assert make_task("copy", T=T).baseline == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)


def test_temporal_order_baseline_is_the_score_of_chance():
    task, batch = _task_and_batch("temporal_order")
    uniform = jnp.zeros((BIG, 4), jnp.float32)
    loss = _loss(task, _at_last_step(task, batch, uniform), batch)
    assert task.baseline == math.log(4)
    assert loss == pytest.approx(math.log(4), rel=1e-6)
    accuracy = float(task.metric(uniform, batch))
    assert accuracy == pytest.approx(0.25, abs=0.03)  # the argmax of a tie picks class XX
    assert not task.solved(loss, accuracy)


@pytest.mark.parametrize("name", NAMES)
def test_a_perfect_predictor_scores_perfectly_and_is_solved(name):
    task, batch = _task_and_batch(name)
    logits = batch.targets if task.loss == "mse" else 30.0 * batch.targets
    value = float(task.metric(logits, batch))
    loss = _loss(task, _at_last_step(task, batch, logits) if task.many_to_one else logits, batch)
    assert value == (0.0 if task.metric_name == "mse" else 1.0)
    assert loss == pytest.approx(0.0, abs=1e-6)
    assert task.solved(loss, value)


def test_copy_metric_counts_only_the_copy_steps():
    task, batch = _task_and_batch("copy", (("T", 30), ("num_symbols", 3), ("copy_length", 4)))
    logits = batch.targets
    wrong_before = logits.at[:, :34].set(jnp.roll(logits[:, :34], 1, axis=-1))
    assert float(task.metric(wrong_before, batch)) == 1.0
    one_wrong = logits.at[0, -1].set(jnp.roll(logits[0, -1], 1))
    assert float(task.metric(one_wrong, batch)) == 1 - 1 / (4 * BIG)


@pytest.mark.parametrize("name", NAMES)
def test_metrics_run_under_jit_and_take_16_bit_logits(name):
    task, batch = _task_and_batch(name)
    value = jax.jit(task.metric)(batch.targets.astype(jnp.bfloat16), batch)
    assert value.shape == () and value.dtype == jnp.float32
    if name == "adding":  # the targets rounded to bfloat16's 8-bit significand
        assert 0.0 < float(value) < 1e-4
    else:
        assert float(value) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_metric_rejects_logits_not_shaped_like_the_targets(name):
    task, batch = _task_and_batch(name)
    wrong = jnp.zeros((BIG, 2, task.output_size), jnp.float32)
    if not task.many_to_one:
        wrong = wrong[:, -1]
    with pytest.raises(ValueError, match="logits: expected shape"):
        task.metric(wrong, batch)
    with pytest.raises(ValueError, match="logits: expected a floating dtype"):
        task.metric(batch.targets.astype(jnp.int32), batch)


def test_solved_thresholds():
    adding, copy, order = make_task("adding"), make_task("copy"), make_task("temporal_order")
    assert adding.solved(1.0, 0.0099) and not adding.solved(0.0, 0.01)
    assert copy.solved(1.0, 0.99) and not copy.solved(0.0, 0.989)
    assert order.solved(1.0, 0.99) and not order.solved(0.0, 0.989)
    for task in (adding, copy, order):
        assert task.metric_name in task.solved_rule and task.baseline_name
