"""Models: stacked cells then the head, many-to-many and many-to-one."""

import dataclasses
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

from lstm_jax.cells import dense
from lstm_jax.config import MODEL_KEY_USERS, ModelConfig
from lstm_jax.dropout import Dropout
from lstm_jax.models import CELL_OPTIONS, ModelSpec, apply_model, get_cell, init_model
from lstm_jax.registry import CELLS
from lstm_jax.unroll import Bidirectional, unroll_layers

B, T, M, D, N = 3, 7, 4, 6, 5
F32 = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (2, False), (2, True)])
def test_shapes_and_the_head_on_the_last_layer(cell, num_layers, bidirectional, key):
    spec = ModelSpec(cell=cell)
    params = init_model(key, spec, M, D, N, num_layers=num_layers, bidirectional=bidirectional)
    assert len(params.layers) == num_layers
    assert params.head.w.shape == (N, D * (2 if bidirectional else 1))
    xs = jax.random.normal(key, (B, T, M))
    logits = apply_model(spec, params, xs)
    assert logits.shape == (B, T, N)
    _, hs = unroll_layers(get_cell(spec), params.layers, xs)
    assert_trees_close(logits, dense(params.head, hs), **F32)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_many_to_one_reads_each_sequence_at_its_last_valid_step(cell, bidirectional, key):
    many, one = ModelSpec(cell=cell), ModelSpec(cell=cell, many_to_one=True)
    params = init_model(key, many, M, D, N, bidirectional=bidirectional)
    xs = jax.random.normal(key, (B, T, M))
    lengths = jnp.array([T, 3, 1])
    logits = apply_model(one, params, xs, lengths)
    assert logits.shape == (B, N)
    per_step = apply_model(many, params, xs, lengths)
    if not bidirectional:  # forward only: the last valid step's output
        assert_trees_close(logits, per_step[jnp.arange(B), lengths - 1], **F32)
    else:  # [h_fwd at the last valid step; h_bwd at the first step]
        finals, hs = unroll_layers(get_cell(many), params.layers, xs, lengths=lengths)
        h = jnp.concatenate([hs[jnp.arange(B), lengths - 1, :D], hs[:, 0, D:]], axis=-1)
        assert isinstance(finals[0], Bidirectional)
        assert_trees_close(logits, dense(params.head, h), **F32)


def test_unknown_cell_is_rejected(key):
    with pytest.raises(ValueError, match=r"cell: expected one of \['rnn', 'lstm', 'gru'\], got 'lstm2'"):
        init_model(key, ModelSpec(cell="lstm2"), M, D, N)


# (call with a key, the argument named, expected, got)
BAD_ARGUMENTS = [
    (lambda k: init_model(0, ModelSpec(), M, D, N), "key", "jax.random.key(seed)", "int (0)"),
    (lambda k: init_model(k, ModelSpec(), M, 6.0, N), "hidden_size", "an int >= 1", "float (6.0)"),
    (lambda k: init_model(k, ModelSpec(), M, D, "5"), "output_size", "an int >= 1", "str ('5')"),
    (lambda k: init_model(k, ModelSpec(), M, D, N, num_layers=True), "num_layers", "an int >= 1", "bool"),
    (lambda k: init_model(k, ModelSpec(), M, D, N, bidirectional="no"), "bidirectional", "a bool", "str"),
    (lambda k: init_model(k, ModelSpec(), M, D, N, input_features=2.5), "input_features", "an int >= 1", "2.5"),
    (lambda k: init_model(k, ModelSpec(), M, D, N, input_layer=["dense"]), "input_layer", "'dense'", "['dense']"),
    (lambda k: init_model(k, ModelSpec(cell=None), M, D, N), "cell", "'lstm'", "None"),
    (
        lambda k: apply_model(ModelSpec(many_to_one="no"), init_model(k, ModelSpec(), M, D, N), jnp.ones((B, T, M))),
        "spec.many_to_one",
        "a bool",
        "str ('no')",
    ),
]


@pytest.mark.parametrize("call, name, expected, got", BAD_ARGUMENTS, ids=[c[1] for c in BAD_ARGUMENTS])
def test_bad_arguments_name_what_was_expected(call, name, expected, got, key):
    with pytest.raises(
        ValueError, match=rf"^{re.escape(name)}: expected .*{re.escape(expected)}.*, got .*{re.escape(got)}"
    ):
        call(key)


def _nudged(params):
    """Every parameter plus a small pattern that depends only on its name: an initialiser's zeros (the LSTM's
    peepholes) would hide an option that is used, and a field two models share gets the same nudge."""

    def nudge(path, leaf):
        offset = zlib.crc32(jax.tree_util.keystr(path).encode()) % 1000
        pattern = jnp.cos(jnp.arange(leaf.size, dtype=leaf.dtype) + offset).reshape(leaf.shape)
        return leaf + 0.1 * pattern

    return jax.tree_util.tree_map_with_path(nudge, params)


def test_model_key_users_agree_with_the_model(key):
    """``config.MODEL_KEY_USERS``, which rejects model settings that would do nothing, agrees with the model:
    a key changes the logits exactly where its chooser's value uses it."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(ModelConfig)}
    other = {
        "activation": "relu",
        "forget_bias": 3.0,
        "update_bias": 1.0,
        "proj_size": 3,
        "peepholes": True,
        "layer_norm": True,
        "zoneout_c": 0.3,  # at evaluation: c_t = 0.3 c_{t-1} + 0.7 c̃_t
        "input_features": 3,
    }
    assert set(other) == set(MODEL_KEY_USERS)
    xs = jax.random.normal(key, (B, T, M))

    def logits(**settings):
        m = {**defaults, **settings}
        spec = ModelSpec(
            cell=m["cell"], **{name: m[name] for name in CELL_OPTIONS}, dropout=Dropout(zoneout_c=m["zoneout_c"])
        )
        layer = dict(
            input_layer=m["input_layer"],
            input_features=m["input_features"],
            forget_bias=m["forget_bias"],
            update_bias=m["update_bias"],
        )
        return np.asarray(apply_model(spec, _nudged(init_model(key, spec, M, D, N, **layer)), xs))

    for name, value in other.items():
        chooser, users = MODEL_KEY_USERS[name]
        for choice in choices[chooser]:
            changed = not np.array_equal(logits(**{chooser: choice, name: value}), logits(**{chooser: choice}))
            assert changed == (choice in users), (name, chooser, choice)


def test_forget_bias_reaches_the_lstm_and_is_ignored_by_the_rnn(key):
    lstm = init_model(key, ModelSpec(cell="lstm"), M, D, N, forget_bias=3.0)
    assert float(lstm.layers[0].b[D]) == 3.0
    rnn = init_model(key, ModelSpec(cell="rnn"), M, D, N, forget_bias=3.0)
    assert rnn.layers[0].b.shape == (D,)


@pytest.mark.parametrize("input_layer", ["dense", "embedding"])
def test_input_layer_runs_before_the_first_recurrent_layer(input_layer, key):
    spec = ModelSpec(cell="lstm")
    params = init_model(key, spec, M, D, N, input_layer=input_layer, input_features=3)
    assert params.input.w.shape == (3, M) and params.layers[0].w_ih.shape == (4 * D, 3)
    assert (params.input.b is not None) == (input_layer == "dense")
    xs = jax.random.normal(key, (B, T, M))
    _, hs = unroll_layers(get_cell(spec), params.layers, dense(params.input, xs))
    assert_trees_close(apply_model(spec, params, xs), dense(params.head, hs), **F32)
    with pytest.raises(ValueError, match=r"input_layer: expected one of \['none', 'dense', 'embedding'\], got 'conv'"):
        init_model(key, spec, M, D, N, input_layer="conv")


def test_embedding_of_one_hot_symbols_is_a_table_lookup(key):
    params = init_model(key, ModelSpec(), 5, D, N, input_layer="embedding", input_features=3)
    one_hot = jax.nn.one_hot(jnp.array([[4, 0, 2]]), 5)
    np.testing.assert_allclose(dense(params.input, one_hot)[0], params.input.w[:, jnp.array([4, 0, 2])].T, rtol=1e-6)


@pytest.mark.parametrize(
    "options", [{"impl": "scan"}, {"remat": "sqrt"}, {"remat": 3}, {"remat": "step", "impl": "scan"}, {"unroll": 2}]
)
def test_unroll_options_reach_the_layers_and_keep_the_numbers(options, key):
    """The spec's unroll options change how, not what: logits and gradients equal the default's."""
    spec = ModelSpec(cell="lstm")
    params = init_model(key, spec, M, D, N, num_layers=2, bidirectional=True)
    xs = jax.random.normal(key, (B, T, M))
    lengths = jnp.array([T, 3, 0])

    def loss(p, s):
        return jnp.sum(jnp.sin(apply_model(s, p, xs, lengths)))

    other = spec._replace(**options)
    assert_trees_close(apply_model(other, params, xs, lengths), apply_model(spec, params, xs, lengths), **F32)
    assert_trees_close(jax.grad(loss)(params, other), jax.grad(loss)(params, spec), **F32)


def test_truncation_reaches_the_layers(key):
    spec = ModelSpec(cell="rnn")
    params = init_model(key, spec, M, D, N)
    xs = jax.random.normal(key, (B, T, M))

    def grads(s):
        return jax.grad(lambda p: jnp.sum(apply_model(s, p, xs)[:, -1]))(params)

    full, truncated = grads(spec), grads(spec._replace(truncate=2))
    assert_trees_close(apply_model(spec._replace(truncate=2), params, xs), apply_model(spec, params, xs), **F32)
    assert not np.allclose(full.layers[0].w_hh, truncated.layers[0].w_hh)
