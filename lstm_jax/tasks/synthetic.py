r"""Synthetic long-time-lag tasks: the adding problem, the copy-memory task and the temporal order task.

Each factory validates its parameters and returns a :class:`~lstm_jax.tasks.Task` whose
``make_batch(key, batch_size)`` is a pure function of the PRNG key (``jax.random`` only, static
shapes), so it runs under ``jax.jit(task.make_batch, static_argnums=1)``. Inputs and targets are
float32, the mask is bool and all ``True`` (every sequence of a batch has the same length).

References:
  * M. Arjovsky, A. Shah, Y. Bengio. "Unitary Evolution Recurrent Neural Networks", ICML 2016
    (arXiv:1511.06464), §4.1 copying memory problem, §4.2 adding problem; the authors' generators
    are ``memory_problem.py`` and ``adding_problem.py`` in https://github.com/amarshah/complex_RNN.
  * S. Hochreiter, J. Schmidhuber. "Long Short-Term Memory", Neural Computation 9(8), 1997,
    §5.6 experiment 6a (temporal order, two relevant widely separated symbols).
  * R. Pascanu, T. Mikolov, Y. Bengio. "On the difficulty of training recurrent neural networks",
    ICML 2013; their generator is ``tempOrder.py`` in https://github.com/pascanur/trainingRNNs.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from lstm_jax.tasks import Batch, Task, register
from lstm_jax.tasks._common import accuracy, check_batch_size, check_int, check_logits, mse

Array = jax.Array

#: Symbols of the temporal order task, in the order of the one-hot input channels.
TEMPORAL_ORDER_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")
#: Classes of the temporal order task (Hochreiter & Schmidhuber's Q, R, S, U), in target order.
TEMPORAL_ORDER_CLASSES = ("XX", "XY", "YX", "YY")

_X = TEMPORAL_ORDER_SYMBOLS.index("X")  # Y is _X + 1
_TRIGGER_B = TEMPORAL_ORDER_SYMBOLS.index("B")
_START_E = TEMPORAL_ORDER_SYMBOLS.index("E")
_NUM_DISTRACTORS = 4  # a, b, c, d are channels 0..3


def _batch_maker(draw: Callable[..., Batch], **params: int) -> Callable[[Array, int], Batch]:
    """``make_batch(key, batch_size)``: the batch size checked in Python, then ``draw``.

    ``draw`` is jitted at module level with the batch size and ``params`` static, so every task
    built with the same parameters shares one compilation per batch size, and an eager call is one
    dispatch instead of one per operation. Under an outer ``jax.jit`` it is simply inlined.
    """

    def make_batch(key: Array, batch_size: int) -> Batch:
        return draw(key, check_batch_size(batch_size), **params)

    return make_batch


@functools.partial(jax.jit, static_argnums=2)
def _accuracy_on_last(logits: Array, targets: Array, steps: int) -> Array:
    """Accuracy over the last ``steps`` steps of ``(B, T, N)`` logits and targets."""
    return accuracy(logits[:, -steps:], targets[:, -steps:])


@functools.partial(jax.jit, static_argnums=(1, 2))
def _adding_batch(key: Array, B: int, T: int) -> Batch:
    """A batch of the adding problem (see :func:`adding`)."""
    half = T // 2
    k_values, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_values, (B, T), jnp.float32)
    first = jax.random.randint(k_first, (B, 1), 0, half)
    second = jax.random.randint(k_second, (B, 1), half, T)
    steps = jnp.arange(T).reshape(1, T)
    marked = (steps == first) | (steps == second)
    inputs = jnp.stack([values, marked.astype(jnp.float32)], axis=-1)
    targets = jnp.sum(jnp.where(marked, values, jnp.zeros_like(values)), axis=1, keepdims=True)
    return Batch(inputs, targets, jnp.ones((B, T), bool))


@register("adding")
def adding(T: int = 100) -> Task:
    r"""The adding problem, as defined by Arjovsky, Shah & Bengio (2016), §4.2.

    Each step carries two features: ``inputs[..., 0]`` a value drawn from U[0, 1) and
    ``inputs[..., 1]`` a marker. Exactly one marker is 1 at a step drawn uniformly from the first
    half ``[0, T // 2)`` and one at a step drawn uniformly from the second half ``[T // 2, T)``;
    all other markers are 0. The target ``(B, 1)`` is the sum of the two marked values. The
    feature order (value, marker) is the authors' ``adding_problem.py``; for odd ``T`` their code
    draws the second marker from ``[T // 2, 2 (T // 2))`` and so never marks the last step, while
    here the second half is all of ``[T // 2, T)`` as the paper's text says.

    Loss: ``"mse"`` on the last step (``reduction="last"``). Baseline: predicting 1 always, whose
    expected MSE is the variance of the sum of two independent U[0, 1], 2/12 = 1/6 ≈ 0.167 (the
    paper's "baseline to beat"). Metric: the MSE of the logits ``(B, 1)``. Solved: MSE < 0.01,
    6% of the baseline. In the paper's Figure 2 the LSTM's test MSE drops to the floor of the
    linear 0–1 axis (indistinguishable from 0 there) for T = 100 to 400, and plateaus near 0.08
    at T = 750, so the rule separates solved from partly learned runs.

    Args:
      T: sequence length, at least 2 (one step per half).

    Returns:
      The task: inputs ``(B, T, 2)``, targets ``(B, 1)``, many-to-one.

    Raises:
      ValueError: ``T`` is not an integer >= 2.
    """
    T = check_int("T", T, 2, "one marker in each half [0, T//2) and [T//2, T)")

    def metric(logits: Array, batch: Batch) -> Array:
        check_logits(logits, batch, "(B, 1): the last step's prediction")
        return mse(logits, batch.targets)

    def solved(loss: float, mse: float) -> bool:
        return mse < 0.01

    return Task(
        name="adding",
        input_size=2,
        output_size=1,
        many_to_one=True,
        loss="mse",
        reduction="last",
        baseline=1 / 6,
        baseline_name="predict 1 always: Var(u1 + u2) = 2/12 = 1/6",
        metric_name="mse",
        make_batch=_batch_maker(_adding_batch, T=T),
        metric=metric,
        solved=solved,
        solved_rule="mse < 0.01 (6% of the 1/6 baseline; LSTMs reach ~0 for T <= 400 in Arjovsky et al. 2016, Fig. 2)",
    )


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _copy_batch(key: Array, B: int, T: int, K: int, c: int) -> Batch:
    """A batch of the copy-memory task (see :func:`copy`)."""
    length, delimiter = T + 2 * c, K + 1
    data = jax.random.randint(key, (B, c), 1, K + 1)
    blanks = jnp.zeros((B, T - 1), data.dtype)
    tail = jnp.zeros((B, c), data.dtype)
    inputs = jnp.concatenate([data, blanks, jnp.full((B, 1), delimiter, data.dtype), tail], axis=1)
    targets = jnp.concatenate([jnp.zeros((B, T + c), data.dtype), data], axis=1)
    return Batch(
        jax.nn.one_hot(inputs, K + 2, dtype=jnp.float32),
        jax.nn.one_hot(targets, K + 1, dtype=jnp.float32),
        jnp.ones((B, length), bool),
    )


@register("copy")
def copy(T: int = 100, num_symbols: int = 8, copy_length: int = 10) -> Task:
    r"""The copy-memory task, as defined by Arjovsky, Shah & Bengio (2016), §4.1.

    With ``K = num_symbols`` and ``c = copy_length``, symbol 0 is the blank, ``1..K`` the data
    symbols and ``K + 1`` the delimiter. A sequence has ``T + 2c`` steps:

    * inputs: ``c`` symbols drawn uniformly, independently, with replacement from ``{1..K}``; then
      ``T - 1`` blanks; then the delimiter (at step ``c + T - 1``); then ``c`` blanks;
    * targets: ``T + c`` blanks, then the ``c`` input symbols in the same order.

    With the defaults (``K = 8``, ``c = 10``) this is the paper's task: 10 categories, length
    ``T + 20``. The paper's final text names the data symbols a0..a7, the blank a8 and the delimiter
    a9; the numbering here (blank 0, data 1..8, delimiter 9) is the authors' ``memory_problem.py``
    and only relabels them. Inputs are one-hot over ``K + 2`` symbols; targets one-hot over
    ``K + 1`` classes (blank and data symbols: the delimiter is never a target), as the authors'
    ``n_input = 10``, ``n_output = 9``.

    Loss: softmax cross-entropy on every step, averaged (``reduction="mean"``, mask all ``True``).
    Baseline: the paper's memoryless strategy (blank with certainty up to the last ``c`` steps,
    then uniform over the ``K`` data symbols) scores ``c ln K / (T + 2c)``, i.e.
    ``10 ln 8 / (T + 20)`` by default. Metric: ``accuracy_on_copy``, the fraction of the last ``c``
    steps whose argmax is the right symbol. Solved: that accuracy >= 0.99.

    Args:
      T: the delay, at least 1: the delimiter comes ``T`` steps after the last data symbol.
      num_symbols: ``K``, data symbols, at least 1.
      copy_length: ``c``, symbols to remember, at least 1.

    Returns:
      The task: inputs ``(B, T + 2c, K + 2)``, targets ``(B, T + 2c, K + 1)``, many-to-many.

    Raises:
      ValueError: a parameter is not an integer or is below its minimum.
    """
    T = check_int("T", T, 1, "the delimiter follows the T - 1 blanks after the data")
    K = check_int("num_symbols", num_symbols, 1, "data symbols to draw from")
    c = check_int("copy_length", copy_length, 1, "symbols to copy")
    length = T + 2 * c

    def metric(logits: Array, batch: Batch) -> Array:
        check_logits(logits, batch, "(B, T + 2 copy_length, num_symbols + 1): a prediction per step")
        return _accuracy_on_last(logits, batch.targets, c)

    def solved(loss: float, accuracy_on_copy: float) -> bool:
        return accuracy_on_copy >= 0.99

    return Task(
        name="copy",
        input_size=K + 2,
        output_size=K + 1,
        many_to_one=False,
        loss="softmax_cross_entropy",
        reduction="mean",
        baseline=c * math.log(K) / length,
        baseline_name=f"memoryless: blank, then uniform over the symbols: {c} ln {K} / {length}",
        metric_name="accuracy_on_copy",
        make_batch=_batch_maker(_copy_batch, T=T, K=K, c=c),
        metric=metric,
        solved=solved,
        solved_rule=f"accuracy_on_copy >= 0.99 (argmax right on >= 99% of the last {c} steps)",
    )


@functools.partial(jax.jit, static_argnums=(1, 2))
def _temporal_order_batch(key: Array, B: int, T: int) -> Batch:
    """A batch of the temporal order task (see :func:`temporal_order`)."""
    width, second = T // 10, T // 2
    k_noise, k_t1, k_t2, k_which = jax.random.split(key, 4)
    symbols = jax.random.randint(k_noise, (B, T), 0, _NUM_DISTRACTORS)
    t1 = jax.random.randint(k_t1, (B, 1), width, 2 * width)
    t2 = jax.random.randint(k_t2, (B, 1), second, second + width)
    is_y = jax.random.randint(k_which, (B, 2), 0, 2)  # 0: X, 1: Y; at t1 and t2
    steps = jnp.arange(T).reshape(1, T)
    symbols = jnp.where(steps == t1, _X + is_y[:, :1], symbols)
    symbols = jnp.where(steps == t2, _X + is_y[:, 1:], symbols)
    symbols = symbols.at[:, 0].set(_START_E).at[:, T - 1].set(_TRIGGER_B)
    label = 2 * is_y[:, 0] + is_y[:, 1]
    return Batch(
        jax.nn.one_hot(symbols, len(TEMPORAL_ORDER_SYMBOLS), dtype=jnp.float32),
        jax.nn.one_hot(label, len(TEMPORAL_ORDER_CLASSES), dtype=jnp.float32),
        jnp.ones((B, T), bool),
    )


@register("temporal_order")
def temporal_order(T: int = 100) -> Task:
    r"""The temporal order task: Hochreiter & Schmidhuber (1997) experiment 6a, Pascanu et al.'s generator.

    Symbols, one-hot in this channel order: ``a b c d X Y B E`` (:data:`TEMPORAL_ORDER_SYMBOLS`).
    A sequence of ``T`` steps is random distractors from ``{a, b, c, d}``, except that it starts
    with ``E`` (step 0), ends with the trigger ``B`` (step ``T - 1``), and holds a relevant
    symbol, X or Y each with probability 1/2, at one step ``t1`` and one step ``t2``. With
    ``w = T // 10``, ``t1`` is uniform on ``[w, 2w)`` and ``t2`` uniform on ``[T // 2, T // 2 + w)``:
    ``[10, 20)`` and ``[50, 60)`` for ``T = 100``. The class (:data:`TEMPORAL_ORDER_CLASSES`) is
    the ordered pair: XX, XY, YX, YY, i.e. ``2 [symbol at t1 is Y] + [symbol at t2 is Y]``.

    Conventions and where they differ from the sources:

    * Start and end symbols follow the 1997 text: "The sequence starts with an E, ends with a B
      (the 'trigger symbol')". (E is not an "end" marker here.) Pascanu et al.'s ``tempOrder.py``
      has no start or trigger symbol: 6 channels, ``{A, B}`` relevant and ``{c, d, e, f}``
      distractors.
    * Lengths and windows follow Pascanu et al.: a fixed length ``T`` (static shapes) where 1997
      draws the length from [100, 110], and the windows ``[T//10, 2 (T//10))`` and
      ``[T//2, T//2 + T//10)`` scale with ``T``, exactly their ``int(l*.1)`` / ``int(l*.5)``
      arithmetic (0-based steps). 1997 draws ``t1`` "between 10 and 20" and ``t2`` "between 50 and 60".
    * The class order is 1997's ``X,X -> Q; X,Y -> R; Y,X -> S; Y,Y -> U``. Pascanu et al. label
      ``v0 + 2 v1`` (first relevant symbol in the low bit), which swaps XY and YX.
    * Distractors, relevant symbols and positions are drawn uniformly and independently, as in
      Pascanu et al.'s generator.

    Loss: softmax cross-entropy on the last step (``reduction="last"``). Baseline: chance, uniform
    over the 4 classes, ``ln 4``. Metric: accuracy of the argmax of the logits ``(B, 4)``.
    Solved: accuracy >= 0.99, i.e. below 1% error, the success criterion of Pascanu et al. (2013)
    (their ``RNN.py`` is stricter still: it stops training at zero errors on its validation draws).

    Args:
      T: sequence length, at least 10, so that each window ``[T//10, 2 (T//10))`` is non-empty.

    Returns:
      The task: inputs ``(B, T, 8)``, targets ``(B, 4)``, many-to-one.

    Raises:
      ValueError: ``T`` is not an integer >= 10.
    """
    T = check_int("T", T, 10, "each relevant-symbol window is T // 10 steps wide")

    def metric(logits: Array, batch: Batch) -> Array:
        check_logits(logits, batch, "(B, 4): the last step's class logits")
        return accuracy(logits, batch.targets)

    def solved(loss: float, accuracy: float) -> bool:
        return accuracy >= 0.99

    return Task(
        name="temporal_order",
        input_size=len(TEMPORAL_ORDER_SYMBOLS),
        output_size=len(TEMPORAL_ORDER_CLASSES),
        many_to_one=True,
        loss="softmax_cross_entropy",
        reduction="last",
        baseline=math.log(len(TEMPORAL_ORDER_CLASSES)),
        baseline_name="chance: uniform over XX, XY, YX, YY, ln 4",
        metric_name="accuracy",
        make_batch=_batch_maker(_temporal_order_batch, T=T),
        metric=metric,
        solved=solved,
        solved_rule="accuracy >= 0.99 (Pascanu et al. 2013 count a run successful below 1% error)",
    )


__all__ = ["TEMPORAL_ORDER_CLASSES", "TEMPORAL_ORDER_SYMBOLS", "adding", "copy", "temporal_order"]
