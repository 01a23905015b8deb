"""lstm_jax.modules: the linen and nnx LSTM / GRU / SimpleRNN against flax's nn.RNN / nnx.RNN (converted weights,
every flax tensor randomised), against unroll_layers (stacks, bidirectional), dropout, errors, the example."""

import _util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import load_experiment
from flax import nnx

import lstm_jax as lj
from lstm_jax.modules import linen as ljnn
from lstm_jax.modules import nnx as ljnnx

M, D, T = 3, 5, 7
LENGTHS = jnp.array([7, 4, 1])  # B = 3: a full, a padded and a one-step sequence
FLAX_CELLS = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "rnn": nn.SimpleCell}
OURS = {"lstm": ljnn.LSTM, "gru": ljnn.GRU, "rnn": ljnn.SimpleRNN}
NNX_CELLS = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell, "rnn": nnx.SimpleCell}
NNX_OURS = {"lstm": ljnnx.LSTM, "gru": ljnnx.GRU, "rnn": ljnnx.SimpleRNN}
CELLS = {"lstm": lj.lstm_cell(), "gru": lj.gru_cell(), "rnn": lj.rnn_cell()}
INITS = {"lstm": lj.init_lstm, "gru": lj.init_gru, "rnn": lj.init_rnn}


def randomised(tree, seed: int):
    """Every leaf (arrays or shapes) replaced by normal draws, biases too (flax initialises them at zero); drawn
    by NumPy, so that no JAX program is compiled per shape."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(0.5 * rng.standard_normal(x.shape), x.dtype), tree)


def random_layers(init, *args, seed: int, **options):
    """init_layers' structure with random values everywhere (no orthogonal draws to compile)."""
    return randomised(jax.eval_shape(lambda: lj.init_layers(jax.random.key(0), init, *args, **options)), seed)


def inputs(seed: int = 1, batch: int = 3):
    return jax.random.normal(jax.random.key(seed), (batch, T, M))


def valid(lengths, like):
    """``like`` where the step is valid, 0 elsewhere (flax does not zero its padded outputs; we do)."""
    mask = jnp.arange(like.shape[-2])[None, :] < lengths[:, None]
    return jnp.where(mask[..., None], like, jnp.zeros_like(like))


def assert_trees_close(actual, expected):
    """float32 parity: 1e-5 absolute on values O(1)."""
    _util.assert_trees_close(actual, expected, rtol=0, atol=1e-5)


def flax_rnn(kind: str, seed: int = 0, **options):
    rnn = nn.RNN(FLAX_CELLS[kind](D), **options)
    return rnn, randomised(jax.eval_shape(rnn.init, jax.random.key(0), inputs()), seed)


# ----------------------------------------------------------------------------------------------
# linen against nn.RNN


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_linen_equals_flax_rnn(kind):
    """Outputs (valid steps) and carries of nn.RNN(cell) with the options of its call, to 1e-5 in float32."""
    rnn, variables = flax_rnn(kind)
    ours = OURS[kind](D)
    our_vars = ljnn.from_flax(variables, cell=FLAX_CELLS[kind].__name__)
    xs = inputs()
    carry0 = randomised(jax.eval_shape(lambda: rnn.apply(variables, xs, return_carry=True)[0]), 2)
    # every option on the LSTM (whose carry is a pair); the plumbing is the cells' own, so the GRU and the
    # simple cell get one case with all of it
    cases = [dict(seq_lengths=LENGTHS, reverse=True, initial_carry=carry0)]  # outputs in computed order
    if kind == "lstm":
        cases += [dict(), dict(seq_lengths=LENGTHS, initial_carry=carry0), dict(reverse=True, keep_order=True)]
    for case in cases:
        theirs_carry, theirs = rnn.apply(variables, xs, return_carry=True, **case)
        our_carry, y = ours.apply(our_vars, xs, return_carry=True, **case)
        lengths = case.get("seq_lengths", jnp.full((3,), T))
        assert_trees_close(valid(lengths, y), valid(lengths, theirs))
        assert_trees_close(our_carry, theirs_carry)  # flax's carry order: (c, h) for the LSTM
        np.testing.assert_array_equal(y, valid(lengths, y))  # our padded outputs are zeros


def test_linen_time_major_and_jit():
    """time_major (reversed: the outputs flipped back within the lengths along axis 0) and a traced seq_lengths
    under jit, the attributes as defaults of the call."""
    rnn, variables = flax_rnn("lstm", time_major=True, return_carry=True, reverse=True)
    ours = ljnn.LSTM(D, time_major=True, return_carry=True, reverse=True)
    our_vars = ljnn.from_flax(variables, cell="OptimizedLSTMCell")
    xs = jnp.moveaxis(inputs(), 0, 1)  # (T, B, M)
    (c, h), y = jax.jit(ours.apply)(our_vars, xs, seq_lengths=LENGTHS)
    (c2, h2), y2 = rnn.apply(variables, xs, seq_lengths=LENGTHS)
    assert_trees_close((c, h), (c2, h2))
    assert_trees_close(valid(LENGTHS, jnp.moveaxis(y, 0, 1)), valid(LENGTHS, jnp.moveaxis(y2, 0, 1)))


def test_linen_gradients_equal_flax():
    """The fast path's custom_vjp: input and parameter gradients of a loss on the valid outputs equal flax's."""
    rnn, variables = flax_rnn("lstm")
    ours = ljnn.LSTM(D)
    xs = inputs()

    def loss(apply, v, x):
        return jnp.sum(valid(LENGTHS, apply(v, x, seq_lengths=LENGTHS)) ** 2)

    dv, dx = jax.grad(loss, argnums=(1, 2))(rnn.apply, variables, xs)
    our_dv, our_dx = jax.grad(loss, argnums=(1, 2))(ours.apply, ljnn.from_flax(variables, cell="OptimizedLSTMCell"), xs)
    assert_trees_close(our_dx, dx)
    assert_trees_close(our_dv, ljnn.from_flax(dv, cell="OptimizedLSTMCell"))  # the map is linear: gradients map alike


def test_linen_bidirectional_stack_equals_flax():
    """Two bidirectional GRU layers against two nn.Bidirectional(nn.RNN(GRUCell)), outputs and carries."""

    class Flax(nn.Module):
        @nn.compact
        def __call__(self, xs, seq_lengths, initial_carry=None):
            carries = []
            for k in range(2):
                # cells made here with parent=None: else the parent adopts them (params GRUCell_0, ... at its top)
                rnn = lambda: nn.RNN(nn.GRUCell(D, parent=None), parent=None)  # noqa: E731
                layer = nn.Bidirectional(rnn(), rnn(), name=f"layer{k}")
                carry0 = None if initial_carry is None else initial_carry[k]
                carry, xs = layer(xs, seq_lengths=seq_lengths, return_carry=True, initial_carry=carry0)
                carries.append(carry)
            return tuple(carries), xs

    xs = inputs()
    variables = randomised(jax.eval_shape(Flax().init, jax.random.key(0), xs, LENGTHS), 3)
    our_vars = ljnn.from_flax([variables["params"][f"layer{k}"] for k in range(2)], cell="GRUCell")
    ours = ljnn.GRU(D, num_layers=2, bidirectional=True)
    carry0 = randomised(jax.eval_shape(Flax().apply, variables, xs, LENGTHS)[0], 4)
    for carry in (None, carry0):
        theirs_carry, theirs = Flax().apply(variables, xs, LENGTHS, carry)
        our_carry, y = ours.apply(our_vars, xs, seq_lengths=LENGTHS, initial_carry=carry, return_carry=True)
        assert y.shape == (3, T, 2 * D)
        assert_trees_close(valid(LENGTHS, y), valid(LENGTHS, theirs))
        assert_trees_close(our_carry, theirs_carry)


@pytest.mark.parametrize("keep_order", [False, True])
def test_linen_reversed_stack_equals_flax(keep_order):
    """reverse on a stack: every layer backwards (flax: layers reversed with keep_order, the last as asked)."""

    class Flax(nn.Module):
        @nn.compact
        def __call__(self, xs, seq_lengths):
            cell = lambda: nn.OptimizedLSTMCell(D, parent=None)  # noqa: E731  (owned by its nn.RNN, not by this module)
            xs = nn.RNN(cell(), reverse=True, keep_order=True, name="l0")(xs, seq_lengths=seq_lengths)
            return nn.RNN(cell(), reverse=True, keep_order=keep_order, name="l1")(
                xs, seq_lengths=seq_lengths, return_carry=True
            )

    xs = inputs()
    variables = randomised(jax.eval_shape(Flax().init, jax.random.key(0), xs, LENGTHS), 5)
    our_vars = ljnn.from_flax([variables["params"]["l0"], variables["params"]["l1"]], cell="OptimizedLSTMCell")
    theirs_carry, theirs = Flax().apply(variables, xs, LENGTHS)
    our_carry, y = ljnn.LSTM(D, num_layers=2).apply(
        our_vars, xs, seq_lengths=LENGTHS, reverse=True, keep_order=keep_order, return_carry=True
    )
    assert_trees_close(valid(LENGTHS, y), valid(LENGTHS, theirs))
    assert_trees_close(our_carry[1], theirs_carry)


def test_linen_equals_unroll_layers_with_projection():
    """A 2-layer bidirectional LSTM with a projection: the module is unroll_layers on the same parameters."""
    layers = random_layers(lj.init_lstm, M, D, 2, bidirectional=True, proj_size=2, seed=2)
    variables = ljnn.from_layers(layers)
    module = ljnn.LSTM(D, num_layers=2, bidirectional=True, proj_size=2)
    assert jax.tree.structure(jax.eval_shape(module.init, jax.random.key(0), inputs())) == jax.tree.structure(variables)
    carry, ys = module.apply(variables, inputs(), seq_lengths=LENGTHS, return_carry=True)
    ref_carries, ref = lj.unroll_layers(lj.lstm_cell(proj_size=2), layers, inputs(), lengths=LENGTHS)
    assert ys.shape == (3, T, 4)
    np.testing.assert_array_equal(ys, ref)
    (c0, h0), _ = carry[1]  # layer 1, forward: flax's order
    np.testing.assert_array_equal(c0, ref_carries[1].forward.c)
    np.testing.assert_array_equal(h0, ref_carries[1].forward.h)


def test_linen_init_draws_our_layout():
    """init gives our layout (forget bias 1, zero biases elsewhere) for every cell, float32 and bfloat16."""
    for kind, cls in OURS.items():
        layers = ljnn.to_layers(jax.eval_shape(cls(D, num_layers=2).init, jax.random.key(0), inputs()))
        assert len(layers) == 2 and layers[1].w_ih.shape[1] == D
        jax.eval_shape(lambda: lj.unroll_layers(CELLS[kind], layers, inputs()))  # the parameters are checked there
    p = ljnn.LSTM(D).init(jax.random.key(0), inputs())["params"]["layer_0"]
    np.testing.assert_array_equal(p["b"], jnp.repeat(jnp.array([0.0, 1.0, 0.0, 0.0]), D))
    half = ljnn.GRU(D, param_dtype=jnp.bfloat16)
    variables = jax.eval_shape(half.init, jax.random.key(0), inputs())
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.bfloat16)}
    y = jax.eval_shape(half.apply, variables, inputs())  # float32 inputs cast to the parameters'
    assert y.dtype == jnp.bfloat16


def test_linen_converters_round_trip():
    """flax -> ours -> flax and ours -> module variables -> ours are bit-exact."""
    for kind in FLAX_CELLS:
        _, variables = flax_rnn(kind, seed=7)
        back = ljnn.to_flax(ljnn.from_flax(variables, cell=FLAX_CELLS[kind].__name__), cell=FLAX_CELLS[kind].__name__)
        jax.tree.map(np.testing.assert_array_equal, back, variables)
    layers = random_layers(lj.init_gru, M, D, 2, bidirectional=True, seed=3)
    jax.tree.map(np.testing.assert_array_equal, ljnn.to_layers(ljnn.from_layers(layers)), layers)


# ----------------------------------------------------------------------------------------------
# dropout


def test_linen_dropout_deterministic_and_not():
    layers = random_layers(lj.init_lstm, M, D, 2, seed=2)
    variables = ljnn.from_layers(layers)
    plain = ljnn.LSTM(D, num_layers=2).apply(variables, inputs())
    noisy = ljnn.LSTM(D, num_layers=2, dropout=0.5, recurrent_dropout=0.3)
    np.testing.assert_array_equal(noisy.apply(variables, inputs(), deterministic=True), plain)

    def train(seed):
        return noisy.apply(variables, inputs(), deterministic=False, rngs={"dropout": jax.random.key(seed)})

    np.testing.assert_array_equal(train(0), train(0))  # the masks are the rng's
    assert not np.allclose(train(0), plain) and not np.allclose(train(0), train(1))
    attribute = ljnn.LSTM(D, num_layers=2, dropout=0.5, recurrent_dropout=0.3, deterministic=False)
    np.testing.assert_array_equal(attribute.apply(variables, inputs(), rngs={"dropout": jax.random.key(0)}), train(0))
    with pytest.raises(ValueError, match="deterministic"):
        noisy.apply(variables, inputs())


# ----------------------------------------------------------------------------------------------
# nnx


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_nnx_equals_flax_nnx_rnn(kind):
    """nnx.RNN(cell) converted by from_flax: outputs and carries (a relu SimpleCell: its activation is read)."""
    options = dict(activation_fn=jax.nn.relu) if kind == "rnn" else {}
    rnn = nnx.RNN(NNX_CELLS[kind](M, D, rngs=nnx.Rngs(0), **options))
    nnx.update(rnn, randomised(nnx.state(rnn, nnx.Param), 8))
    ours = NNX_OURS[kind].from_flax(rnn)
    xs = inputs()
    cases = [dict(seq_lengths=LENGTHS, reverse=True, keep_order=True)]
    if kind == "lstm":
        cases.append(dict(seq_lengths=LENGTHS, initial_carry=randomised(rnn(xs, return_carry=True)[0], 9)))
    for case in cases:
        theirs_carry, theirs = rnn(xs, return_carry=True, **case)
        our_carry, y = ours(xs, return_carry=True, **case)
        assert_trees_close(valid(LENGTHS, y), valid(LENGTHS, theirs))
        assert_trees_close(our_carry, theirs_carry)


def test_nnx_equals_linen_and_trains():
    """The nnx module holds the linen module's params under the same paths, gives the same outputs, trains under
    nnx.jit with nnx.Optimizer (every parameter moves), and eval() turns its dropout off."""
    import optax

    layers = random_layers(lj.init_gru, M, D, 1, bidirectional=True, seed=2)
    ours = ljnnx.GRU.from_layers(layers, input_dropout=0.5, rngs=nnx.Rngs(dropout=1))
    linen_vars = ljnn.from_layers(layers)
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(ours, nnx.Param)), linen_vars["params"])
    expected = ljnn.GRU(D, bidirectional=True).apply(linen_vars, inputs(), seq_lengths=LENGTHS)
    ours.eval()
    np.testing.assert_array_equal(ours(inputs(), seq_lengths=LENGTHS), expected)
    ours.train()
    assert not np.allclose(ours(inputs(), seq_lengths=LENGTHS), expected)
    optimizer = nnx.Optimizer(ours, optax.sgd(0.1), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xs):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(xs, seq_lengths=LENGTHS) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    step(ours, optimizer, inputs())
    for before, after in zip(jax.tree.leaves(layers), jax.tree.leaves(ours.to_layers())):
        assert not np.allclose(before, after)


# ----------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(features=0), "features"),
        (dict(features=2.0), "features"),
        (dict(features=D, impl="cudnn"), "impl"),
        (dict(features=D, num_layers=0), "num_layers"),
        (dict(features=D, dropout=0.5), "dropout"),  # one layer: nothing between layers
        (dict(features=D, recurrent_dropout=1.0), "recurrent_dropout"),
        (dict(features=D, remat="always"), "remat"),
        (dict(features=D, bidirectional="yes"), "bidirectional"),
    ],
)
def test_bad_attributes(options, match):
    with pytest.raises(ValueError, match=f"^{match}:"):
        ljnn.LSTM(**options)
    nnx_options = {("hidden_features" if k == "features" else k): v for k, v in options.items()}
    with pytest.raises(ValueError, match=f"^{match}:"):
        ljnnx.LSTM(M, rngs=nnx.Rngs(0), **nnx_options)


def test_bad_calls():
    module = ljnn.LSTM(D)
    variables = module.init(jax.random.key(0), inputs())
    with pytest.raises(ValueError, match="^inputs: expected at least 2 dimensions"):
        module.apply(variables, jnp.ones((M,)))
    with pytest.raises(ValueError, match="^inputs: expected a floating dtype"):
        module.apply(variables, jnp.ones((3, T, M), jnp.int32))
    with pytest.raises(ValueError, match="^seq_lengths: expected shape"):
        module.apply(variables, inputs(), seq_lengths=jnp.array([1, 2]))
    with pytest.raises(ValueError, match=r"^initial_carry: expected a pair \(c, h\)"):
        module.apply(variables, inputs(), initial_carry=jnp.zeros((3, D)))
    with pytest.raises(ValueError, match="^zoneout_c: expected 0 for the gru"):
        ljnn.GRU(D, zoneout_c=0.1)
    bidirectional = ljnn.GRU(D, bidirectional=True)
    with pytest.raises(ValueError, match="^reverse: expected False"):
        bidirectional.apply(bidirectional.init(jax.random.key(0), inputs()), inputs(), reverse=True)
    gru = random_layers(lj.init_gru, M, D, 1, seed=0)[0]
    with pytest.raises(ValueError, match=r"^layers\[1\]: expected every layer not Bidirectional"):
        ljnn.from_layers((gru, lj.Bidirectional(gru, gru)))
    with pytest.raises(ValueError, match="^variables: .*hi/kernel"):
        ljnn.from_flax({"params": {"cell": {}}}, cell="OptimizedLSTMCell")


# ----------------------------------------------------------------------------------------------
# the example


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_flax_example_learns(api):
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes Python floats with int32 counts
        losses = load_experiment("flax_example").main(
            ["--steps", "40", "--T", "10", "--batch", "16", "--api", api, "--quiet"]
        )
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
