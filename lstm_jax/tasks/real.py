r"""Tasks on real data that ships inside installed packages: sunspots, handwritten digits, a character LM.

No task here touches the network: the sunspot numbers are a CSV inside statsmodels, the digits
are a file inside scikit-learn, and the texts are read from the Python standard library's own
source files (or from the user's own file). statsmodels and scikit-learn are the ``data`` extra
(``pip install 'lstm_jax[data]'``); they are imported when a task is built, not when this module
is imported, so the registry (and config validation) works without them, and a task whose package
is missing raises a ``ModuleNotFoundError`` that says which ``pip install`` brings it.

* ``sunspots``: one-step (or ``horizon``-step) forecasting of the yearly sunspot numbers
  1700–2008, many-to-many, MSE. Data: ``statsmodels.datasets.sunspots.load_pandas().data``
  (column ``SUNACTIVITY``; NOAA/NGDC yearly numbers as shipped by statsmodels, the pre-2015
  "version 1" series).
* ``digits``: the 8×8 digits of ``sklearn.datasets.load_digits()`` (1797 images, the test part
  of the UCI "optdigits" set), read row by row or pixel by pixel, many-to-one, 10 classes.
* ``charlm``: a character-level language model on the Zen of Python (the stdlib ``this``
  module), on a fixed list of stdlib module docstrings, on the standard library's own source
  files (several MB, as char-rnn used the Linux source), or on a UTF-8 file of the user's.

Held-out evaluation: the :class:`~lstm_jax.tasks.Task` contract has one ``make_batch``, so every
task here takes ``split="train"`` or ``split="test"`` (the first 80% of the data in its natural
order, or the last 20%). Both splits of a task have the same shapes (``input_size``,
``output_size``, ``T``), so a model trained on ``make_task(name, split="train", ...)`` is
evaluated with ``make_task(name, split="test", ...)``. Each split carries its own baseline
(scored on that split), and its ``solved`` rule compares with that baseline.

As in :mod:`lstm_jax.tasks.synthetic`, ``make_batch(key, batch_size)`` is a pure function of the
key with static shapes (it runs under ``jax.jit(task.make_batch, static_argnums=1)``); the data
arrays are arguments of a module-level jitted draw, so tasks with the same shapes share one
compilation. Training batches are drawn with replacement: a batch may repeat an example or a
window. Evaluation does not draw: ``task.eval_batch`` holds the whole split, every example (digits),
window (sunspots) or character (charlm) counted exactly once, and the baseline is scored on it.
"""

from __future__ import annotations

import ast
import codecs
import functools
import importlib
import importlib.util
import math
import os
import pathlib
import sysconfig
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.tasks import Batch, Task, register
from lstm_jax.tasks._common import accuracy, check_batch_size, check_choice, check_int, check_logits, mse

Array = jax.Array

#: The values of the ``split`` parameter: the training part or the held-out part.
SPLITS = ("train", "test")
#: Fraction of a data set (in time order for sunspots, in file order for digits, in reading order
#: for charlm) in the training part.
TRAIN_FRACTION = 0.8

DIGITS_ORDERS = ("rows", "pixels")
DIGITS_CLASSES = 10

CHARLM_TEXTS = ("zen", "stdlib_docs", "stdlib_source")
#: The last symbol of every ``charlm`` vocabulary: it stands for each character that the training
#: split lacks (U+FFFD, the Unicode replacement character; a U+FFFD in the text is the same symbol).
UNKNOWN = "\ufffd"
#: The longest default ``sample`` prompt (:func:`charlm_prompt`), in characters.
PROMPT_CHARS = 40
#: The stdlib modules whose docstrings, in this order, make the ``"stdlib_docs"`` text. All are
#: pure-Python modules of every CPython; the docstrings are read from their source files with
#: ``ast.get_docstring`` (cleaned as ``inspect.cleandoc`` does), so nothing is imported and
#: ``python -OO`` does not empty them. They change between Python versions, and with them the
#: text, its vocabulary and the task's ``input_size``: keep :func:`charlm_vocabulary` with a model.
STDLIB_DOC_MODULES = (
    "argparse",
    "ast",
    "collections",
    "configparser",
    "difflib",
    "doctest",
    "heapq",
    "inspect",
    "json",
    "pdb",
    "pydoc",
    "random",
    "re",
    "sched",
    "subprocess",
    "timeit",
    "tokenize",
    "typing",
    "unittest",
)


# ----------------------------------------------------------------------------------------------
# Parameter checks and data loading.


def _import(module: str, package: str, task: str):
    """``importlib.import_module(module)``; a missing package names the task and the pip package."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"task {task}: needs the {package} package, which ships its data: "
            f"pip install 'lstm_jax[data]' (or pip install {package})"
        ) from error


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # cached and shared: nobody may change it
    return array


class Series(NamedTuple):
    """One split of the sunspot series."""

    years: np.ndarray  # (n,) int64, consecutive
    values: np.ndarray  # (n,) float64, sunspot numbers divided by sunspots_scale()


@functools.lru_cache(maxsize=None)
def _sunspots_raw() -> tuple[np.ndarray, np.ndarray]:
    """``(years, sunspot numbers)`` as shipped by statsmodels, float64."""
    datasets = _import("statsmodels.datasets.sunspots", "statsmodels", "sunspots")
    frame = datasets.load_pandas().data
    years = frame["YEAR"].to_numpy(np.float64)
    values = frame["SUNACTIVITY"].to_numpy(np.float64)
    if not np.array_equal(years, np.arange(years[0], years[0] + len(years))) or not np.all(np.isfinite(values)):
        raise RuntimeError("sunspots: expected consecutive years with finite values in statsmodels' data")
    return _frozen(years.astype(np.int64)), _frozen(values)


def _split_point(n: int) -> int:
    return int(TRAIN_FRACTION * n)


def sunspots_scale() -> float:
    """The constant the sunspot numbers are divided by: the maximum of the training part (154.4, in 1778)."""
    _, values = _sunspots_raw()
    return float(values[: _split_point(len(values))].max())


def sunspots_split(split: str = "train") -> Series:
    """The years and scaled values of a split: ``"train"`` the first 80% of the years (1700–1946),
    ``"test"`` the rest (1947–2008). The two are disjoint and together the whole series."""
    check_choice("split", split, SPLITS)
    years, values = _sunspots_raw()
    cut = _split_point(len(values))
    part = slice(None, cut) if split == "train" else slice(cut, None)
    return Series(years[part], _frozen(values[part] / sunspots_scale()))


@functools.lru_cache(maxsize=None)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 8, 8) float32 in [0, 1], labels (1797,) int32)`` from scikit-learn."""
    datasets = _import("sklearn.datasets", "scikit-learn", "digits")
    bunch = datasets.load_digits()
    images = np.asarray(bunch.images, np.float64) / 16.0  # pixel values are the integers 0..16
    return _frozen(images.astype(np.float32)), _frozen(np.asarray(bunch.target, np.int32))


def digits_indices(split: str = "train") -> np.ndarray:
    """Row indices into ``load_digits()`` of a split: the first 80% in file order (``"train"``,
    rows 0..1436) or the last 20% (``"test"``, rows 1437..1796)."""
    check_choice("split", split, SPLITS)
    n = len(_digits()[1])
    cut = _split_point(n)
    return np.arange(cut) if split == "train" else np.arange(cut, n)


def digits_split(split: str = "train", order: str = "rows") -> tuple[np.ndarray, np.ndarray]:
    """``(inputs (n, T, M) float32, labels (n,) int32)`` of a split, as the task feeds them."""
    check_choice("order", order, DIGITS_ORDERS)
    images, labels = _digits()
    rows = digits_indices(split)
    shape = (8, 8) if order == "rows" else (64, 1)
    return _frozen(images[rows].reshape((len(rows), *shape))), labels[rows]


def _read_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise RuntimeError(f"charlm: expected the source file of the stdlib module {module!r}, found none")
    with open(spec.origin, encoding="utf-8") as file:
        return file.read()


def stdlib_source_files() -> tuple[pathlib.Path, ...]:
    """The files of the ``"stdlib_source"`` text: every ``*.py`` file directly inside the standard
    library's directory, ``sysconfig.get_paths()["stdlib"]`` (no packages, tests or site-packages),
    sorted by name. The list is the running Python's own: 168 files on CPython 3.11.7, 152 on 3.13.0
    (modules come and go between versions)."""
    directory = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = tuple(sorted(directory.glob("*.py")))
    if not files:
        raise RuntimeError(f"charlm: expected the standard library's .py files in {directory}, found none")
    return files


@functools.lru_cache(maxsize=None)
def charlm_text(text: str = "zen") -> str:
    """The text of the ``charlm`` task.

    ``"zen"``: the Zen of Python, 856 characters, 45 distinct. ``this.s`` is ROT13 text and
    importing ``this`` prints it, so the string literal assigned to ``s`` is read from the
    module's source with :mod:`ast` (no import, nothing executed) and decoded with
    ``codecs.decode(s, "rot13")``.

    ``"stdlib_docs"``: the module docstrings of :data:`STDLIB_DOC_MODULES` in that order, joined
    by blank lines (Python 3.11: 37,723 characters, 94 distinct).

    ``"stdlib_source"``: the files of :func:`stdlib_source_files` concatenated in that order, as
    they are (UTF-8, line ends kept), like ``cat *.py``: 4,698,280 characters (166 distinct) on
    CPython 3.11.7, 4,455,634 (164) on 3.13.0. The text, its vocabulary and the task's
    ``input_size`` depend on the Python version: a model trained on one Python samples and
    evaluates on the same one.
    """
    check_choice("text", text, CHARLM_TEXTS)
    if text == "zen":
        tree = ast.parse(_read_source("this"))
        literals = [
            node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["s"]
            and isinstance(node.value, ast.Constant)
        ]
        if len(literals) != 1 or not isinstance(literals[0], str):
            raise RuntimeError("charlm: expected one string literal assigned to s in the stdlib module this")
        return codecs.decode(literals[0], "rot13")
    if text == "stdlib_source":
        return "".join(charlm_read(file) for file in stdlib_source_files())
    docs = []
    for module in STDLIB_DOC_MODULES:
        doc = ast.get_docstring(ast.parse(_read_source(module)), clean=True)
        if not doc:
            raise RuntimeError(f"charlm: expected a module docstring in the stdlib module {module!r}, found none")
        docs.append(doc)
    return "\n\n".join(docs)


def charlm_read(path) -> str:
    """The text of a UTF-8 file, exactly (line ends kept; a leading byte-order mark dropped).

    Raises:
      ValueError: ``path`` is not a path, names no readable file, or the file is not UTF-8; the
        message names the path.
    """
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(name, str) or not name:
        raise ValueError(f"path: expected the path of a UTF-8 text file, got {type(path).__name__} {path!r}")
    try:
        data = pathlib.Path(name).expanduser().read_bytes()
    except OSError as error:
        raise ValueError(f"path: expected a readable UTF-8 text file, got {name}: {error.strerror or error}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"path: expected a UTF-8 text file, got {name}, whose byte {error.start} is not UTF-8 ({error.reason})"
        ) from None


def _corpus(text, path) -> tuple[str, str]:
    """``(the whole text, where it comes from in words)`` of the ``charlm`` parameters ``text`` and ``path``."""
    if path is None:
        text = "zen" if text is None else check_choice("text", text, CHARLM_TEXTS)
        return charlm_text(text), f"the {text!r} text"
    if text is not None:
        raise ValueError(f"text: expected None when path is given (the file is the text), got {text!r}")
    return charlm_read(path), os.fspath(path)


def _split_text(chars: str, split: str) -> str:
    cut = _split_point(len(chars))
    return chars[:cut] if split == "train" else chars[cut:]


def charlm_split(text: str | None = None, split: str = "train", *, path=None) -> str:
    """The characters of a split: ``"train"`` the first 80% of the text, ``"test"`` the rest
    (Zen: 684 and 172 characters, the test part from the middle of "If the implementation is hard
    to explain" to the end). The two are disjoint and together the whole text.

    ``text`` names a built-in text (:data:`CHARLM_TEXTS`; None: ``"zen"``); ``path`` a UTF-8 file
    instead (:func:`charlm_read`), with ``text`` left None.
    """
    check_choice("split", split, SPLITS)
    return _split_text(_corpus(text, path)[0], split)


def _vocabulary(train: str) -> str:
    return "".join(sorted(set(train) - {UNKNOWN})) + UNKNOWN


def charlm_vocabulary(text: str | None = None, *, path=None) -> str:
    """The vocabulary of the ``charlm`` task: the distinct characters of the TRAINING split, sorted,
    then :data:`UNKNOWN`, which stands for every character the training split lacks (the test split
    may hold some: the Zen's last "!"). Both splits therefore have the same ``input_size``, and
    nothing about the held-out text leaks into the model's shape. Character ``vocabulary[k]`` is
    input channel and output class ``k`` (:func:`charlm_ids`); pass it to
    :func:`lstm_jax.generate.sample`."""
    return _vocabulary(charlm_split(text, "train", path=path))


def charlm_ids(chars: str, vocabulary: str) -> np.ndarray:
    """``(len(chars),)`` int32: each character's index in ``vocabulary``, and the index of its last
    symbol, :data:`UNKNOWN`, for every character outside it.

    Raises:
      ValueError: ``vocabulary`` is not as :func:`charlm_vocabulary` makes it (sorted distinct
        characters, then ``UNKNOWN``).
    """
    if not isinstance(vocabulary, str) or not vocabulary.endswith(UNKNOWN) or vocabulary != _vocabulary(vocabulary):
        raise ValueError(
            f"vocabulary: expected sorted distinct characters followed by {UNKNOWN!r} (as charlm_vocabulary "
            f"makes it), got {vocabulary!r}"
        )
    if not isinstance(chars, str):
        raise ValueError(f"chars: expected a string, got {type(chars).__name__}")
    known = _codepoints(vocabulary[:-1])
    points = _codepoints(chars)
    at = np.minimum(np.searchsorted(known, points), max(len(known) - 1, 0))
    hit = known[at] == points if len(known) else np.zeros(len(points), bool)
    return np.where(hit, at, len(vocabulary) - 1).astype(np.int32)


def _codepoints(chars: str) -> np.ndarray:
    return np.frombuffer(chars.encode("utf-32-le"), np.uint32)


def charlm_prompt(text: str | None = None, *, path=None) -> str:
    """The default ``sample`` prompt of a ``charlm`` text: the first line of its training split, cut
    after the last space within :data:`PROMPT_CHARS` characters when longer (the first character
    when the text starts with a line break). Every character of it is in the vocabulary. Zen:
    ``"The Zen of Python, by Tim Peters"``; stdlib_docs: ``"Command-line parsing library"``."""
    train = charlm_split(text, "train", path=path)
    line = train.splitlines()[0] if train else ""
    if len(line) > PROMPT_CHARS:
        cut = line.rfind(" ", 0, PROMPT_CHARS)
        line = line[: cut + 1] if cut > 0 else line[:PROMPT_CHARS]
    prompt = line or train[:1]
    if not prompt:
        raise ValueError(f"path: expected a training split of at least one character, got none in {path}")
    return prompt


# ----------------------------------------------------------------------------------------------
# Batches (module-level jits: the data arrays are arguments, the sizes static).


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _window_batch(key: Array, series: Array, B: int, T: int, horizon: int) -> Batch:
    """``B`` windows drawn uniformly from ``series``: inputs ``x[s:s+T]``, targets ``x[s+h:s+h+T]``."""
    starts = jax.random.randint(key, (B, 1), 0, series.shape[0] - T - horizon + 1)
    steps = starts + jnp.arange(T).reshape(1, T)
    return Batch(series[steps][..., None], series[steps + horizon][..., None], jnp.ones((B, T), bool))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _example_batch(key: Array, inputs: Array, labels: Array, B: int, classes: int) -> Batch:
    """``B`` examples drawn uniformly (with replacement); targets one-hot over ``classes``."""
    rows = jax.random.randint(key, (B,), 0, labels.shape[0])
    return Batch(
        inputs[rows],
        jax.nn.one_hot(labels[rows], classes, dtype=jnp.float32),
        jnp.ones((B, inputs.shape[1]), bool),
    )


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _text_batch(key: Array, ids: Array, B: int, T: int, V: int) -> Batch:
    """``B`` windows of ``T + 1`` characters drawn uniformly; inputs the first ``T``, targets the last ``T``."""
    starts = jax.random.randint(key, (B, 1), 0, ids.shape[0] - T)
    chars = ids[starts + jnp.arange(T + 1).reshape(1, T + 1)]
    return Batch(
        jax.nn.one_hot(chars[:, :T], V, dtype=jnp.float32),
        jax.nn.one_hot(chars[:, 1:], V, dtype=jnp.float32),
        jnp.ones((B, T), bool),
    )


@jax.jit
def _bits_per_char(logits: Array, targets: Array, mask: Array) -> Array:
    """Mean softmax cross-entropy over the steps where ``mask`` is True, in bits, float32."""
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nats = -jnp.sum(jnp.where(mask[..., None], targets * log_p, 0.0), axis=-1)
    return jnp.sum(nats) / jnp.maximum(jnp.sum(mask), 1).astype(jnp.float32) / math.log(2)


def _all_windows(x: np.ndarray, T: int, horizon: int) -> Batch:
    """Every window of a series, each once: inputs ``x[s:s+T]``, targets ``x[s+h:s+h+T]``, ``(n-T-h+1, T, 1)``."""
    windows = np.lib.stride_tricks.sliding_window_view(x, T + horizon)
    return Batch(
        jnp.asarray(windows[:, :T, None], jnp.float32),
        jnp.asarray(windows[:, horizon:, None], jnp.float32),
        jnp.ones(windows.shape[:1] + (T,), bool),
    )


def _all_examples(inputs: np.ndarray, labels: np.ndarray, classes: int) -> Batch:
    """Every example of a split, each once, in file order; targets one-hot over ``classes``."""
    return Batch(
        jnp.asarray(inputs),
        jax.nn.one_hot(jnp.asarray(labels), classes, dtype=jnp.float32),
        jnp.ones(inputs.shape[:2], bool),
    )


def _eval_windows(n: int, T: int, max_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts (K,), mask (K, T))`` of evaluation windows of ``T + 1`` characters over a split with
    ``n`` target characters (all but its first), in which each target counts at most once.

    ``n <= max_targets``: every target exactly once. Windows start at ``0, T, 2T, ...``; when ``T``
    does not divide ``n``, one more window ends at the last character and its mask keeps only the
    steps no earlier window predicts. ``n > max_targets``: ``max_targets // T`` whole windows spread
    evenly from the first character to the last (at least ``T`` apart, so none overlap).
    """
    if n <= max_targets:
        starts = list(range(0, n - T + 1, T))
        mask = np.ones((len(starts), T), bool)
        rest = n - len(starts) * T
        if rest:
            starts.append(n - T)
            mask = np.concatenate([mask, (np.arange(T) >= T - rest)[None]])
        return np.asarray(starts), mask
    K = max_targets // T
    return (np.arange(K) * (n - T)) // max(K - 1, 1), np.ones((K, T), bool)


# ----------------------------------------------------------------------------------------------
# The tasks.


@register("sunspots")
def sunspots(T: int = 48, horizon: int = 1, split: str = "train") -> Task:
    r"""Forecasting the yearly sunspot numbers, 1700–2008 (309 years), ``horizon`` years ahead.

    Data: ``statsmodels.datasets.sunspots.load_pandas().data["SUNACTIVITY"]`` (NOAA/NGDC yearly
    mean sunspot numbers, as shipped by statsmodels; public domain). Scaling: every value is
    divided by the maximum of the training part, 154.4 (1778) (:func:`sunspots_scale`), so the
    training values lie in [0, 1]; the test part reaches 1.23 (190.2 in 1957). Nothing else is
    done (no centring, no log).

    Split, by time (:func:`sunspots_split`): ``split="train"`` is the first 80% of the years,
    1700–1946 (247 values), ``split="test"`` the last 20%, 1947–2008 (62 values). A window is
    drawn entirely inside its split: test windows never see a training year, so a test window
    starts with no context from before 1947 (a model's first steps are scored on a cold start,
    on both splits alike).

    A batch holds ``B`` windows whose start ``s`` is uniform over the ``n - T - horizon + 1``
    windows of the split: inputs ``x[s : s+T]`` ``(B, T, 1)``, targets ``x[s+h : s+h+T]``
    ``(B, T, 1)`` (many-to-many: at every step, the value ``horizon`` years ahead).
    ``eval_batch`` holds all ``n - T - horizon + 1`` windows of the split, each once, in time
    order (14 on the test part with T = 48).

    Loss: ``"mse"``, ``reduction="mean"`` (over all steps of the batch). Baseline: persistence,
    :math:`\hat x_{t+h} = x_t` (logits = inputs), its MSE on the split, computed with numpy at
    construction as the exact mean over all windows (its loss on ``eval_batch``, and what it
    scores in expectation on drawn batches; close to the plain mean over consecutive pairs:
    0.0188 vs 0.0185 on the training part, 0.0470 vs 0.0448 on the test part, T = 48).
    Metric: ``"mse"`` of the logits ``(B, T, 1)``. Solved: mse < 0.8 × the persistence
    MSE of the split. An AR(2) fitted by least squares on the training part scores 0.49 × the
    persistence MSE on the training part and 0.47 × on the test part (one step ahead, with two
    years of context), an AR(9) 0.42 and 0.33: 0.8 asks for a clear win over persistence while
    leaving room for the first steps of each window, which have little context.

    Args:
      T: steps per window, at least 1.
      horizon: years ahead, at least 1.
      split: ``"train"`` or ``"test"``. ``T + horizon`` must fit in the test part (62 years) for
        either split, so the same parameters always work for both.

    Returns:
      The task: inputs ``(B, T, 1)``, targets ``(B, T, 1)``, many-to-many.

    Raises:
      ValueError: a parameter is not an integer, below its minimum, or too long for the test part;
        ``split`` is not ``"train"`` or ``"test"``.
      ModuleNotFoundError: statsmodels is not installed.
    """
    T = check_int("T", T, 1, "steps per window")
    h = check_int("horizon", horizon, 1, "years ahead")
    split = check_choice("split", split, SPLITS)
    shortest = min(len(sunspots_split(s).values) for s in SPLITS)
    if T + h > shortest:
        raise ValueError(
            f"T + horizon: expected at most {shortest} (a window of T inputs and its targets horizon years "
            f"ahead must fit in the {shortest}-year test part), got T={T}, horizon={h}"
        )
    part = sunspots_split(split)
    x = part.values
    baseline = float(np.mean(np.lib.stride_tricks.sliding_window_view(np.square(x[h:] - x[:-h]), T), axis=-1).mean())
    series = jnp.asarray(x, jnp.float32)

    def make_batch(key: Array, batch_size: int) -> Batch:
        return _window_batch(key, series, check_batch_size(batch_size), T, h)

    def metric(logits: Array, batch: Batch) -> Array:
        check_logits(logits, batch, "(B, T, 1): a forecast per step")
        return mse(logits, batch.targets)

    def solved(loss: float, mse: float) -> bool:
        return mse < 0.8 * baseline

    years = f"{part.years[0]}-{part.years[-1]}"
    return Task(
        name="sunspots",
        input_size=1,
        output_size=1,
        many_to_one=False,
        loss="mse",
        reduction="mean",
        baseline=baseline,
        baseline_name=f"persistence x[t+{h}] = x[t] on the {split} split ({years}): mse {baseline:.4g}",
        metric_name="mse",
        make_batch=make_batch,
        metric=metric,
        solved=solved,
        solved_rule=f"mse < 0.8 x persistence mse = {0.8 * baseline:.4g} (an AR(2) fit scores ~0.5 x)",
        eval_batch=_all_windows(x, T, h),
    )


@register("digits")
def digits(order: str = "rows", split: str = "train") -> Task:
    r"""Classifying scikit-learn's 8×8 handwritten digits, read as a sequence.

    Data: ``sklearn.datasets.load_digits()`` (1797 images of 8×8 pixels with values 0..16, the
    test part of the UCI "Optical Recognition of Handwritten Digits" set; the file ships inside
    scikit-learn). Pixels are divided by 16, to [0, 1], float32. ``order="rows"``: 8 steps of
    the 8 pixels of a row, top to bottom, inputs ``(B, 8, 8)``; ``order="pixels"``: 64 steps of
    one pixel in reading order (row by row, left to right), inputs ``(B, 64, 1)``.

    Split, fixed and deterministic (:func:`digits_indices`): ``"train"`` the first 80% of the file
    (rows 0..1436), ``"test"`` the last 20% (rows 1437..1796, 33 to 37 of each class); no shuffle.
    A batch draws ``B`` examples of the split uniformly with replacement; ``eval_batch`` holds
    every example of the split once, in file order (360 on the test part).

    Loss: softmax cross-entropy on the last step (``reduction="last"``). Baseline: chance,
    uniform over the 10 classes, ``ln 10``. Metric: accuracy of the argmax of the logits
    ``(B, 10)``. Solved: accuracy >= 0.95. The file-order test part is harder than a random
    one (other writers): fitted on the training part with scikit-learn 1.9 defaults, logistic
    regression scores 0.90 on it (0.99 on its own training part), an MLP (100 hidden units)
    0.92, an RBF SVM 0.94 and 3-nearest-neighbours 0.97, so 0.95 on ``split="test"`` asks for a
    good model, while the training part is easy to fit.

    Args:
      order: ``"rows"`` or ``"pixels"``.
      split: ``"train"`` or ``"test"``.

    Returns:
      The task: inputs ``(B, 8, 8)`` or ``(B, 64, 1)``, targets ``(B, 10)``, many-to-one.

    Raises:
      ValueError: ``order`` or ``split`` is not one of its values.
      ModuleNotFoundError: scikit-learn is not installed.
    """
    order = check_choice("order", order, DIGITS_ORDERS)
    split = check_choice("split", split, SPLITS)
    images, labels = digits_split(split, order)
    inputs, targets = jnp.asarray(images), jnp.asarray(labels)

    def make_batch(key: Array, batch_size: int) -> Batch:
        return _example_batch(key, inputs, targets, check_batch_size(batch_size), DIGITS_CLASSES)

    def metric(logits: Array, batch: Batch) -> Array:
        check_logits(logits, batch, "(B, 10): the last step's class logits")
        return accuracy(logits, batch.targets)

    def solved(loss: float, accuracy: float) -> bool:
        return accuracy >= 0.95

    return Task(
        name="digits",
        input_size=images.shape[2],
        output_size=DIGITS_CLASSES,
        many_to_one=True,
        loss="softmax_cross_entropy",
        reduction="last",
        baseline=math.log(DIGITS_CLASSES),
        baseline_name="chance: uniform over the 10 digits, ln 10",
        metric_name="accuracy",
        make_batch=make_batch,
        metric=metric,
        solved=solved,
        solved_rule=f"accuracy >= 0.95 on the {split} split",
        eval_batch=_all_examples(images, labels, DIGITS_CLASSES),
    )


@register("charlm")
def charlm(
    T: int = 64,
    text: str | None = None,
    path: str | None = None,
    split: str = "train",
    eval_chars: int = 65_536,
) -> Task:
    r"""A character-level language model: predict every next character of a text.

    Text (:func:`charlm_text`): ``text="zen"`` (the default), the Zen of Python (856 characters);
    ``"stdlib_docs"``, the docstrings of :data:`STDLIB_DOC_MODULES` (37,723 characters on
    Python 3.11); ``"stdlib_source"``, the standard library's own ``*.py`` files (4.7 M characters
    on Python 3.11) — the built-in texts change between Python versions. Or ``path``: a UTF-8 file
    of the user's (:func:`charlm_read`; ``text`` then stays None). A relative path is read from the
    working directory, when the run trains and again when ``lstm-jax eval`` or ``sample`` loads it.

    Vocabulary (:func:`charlm_vocabulary`): the sorted distinct characters of the training split,
    then :data:`UNKNOWN`, ``V`` symbols in all (Zen: 44 + 1, stdlib_docs on Python 3.11: 93 + 1), the
    same for both splits. A character of the test split that the training split lacks (the Zen's
    last "!", one "Q" of stdlib_docs, 15 characters of stdlib_source on Python 3.11) is read and
    predicted as ``UNKNOWN``: it counts in evaluation like any other character, and costs what the
    model gives ``UNKNOWN``, which training never shows as a target (so it costs many bits).

    Split, by position (:func:`charlm_split`): ``split="train"`` is the first 80% of the
    characters, ``split="test"`` the last 20% (Zen: 684 and 172 characters; stdlib_docs on
    Python 3.11: 30,178 and 7,545). A window lies entirely inside its split. The Zen's test part
    is its last three aphorisms, which the training part never shows, in a text too short to
    learn English from: an LSTM trained on the Zen memorises its training part and scores worse
    than the unigram baseline on the held-out part (``configs/charlm_stdlib_docs.yaml`` has the
    figures); the stdlib docstrings are long enough to generalise from, the stdlib source much more.

    A batch holds ``B`` windows of ``T + 1`` consecutive characters, the start uniform over the
    ``n - T`` windows of the split; inputs the first ``T`` one-hot ``(B, T, V)``, targets the
    last ``T`` one-hot ``(B, T, V)`` (the next character at every step). ``eval_batch`` tiles
    the split with windows starting at ``0, T, 2T, ...`` so that every character but the first
    is a target exactly once; a last window, if needed, ends at the split's last character with
    ``mask`` true only on the steps no earlier window predicts. A split with more than
    ``eval_chars`` target characters (stdlib_source, a long file) is scored on ``eval_chars // T``
    whole windows spread evenly from its start to its end instead, each character in them once: the
    one-hot ``eval_batch`` holds ``2 x eval_chars x V`` floats, not the whole split's.

    Loss: softmax cross-entropy, ``reduction="mean"`` over the masked steps (nats per
    character). Baseline: a unigram model fitted to the characters ``eval_batch`` scores, which
    ignores the context: their entropy in nats (unseen characters pooled as ``UNKNOWN``). No
    context-free predictor scores lower on them, not even one fitted to them. Metric:
    ``"bits_per_char"``, the mean cross-entropy over the masked steps / ln 2. Solved:
    bits_per_char < 0.5 × the baseline in bits, i.e. the context removes at least half the
    uncertainty of a unigram model (Zen: unigram 4.50 bits/char on the training part, 4.17 on the
    test part; stdlib_docs on Python 3.11: 4.63 and 4.89).

    Args:
      T: steps per window, at least 1; ``T + 1`` characters must fit in the test part (``T`` at
        most 171 for the Zen) for either split, so the same parameters always work for both.
      text: ``"zen"``, ``"stdlib_docs"`` or ``"stdlib_source"``; None is ``"zen"`` without ``path``.
      path: a UTF-8 text file to model instead of a built-in text.
      split: ``"train"`` or ``"test"``.
      eval_chars: the most target characters ``eval_batch`` scores, at least ``T``.

    Returns:
      The task: inputs and targets ``(B, T, V)``, many-to-many.

    Raises:
      ValueError: ``T`` is not an integer >= 1 or is too long for the test part; ``eval_chars`` is
        below ``T``; ``text`` or ``split`` is not one of its values; both ``text`` and ``path``
        are given; ``path`` is missing, unreadable, not UTF-8, or too short for one window of
        each split (the message names it).
    """
    T = check_int("T", T, 1, "steps per window")
    split = check_choice("split", split, SPLITS)
    eval_chars = check_int("eval_chars", eval_chars, T, f"at least one window of T = {T} characters")
    chars, source = _corpus(text, path)
    parts = {s: _split_text(chars, s) for s in SPLITS}
    shortest = min(len(part) for part in parts.values())
    if shortest < 2:
        raise ValueError(
            f"path: expected a text whose last 20% holds a window of T + 1 = {T + 1} characters, got "
            f"{len(chars)} characters in {source}"
        )
    if T + 1 > shortest:
        raise ValueError(
            f"T: expected at most {shortest - 1} (T + 1 characters must fit in the {shortest}-character test "
            f"part of {source}), got {T}"
        )
    vocabulary = _vocabulary(parts["train"])
    V = len(vocabulary)
    ids_np = charlm_ids(parts[split], vocabulary)
    starts, mask = _eval_windows(len(ids_np) - 1, T, eval_chars)
    windows = ids_np[starts[:, None] + np.arange(T + 1)]  # (K, T + 1)
    counts = np.bincount(windows[:, 1:][mask], minlength=V)
    p = counts[counts > 0] / counts.sum()
    baseline = float(-np.sum(p * np.log(p)))
    bits = baseline / math.log(2)
    unseen = int(counts[V - 1])  # scored characters that training never shows
    ids = jnp.asarray(ids_np)

    def make_batch(key: Array, batch_size: int) -> Batch:
        return _text_batch(key, ids, check_batch_size(batch_size), T, V)

    def metric(logits: Array, batch: Batch) -> Array:
        check_logits(logits, batch, f"(B, T, {V}): next-character logits per step")
        return _bits_per_char(logits, batch.targets, batch.mask)

    def solved(loss: float, bits_per_char: float) -> bool:
        return bits_per_char < 0.5 * bits

    counted = int(mask.sum())
    scored = f" ({counted:,} of its {len(ids_np) - 1:,} characters scored)" if counted < len(ids_np) - 1 else ""
    return Task(
        name="charlm",
        input_size=V,
        output_size=V,
        many_to_one=False,
        loss="softmax_cross_entropy",
        reduction="mean",
        baseline=baseline,
        baseline_name=(
            f"unigram of the {split} split{scored}, which ignores the context: entropy "
            f"{baseline:.4g} nats = {bits:.4g} bits/char"
            + (f"; {unseen} character(s) unseen in training, scored as {UNKNOWN!r}" if unseen else "")
        ),
        metric_name="bits_per_char",
        make_batch=make_batch,
        metric=metric,
        solved=solved,
        solved_rule=f"bits_per_char < 0.5 x unigram {bits:.4g} = {0.5 * bits:.4g} on the {split} split",
        eval_batch=Batch(
            jax.nn.one_hot(jnp.asarray(windows[:, :T]), V, dtype=jnp.float32),
            jax.nn.one_hot(jnp.asarray(windows[:, 1:]), V, dtype=jnp.float32),
            jnp.asarray(mask),
        ),
    )


__all__ = [
    "CHARLM_TEXTS",
    "DIGITS_ORDERS",
    "PROMPT_CHARS",
    "SPLITS",
    "STDLIB_DOC_MODULES",
    "TRAIN_FRACTION",
    "UNKNOWN",
    "Series",
    "charlm",
    "charlm_ids",
    "charlm_prompt",
    "charlm_read",
    "charlm_split",
    "charlm_text",
    "charlm_vocabulary",
    "digits",
    "digits_indices",
    "digits_split",
    "stdlib_source_files",
    "sunspots",
    "sunspots_scale",
    "sunspots_split",
]
