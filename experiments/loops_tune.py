"""Time the fast path's two time loops on this machine: ``lax.scan`` per ``unroll``, Pallas per tile setting.

Usage (from the repository root)::

    python experiments/loops_tune.py --out loops_tune_gpu.json     # on a GPU: the grid below
    python experiments/loops_tune.py --quick                        # anywhere: a tiny smoke run

What is timed is the recurrence alone, :func:`lstm_jax.fast.recurrence` over given pre-activations
``zs`` (the input projection and the weight-gradient GEMMs are the same for every setting): the
forward, and the forward plus backward of ``sum(hs**2)`` with respect to ``w_hh``, ``zs`` and the
initial carry, each jitted, medians of ``--repeats`` calls after two warm-up calls, the settings
interleaved. Rows: ``{loops, settings, B, T, D, compute, fwd_ms, train_ms}``. On a GPU this chooses
``DEFAULT_UNROLL["gpu"]`` and the Pallas kernels' block sizes (``PallasLoops``); nothing here is a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root, when not pip-installed
from lstm_jax import fast, pallas_lstm  # noqa: E402
from lstm_jax.cells import LSTM_CELL, LSTMState  # noqa: E402
from lstm_jax.rundir import write_atomic  # noqa: E402

#: ``(B, T, D, compute)``: the issue's small-batch GPU shapes, where the per-step launch costs most,
#: with bfloat16 operands (the target against cuDNN fp16) first.
CASES = {
    "gpu": [(16, 1000, 256, "bfloat16"), (8, 150, 256, "bfloat16"), (16, 1000, 256, "float32"), (8, 150, 256, "float32")],
    "quick": [(3, 4, 16, "float32")],
}


def settings(quick: bool, backend: str, compute: str) -> list[tuple[str, dict, object]]:
    """``(loops name, settings, loops object)`` to time: scan per unroll, then Pallas block settings
    (a grid for bfloat16 operands, the defaults for float32)."""
    unrolls = [1, 2] if quick else [1, 2, 4, 8, 16]
    rows = [("scan", {"unroll": u}, fast.ScanLoops(u)) for u in unrolls]
    if quick:
        grid = [dict(block_hidden=16)]
    elif compute == "float32":
        grid = [{}]
    else:
        grid = [
            dict(block_hidden=h, num_warps=w, num_stages=s)
            for h, w, s in itertools.product([32, 64, 128], [4, 8], [1, 3])
        ]
    interpret = backend != "gpu"
    rows += [("pallas", g, pallas_lstm.PallasLoops(interpret=interpret, **g)) for g in grid]
    return rows


def _functions(loops, compute_dtype):
    kernel = fast.KERNELS[LSTM_CELL]

    def hs_of(w_hh, zs, carry0):
        return fast.recurrence(kernel, False, loops, compute_dtype, w_hh, zs, carry0, None)[1]

    def loss(w_hh, zs, carry0):
        return jnp.sum(jnp.square(hs_of(w_hh, zs, carry0)))

    return jax.jit(hs_of), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


def _timed(fn, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return 1000 * (time.perf_counter() - start)


def tune_shape(shape, compute: str, candidates, repeats: int, log=print) -> list[dict]:
    """Rows for one shape and compute dtype; a setting that fails to compile or run is logged and skipped."""
    B, T, D = shape
    k_w, k_z, k_h = jax.random.split(jax.random.key(0), 3)
    w_hh = jax.random.normal(k_w, (4 * D, D)) / jnp.sqrt(D)
    zs = jax.random.normal(k_z, (T, B, 4 * D))
    carry0 = LSTMState(*jax.random.normal(k_h, (2, B, D)))
    args = (w_hh, zs, carry0)
    compute_dtype = None if compute == "float32" else compute
    ready = []
    for name, setting, loops in candidates:
        try:
            forward, train = _functions(loops, compute_dtype)
            for _ in range(2):
                _timed(forward, args), _timed(train, args)
        except Exception as error:  # e.g. a tile Triton cannot fit
            log(f"  {name} {setting}: skipped ({type(error).__name__}: {str(error).splitlines()[0][:160]})")
            continue
        ready.append((name, setting, forward, train, {"fwd": [], "train": []}))
    for repeat in range(repeats):
        for _name, _setting, forward, train, ms in ready[repeat % len(ready) :] + ready[: repeat % len(ready)]:
            ms["fwd"].append(_timed(forward, args))
            ms["train"].append(_timed(train, args))
    rows = []
    for name, setting, _, _, ms in ready:
        row = {"loops": name, "settings": setting, "B": B, "T": T, "D": D, "compute": compute}
        row.update(fwd_ms=round(statistics.median(ms["fwd"]), 4), train_ms=round(statistics.median(ms["train"]), 4))
        row.update(backend=jax.default_backend(), device_name=jax.devices()[0].device_kind, jax=jax.__version__)
        rows.append(row)
        log(f"  {name:6s} {json.dumps(setting):58s} fwd {row['fwd_ms']:9.3f} ms  train {row['train_ms']:9.3f} ms")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny shape, two unrolls, one Pallas setting")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=pathlib.Path, help="JSON rows, saved after every shape")
    parser.add_argument("--budget-s", type=float, help="start no new shape after this many seconds")
    args = parser.parse_args(argv)
    rows, start = [], time.monotonic()
    for B, T, D, compute in CASES["quick" if args.quick else "gpu"]:
        if args.budget_s is not None and time.monotonic() - start > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s spent: B={B} T={T} D={D} {compute} and later skipped")
            break
        print(f"B={B} T={T} D={D} {compute}", flush=True)
        candidates = settings(args.quick, jax.default_backend(), compute)
        rows += tune_shape((B, T, D), compute, candidates, args.repeats)
        if args.out:
            write_atomic(args.out, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
