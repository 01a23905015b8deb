"""Bad input: every public function raises a ``ValueError`` naming the expected and the actual value.

Each case changes one argument of a call that otherwise works (``test_good_call`` runs the
unchanged calls), and its ``match`` requires the message to name the argument, the expected value
and the actual one, in that order: ``"<name>: expected ...<expected>..., got ...<actual>"``.
Every case runs under ``jax.eval_shape``, so each error is raised while tracing (nothing is
compiled or run); ``test_raised_while_tracing`` also passes the bad arrays as abstract ``jax.jit``
arguments. Traced lengths cannot be range-checked; their documented clamping is pinned here.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _util import assert_trees_close

from lstm_jax import registry
from lstm_jax.article import lstm_from_article, lstm_to_article
from lstm_jax.bptt import autodiff_bptt, gru_bptt, lstm_bptt, model_loss, rnn_bptt
from lstm_jax.cells import (
    DenseParams,
    GRUParams,
    LSTMParams,
    LSTMState,
    RNNParams,
    dense,
    gru_cell,
    gru_step,
    head,
    lstm_cell,
    lstm_step,
    rnn_cell,
    rnn_step,
)
from lstm_jax.init import init_dense, init_gru, init_layers, init_lstm, init_rnn, initializer
from lstm_jax.losses import sequence_loss, step_loss, step_loss_grad, time_weights
from lstm_jax.unroll import Bidirectional, unroll, unroll_layers, valid_steps

B, T, M, D, N = 2, 5, 3, 4, 2
KEY = jax.random.key(0)
f32, bf16, i32 = jnp.float32, jnp.bfloat16, jnp.int32
_RNG = np.random.default_rng(0)


# Arrays are made in numpy and put on the device: jnp.ones etc. would compile once per shape,
# which would dominate the run time of this file.
def ones(shape, dtype=f32):
    return jnp.asarray(np.ones(shape, dtype))


def zeros(shape, dtype=f32):
    return jnp.asarray(np.zeros(shape, dtype))


def rand(*shape):
    return jnp.asarray(0.5 * _RNG.standard_normal(shape).astype(np.float32))


RP = RNNParams(w_ih=rand(D, M), w_hh=rand(D, D), b=rand(D))
LP = LSTMParams(w_ih=rand(4 * D, M), w_hh=rand(4 * D, D), b=rand(4 * D))
GP = GRUParams(w_ih=rand(3 * D, M), w_hh=rand(3 * D, D), b=rand(3 * D), b_hn=rand(D))
HD = DenseParams(w=rand(N, D), b=rand(N))
LAYERS = (LP, LSTMParams(w_ih=rand(4 * D, D), w_hh=rand(4 * D, D), b=rand(4 * D)))  # 2 stacked LSTM layers
BILAYERS = (Bidirectional(RP, RNNParams(w_ih=rand(D, M), w_hh=rand(D, D), b=rand(D))),)
W_ART, B_ART = lstm_to_article(LP)

X1 = ones((B, M))  # one step
XS = rand(B, T, M)  # a batch of sequences
H0 = zeros((B, D))
S0 = LSTMState(H0, H0)
HS = ones((B, T, D))
LOGITS = rand(B, T, N)
Y = jnp.asarray(np.full((B, T, N), 0.5, np.float32))
MASK = ones((B, T), bool)


# Each public function with arguments that work; a case overrides some of them.
GOOD = {
    "rnn_step": (rnn_step, dict(params=RP, h=H0, x=X1)),
    "lstm_step": (lstm_step, dict(params=LP, carry=S0, x=X1)),
    "gru_step": (gru_step, dict(params=GP, h=H0, x=X1)),
    "dense": (dense, dict(params=HD, h=HS)),
    "head": (head, dict(params=HD, h=HS, activation="softmax")),
    "rnn_cell": (rnn_cell, dict(activation="relu")),
    "unroll_rnn": (unroll, dict(cell=rnn_cell(), params=RP, xs=XS)),
    "unroll_lstm": (unroll, dict(cell=lstm_cell(), params=LP, xs=XS)),
    "unroll_gru": (unroll, dict(cell=gru_cell(), params=GP, xs=XS)),
    "unroll_gru_layers": (unroll_layers, dict(cell=gru_cell(), layers=(GP, GP._replace(w_ih=rand(3 * D, D))), xs=XS)),
    "unroll_layers": (unroll_layers, dict(cell=lstm_cell(), layers=LAYERS, xs=XS)),
    "unroll_bidir": (unroll_layers, dict(cell=rnn_cell(), layers=BILAYERS, xs=XS)),
    "valid_steps": (valid_steps, dict(lengths=jnp.array([T, 2]), num_steps=T)),
    "sequence_loss": (sequence_loss, dict(kind="mse", logits=LOGITS, targets=Y, mask=MASK)),
    "step_loss": (step_loss, dict(kind="softmax_cross_entropy", logits=LOGITS, targets=Y)),
    "step_loss_grad": (step_loss_grad, dict(kind="sigmoid_binary_cross_entropy", logits=LOGITS, targets=Y)),
    "time_weights": (time_weights, dict(mask=MASK, reduction="last")),
    "rnn_bptt": (rnn_bptt, dict(params=RP, head=HD, xs=XS, targets=Y, loss="mse")),
    "lstm_bptt": (lstm_bptt, dict(params=LP, head=HD, xs=XS, targets=Y, loss="softmax_cross_entropy")),
    "gru_bptt": (gru_bptt, dict(params=GP, head=HD, xs=XS, targets=Y, loss="mse", reduction="last")),
    "autodiff_rnn": (autodiff_bptt, dict(cell=rnn_cell(), params=RP, head=HD, xs=XS, targets=Y, loss="mse")),
    "autodiff_lstm": (autodiff_bptt, dict(cell=lstm_cell(), params=LP, head=HD, xs=XS, targets=Y, loss="mse")),
    "model_loss": (model_loss, dict(cell=lstm_cell(), params=LP, head=HD, xs=XS, targets=Y, loss="mse")),
    "lstm_to_article": (lstm_to_article, dict(params=LP)),
    "lstm_from_article": (lstm_from_article, dict(W=W_ART, b=B_ART)),
    "initializer": (initializer, dict(name="orthogonal")),
    "init_rnn": (init_rnn, dict(key=KEY, input_size=M, hidden_size=D)),
    "init_lstm": (init_lstm, dict(key=KEY, input_size=M, hidden_size=D)),
    "init_gru": (init_gru, dict(key=KEY, input_size=M, hidden_size=D)),
    "init_dense": (init_dense, dict(key=KEY, input_size=D, output_size=N)),
    "init_layers": (init_layers, dict(key=KEY, init_fn=init_lstm, input_size=M, hidden_size=D, num_layers=2)),
}


def call(fname, **overrides):
    fn, kwargs = GOOD[fname]
    return fn(**{**kwargs, **overrides})


def traced(fname, **overrides):
    """``call`` under ``jax.eval_shape``: traced, never compiled or run (closed-over arrays stay concrete)."""
    return jax.eval_shape(lambda: call(fname, **overrides))


def pattern(name: str, expected: str, got: str) -> str:
    """``name: expected …expected…, got …got…``: a message must name both values to match."""
    return rf"^{re.escape(name)}: expected .*{re.escape(expected)}.*, got .*{re.escape(got)}"


def shape_of(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def test_good_call():
    """The unchanged calls work and have the documented shapes, so each case below fails for its one change."""
    assert shape_of(traced("rnn_step")) == ((B, D), (B, D))
    assert shape_of(traced("lstm_step")) == (LSTMState((B, D), (B, D)), (B, D))
    assert shape_of(traced("gru_step")) == ((B, D), (B, D))
    assert shape_of(traced("dense")) == (B, T, N)
    assert shape_of(traced("head")) == (B, T, N)
    assert call("rnn_cell").name == "rnn"
    assert shape_of(traced("unroll_rnn")) == ((B, D), (B, T, D))
    assert shape_of(traced("unroll_lstm")) == (LSTMState((B, D), (B, D)), (B, T, D))
    assert shape_of(traced("unroll_gru")) == ((B, D), (B, T, D))
    assert shape_of(traced("unroll_gru_layers")) == (((B, D), (B, D)), (B, T, D))
    assert shape_of(traced("unroll_layers")) == ((LSTMState((B, D), (B, D)),) * 2, (B, T, D))
    assert shape_of(traced("unroll_bidir")) == ((Bidirectional((B, D), (B, D)),), (B, T, 2 * D))
    assert shape_of(traced("valid_steps")) == (B, T)
    assert shape_of(traced("sequence_loss")) == ()
    assert shape_of(traced("step_loss")) == (B, T)
    assert shape_of(traced("step_loss_grad")) == (B, T, N)
    assert shape_of(traced("time_weights")) == (B, T)
    for fname, params, carry in [
        ("rnn_bptt", RP, (B, D)),
        ("lstm_bptt", LP, LSTMState((B, D), (B, D))),
        ("autodiff_rnn", RP, (B, D)),
        ("autodiff_lstm", LP, LSTMState((B, D), (B, D))),
        ("gru_bptt", GP, (B, D)),
    ]:
        loss, grads = traced(fname)
        assert shape_of(loss) == ()
        assert shape_of(grads) == (shape_of(params), shape_of(HD), carry), fname
    assert shape_of(traced("model_loss")) == ()
    assert shape_of(traced("lstm_to_article")) == ((4 * D, D + M), (4 * D,))
    assert shape_of(traced("lstm_from_article")) == shape_of(LP)
    assert jax.eval_shape(lambda: call("initializer")(KEY, (D, D), f32)).shape == (D, D)
    assert shape_of(traced("init_rnn")) == shape_of(RP)
    assert shape_of(traced("init_lstm")) == shape_of(LP)
    assert shape_of(traced("init_gru")) == shape_of(GP)
    assert shape_of(traced("init_dense")) == shape_of(HD)
    assert shape_of(traced("init_layers")) == shape_of(LAYERS)


# (function, overrides, name in the message, expected, actual)
CASES = [
    # ---- rnn_step ---------------------------------------------------------------------------
    ("rnn_step", dict(x=ones((B, 5))), "inputs", "M=3", "(2, 5)"),
    ("rnn_step", dict(x=ones((B, M), i32)), "inputs", "floating dtype", "int32"),
    ("rnn_step", dict(x=ones((B, M), bf16)), "inputs", "float32", "bfloat16"),
    ("rnn_step", dict(x=jnp.float32(1.0)), "inputs", "at least 1 dimensions", "()"),
    ("rnn_step", dict(h=zeros((3, D))), "carry", "(2, 4)", "(3, 4)"),
    ("rnn_step", dict(h=zeros((B, 5))), "carry", "(2, 4)", "(2, 5)"),
    ("rnn_step", dict(h=zeros((D,))), "carry", "(2, 4)", "(4,)"),  # no broadcasting over the batch
    ("rnn_step", dict(h=zeros((B, D), bf16)), "carry", "float32", "bfloat16"),
    ("rnn_step", dict(h=S0), "carry", "PyTreeDef(*)", "LSTMState"),  # an LSTM carry into the RNN
    ("rnn_step", dict(h=[H0]), "carry", "PyTreeDef(*)", "PyTreeDef([*])"),
    ("rnn_step", dict(params=LP), "params.w_hh", "(4, 4)", "(16, 4)"),  # LSTM params into the RNN
    ("rnn_step", dict(params=tuple(RP)), "rnn params", "NamedTuple with fields (w_ih, w_hh, b)", "tuple"),
    ("rnn_step", dict(params=RP._replace(b=zeros((5,)))), "params.b", "(4,)", "(5,)"),
    ("rnn_step", dict(params=RP._replace(w_ih=zeros((5, M)))), "params.w_ih", "(4, 3)", "(5, 3)"),
    ("rnn_step", dict(params=RP._replace(w_hh=zeros((D, 5)))), "params.w_hh", "(5, 5)", "(4, 5)"),
    ("rnn_step", dict(params=RP._replace(w_hh=zeros((D,)))), "params.w_hh", "at least 2 dimensions", "(4,)"),
    ("rnn_step", dict(params=RP._replace(w_ih=ones((D, M), i32))), "params.w_ih", "floating", "int32"),
    ("rnn_step", dict(params=RP._replace(b=zeros((D,), bf16))), "params.b", "float32", "bfloat16"),
    ("rnn_step", dict(activation="softsign"), "activation", "'tanh'", "'softsign'"),
    ("rnn_cell", dict(activation="softsign"), "activation", "'relu'", "'softsign'"),
    ("rnn_cell", dict(activation=["tanh"]), "activation", "'relu'", "['tanh']"),  # unhashable: no TypeError
    ("rnn_cell", dict(activation=None), "activation", "'tanh'", "None"),
    # ---- lstm_step --------------------------------------------------------------------------
    ("lstm_step", dict(x=ones((B, 5))), "inputs", "M=3", "(2, 5)"),
    ("lstm_step", dict(x=ones((B, M), i32)), "inputs", "floating dtype", "int32"),
    ("lstm_step", dict(params=RP), "params.w_hh", "(16, 4)", "(4, 4)"),  # RNN params into the LSTM
    ("lstm_step", dict(params=LP._replace(b=zeros((4 * D + 1,)))), "params.b", "(16,)", "(17,)"),
    ("lstm_step", dict(params=LP._replace(w_ih=zeros((D, M)))), "params.w_ih", "(16, 3)", "(4, 3)"),
    ("lstm_step", dict(carry=H0), "carry", "LSTMState", "PyTreeDef(*)"),  # an RNN carry into the LSTM
    ("lstm_step", dict(carry=(H0, H0)), "carry", "LSTMState", "PyTreeDef((*, *))"),
    ("lstm_step", dict(carry=LSTMState(H0, zeros((3, D)))), "carry", "(2, 4)", "(3, 4)"),
    ("lstm_step", dict(carry=LSTMState(zeros((B, 5)), H0)), "carry", "(2, 4)", "(2, 5)"),
    ("lstm_step", dict(carry=LSTMState(H0, zeros((B, D), bf16))), "carry", "float32", "bfloat16"),
    ("lstm_step", dict(params=GP), "params.w_hh", "(16, 4)", "(12, 4)"),  # GRU params into the LSTM
    # ---- gru_step ---------------------------------------------------------------------------
    ("gru_step", dict(params=GP._replace(b_hn=zeros((5,)))), "params.b_hn", "(4,)", "(5,)"),
    ("gru_step", dict(params=GP._replace(b_hn=zeros((3 * D,)))), "params.b_hn", "(4,)", "(12,)"),  # b's length
    ("gru_step", dict(params=GP._replace(b_hn=zeros((1, D)))), "params.b_hn", "(4,)", "(1, 4)"),  # no broadcasting
    ("gru_step", dict(params=GP._replace(b_hn=ones((D,), i32))), "params.b_hn", "floating dtype", "int32"),
    ("gru_step", dict(params=GP._replace(b_hn=zeros((D,), bf16))), "params.b_hn", "float32", "bfloat16"),
    ("gru_step", dict(params=GP._replace(b=zeros((4 * D,)))), "params.b", "(12,)", "(16,)"),
    ("gru_step", dict(params=LP), "params.w_hh", "(12, 4)", "(16, 4)"),  # LSTM params into the GRU
    ("gru_step", dict(params=RP), "params.w_hh", "(12, 4)", "(4, 4)"),  # RNN params into the GRU
    # LSTMParams with the GRU's shapes: the missing field is named
    (
        "gru_step",
        dict(params=LSTMParams(GP.w_ih, GP.w_hh, GP.b)),
        "gru params",
        "fields (w_ih, w_hh, b, b_hn)",
        "LSTMParams('w_ih', 'w_hh', 'b')",
    ),
    ("gru_step", dict(h=S0), "carry", "PyTreeDef(*)", "LSTMState"),  # an LSTM carry into the GRU
    ("gru_step", dict(h=zeros((B, 5))), "carry", "(2, 4)", "(2, 5)"),
    ("gru_step", dict(x=ones((B, 5))), "inputs", "M=3", "(2, 5)"),
    # ---- dense / head -----------------------------------------------------------------------
    ("dense", dict(h=ones((B, T, 5))), "inputs", "D=4", "(2, 5, 5)"),
    ("dense", dict(h=jnp.float32(1.0)), "inputs", "D=4", "()"),
    ("dense", dict(h=ones((B, T, D), i32)), "inputs", "floating", "int32"),
    ("dense", dict(h=ones((B, T, D), bf16)), "inputs", "float32", "bfloat16"),
    ("dense", dict(params=DenseParams(HD.w, zeros((3,)))), "params.b", "(2,)", "(3,)"),
    ("dense", dict(params=DenseParams(HD.w, zeros((N,), bf16))), "params.b", "float32", "bfloat16"),
    ("dense", dict(params=DenseParams(zeros((D,)), None)), "params.w", "2 dimensions (N, D)", "(4,)"),
    ("dense", dict(params=DenseParams(zeros((2, N, D)), None)), "params.w", "2 dimensions (N, D)", "(2, 2, 4)"),
    ("dense", dict(params=DenseParams(ones((N, D), i32), None)), "params.w", "floating", "int32"),
    ("head", dict(activation="tanh"), "activation", "'softmax'", "'tanh'"),
    ("head", dict(activation={"softmax"}), "activation", "'softmax'", "{'softmax'}"),
    ("head", dict(h=ones((B, T, 5))), "inputs", "D=4", "(2, 5, 5)"),
    # ---- unroll -----------------------------------------------------------------------------
    ("unroll_rnn", dict(xs=ones((M,))), "inputs", "at least 2 dimensions (*batch, T, M)", "(3,)"),
    ("unroll_rnn", dict(xs=ones((M,)), time_major=True), "inputs", "(T, *batch, M)", "(3,)"),
    ("unroll_rnn", dict(xs=ones((B, T, 5))), "inputs", "M=3", "(2, 5, 5)"),
    ("unroll_rnn", dict(xs=ones((B, T, M), i32)), "inputs", "floating dtype", "int32"),
    ("unroll_rnn", dict(xs=ones((B, T, M), bool)), "inputs", "floating dtype", "bool"),
    ("unroll_rnn", dict(carry0=zeros((3, D))), "carry", "(2, 4)", "(3, 4)"),
    ("unroll_rnn", dict(carry0=zeros((D,))), "carry", "(2, 4)", "(4,)"),
    ("unroll_rnn", dict(carry0=zeros((B, D), bf16)), "carry", "float32", "bfloat16"),
    ("unroll_rnn", dict(carry0=S0), "carry", "PyTreeDef(*)", "LSTMState"),
    ("unroll_rnn", dict(params=LP), "params.w_hh", "(4, 4)", "(16, 4)"),
    # time-major: the batch is axis 1, so a carry with T rows is wrong
    ("unroll_rnn", dict(xs=ones((T, B, M)), time_major=True, carry0=zeros((T, D))), "carry", "(2, 4)", "(5, 4)"),
    ("unroll_rnn", dict(lengths=jnp.array([2.0, 3.0])), "lengths", "integer dtype", "float32"),
    ("unroll_rnn", dict(lengths=[T, 2]), "lengths", "an array", "list"),
    ("unroll_rnn", dict(cell="lstm"), "cell", "a Cell", "str"),
    ("unroll_rnn", dict(cell=rnn_step), "carry0", "an initial carry for the plain step function rnn_step", "None"),
    ("unroll_rnn", dict(lengths=jnp.array([True, False])), "lengths", "integer dtype", "bool"),
    ("unroll_rnn", dict(lengths=jnp.array([1, 2, 3])), "lengths", "(2,)", "(3,)"),
    ("unroll_rnn", dict(lengths=jnp.array(3)), "lengths", "(2,)", "()"),  # no broadcasting
    ("unroll_rnn", dict(lengths=jnp.array([[1, 2]])), "lengths", "(2,)", "(1, 2)"),
    ("unroll_rnn", dict(lengths=jnp.array([T + 1, 2])), "lengths", "[0, T=5]", "max 6"),
    ("unroll_rnn", dict(lengths=jnp.array([-1, 2])), "lengths", "[0, T=5]", "min -1"),
    ("unroll_rnn", dict(xs=ones((T, B, M)), time_major=True, lengths=jnp.arange(T)), "lengths", "(2,)", "(5,)"),
    # bools and ints of the options: a string or an int is not a bool (time_major="no" was True)
    ("unroll_rnn", dict(time_major="no"), "time_major", "a bool", "str ('no')"),
    ("unroll_rnn", dict(time_major=1), "time_major", "a bool", "int (1)"),
    ("unroll_rnn", dict(time_major=None), "time_major", "a bool", "None"),
    ("unroll_rnn", dict(reverse="yes"), "reverse", "a bool", "str ('yes')"),
    ("unroll_rnn", dict(reverse=0), "reverse", "a bool", "int (0)"),
    ("unroll_rnn", dict(unroll=2.0), "unroll", "an int >= 1", "2.0"),
    ("unroll_rnn", dict(unroll="2"), "unroll", "an int >= 1", "'2'"),
    ("unroll_rnn", dict(unroll=0), "unroll", "an int >= 1", "0"),
    ("unroll_rnn", dict(remat=2.0), "remat", "a chunk length >= 1", "2.0"),
    ("unroll_rnn", dict(truncate="3"), "truncate", "a chunk length >= 1", "'3'"),
    ("unroll_rnn", dict(impl=["fast"]), "impl", "'fast'", "['fast']"),
    ("unroll_lstm", dict(xs=ones((T,))), "inputs", "at least 2 dimensions", "(5,)"),
    ("unroll_lstm", dict(xs=ones((B, T, 5))), "inputs", "M=3", "(2, 5, 5)"),
    ("unroll_lstm", dict(xs=ones((B, T, M), i32)), "inputs", "floating dtype", "int32"),
    ("unroll_lstm", dict(carry0=H0), "carry", "LSTMState", "PyTreeDef(*)"),
    ("unroll_lstm", dict(carry0=LSTMState(zeros((3, D)), zeros((3, D)))), "carry", "(2, 4)", "(3, 4)"),
    ("unroll_lstm", dict(params=RP), "params.w_hh", "(16, 4)", "(4, 4)"),
    ("unroll_lstm", dict(lengths=jnp.array([0, T + 2])), "lengths", "[0, T=5]", "max 7"),
    ("unroll_gru", dict(params=GP._replace(b_hn=zeros((5,)))), "params.b_hn", "(4,)", "(5,)"),
    ("unroll_gru", dict(params=LP), "params.w_hh", "(12, 4)", "(16, 4)"),
    ("unroll_gru", dict(carry0=S0), "carry", "PyTreeDef(*)", "LSTMState"),
    ("unroll_gru", dict(compute_dtype="int8"), "compute_dtype", "floating dtype", "'int8'"),
    ("unroll_gru", dict(impl="pallas_interpret"), "impl", "'fast' or 'scan' for gru", "'pallas_interpret'"),
    (
        "unroll_gru_layers",
        dict(layers=(GP, GP._replace(w_ih=rand(3 * D, D), b_hn=zeros((5,))))),
        "layer 1: params.b_hn",
        "(4,)",
        "(5,)",
    ),
    # ---- unroll_layers ----------------------------------------------------------------------
    ("unroll_layers", dict(layers=()), "layers", "at least one layer", "empty sequence"),
    ("unroll_layers", dict(time_major="no"), "time_major", "a bool", "str ('no')"),
    ("unroll_layers", dict(unroll=1.5), "unroll", "an int >= 1", "1.5"),
    ("unroll_bidir", dict(time_major=0), "time_major", "a bool", "int (0)"),
    ("unroll_layers", dict(carry0=(None,)), "carry0", "one carry per layer (2)", "1"),
    ("unroll_layers", dict(carry0=(None, None, None)), "carry0", "(2)", "3"),
    ("unroll_layers", dict(xs=ones((M,))), "inputs", "at least 2 dimensions", "(3,)"),
    ("unroll_layers", dict(xs=ones((B, T, 5))), "inputs", "M=3", "(2, 5, 5)"),
    ("unroll_layers", dict(xs=ones((B, T, M), i32)), "inputs", "floating dtype", "int32"),
    ("unroll_layers", dict(layers=(LP, LP)), "layer 1: inputs", "M=3", "(5, 2, 4)"),  # reads D features, time-major
    ("unroll_layers", dict(layers=(RP,)), "params.w_hh", "(16, 4)", "(4, 4)"),
    ("unroll_layers", dict(carry0=(None, H0)), "layer 1: carry", "LSTMState", "PyTreeDef(*)"),
    ("unroll_layers", dict(carry0=(None, LSTMState(zeros((3, D)), H0))), "layer 1: carry", "(2, 4)", "(3, 4)"),
    ("unroll_layers", dict(lengths=jnp.array([T + 1, 1])), "lengths", "[0, T=5]", "max 6"),
    ("unroll_layers", dict(lengths=jnp.array([1.0, 1.0])), "lengths", "integer", "float32"),
    ("unroll_bidir", dict(carry0=(H0,)), "layer 0: carry0[0]", "Bidirectional(forward, backward)", "ArrayImpl"),
    ("unroll_bidir", dict(carry0=(Bidirectional(H0, zeros((3, D))),)), "layer 0: carry", "(2, 4)", "(3, 4)"),
    (
        "unroll_bidir",
        dict(layers=(Bidirectional(RP, RP._replace(w_ih=zeros((D, 5)))),)),
        "layer 0: inputs",
        "M=5",
        "(5, 2, 3)",
    ),
    # ---- valid_steps ------------------------------------------------------------------------
    ("valid_steps", dict(lengths=jnp.array([1.0, 2.0])), "lengths", "integer dtype", "float32"),
    ("valid_steps", dict(lengths=jnp.array([T + 1, 2])), "lengths", "[0, T=5]", "max 6"),
    ("valid_steps", dict(lengths=jnp.array([-3, 2])), "lengths", "[0, T=5]", "min -3"),
    ("valid_steps", dict(num_steps=5.0), "num_steps", "an int >= 0", "float (5.0)"),
    ("valid_steps", dict(num_steps=True), "num_steps", "an int >= 0", "bool (True)"),
    ("valid_steps", dict(num_steps=-1), "num_steps", "an int >= 0", "int (-1)"),
    # ---- losses -----------------------------------------------------------------------------
    ("sequence_loss", dict(kind="cross_entropy"), "loss", "'softmax_cross_entropy'", "'cross_entropy'"),
    ("sequence_loss", dict(reduction="max"), "reduction", "'mean'", "'max'"),
    ("sequence_loss", dict(targets=ones((B, T, 1))), "targets", "(2, 5, 2)", "(2, 5, 1)"),  # no broadcasting
    ("sequence_loss", dict(targets=ones((B, N))), "targets", "(2, 5, 2)", "(2, 2)"),  # (*batch, N) is for "last"
    ("sequence_loss", dict(targets=ones((B, N + 1)), reduction="last"), "targets", "(*batch, N)", "(2, 3)"),
    ("sequence_loss", dict(targets=ones((B, T, N), i32)), "targets", "floating dtype", "int32"),
    ("sequence_loss", dict(targets=ones((B, T, N), bf16)), "targets", "float32 (the logits' dtype)", "bfloat16"),
    ("sequence_loss", dict(logits=ones((B, T, N), i32)), "logits", "floating dtype", "int32"),
    ("sequence_loss", dict(logits=ones((N,)), targets=ones((N,))), "logits", "at least 2 dimensions", "(2,)"),
    ("sequence_loss", dict(mask=ones((B, T + 1), bool)), "mask", "(2, 5)", "(2, 6)"),
    ("sequence_loss", dict(mask=ones((T,), bool)), "mask", "(2, 5)", "(5,)"),  # no broadcasting
    ("sequence_loss", dict(mask=ones((B, T), f32)), "mask", "bool", "float32"),
    ("sequence_loss", dict(mask=ones((B, T), i32)), "mask", "bool", "int32"),
    ("step_loss", dict(kind="hinge"), "loss", "'mse'", "'hinge'"),
    ("step_loss", dict(targets=ones((B, T, 1))), "targets", "(2, 5, 2)", "(2, 5, 1)"),
    ("step_loss", dict(targets=ones((T, N))), "targets", "(2, 5, 2)", "(5, 2)"),
    ("step_loss", dict(targets=ones((B, T, N), i32)), "targets", "floating dtype", "int32"),
    ("step_loss", dict(targets=ones((B, T, N), bf16)), "targets", "float32", "bfloat16"),
    ("step_loss", dict(logits=ones((B, T, N), i32)), "logits", "floating dtype", "int32"),
    ("step_loss", dict(logits=jnp.float32(0.0), targets=jnp.float32(0.0)), "logits", "at least 1", "()"),
    ("step_loss_grad", dict(kind="hinge"), "loss", "'mse'", "'hinge'"),
    ("step_loss_grad", dict(targets=ones((B, T, 1))), "targets", "(2, 5, 2)", "(2, 5, 1)"),
    ("step_loss_grad", dict(targets=ones((B, T, N), i32)), "targets", "floating dtype", "int32"),
    ("time_weights", dict(reduction="max"), "reduction", "'last'", "'max'"),
    ("time_weights", dict(mask=ones((B, T), f32)), "mask", "bool", "float32"),
    ("time_weights", dict(mask=jnp.array(True)), "mask", "at least 1 dimensions", "()"),
    ("time_weights", dict(dtype=i32), "dtype", "floating dtype", "int32"),
    # ---- manual and autodiff BPTT, model_loss -----------------------------------------------
    ("rnn_bptt", dict(params=LP), "params.w_hh", "(4, 4)", "(16, 4)"),
    ("rnn_bptt", dict(xs=ones((M,))), "inputs", "at least 2 dimensions", "(3,)"),
    ("rnn_bptt", dict(xs=ones((B, T, 5))), "inputs", "M=3", "(2, 5, 5)"),
    ("rnn_bptt", dict(xs=ones((B, T, M), i32)), "inputs", "floating dtype", "int32"),
    ("rnn_bptt", dict(carry0=zeros((3, D))), "carry", "(2, 4)", "(3, 4)"),
    ("rnn_bptt", dict(carry0=S0), "carry", "PyTreeDef(*)", "LSTMState"),
    ("rnn_bptt", dict(head=init_dense(KEY, 5, N)), "inputs", "D=5", "(2, 5, 4)"),
    ("rnn_bptt", dict(targets=ones((B, T, 1))), "targets", "(2, 5, 2)", "(2, 5, 1)"),
    ("rnn_bptt", dict(targets=ones((B, T, N), i32)), "targets", "floating dtype", "int32"),
    ("rnn_bptt", dict(lengths=jnp.array([T + 1, 2])), "lengths", "[0, T=5]", "max 6"),
    ("rnn_bptt", dict(lengths=jnp.array([-1, 2])), "lengths", "[0, T=5]", "min -1"),
    ("rnn_bptt", dict(lengths=jnp.array([1.0, 2.0])), "lengths", "integer dtype", "float32"),
    ("rnn_bptt", dict(lengths=jnp.array([1, 2, 3])), "lengths", "(2,)", "(3,)"),
    ("rnn_bptt", dict(loss="nll"), "loss", "'mse'", "'nll'"),
    ("rnn_bptt", dict(reduction="max"), "reduction", "'sum_over_time'", "'max'"),
    ("rnn_bptt", dict(activation="softsign"), "activation", "'tanh'", "'softsign'"),
    ("lstm_bptt", dict(params=RP), "params.w_hh", "(16, 4)", "(4, 4)"),
    ("lstm_bptt", dict(xs=ones((B, T, 5))), "inputs", "M=3", "(2, 5, 5)"),
    ("lstm_bptt", dict(carry0=H0), "carry", "LSTMState", "PyTreeDef(*)"),
    ("lstm_bptt", dict(carry0=LSTMState(H0, zeros((3, D)))), "carry", "(2, 4)", "(3, 4)"),
    ("lstm_bptt", dict(targets=ones((B, N))), "targets", "(2, 5, 2)", "(2, 2)"),
    ("lstm_bptt", dict(targets=ones((B, T, N), i32)), "targets", "floating dtype", "int32"),
    ("lstm_bptt", dict(lengths=jnp.array([T + 1, 2])), "lengths", "[0, T=5]", "max 6"),
    ("lstm_bptt", dict(lengths=jnp.array([1.0, 2.0])), "lengths", "integer dtype", "float32"),
    ("lstm_bptt", dict(loss="nll"), "loss", "'mse'", "'nll'"),
    ("gru_bptt", dict(params=GP._replace(b_hn=zeros((5,)))), "params.b_hn", "(4,)", "(5,)"),
    ("gru_bptt", dict(params=LP), "params.w_hh", "(12, 4)", "(16, 4)"),
    ("gru_bptt", dict(carry0=S0), "carry", "PyTreeDef(*)", "LSTMState"),
    ("gru_bptt", dict(targets=ones((B, N + 1))), "targets", "(*batch, N)", "(2, 3)"),
    ("autodiff_rnn", dict(params=LP), "params.w_hh", "(4, 4)", "(16, 4)"),
    ("autodiff_rnn", dict(xs=ones((M,))), "inputs", "at least 2 dimensions", "(3,)"),
    ("autodiff_rnn", dict(xs=ones((B, T, M), i32)), "inputs", "floating dtype", "int32"),
    ("autodiff_rnn", dict(carry0=zeros((3, D))), "carry", "(2, 4)", "(3, 4)"),
    ("autodiff_rnn", dict(lengths=jnp.array([-1, 2])), "lengths", "[0, T=5]", "min -1"),
    ("autodiff_lstm", dict(params=RP), "params.w_hh", "(16, 4)", "(4, 4)"),
    ("autodiff_lstm", dict(xs=ones((B, T, 5))), "inputs", "M=3", "(2, 5, 5)"),
    ("autodiff_lstm", dict(carry0=H0), "carry", "LSTMState", "PyTreeDef(*)"),
    ("autodiff_lstm", dict(head=DenseParams(HD.w, zeros((3,)))), "params.b", "(2,)", "(3,)"),
    ("autodiff_lstm", dict(targets=ones((B, T, 1))), "targets", "(2, 5, 2)", "(2, 5, 1)"),
    ("autodiff_lstm", dict(targets=ones((B, T, N), i32)), "targets", "floating dtype", "int32"),
    ("autodiff_lstm", dict(lengths=jnp.array([T + 1, 2])), "lengths", "[0, T=5]", "max 6"),
    ("autodiff_lstm", dict(lengths=jnp.array([1.0, 2.0])), "lengths", "integer dtype", "float32"),
    ("autodiff_lstm", dict(loss="nll"), "loss", "'mse'", "'nll'"),
    ("autodiff_lstm", dict(reduction="max"), "reduction", "'sum_over_time'", "'max'"),
    ("model_loss", dict(params=RP), "params.w_hh", "(16, 4)", "(4, 4)"),
    ("model_loss", dict(xs=ones((B, T, 5))), "inputs", "M=3", "(2, 5, 5)"),
    ("model_loss", dict(carry0=H0), "carry", "LSTMState", "PyTreeDef(*)"),
    ("model_loss", dict(targets=ones((B, T, 1))), "targets", "(2, 5, 2)", "(2, 5, 1)"),
    ("model_loss", dict(lengths=jnp.array([T + 1, 2])), "lengths", "[0, T=5]", "max 6"),
    ("model_loss", dict(lengths=jnp.array([1.0, 2.0])), "lengths", "integer dtype", "float32"),
    ("model_loss", dict(loss="nll"), "loss", "'mse'", "'nll'"),
    # ---- article layout ---------------------------------------------------------------------
    ("lstm_to_article", dict(params=RP), "params.w_hh", "(16, 4)", "(4, 4)"),
    ("lstm_to_article", dict(params=LP._replace(b=zeros((D,)))), "params.b", "(16,)", "(4,)"),
    ("lstm_to_article", dict(params=LP._replace(w_ih=ones((4 * D, M), i32))), "params.w_ih", "floating", "int32"),
    ("lstm_from_article", dict(W=zeros((15, 7))), "W", "(4D, D+M)", "(15, 7)"),
    ("lstm_from_article", dict(W=zeros((16, 4))), "W", "M >= 1", "(16, 4)"),  # no input columns
    ("lstm_from_article", dict(W=zeros((16,))), "W", "at least 2 dimensions", "(16,)"),
    ("lstm_from_article", dict(W=ones((16, 7), i32)), "W", "floating dtype", "int32"),
    ("lstm_from_article", dict(b=zeros((15,))), "b", "(16,)", "(15,)"),
    ("lstm_from_article", dict(b=zeros((16,), i32)), "b", "float32", "int32"),
    ("lstm_from_article", dict(b=zeros((16,), bf16)), "b", "float32", "bfloat16"),
    # ---- initialisers -----------------------------------------------------------------------
    ("initializer", dict(name="glorot"), "initializer", "'orthogonal'", "'glorot'"),
    ("init_rnn", dict(input_size=0), "input_size", "an int >= 1", "int (0)"),
    ("init_rnn", dict(hidden_size=0), "hidden_size", "an int >= 1", "int (0)"),
    ("init_rnn", dict(hidden_size=8.5), "hidden_size", "an int >= 1", "float (8.5)"),
    ("init_rnn", dict(hidden_size="8"), "hidden_size", "an int >= 1", "str ('8')"),
    ("init_rnn", dict(hidden_size=True), "hidden_size", "an int >= 1", "bool (True)"),
    ("init_rnn", dict(input_size=np.float32(3)), "input_size", "an int >= 1", "float32 ("),
    ("init_rnn", dict(input_size=jnp.int32(3)), "input_size", "an int >= 1", "Array"),  # not a static size
    ("init_rnn", dict(key=0), "key", "jax.random.key(seed) or jax.random.PRNGKey(seed)", "int (0)"),
    ("init_rnn", dict(key=None), "key", "jax.random.key(seed)", "None"),
    ("init_rnn", dict(key=zeros((2,))), "key", "PRNGKey", "of dtype float32 and shape (2,)"),
    ("init_rnn", dict(key=jnp.zeros((3,), jnp.uint32)), "key", "PRNGKey", "of dtype uint32 and shape (3,)"),
    ("init_rnn", dict(key=jax.random.split(KEY, 2)), "key", "one PRNG key", "shape (2,)"),  # a batch of keys
    ("init_rnn", dict(recurrent_init="identity"), "initializer", "'orthogonal'", "'identity'"),
    ("init_rnn", dict(dtype=i32), "dtype", "floating dtype", "int32"),
    ("init_lstm", dict(hidden_size=-1), "hidden_size", "an int >= 1", "int (-1)"),
    ("init_lstm", dict(hidden_size="8"), "hidden_size", "an int >= 1", "str ('8')"),
    ("init_lstm", dict(key=0), "key", "jax.random.key(seed)", "int (0)"),
    ("init_lstm", dict(input_init="glorot"), "initializer", "'fan_in'", "'glorot'"),
    ("init_lstm", dict(dtype=i32), "dtype", "floating dtype", "int32"),
    ("init_gru", dict(hidden_size=0), "hidden_size", "an int >= 1", "int (0)"),
    ("init_gru", dict(key=0), "key", "jax.random.key(seed)", "int (0)"),
    ("init_gru", dict(recurrent_init="glorot"), "initializer", "'orthogonal'", "'glorot'"),
    ("init_gru", dict(dtype=i32), "dtype", "floating dtype", "int32"),
    ("init_dense", dict(output_size=0), "output_size", "an int >= 1", "int (0)"),
    ("init_dense", dict(input_size=4.0), "input_size", "an int >= 1", "float (4.0)"),
    ("init_dense", dict(use_bias="no"), "use_bias", "a bool", "str ('no')"),
    ("init_dense", dict(key=0), "key", "jax.random.key(seed)", "int (0)"),
    ("init_dense", dict(init="glorot"), "initializer", "'uniform'", "'glorot'"),
    ("init_dense", dict(dtype=i32), "dtype", "floating dtype", "int32"),
    ("init_layers", dict(num_layers=0), "num_layers", "an int >= 1", "int (0)"),
    ("init_layers", dict(num_layers=2.0), "num_layers", "an int >= 1", "float (2.0)"),
    ("init_layers", dict(num_layers=True), "num_layers", "an int >= 1", "bool (True)"),
    ("init_layers", dict(bidirectional="yes"), "bidirectional", "a bool", "str ('yes')"),
    ("init_layers", dict(bidirectional=1), "bidirectional", "a bool", "int (1)"),
    ("init_layers", dict(key=0), "key", "jax.random.key(seed)", "int (0)"),
    ("init_layers", dict(init_fn="lstm"), "init_fn", "init_lstm", "str ('lstm')"),
    ("init_layers", dict(recurrent_init="glorot"), "initializer", "'orthogonal'", "'glorot'"),
    ("init_layers", dict(hidden_size=0), "hidden_size", "an int >= 1", "int (0)"),
    ("init_layers", dict(hidden_size="8"), "hidden_size", "an int >= 1", "str ('8')"),
]


@pytest.mark.parametrize(
    "fname, overrides, name, expected, got", CASES, ids=[f"{c[0]}-{'-'.join(c[1])}-{c[2]}" for c in CASES]
)
def test_bad_input(fname, overrides, name, expected, got):
    with pytest.raises(ValueError, match=pattern(name, expected, got)):
        traced(fname, **overrides)


# ---- float64 data with float32 parameters: no silent promotion ------------------------------
# (function, argument, a thunk building its float64 value inside enable_x64, name[, expected, actual])
X64_CASES = [
    ("rnn_step", "x", lambda: ones((B, M), jnp.float64), "inputs"),
    ("rnn_step", "h", lambda: zeros((B, D), jnp.float64), "carry"),
    ("lstm_step", "x", lambda: ones((B, M), jnp.float64), "inputs"),
    ("lstm_step", "carry", lambda: LSTMState(H0, zeros((B, D), jnp.float64)), "carry"),
    ("lstm_step", "params", lambda: LP._replace(b=LP.b.astype(jnp.float64)), "params.b"),
    ("gru_step", "params", lambda: GP._replace(b_hn=GP.b_hn.astype(jnp.float64)), "params.b_hn"),
    ("unroll_gru", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    ("dense", "h", lambda: HS.astype(jnp.float64), "inputs"),
    ("unroll_rnn", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    ("unroll_lstm", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    ("unroll_lstm", "carry0", lambda: LSTMState(zeros((B, D), jnp.float64), H0), "carry"),
    ("unroll_layers", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    ("sequence_loss", "targets", lambda: Y.astype(jnp.float64), "targets"),
    ("step_loss", "targets", lambda: Y.astype(jnp.float64), "targets"),
    ("rnn_bptt", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    ("rnn_bptt", "targets", lambda: Y.astype(jnp.float64), "targets"),
    ("lstm_bptt", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    # a float64 head on float32 hidden states: the head's weights set the dtype here
    ("lstm_bptt", "head", lambda: jax.tree.map(lambda a: a.astype(jnp.float64), HD), "inputs", "float64", "float32"),
    ("autodiff_lstm", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    ("autodiff_rnn", "carry0", lambda: zeros((B, D), jnp.float64), "carry"),
    ("model_loss", "xs", lambda: XS.astype(jnp.float64), "inputs"),
    ("lstm_from_article", "b", lambda: B_ART.astype(jnp.float64), "b"),
]


@pytest.mark.parametrize(
    "fname, arg, make, name, expected, got",
    [(*c, "float32", "float64")[:6] for c in X64_CASES],
    ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in X64_CASES],
)
def test_float64_with_float32_params(fname, arg, make, name, expected, got):
    with jax.enable_x64(True):
        value = make()
        assert any(a.dtype == jnp.float64 for a in jax.tree.leaves(value))
        with pytest.raises(ValueError, match=pattern(name, expected, got)):
            traced(fname, **{arg: value})


# ---- errors come while tracing ---------------------------------------------------------------
# (function of arrays only, its bad arguments, name, expected, actual). Under jit the arguments
# are abstract, so the ValueError can only come from the shapes and dtypes, at trace time.
JIT_CASES = [
    ("rnn_step M", lambda p, h, x: rnn_step(p, h, x), (RP, H0, ones((B, 5))), "inputs", "M=3", "(2, 5)"),
    ("rnn_step lstm params", lambda p, h, x: rnn_step(p, h, x), (LP, H0, X1), "params.w_hh", "(4, 4)", "(16, 4)"),
    ("lstm_step rnn carry", lambda p, c, x: lstm_step(p, c, x), (LP, H0, X1), "carry", "LSTMState", "PyTreeDef(*)"),
    (
        "gru_step b_hn",
        lambda p, h, x: gru_step(p, h, x),
        (GP._replace(b_hn=zeros((5,))), H0, X1),
        "params.b_hn",
        "(4,)",
        "(5,)",
    ),
    ("dense D", lambda p, h: dense(p, h), (HD, ones((B, 5))), "inputs", "D=4", "(2, 5)"),
    ("unroll 1-D", lambda xs: unroll(rnn_cell(), RP, xs), (ones((M,)),), "inputs", "at least 2", "(3,)"),
    ("unroll int", lambda xs: unroll(lstm_cell(), LP, xs), (ones((B, T, M), i32),), "inputs", "floating", "int32"),
    ("unroll carry", lambda xs, c: unroll(rnn_cell(), RP, xs, c), (XS, zeros((3, D))), "carry", "(2, 4)", "(3, 4)"),
    (
        "unroll float lengths",
        lambda xs, n: unroll(rnn_cell(), RP, xs, lengths=n),
        (XS, jnp.array([1.0, 2.0])),
        "lengths",
        "integer dtype",
        "float32",
    ),
    (
        "unroll lengths shape",
        lambda xs, n: unroll(rnn_cell(), RP, xs, lengths=n),
        (XS, jnp.array([1, 2, 3])),
        "lengths",
        "(2,)",
        "(3,)",
    ),
    ("layers M", lambda xs: unroll_layers(lstm_cell(), LAYERS, xs), (ones((B, T, 5)),), "inputs", "M=3", "(2, 5, 5)"),
    (
        "sequence_loss targets",
        lambda o, y: sequence_loss("mse", o, y),
        (LOGITS, ones((B, T, 1))),
        "targets",
        "(2, 5, 2)",
        "(2, 5, 1)",
    ),
    (
        "sequence_loss mask",
        lambda o, y, m: sequence_loss("mse", o, y, mask=m),
        (LOGITS, Y, ones((B, T))),
        "mask",
        "bool",
        "float32",
    ),
    (
        "rnn_bptt targets",
        lambda p, xs, y: rnn_bptt(p, HD, xs, y, loss="mse"),
        (RP, XS, ones((B, T, N), i32)),
        "targets",
        "floating",
        "int32",
    ),
    (
        "lstm_bptt carry",
        lambda p, xs, c: lstm_bptt(p, HD, xs, Y, c, loss="mse"),
        (LP, XS, LSTMState(H0, zeros((3, D)))),
        "carry",
        "(2, 4)",
        "(3, 4)",
    ),
    (
        "autodiff lengths",
        lambda xs, n: autodiff_bptt(lstm_cell(), LP, HD, xs, Y, lengths=n, loss="mse"),
        (XS, jnp.array([1.0, 2.0])),
        "lengths",
        "integer",
        "float32",
    ),
    (
        "model_loss M",
        lambda xs: model_loss(rnn_cell(), RP, HD, xs, Y, loss="mse"),
        (ones((B, T, 5)),),
        "inputs",
        "M=3",
        "(2, 5, 5)",
    ),
    ("from_article W", lambda w, b: lstm_from_article(w, b), (zeros((15, 7)), zeros((16,))), "W", "(4D", "(15, 7)"),
]


@pytest.mark.parametrize("fn, args, name, expected, got", [c[1:] for c in JIT_CASES], ids=[c[0] for c in JIT_CASES])
def test_raised_while_tracing(fn, args, name, expected, got):
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), args)
    with pytest.raises(ValueError, match=pattern(name, expected, got)):
        jax.jit(fn).trace(*abstract)  # tracing only: nothing is compiled or run
    with pytest.raises(ValueError, match=pattern(name, expected, got)):
        jax.jit(fn)(*args)


# ---- traced lengths: only shape and dtype are checked ----------------------------------------


def _random_params(model):
    """Random float32 parameters of every field (biases included) of the built-in cell ``model``."""
    shapes = jax.eval_shape(lambda: registry.cell_type(model).init(KEY, M, D))
    return type(shapes)(*(rand(*leaf.shape) for leaf in shapes))


@pytest.mark.parametrize("model", registry.CELLS)
def test_traced_lengths_are_clamped_not_range_checked(model):
    """Documented in ``_checks.check_lengths``: under jit a length above T acts as T, a negative one as 0."""
    cell, params = registry.make_cell(model), _random_params(model)
    jitted = jax.jit(lambda n: unroll(cell, params, XS, lengths=n))
    over = jitted(jnp.array([T + 3, 2]))  # would raise eagerly
    under = jitted(jnp.array([-2, 2]))
    assert_trees_close(over, jitted(jnp.array([T, 2])))  # the same compiled function: one compile
    assert_trees_close(under, jitted(jnp.array([0, 2])))
    # a zero-length sequence keeps the initial carry and outputs zeros
    assert_trees_close(jax.tree.map(lambda c: c[0], under[0]), cell.zeros(params, ()))
    assert not np.any(np.asarray(under[1][0]))
    with pytest.raises(ValueError, match=pattern("lengths", "[0, T=5]", "max 8")):
        unroll(cell, params, XS, lengths=jnp.array([T + 3, 2]))


def test_traced_lengths_above_T_in_bptt_act_as_T():
    """The same clamping in the manual BPTT (loss, mask and gradients), pinned against length T."""
    jitted = jax.jit(lambda n: rnn_bptt(RP, HD, XS, Y, loss="mse", reduction="mean", lengths=n))
    assert_trees_close(jitted(jnp.array([T + 1, 3])), jitted(jnp.array([T, 3])))
    with pytest.raises(ValueError, match=pattern("lengths", "[0, T=5]", "max 6")):
        rnn_bptt(RP, HD, XS, Y, loss="mse", reduction="mean", lengths=jnp.array([T + 1, 3]))


# ---- found while adding the GRU (a library fix pending) ---------------------------------------


def test_a_plain_tuple_into_the_gru_names_all_four_fields():
    with pytest.raises(ValueError) as error:
        traced("gru_step", params=tuple(GP))
    assert "(w_ih, w_hh, b, b_hn)" in str(error.value)
