"""Benchmark the LSTM and the GRU: lstm_jax against flax, PyTorch and a GEMM floor, in one process.

Usage (from the repository root)::

    python experiments/bench.py --shapes cpu --table          # CPU suite -> experiments/results/bench_cpu.json/.md
    python experiments/bench.py --device gpu --table          # GPU suite (fp32, bf16, fp16) -> bench_gpu.json/.md
    bash experiments/device_check.sh                          # on a lent GPU: Pallas check + GPU suite -> $OUT
    python experiments/bench.py --shapes quick --repeats 3    # a few seconds, for a smoke test
    python experiments/bench.py --from experiments/results/bench_cpu.json   # only print the tables
    python experiments/bench.py --memory --table              # XLA's memory analysis of the training step

Every implementation runs the same cell (``--cells``: ``lstm``, gates i, f, g, o; ``gru``, gates r, u, n
in the cuDNN convention; M inputs, D hidden, zero initial state) on the same batch-major inputs
``(B, T, M)`` with the same parameters and dtype; what differs between the cells is written once per
implementation (:data:`FLAX_CELLS`, :data:`TORCH_CELLS`, :data:`FLOOR_LAYERS`):

* ``lstm_jax``: ``lj.unroll(cell, params, xs)`` with ``cell`` = ``lj.lstm_cell()`` or ``lj.gru_cell()``
  (``lj.unroll_layers`` for several layers); when ``unroll`` has an ``impl`` argument, the reference
  ``impl="scan"`` is measured too, as rows with ``"variant": "scan"`` (the default rows have
  ``"variant": "default"``); on a GPU also the Pallas kernels (LSTM) and bfloat16 matmul operands
  (:func:`unroll_variants`);
* ``flax``: ``nn.RNN(nn.OptimizedLSTMCell(D))`` or ``nn.RNN(nn.GRUCell(D))``, one per layer;
* ``torch``: ``torch.nn.LSTM`` or ``torch.nn.GRU`` ``(M, D, num_layers, batch_first=True)`` (cuDNN on a
  GPU), when importable;
* ``gemm_floor``: the same matmuls without the recurrence, per layer: one GEMM ``(T·B, M)×(M, GD)``
  for the input projection, one ``(T·B, D)×(D, GD)`` standing for all ``T`` recurrent matmuls
  (G = 4 gates for the LSTM, 3 for the GRU), and the pointwise gates; a floor no sequential
  implementation can beat at the same precision.

Forward: the outputs of the whole sequence. Training step: the loss ``mean(hs**2)`` (computed in
float32) and its gradient w.r.t. all parameters (``jax.value_and_grad`` under ``jax.jit``;
``loss.backward()`` after zeroing the gradients for torch). Every function is compiled and called
twice first; then each repeat times one call of every implementation in turn (the order rotated
every repeat, each call ended by ``block_until_ready`` or ``torch.cuda.synchronize``), so that
machine noise hits all of them alike, and the medians are reported.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import inspect
import itertools
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, NamedTuple

# JAX must not grab 75 % of a GPU's memory when torch runs in the same process.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root, when not pip-installed
import lstm_jax as lj  # noqa: E402
from lstm_jax.registry import cell_type  # noqa: E402
from lstm_jax.rundir import write_atomic  # noqa: E402

RESULTS = ROOT / "experiments" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"


class Shape(NamedTuple):
    B: int
    T: int
    M: int
    D: int
    layers: int


SHAPES: dict[str, list[Shape]] = {
    "cpu": [
        Shape(1, 150, 256, 256, 1),
        Shape(8, 1000, 32, 64, 1),
        Shape(16, 100, 128, 128, 1),
        Shape(64, 100, 512, 512, 1),
        Shape(32, 100, 256, 256, 2),
    ],
    # The small-batch shapes first (the Pallas kernels' case): a run cut short by --budget-s keeps them.
    "gpu": [
        Shape(16, 1000, 256, 256, 1),
        Shape(8, 150, 256, 256, 1),
        Shape(64, 256, 512, 512, 1),
        Shape(128, 512, 1024, 1024, 1),
        Shape(256, 100, 2048, 2048, 1),
    ],
    "quick": [Shape(3, 7, 5, 4, 1), Shape(2, 6, 3, 4, 2)],
    # Is the time linear in T? The same layer at T = 100 and T = 1000 (the issue asks <= 11x).
    "linear": [Shape(16, 100, 128, 128, 1), Shape(16, 1000, 128, 128, 1)],
}
IMPLS = ("lstm_jax", "flax", "torch", "gemm_floor")
#: The cells the suite can time (each has an entry in every peer's table below), and their table titles.
#: ``lstmp`` is the LSTM with a projection of its state to ``P = D // PROJ_DIVISOR`` units (PyTorch's ``proj_size``).
CELLS = ("lstm", "gru", "lstmp")
CELL_TITLES = {"lstm": "LSTM", "gru": "GRU", "lstmp": "LSTM with projection P = D/4"}
#: Sak et al. 2014's LSTMP: 2048 cells projected to 512.
PROJ_DIVISOR = 4
#: ``--cells`` by device: all on the CPU; the LSTM alone on a GPU (the prepared device check's time budget).
DEFAULT_CELLS = {"cpu": list(CELLS), "gpu": ["lstm"]}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
DEFAULT_DTYPES = {"cpu": ["float32"], "gpu": ["float32", "bfloat16", "float16"]}
#: The memory probe's default (B, T, M, D): a long sequence.
MEMORY_SHAPE = Shape(32, 10000, 256, 256, 1)
ROW_KEYS = (
    "impl",
    "variant",
    "cell",
    "device",
    "device_name",
    "dtype",
    "B",
    "T",
    "M",
    "D",
    "layers",
    "fwd_ms",
    "train_ms",
    "us_per_step_fwd",
    "us_per_step_train",
    "tokens_per_s_train",
    "date",
    "versions",
)


# ----------------------------------------------------------------------------------------------
# Problems: one set of parameters and inputs, shared by every implementation.


def problem(shape: Shape, dtype: str, device=None, seed: int = 0, cell: str = "lstm"):
    """``(layers, xs)``: ``lj.init_layers`` parameters of ``cell`` (its registry ``init``) and N(0, 1) inputs ``(B, T, M)``.

    Drawn in float32 and rounded to ``dtype``, so every dtype sees the same values up to rounding.
    """
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {', '.join(CELLS)}, got {cell!r}")
    options = {"proj_size": max(1, shape.D // PROJ_DIVISOR)} if cell == "lstmp" else {}
    k_params, k_xs = jax.random.split(jax.random.key(seed))
    layers = lj.init_layers(k_params, cell_type(REGISTRY_CELLS[cell]).init, shape.M, shape.D, shape.layers, **options)
    xs = jax.random.normal(k_xs, (shape.B, shape.T, shape.M), jnp.float32)
    layers, xs = jax.tree.map(lambda a: a.astype(DTYPES[dtype]), (layers, xs))
    return jax.device_put((layers, xs), device)


#: The registry's name of each cell (:mod:`lstm_jax.registry`; ``lstmp`` is its ``lstm`` with ``proj_size``).
REGISTRY_CELLS = {"lstm": "lstm", "gru": "gru", "lstmp": "lstm"}


def cell_of(layers) -> str:
    """The cell (one of :data:`CELLS`) whose parameters ``layers`` holds: a runner reads it from them."""
    p = layers[0]
    if isinstance(p, lj.LSTMParams):
        return "lstm"
    if isinstance(p, lj.GRUParams):
        return "gru"
    if isinstance(p, lj.LSTMVariantParams) and all(v is None for v in p[4:]) and p.w_hr is not None:
        return "lstmp"  # the projection and no other option
    raise ValueError(f"layers: expected parameters of {', '.join(CELLS)}, got {type(p).__name__}")


def cell_options(layers) -> dict:
    """The options of the registry's ``make`` for these parameters (``proj_size`` for ``lstmp``)."""
    return {"proj_size": proj_size(layers)} if cell_of(layers) == "lstmp" else {}


def proj_size(layers) -> int | None:
    """``P`` of an LSTM with projection (the rows of ``w_hr``), else ``None``."""
    w_hr = getattr(layers[0], "w_hr", None)
    return None if w_hr is None else int(w_hr.shape[0])


def hidden_size(p) -> int:
    """``D``, the units of a layer's cell (``w_hh`` has ``P`` columns under a projection)."""
    return p.w_hh.shape[1] if getattr(p, "w_hr", None) is None else p.w_hr.shape[1]


def loss_of(hs) -> jax.Array:
    """The benchmark's loss ``mean(hs**2)``, accumulated in float32 whatever the dtype of ``hs``."""
    return jnp.mean(jnp.square(hs.astype(jnp.float32)))


class Runner(NamedTuple):
    """One implementation on one problem; each call runs once and waits for the device.

    Attributes:
      forward: ``() -> hs``, the outputs ``(B, T, D)`` of the last layer.
      train: ``() -> (loss, grads)`` in the implementation's own parameter layout.
      grads_as_layers: ``grads -> tuple`` of the cell's parameters (``LSTMParams``, ``GRUParams``) of numpy
        arrays (for the tests).
    """

    impl: str
    variant: str
    forward: Callable[[], Any]
    train: Callable[[], tuple[Any, Any]]
    grads_as_layers: Callable[[Any], tuple]


#: ``(impl, variant, cell, *model) -> (jitted forward, jitted training step)``: built once per process.
_JITTED: dict[tuple, tuple[Callable, Callable]] = {}


def _jitted(key: tuple, hs_of) -> tuple[Callable, Callable]:
    if key not in _JITTED:
        _JITTED[key] = (jax.jit(hs_of), jax.jit(jax.value_and_grad(lambda p, x: loss_of(hs_of(p, x)))))
    return _JITTED[key]


def _jax_runner(impl: str, variant: str, cell: str, hs_of, params, xs, grads_as_layers, model=()) -> Runner:
    """Jit ``hs_of(params, xs)`` and ``value_and_grad`` of its loss; parameters are arguments, not constants.

    The jitted functions are kept per ``(impl, variant, cell, *model)``, so a shape compiles once per process.
    """
    forward, train = _jitted((impl, variant, cell, *model), hs_of)
    return Runner(
        impl,
        variant,
        lambda: jax.block_until_ready(forward(params, xs)),
        lambda: jax.block_until_ready(train(params, xs)),
        grads_as_layers,
    )


def _numpy_layers(layers) -> tuple:
    return tuple(jax.tree.map(_f32, layers))


def _f32(a) -> np.ndarray:
    return np.asarray(a, np.float32)


def _blocks(a, size: int, count: int) -> list:
    """The ``count`` row blocks of ``size`` rows of ``a`` (a fused weight or bias, gates stacked)."""
    return [a[k * size : (k + 1) * size] for k in range(count)]


def unroll_variants(device=None, dtype: str = "float32", cell: str = "lstm") -> list[tuple[str, dict]]:
    """``(variant, keyword arguments)`` of ``lj.unroll`` to measure on ``device`` (``None``: the CPU).

    Always the default, and ``impl="scan"`` where ``unroll`` has it. On a GPU also the Pallas kernels
    (``impl="pallas"``, the LSTM's only) and, for float32 parameters, bfloat16 matmul operands
    (``compute_dtype``), with each time loop: the issue's "our bf16" against cuDNN's 16-bit kernels.
    """
    parameters = inspect.signature(lj.unroll).parameters
    variants = [("default", {})]
    if "impl" not in parameters or parameters["impl"].default == "scan":
        return variants
    variants.append(("scan", {"impl": "scan"}))
    if device is None or device.platform != "gpu":
        return variants
    impls = importlib.import_module("lstm_jax.unroll").IMPLS
    pallas = [("pallas", {"impl": "pallas"})] if "pallas" in impls and cell == "lstm" else []
    variants += pallas
    if dtype == "float32" and "compute_dtype" in parameters:
        bf16 = {"compute_dtype": "bfloat16"}
        variants += [("bf16_compute", bf16)] + [(f"{name}_bf16_compute", {**opts, **bf16}) for name, opts in pallas]
    return variants


def lstm_jax_hs(layers, xs, **options):
    """The last layer's outputs of ``lstm_jax``: ``unroll`` for one layer, ``unroll_layers`` for more.

    The cell is the registry's for the parameters (:func:`cell_of`): ``lj.lstm_cell()``, ``lj.gru_cell()``,
    ``lj.lstm_cell(proj_size=P)``.
    """
    cell = cell_type(REGISTRY_CELLS[cell_of(layers)]).make(**cell_options(layers))
    if len(layers) == 1:
        return lj.unroll(cell, layers[0], xs, **options)[1]
    return lj.unroll_layers(cell, layers, xs, **options)[1]


def lstm_jax_runners(layers, xs, device) -> list[Runner]:
    cell = cell_of(layers)
    return [
        _jax_runner(
            "lstm_jax",
            variant,
            cell,
            lambda p, x, options=options: lstm_jax_hs(p, x, **options),
            layers,
            xs,
            _numpy_layers,
        )
        for variant, options in unroll_variants(device, jnp.dtype(xs.dtype).name, cell)
    ]


# GEMM floor ------------------------------------------------------------------------------------


def _lstm_floor_layer(p, x):
    """One LSTM layer's GEMMs and gates on all ``T·B`` rows ``x`` at once, a stand-in for the recurrence.

    ``z = X W_ihᵀ + b``; a stand-in for the previous state, ``u = tanh(z_g)``, computed from ``z`` alone;
    ``a = z + u W_hhᵀ`` (one GEMM for all steps; its first ``P`` columns under a projection);
    ``i, f, g, o`` from ``a``; ``c = f ⊙ u + i ⊙ g``; ``h = o ⊙ tanh(c)``, then ``h W_hrᵀ`` under a projection.
    """
    D, P = hidden_size(p), p.w_hh.shape[1]
    z = x @ p.w_ih.T + p.b[None, :]
    u = jnp.tanh(z[:, 2 * D : 3 * D])
    a = z + u[:, :P] @ p.w_hh.T
    i, f, g, o = (a[:, k * D : (k + 1) * D] for k in range(4))
    c = jax.nn.sigmoid(f) * u + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h if getattr(p, "w_hr", None) is None else h @ p.w_hr.T


def _gru_floor_layer(p, x):
    """One GRU layer's GEMMs and gates on all ``T·B`` rows ``x`` at once, a stand-in for the recurrence.

    ``z = X W_ihᵀ + b``; a stand-in for the previous state, ``v = tanh(z_n)``; ``a = v W_hhᵀ`` (one GEMM
    for all steps); ``r, u = σ(z_{r,u} + a_{r,u})``; ``n = tanh(z_n + r ⊙ (a_n + b_hn))``;
    ``h = n + u ⊙ (v − n)``.
    """
    D = p.w_hh.shape[1]
    z = x @ p.w_ih.T + p.b[None, :]
    v = jnp.tanh(z[:, 2 * D :])
    a = v @ p.w_hh.T
    r, u = jnp.split(jax.nn.sigmoid(z[:, : 2 * D] + a[:, : 2 * D]), 2, axis=-1)
    n = jnp.tanh(z[:, 2 * D :] + r * (a[:, 2 * D :] + p.b_hn[None, :]))
    return n + u * (v - n)


#: Per cell, one layer of the GEMM floor: ``(params, x (T·B, M)) -> h (T·B, D)``.
FLOOR_LAYERS = {"lstm": _lstm_floor_layer, "gru": _gru_floor_layer, "lstmp": _lstm_floor_layer}


def gemm_floor_hs(layers, xs):
    """The cell's matmuls and pointwise gates with no recurrence, layer by layer (:data:`FLOOR_LAYERS`).

    Each layer reads all ``T·B`` rows at once; no step waits for another.
    """
    B, T, _ = xs.shape
    layer = FLOOR_LAYERS[cell_of(layers)]
    h = xs.reshape(B * T, xs.shape[-1])
    for p in layers:
        h = layer(p, h)
    return h.reshape(B, T, h.shape[-1])


def gemm_floor_runners(layers, xs, device) -> list[Runner]:
    return [_jax_runner("gemm_floor", "default", cell_of(layers), gemm_floor_hs, layers, xs, _numpy_layers)]


# flax ------------------------------------------------------------------------------------------

FLAX_LSTM_GATES = ("i", "f", "g", "o")  # OptimizedLSTMCell's per-gate submodules: 'i?' on x, 'h?' on h (with bias)
FLAX_GRU_GATES = ("r", "z", "n")  # GRUCell's: 'i?' on x (with bias), 'h?' on h ('hn' alone with a bias, b_hn)


def _lstm_to_flax(p) -> dict:
    D = p.w_hh.shape[1]
    cell = {}
    for gate, w_ih, w_hh, b in zip(FLAX_LSTM_GATES, _blocks(p.w_ih, D, 4), _blocks(p.w_hh, D, 4), _blocks(p.b, D, 4)):
        cell["i" + gate] = {"kernel": w_ih.T}
        cell["h" + gate] = {"kernel": w_hh.T, "bias": b}
    return cell


def _lstm_from_flax(cell) -> lj.LSTMParams:
    def stack(kind, field):
        return np.concatenate([_f32(cell[kind + g][field]).T for g in FLAX_LSTM_GATES])

    return lj.LSTMParams(stack("i", "kernel"), stack("h", "kernel"), stack("h", "bias"))


def _gru_to_flax(p) -> dict:
    D = p.w_hh.shape[1]
    cell = {}
    for gate, w_ih, w_hh, b in zip(FLAX_GRU_GATES, _blocks(p.w_ih, D, 3), _blocks(p.w_hh, D, 3), _blocks(p.b, D, 3)):
        cell["i" + gate] = {"kernel": w_ih.T, "bias": b}
        cell["h" + gate] = {"kernel": w_hh.T}
    cell["hn"]["bias"] = p.b_hn
    return cell


def _gru_from_flax(cell) -> lj.GRUParams:
    def stack(name, field):
        return np.concatenate([_f32(cell[name + g][field]).T for g in FLAX_GRU_GATES])

    return lj.GRUParams(stack("i", "kernel"), stack("h", "kernel"), stack("i", "bias"), _f32(cell["hn"]["bias"]))


class FlaxCell(NamedTuple):
    """How flax runs one of our cells: its module, and our parameters of one layer to and from its variables."""

    module: str  # the flax.linen cell class
    to_flax: Callable[[Any], dict]
    from_flax: Callable[[dict], Any]


FLAX_CELLS = {
    "lstm": FlaxCell("OptimizedLSTMCell", _lstm_to_flax, _lstm_from_flax),
    "gru": FlaxCell("GRUCell", _gru_to_flax, _gru_from_flax),
}


def flax_model(D: int, num_layers: int, dtype: str, cell: str = "lstm"):
    import flax.linen as nn

    cell_class = getattr(nn, FLAX_CELLS[cell].module)

    class Stack(nn.Module):
        """``num_layers`` ``nn.RNN(cell_class(D))``, each reading the previous one's outputs."""

        @nn.compact
        def __call__(self, xs):
            for layer in range(num_layers):
                module = cell_class(D, dtype=DTYPES[dtype], param_dtype=DTYPES[dtype], name=f"layer{layer}")
                xs = nn.RNN(module)(xs)
            return xs

    return Stack()


def flax_params(layers) -> dict:
    """lstm_jax layers as flax ``Stack`` variables: per gate, kernels are the row blocks transposed."""
    to_flax = FLAX_CELLS[cell_of(layers)].to_flax
    return {"params": {f"layer{n}": to_flax(p) for n, p in enumerate(layers)}}


def flax_grads_as_layers(grads, cell: str = "lstm") -> tuple:
    from_flax = FLAX_CELLS[cell].from_flax
    return tuple(from_flax(grads["params"][f"layer{n}"]) for n in range(len(grads["params"])))


def flax_runners(layers, xs, device) -> list[Runner]:
    """flax's ``nn.RNN`` of the cell's module (:data:`FLAX_CELLS`); none for a cell flax does not have."""
    cell, D, dtype = cell_of(layers), hidden_size(layers[0]), jnp.dtype(xs.dtype).name
    if cell not in FLAX_CELLS:
        return []
    model = flax_model(D, len(layers), dtype, cell)
    params = jax.device_put(flax_params(layers), device)

    def shapes(tree):
        return jax.tree.map(lambda a: (a.shape, jnp.dtype(a.dtype).name), tree)

    expected, got = shapes(jax.eval_shape(model.init, jax.random.key(0), xs)), shapes(params)
    if expected != got:
        raise RuntimeError(f"flax parameters: expected {expected}, built {got}")

    def grads_as_layers(grads):
        return flax_grads_as_layers(grads, cell)

    return [_jax_runner("flax", "default", cell, model.apply, params, xs, grads_as_layers, (D, len(layers), dtype))]


# torch -----------------------------------------------------------------------------------------


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class TorchCell(NamedTuple):
    """How torch runs one of our cells: its module and options, our layer as its tensors and back.

    ``to_torch``: ``params -> {kind: array}`` for torch's ``{kind}_l{k}`` tensors (``weight_ih``,
    ``bias_hh``, ...); ``from_torch``: the gradients of those tensors ``{kind: array} -> params``, the
    gradients of ours. The weights are torch's as they are (same gate order).
    """

    module: str  # the torch.nn class
    options: Callable[[Any], dict]  # a layer's params -> the module's keyword arguments besides the sizes
    to_torch: Callable[[Any], dict]
    from_torch: Callable[[dict], Any]


def _lstm_to_torch(p) -> dict:
    """b = bias_ih + bias_hh: all of it in bias_ih, zeros in bias_hh (both get the same gradient)."""
    tensors = {"weight_ih": p.w_ih, "weight_hh": p.w_hh, "bias_ih": p.b, "bias_hh": np.zeros_like(_f32(p.b))}
    return tensors if getattr(p, "w_hr", None) is None else {**tensors, "weight_hr": p.w_hr}


def _gru_to_torch(p) -> dict:
    """b = bias_ih + [b_hr; b_hz; 0]: b in bias_ih, and bias_hh = [0; 0; b_hn] (b_hn sits inside r ⊙ (·))."""
    b_hh = np.concatenate([np.zeros(2 * p.b_hn.shape[0], np.float32), _f32(p.b_hn)])
    return {"weight_ih": p.w_ih, "weight_hh": p.w_hh, "bias_ih": p.b, "bias_hh": b_hh}


TORCH_CELLS = {
    "lstm": TorchCell(
        "LSTM", lambda p: {}, _lstm_to_torch, lambda g: lj.LSTMParams(g["weight_ih"], g["weight_hh"], g["bias_ih"])
    ),
    "gru": TorchCell(
        "GRU",
        lambda p: {},
        _gru_to_torch,
        lambda g: lj.GRUParams(
            g["weight_ih"], g["weight_hh"], g["bias_ih"], g["bias_hh"][2 * g["weight_hh"].shape[1] :]
        ),
    ),
    "lstmp": TorchCell(
        "LSTM",
        lambda p: {"proj_size": p.w_hr.shape[0]},
        _lstm_to_torch,
        lambda g: lj.LSTMVariantParams(g["weight_ih"], g["weight_hh"], g["bias_ih"], w_hr=g["weight_hr"]),
    ),
}


def torch_runners(layers, xs, device) -> list[Runner]:
    """``torch.nn.LSTM`` or ``torch.nn.GRU`` with our weights (:data:`TORCH_CELLS`): ``weight_ih_l{k}`` = ``w_ih``,
    ``weight_hh_l{k}`` = ``w_hh`` (same gate order), ``weight_hr_l{k}`` = ``w_hr``, the biases as the cell's entry says."""
    import torch

    on_gpu = device.platform == "gpu"
    torch_device = torch.device("cuda" if on_gpu else "cpu")
    dtype = getattr(torch, jnp.dtype(xs.dtype).name)
    M, D = layers[0].w_ih.shape[1], hidden_size(layers[0])
    spec = TORCH_CELLS[cell_of(layers)]

    def to_torch(a):
        return torch.from_numpy(np.array(a, np.float32)).to(device=torch_device, dtype=dtype)

    module = getattr(torch.nn, spec.module)
    rnn = module(M, D, len(layers), batch_first=True, device=torch_device, dtype=dtype, **spec.options(layers[0]))
    tensors = {}  # (layer, kind) -> torch's parameter
    with torch.no_grad():
        for n, p in enumerate(layers):
            for kind, value in spec.to_torch(p).items():
                tensors[n, kind] = getattr(rnn, f"{kind}_l{n}")
                tensors[n, kind].copy_(to_torch(value))
    expected = sorted(name for name, _ in rnn.named_parameters())
    if sorted(f"{kind}_l{n}" for n, kind in tensors) != expected:
        raise RuntimeError(f"torch parameters: expected {expected}, set {sorted(tensors)}")
    x = to_torch(xs)

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            hs = rnn(x)[0]
        sync()
        return hs

    def train():
        rnn.zero_grad(set_to_none=True)
        hs = rnn(x)[0]
        loss = hs.float().square().mean()
        loss.backward()
        sync()
        return loss.detach(), {key: tensor.grad for key, tensor in tensors.items()}

    def grads_as_layers(grads):
        per_layer = [{} for _ in layers]
        for (n, kind), grad in grads.items():
            per_layer[n][kind] = grad.float().cpu().numpy()
        return tuple(spec.from_torch(g) for g in per_layer)

    return [Runner("torch", "default", forward, train, grads_as_layers)]


RUNNERS = {
    "lstm_jax": lstm_jax_runners,
    "flax": flax_runners,
    "torch": torch_runners,
    "gemm_floor": gemm_floor_runners,
}


def runners_for(impls, layers, xs, device, log=print, variants=None) -> list[Runner]:
    """Build and warm up (compile, then call twice) every implementation; one that fails is skipped.

    ``variants``: the lstm_jax variants to keep (:func:`unroll_variants`; ``None``: all).
    """
    runners = []
    for impl in impls:
        if impl == "torch" and not torch_available():
            log("  torch: not importable, skipped")
            continue
        try:
            built = RUNNERS[impl](layers, xs, device)
            if not built:
                log(f"  {impl}: no {cell_of(layers)} cell, skipped")
                continue
            built = [r for r in built if variants is None or r.variant in variants]
            for runner in built:
                for _ in range(2):
                    runner.forward()
                    runner.train()
        except Exception as error:  # e.g. a dtype the implementation cannot do on this device
            log(f"  {impl}: skipped ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
            continue
        runners.extend(built)
    return runners


# ----------------------------------------------------------------------------------------------
# Timing


def machine_busy(interval: float = 0.25) -> float | None:
    """Fraction of all CPUs busy during ``interval`` seconds (``/proc/stat``) while this process sleeps.

    Measured between repeats, when nothing of ours runs: it is the load of *other* processes.
    ``None`` where ``/proc/stat`` does not exist.
    """

    def sample():
        fields = [int(v) for v in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_until_quiet(threshold: float, max_wait: float) -> tuple[float | None, float]:
    """Sample :func:`machine_busy` until it is at most ``threshold`` or ``max_wait`` seconds passed.

    Returns ``(last busy fraction, seconds waited)``; with ``max_wait <= 0`` samples once.
    """
    start = time.perf_counter()
    while True:
        busy = machine_busy()
        waited = time.perf_counter() - start
        if busy is None or busy <= threshold or waited >= max_wait:
            return busy, waited
        time.sleep(1.0)


class Timings(NamedTuple):
    """Per ``(impl, variant)``: ``{"fwd": [ms...], "train": [ms...]}``; per repeat, the others' CPU load and wait."""

    ms: dict[tuple[str, str], dict[str, list[float]]]
    busy: list[float]
    waited_s: list[float]


def time_interleaved(runners: list[Runner], repeats: int, quiet: float = 1.0, max_wait: float = 0.0) -> Timings:
    """Milliseconds of each runner's forward and training step, ``repeats`` times, interleaved.

    Each repeat times one forward call of every runner, then one training step of every runner;
    the order is rotated every repeat. Each timed call follows an untimed call of the same function,
    so that it runs in its own steady state: right after a torch call, torch's OpenMP threads keep
    spinning and slowed the next JAX call by 20–40 % (measured: 3.9 → 5.5 ms at 16×100×128×128). The garbage collector is off while timing. Before each
    repeat the machine's load from other processes is sampled, waiting up to ``max_wait`` seconds
    for it to fall to ``quiet`` (a fraction of all CPUs); ``quiet=1`` never waits.
    """
    ms = {(r.impl, r.variant): {"fwd": [], "train": []} for r in runners}
    busy, waited = [], []
    gc.collect()
    gc.disable()
    try:
        for repeat in range(repeats):
            load, seconds = wait_until_quiet(quiet, max_wait)
            if load is not None:
                busy.append(load)
            waited.append(seconds)
            order = runners[repeat % len(runners) :] + runners[: repeat % len(runners)]
            for kind in ("fwd", "train"):
                for runner in order:
                    call = runner.forward if kind == "fwd" else runner.train
                    call()  # settle: the previous runner's threads (torch's OpenMP
                    # workers spin after each call) would otherwise slow this one's first call
                    start = time.perf_counter()
                    result = call()
                    elapsed = time.perf_counter() - start
                    ms[(runner.impl, runner.variant)][kind].append(1000 * elapsed)
                    del result
    finally:
        gc.enable()
    return Timings(ms, busy, waited)


def versions() -> dict[str, str]:
    import flax
    import jaxlib
    import optax

    found = {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
    if torch_available():
        import torch

        found["torch"] = torch.__version__
    return found


def torch_threads() -> int | None:
    """torch's CPU intra-op threads (``None`` without torch)."""
    if not torch_available():
        return None
    import torch

    return torch.get_num_threads()


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pick_device(name: str):
    """The JAX device for ``cpu``, ``gpu`` or ``auto`` (a GPU when JAX has one)."""
    if name == "auto":
        try:
            return jax.devices("gpu")[0]
        except RuntimeError:
            return jax.devices("cpu")[0]
    try:
        return jax.devices(name)[0]
    except RuntimeError as error:
        raise SystemExit(f"--device {name}: JAX has no such device ({error})") from None


def usable_cores() -> int:
    """The cores this process may run on (fewer than ``os.cpu_count()`` under ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def device_name(device) -> str:
    """The machine line's device: a CPU's model and cores (and the pinned ones, if fewer), a GPU's kind."""
    if device.platform == "cpu":
        total, usable = os.cpu_count(), usable_cores()
        pinned = f", pinned to {usable}" if usable < (total or usable) else ""
        return f"{cpu_model()} ({total} cores{pinned})"
    return getattr(device, "device_kind", str(device))


def load_average() -> float | None:
    """The 1-minute load average (``os.getloadavg``), ``None`` where the platform has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _timing_fields(shape: Shape, fwd: float, train: float) -> dict:
    """The row fields derived from the median forward and training-step milliseconds."""
    return {
        "fwd_ms": round(fwd, 4),
        "train_ms": round(train, 4),
        "us_per_step_fwd": round(1000 * fwd / shape.T, 3),
        "us_per_step_train": round(1000 * train / shape.T, 3),
        "tokens_per_s_train": round(shape.B * shape.T / (train / 1000), 1),
    }


def run_isolated(impls, rounds: int, child_args: list[str], log=print) -> list[dict]:
    """The suite with each implementation in its own process: ``rounds`` rotations over ``impls``, each
    a subprocess ``bench.py --impls IMPL *child_args``; a row's times are the median of its rounds'.

    In one process the libraries' thread pools (XLA's, torch's OpenMP, OpenBLAS) can slow each
    other even with the settling call of :func:`time_interleaved` (``gemm_probe.py`` saw small GEMMs
    slowed up to 100× without it); here no other library's threads exist while one is timed, at the
    price of machine drift between processes, which the rotated rounds spread over all of them.
    """
    by_key: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            for impl in impls[round_ % len(impls) :] + impls[: round_ % len(impls)]:
                out = pathlib.Path(tmp) / f"{impl}_{round_}.json"
                command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--impls", impl, "--out", str(out)]
                log(f"round {round_ + 1}/{rounds}: {impl}")
                subprocess.run(command + child_args, check=True, stdout=subprocess.DEVNULL)
                for row in json.loads(out.read_text()):
                    by_key.setdefault((row["impl"], row["variant"], *_problem_of(row)), []).append(row)
    rows = []
    for runs in by_key.values():
        shape = Shape(*(runs[0][k] for k in Shape._fields))
        fwd = statistics.median(r["fwd_ms"] for r in runs)
        train = statistics.median(r["train_ms"] for r in runs)
        busy = [r["others_busy"] for r in runs if r.get("others_busy") is not None]
        rows.append(
            {
                **runs[0],
                **_timing_fields(shape, fwd, train),
                "fwd_ms_min": min(r["fwd_ms_min"] for r in runs),
                "train_ms_min": min(r["train_ms_min"] for r in runs),
                "others_busy": statistics.median(busy) if busy else None,
                "waited_s": round(sum(r["waited_s"] for r in runs), 1),
                "isolated_rounds": len(runs),
            }
        )
    impl_order = {impl: i for i, impl in enumerate(impls)}
    problem_order = {problem: i for i, problem in enumerate(dict.fromkeys(map(_problem_of, rows)))}  # suite order
    return sorted(rows, key=lambda r: (problem_order[_problem_of(r)], impl_order[r["impl"]]))


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the rows of every problem in ``new`` replaced by ``new``'s (in place; new problems at the end).

    A problem (:func:`_problem_of`) is a dtype, shape and cell: all its rows come from one run, so the
    implementations it compares were timed in the same minutes.
    """
    fresh: dict[tuple, list[dict]] = {}
    for row in new:
        fresh.setdefault(_problem_of(row), []).append(row)
    merged, done = [], set()
    for row in old:
        problem_ = _problem_of(row)
        if problem_ not in fresh:
            merged.append(row)
        elif problem_ not in done:
            merged += fresh[problem_]
            done.add(problem_)
    return merged + [row for problem_, rows in fresh.items() if problem_ not in done for row in rows]


def _problem_of(row: dict) -> tuple:
    """The problem a row measured: its dtype, shape and cell (rows from before the GRU have no ``cell``: the LSTM)."""
    return (row["dtype"], *(row[k] for k in Shape._fields), _cell_label(row))


def _cell_label(row: dict) -> str:
    return row.get("cell", "lstm")


def run_suite(
    shapes,
    dtypes,
    impls,
    repeats: int,
    device=None,
    log=print,
    quiet: float = 1.0,
    max_wait: float = 0.0,
    variants=None,
    budget_s: float | None = None,
    save: Callable[[list], None] | None = None,
    cells=("lstm",),
) -> list[dict]:
    """Benchmark rows for every dtype, shape and cell, in that order (see ``ROW_KEYS``).

    ``quiet``, ``max_wait``: :func:`time_interleaved`; ``variants``: :func:`runners_for`. The cells of
    one shape run one after the other, so that their ratios come from the same minutes of the
    machine. No new problem starts after ``budget_s`` seconds; ``save(rows)`` is called after each
    problem, so a run stopped from outside keeps what it measured.
    """
    device = device or jax.devices("cpu")[0]
    info = {"device": device.platform, "device_name": device_name(device), "versions": versions()}
    rows = []
    start = time.monotonic()
    for dtype, shape, cell in itertools.product(dtypes, shapes, cells):
        if budget_s is not None and time.monotonic() - start > budget_s:
            log(
                f"time budget of {budget_s:.0f} s spent: {dtype} {cell} B={shape.B} T={shape.T} D={shape.D}"
                " and later skipped"
            )
            break
        log(f"{dtype} {cell} B={shape.B} T={shape.T} M={shape.M} D={shape.D} layers={shape.layers}")
        load_before = load_average()
        layers, xs = problem(shape, dtype, device, cell=cell)
        runners = runners_for(impls, layers, xs, device, log, variants)
        timings = time_interleaved(runners, repeats, quiet, max_wait)
        loadavg = [load_before, load_average()]
        busy = round(statistics.median(timings.busy), 3) if timings.busy else None
        log(
            f"  other processes' CPU load before repeats: median {busy}, waited {sum(timings.waited_s):.0f} s;"
            f" load average (1 min) {loadavg[0]} -> {loadavg[1]}"
        )
        for (impl, variant), t in timings.ms.items():
            fwd, train = statistics.median(t["fwd"]), statistics.median(t["train"])
            row = {
                "impl": impl,
                "variant": variant,
                "cell": cell,
                "proj_size": proj_size(layers),  # P of lstmp, else None
                "device": info["device"],
                "device_name": info["device_name"],
                "dtype": dtype,
                **shape._asdict(),
                **_timing_fields(shape, fwd, train),
                "fwd_ms_min": round(min(t["fwd"]), 4),
                "train_ms_min": round(min(t["train"]), 4),
                "repeats": repeats,
                "others_busy": busy,  # median fraction of the CPUs used by other processes before a repeat
                "waited_s": round(sum(timings.waited_s), 1),
                "loadavg_1min": loadavg,  # before building the runners, after timing them (all processes)
                "torch_threads": torch_threads(),
                "date": now(),
                "versions": info["versions"],
            }
            rows.append(row)
            log(f"  {impl:10s} {variant:8s} fwd {fwd:10.3f} ms   train {train:10.3f} ms")
        del runners
        gc.collect()
        if save is not None:
            save(rows)
    return rows


# ----------------------------------------------------------------------------------------------
# Memory probe


def _choices(module, constant: str, parameter: inspect.Parameter) -> list:
    """The values a keyword of ``unroll`` takes: the module's constant (``IMPLS``, ``REMATS``) or its default."""
    values = list(getattr(module, constant, ()))
    if parameter.default not in values:
        values.insert(0, parameter.default)
    return values


def _default_options(options: dict) -> dict:
    parameters = inspect.signature(lj.unroll).parameters
    return {name: parameters[name].default for name in options if name in parameters}


def memory_options() -> list[dict]:
    """Every combination of ``impl`` and ``remat`` that ``lj.unroll`` offers (``[{}]`` without them)."""
    module = importlib.import_module("lstm_jax.unroll")
    parameters = inspect.signature(lj.unroll).parameters
    axes = {}
    for name, constant in (("impl", "IMPLS"), ("remat", "REMATS")):
        if name in parameters:
            axes[name] = _choices(module, constant, parameters[name])
    if "impl" in axes:  # the interpreter's memory is not the kernel's
        axes["impl"] = [impl for impl in axes["impl"] if impl != "pallas_interpret"]
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())] or [{}]


def _memory_row(impl: str, options: dict, hs_of, params, xs, shape: Shape, dtype: str, device) -> dict:
    train = jax.jit(jax.value_and_grad(lambda p, x: loss_of(hs_of(p, x))))
    start = time.perf_counter()
    compiled = train.lower(params, xs).compile()
    seconds = time.perf_counter() - start
    stats = compiled.memory_analysis()
    fields = (
        "temp_size_in_bytes",
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "alias_size_in_bytes",
        "generated_code_size_in_bytes",
        "peak_memory_in_bytes",
    )
    sizes = {name: int(getattr(stats, name)) for name in fields if hasattr(stats, name)}
    per_step = shape.T * shape.B * shape.D * jnp.dtype(DTYPES[dtype]).itemsize
    return {
        "probe": "memory",
        "impl": impl,
        "options": dict(options),
        "default_options": options == _default_options(options),
        "device": device.platform,
        "device_name": device_name(device),
        "dtype": dtype,
        **shape._asdict(),
        **sizes,
        "temp_per_T_B_D": round(sizes["temp_size_in_bytes"] / per_step, 2),
        "compile_s": round(seconds, 2),
        "date": now(),
        "versions": versions(),
    }


def memory_probe(
    shape: Shape = MEMORY_SHAPE, dtype: str = "float32", device=None, impls=IMPLS, log=print, options=None
) -> list[dict]:
    """XLA's compiled memory analysis of the training step, for every ``impl``/``remat`` of lstm_jax.

    ``options``: the keyword sets of ``lj.unroll`` to probe (default :func:`memory_options`).

    Nothing runs: the step is lowered from shapes alone and compiled. ``temp_per_T_B_D`` is the
    temporary memory in units of one ``(T, B, D)`` array of the dtype (what BPTT must keep per stored
    quantity). flax and the GEMM floor are probed as references when in ``impls``.
    """
    device = device or jax.devices("cpu")[0]
    sharding = jax.sharding.SingleDeviceSharding(device)
    layers, xs = jax.eval_shape(lambda: problem(shape, dtype))
    layers, xs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), (layers, xs))
    probes = [
        ("lstm_jax", options, lambda p, x, options=options: lstm_jax_hs(p, x, **options), layers)
        for options in (memory_options() if options is None else options)
    ]
    if "flax" in impls:
        model = flax_model(shape.D, shape.layers, dtype)
        params = jax.eval_shape(flax_params, layers)
        params = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), params)
        probes.append(("flax", {}, model.apply, params))
    if "gemm_floor" in impls:
        probes.append(("gemm_floor", {}, gemm_floor_hs, layers))
    rows = []
    for impl, options, hs_of, params in probes:
        try:
            row = _memory_row(impl, options, hs_of, params, xs, shape, dtype, device)
        except ValueError as error:  # a combination unroll rejects, e.g. remat="step" with impl="fast"
            log(f"  {impl} {options}: rejected ({str(error).splitlines()[0]})")
            continue
        rows.append(row)
        log(
            f"  {impl:10s} {_options_label(options):24s} temp {row['temp_size_in_bytes'] / 2**20:10.1f} MiB"
            f"  ({row['temp_per_T_B_D']} x T·B·D)  compile {row['compile_s']} s"
        )
    return rows


# ----------------------------------------------------------------------------------------------
# Tables


def _shape_label(row) -> str:
    return f"{row['B']}×{row['T']}×{row['M']}×{row['D']}×{row['layers']}"


def _impl_label(impl: str, variant: str) -> str:
    return impl if variant == "default" else f"{impl} ({variant})"


def _options_label(options: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items()) or "default"


def _ratio(a, b) -> str:
    return "—" if a is None or b is None else f"{a / b:.2f}"


def _ms(value) -> str:
    return "—" if value is None else (f"{value:.3g}" if value < 10 else f"{value:.0f}")


def _machine(rows) -> str:
    first = rows[0]
    dates = sorted(row["date"] for row in rows)
    versions_ = ", ".join(f"{k} {v}" for k, v in first["versions"].items())
    return f"{first['device']}: {first['device_name']}; {dates[0][:10]}; {versions_}"


def _span(values) -> str:
    values = [v for v in values if v is not None]
    return "?" if not values else f"{min(values):.2g}–{max(values):.2g}"


def _load_note(rows) -> str:
    """How busy the machine was, for rows that recorded it (rows from before 2026-12-02 did not)."""
    if not any("loadavg_1min" in row for row in rows):
        return ""
    loads = [v for row in rows for v in row.get("loadavg_1min") or ()]
    busy = [row.get("others_busy") for row in rows]
    return (
        f" Load average (1 min, all processes, at the start and end of each shape) {_span(loads)};"
        f" CPU share used by other processes before the repeats (median per shape) {_span(busy)}."
    )


def benchmark_table(rows: list[dict]) -> str:
    """Markdown: per device, dtype and cell, a training and a forward table (median ms and lstm_jax ratios)."""
    rows = [row for row in rows if row.get("probe") != "memory"]
    if not rows:
        return ""
    repeats = rows[0].get("repeats", "?")
    if rows[0].get("isolated_rounds"):
        how = f"each implementation in its own process, median of {rows[0]['isolated_rounds']} rounds' medians"
        lines = [f"Machine: {_machine(rows)}; {how} of {repeats} repeats."]
    else:
        lines = [f"Machine: {_machine(rows)}; median of {repeats} interleaved repeats."]
    lines[0] += _load_note(rows)
    columns = []
    for row in rows:
        key = (row["impl"], row["variant"])
        if key not in columns:
            columns.append(key)
    columns.sort(key=lambda c: (IMPLS.index(c[0]) if c[0] in IMPLS else len(IMPLS), c[1] != "default", c[1]))
    groups = dict.fromkeys((row["device"], row["dtype"], _cell_label(row)) for row in rows)
    for device, dtype, cell_name in groups:  # in the rows' order
        subset = [r for r in rows if (r["device"], r["dtype"], _cell_label(r)) == (device, dtype, cell_name)]
        shapes = list(dict.fromkeys(_shape_label(row) for row in subset))
        by_key = {(_shape_label(r), r["impl"], r["variant"]): r for r in subset}
        for kind, title in (("train_ms", "training step"), ("fwd_ms", "forward")):
            heading = f"{device} {dtype} {CELL_TITLES.get(cell_name, cell_name)}, {title}"
            lines += ["", f"**{heading}** (ms; shape B×T×M×D×layers)", ""]
            header = ["shape"] + [_impl_label(*c) for c in columns]
            header += ["lstm_jax/torch", "lstm_jax/flax", "lstm_jax/gemm_floor"]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for shape in shapes:

                def get(impl, variant="default"):
                    row = by_key.get((shape, impl, variant))
                    return None if row is None else row[kind]

                values = [_ms(get(*c)) for c in columns]
                ratios = [_ratio(get("lstm_jax"), get(other)) for other in ("torch", "flax", "gemm_floor")]
                lines.append("| " + " | ".join([shape, *values, *ratios]) + " |")
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    """Markdown: compiled memory of the training step per implementation and options."""
    rows = [row for row in rows if row.get("probe") == "memory"]
    if not rows:
        return ""
    first = rows[0]
    lines = [
        f"Machine: {_machine(rows)}; training step at B={first['B']}, T={first['T']}, M={first['M']}, "
        f"D={first['D']}, layers={first['layers']}, {first['dtype']} (XLA `memory_analysis()`, nothing run).",
        "",
        "| impl | options | temp MiB | temp / (T·B·D·bytes) | arguments MiB | outputs MiB | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        mib = [
            f"{row[k] / 2**20:.1f}" for k in ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
        ]
        lines.append(
            f"| {row['impl']} | {_options_label(row['options'])}{' (default)' if row.get('default_options') and row['options'] else ''} | "
            f"{mib[0]} | {row['temp_per_T_B_D']} | "
            f"{mib[1]} | {mib[2]} | {row['compile_s']} |"
        )
    return "\n".join(lines)


def render(rows: list[dict]) -> str:
    return "\n\n".join(part for part in (benchmark_table(rows), memory_table(rows)) if part)


def update_docs(docs: pathlib.Path, json_path: pathlib.Path, table: str) -> bool:
    """Replace the generated block for ``json_path`` in ``docs`` (between its begin/end markers)."""
    name = _relative(json_path)
    begin, end = f"<!-- begin generated from {name} -->", f"<!-- end generated from {name} -->"
    text = docs.read_text()
    if begin not in text or end not in text:
        return False
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_atomic(docs, f"{head}{begin}\n{table}\n{end}{tail}")
    return True


def _relative(path: pathlib.Path) -> str:
    path = pathlib.Path(path).resolve()
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------------------


def _shape_arg(text: str) -> Shape:
    values = [int(v) for v in text.split(",")]
    if len(values) == 4:
        values.append(1)
    if len(values) != 5 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected B,T,M,D[,layers] of positive integers, got {text!r}")
    return Shape(*values)


def _child_args(args) -> list[str]:
    """The options of one ``--isolate`` subprocess: everything that says what to time and how."""
    child = ["--device", args.device, "--repeats", str(args.repeats), "--quiet", str(args.quiet)]
    child += ["--max-wait", str(args.max_wait)]
    for flag, value in (
        ("--shapes", args.shapes),
        ("--cells", args.cells),
        ("--dtypes", args.dtypes),
        ("--variants", args.variants),
        ("--torch-threads", args.torch_threads),
    ):
        if value is not None:
            child += [flag, str(value)]
    for shape in getattr(args, "shape", None) or ():
        child += ["--shape", ",".join(map(str, shape))]
    return child


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu", "auto"], default="cpu")
    parser.add_argument("--shapes", choices=sorted(SHAPES), help="shape set (default: the device's)")
    parser.add_argument("--dtypes", help="comma-separated, of " + ",".join(DTYPES) + " (default: the device's)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated, of " + ",".join(IMPLS))
    parser.add_argument(
        "--cells", help="comma-separated, of " + ",".join(CELLS) + " (default: lstm,gru on a CPU, lstm on a GPU)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per implementation (median reported)")
    parser.add_argument(
        "--variants", help="comma-separated lstm_jax variants to time (default: all of unroll_variants for the device)"
    )
    parser.add_argument("--budget-s", type=float, help="start no new shape after this many seconds")
    parser.add_argument(
        "--isolate", type=int, metavar="ROUNDS", help="time each implementation in its own process, ROUNDS rotations"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.15,
        help="before each repeat, wait until other processes use at most this fraction of the CPUs (1: never wait)",
    )
    parser.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for --quiet, per repeat")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads on CPU (default: torch's own)")
    parser.add_argument("--out", type=pathlib.Path, help="JSON rows (default experiments/results/bench_<device>.json)")
    parser.add_argument("--table", action="store_true", help="print the tables and write them to OUT with .md")
    parser.add_argument("--from", dest="from_json", type=pathlib.Path, help="only render the tables of this JSON")
    parser.add_argument(
        "--docs", type=pathlib.Path, help=f"also refresh the generated block in this file ({_relative(DOCS)})"
    )
    parser.add_argument(
        "--shape",
        type=_shape_arg,
        action="append",
        help="B,T,M,D[,layers]: time this shape instead of a --shapes set (repeatable)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep OUT's rows and replace only those of the problems timed now (a rerun of some shapes)",
    )
    parser.add_argument("--memory", action="store_true", help="probe compiled memory of the training step instead")
    parser.add_argument(
        "--memory-shape", type=_shape_arg, default=MEMORY_SHAPE, help="B,T,M,D[,layers] for --memory (32,10000,256,256)"
    )
    args = parser.parse_args(argv)

    if args.from_json is not None:
        table = render(json.loads(args.from_json.read_text()))
        print(table)
        if args.docs is not None and not update_docs(args.docs, args.from_json, table):
            print(f"{args.docs}: no generated block for {_relative(args.from_json)}", file=sys.stderr)
            return 1
        return 0

    impls = [name.strip() for name in args.impls.split(",") if name.strip()]
    unknown = sorted(set(impls) - set(IMPLS))
    if unknown or not impls:
        parser.error(f"--impls: expected names from {','.join(IMPLS)}, got {args.impls!r}")
    if args.repeats < 1:
        parser.error(f"--repeats: expected >= 1, got {args.repeats}")
    if args.torch_threads is not None:
        if args.torch_threads < 1:
            parser.error(f"--torch-threads: expected >= 1, got {args.torch_threads}")
        if torch_available():
            import torch

            torch.set_num_threads(args.torch_threads)
    device = pick_device(args.device)
    kind = "gpu" if device.platform == "gpu" else "cpu"
    dtypes = args.dtypes.split(",") if args.dtypes else DEFAULT_DTYPES[kind]
    if any(d not in DTYPES for d in dtypes):
        parser.error(f"--dtypes: expected names from {','.join(DTYPES)}, got {args.dtypes!r}")
    cells = args.cells.split(",") if args.cells else DEFAULT_CELLS[kind]
    if not cells or any(c not in CELLS for c in cells):
        parser.error(f"--cells: expected names from {','.join(CELLS)}, got {args.cells!r}")

    if args.memory:
        log = print
        rows = []
        for dtype in dtypes:
            rows += memory_probe(args.memory_shape, dtype, device, impls, log)
        out = args.out or RESULTS / f"bench_memory_{kind}.json"
    else:
        shapes = args.shape or SHAPES[args.shapes or kind]
        out = args.out or RESULTS / f"bench_{kind}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(out.read_text()) if args.update and out.exists() else []
        rows = (
            run_isolated(impls, args.isolate, _child_args(args))
            if args.isolate
            else run_suite(
                shapes,
                dtypes,
                impls,
                args.repeats,
                device,
                quiet=args.quiet,
                max_wait=args.max_wait,
                variants=args.variants.split(",") if args.variants else None,
                budget_s=args.budget_s,
                save=lambda rows: write_atomic(out, json.dumps(merge_rows(old, rows), indent=1) + "\n"),
                cells=cells,
            )
        )
        rows = merge_rows(old, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, json.dumps(rows, indent=1) + "\n")
    print(f"wrote {_relative(out)} ({len(rows)} rows)")
    if args.table:
        table = render(rows)
        print(table)
        write_atomic(out.with_suffix(".md"), table + "\n")
        if args.docs is not None and not update_docs(args.docs, out, table):
            print(f"{args.docs}: no generated block for {_relative(out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
