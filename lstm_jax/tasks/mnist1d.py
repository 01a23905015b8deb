r"""MNIST-1D (Greydanus & Kobak): 1-D "digits" of 40 samples, read one sample per step.

Reference: S. Greydanus, D. Kobak. "Scaling Down Deep Learning with MNIST-1D", ICML 2024
(arXiv:2011.14439, first version 2020); code and data https://github.com/greydanus/mnist1d.

The data set is built, not downloaded: ``mnist1d.data.make_dataset(get_dataset_args())`` of the
``mnist1d`` package (the ``data`` extra) draws it procedurally from ten 12-point templates (padding,
dilation, scaling, translation, correlated and i.i.d. noise, shear, resampling to 40 points) with
numpy's legacy generator seeded with 42. With mnist1d 0.0.2.post1 this gives exactly the authors'
``mnist1d_data.pkl`` (checked against the repository's file at commit 7878d96: the same labels, inputs
equal to 8.9e-16). ``get_dataset`` is never called: it downloads that file when it is not on disk.
The set is built once per process (about 1 s) and cached; building it saves and restores the global
``random`` and ``numpy.random`` states that ``make_dataset`` reseeds, so a caller's generators are
left as they were.
"""

from __future__ import annotations

import functools
import importlib
import math
import random
import sys

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax import _checks
from lstm_jax.tasks import Batch, Task, register
from lstm_jax.tasks._common import accuracy, check_batch_size, check_choice, check_int, check_logits
from lstm_jax.tasks.real import SPLITS, _all_examples, _example_batch, _frozen

Array = jax.Array

#: Classes (the digits 0..9).
MNIST1D_CLASSES = 10
#: The seed of the fixed time permutation of ``shuffle_time=True`` (:func:`time_permutation`).
SHUFFLE_SEED = 42
#: Test accuracy of the published GRU, without and with the time axis shuffled: the "solved" bar.
#: mnist1d README and paper table: logistic regression 32% / 32%, MLP 68% / 68%, CNN 94% / 56%,
#: GRU 91% / 57%, human ~96% / ~30% (normal / shuffled).
PUBLISHED_GRU_ACCURACY = {False: 0.91, True: 0.57}


@functools.lru_cache(maxsize=None)
def _dataset() -> dict[str, np.ndarray]:
    """The MNIST-1D arrays ``x (4000, 40)``, ``y``, ``x_test (1000, 40)``, ``y_test``: float32 and int32, read-only."""
    try:
        data = importlib.import_module("mnist1d.data")
    except ModuleNotFoundError as error:
        shadow = sys.modules.get("mnist1d")
        if shadow is not None and not hasattr(shadow, "__path__"):  # a user's mnist1d.py found first on sys.path
            raise ModuleNotFoundError(
                f"task mnist1d: expected the mnist1d package, got the module {getattr(shadow, '__file__', shadow)}, "
                "which shadows it: rename that file or run from another folder"
            ) from error
        own = error.name is None or error.name.split(".")[0] == "mnist1d"
        missing = "" if own else f" (installed, but its dependency {error.name} is not)"
        raise ModuleNotFoundError(
            f"task mnist1d: needs the mnist1d package{missing}, which builds the data set offline: "
            "pip install 'lstm_jax[data]' (or pip install mnist1d)"
        ) from error
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:  # make_dataset reseeds both global generators; give the caller's back
        raw = data.make_dataset(data.get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = {}
    for name, dtype in (("x", np.float32), ("y", np.int32), ("x_test", np.float32), ("y_test", np.int32)):
        arrays[name] = _frozen(np.asarray(raw[name]).astype(dtype))
    x, x_test, labels = arrays["x"], arrays["x_test"], np.concatenate([arrays["y"], arrays["y_test"]])
    if x.ndim != 2 or x_test.shape[1:] != x.shape[1:] or not set(np.unique(labels)) <= set(range(MNIST1D_CLASSES)):
        raise RuntimeError(
            "mnist1d: expected inputs (n, T) of one T and labels 0..9 from mnist1d.data.make_dataset, got "
            f"inputs {x.shape} and {x_test.shape}, labels {sorted(set(np.unique(labels).tolist()))}"
        )
    return arrays


def time_permutation(T: int = 40) -> np.ndarray:
    """The fixed permutation of the ``T`` steps that ``shuffle_time=True`` applies to every sequence,
    of both splits: ``numpy.random.RandomState(42).permutation(T)``, the order the paper's benchmark
    notebook (``mnist1d-classification.ipynb``) draws with ``np.random.seed(42);
    np.random.permutation(40)``. Step ``t`` of a shuffled sequence is step ``permutation[t]`` of the
    original."""
    T = check_int("T", T, 1, "steps per sequence")
    return _frozen(np.random.RandomState(SHUFFLE_SEED).permutation(T))


def mnist1d_split(split: str = "train", shuffle_time: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs (n, 40, 1) float32, labels (n,) int32)`` of a split as the task feeds them:
    ``"train"`` the package's 4000 training examples, ``"test"`` its 1000 test examples, in the
    package's order; with ``shuffle_time`` the steps of every sequence in :func:`time_permutation` order."""
    split = check_choice("split", split, SPLITS)
    shuffle_time = _checks.check_bool("shuffle_time", shuffle_time)
    arrays = _dataset()
    x, y = (arrays["x"], arrays["y"]) if split == "train" else (arrays["x_test"], arrays["y_test"])
    if shuffle_time:
        x = x[:, time_permutation(x.shape[1])]
    return _frozen(np.ascontiguousarray(x[..., None])), y


@register("mnist1d")
def mnist1d(shuffle_time: bool = False, split: str = "train") -> Task:
    r"""Classifying MNIST-1D sequences, one real value per step (many-to-one, 10 classes).

    Data (:func:`mnist1d_split`): the default MNIST-1D set of the ``mnist1d`` package, built offline
    (see the module docstring): 5000 sequences of T = 40 samples, 500 per digit, as the package splits
    them: ``split="train"`` its 4000 training examples, ``split="test"`` its 1000 test examples (89 to
    106 per digit). The package centres and scales the whole set to mean 0 and standard deviation 1;
    nothing else is done. Inputs ``(B, 40, 1)``: step t holds sample t.

    ``shuffle_time=True``: every sequence, of both splits, has its 40 steps reordered by one fixed
    permutation (:func:`time_permutation`, the paper's), the "shuffle" rows of the paper's table (as in
    Zhang et al. 2017's shuffled pixels). The permuted data holds the same information, but neighbouring
    steps are no longer neighbouring samples: models with a spatial prior (a CNN, a GRU reading the
    signal in order) lose it, models without one (logistic regression, an MLP) do not.

    A batch draws ``B`` examples of the split uniformly with replacement; ``eval_batch`` holds every
    example of the split once, in the package's order.

    Loss: softmax cross-entropy on the last step (``reduction="last"``). Baseline: chance, uniform
    over the 10 classes, ``ln 10``. Metric: accuracy of the argmax of the logits ``(B, 10)``. Solved:
    accuracy at least the published GRU's (:data:`PUBLISHED_GRU_ACCURACY`): 0.91, or 0.57 with
    ``shuffle_time``. The published test accuracies (mnist1d README and paper table; normal /
    shuffled): logistic regression 32% / 32%, MLP 68% / 68%, CNN 94% / 56%, GRU 91% / 57%.

    Args:
      shuffle_time: permute the 40 steps of every sequence by :func:`time_permutation`.
      split: ``"train"`` or ``"test"``.

    Returns:
      The task: inputs ``(B, 40, 1)``, targets ``(B, 10)``, many-to-one.

    Raises:
      ValueError: ``shuffle_time`` is not a bool, or ``split`` is not one of its values.
      ModuleNotFoundError: the mnist1d package (or a dependency of it) is not installed.
    """
    shuffle_time = _checks.check_bool("shuffle_time", shuffle_time)
    split = check_choice("split", split, SPLITS)
    x, labels = mnist1d_split(split, shuffle_time)
    inputs, targets = jnp.asarray(x), jnp.asarray(labels)
    bar = PUBLISHED_GRU_ACCURACY[shuffle_time]

    def make_batch(key: Array, batch_size: int) -> Batch:
        return _example_batch(key, inputs, targets, check_batch_size(batch_size), MNIST1D_CLASSES)

    def metric(logits: Array, batch: Batch) -> Array:
        check_logits(logits, batch, "(B, 10): the last step's class logits")
        return accuracy(logits, batch.targets)

    def solved(loss: float, accuracy: float) -> bool:
        return accuracy >= bar

    shuffled = ", time axis shuffled" if shuffle_time else ""
    return Task(
        name="mnist1d",
        input_size=1,
        output_size=MNIST1D_CLASSES,
        many_to_one=True,
        loss="softmax_cross_entropy",
        reduction="last",
        baseline=math.log(MNIST1D_CLASSES),
        baseline_name="chance: uniform over the 10 digits, ln 10",
        metric_name="accuracy",
        make_batch=make_batch,
        metric=metric,
        solved=solved,
        solved_rule=f"accuracy >= {bar} on the {split} split (the published GRU's{shuffled})",
        eval_batch=_all_examples(x, labels, MNIST1D_CLASSES),
    )


__all__ = [
    "MNIST1D_CLASSES",
    "PUBLISHED_GRU_ACCURACY",
    "SHUFFLE_SEED",
    "mnist1d",
    "mnist1d_split",
    "time_permutation",
]
