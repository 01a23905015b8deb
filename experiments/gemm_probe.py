"""How fast are this machine's float32 GEMMs through XLA, against numpy's BLAS and torch? The LSTM's GEMM shapes.

Usage (from the repository root)::

    python experiments/gemm_probe.py --out experiments/results/gemm_probe_cpu.json --table

The fast path's time on the CPU is mostly GEMMs (docs/benchmarks.md): the input projection
``(T·B, M) × (M, 4D)``, the per-step recurrent product ``(B, D) × (D, 4D)``, and the weight
gradient ``(4D, T·B) × (T·B, D)``. This times each shape of the CPU benchmark suite three ways in
turn, on the same operands: ```a @ b`` in a jitted loop (XLA's CPU GEMM), ``numpy.matmul``
(the BLAS numpy was built with), and ``torch.matmul`` when torch is importable, each library in
its own subprocess (:func:`probe` says why). Rows report the median ms and GFLOP/s; the table gives
XLA's throughput as a fraction of the others'. No numbers are
asserted anywhere: it explains a limit, it does not test one.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root, when not pip-installed
sys.path.insert(0, str(ROOT / "experiments"))
from lstm_jax.rundir import write_atomic  # noqa: E402

#: (name, m, k, n) for ``(m, k) × (k, n)``: the GEMMs of the CPU suite's shapes (B×T×M×D).
SHAPES = [
    ("projection 64×100×512×512", 6400, 512, 2048),
    ("recurrent step B=64 D=512", 64, 512, 2048),
    ("weight grad 64×100×512", 2048, 6400, 512),
    ("projection 16×100×128×128", 1600, 128, 512),
    ("recurrent step B=16 D=128", 16, 128, 512),
    ("projection 32×100×256×256", 3200, 256, 1024),
    ("recurrent step B=32 D=256", 32, 256, 1024),
]
QUICK = [("tiny", 8, 16, 32)]


#: GEMMs per timed call: XLA runs them in one jitted loop, numpy and torch in a Python loop, so XLA's
#: dispatch of a jitted call (tens of µs) is spread over them as it is over a scan's steps.
INNER = 10


def _calls(library: str, a: np.ndarray, b: np.ndarray):
    """``() -> `` :data:`INNER` products ``a @ b`` through ``library``, waiting for the result."""
    if library == "xla":

        def chain(a, b):  # (a + i) keeps XLA from hoisting the loop-invariant product out of the loop
            zeros = jnp.zeros((a.shape[0], b.shape[1]), a.dtype)
            return jax.lax.fori_loop(0, INNER, lambda i, acc: acc + (a + i.astype(a.dtype)) @ b, zeros)

        xla, ja, jb = jax.jit(chain), jnp.asarray(a), jnp.asarray(b)
        return lambda: jax.block_until_ready(xla(ja, jb))
    if library == "numpy":
        return lambda: [np.matmul(a, b) for _ in range(INNER)]
    import torch

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return lambda: [torch.matmul(ta, tb) for _ in range(INNER)]


def time_library(library: str, shapes, repeats: int) -> list[float]:
    """Median ms per GEMM for each shape with one library, in this process (no other library's threads)."""
    rng = np.random.default_rng(0)
    medians = []
    for _, m, k, n in shapes:
        call = _calls(library, rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32))
        call(), call()  # warm-up: compile, allocate, spin up threads
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(1000 * (time.perf_counter() - start) / INNER)
        medians.append(statistics.median(times))
    return medians


def probe(shapes, repeats: int, rounds: int = 3, log=print) -> list[dict]:
    """One row per shape and library: the median over ``rounds`` of each round's median ms.

    Each library runs in its own subprocess, one after another, in ``rounds`` rotations: timed in one
    process, interleaved call by call, the libraries' thread pools (XLA's Eigen, OpenBLAS, torch's
    OpenMP) spin while another library runs and slow it down, small GEMMs by 100× here.
    """
    from bench import cpu_model, torch_available, versions  # experiments/bench.py, beside this file

    libraries = ["xla", "numpy"] + (["torch"] if torch_available() else [])
    ms = {lib: [] for lib in libraries}
    for round_ in range(rounds):
        for lib in libraries[round_ % len(libraries) :] + libraries[: round_ % len(libraries)]:
            command = [sys.executable, __file__, "--library", lib, "--repeats", str(repeats)]
            command += ["--quick"] if shapes == QUICK else []
            ms[lib].append(json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout))
    rows = []
    for index, (name, m, k, n) in enumerate(shapes):
        for lib in libraries:
            median = statistics.median(round_ms[index] for round_ms in ms[lib])
            rows.append(
                {
                    "gemm": name,
                    "m": m,
                    "k": k,
                    "n": n,
                    "library": lib,
                    "ms": round(median, 4),
                    "gflops": float(
                        f"{2 * m * k * n / median / 1e6:.3g}"
                    ),  # 3 significant figures: a tiny GEMM is < 1 GF/s
                    "repeats": repeats,
                    "rounds": rounds,
                    "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs",
                    "versions": versions(),
                }
            )
        log(f"{name:32s} " + "  ".join(f"{r['library']} {r['gflops']:7.1f} GF/s" for r in rows[-len(libraries) :]))
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per GEMM, GFLOP/s per library and XLA's throughput as a fraction of each other's."""
    libraries = list(dict.fromkeys(r["library"] for r in rows))
    others = [lib for lib in libraries if lib != "xla"]
    header = ["GEMM (m×k×n)"] + [f"{lib} GF/s" for lib in libraries] + [f"xla/{lib}" for lib in others]
    lines = [f"Machine: {rows[0]['machine']}; {rows[0]['versions']}; median of {rows[0]['repeats']} calls.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for gemm in dict.fromkeys(r["gemm"] for r in rows):
        by_lib = {r["library"]: r for r in rows if r["gemm"] == gemm}
        first = next(iter(by_lib.values()))
        cells = [f"{gemm} ({first['m']}×{first['k']}×{first['n']})"]
        cells += [f"{by_lib[lib]['gflops']:.0f}" if lib in by_lib else "—" for lib in libraries]
        cells += [
            f"{by_lib['xla']['gflops'] / by_lib[lib]['gflops']:.2f}" if {"xla", lib} <= set(by_lib) else "—"
            for lib in others
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="one tiny GEMM (a smoke test)")
    parser.add_argument("--out", type=pathlib.Path, help="JSON rows; with --table also the Markdown next to it")
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="subprocess rotations (median of their medians)")
    parser.add_argument("--library", choices=["xla", "numpy", "torch"], help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args(argv)
    shapes = QUICK if args.quick else SHAPES
    if args.library:  # a worker: print this library's medians as JSON
        print(json.dumps(time_library(args.library, shapes, args.repeats)))
        return 0
    rows = probe(shapes, args.repeats, args.rounds)
    if args.out:
        write_atomic(args.out, json.dumps(rows, indent=1) + "\n")
    if args.table:
        text = table(rows)
        print(text)
        if args.out:
            write_atomic(args.out.with_suffix(".md"), text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
