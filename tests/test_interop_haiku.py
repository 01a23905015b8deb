"""Haiku parameters to and from ours (lstm_jax.interop.haiku_cells), against the real Haiku: hk.LSTM (its forget
+1 folded into b), hk.VanillaRNN (ReLU, one or two biases), hk.DeepRNN stacks, run by hk.dynamic_unroll; outputs,
final states and input gradients within 1e-5 in float32, round trips exact (but Haiku's forget offset, which
rounds), every refusal naming what it refuses."""

import functools

import pytest

hk = pytest.importorskip("haiku", reason="dm-haiku is in the test extra (pip install dm-haiku); without it: skipped")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lstm_jax.cells import GRUParams, LSTMParams, RNNParams, lstm_cell, rnn_cell  # noqa: E402
from lstm_jax.init import init_gru, init_lstm, init_rnn  # noqa: E402
from lstm_jax.interop.haiku_cells import from_haiku, to_haiku  # noqa: E402
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers  # noqa: E402

B, T, M, D = 2, 7, 3, 5
TOL = 1e-5


def _inputs():
    return jnp.asarray(np.random.default_rng(0).standard_normal((B, T, M)).astype(np.float32))


def _random_like(make, seed):
    """The pytree ``make()`` returns, every leaf random (biases too), drawn by NumPy from ``jax.eval_shape``."""
    leaves, tree = jax.tree.flatten(jax.eval_shape(make))
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(tree, [jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype) for x in leaves])


def _loss(outputs):
    """A loss with a varied weight per output entry, so the input gradients compared are not trivial."""
    return sum(
        jnp.sum(y * jnp.sin(0.7 * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape) + k))
        for k, y in enumerate(outputs)
    )


def _with_grad(run):
    """``(outputs, d loss / d x)`` of ``run(params, x) -> outputs``, jitted."""

    def both(params, x):
        (_, outputs), grad = jax.value_and_grad(lambda x: (_loss(run(params, x)), run(params, x)), has_aux=True)(x)
        return outputs, grad

    return jax.jit(both)


@functools.cache
def _haiku(kind, layers, reverse, double_bias):
    """A transformed hk.dynamic_unroll of hk.LSTM / hk.VanillaRNN (an hk.DeepRNN of them for layers > 1):
    ``(transformed, jitted (outputs, input gradient))``; outputs are ``[ys, *final state leaves]``."""

    def forward(x):
        cores = [hk.LSTM(D) if kind == "lstm" else hk.VanillaRNN(D, double_bias=double_bias) for _ in range(layers)]
        core = cores[0] if layers == 1 else hk.DeepRNN(cores)
        ys, final = hk.dynamic_unroll(core, x, core.initial_state(B), time_major=False, reverse=reverse)
        return [ys, *jax.tree.leaves(final)]  # hk.LSTMState(hidden, cell): our LSTMState(h, c)'s order

    transformed = hk.without_apply_rng(hk.transform(forward))
    return transformed, _with_grad(transformed.apply)


@functools.cache
def _ours(kind, layers, reverse):
    cell = lstm_cell() if kind == "lstm" else rnn_cell("relu")

    def run(params, x):
        if layers == 1:
            final, ys = unroll(cell, params, x, reverse=reverse)
            return [ys, *jax.tree.leaves(final)]
        finals, ys = unroll_layers(cell, params, x)
        return [ys, *jax.tree.leaves(finals)]

    return _with_grad(run)


def _assert_parity(theirs, ours):
    (y_theirs, g_theirs), (y_ours, g_ours) = theirs, ours
    assert len(y_theirs) == len(y_ours)
    for a, b in zip(y_ours, y_theirs):
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL)
    assert float(jnp.max(jnp.abs(g_theirs))) > 0.1  # a gradient that can fail
    np.testing.assert_allclose(g_ours, g_theirs, rtol=0, atol=TOL)


def _assert_equal(actual, expected, forget_rounding=False):
    """Every leaf equal; with ``forget_rounding``, our LSTM's ``b`` equal but for the forget block, which went
    through ``(b - 1) + 1`` (or ``(b + 1) - 1``) and is equal to float rounding."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for path_leaf, e in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        path, a = path_leaf
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype
        if forget_rounding and jax.tree_util.keystr(path).endswith(("b", "['b']")):
            np.testing.assert_allclose(a, e, rtol=0, atol=2.5e-7)
        else:
            np.testing.assert_array_equal(a, e, err_msg=jax.tree_util.keystr(path))


CASES = [
    # kind, layers, reverse, double_bias
    ("lstm", 1, False, True),
    ("lstm", 1, True, True),
    ("lstm", 2, False, True),  # hk.DeepRNN
    ("rnn", 1, False, True),
    ("rnn", 2, False, False),
]


@pytest.mark.parametrize("kind, layers, reverse, double_bias", CASES)
def test_from_haiku_and_to_haiku_match_haiku(kind, layers, reverse, double_bias):
    transformed, haiku_run = _haiku(kind, layers, reverse, double_bias)
    ours_run = _ours(kind, layers, reverse)
    x = _inputs()
    names = (
        None
        if layers == 1
        else [kind if kind == "lstm" else "vanilla_rnn"]
        + [f"{'lstm' if kind == 'lstm' else 'vanilla_rnn'}_{k}" for k in range(1, layers)]
    )
    # Haiku -> ours (every tensor random, biases too)
    theirs = _random_like(lambda: transformed.init(jax.random.key(0), x), 1)
    params = from_haiku(theirs, cell=kind, module_name=names)
    _assert_parity(haiku_run(theirs, x), ours_run(params, x))
    activation = "relu" if kind == "rnn" else None
    back = to_haiku(params, module_name=names, activation=activation, double_bias=double_bias)
    assert jax.tree.structure(back) == jax.tree.structure(theirs)
    if kind == "rnn" and double_bias:  # the two biases were summed into b: back as (b + b_1, zeros)
        for name in [name for name in theirs if name.endswith("/linear")]:
            hidden = f"{name}_1"
            np.testing.assert_array_equal(back[name]["b"], theirs[name]["b"] + theirs[hidden]["b"])
            np.testing.assert_array_equal(back[hidden]["b"], 0)
            np.testing.assert_array_equal(back[name]["w"], theirs[name]["w"])
            np.testing.assert_array_equal(back[hidden]["w"], theirs[hidden]["w"])
    else:
        _assert_equal(back, theirs, forget_rounding=kind == "lstm")
    # ours -> Haiku, then back
    init = init_lstm if kind == "lstm" else init_rnn
    ours = _random_like(
        lambda: (
            init(jax.random.key(0), M, D)
            if layers == 1
            else tuple(init(jax.random.key(0), M if k == 0 else D, D) for k in range(layers))
        ),
        2,
    )
    exported = to_haiku(ours, activation=activation, double_bias=double_bias)
    assert jax.tree.structure(exported) == jax.tree.structure(theirs)
    _assert_parity(haiku_run(exported, x), ours_run(ours, x))
    _assert_equal(from_haiku(exported, cell=kind, module_name=names), ours, kind == "lstm")


def test_the_forget_offset_is_folded_into_b():
    """Haiku's zero bias runs the forget gate at sigmoid(0 + 1): our b_f is 1, every other bias 0."""
    transformed, _ = _haiku("lstm", 1, False, True)
    theirs = jax.tree.map(jnp.zeros_like, jax.eval_shape(lambda: transformed.init(jax.random.key(0), _inputs())))
    b = np.asarray(from_haiku(theirs, cell="lstm").b).reshape(4, D)
    np.testing.assert_array_equal(b, np.array([0, 1, 0, 0], np.float32)[:, None].repeat(D, 1))
    assert not np.any(np.asarray(to_haiku(from_haiku(theirs, cell="lstm"))["lstm/linear"]["b"]))


def test_a_module_path_and_other_modules():
    """A core inside a user's module is read by its path; the other modules (a head) are left alone."""
    params = to_haiku(_random_like(lambda: init_lstm(jax.random.key(0), M, D), 3), module_name="model/lstm")
    params["model/linear"] = {"w": jnp.zeros((D, 2)), "b": jnp.zeros((2,))}
    params["model/lstm_extra"] = {"w": jnp.zeros((2,))}  # a sibling whose name starts like ours: not ours
    assert isinstance(from_haiku(params, cell="lstm", module_name="model/lstm"), LSTMParams)
    params["model/lstm/linear"]["w_extra"] = jnp.zeros((2,))
    with pytest.raises(ValueError, match=r"unused tensors \['model/lstm/linear/w_extra'\]"):
        from_haiku(params, cell="lstm", module_name="model/lstm")


def test_from_haiku_names_what_does_not_fit():
    lstm = to_haiku(_random_like(lambda: init_lstm(jax.random.key(0), M, D), 3))
    with pytest.raises(ValueError, match=r"cell: expected 'lstm' or 'rnn', got 'gru': hk.GRU applies its reset gate"):
        from_haiku(
            {"gru": {"w_i": np.zeros((M, 3 * D)), "w_h": np.zeros((D, 3 * D)), "b": np.zeros(3 * D)}}, cell="gru"
        )
    with pytest.raises(ValueError, match=r"^lstm_1/linear/w: expected it in the Haiku modules"):
        from_haiku(lstm, cell="lstm", module_name=["lstm", "lstm_1"])
    with pytest.raises(ValueError, match=r"^vanilla_rnn/linear/w: expected it in the Haiku modules"):
        from_haiku(lstm, cell="rnn")
    bad = {"lstm/linear": {**lstm["lstm/linear"], "b": lstm["lstm/linear"]["b"][:-1]}}
    with pytest.raises(ValueError, match=r"^lstm/linear/b: expected shape \(20,\), got \(19,\)"):
        from_haiku(bad, cell="lstm")
    bad = {"lstm/linear": {**lstm["lstm/linear"], "b": lstm["lstm/linear"]["b"].astype(jnp.float16)}}
    with pytest.raises(ValueError, match=r"^lstm/linear/b: expected dtype float32 like the tensors before it"):
        from_haiku(bad, cell="lstm")
    bad = {"lstm/linear": {**lstm["lstm/linear"], "w": lstm["lstm/linear"]["w"][:, :18]}}
    with pytest.raises(ValueError, match=r"^lstm/linear/w: expected shape \(M \+ D, 4D\)"):
        from_haiku(bad, cell="lstm")
    with pytest.raises(ValueError, match="cell: expected one of"):
        from_haiku(lstm, cell="LSTM")
    with pytest.raises(ValueError, match="module_name: expected None, a module name"):
        from_haiku(lstm, cell="lstm", module_name=3)


def test_to_haiku_refuses_what_haiku_lacks():
    rnn = _random_like(lambda: init_rnn(jax.random.key(0), M, D), 4)
    with pytest.raises(ValueError, match=r"activation: expected 'relu' \(hk.VanillaRNN computes ReLU.* got None"):
        to_haiku(rnn)
    with pytest.raises(ValueError, match=r"activation: expected 'relu' .* got 'tanh'"):
        to_haiku(rnn, activation="tanh")
    assert isinstance(from_haiku(to_haiku(rnn, activation="relu"), cell="rnn"), RNNParams)
    gru = _random_like(lambda: init_gru(jax.random.key(0), M, D), 4)
    assert isinstance(gru, GRUParams)
    with pytest.raises(ValueError, match="got GRUParams: hk.GRU applies its reset gate before the matmul"):
        to_haiku(gru)
    with pytest.raises(ValueError, match=r"Haiku has no LSTM with \['w_hr'\]"):
        to_haiku(_random_like(lambda: init_lstm(jax.random.key(0), M, D, proj_size=2), 4))
    lstm = _random_like(lambda: init_lstm(jax.random.key(0), M, D), 4)
    with pytest.raises(ValueError, match="Haiku has no bidirectional core"):
        to_haiku(Bidirectional(lstm, lstm))
    with pytest.raises(ValueError, match=r"module_name: expected 2 names \(one per layer\)"):
        to_haiku((lstm, lstm._replace(w_ih=lstm.w_hh[:, :D])), module_name=["a"])
    with pytest.raises(ValueError, match="module_name: expected one name for one cell's parameters"):
        to_haiku(lstm, module_name=["a", "b"])
