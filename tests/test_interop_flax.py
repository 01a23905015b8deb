"""lstm_jax.interop.flax_cells against the real flax: linen and nnx ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``,
``SimpleCell`` run by ``nn.RNN`` / ``nnx.RNN`` with ``seq_lengths``, against our ``unroll`` with ``lengths``
(outputs at the valid steps, final carries, input gradients, float32, 1e-5); a 2-layer bidirectional
linen model against ``unroll_layers``; round trips; every refusal.

Each parity test jits the flax function and ours once and runs each with both sets of parameters
(flax's random ones imported, ours exported), so a case compiles twice.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lstm_jax as lj
from lstm_jax.interop import flax_cells as fc
from lstm_jax.interop._common import stack
from lstm_jax.unroll import Bidirectional

nn = pytest.importorskip("flax.linen", reason="flax is a dependency of lstm_jax; without it nothing here runs")
nnx = pytest.importorskip("flax.nnx", reason="flax.nnx (flax >= 0.8) is needed for the nnx cells")

M, D, T, B = 3, 5, 7, 2
LENGTHS = np.array([T, 4], np.int32)
MASK = (np.arange(T)[None, :] < LENGTHS[:, None])[..., None].astype(np.float32)  # (B, T, 1)
TOL = dict(rtol=1e-6, atol=1e-5)  # atol on O(1) values; rtol for the relu cell, whose outputs reach ~17

#: (flax class name, constructor options): every cell, and the simple cell's other activations and residual.
CASES = [
    ("LSTMCell", {}),
    ("OptimizedLSTMCell", {}),
    ("GRUCell", {}),
    ("SimpleCell", {}),
    ("SimpleCell", {"activation_fn": "relu", "residual": True}),
]
CASE_IDS = ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell", "SimpleCell-relu-residual"]


def _options(options: dict) -> dict:
    return {k: getattr(jax.nn, v) if k == "activation_fn" else v for k, v in options.items()}


def _randomise(tree, seed: int):
    """Every leaf (an array or a ``jax.ShapeDtypeStruct``) replaced by N(0, 0.5²) of its shape and dtype: biases
    too, so each one is live. NumPy draws them: a jax.random call per shape would compile once per shape."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype), tree)


def _random_init(init, *args, seed: int):
    """Random variables of the structure ``init(*args)`` returns, without running it (flax's init runs the scan)."""
    return _randomise(jax.eval_shape(init, *args), seed)


def _our_random(kind: str, seed: int, *, zero_b_hn: bool = False):
    init = {"lstm": lj.init_lstm, "gru": lj.init_gru, "rnn": lj.init_rnn}[kind]
    params = _random_init(lambda key: init(key, M, D), jax.random.key(seed), seed=seed)
    if zero_b_hn:
        params = params._replace(b_hn=jnp.zeros_like(params.b_hn))
    return params


def _inputs(seed: int = 1):
    """``xs (B, T, M)``, and the loss's weights on the outputs ``(B, T, D)`` and on each carry leaf ``(B, D)``."""
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in ((B, T, M), (B, T, D), (B, D)))


def _loss_and_grad(run):
    """``(params, xs, wy, wc) -> (carry, masked ys, d loss / d xs)``, jitted; ``run(params, xs) -> (our carry, ys)``."""

    @jax.jit
    def go(params, xs, wy, wc):
        def loss(params, xs):
            carry, ys = run(params, xs)
            ys = ys * MASK
            terms = [jnp.sum(leaf * wc * (k + 1)) for k, leaf in enumerate(jax.tree.leaves(carry))]
            return jnp.sum(ys * wy) + sum(terms), (carry, ys)

        # d/d(params, xs): nnx refuses modules merged from outer tracers inside a transform of xs alone
        (_, grad), (carry, ys) = jax.grad(loss, argnums=(0, 1), has_aux=True)(params, xs)
        return carry, ys, grad

    return go


@functools.cache
def _ours(cell):
    """Our jitted run (one per cell, shared by the linen and nnx tests)."""
    return _loss_and_grad(lambda params, xs: lj.unroll(cell, params, xs, lengths=jnp.asarray(LENGTHS)))


def _linen_run(module):
    """A jitted run of ``nn.RNN(module)`` taking the cell's variables ``{"params": ...}``."""
    rnn = nn.RNN(module, return_carry=True)

    def run(variables, xs):
        carry, ys = rnn.apply({"params": {"cell": variables["params"]}}, xs, seq_lengths=jnp.asarray(LENGTHS))
        return fc.carry_from_flax(carry), ys

    return _loss_and_grad(run)


def _nnx_run(cell):
    """A jitted run of ``nnx.RNN(cell)`` taking the cell's state (so that another cell of the same structure reuses it)."""
    graphdef, _ = nnx.split(nnx.RNN(cell, return_carry=True, rngs=False))
    zeros = jnp.zeros((B, D))
    carry0 = (zeros, zeros) if isinstance(cell, (nnx.LSTMCell, nnx.OptimizedLSTMCell)) else zeros

    def run(state, xs):
        carry, ys = nnx.merge(graphdef, state)(xs, initial_carry=carry0, seq_lengths=jnp.asarray(LENGTHS))
        return fc.carry_from_flax(carry), ys

    go = _loss_and_grad(run)
    return lambda module, *args: go(nnx.state(nnx.RNN(module, return_carry=True, rngs=False)), *args)


def _assert_same_run(ours, theirs):
    for name, a, b in zip(("final carry", "outputs", "d loss/d xs"), ours, theirs):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **TOL, err_msg=name), a, b)
        assert all(float(jnp.abs(x).max()) > 0.05 for x in jax.tree.leaves(a)), name  # not vacuous


def _assert_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _assert_round_trip(a, b, residual: bool):
    """Bit-exact; with ``residual`` the diagonal of ``w_hh`` went through ``+ I`` and ``- I`` (one rounding)."""
    if not residual:
        return _assert_equal(a, b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=2.5e-7), a, b)


# linen ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_linen_cell_parity_both_ways(name, options):
    module = getattr(nn, name)(D, **_options(options))
    xs, wy, wc = _inputs()
    carry = module.initialize_carry(jax.random.key(0), (B, M))
    variables = _random_init(module.init, jax.random.key(0), carry, xs[:, 0], seed=2)
    theirs, ours = _linen_run(module), _ours(fc.flax_cell(module))
    # flax -> ours
    params = fc.from_flax(variables, cell=module)
    assert params.w_hh.dtype == jnp.float32
    _assert_same_run(ours(params, xs, wy, wc), theirs(variables, xs, wy, wc))
    # ours -> flax
    mine = _our_random(fc.FLAX_CELLS[name], 3)
    exported = fc.to_flax(mine, cell=module)
    assert jax.tree.map(jnp.shape, exported) == jax.tree.map(jnp.shape, variables)  # flax's own layout
    _assert_same_run(ours(mine, xs, wy, wc), theirs(exported, xs, wy, wc))
    # round trips, both ways, and through the nn.RNN wrapping
    residual = options.get("residual", False)
    _assert_round_trip(fc.from_flax(exported, cell=module), mine, residual)
    _assert_round_trip(fc.to_flax(params, cell=module), variables, residual)
    rnn_tree = fc.to_flax(mine, cell=module, wrap_rnn=True)
    _assert_equal(rnn_tree, {"params": {"cell": exported["params"]}})
    _assert_round_trip(fc.from_flax(rnn_tree, cell=module), mine, residual)
    _assert_round_trip(fc.from_flax(rnn_tree["params"], cell=module), mine, residual)
    _assert_round_trip(fc.from_flax(exported["params"], cell=module), mine, residual)


def test_lstm_cells_share_parameters_and_names_suffice():
    """linen ``LSTMCell`` and ``OptimizedLSTMCell`` have the same variables; a name or a class is as good as a module."""
    xs = jnp.ones((B, M))
    carry = nn.LSTMCell(D).initialize_carry(jax.random.key(0), (B, M))
    plain = _random_init(nn.LSTMCell(D).init, jax.random.key(0), carry, xs, seed=4)
    fused = jax.tree.map(jnp.shape, jax.eval_shape(nn.OptimizedLSTMCell(D).init, jax.random.key(0), carry, xs))
    assert jax.tree.map(jnp.shape, plain) == fused
    expected = fc.from_flax(plain, cell="LSTMCell")
    _assert_equal(fc.from_flax(plain, cell="OptimizedLSTMCell"), expected)
    _assert_equal(fc.from_flax(plain, cell=nn.OptimizedLSTMCell), expected)
    _assert_equal(fc.to_flax(expected), plain)  # the default cell of LSTM params
    assert fc.flax_cell("GRUCell") is lj.gru_cell() and fc.flax_cell(
        nn.SimpleCell(D, activation_fn=nn.relu)
    ) is lj.rnn_cell("relu")


def _bidirectional_encoder(cell_name: str, layers: int):
    class Encoder(nn.Module):
        """The module docstring's model: ``layers`` ``nn.Bidirectional`` layers, returning every layer's carry."""

        def setup(self):
            def rnn():
                return nn.RNN(getattr(nn, cell_name)(D))

            self.layers = [nn.Bidirectional(rnn(), rnn(), return_carry=True) for _ in range(layers)]

        def __call__(self, xs, seq_lengths):
            carries = []
            for layer in self.layers:
                carry, xs = layer(xs, seq_lengths=seq_lengths)
                carries.append(carry)
            return tuple(carries), xs

    return Encoder()


@pytest.mark.parametrize("name", ["OptimizedLSTMCell"])
def test_two_layer_bidirectional_linen_model_equals_unroll_layers(name):
    """The module docstring's recipe: each direction of each layer converted on its own, then ``stack``."""
    encoder = _bidirectional_encoder(name, 2)
    xs, _, wc = _inputs(5)
    wy = jnp.asarray(np.random.default_rng(6).standard_normal((B, T, 2 * D)), jnp.float32)
    variables = _random_init(encoder.init, jax.random.key(0), xs, jnp.asarray(LENGTHS), seed=7)
    p = variables["params"]
    assert set(p) == {"layers_0", "layers_1"} and set(p["layers_0"]) == {"forward_rnn", "backward_rnn"}
    layers = stack(
        [
            (
                fc.from_flax(p[f"layers_{k}"]["forward_rnn"], cell=name),
                fc.from_flax(p[f"layers_{k}"]["backward_rnn"], cell=name),
            )
            for k in range(2)
        ]
    )
    assert layers[1].forward.w_ih.shape == (fc.flax_cell(name).gates * D, 2 * D)

    def flax_run(variables, xs):
        carries, ys = encoder.apply(variables, xs, jnp.asarray(LENGTHS))
        return tuple(Bidirectional(*map(fc.carry_from_flax, c)) for c in carries), ys

    theirs = _loss_and_grad(flax_run)
    cell = fc.flax_cell(name)
    ours = _loss_and_grad(lambda layers, xs: lj.unroll_layers(cell, layers, xs, lengths=jnp.asarray(LENGTHS)))
    _assert_same_run(ours(layers, xs, wy, wc), theirs(variables, xs, wy, wc))
    # and back: our stack (random, biases too) as the flax model's variables
    init = lj.init_gru if name == "GRUCell" else lj.init_lstm
    mine = _random_init(lambda key: lj.init_layers(key, init, M, D, 2, bidirectional=True), jax.random.key(8), seed=9)
    exported = {
        "params": {
            f"layers_{k}": {
                "forward_rnn": fc.to_flax(layer.forward, cell=name, wrap_rnn=True)["params"],
                "backward_rnn": fc.to_flax(layer.backward, cell=name, wrap_rnn=True)["params"],
            }
            for k, layer in enumerate(mine)
        }
    }
    assert jax.tree.map(jnp.shape, exported) == jax.tree.map(jnp.shape, variables)
    _assert_same_run(ours(mine, xs, wy, wc), theirs(exported, xs, wy, wc))


def test_compact_models_name_their_cells_as_the_docstring_says():
    """Cells built in an ``@nn.compact`` method sit in it as ``<Cell>_k`` (forward, backward, layer by layer)."""

    class Compact(nn.Module):
        @nn.compact
        def __call__(self, xs):
            for k in range(2):
                xs = nn.Bidirectional(nn.RNN(nn.GRUCell(D)), nn.RNN(nn.GRUCell(D)), name=f"layer{k}")(xs)
            return xs

    shapes = jax.eval_shape(Compact().init, jax.random.key(0), jnp.ones((B, T, M)))["params"]
    assert sorted(shapes) == [f"GRUCell_{k}" for k in range(4)]
    assert [shapes[f"GRUCell_{k}"]["ir"]["kernel"].shape[0] for k in range(4)] == [M, M, 2 * D, 2 * D]
    params = fc.from_flax(_randomise(shapes["GRUCell_2"], 0), cell="GRUCell")  # as it is
    assert params.w_ih.shape == (3 * D, 2 * D)


# nnx -----------------------------------------------------------------------------------------


def _nnx_cell(name: str, options: dict, seed: int):
    """A random nnx cell, built abstract (its initialisers compile per shape) and filled with random parameters."""
    cell = nnx.eval_shape(lambda: getattr(nnx, name)(M, D, rngs=nnx.Rngs(0), **_options(options)))
    nnx.update(cell, _randomise(nnx.state(cell, nnx.Param), seed))
    return cell


@pytest.mark.parametrize("name, options", CASES, ids=CASE_IDS)
def test_nnx_cell_parity_both_ways(name, options):
    cell = _nnx_cell(name, options, 2)
    xs, wy, wc = _inputs()
    theirs, ours = _nnx_run(cell), _ours(fc.flax_cell(cell))
    # nnx -> ours
    params = fc.from_nnx(cell)
    _assert_same_run(ours(params, xs, wy, wc), theirs(cell, xs, wy, wc))
    # ours -> nnx (nnx's GRUCell has no b_hn: export one without)
    mine = _our_random(fc.FLAX_CELLS[name], 3, zero_b_hn=name == "GRUCell")
    exported = fc.to_nnx(mine, cell)
    assert exported is not cell
    _assert_same_run(ours(mine, xs, wy, wc), theirs(exported, xs, wy, wc))
    residual = options.get("residual", False)
    _assert_round_trip(fc.from_nnx(exported), mine, residual)
    _assert_round_trip(nnx.state(fc.to_nnx(params, cell), nnx.Param), nnx.state(cell, nnx.Param), residual)
    _assert_equal(fc.from_nnx(cell), params)  # the given module was not changed


def test_nnx_builds_a_new_cell_from_a_class_or_name():
    mine = _our_random("lstm", 4)
    for module in (None, "OptimizedLSTMCell", nnx.OptimizedLSTMCell):
        cell = fc.to_nnx(mine, module)
        assert type(cell) is nnx.OptimizedLSTMCell and (cell.in_features, cell.hidden_features) == (M, D)
        _assert_equal(fc.from_nnx(cell), mine)
    cell = fc.to_nnx(mine, "LSTMCell")
    assert type(cell) is nnx.LSTMCell and set(nnx.to_pure_dict(nnx.state(cell, nnx.Param))) >= {"if_", "hf"}
    _assert_equal(fc.from_nnx(cell), mine)
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda x: x.astype(jnp.float64), mine)
        cell = fc.to_nnx(wide, "OptimizedLSTMCell")
        assert nnx.to_pure_dict(nnx.state(cell, nnx.Param))["dense_h"]["kernel"].dtype == jnp.float64
        _assert_equal(fc.from_nnx(cell), wide)


# carries -------------------------------------------------------------------------------------


def test_carry_order():
    c, h = jnp.zeros((B, D)), jnp.ones((B, D))
    assert fc.carry_from_flax((c, h)) == lj.LSTMState(h=h, c=c)
    assert fc.carry_to_flax(lj.LSTMState(h=h, c=c)) == (c, h)
    assert fc.carry_from_flax(h) is h and fc.carry_to_flax(h) is h
    pair = Bidirectional(lj.LSTMState(h, c), h)
    assert fc.carry_to_flax(pair) == ((c, h), h)
    with pytest.raises(ValueError, match="LSTMState"):
        fc.carry_from_flax(lj.LSTMState(h, c))  # already ours: swapping it again would be wrong
    with pytest.raises(ValueError, match="sequence of 3"):
        fc.carry_from_flax((c, h, h))
    with pytest.raises(ValueError, match="tuple"):
        fc.carry_to_flax((c, h))  # a bare tuple: flax's or ours? refused


# errors --------------------------------------------------------------------------------------


def _lstm_variables(dtype=jnp.float32):
    module = nn.OptimizedLSTMCell(D)
    carry = module.initialize_carry(jax.random.key(0), (B, M))
    variables = _random_init(module.init, jax.random.key(0), carry, jnp.ones((B, M)), seed=0)
    return jax.tree.map(lambda x: x.astype(dtype), variables)


def _edit(variables, path: str, value=None, delete: bool = False):
    flat = fc._flatten(variables)
    if delete:
        del flat[path]
    else:
        flat[path] = value
    return fc._unflatten(flat)


@pytest.mark.parametrize(
    "edit, match",
    [
        (
            lambda v: _edit(v, "params/hf/bias", delete=True),
            r"params/hf/bias: expected it in the flax OptimizedLSTMCell",
        ),
        (lambda v: _edit(v, "params/hi/kernel", delete=True), r"params/hi/kernel: expected it in"),
        (
            lambda v: _edit(v, "params/ig/kernel", jnp.zeros((M, D + 1))),
            r"params/ig/kernel: expected shape \(3, 5\), got \(3, 6\)",
        ),
        (
            lambda v: _edit(v, "params/hi/kernel", jnp.zeros((D,))),
            r"params/hi/kernel: expected a kernel .* got shape \(5,\)",
        ),
        (
            lambda v: _edit(v, "params/ho/bias", jnp.zeros((D,), jnp.float16)),
            r"params/ho/bias: expected dtype float32 .* got float16",
        ),
        (
            lambda v: _edit(v, "params/hg/bias", jnp.zeros((D,), jnp.int32)),
            r"params/hg/bias: expected a floating dtype",
        ),
        (lambda v: _edit(v, "params/ii/bias", jnp.zeros((D,))), r"unused tensors \['params/ii/bias'\]"),
        (lambda v: {**v, "batch_stats": {}}, r"variables: expected only the 'params' collection"),
        (lambda v: {"params": {"cell": v["params"], "other": {}}}, r"params/cell: expected an nn.RNN's parameters"),
        (lambda v: [v], r"variables: expected the cell's variables"),
        (lambda v: {"params": 3}, r"variables\['params'\]: expected a dict"),
    ],
    ids=[
        "missing-bias",
        "missing-kernel",
        "shape",
        "rank",
        "dtype",
        "int",
        "unused",
        "collection",
        "rnn-extra",
        "type",
        "params-type",
    ],
)
def test_from_flax_refuses_by_name(edit, match):
    with pytest.raises(ValueError, match=match):
        fc.from_flax(edit(_lstm_variables()), cell="OptimizedLSTMCell")


def test_from_flax_reads_bfloat16_and_refuses_a_wrong_cell():
    variables = _lstm_variables(jnp.bfloat16)
    assert fc.from_flax(variables, cell="LSTMCell").w_ih.dtype == jnp.bfloat16
    with pytest.raises(ValueError, match=r"params/hr/kernel: expected it in"):  # LSTM variables read as a GRU
        fc.from_flax(variables, cell="GRUCell")
    with pytest.raises(ValueError, match=r"cell: expected one of \['LSTMCell'.*got 'MGUCell'"):
        fc.from_flax(variables, cell="MGUCell")
    with pytest.raises(ValueError, match=r"got the class MGUCell"):
        fc.from_flax(variables, cell=nn.MGUCell)

    class Mine(nn.OptimizedLSTMCell):
        pass

    with pytest.raises(ValueError, match=r"cell: expected a flax.linen cell"):  # a subclass may compute something else
        fc.from_flax(variables, cell=Mine(D))
    with pytest.raises(ValueError, match=r"params/ii/kernel: expected shape \(3, 4\), got \(3, 5\)"):
        fc.from_flax(variables, cell=nn.OptimizedLSTMCell(4))  # the module's features are checked


@pytest.mark.parametrize(
    "module, match",
    [
        (
            lambda: nn.GRUCell(D, activation_fn=nn.relu),
            r"cell.activation_fn: expected tanh \(lstm_jax's GRU has no other\), got relu",
        ),
        (lambda: nn.LSTMCell(D, gate_fn=nn.hard_sigmoid), r"cell.gate_fn: expected sigmoid .* got hard_sigmoid"),
        (
            lambda: nn.SimpleCell(D, activation_fn=nn.gelu),
            r"cell.activation_fn: expected tanh, sigmoid or relu .* got gelu",
        ),
        (lambda: _nnx_cell("GRUCell", {"activation_fn": "relu"}, 0), r"cell.activation_fn: expected tanh"),
    ],
    ids=["gru-activation", "lstm-gate", "simple-gelu", "nnx-gru-activation"],
)
def test_activations_we_cannot_run_are_refused(module, match):
    module = module()
    with pytest.raises(ValueError, match=match):
        fc.flax_cell(module)
    with pytest.raises(ValueError, match=match):
        if isinstance(module, nnx.Module):
            fc.from_nnx(module)
        else:
            fc.to_flax(_our_random(fc.FLAX_CELLS[type(module).__name__], 0), cell=module)


def test_to_flax_and_to_nnx_refuse_what_the_cell_cannot_hold():
    gru = _our_random("gru", 0)
    with pytest.raises(
        ValueError, match=r"params.b_hn: expected zeros: flax.nnx's GRUCell has no candidate recurrent bias"
    ):
        fc.to_nnx(gru, "GRUCell")
    with pytest.raises(ValueError, match=r"cell: expected a flax cell for GRU parameters, got OptimizedLSTMCell"):
        fc.to_flax(gru, cell="OptimizedLSTMCell")
    projected = _random_init(lambda key: lj.init_lstm(key, M, D, proj_size=2), jax.random.key(0), seed=0)
    with pytest.raises(ValueError, match=r"flax has no LSTM with \['w_hr'\]"):
        fc.to_flax(projected)
    with pytest.raises(ValueError, match=r"params.w_ih: expected shape"):
        fc.to_flax(gru._replace(w_ih=gru.w_ih[:, :2].T))
    with pytest.raises(ValueError, match=r"cell.features: expected D=5 of the params, got 4"):
        fc.to_flax(gru, cell=nn.GRUCell(4))
    lstm = _our_random("lstm", 0)
    with pytest.raises(ValueError, match=r"module: expected in_features=3, hidden_features=5 of the params, got 3, 4"):
        fc.to_nnx(lstm, nnx.eval_shape(lambda: nnx.OptimizedLSTMCell(M, 4, rngs=nnx.Rngs(0))))
    half = nnx.eval_shape(lambda: nnx.OptimizedLSTMCell(M, D, rngs=nnx.Rngs(0)))  # (the CPU has no bfloat16 QR)
    nnx.update(half, jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.bfloat16), nnx.state(half, nnx.Param)))
    with pytest.raises(ValueError, match=r"dense_\w/kernel: expected the module's bfloat16\(\d, 20\), got float32"):
        fc.to_nnx(lstm, half)
    with pytest.raises(ValueError, match=r"module: expected a flax.nnx cell instance"):
        fc.from_nnx(nnx.OptimizedLSTMCell)
    with pytest.raises(
        ValueError, match=r"module: expected a flax.nnx cell .* got a flax.linen.recurrent.OptimizedLSTMCell$"
    ):
        fc.from_nnx(nn.OptimizedLSTMCell(D))
    with pytest.raises(ValueError, match=r"cell: expected a flax.linen cell .* got a flax.nnx.nn.recurrent.GRUCell$"):
        fc.from_flax({}, cell=_nnx_cell("GRUCell", {}, 0))
