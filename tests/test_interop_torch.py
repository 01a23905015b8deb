"""PyTorch's nn.RNN / nn.LSTM (proj_size) / nn.GRU weights in and out (lstm_jax.interop.pytorch), against real torch."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.cells import GRUParams, LSTMParams, LSTMState, LSTMVariantParams, RNNParams
from lstm_jax.interop.pytorch import from_torch, to_torch, to_torch_module, torch_cell, torch_layout
from lstm_jax.unroll import Bidirectional, unroll_layers

torch = pytest.importorskip("torch", reason="the parity tests need PyTorch (pip install torch==2.13.0, CPU build)")

M, D, T, B = 3, 5, 7, 3
LENGTHS = np.array([T, 4, 1])


def _assert_close(actual, expected, what):
    """float32: within 1e-5 of the largest value (1e-5 absolute on values O(1); the relu RNN's input gradients
    reach O(40), where 1e-5 absolute would ask for more digits than float32 sums keep)."""
    expected = np.asarray(expected)
    atol = 1e-5 * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=atol, err_msg=what)


def _module(cell, *, seed=0, **kwargs):
    """A torch module with every tensor random (biases too; not the default init)."""
    torch.manual_seed(seed)
    module = getattr(torch.nn, {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell])(M, D, batch_first=True, **kwargs)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.5)
    return module


def _torch_run(module, xs_np, weights_np, lengths):
    """Outputs (zero at padding), h_n, c_n (or None) and d loss / d xs of a torch module."""
    xs = torch.tensor(xs_np, requires_grad=True)
    inputs = xs
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(
            xs, torch.tensor(lengths), batch_first=True, enforce_sorted=False
        )
    out, final = module(inputs)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    h_n, c_n = final if isinstance(final, tuple) else (final, None)
    loss = (torch.tensor(weights_np) * torch.sin(out)).sum() + (h_n**2).sum()
    if c_n is not None:
        loss = loss + (c_n**3).sum()
    loss.backward()
    numpy = lambda t: None if t is None else t.detach().numpy()  # noqa: E731
    return numpy(out), numpy(h_n), numpy(c_n), numpy(xs.grad)


def _stack_finals(finals):
    """Our final carries as PyTorch's ``(h_n, c_n)``: ``(num_layers · directions, B, H)``, layer-major."""
    carries = [c for layer in finals for c in (layer if isinstance(layer, Bidirectional) else (layer,))]
    if isinstance(carries[0], LSTMState):
        return jnp.stack([c.h for c in carries]), jnp.stack([c.c for c in carries])
    return jnp.stack(carries), None


def _ours_run(cell, layers, xs_np, weights_np, lengths):
    lengths = None if lengths is None else jnp.asarray(lengths)

    def loss(xs):
        finals, ys = unroll_layers(cell, layers, xs, lengths=lengths)
        h_n, c_n = _stack_finals(finals)
        value = jnp.sum(jnp.asarray(weights_np) * jnp.sin(ys)) + jnp.sum(h_n**2)
        if c_n is not None:
            value = value + jnp.sum(c_n**3)
        return value, (ys, h_n, c_n)

    (_, (ys, h_n, c_n)), d_xs = jax.value_and_grad(loss, has_aux=True)(jnp.asarray(xs_np))
    return ys, h_n, c_n, d_xs


CASES = [
    ("lstm", dict(num_layers=2, bidirectional=True), True),
    ("lstm", dict(proj_size=2, num_layers=2, bidirectional=True), True),
    ("lstm", dict(bias=False), False),
    ("gru", dict(num_layers=2, bidirectional=True), True),
    ("rnn", dict(nonlinearity="tanh", num_layers=2), True),
    ("rnn", dict(nonlinearity="relu", bidirectional=True, bias=False), True),
]


@pytest.mark.parametrize("cell, kwargs, ragged", CASES, ids=lambda c: c if isinstance(c, str) else None)
def test_outputs_carries_and_input_gradients_equal_torch_both_ways(cell, kwargs, ragged):
    """torch -> ours (from_torch) and ours -> torch (to_torch_module): outputs, (h_n, c_n) and d loss / d x
    within 1e-5 in float32; ragged batches as packed sequences against our ``lengths``."""
    module = _module(cell, **kwargs)
    rng = np.random.default_rng(1)
    xs_np = rng.standard_normal((B, T, M)).astype(np.float32)
    H = (kwargs.get("proj_size") or D) * (2 if kwargs.get("bidirectional") else 1)
    weights_np = rng.standard_normal((B, T, H)).astype(np.float32)
    lengths = LENGTHS if ragged else None

    layers = from_torch(module)
    assert len(layers) == kwargs.get("num_layers", 1)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(layers))
    expected = _torch_run(module, xs_np, weights_np, lengths)
    ours = _ours_run(torch_cell(module), layers, xs_np, weights_np, lengths)
    for name, a, e in zip(("outputs", "h_n", "c_n", "d loss / d xs"), ours, expected):
        assert (a is None) == (e is None), name
        if e is not None:
            _assert_close(a, e, name)
    if ragged:
        assert np.all(np.asarray(ours[0])[2, 1:] == 0)  # padding: zeros in both

    # ours -> torch: the module built from our parameters (bias_ih = b, bias_hh = 0) computes the same
    back = to_torch_module(layers, nonlinearity=kwargs.get("nonlinearity", "tanh"), bias=kwargs.get("bias", True))
    assert type(back) is type(module) and back.proj_size == module.proj_size and back.batch_first
    for name, a, e in zip(
        ("outputs", "h_n", "c_n", "d loss / d xs"), _torch_run(back, xs_np, weights_np, lengths), ours
    ):
        if e is not None:
            _assert_close(a, e, f"to_torch_module: {name}")


def _params(kind, seed, input_size=M, *, proj_size=0, dtype=np.float32, hidden=D):
    """One cell's parameters, every leaf random (biases too: none is zero by construction), built in NumPy."""
    rng = np.random.default_rng(seed)
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[kind]

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape).astype(dtype))

    w_ih, w_hh, b = (
        normal(gates * hidden, input_size),
        normal(gates * hidden, proj_size or hidden),
        normal(gates * hidden),
    )
    if kind == "gru":
        return GRUParams(w_ih, w_hh, b, normal(hidden))
    if proj_size:
        return LSTMVariantParams(w_ih, w_hh, b, normal(proj_size, hidden))
    return (LSTMParams if kind == "lstm" else RNNParams)(w_ih, w_hh, b)


def _random_layers(kind, seed, *, num_layers=2, bidirectional=True, proj_size=0, dtype=np.float32):
    """Our stack as init_layers builds it, every leaf random."""
    layers, size = [], M
    for k in range(num_layers):
        pair = [
            _params(kind, seed + 10 * k + d, size, proj_size=proj_size, dtype=dtype) for d in range(1 + bidirectional)
        ]
        layers.append(Bidirectional(*pair) if bidirectional else pair[0])
        size = (proj_size or D) * len(pair)
    return tuple(layers)


def _assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


@pytest.mark.parametrize(
    "kind, init",
    [("rnn", {}), ("lstm", {}), ("lstm", {"proj_size": 2}), ("gru", {})],
    ids=["rnn", "lstm", "lstm-proj", "gru"],
)
def test_ours_to_torch_to_ours_is_bit_exact(kind, init):
    layers = _random_layers(kind, 3, **init)
    state = to_torch(layers)
    module = _module(kind, num_layers=2, bidirectional=True, **init)
    assert list(state) == list(module.state_dict())  # PyTorch's names, in its order
    assert all(state[k].shape == tuple(v.shape) for k, v in module.state_dict().items())
    _assert_trees_equal(from_torch(state), layers)
    _assert_trees_equal(from_torch(to_torch_module(layers)), layers)  # through a real module
    assert type(from_torch(state)[0].forward) is {"rnn": RNNParams, "lstm": LSTMVariantParams if init else LSTMParams,
                                                   "gru": GRUParams}[kind]  # fmt: skip


def test_ours_to_torch_round_trip_in_float64_and_float16():
    with jax.enable_x64(True):
        layers = _random_layers("gru", 4, dtype=np.float64)
        _assert_trees_equal(from_torch(to_torch_module(layers)), layers)
    half = _random_layers("lstm", 5, proj_size=3, dtype=np.float16)
    _assert_trees_equal(from_torch(to_torch(half)), half)
    assert to_torch_module(half).weight_hr_l1_reverse.dtype == torch.float16


@pytest.mark.parametrize("cell, kwargs", [(c, k) for c, k, _ in CASES], ids=lambda c: c if isinstance(c, str) else None)
def test_torch_to_ours_to_torch_keeps_every_tensor_and_the_bias_sums(cell, kwargs):
    """Exact where no biases are summed (weights; bias_hh = 0; bias=False); otherwise bias_ih + bias_hh
    (the GRU's bias_hn kept apart) is exactly what it was."""
    module = _module(cell, **kwargs)
    before = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    after = to_torch(from_torch(module), bias=kwargs.get("bias", True))
    assert list(after) == list(before)
    for name in before:
        if "bias" not in name:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    for name in (n for n in before if n.startswith("bias_ih")):
        other = name.replace("bias_ih", "bias_hh")
        if cell == "gru":
            np.testing.assert_array_equal(after[other][2 * D :], before[other][2 * D :])  # b_hn as it was
            np.testing.assert_array_equal(after[name][2 * D :], before[name][2 * D :])
            np.testing.assert_array_equal(after[name][: 2 * D], before[name][: 2 * D] + before[other][: 2 * D])
        else:
            np.testing.assert_array_equal(after[name], before[name] + before[other])
        assert not after[other][: 2 * D if cell == "gru" else None].any()
    with torch.no_grad():  # bias_hh already zero: the whole state dict comes back bit for bit
        for name, p in module.named_parameters():
            if name.startswith("bias_hh"):
                p[: 2 * D if cell == "gru" else None] = 0
    exact = to_torch(from_torch(module.state_dict()), bias=kwargs.get("bias", True))
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(exact[name], value.numpy(), err_msg=name)


def test_a_state_dict_says_its_layout_and_a_model_s_state_dict_is_read_under_a_prefix():
    for kwargs, layout in [
        (dict(num_layers=3), ("lstm", M, D, 3, False, 0, True)),
        (dict(proj_size=4, bidirectional=True), ("lstm", M, D, 1, True, 4, True)),
        (dict(bias=False), ("lstm", M, D, 1, False, 0, False)),
    ]:
        assert tuple(torch_layout(_module("lstm", **kwargs).state_dict()))[:7] == layout
    assert torch_layout(_module("gru").state_dict()).cell == "gru"
    assert torch_layout(_module("rnn", nonlinearity="relu")).nonlinearity == "relu"
    assert torch_layout(_module("rnn", nonlinearity="relu").state_dict()).nonlinearity is None  # not in a state dict
    assert torch_cell(_module("rnn", nonlinearity="relu")) is torch_cell(
        _module("rnn").state_dict(), nonlinearity="relu"
    )
    assert torch_cell(_module("lstm", proj_size=2)).proj_size == 2
    kwargs = torch_layout(_random_layers("lstm", 0, proj_size=2)).kwargs()
    assert kwargs == dict(input_size=M, hidden_size=D, num_layers=2, bias=True, batch_first=True, bidirectional=True,
                          proj_size=2)  # fmt: skip

    model = torch.nn.ModuleDict({"lstm": _module("lstm", num_layers=2), "head": torch.nn.Linear(D, 2)})
    layers = from_torch(model.state_dict(), prefix="lstm.", cell="lstm")
    _assert_trees_equal(layers, from_torch(model["lstm"]))
    with pytest.raises(
        ValueError, match=r"weight_ih_l0: expected it in the torch state dict \(which has \['head.bias'"
    ):
        from_torch(model.state_dict())
    with pytest.raises(ValueError, match=r"source: expected a torch nn.RNN.*pass model.state_dict\(\) and prefix"):
        from_torch(model)


def _state(cell="lstm", **kwargs):
    return dict(_module(cell, **kwargs).state_dict())


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (lambda s: s.pop("weight_hh_l1"), dict(num_layers=2), r"weight_hh_l1: expected it in the torch state dict"),
        (lambda s: s.pop("bias_hh_l0_reverse"), dict(bidirectional=True), r"bias_hh_l0_reverse: expected it in"),
        (lambda s: s.update(bias_ih_l0=torch.zeros(7)), {}, r"bias_ih_l0: expected shape \(20,\), got \(7,\)"),
        (
            lambda s: s.update(weight_ih_l1=torch.zeros(20, 3)),
            dict(num_layers=2),
            r"weight_ih_l1: expected shape \(20, 5\)",
        ),
        (lambda s: s.update(weight_hh_l0=torch.zeros(7, 5)), {}, r"weight_hh_l0: expected shape \(G·D, D\) with G = 1"),
        (
            lambda s: s.update(weight_hh_l0=torch.zeros(20)),
            {},
            r"weight_hh_l0: expected a 2-d tensor, got shape \(20,\)",
        ),
        (lambda s: s.update(bias_ih_l0=s["bias_ih_l0"].double()), {}, r"bias_ih_l0: expected dtype float32 like the"),
        (
            lambda s: s.update(weight_ih_l0=torch.zeros(20, 3, dtype=torch.int32)),
            {},
            r"weight_ih_l0: expected a floating",
        ),
        (
            lambda s: s.update(weight_hh_l0=s["weight_hh_l0"].bfloat16()),
            {},
            r"weight_hh_l0: tensor: expected a float16",
        ),
        (lambda s: s.update(extra=torch.zeros(2)), {}, r"unused tensors \['extra'\]"),
        (lambda s: s.update(weight_hr_l1=torch.zeros(2, 5)), dict(proj_size=2), r"unused tensors \['weight_hr_l1'\]"),
        (lambda s: s.pop("weight_hr_l1"), dict(proj_size=2, num_layers=2), r"weight_hr_l1: expected it in"),
        (lambda s: s.update(weight_ih_l3=torch.zeros(20, 5)), dict(num_layers=2), r"unused tensors \['weight_ih_l3'\]"),
    ],
)
def test_a_bad_state_dict_is_a_value_error_naming_the_tensor(change, kwargs, message):
    state = _state(**kwargs)
    change(state)
    with pytest.raises(ValueError, match=message):
        from_torch(state)


def test_bad_sources_and_options_are_value_errors():
    with pytest.raises(ValueError, match=r"cell: expected 'lstm', as weight_hh_l0's shape says, got 'gru'"):
        from_torch(_state(), cell="gru")
    with pytest.raises(ValueError, match=r"cell: expected 'gru', as the module \(nn.GRU\) says, got 'rnn'"):
        from_torch(_module("gru"), cell="rnn")
    with pytest.raises(ValueError, match=r"cell: expected one of"):
        from_torch(_state(), cell="lstmp")
    with pytest.raises(ValueError, match=r"source: expected a torch nn.RNN, nn.LSTM or nn.GRU, or a state dict"):
        from_torch([1, 2])
    with pytest.raises(ValueError, match=r"weight_ih_l0: expected float64 tensors inside `with jax.enable_x64"):
        from_torch(_module("gru").double())
    with jax.enable_x64(True):
        assert from_torch(_module("gru").double())[0].b_hn.dtype == jnp.float64
    with pytest.raises(ValueError, match=r"nonlinearity: expected 'relu', the module's, got 'tanh'"):
        torch_cell(_module("rnn", nonlinearity="relu"), nonlinearity="tanh")
    with pytest.raises(ValueError, match=r"nonlinearity: expected None for an nn.LSTM"):
        torch_cell(_state(), nonlinearity="relu")


def _variant(**options):
    """A one-layer LSTM with options: init_lstm's zero/one-filled fields, made without compiling anything."""
    fields = {"proj_size": ("w_hr",), "peepholes": ("p_i", "p_f", "p_o"), "layer_norm": ("gamma_z", "gamma_a", "beta",
              "gamma_c", "beta_c")}  # fmt: skip
    P = options.get("proj_size") or D
    shapes = dict(w_hr=(P, D), p_i=(D,), p_f=(D,), p_o=(D,), gamma_z=(4 * D,), gamma_a=(4 * D,), beta=(4 * D,),
                  gamma_c=(D,), beta_c=(D,))  # fmt: skip
    extra = {f: jnp.ones(shapes[f]) for option, on in options.items() if on for f in fields[option]}
    return (LSTMVariantParams(jnp.ones((4 * D, M)), jnp.ones((4 * D, P)), jnp.ones(4 * D), **extra),)


@pytest.mark.parametrize(
    "layers, kwargs, message",
    [
        (_variant(peepholes=True), {}, r"params: PyTorch has no LSTM with \['p_i'\]"),
        (_variant(layer_norm=True), {}, r"params: PyTorch has no LSTM with \['gamma_z'\]"),
        (_variant(proj_size=2, peepholes=True), {}, r"PyTorch has no LSTM with \['p_i'\]"),
        ((_params("rnn", 0),) * 2, {}, r"layers\[1\].w_ih: expected shape \(5, 5\)"),
        ((_params("lstm", 0), _params("lstm", 1, D, hidden=4)), {},
         r"layers\[1\].w_ih: expected shape \(20, 5\) \(one hidden size 5"),
        ((_params("lstm", 0, proj_size=2), _params("lstm", 1, 2)), {}, r"layers\[1\].w_hr: expected a projection"),
        ((_params("gru", 0), _params("rnn", 1, D)), {}, r"one cell kind in every layer"),
        ((_params("gru", 0)._replace(b_hn=jnp.zeros(D, jnp.float16)),), {}, r"layers\[0\].b_hn: expected dtype float32"),
        ((), {}, r"layers: expected a non-empty tuple"),
        ((_params("lstm", 0),), dict(bias=False),
         r"layers\[0\].b: expected zeros with bias=False \(PyTorch would have no bias_ih_l0\)"),
        (_random_layers("gru", 0, num_layers=1), dict(bias=False),
         r"layers\[0\].forward.b_hn: expected zeros with bias=False \(PyTorch would have no bias_hh_l0\)"),
    ],
)  # fmt: skip
def test_what_pytorch_cannot_hold_is_a_value_error_naming_it(layers, kwargs, message):
    if "b_hn: expected zeros" in message:  # a GRU whose b is zero but b_hn is not
        layers = (Bidirectional(layers[0].forward._replace(b=jnp.zeros(3 * D), b_hn=jnp.ones(D)), layers[0].backward),)
    with pytest.raises(ValueError, match=message):
        to_torch(layers, **kwargs)


def test_bias_false_writes_no_bias_and_the_module_s_options_are_checked():
    layers = (_params("rnn", 0)._replace(b=jnp.zeros(D)),)
    assert list(to_torch(layers, bias=False)) == ["weight_ih_l0", "weight_hh_l0"]
    module = to_torch_module(layers, nonlinearity="relu", bias=False, batch_first=False)
    assert (module.nonlinearity, module.bias, module.batch_first) == ("relu", False, False)
    with pytest.raises(ValueError, match=r"nonlinearity: expected one of \('tanh', 'relu'\) \(PyTorch's nn.RNN has no"):
        to_torch_module(layers, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"nonlinearity: expected 'tanh' for an nn.LSTM"):
        to_torch_module(_variant(), nonlinearity="relu")


def test_importing_the_converter_does_not_import_torch():
    code = "import sys, lstm_jax.interop.pytorch; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
