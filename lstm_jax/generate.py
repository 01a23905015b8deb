r"""Sampling text from a trained many-to-many character model (e.g. the ``charlm`` task).

The model reads the prompt in one unroll (:func:`lstm_jax.unroll.unroll_layers`, as
:func:`lstm_jax.models.apply_model` does), then generates one character per step: it draws
:math:`c_t \sim \mathrm{softmax}(o_t / \tau)` with ``jax.random.categorical``, feeds the one-hot
:math:`c_t` back through every layer with the cell's step (:func:`lstm_jax.cells.step`), and
applies the head. The carries of all layers are threaded through ``jax.lax.scan``; the whole
sampler is one jit-compiled function of the parameters, the prompt, the key and the temperature.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.cells import dense, step
from lstm_jax.models import ModelParams, ModelSpec, get_cell
from lstm_jax.unroll import Bidirectional, unroll_layers

Array = jax.Array


@functools.partial(jax.jit, static_argnums=(0, 5))
def _sample_ids(spec: ModelSpec, params: ModelParams, prompt: Array, key: Array, temperature: Array, length: int):
    """Ids ``(length,)`` of the sampled characters after the prompt ids ``(P,)``."""
    cell = get_cell(spec)
    dtype = params.layers[0].w_ih.dtype
    V = params.head.w.shape[0]
    carries, hs = unroll_layers(cell, params.layers, jax.nn.one_hot(prompt[None], V, dtype=dtype), unroll=spec.unroll)
    logits = dense(params.head, hs[:, -1])  # (1, V): the prediction after the prompt's last character

    def body(state, k):
        carries, logits = state
        char = jax.random.categorical(k, logits.astype(jnp.float32) / temperature, axis=-1)  # (1,)
        h = jax.nn.one_hot(char, V, dtype=dtype)
        new = []
        for layer, carry in zip(params.layers, carries):
            carry, h = step(cell, layer, carry, h)
            new.append(carry)
        return (tuple(new), dense(params.head, h)), char[0]

    _, chars = jax.lax.scan(body, (carries, logits), jax.random.split(key, length))
    return chars


def sample(
    spec: ModelSpec,
    params: ModelParams,
    vocabulary: str,
    key: Array,
    prompt: str,
    length: int,
    temperature: float = 1.0,
) -> str:
    """Run a many-to-many character model over ``prompt``, then sample ``length`` characters.

    Args:
      spec: the model's :class:`~lstm_jax.models.ModelSpec` (many-to-many).
      params: its :class:`~lstm_jax.models.ModelParams`: one or more unidirectional layers whose
        inputs and head outputs are the ``V`` characters of ``vocabulary``.
      vocabulary: ``V`` distinct characters; ``vocabulary[k]`` is input channel and class ``k``
        (for the ``charlm`` task, :func:`lstm_jax.tasks.real.charlm_vocabulary`: the training
        text's characters, then :data:`~lstm_jax.tasks.real.UNKNOWN` for those it lacks, which the
        model can sample too).
      key: a ``jax.random`` key; the same key gives the same text.
      prompt: at least one character, all in ``vocabulary``; the model starts from zero carries.
      length: characters to generate, ``>= 0``.
      temperature: ``τ > 0``; the logits are divided by it (``τ < 1`` sharpens, ``τ > 1`` flattens).

    Returns:
      The ``length`` generated characters (without the prompt).

    Raises:
      ValueError: a bidirectional or many-to-one model (neither can generate left to right), a
        vocabulary that does not fit the model or repeats a character, an empty prompt or one with
        characters outside the vocabulary, a negative length, a temperature that is not > 0.
    """
    if spec.many_to_one:
        raise ValueError("spec.many_to_one: expected a many-to-many model (logits at every step), got True")
    if any(isinstance(layer, Bidirectional) for layer in params.layers):
        raise ValueError(
            "params.layers: expected unidirectional layers (a bidirectional layer reads the future, so it "
            "cannot generate left to right), got a Bidirectional layer"
        )
    if not params.layers:
        raise ValueError("params.layers: expected at least one layer, got none")
    _check_vocabulary(vocabulary, params)
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt: expected a non-empty string, got {prompt!r}")
    unknown = sorted(set(prompt) - set(vocabulary))
    if unknown:
        raise ValueError(f"prompt: expected characters of the vocabulary, got {''.join(unknown)!r} outside it")
    length = _check_length(length)
    temperature = _check_temperature(temperature)
    if length == 0:
        return ""
    index = {c: k for k, c in enumerate(vocabulary)}
    prompt_ids = jnp.asarray(np.array([index[c] for c in prompt], np.int32))
    ids = _sample_ids(spec, params, prompt_ids, key, jnp.float32(temperature), length)
    return "".join(vocabulary[k] for k in np.asarray(ids).tolist())


def _check_vocabulary(vocabulary, params: ModelParams) -> None:
    if not isinstance(vocabulary, str) or not vocabulary:
        raise ValueError(f"vocabulary: expected a non-empty string of distinct characters, got {vocabulary!r}")
    if len(set(vocabulary)) != len(vocabulary):
        repeated = sorted({c for c in vocabulary if vocabulary.count(c) > 1})
        raise ValueError(f"vocabulary: expected distinct characters, got {''.join(repeated)!r} repeated")
    V = len(vocabulary)
    inputs, outputs = params.layers[0].w_ih.shape[-1], params.head.w.shape[0]
    if (inputs, outputs) != (V, V):
        raise ValueError(
            f"vocabulary: expected the model's {inputs} input channels and {outputs} output classes to be its "
            f"characters, got {V} characters"
        )


def _check_length(length) -> int:
    if isinstance(length, bool):
        raise ValueError(f"length: expected a Python integer >= 0, got bool {length!r}")
    try:
        number = operator.index(length)
    except TypeError:
        raise ValueError(f"length: expected a Python integer >= 0, got {type(length).__name__} {length!r}") from None
    if number < 0:
        raise ValueError(f"length: expected an integer >= 0 (characters to generate), got {number}")
    return number


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ValueError(f"temperature: expected a real number > 0, got {type(temperature).__name__} {temperature!r}")
    value = float(temperature)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"temperature: expected a finite number > 0, got {value}")
    return value


__all__ = ["sample"]
