"""Dropout between layers, variational dropout on inputs and state, zoneout (lstm_jax.dropout).

The masks are observed through cells whose step exposes them: a ReLU RNN with ``W_ih = I`` and no
recurrence outputs ``m ⊙ x_t``; with ``W_hh = I``, no input and ``b = 1`` it outputs
``h_t = 1 + m ⊙ h_{t-1}``, so ``m`` can be read off every step.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

import lstm_jax as lj
from lstm_jax import registry, train
from lstm_jax.config import ConfigError, config_from_dict
from lstm_jax.dropout import Dropout
from lstm_jax.gradcheck import FD_TOL, MANUAL_TOL, finite_difference_error, finite_differences, relative_error
from lstm_jax.tasks import make_task

B, T, M, D = 4, 6, 3, 5
KEY = jax.random.key(7)


def _inputs(dtype=jnp.float32, positive=False):
    xs = jax.random.normal(jax.random.key(1), (B, T, M), dtype)
    return jnp.abs(xs) + 0.5 if positive else xs


def _relu_rnn(w_ih, w_hh, b):
    return lj.RNNParams(jnp.asarray(w_ih, jnp.float32), jnp.asarray(w_hh, jnp.float32), jnp.asarray(b, jnp.float32))


def test_input_dropout_uses_one_mask_per_sequence_the_same_at_every_step():
    xs = _inputs(positive=True)[..., :1].repeat(D, axis=-1)  # M = D, x_t > 0
    params = _relu_rnn(np.eye(D), np.zeros((D, D)), np.zeros(D))  # h_t = relu(m ⊙ x_t) = m ⊙ x_t
    _, hs = lj.unroll(lj.rnn_cell("relu"), params, xs, dropout=Dropout(input=0.4), key=KEY, training=True)
    mask = np.asarray(hs / xs)  # (B, T, D)
    np.testing.assert_allclose(mask, np.broadcast_to(mask[:, :1], mask.shape), rtol=1e-6)  # constant in t
    assert np.all(np.isclose(mask, 0) | np.isclose(mask, 1 / 0.6))  # 0 or 1/(1-p): inverted dropout
    assert len(np.unique(mask[:, 0], axis=0)) > 1  # and different sequences get different masks


def test_recurrent_dropout_uses_one_mask_per_sequence_the_same_at_every_step():
    xs = jnp.zeros((B, T, 1))
    params = _relu_rnn(np.zeros((D, 1)), np.eye(D), np.ones(D))  # h_t = relu(1 + m ⊙ h_{t-1})
    h0 = jnp.ones((B, D))
    _, hs = lj.unroll(lj.rnn_cell("relu"), params, xs, h0, dropout=Dropout(recurrent=0.5), key=KEY, training=True)
    prev = jnp.concatenate([h0[:, None], hs[:, :-1]], axis=1)
    mask = np.asarray((hs - 1) / prev)
    np.testing.assert_allclose(mask, np.broadcast_to(mask[:, :1], mask.shape), rtol=1e-6, atol=1e-6)
    assert np.all(np.isclose(mask, 0, atol=1e-6) | np.isclose(mask, 2)) and 0 < mask.mean() < 2


def test_inverted_scaling_keeps_the_expectation():
    """The mean of ``m ⊙ x`` over many keys is ``x``: within 5 standard errors (deterministic keys, cannot flake)."""
    rate, draws = 0.3, 2000
    xs = jnp.ones((1, 1, D))
    params = _relu_rnn(np.eye(D), np.zeros((D, D)), np.zeros(D))

    def masked(key):
        return lj.unroll(lj.rnn_cell("relu"), params, xs, dropout=Dropout(input=rate), key=key, training=True)[1]

    samples = jax.vmap(masked)(jax.random.split(KEY, draws))
    standard_error = np.sqrt(rate / (1 - rate) / draws)
    assert np.all(np.abs(np.asarray(samples.mean(0)) - 1) < 5 * standard_error)


def test_zoneout_when_training_keeps_each_unit_or_takes_the_new_value():
    params, xs = lj.init_gru(jax.random.key(0), M, D), _inputs()
    _, hs = lj.unroll(lj.gru_cell(), params, xs, dropout=Dropout(zoneout_h=0.4), key=KEY, training=True)
    h_prev, kept = jnp.zeros((B, D)), []
    for t in range(T):  # replay the steps one at a time
        raw, _ = lj.gru_step(params, h_prev, xs[:, t])
        old, new = np.isclose(hs[:, t], h_prev, atol=1e-6), np.isclose(hs[:, t], raw, atol=1e-6)
        assert np.all(old | new)
        kept.append(old & ~new)
        h_prev = hs[:, t]
    assert 0.2 < np.mean(kept) < 0.6  # about zoneout_h of the units (those where old == new aside)


def test_zoneout_of_the_cell_state_when_training():
    params, xs = lj.init_lstm(jax.random.key(0), M, D), _inputs()[:, :1]
    carry0 = lj.LSTMState(jnp.full((B, D), 0.5), jnp.full((B, D), -2.0))
    (h, c), _ = lj.unroll(lj.lstm_cell(), params, xs, carry0, dropout=Dropout(zoneout_c=0.5), key=KEY, training=True)
    raw, _ = lj.lstm_step(params, carry0, xs[:, 0])
    np.testing.assert_allclose(h, raw.h, rtol=1e-6)  # h is not zoned out, and is o ⊙ tanh of the new c
    assert np.all(np.isclose(c, carry0.c) | np.isclose(c, raw.c)) and 0 < np.mean(np.isclose(c, carry0.c)) < 1


def test_zoneout_at_evaluation_is_its_expectation():
    params, xs = lj.init_lstm(jax.random.key(0), M, D), _inputs()
    (h_final, c_final), hs = lj.unroll(lj.lstm_cell(), params, xs, dropout=Dropout(zoneout_h=0.3, zoneout_c=0.6))
    carry = lj.LSTMState(jnp.zeros((B, D)), jnp.zeros((B, D)))
    for t in range(T):
        raw, _ = lj.lstm_step(params, carry, xs[:, t])
        carry = lj.LSTMState(0.3 * carry.h + 0.7 * raw.h, 0.6 * carry.c + 0.4 * raw.c)
        np.testing.assert_allclose(hs[:, t], carry.h, rtol=1e-5, atol=1e-6)
    assert_trees_close((h_final, c_final), tuple(carry), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", registry.CELLS)
def test_evaluation_is_no_dropout(name):
    params = registry.cell_type(name).init(jax.random.key(0), M, D)
    layers = lj.init_layers(jax.random.key(1), registry.cell_type(name).init, M, D, 2)
    cell, xs = registry.make_cell(name), _inputs()
    rates = Dropout(input=0.5, recurrent=0.5, between_layers=0.5)
    assert_trees_close(
        lj.unroll(cell, params, xs, dropout=rates._replace(between_layers=0.0), key=KEY),
        lj.unroll(cell, params, xs),
        rtol=0,
    )
    assert_trees_close(
        lj.unroll_layers(cell, layers, xs, dropout=rates, key=KEY), lj.unroll_layers(cell, layers, xs), rtol=0
    )


def test_the_same_key_gives_the_same_masks_and_another_key_others():
    cell, params, xs = lj.gru_cell(), lj.init_gru(jax.random.key(0), M, D), _inputs()
    rates = Dropout(input=0.3, recurrent=0.3, zoneout_h=0.2)
    run = functools.partial(lj.unroll, cell, params, xs, dropout=rates, training=True)
    np.testing.assert_array_equal(run(key=KEY)[1], run(key=jax.random.key(7))[1])
    assert not np.allclose(run(key=KEY)[1], run(key=jax.random.key(8))[1])


def test_dropout_between_layers_acts_after_every_layer_but_the_last():
    cell = lj.lstm_cell()
    layers = lj.init_layers(jax.random.key(1), lj.init_lstm, M, D, 2)
    xs, rates = _inputs(), Dropout(between_layers=0.5)
    one = functools.partial(lj.unroll_layers, cell, layers[:1], xs)
    assert_trees_close(one(dropout=rates, key=KEY, training=True), one(), rtol=0)  # one layer: nothing between
    two = functools.partial(lj.unroll_layers, cell, layers, xs)
    assert not np.allclose(two(dropout=rates, key=KEY, training=True)[1], two()[1])
    # the second layer reads m_t ⊙ h¹_t with a mask per step: feed it by hand
    (_, h1) = lj.unroll(cell, layers[0], xs)
    hidden = jax.eval_shape(lambda: h1)
    mask = jax.random.bernoulli(jax.random.fold_in(jax.random.fold_in(KEY, 0), 3), 0.5, (T, B, D)).astype(hidden.dtype)
    expected = lj.unroll(cell, layers[1], jnp.moveaxis(mask, 0, 1) * 2 * h1)
    assert_trees_close(two(dropout=rates, key=KEY, training=True)[1], expected[1], rtol=1e-6)


ALL = Dropout(input=0.2, recurrent=0.3, zoneout_h=0.2, zoneout_c=0.3)


@pytest.mark.parametrize("name", registry.CELLS)
@pytest.mark.parametrize(
    "options, training",
    [({}, True), ({"reverse": True}, True), ({"remat": 3}, True), ({"truncate": 4}, True), ({"remat": "step"}, True)]
    + [({}, False)],  # evaluation: zoneout's expectation
    ids=str,
)
def test_fast_path_equals_the_scan_with_dropout(name, options, training):
    """Values and gradients (parameters and initial carry), float64, ragged lengths."""
    with jax.enable_x64(True):
        cell = registry.make_cell(name)
        params = registry.cell_type(name).init(jax.random.key(0), M, D, dtype=jnp.float64)
        params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero biases
        xs, lengths = _inputs(jnp.float64), jnp.array([T, 0, 2, 5])
        carry0 = jax.tree.map(lambda z: z + 0.3, cell.zeros(params, (B,)))

        def loss(p, c0, impl):
            kw = dict(lengths=lengths, dropout=ALL, key=KEY, training=training, **options)
            carry, hs = lj.unroll(cell, p, xs, c0, impl=impl if options.get("remat") != "step" else "scan", **kw)
            return jnp.sum(hs**2) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry))

        scan = jax.value_and_grad(loss, argnums=(0, 1))(params, carry0, "scan")
        fast = jax.value_and_grad(loss, argnums=(0, 1))(params, carry0, "auto")
        assert relative_error(scan, fast) <= MANUAL_TOL


@pytest.mark.parametrize("name", registry.CELLS)
def test_gradients_through_fixed_masks_equal_finite_differences(name):
    with jax.enable_x64(True):
        cell = registry.make_cell(name)
        params = registry.cell_type(name).init(jax.random.key(0), M, D, dtype=jnp.float64)
        layers = (params, registry.cell_type(name).init(jax.random.key(2), D, D, dtype=jnp.float64))
        xs = _inputs(jnp.float64)
        rates = ALL._replace(between_layers=0.3)

        def loss(layers):
            return jnp.sum(lj.unroll_layers(cell, layers, xs, dropout=rates, key=KEY, training=True)[1] ** 2)

        grads = jax.grad(loss)(layers)
        assert finite_difference_error(grads, *finite_differences(loss, layers, seed=0)) <= FD_TOL


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(dropout=Dropout(input=1.0), key=KEY, training=True),
            r"^dropout.input: expected a rate in \[0, 1\), got 1.0",
        ),
        (dict(dropout=Dropout(recurrent=-0.1)), r"^dropout.recurrent: expected a rate in \[0, 1\), got -0.1"),
        (dict(dropout=Dropout(zoneout_h="0.1")), r"^dropout.zoneout_h: expected a rate in \[0, 1\), got '0.1'"),
        (dict(dropout={"input": 0.1}), r"^dropout: expected None or lstm_jax.Dropout\(...\), got dict"),
        (dict(dropout=Dropout(input=0.1), training=True), r"^key: expected a PRNG key .* when training, got None"),
        (dict(dropout=Dropout(input=0.1), training=1), r"^training: expected"),
        (dict(dropout=Dropout(between_layers=0.1)), r"^dropout.between_layers: expected 0 in unroll"),
        (
            dict(dropout=Dropout(recurrent=0.1), impl="pallas_interpret"),
            r"^impl: expected 'auto', 'fast' or 'scan' with recurrent dropout or zoneout, got 'pallas_interpret'",
        ),
    ],
)
def test_bad_dropout_arguments_are_named(kwargs, message):
    params = lj.init_lstm(jax.random.key(0), M, D)
    with pytest.raises(ValueError, match=message):
        lj.unroll(lj.lstm_cell(), params, _inputs(), **kwargs)


def test_a_plain_step_function_takes_input_dropout_but_not_recurrent_dropout():
    def step(params, h, x):
        return h + x, h + x

    xs, h0 = _inputs(), jnp.zeros((B, M))
    lj.unroll(step, None, xs, h0, dropout=Dropout(input=0.5), key=KEY, training=True)
    with pytest.raises(ValueError, match=r"^dropout: recurrent dropout and zoneout need a built-in cell"):
        lj.unroll(step, None, xs, h0, dropout=Dropout(zoneout_h=0.5), key=KEY, training=True)


# ----------------------------------------------------------------------------------------------
# Through the config and the trainer.


REGULARISED = {"dropout": 0.2, "input_dropout": 0.1, "recurrent_dropout": 0.2, "zoneout_h": 0.1, "zoneout_c": 0.1}


def _config(**model):
    return config_from_dict(
        {
            "task": {"name": "adding", "params": {"T": 8}},
            "model": {"cell": "lstm", "hidden_size": 8, "num_layers": 2, **model},
            "train": {"steps": 4, "batch_size": 4},
        }
    )


def test_config_keys_reach_the_model_spec():
    config = _config(**REGULARISED)
    spec = train.model_spec(config, make_task("adding", T=8))
    assert spec.dropout == Dropout(between_layers=0.2, input=0.1, recurrent=0.2, zoneout_h=0.1, zoneout_c=0.1)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"dropout": 1.0}, r"model.dropout: must be < 1, got 1.0"),
        ({"recurrent_dropout": -0.1}, r"model.recurrent_dropout: must be >= 0, got -0.1"),
        (
            {"dropout": 0.3, "num_layers": 1},
            r"model.dropout: acts between stacked layers: expected 0 with model.num_layers = 1",
        ),
        ({"cell": "gru", "zoneout_c": 0.1}, r"model.zoneout_c"),
        ({"cell": "rnn", "zoneout_c": 0.1}, r"model.zoneout_c"),
        (
            {"zoneout_h": 0.1, "impl": "pallas_interpret"},
            r"model.impl: expected 'auto', 'fast' or 'scan' with recurrent",
        ),
    ],
)
def test_config_rejects_bad_dropout_keys_by_name(model, message):
    with pytest.raises(ConfigError, match=message):
        _config(**model)


def test_manual_gradients_refuse_dropout():
    config = config_from_dict(
        {
            "task": {"name": "adding", "params": {"T": 8}},
            "model": {"cell": "gru", "hidden_size": 8, "input_dropout": 0.1},
            "train": {"gradients": "manual"},
        }
    )
    with pytest.raises(ValueError, match=r"^train.gradients: expected 'autodiff' with dropout or zoneout"):
        train.check_trainable(config)


@pytest.fixture
def _standard_promotion():
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes Python floats and int32 counts
        yield


@pytest.mark.usefixtures("_standard_promotion")
@pytest.mark.parametrize("name", registry.CELLS)
def test_a_train_step_is_deterministic_per_step_and_evaluation_has_no_dropout(name):
    rates = dict(REGULARISED) if name == "lstm" else {k: v for k, v in REGULARISED.items() if k != "zoneout_c"}
    config, plain = _config(cell=name, **rates), _config(cell=name)
    task = make_task("adding", T=8)
    optimizer = train.make_optimizer(config.optim, 4)
    init_key, batch_key, _ = train.run_keys(0)
    state = train.init_state(config, task, optimizer, init_key)
    batch = task.make_batch(batch_key, 4)
    spec = train.model_spec(config, task)
    step = train.make_train_step(spec, task, optimizer, dropout_key=train.dropout_key(0))
    once, twice = step(state, batch), step(state, batch)
    assert_trees_close(once, twice, rtol=0)  # the same step number: the same masks
    unregularised = train.make_train_step(train.model_spec(plain, task), task, optimizer)(state, batch)
    assert not np.allclose(once[1]["loss"], unregularised[1]["loss"])  # training draws masks
    later = step(state._replace(step=state.step + 1), batch)  # another step number: other masks
    assert not np.allclose(once[1]["loss"], later[1]["loss"])
    zoneless = train.model_spec(_config(cell=name, dropout=0.2, input_dropout=0.1, recurrent_dropout=0.2), task)
    evaluate = train.make_eval_step(zoneless, task)
    assert_trees_close(
        evaluate(state.params, batch),
        train.make_eval_step(train.model_spec(plain, task), task)(state.params, batch),
        rtol=0,
    )
    with pytest.raises(ValueError, match=r"key: expected a PRNG key"):  # dropout needs its key
        train.make_train_step(spec, task, optimizer)(state, batch)


def test_the_dropout_cost_benchmark_runs_and_its_table_renders_from_the_committed_json(capsys):
    from _util import load_experiment

    cost = load_experiment("dropout_cost")
    rows = cost.measure(cells=("gru",), B=2, T=3, M=2, D=3, rounds=1)
    assert [r["setting"] for r in rows] == list(cost.SETTINGS) and rows[0]["ratio_to_none"] == 1.0
    cost.main(["--table"])
    out = capsys.readouterr().out
    assert out.startswith("| cell | regulariser |") and out.count("\n") == 2 + 2 * len(cost.SETTINGS)
