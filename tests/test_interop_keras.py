"""Keras 3 layers to and from our parameters (lstm_jax.interop.keras_layers), against the real Keras on its JAX
backend: outputs, final states and input gradients within 1e-5 in float32 (with masks against our lengths),
round trips bit-exact, and every refusal naming what it refuses."""

import functools
import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="Keras 3 is in the test extra (pip install keras); without it: skipped")
if keras.backend.backend() != "jax":
    pytest.skip(
        f"these tests run Keras on the JAX backend, got KERAS_BACKEND={keras.backend.backend()!r}",
        allow_module_level=True,
    )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lstm_jax.cells import GRUParams, LSTMParams, RNNParams, gru_cell, lstm_cell, rnn_cell  # noqa: E402
from lstm_jax.init import init_gru, init_lstm, init_rnn  # noqa: E402
from lstm_jax.interop.keras_layers import from_keras, from_keras_model, keras_cell, to_keras, to_keras_model  # noqa: E402
from lstm_jax.models import ModelSpec, apply_model, init_model  # noqa: E402
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers  # noqa: E402

pytestmark = pytest.mark.filterwarnings(  # Keras's Variable.numpy() on NumPy 2 (its own code, not ours)
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

B, T, M, D = 2, 7, 3, 5
ZEROS = dict(kernel_initializer="zeros", recurrent_initializer="zeros")  # tests set the weights: skip Keras's QR
LENGTHS = np.array([7, 4])
TOL = 1e-5


def _allow():
    """Keras's JAX backend broadcasts (B, D) + (D,) itself: the suite's rank-promotion "raise" would stop it."""
    return jax.numpy_rank_promotion("allow")


def _inputs(seed=0):
    x = np.random.default_rng(seed).standard_normal((B, T, M)).astype(np.float32)
    return x


def _randomise(layer, rng):
    """Every weight of a Keras layer random (biases too: Keras starts them at zero)."""
    layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(np.float32) for w in layer.get_weights()])


def _random_params(make, seed):
    """The parameters ``make()`` returns, every leaf random (biases too); drawn by NumPy from the shapes alone
    (``jax.eval_shape``: no initialiser runs, nothing compiles)."""
    leaves, tree = jax.tree.flatten(jax.eval_shape(make))
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(tree, [jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype) for x in leaves])


def _layer(kind, bidirectional, **options):
    """A Keras layer that returns its sequence and its final states, built for M features (zeros: the tests
    set every weight; Keras's orthogonal initialiser would compile a QR for nothing)."""
    options = dict(return_sequences=True, return_state=True, **options)
    if kind == "lstm":
        layer = keras.layers.LSTM(D, **ZEROS, **options)
    elif kind == "gru":
        layer = keras.layers.GRU(D, **ZEROS, **options)
    else:
        layer = keras.layers.SimpleRNN(D, **ZEROS, activation=kind.split("-")[1], **options)
    if bidirectional:
        layer = keras.layers.Bidirectional(layer)
    else:
        layer.zero_output_for_mask = True  # zeros at padded steps, as ours (Bidirectional sets it itself)
    with _allow():
        layer.build((None, None, M))
    return layer


def _cotangent(y, k):
    """A fixed, varied weight per output entry: the loss sum_k sum(y_k * w_k) has an input gradient to compare."""
    return jnp.sin(0.7 * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) + k)


def _loss(outputs):
    return sum(jnp.sum(y * _cotangent(y, k)) for k, y in enumerate(outputs))


def _keras_run(layer, x, mask=None, weights=None):
    """The layer's outputs (sequence, then final states), with its own weights or ``weights``: its trainable and
    non-trainable variables' values (``stateless_call``)."""
    if weights is None:
        with _allow():
            outputs = layer(x, mask=mask)
    else:
        outputs, _ = layer.stateless_call(*weights, x, mask=mask)
    return [jnp.asarray(y) for y in outputs]


@functools.cache
def _keras_forward_and_grad(layer):
    """``(outputs, d loss / d x)`` of a Keras layer as one jitted function of its weights: compiled once per layer."""

    def run(weights, x, mask):
        def loss(x):
            outputs = _keras_run(layer, x, mask, weights)
            return _loss(outputs), outputs

        (_, outputs), grad = jax.value_and_grad(loss, has_aux=True)(x)
        return outputs, grad

    return jax.jit(run)


def _ours_run(cell, params, x, lengths):
    if isinstance(params, Bidirectional):
        finals, ys = unroll_layers(cell, (params,), x, lengths=lengths)
        finals = finals[0]
    else:
        finals, ys = unroll(cell, params, x, lengths=lengths)
    return [ys, *jax.tree.leaves(finals)]  # LSTMState(h, c): Keras's [h, c]; Bidirectional: [h_f, c_f, h_b, c_b]


@functools.cache
def _ours_forward_and_grad(cell):
    def run(params, x, lengths):
        def loss(x):
            outputs = _ours_run(cell, params, x, lengths)
            return _loss(outputs), outputs

        (_, outputs), grad = jax.value_and_grad(loss, has_aux=True)(x)
        return outputs, grad

    return jax.jit(run)


def _assert_parity(layer, cell, params, masked=True):
    """Outputs, final states and d loss / d x of the Keras layer (with the weights it holds) and of our
    unroll, within TOL."""
    x = jnp.asarray(_inputs())
    mask = jnp.asarray(np.arange(T)[None] < LENGTHS[:, None]) if masked else None
    lengths = jnp.asarray(LENGTHS) if masked else None
    with _allow():
        weights = [[v.value for v in layer.trainable_variables], [v.value for v in layer.non_trainable_variables]]
        theirs, g_theirs = _keras_forward_and_grad(layer)(weights, x, mask)
    ours, g_ours = _ours_forward_and_grad(cell)(params, x, lengths)
    assert len(theirs) == len(ours)
    for y_theirs, y_ours in zip(theirs, ours):
        np.testing.assert_allclose(y_ours, y_theirs, rtol=0, atol=TOL)
    assert float(jnp.max(jnp.abs(g_theirs))) > 0.1  # a gradient that can fail
    np.testing.assert_allclose(g_ours, g_theirs, rtol=0, atol=TOL)


def _assert_exact(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert np.asarray(a).dtype == np.asarray(e).dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


CASES = [
    # kind, bidirectional, masked (Keras's mask against our lengths)
    ("lstm", False, True),
    ("lstm", True, True),
    ("gru", False, True),
    ("gru", True, False),  # no mask: Keras's plain scan
    ("rnn-relu", False, True),
]


@pytest.mark.parametrize("kind, bidirectional, masked", CASES)
def test_from_keras_and_to_keras_match_keras(kind, bidirectional, masked):
    rng = np.random.default_rng(3)
    layer = _layer(kind, bidirectional)
    _randomise(layer, rng)
    cell = keras_cell(layer)
    assert cell is (lstm_cell() if kind == "lstm" else gru_cell() if kind == "gru" else rnn_cell(kind.split("-")[1]))
    # Keras -> ours
    params = from_keras(layer)
    _assert_parity(layer, cell, params, masked)
    assert all(np.asarray(leaf).dtype == np.float32 for leaf in jax.tree.leaves(params))
    # ours -> Keras (every leaf random, the GRU's b_hn too), then back: bit-exact
    init = {"lstm": init_lstm, "gru": init_gru}.get(kind, init_rnn)
    ours = _random_params(lambda: init(jax.random.key(1), M, D), 2)
    if bidirectional:
        ours = Bidirectional(ours, _random_params(lambda: init(jax.random.key(1), M, D), 3))
    layer.set_weights(to_keras(ours))
    _assert_parity(layer, cell, ours, masked)
    _assert_exact(from_keras(layer), ours)
    _assert_exact(from_keras(layer.get_weights(), cell=kind.split("-")[0]), ours)


def test_keras_to_ours_to_keras_is_exact_where_no_bias_is_summed():
    rng = np.random.default_rng(4)
    for kind in ("lstm", "rnn-tanh"):
        layer = _layer(kind, True)
        _randomise(layer, rng)
        for mine, theirs in zip(to_keras(from_keras(layer)), layer.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    # the GRU's two bias rows are summed into b (but b_hn): the same layer, not the same arrays
    layer = _layer("gru", False)
    _randomise(layer, rng)
    kernel, recurrent, bias = to_keras(from_keras(layer))
    theirs = layer.get_weights()
    np.testing.assert_array_equal(kernel, theirs[0])
    np.testing.assert_array_equal(recurrent, theirs[1])
    np.testing.assert_allclose(bias.sum(0), theirs[2].sum(0), rtol=1e-6)  # z, r: b_in + b_rec; h: b_in, b_hn
    np.testing.assert_array_equal(bias[1, 2 * D :], theirs[2][1, 2 * D :])
    np.testing.assert_array_equal(bias[1, : 2 * D], 0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_use_bias_false(kind):
    layer = _layer(kind, False, use_bias=False)
    _randomise(layer, np.random.default_rng(5))
    params = from_keras(layer)
    assert not np.any(np.asarray(params.b))
    assert kind == "lstm" or not np.any(np.asarray(params.b_hn))
    x = jnp.asarray(_inputs())
    for y_theirs, y_ours in zip(_keras_run(layer, x, None), _ours_run(keras_cell(layer), params, x, None)):
        np.testing.assert_allclose(y_ours, y_theirs, rtol=0, atol=TOL)
    weights = to_keras(params, use_bias=False)
    assert len(weights) == 2
    _assert_exact(from_keras(weights, cell=kind), params)
    with pytest.raises(ValueError, match=r"params\.b: expected zeros for a Keras layer with use_bias=False"):
        to_keras(params._replace(b=params.b + 1), use_bias=False)


def test_a_sequential_stack_is_our_stack():
    rng = np.random.default_rng(6)
    with _allow():
        model = keras.Sequential(
            [
                keras.Input((None, M)),
                keras.layers.Bidirectional(keras.layers.GRU(D, return_sequences=True, **ZEROS)),
                keras.layers.Bidirectional(keras.layers.GRU(D, return_sequences=True, **ZEROS)),
            ]
        )
    for layer in model.layers:
        _randomise(layer, rng)
    layers = from_keras(model)
    assert len(layers) == 2 and all(isinstance(layer, Bidirectional) for layer in layers)
    _assert_exact(from_keras(list(model.layers)), layers)
    x = jnp.asarray(_inputs())
    with _allow():
        theirs = model(x)
    _, ours = unroll_layers(gru_cell(), layers, x)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)
    stack = to_keras(layers)
    assert len(stack) == 2 and len(stack[0]) == 6
    with _allow():
        model = keras.Sequential(
            [keras.Input((None, M)), keras.layers.LSTM(D, **ZEROS), keras.layers.Dense(2, name="dense")]
        )
    with pytest.raises(ValueError, match=r"layers\[1\] \('dense'\): expected a recurrent layer"):
        from_keras(model)


def _built(layer):
    with _allow():
        layer.build((None, None, M))
    return layer


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: keras.layers.GRU(D, **ZEROS, reset_after=False), r"reset_after: expected True .* W_hn \(r ⊙ h\)"),
        (lambda: keras.layers.LSTM(D, **ZEROS, activation="relu"), r"\.activation: expected 'tanh'.* got 'relu'"),
        (
            lambda: keras.layers.GRU(D, **ZEROS, recurrent_activation="hard_sigmoid"),
            r"\.recurrent_activation: expected 'sigmoid'",
        ),
        (
            lambda: keras.layers.SimpleRNN(D, **ZEROS, activation="linear"),
            r"\.activation: expected one of .* got 'linear'",
        ),
        (lambda: keras.layers.LSTM(D, **ZEROS, go_backwards=True), r"go_backwards: expected False .* reverse=True"),
        (
            lambda: keras.layers.Bidirectional(keras.layers.LSTM(D, **ZEROS), merge_mode="sum"),
            r"merge_mode: expected 'concat'",
        ),
        (lambda: keras.layers.Dense(D), r"expected a Keras LSTM, GRU, SimpleRNN.* got Dense"),
    ],
)
def test_from_keras_refuses_what_our_cells_cannot_compute(make, match):
    with pytest.raises(ValueError, match=match):
        from_keras(_built(make()))


def test_from_keras_names_the_tensor_or_option_at_fault():
    layer = _built(keras.layers.LSTM(D, **ZEROS))
    kernel, recurrent, bias = layer.get_weights()
    with pytest.raises(ValueError, match="layer 'lstm_unbuilt': expected a built layer"):
        from_keras(keras.layers.LSTM(D, **ZEROS, name="lstm_unbuilt"))
    with pytest.raises(ValueError, match=r"cell: expected the kind of layer .* \('lstm'\), got 'gru'"):
        from_keras(layer, cell="gru")
    with pytest.raises(ValueError, match="cell: expected 'rnn', 'lstm' or 'gru' with a list of weight arrays"):
        from_keras([kernel, recurrent, bias])
    with pytest.raises(ValueError, match="weights: expected the list get_weights.. returns.* got 5 arrays"):
        from_keras([kernel, recurrent, bias, kernel, recurrent], cell="lstm")
    with pytest.raises(ValueError, match=r"^kernel: expected shape \(3, 20\), got \(3, 15\)"):
        from_keras([kernel[:, :15], recurrent, bias], cell="lstm")
    with pytest.raises(ValueError, match=r"^recurrent_kernel: expected 2 dimensions"):
        from_keras([kernel, recurrent.ravel(), bias], cell="lstm")
    with pytest.raises(ValueError, match=r"^bias: expected shape \(20,\), got \(15,\)"):
        from_keras([kernel, recurrent, bias[:15]], cell="lstm")
    with pytest.raises(ValueError, match=r"^bias: expected dtype float32 like the tensors before it, got float64"):
        from_keras([kernel, recurrent, bias.astype(np.float64)], cell="lstm")
    with pytest.raises(ValueError, match=r"^backward/kernel: expected a floating dtype"):
        from_keras([kernel, recurrent, bias, kernel.astype(np.int32), recurrent, bias], cell="lstm")
    gru = _built(keras.layers.GRU(D, **ZEROS, reset_after=False)).get_weights()
    with pytest.raises(ValueError, match=r"^bias: expected shape \(2, 15\) .* reset_after=False"):
        from_keras(gru, cell="gru")


def test_to_keras_refuses_an_lstm_keras_lacks():
    params = _random_params(lambda: init_lstm(jax.random.key(0), M, D, proj_size=2), 0)
    with pytest.raises(ValueError, match=r"Keras has no LSTM with \['w_hr'\]"):
        to_keras(params)
    with pytest.raises(ValueError, match=r"Keras has no LSTM with \['p_i'\]"):
        to_keras(_random_params(lambda: init_lstm(jax.random.key(0), M, D, peepholes=True), 0))
    with pytest.raises(ValueError, match="params: expected RNNParams, LSTMParams"):
        to_keras(np.zeros(3))


MODEL_CASES = [
    # cell, activation, bidirectional, many_to_one, input layer, masked
    ("lstm", "tanh", True, False, "dense", True),
    ("gru", "tanh", False, True, "embedding", True),
    ("rnn", "relu", True, True, "none", False),
]


@pytest.mark.parametrize("cell, activation, bidirectional, many_to_one, input_layer, masked", MODEL_CASES)
def test_to_keras_model_computes_apply_model(cell, activation, bidirectional, many_to_one, input_layer, masked):
    spec = ModelSpec(cell=cell, activation=activation, many_to_one=many_to_one)
    params = _random_params(
        lambda: init_model(
            jax.random.key(2),
            spec,
            M,
            D,
            4,
            num_layers=2,
            bidirectional=bidirectional,
            input_layer=input_layer,
            input_features=6,
        ),
        3,
    )
    x = _inputs(7)
    lengths = None
    if masked:
        x[1, LENGTHS[1] :] = 0.0  # Keras's Masking: a step whose features are all 0 is padding
        lengths = jnp.asarray(LENGTHS)
    with _allow():
        model = to_keras_model(params, spec, M, mask_value=0.0 if masked else None)
        theirs, g_theirs = _model_forward_and_grad(model)(_model_weights(model), jnp.asarray(x))
    ours, g_ours = _apply_forward_and_grad(spec, params, jnp.asarray(x), lengths)
    assert theirs.shape == ours.shape == ((B, 4) if many_to_one else (B, T, 4))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)
    assert float(jnp.max(jnp.abs(g_theirs))) > 0.1
    np.testing.assert_allclose(g_ours, g_theirs, rtol=0, atol=TOL)
    head = model.get_layer("head")
    assert head.get_weights()[0].shape == (2 * D if bidirectional else D, 4)
    assert head.get_config()["kernel_initializer"]["class_name"] == "GlorotUniform"  # Keras's default, not our zeros
    recurrent = model.get_layer("bidirectional_0" if bidirectional else f"{cell}_0")
    config = recurrent.get_config()
    config = config["layer"]["config"] if bidirectional else config
    assert config["recurrent_initializer"]["class_name"] == "Orthogonal"
    # and back: the same arrays, the spec's cell, activation and many_to_one
    back, back_spec = from_keras_model(model)
    _assert_exact(back, params)
    assert back_spec == ModelSpec(cell=cell, activation=activation, many_to_one=many_to_one)


def _model_weights(model):
    return [[v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]]


@functools.cache
def _model_forward_and_grad(model):
    def run(weights, x):
        def loss(x):
            y, _ = model.stateless_call(*weights, x)
            return _loss([y]), y

        (_, y), grad = jax.value_and_grad(loss, has_aux=True)(x)
        return y, grad

    return jax.jit(run)


@functools.partial(jax.jit, static_argnums=0)
def _apply_forward_and_grad(spec, params, x, lengths):
    def loss(x):
        y = apply_model(spec, params, x, lengths)
        return _loss([y]), y

    (_, y), grad = jax.value_and_grad(loss, has_aux=True)(x)
    return y, grad


def test_from_keras_model_refuses_other_models():
    with _allow():
        softmax = keras.Sequential(
            [keras.Input((None, M)), keras.layers.LSTM(D, **ZEROS), keras.layers.Dense(2, activation="softmax")]
        )
        two_heads = keras.Sequential([keras.Input((None, M)), keras.layers.LSTM(D, **ZEROS), keras.layers.Dense(2)])
        two_heads.add(keras.layers.Dense(2))
    with pytest.raises(ValueError, match=r"\.activation: expected 'linear' .* got 'softmax'"):
        from_keras_model(softmax)
    with pytest.raises(
        ValueError, match=r"model.layers: expected \[Masking\], \[Dense\], .* \['LSTM', 'Dense', 'Dense'\]"
    ):
        from_keras_model(two_heads)


def test_to_keras_model_refuses_what_keras_lacks():
    spec = ModelSpec(cell="lstm", proj_size=2)
    params = _random_params(lambda: init_model(jax.random.key(0), spec, M, D, 4), 0)
    with pytest.raises(ValueError, match="spec.proj_size: expected it off"):
        to_keras_model(params, spec, M)
    params = _random_params(lambda: init_model(jax.random.key(0), ModelSpec(cell="gru"), M, D, 4), 0)
    with pytest.raises(ValueError, match="spec.cell: expected the parameters' cell 'gru', got 'lstm'"):
        to_keras_model(params, ModelSpec(cell="lstm"), M)
    with pytest.raises(ValueError, match=r"input_size: expected 3 .*, got 4"):
        to_keras_model(params, ModelSpec(cell="gru"), 4)


def test_params_types_are_ours():
    layer = _layer("rnn-tanh", False)
    assert isinstance(from_keras(layer), RNNParams)
    assert isinstance(from_keras(_layer("lstm", False)), LSTMParams)
    assert isinstance(from_keras(_layer("gru", False)), GRUParams)
    assert isinstance(from_keras(_built(keras.layers.RNN(keras.layers.LSTMCell(D, **ZEROS)))), LSTMParams)
    stacked = keras.layers.RNN(keras.layers.StackedRNNCells([keras.layers.LSTMCell(D, **ZEROS)] * 2))
    with pytest.raises(ValueError, match="expected a Keras LSTM, GRU, SimpleRNN.* got RNN over StackedRNNCells"):
        from_keras(_built(stacked))
