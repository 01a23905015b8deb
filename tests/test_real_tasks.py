"""Tasks on shipped data (sunspots, digits, charlm) and the character sampler.

Shapes and dtypes, purity, that the splits are disjoint and batches come from their split, that
``eval_batch`` holds every example of its split exactly once, baselines recomputed independently
and as the baseline predictor scores them on ``eval_batch``, metrics of perfect predictors,
parameter errors; ``sample``'s length, alphabet, determinism and agreement with ``apply_model``.
The stdlib texts differ between Python versions: their counts are derived from the text here.
sunspots and digits need the ``data`` extra (statsmodels, scikit-learn); without it their tests
skip and the rest run.
"""

import collections
import functools
import importlib.util
import inspect
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.generate import sample
from lstm_jax.losses import sequence_loss
from lstm_jax.models import ModelSpec, apply_model, init_model
from lstm_jax.tasks import make_task, real, task_names, task_parameters

BIG = 4096

_WITHOUT = "needs the data extra (pip install 'lstm_jax[data]')"
#: The marks of each task's tests: sunspots and digits read their data from statsmodels and scikit-learn.
DATA = {
    "sunspots": pytest.mark.skipif(importlib.util.find_spec("statsmodels") is None, reason=_WITHOUT),
    "digits": pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason=_WITHOUT),
    "charlm": (),
}


def _case(name, *rest):
    """A parametrize case of task ``name``, skipped where its data package is missing."""
    return pytest.param(name, *rest, marks=DATA[name])


def _ids(chars, vocabulary):
    """Ids of ``chars`` in a charlm vocabulary, its last symbol for characters outside it (by a dict)."""
    index = {c: k for k, c in enumerate(vocabulary)}
    return np.array([index.get(c, len(vocabulary) - 1) for c in chars])


V_ZEN = len(real.charlm_vocabulary("zen"))
V_DOCS = len(real.charlm_vocabulary("stdlib_docs"))


@functools.lru_cache(maxsize=None)
def _task_and_batch(name, params=(), batch_size=BIG, seed=0):
    task = make_task(name, **dict(params))
    return task, task.make_batch(jax.random.key(seed), batch_size)


def _loss(task, logits, batch):
    targets = batch.targets
    if task.many_to_one:
        logits, targets = logits[:, None, :], targets[:, None, :]
    return float(
        sequence_loss(
            task.loss,
            logits,
            targets,
            reduction=task.reduction,
            mask=batch.mask[:, :1] if task.many_to_one else batch.mask,
        )
    )


def _windows(values, width):
    return np.lib.stride_tricks.sliding_window_view(values, width)


# --- registry ----------------------------------------------------------------------------------


def test_registry_lists_the_real_tasks_with_their_parameters():
    assert {"sunspots", "digits", "charlm"} <= set(task_names())
    assert task_parameters("sunspots") == {"T": 48, "horizon": 1, "split": "train"}
    assert task_parameters("digits") == {"order": "rows", "split": "train"}
    assert task_parameters("charlm") == {"T": 64, "text": None, "path": None, "split": "train", "eval_chars": 65536}


@pytest.mark.parametrize(
    "name, params, error",
    [
        _case("sunspots", {"T": 0}, r"^T: expected an integer >= 1"),
        _case("sunspots", {"horizon": 0}, r"^horizon: expected an integer >= 1"),
        _case("sunspots", {"T": 2.5}, r"^T: expected an integer, got float"),
        _case("sunspots", {"T": True}, r"^T: expected a Python integer"),
        _case("sunspots", {"T": 62}, r"^T \+ horizon: expected at most 62 .* got T=62, horizon=1"),
        _case("sunspots", {"T": 50, "horizon": 13}, r"^T \+ horizon: expected at most 62"),
        _case("sunspots", {"split": "valid"}, r"^split: expected one of \['train', 'test'\], got 'valid'"),
        _case("sunspots", {"split": 1}, r"^split: expected one of"),
        _case("digits", {"order": "columns"}, r"^order: expected one of \['rows', 'pixels'\], got 'columns'"),
        _case("digits", {"split": "Train"}, r"^split: expected one of"),
        ("charlm", {"T": 0}, r"^T: expected an integer >= 1"),
        ("charlm", {"T": 172}, r"^T: expected at most 171 \(T \+ 1 characters must fit in the 172-character test"),
        ("charlm", {"T": 172, "split": "train"}, r"^T: expected at most 171 .* of the 'zen' text\), got 172"),
        ("charlm", {"split": "valid"}, r"^split: expected one of \['train', 'test'\], got 'valid'"),
        (
            "charlm",
            {"text": "shakespeare"},
            r"^text: expected one of \['zen', 'stdlib_docs', 'stdlib_source'\], got 'shakespeare'",
        ),
        ("charlm", {"text": "zen", "path": "x.txt"}, r"^text: expected None when path is given .*, got 'zen'"),
        ("charlm", {"T": 8, "eval_chars": 7}, r"^eval_chars: expected an integer >= 8 \(at least one window"),
        ("charlm", {"eval_chars": 2.0}, r"^eval_chars: expected an integer, got float"),
        ("charlm", {"vocabulary": "abc"}, r"^task charlm: expected parameters among"),
    ],
)
def test_bad_parameters_raise(name, params, error):
    with pytest.raises(ValueError, match=error):
        make_task(name, **params)


@pytest.mark.parametrize("name", [_case("sunspots"), _case("digits"), "charlm"])
def test_bad_batch_size_raises(name):
    task = make_task(name)
    with pytest.raises(ValueError, match="^batch_size: expected an integer >= 1"):
        task.make_batch(jax.random.key(0), 0)


# --- shapes, dtypes, purity --------------------------------------------------------------------

SHAPES = [
    ("sunspots", (), (48, 1), (48, 1)),
    ("sunspots", (("T", 40), ("split", "test")), (40, 1), (40, 1)),
    ("sunspots", (("T", 5), ("horizon", 3)), (5, 1), (5, 1)),
    ("digits", (), (8, 8), (10,)),
    ("digits", (("order", "pixels"), ("split", "test")), (64, 1), (10,)),
    ("charlm", (("T", 16),), (16, V_ZEN), (16, V_ZEN)),
    ("charlm", (("T", 100), ("split", "test")), (100, V_ZEN), (100, V_ZEN)),
    ("charlm", (("T", 8), ("text", "stdlib_docs"), ("split", "test")), (8, V_DOCS), (8, V_DOCS)),
]


@pytest.mark.parametrize(
    "name, params, inputs, targets", [_case(*case) for case in SHAPES], ids=[f"{n}-{dict(p)}" for n, p, *_ in SHAPES]
)
def test_shapes_dtypes_and_purity(name, params, inputs, targets):
    task, batch = _task_and_batch(name, params, 3)
    assert batch.inputs.shape == (3, *inputs) and batch.inputs.dtype == jnp.float32
    assert batch.targets.shape == (3, *targets) and batch.targets.dtype == jnp.float32
    assert batch.mask.shape == (3, inputs[0]) and batch.mask.dtype == jnp.bool_ and bool(batch.mask.all())
    assert (task.input_size, task.output_size) == (inputs[-1], targets[-1])
    assert task.many_to_one == (len(targets) == 1)
    again = task.make_batch(jax.random.key(0), 3)
    for a, b in zip(batch, again):
        np.testing.assert_array_equal(a, b)
    other = task.make_batch(jax.random.key(1), 3)
    assert not np.array_equal(batch.inputs, other.inputs)


@pytest.mark.parametrize("name", [_case("sunspots"), _case("digits"), "charlm"])
def test_make_batch_under_an_outer_jit(name):
    task, batch = _task_and_batch(name, (), 3)
    again = jax.jit(task.make_batch, static_argnums=1)(jax.random.key(0), 3)
    for a, b in zip(batch, again):
        np.testing.assert_array_equal(a, b)


@DATA["sunspots"]
def test_longest_sunspots_window_fills_the_test_part():
    batch = make_task("sunspots", T=61, split="test").make_batch(jax.random.key(0), 2)
    test = real.sunspots_split("test").values.astype(np.float32)
    np.testing.assert_array_equal(batch.inputs[:, :, 0], np.broadcast_to(test[:-1], (2, 61)))


@pytest.mark.parametrize(
    "name, params, size",
    [
        _case("sunspots", (("T", 20), ("horizon", 2)), BIG),
        _case("digits", (("order", "pixels"),), 256),
        ("charlm", (("T", 32),), 256),
        ("charlm", (("T", 32), ("text", "stdlib_docs")), 256),
    ],
)
def test_both_splits_have_the_same_shapes(name, params, size):
    (train, a), (test, b) = (_task_and_batch(name, params + (("split", s),), size) for s in real.SPLITS)
    assert (train.input_size, train.output_size) == (test.input_size, test.output_size)
    assert a.inputs.shape == b.inputs.shape and a.targets.shape == b.targets.shape
    assert train.eval_batch.inputs.shape[1:] == test.eval_batch.inputs.shape[1:] == a.inputs.shape[1:]
    assert len(train.eval_batch.inputs) > len(test.eval_batch.inputs)


def _check_eval_batch(batch):
    """Dtypes and shapes of an ``eval_batch``, as ``make_batch`` gives them."""
    assert batch.inputs.dtype == batch.targets.dtype == jnp.float32 and batch.mask.dtype == jnp.bool_
    assert batch.mask.shape == batch.inputs.shape[:2] and len(batch.targets) == len(batch.inputs)


# --- sunspots ----------------------------------------------------------------------------------


@DATA["sunspots"]
def test_sunspots_data_scale_and_time_split():
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    raw = frame["SUNACTIVITY"].to_numpy()
    train, test = real.sunspots_split("train"), real.sunspots_split("test")
    assert (train.years[0], train.years[-1], test.years[0], test.years[-1]) == (1700, 1946, 1947, 2008)
    assert len(train.years) + len(test.years) == len(raw) == 309
    assert real.sunspots_scale() == raw[:247].max() == 154.4
    np.testing.assert_allclose(np.concatenate([train.values, test.values]) * 154.4, raw, rtol=1e-12)
    assert train.values.max() == 1.0 and train.values.min() >= 0.0


@pytest.mark.parametrize("split", ["train", "test"])
@DATA["sunspots"]
def test_sunspots_batches_are_windows_of_their_split_only(split):
    T, h = 20, 2
    _, batch = _task_and_batch("sunspots", (("T", T), ("horizon", h), ("split", split)))
    own = _windows(real.sunspots_split(split).values.astype(np.float32), T + h)
    other = _windows(real.sunspots_split("test" if split == "train" else "train").values.astype(np.float32), T + h)
    drawn = np.concatenate([batch.inputs[..., 0], batch.targets[:, -h:, 0]], axis=1)  # x[s : s+T+h]
    np.testing.assert_array_equal(batch.inputs[:, h:, 0], batch.targets[:, :-h, 0])
    matches = (drawn[:, None, :] == own[None, :, :]).all(-1)  # (B, windows of the split)
    assert matches.any(1).all()
    assert matches.any(0).all()  # 4096 draws reach every window, the first and the last included
    assert not (drawn[:, None, :] == other[None, :, :]).all(-1).any()


@pytest.mark.parametrize("split", ["train", "test"])
@DATA["sunspots"]
def test_sunspots_baseline_is_persistence_as_scored(split):
    T, h = 48, 1
    task, batch = _task_and_batch("sunspots", (("split", split),))
    x = [float(v) for v in real.sunspots_split(split).values]
    per_window = [
        sum((x[s + t + h] - x[s + t]) ** 2 for t in range(T)) / T for s in range(len(x) - T - h + 1)
    ]  # every window the batches draw from, equally likely
    assert task.baseline == pytest.approx(sum(per_window) / len(per_window), rel=1e-12)
    assert "persistence" in task.baseline_name
    persistence = batch.inputs  # x̂[t+h] = x[t]
    assert _loss(task, persistence, batch) == pytest.approx(task.baseline, rel=0.02)
    assert float(task.metric(persistence, batch)) == pytest.approx(_loss(task, persistence, batch), rel=1e-5)


@pytest.mark.parametrize("split, T, h", [("train", 48, 1), ("test", 48, 1), ("test", 20, 3)])
@DATA["sunspots"]
def test_sunspots_eval_batch_is_every_window_once_and_persistence_scores_the_baseline(split, T, h):
    task = make_task("sunspots", T=T, horizon=h, split=split)
    batch = task.eval_batch
    _check_eval_batch(batch)
    x = real.sunspots_split(split).values.astype(np.float32)
    n = len(x) - T - h + 1
    assert batch.inputs.shape == (n, T, 1) and bool(batch.mask.all())
    for s in range(n):  # window s, in time order
        np.testing.assert_array_equal(batch.inputs[s, :, 0], x[s : s + T])
        np.testing.assert_array_equal(batch.targets[s, :, 0], x[s + h : s + h + T])
    assert _loss(task, batch.inputs, batch) == pytest.approx(task.baseline, rel=1e-5)  # exactly, up to float32
    assert float(task.metric(batch.inputs, batch)) == pytest.approx(task.baseline, rel=1e-5)


@DATA["sunspots"]
def test_sunspots_metric_and_solved_rule():
    task, batch = _task_and_batch("sunspots")
    assert float(task.metric(batch.targets, batch)) == 0.0
    assert task.solved(1.0, 0.79 * task.baseline) and not task.solved(0.0, 0.8 * task.baseline)
    with pytest.raises(ValueError, match=r"^logits: expected shape \(4096, 48, 1\)"):
        task.metric(batch.targets[..., 0], batch)


# --- digits ------------------------------------------------------------------------------------


@DATA["digits"]
def test_digits_split_is_fixed_and_disjoint():
    from sklearn.datasets import load_digits

    train, test = real.digits_indices("train"), real.digits_indices("test")
    assert len(train) == 1437 and len(test) == 360
    assert not set(train.tolist()) & set(test.tolist())
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    assert train.max() < test.min()  # the last 20% of the file is held out
    bunch = load_digits()
    inputs, labels = real.digits_split("test", "rows")
    np.testing.assert_array_equal(inputs, (bunch.images[test] / 16).astype(np.float32))
    np.testing.assert_array_equal(labels, bunch.target[test])
    pixels, _ = real.digits_split("test", "pixels")
    np.testing.assert_array_equal(pixels.reshape(-1, 8, 8), inputs)


@pytest.mark.parametrize("split", ["train", "test"])
@DATA["digits"]
def test_digits_batches_hold_examples_of_their_split(split):
    task, batch = _task_and_batch("digits", (("split", split),), 256)
    inputs, labels = real.digits_split(split, "rows")
    same = (np.asarray(batch.inputs).reshape(256, 1, 64) == inputs.reshape(1, -1, 64)).all(-1)
    assert same.any(1).all()
    label_of_batch = np.asarray(batch.targets).argmax(-1)
    assert all(label_of_batch[b] in labels[same[b]] for b in range(256))
    np.testing.assert_array_equal(np.asarray(batch.targets).sum(-1), 1.0)
    _, pixels = _task_and_batch("digits", (("order", "pixels"), ("split", split)), 256)
    np.testing.assert_array_equal(pixels.inputs.reshape(256, 8, 8), batch.inputs)  # same draws, other layout


@pytest.mark.parametrize("split, order", [("train", "rows"), ("test", "rows"), ("test", "pixels")])
@DATA["digits"]
def test_digits_eval_batch_is_every_example_of_the_split_once(split, order):
    task = make_task("digits", order=order, split=split)
    batch = task.eval_batch
    _check_eval_batch(batch)
    inputs, labels = real.digits_split(split, order)
    assert len(batch.inputs) == len(real.digits_indices(split)) == {"train": 1437, "test": 360}[split]
    np.testing.assert_array_equal(batch.inputs, inputs)
    np.testing.assert_array_equal(np.asarray(batch.targets).argmax(-1), labels)
    assert bool(batch.mask.all())
    assert _loss(task, jnp.zeros_like(batch.targets), batch) == pytest.approx(task.baseline, rel=1e-6)
    wrong_on_first_ten = batch.targets.at[:10].set(jnp.roll(batch.targets[:10], 1, axis=-1))
    assert float(task.metric(wrong_on_first_ten, batch)) == pytest.approx(1 - 10 / len(labels), rel=1e-6)


@DATA["digits"]
def test_digits_baseline_metric_and_solved_rule():
    task, batch = _task_and_batch("digits", (), 256)
    assert task.baseline == math.log(10)
    assert _loss(task, jnp.zeros((256, 10)), batch) == pytest.approx(math.log(10), rel=1e-6)
    assert float(task.metric(batch.targets, batch)) == 1.0
    assert float(task.metric(-batch.targets, batch)) < 0.2
    assert task.solved(9.0, 0.95) and not task.solved(0.0, 0.949)


# --- charlm ------------------------------------------------------------------------------------


def test_zen_text_without_printing(capsys):
    text = real.charlm_text("zen")
    assert capsys.readouterr().out == ""
    assert text.startswith("The Zen of Python, by Tim Peters\n\nBeautiful is better than ugly.\n")
    assert text.endswith("Namespaces are one honking great idea -- let's do more of those!")
    assert len(text) == 856
    vocabulary = real.charlm_vocabulary("zen")
    assert vocabulary == "".join(sorted(set(text[:684]))) + real.UNKNOWN and len(vocabulary) == 45
    assert "!" not in vocabulary  # the last character of the Zen is its only one that training never shows


def test_stdlib_docs_text():
    text = real.charlm_text("stdlib_docs")
    assert json.__doc__ is None or inspect.cleandoc(json.__doc__) in text
    assert text.startswith("Command-line parsing library")
    assert len(text) > 20_000
    train = text[: int(0.8 * len(text))]
    assert real.charlm_vocabulary("stdlib_docs") == "".join(sorted(set(train))) + real.UNKNOWN
    assert make_task("charlm", T=8, text="stdlib_docs").input_size == len(set(train)) + 1


@pytest.mark.parametrize("text", ["zen", "stdlib_docs"])
def test_charlm_split_and_vocabulary(text):
    whole, train, test = real.charlm_text(text), real.charlm_split(text, "train"), real.charlm_split(text, "test")
    assert train + test == whole and len(train) == int(0.8 * len(whole))
    assert real.charlm_split(None, "test") == real.charlm_split("zen", "test")  # no text, no path: the Zen
    vocabulary = real.charlm_vocabulary(text)
    assert set(vocabulary) == set(train) | {real.UNKNOWN} and vocabulary[-1] == real.UNKNOWN
    unseen = set(test) - set(train)
    if text == "zen":
        assert (len(train), len(test)) == (684, 172) and test.endswith("let's do more of those!")
        assert unseen == {"!"}
    sizes = {make_task("charlm", T=8, text=text, split=s).input_size for s in real.SPLITS}
    assert sizes == {len(set(train)) + 1}
    np.testing.assert_array_equal(real.charlm_ids(test, vocabulary), _ids(test, vocabulary))
    assert (real.charlm_ids(test, vocabulary) == len(vocabulary) - 1).sum() == sum(c in unseen for c in test)
    with pytest.raises(ValueError, match=r"^split: expected one of \['train', 'test'\], got 'all'"):
        real.charlm_split(text, "all")


@pytest.mark.parametrize("split", ["train", "test"])
def test_charlm_batches_are_next_character_windows_of_their_split(split):
    T = 16
    task, batch = _task_and_batch("charlm", (("T", T), ("split", split)), 512)
    text, vocabulary = real.charlm_split("zen", split), real.charlm_vocabulary("zen")
    for one_hot in (batch.inputs, batch.targets):
        assert set(np.unique(one_hot)) == {0.0, 1.0}
        np.testing.assert_array_equal(np.asarray(one_hot).sum(-1), 1.0)
    np.testing.assert_array_equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    ids = np.concatenate([np.asarray(batch.inputs).argmax(-1), np.asarray(batch.targets)[:, -1:].argmax(-1)], 1)
    split_windows = _windows(_ids(text, vocabulary), T + 1)
    matches = (ids[:, None, :] == split_windows[None]).all(-1)  # (B, windows of the split)
    assert matches.any(1).all()  # every window lies inside its split
    if split == "test":  # 512 draws over the 156 windows of the test part reach both ends (and the unseen "!")
        assert matches[:, 0].any() and matches[:, -1].any()


_EVAL_CASES = [
    ("zen", "test", 57, 3),  # 171 targets = 3 x 57: no partial window
    ("zen", "test", 64, 3),  # 2 x 64 + 43: a last window overlapping the second, 43 steps counted
    ("zen", "test", 171, 1),
    ("zen", "train", 64, 11),  # 683 targets = 10 x 64 + 43
    ("stdlib_docs", "test", 64, None),  # its length differs between Python versions
    ("stdlib_docs", "train", 100, None),
]


@pytest.mark.parametrize("text, split, T, windows", _EVAL_CASES)
def test_charlm_eval_batch_predicts_every_character_once(text, split, T, windows):
    task = make_task("charlm", T=T, text=text, split=split)
    batch = task.eval_batch
    _check_eval_batch(batch)
    chars, vocabulary = real.charlm_split(text, split), real.charlm_vocabulary(text)
    targets_of_split = len(chars) - 1
    expected = math.ceil(targets_of_split / T)  # whole windows, then one partial window if T does not divide
    assert windows is None or windows == expected
    assert batch.inputs.shape == (expected, T, len(vocabulary))
    inputs, targets = np.asarray(batch.inputs).argmax(-1), np.asarray(batch.targets).argmax(-1)
    mask = np.asarray(batch.mask)
    assert mask.sum() == targets_of_split
    ids = _ids(chars, vocabulary)
    np.testing.assert_array_equal(targets[mask], ids[1:])  # row by row: in reading order, each character once
    starts = list(range(0, targets_of_split - T + 1, T)) + ([targets_of_split - T] if targets_of_split % T else [])
    for start, row_in, row_out in zip(starts, inputs, targets):  # each window: T + 1 consecutive characters
        np.testing.assert_array_equal(row_in, ids[start : start + T])
        np.testing.assert_array_equal(row_out, ids[start + 1 : start + T + 1])
    assert mask[:-1].all() and mask[-1].sum() == targets_of_split - (expected - 1) * T
    assert mask[-1, -1] and (mask[-1].all() or not mask[-1, 0])  # a partial window counts its last steps


@pytest.mark.parametrize("text, split", [("zen", "train"), ("zen", "test"), ("stdlib_docs", "test")])
def test_charlm_baseline_is_the_unigram_entropy_of_the_split_as_scored(text, split):
    T = 64
    task = make_task("charlm", T=T, text=text, split=split)
    chars, vocabulary = real.charlm_split(text, split), real.charlm_vocabulary(text)
    counts = collections.Counter(_ids(chars[1:], vocabulary).tolist())  # every target once, unseen ones pooled
    n = sum(counts.values())
    entropy = -sum(c / n * math.log(c / n) for c in counts.values())
    assert task.baseline == pytest.approx(entropy, rel=1e-12)
    bits = entropy / math.log(2)
    assert f"{bits:.4g} bits/char" in task.baseline_name and split in task.baseline_name
    unseen = sum(c not in vocabulary for c in chars)
    assert (f"{unseen} character(s) unseen in training" in task.baseline_name) == (unseen > 0)
    unigram = jnp.asarray([math.log(counts[k] / n) if counts[k] else -1e9 for k in range(len(vocabulary))])
    batch = task.eval_batch
    logits = jnp.broadcast_to(unigram.astype(jnp.float32).reshape(1, 1, -1), batch.targets.shape)
    loss = _loss(task, logits, batch)
    assert loss == pytest.approx(task.baseline, rel=1e-5)  # exactly, up to float32
    assert float(task.metric(logits, batch)) == pytest.approx(bits, rel=1e-5)
    bits = task.baseline / math.log(2)
    assert task.solved(0.0, 0.49 * bits) and not task.solved(0.0, 0.5 * bits)


def test_charlm_metric_counts_only_the_masked_steps():
    task = make_task("charlm", T=64, split="test")
    batch = task.eval_batch
    assert not bool(batch.mask.all())
    perfect = 100 * batch.targets
    garbage = jnp.where(batch.mask[..., None], perfect, -100 * batch.targets)  # wrong where not counted
    assert float(task.metric(garbage, batch)) < 1e-6
    wrong = jnp.where(batch.mask[..., None], -100 * batch.targets, perfect)
    assert float(task.metric(wrong, batch)) > 100


def test_charlm_metric_of_perfect_and_uniform_predictors():
    task, batch = _task_and_batch("charlm")
    assert float(task.metric(100 * batch.targets, batch)) < 1e-6
    assert float(task.metric(jnp.zeros_like(batch.targets), batch)) == pytest.approx(math.log2(V_ZEN), rel=1e-6)


# --- sample ------------------------------------------------------------------------------------

VOCAB = real.charlm_vocabulary("zen")  # 44 characters of the Zen's training part and UNKNOWN


@functools.lru_cache(maxsize=None)
def _model(cell="lstm", num_layers=1, seed=0, bidirectional=False):
    spec = ModelSpec(cell=cell)
    V = len(VOCAB)
    return spec, init_model(jax.random.key(seed), spec, V, 8, V, num_layers=num_layers, bidirectional=bidirectional)


@pytest.mark.parametrize("cell, num_layers", [("lstm", 1), ("lstm", 2), ("rnn", 2)])
def test_sample_length_alphabet_and_determinism(cell, num_layers):
    spec, params = _model(cell, num_layers)
    text = sample(spec, params, VOCAB, jax.random.key(3), "Beautiful", 40)
    assert len(text) == 40 and set(text) <= set(VOCAB)
    assert sample(spec, params, VOCAB, jax.random.key(3), "Beautiful", 40) == text
    assert sample(spec, params, VOCAB, jax.random.key(4), "Beautiful", 40) != text
    hot = sample(spec, params, VOCAB, jax.random.key(3), "Beautiful", 40, temperature=2.5)  # no recompilation
    assert len(hot) == 40 and set(hot) <= set(VOCAB)
    assert sample(spec, params, VOCAB, jax.random.key(3), "B", 0) == ""


@pytest.mark.parametrize("cell, num_layers", [("lstm", 2), ("rnn", 1)])
def test_sample_follows_a_head_that_prefers_one_character(cell, num_layers):
    spec, params = _model(cell, num_layers)
    bias = jnp.zeros(len(VOCAB), jnp.float32).at[VOCAB.index("e")].set(50.0)
    params = params._replace(head=params.head._replace(w=jnp.zeros_like(params.head.w), b=bias))
    assert sample(spec, params, VOCAB, jax.random.key(0), "Zen", 30) == "e" * 30


def test_sample_at_low_temperature_is_greedy_decoding_with_apply_model():
    spec, params = _model("lstm", 2, seed=1)
    params = params._replace(head=params.head._replace(w=20 * params.head.w))  # clear argmax gaps
    index = {c: k for k, c in enumerate(VOCAB)}
    logits = jax.jit(functools.partial(apply_model, spec, params))
    text = "Simple"
    for _ in range(8):  # the model is causal: padding after the text does not change the logits up to it
        ids = [index[c] for c in text] + [0] * (14 - len(text))
        inputs = jax.nn.one_hot(jnp.asarray([ids]), len(VOCAB), dtype=jnp.float32)
        text += VOCAB[int(jnp.argmax(logits(inputs)[0, len(text) - 1]))]
    assert sample(spec, params, VOCAB, jax.random.key(0), "Simple", 8, temperature=1e-4) == text[len("Simple") :]


def test_sample_rejects_what_cannot_be_sampled():
    spec, params = _model()
    key = jax.random.key(0)
    bi_spec, bi_params = _model(bidirectional=True)
    with pytest.raises(ValueError, match="^params.layers: expected unidirectional layers"):
        sample(bi_spec, bi_params, VOCAB, key, "a", 3)
    with pytest.raises(ValueError, match="^spec.many_to_one: expected a many-to-many model"):
        sample(spec._replace(many_to_one=True), params, VOCAB, key, "a", 3)
    with pytest.raises(ValueError, match=r"^prompt: expected characters of the vocabulary, got '#\$' outside it"):
        sample(spec, params, VOCAB, key, "a$#", 3)
    with pytest.raises(ValueError, match="^prompt: expected a non-empty string"):
        sample(spec, params, VOCAB, key, "", 3)
    for temperature in (0, 0.0, -1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="^temperature: expected a"):
            sample(spec, params, VOCAB, key, "a", 3, temperature=temperature)
    for length in (-1, 2.0, True):
        with pytest.raises(ValueError, match="^length: expected"):
            sample(spec, params, VOCAB, key, "a", length)
    with pytest.raises(ValueError, match=f"^vocabulary: expected the model's {V_ZEN} input channels and {V_ZEN} outp"):
        sample(spec, params, VOCAB[:-1], key, "a", 3)
    with pytest.raises(ValueError, match="^vocabulary: expected distinct characters, got 'a' repeated"):
        sample(spec, params, VOCAB[:-1] + "a", key, "a", 3)
