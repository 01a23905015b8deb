"""The MNIST-1D task (Greydanus & Kobak 2024) and its experiment's figure.

The data is the authors' (labels and values pinned from their ``mnist1d_data.pkl``), built offline;
shapes, dtypes and labels of both splits; ``shuffle_time`` is one fixed permutation of the 40 steps,
the same for both splits and for batches; building the data leaves the global generators alone; a
missing package says which ``pip install`` brings it; each config loads and one trains for 2 steps.
Tests that need the data skip when the ``mnist1d`` package (the ``data`` extra) is not installed.
"""

import math
import random
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import ROOT, load_experiment

from lstm_jax import rundir
from lstm_jax.config import load_config
from lstm_jax.tasks import make_task, task_names, task_parameters
from lstm_jax.tasks import mnist1d as m1d
from lstm_jax.train import fit

CONFIGS = [ROOT / "configs" / f"mnist1d_{cell}.yaml" for cell in ("lstm", "gru", "rnn")]
#: The paper's time permutation: numpy's legacy generator with seed 42 (stable across numpy versions).
PERMUTATION = [19, 16, 15, 26, 4, 12, 37, 27, 39, 6, 25, 9, 13, 31, 34, 8, 17, 24, 0, 33]  # first 20 of 40


@pytest.fixture(scope="module")
def data():
    """Skip where the data extra is missing; else the two splits, in order and shuffled."""
    pytest.importorskip("mnist1d")
    return {
        (s, shuffle): make_task("mnist1d", split=s, shuffle_time=shuffle)
        for s in ("train", "test")
        for shuffle in (False, True)
    }


def _labels(batch) -> np.ndarray:
    return np.asarray(batch.targets).argmax(-1)


def test_registered_with_its_parameters():
    assert "mnist1d" in task_names()
    assert task_parameters("mnist1d") == {"shuffle_time": False, "split": "train"}


@pytest.mark.parametrize(
    "params, error",
    [
        ({"shuffle_time": "yes"}, r"^shuffle_time: expected a bool \(True or False\), got str"),
        ({"shuffle_time": 1}, r"^shuffle_time: expected a bool"),
        ({"split": "valid"}, r"^split: expected one of \['train', 'test'\], got 'valid'"),
        ({"T": 20}, r"^task mnist1d: expected parameters among \['shuffle_time', 'split'\], got unknown \['T'\]"),
    ],
)
def test_bad_parameters_raise(params, error):
    with pytest.raises(ValueError, match=error):
        make_task("mnist1d", **params)


def test_data_is_the_published_set(data):
    """Values pinned from the authors' mnist1d_data.pkl (github.com/greydanus/mnist1d at 7878d96)."""
    train, labels = m1d.mnist1d_split("train")
    test, test_labels = m1d.mnist1d_split("test")
    assert labels[:20].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1, 6, 9, 4, 3, 4, 5, 1, 9, 0, 3]
    assert test_labels[:20].tolist() == [2, 6, 3, 9, 4, 3, 1, 9, 5, 2, 0, 7, 7, 1, 4, 6, 1, 4, 3, 9]
    np.testing.assert_allclose(
        train[0, :6, 0], [-0.332006, -0.47191, -0.778697, -1.009741, -0.882353, 0.103935], atol=1e-6
    )
    np.testing.assert_allclose(
        test[-1, -6:, 0], [-0.395911, -0.098646, 0.447233, 0.659876, 0.877734, 1.193152], atol=1e-6
    )
    assert np.abs(train.astype(np.float64)).sum() == pytest.approx(118338.29510719894, rel=1e-6)
    assert np.abs(test.astype(np.float64)).sum() == pytest.approx(29977.877540866408, rel=1e-6)
    assert np.bincount(labels).tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    assert np.bincount(test_labels).tolist() == [102, 104, 89, 106, 106, 98, 99, 96, 98, 102]


@pytest.mark.parametrize("split, n", [("train", 4000), ("test", 1000)])
def test_shapes_dtypes_and_labels(data, split, n):
    task = data[split, False]
    assert (task.input_size, task.output_size, task.many_to_one) == (1, 10, True)
    assert (task.loss, task.reduction, task.metric_name) == ("softmax_cross_entropy", "last", "accuracy")
    assert task.baseline == math.log(10)
    batch = task.eval_batch
    assert batch.inputs.shape == (n, 40, 1) and batch.inputs.dtype == jnp.float32
    assert batch.targets.shape == (n, 10) and batch.targets.dtype == jnp.float32
    assert batch.mask.shape == (n, 40) and batch.mask.dtype == jnp.bool_ and bool(batch.mask.all())
    np.testing.assert_array_equal(np.asarray(batch.targets).sum(-1), 1.0)
    inputs, labels = m1d.mnist1d_split(split)
    np.testing.assert_array_equal(batch.inputs, inputs)  # every example once, in the package's order
    np.testing.assert_array_equal(_labels(batch), labels)
    assert labels.dtype == np.int32 and set(labels.tolist()) == set(range(10))
    drawn = task.make_batch(jax.random.key(0), 64)
    assert drawn.inputs.shape == (64, 40, 1) and drawn.targets.shape == (64, 10) and drawn.mask.shape == (64, 40)
    same = (np.asarray(drawn.inputs)[:, None, :, 0] == inputs[None, :, :, 0]).all(-1)  # (64, n)
    assert same.any(1).all()  # every drawn row is an example of the split ...
    assert all(_labels(drawn)[b] in labels[same[b]] for b in range(64))  # ... with its label
    for a, b in zip(drawn, task.make_batch(jax.random.key(0), 64)):
        np.testing.assert_array_equal(a, b)


def test_metric_and_solved_rule(data):
    task, shuffled = data["test", False], data["test", True]
    batch = task.eval_batch
    assert float(task.metric(batch.targets, batch)) == 1.0
    wrong = batch.targets.at[:100].set(jnp.roll(batch.targets[:100], 1, axis=-1))
    assert float(task.metric(wrong, batch)) == pytest.approx(0.9, rel=1e-6)
    assert task.solved(9.0, 0.91) and not task.solved(0.0, 0.909)
    assert shuffled.solved(9.0, 0.57) and not shuffled.solved(0.0, 0.569)
    assert "0.91" in task.solved_rule and "0.57" in shuffled.solved_rule


def test_time_permutation_is_the_papers():
    permutation = m1d.time_permutation()
    assert permutation.tolist()[:20] == PERMUTATION
    assert sorted(permutation.tolist()) == list(range(40))
    assert not permutation.flags.writeable


def test_shuffle_time_is_one_fixed_permutation_of_every_sequence(data):
    permutation = m1d.time_permutation()
    assert (permutation != np.arange(40)).sum() >= 35  # far from the identity
    for split in ("train", "test"):  # the same permutation for both splits
        ordered, shuffled = data[split, False], data[split, True]
        np.testing.assert_array_equal(shuffled.eval_batch.inputs, ordered.eval_batch.inputs[:, permutation])
        np.testing.assert_array_equal(shuffled.eval_batch.targets, ordered.eval_batch.targets)
        assert not np.array_equal(shuffled.eval_batch.inputs, ordered.eval_batch.inputs)
        key = jax.random.key(3)  # batches too: the same examples, their steps permuted
        a, b = ordered.make_batch(key, 16), shuffled.make_batch(key, 16)
        np.testing.assert_array_equal(b.inputs, a.inputs[:, permutation])
        np.testing.assert_array_equal(b.targets, a.targets)


def test_building_the_data_leaves_the_global_generators_alone(data):
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    arrays = m1d._dataset.__wrapped__()  # build again, past the cache (make_dataset reseeds both with 42)
    assert (random.random(), np.random.rand()) == expected
    np.testing.assert_array_equal(arrays["x_test"], m1d._dataset()["x_test"])  # and it is deterministic


@pytest.mark.parametrize(
    "modules, message",
    [
        ({"mnist1d": None, "mnist1d.data": None}, r"^task mnist1d: needs the mnist1d package, which builds"),
        ({"mnist1d.data": None}, r"^task mnist1d: needs the mnist1d package, which builds"),
        ({"mnist1d": types.ModuleType("mnist1d")}, r"^task mnist1d: expected the mnist1d package, got the module"),
    ],
)
def test_a_missing_package_names_the_pip_install(monkeypatch, modules, message):
    monkeypatch.delitem(sys.modules, "mnist1d.data", raising=False)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)  # None: as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=message) as error:
        m1d._dataset.__wrapped__()
    if "needs" in message:
        assert str(error.value).endswith("pip install 'lstm_jax[data]' (or pip install mnist1d)")


def test_a_missing_dependency_of_the_package_is_named(monkeypatch, data):
    monkeypatch.delitem(sys.modules, "mnist1d.data")  # re-imported, and its `import requests` fails
    monkeypatch.setitem(sys.modules, "requests", None)
    with pytest.raises(ModuleNotFoundError, match=r"^task mnist1d: needs the mnist1d package \(installed, but its "):
        m1d._dataset.__wrapped__()


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_configs_load(path):
    config = load_config(path)
    assert config.task.name == "mnist1d" and config.task.params == {"shuffle_time": False}
    assert config.model.cell == path.stem.split("_")[1] and not config.train.stop_when_solved


def test_two_training_steps_on_the_shuffled_task(data, tmp_path):
    overrides = ["task.params.shuffle_time=true", "train.steps=2", "train.batch_size=8", "train.eval_every=1"]
    summary = fit(load_config(CONFIGS[1], overrides), tmp_path / "run", progress=None)
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert summary["task"] == {"name": "mnist1d", "params": {"shuffle_time": True}}
    assert 0.0 <= summary["final"]["accuracy"] <= 1.0 and summary["metric_name"] == "accuracy"
    assert [r["step"] for r in rundir.read_metrics(tmp_path / "run")] == [1, 2]


def test_figure_draws_the_committed_results(tmp_path):
    module = load_experiment("mnist1d_experiment")
    results = module.read_results()
    assert len(results["rows"]) == 36 and results["published"]["GRU"] == [91, 57]
    fig = module.make_figure(results)
    try:
        for ax, shuffle in zip(fig.axes[:2], (False, True)):  # a dot per seed, at the JSON's accuracy
            dots = sorted(y for line in ax.lines if line.get_marker() == "o" for y in line.get_ydata())
            expected = sorted(100 * r["accuracy"] for r in results["rows"] if r["shuffle_time"] == shuffle)
            np.testing.assert_allclose(dots, expected)
            references = {line.get_ydata()[0] for line in ax.lines if line.get_marker() != "o"}
            assert references == {pair[int(shuffle)] for pair in results["published"].values()}
    finally:
        module._pyplot().close(fig)
    path = module.figure(results, tmp_path / "mnist1d.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
