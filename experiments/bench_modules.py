"""Time lstm_jax's flax module against flax's own recurrent layer: forward and training step, on the CPU.

    python experiments/bench_modules.py                        # the default shapes, 15 repeats
    python experiments/bench_modules.py --repeats 5 --cells lstm,gru
    python experiments/bench_modules.py --shape 16,100,128,128 --shape 32,100,128,128,2

Three implementations of the same stack (``B, T, M, D, layers``; zero initial carry; the same weights):

* ``module``: ``lstm_jax.modules.linen.LSTM(D, num_layers)`` (``GRU`` for ``--cells gru``), ``module.apply``;
* ``flax``: ``nn.RNN(nn.OptimizedLSTMCell(D))`` (``nn.GRUCell``) per layer, as ``experiments/bench.py`` builds it;
* ``unroll``: the functional ``lj.unroll`` / ``lj.unroll_layers`` the module calls (its overhead is the difference).

Forward: the last layer's outputs. Training step: ``value_and_grad`` of ``mean(hs**2)`` w.r.t. every parameter.
All under ``jax.jit``, compiled and called twice first; each repeat times one call of each implementation in
turn (order rotated), and the medians are reported (``experiments/bench.py``'s :func:`time_interleaved`, whose
problems, flax runner and load probes this script imports). Before timing, the module's outputs are checked
against flax's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import statistics
import sys
import time

import jax
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository root, when not installed


def _load_bench():
    """``experiments/bench.py`` as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location("bench", HERE / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench", module)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

from lstm_jax.modules import linen as ljnn  # noqa: E402

Shape = bench.Shape
#: Shapes ``(B, T, M, D, layers)``: three of bench.py's CPU suite and a 2-layer stack.
SHAPES = [
    Shape(16, 100, 128, 128, 1),
    Shape(64, 100, 512, 512, 1),
    Shape(8, 1000, 32, 64, 1),
    Shape(32, 100, 256, 256, 2),
]
MODULES = {"lstm": ljnn.LSTM, "gru": ljnn.GRU}
IMPLS = ("module", "flax", "unroll")


def module_runner(layers, xs) -> bench.Runner:
    """Our linen module over ``layers`` (converted by :func:`lstm_jax.modules.linen.from_layers`), jitted."""
    cell = bench.cell_of(layers)
    module = MODULES[cell](bench.hidden_size(layers[0]), num_layers=len(layers))
    variables = ljnn.from_layers(layers)
    forward = jax.jit(module.apply)
    train = jax.jit(jax.value_and_grad(lambda v, x: bench.loss_of(module.apply(v, x))))
    return bench.Runner(
        "module",
        "default",
        lambda: jax.block_until_ready(forward(variables, xs)),
        lambda: jax.block_until_ready(train(variables, xs)),
        ljnn.to_layers,
    )


def runners(layers, xs) -> list[bench.Runner]:
    device = jax.devices("cpu")[0]
    flax = bench.flax_runners(layers, xs, device)
    unroll = [r._replace(impl="unroll") for r in bench.lstm_jax_runners(layers, xs, device) if r.variant == "default"]
    return [module_runner(layers, xs), *flax, *unroll]


def check_equal(found: list[bench.Runner]) -> float:
    """Max |module - flax| of the outputs (a wrong conversion would make the timings meaningless)."""
    by_impl = {r.impl: r for r in found}
    error = float(np.max(np.abs(np.asarray(by_impl["module"].forward()) - np.asarray(by_impl["flax"].forward()))))
    if error > 1e-4:
        raise SystemExit(f"module and flax differ by {error:.3g}: the benchmark would compare different maths")
    return error


def measure(shape: Shape, cell: str, repeats: int, log=print) -> dict:
    """One row: median ms of each implementation's forward and training step, the others' load while timing."""
    layers, xs = bench.problem(shape, "float32", jax.devices("cpu")[0], cell=cell)
    found = runners(layers, xs)
    for runner in found:  # compile and warm up
        runner.forward(), runner.forward(), runner.train(), runner.train()
    error = check_equal(found)
    timings = bench.time_interleaved(found, repeats)
    row = {"cell": cell, **shape._asdict(), "max_abs_diff": error, "others_busy": timings.busy}
    for (impl, _), ms in timings.ms.items():
        row[f"{impl}_fwd_ms"] = statistics.median(ms["fwd"])
        row[f"{impl}_train_ms"] = statistics.median(ms["train"])
    log(f"  {cell} {tuple(shape)}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k.endswith("_ms")))
    return row


def table(rows: list[dict]) -> str:
    """Markdown: per shape, median ms of each implementation and the ratios module / flax and module / unroll."""
    lines = [
        "| cell | B, T, M, D, layers | fwd ms: module | flax | unroll | module ÷ flax | module ÷ unroll "
        "| train ms: module | flax | unroll | module ÷ flax | module ÷ unroll | others' CPU load |",
        "|---|---|" + "---:|" * 11,
    ]
    for row in rows:
        cells = [row["cell"].upper(), ", ".join(str(row[k]) for k in Shape._fields)]
        for kind in ("fwd", "train"):
            ms = {impl: row[f"{impl}_{kind}_ms"] for impl in IMPLS}
            cells += [bench._ms(ms[impl]) for impl in IMPLS]
            cells += [f"{ms['module'] / ms['flax']:.2f}", f"{ms['module'] / ms['unroll']:.2f}"]
        busy = row.get("others_busy") or []
        cells.append(f"{100 * min(busy):.0f}–{100 * max(busy):.0f} %" if busy else "?")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=bench._shape_arg, action="append", help="B,T,M,D[,layers] (repeatable)")
    parser.add_argument("--cells", default="lstm", help="comma-separated: lstm, gru")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    cells = args.cells.split(",")
    unknown = sorted(set(cells) - set(MODULES))
    if unknown:
        parser.error(f"--cells: expected among {sorted(MODULES)}, got {unknown}")
    shapes = args.shape or SHAPES
    load_before, start = os.getloadavg(), time.perf_counter()
    print(f"{bench.device_name(jax.devices('cpu')[0])}; loadavg before {load_before[0]:.2f} {load_before[1]:.2f}")
    rows = [measure(shape, cell, args.repeats) for cell in cells for shape in shapes]
    load_after = os.getloadavg()
    print(f"loadavg after {load_after[0]:.2f} {load_after[1]:.2f}; {time.perf_counter() - start:.0f} s")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
