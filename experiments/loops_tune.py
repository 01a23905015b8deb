"""Time the fast path's two time loops on this machine: ``lax.scan`` per ``unroll``, Pallas per tile setting.

Usage (from the repository root)::

    python experiments/loops_tune.py --out loops_tune_gpu.json     # on a GPU: the grid below
    python experiments/loops_tune.py --quick                        # anywhere: a tiny smoke run

What is timed is the recurrence alone, :func:`lstm_jax.fast.recurrence` over given pre-activations
``zs`` (the input projection and the weight-gradient GEMMs are the same for every setting): the
forward, and the forward plus backward of ``sum(hs**2)`` with respect to ``w_hh``, ``b``, ``zs``
and the initial carry, each jitted, medians of ``--repeats`` calls after warm-up, one setting after another
(:func:`tune`). Rows: ``{loops, settings, B, T, D, compute, fwd_ms, train_ms, error}``, ``error``
being the gradients' relative error against the ``lax.scan`` loops (a fast setting must be right). On a GPU this chooses
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
sys.path.insert(0, str(ROOT / "experiments"))
from pallas_check import relative_error  # noqa: E402  (experiments/pallas_check.py)

from lstm_jax import fast, pallas_lstm  # noqa: E402
from lstm_jax.cells import LSTM_CELL, LSTMState  # noqa: E402
from lstm_jax.rundir import write_atomic  # noqa: E402

#: ``(B, T, D, compute)``: the issue's small-batch GPU shapes, where the per-step launch costs most,
#: with bfloat16 operands (the target against cuDNN fp16) first.
CASES = {
    "gpu": [
        (16, 1000, 256, "bfloat16"),
        (8, 150, 256, "bfloat16"),
        (16, 1000, 256, "float32"),
        (8, 150, 256, "float32"),
    ],
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
    else:  # the defaults (block_hidden 64, 4 warps, 1 stage) first
        grid = [
            dict(block_hidden=h, num_warps=w, num_stages=s)
            for h, w, s in itertools.product([64, 32, 128], [4, 8], [1, 3])
        ]
    interpret = backend != "gpu"
    rows += [("pallas", g, pallas_lstm.PallasLoops(interpret=interpret, **g)) for g in grid]
    return rows


def _functions(loops, compute_dtype):
    kernel = LSTM_CELL.kernel

    def hs_of(w_hh, b, zs, carry0):
        return fast.recurrence(kernel, False, loops, compute_dtype, w_hh, b, (), zs, carry0, None)[1]

    def loss(w_hh, b, zs, carry0):
        return jnp.sum(jnp.square(hs_of(w_hh, b, zs, carry0)))

    return jax.jit(hs_of), jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))


def _timed(fn, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return 1000 * (time.perf_counter() - start)


def _relative_error(ours, ref) -> float:
    """The largest ``‖a − b‖ / ‖b‖`` over the leaves (the gradients of ``w_hh``, ``b``, ``zs``, ``h0``, ``c0``)."""
    return max(relative_error(a, b) for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)))


def _problem(B: int, T: int, D: int):
    k_w, k_b, k_z, k_h = jax.random.split(jax.random.key(0), 4)
    w_hh = jax.random.normal(k_w, (4 * D, D)) / jnp.sqrt(D)
    zs = jax.random.normal(k_z, (T, B, 4 * D))
    return w_hh, jax.random.normal(k_b, (4 * D,)), zs, LSTMState(*jax.random.normal(k_h, (2, B, D)))


def tune(cases, quick: bool, repeats: int, budget_s=None, save=None, log=print) -> list[dict]:
    """One row per case and setting, timed one setting at a time (compile, two warm-up calls, then
    ``repeats`` forward and training calls alternately) and saved after each, so that a run cut short
    keeps every setting it finished. ``error``: the gradients' relative error against ``lax.scan``
    with ``unroll=1`` (the first setting). A setting that fails to compile or run is logged and skipped."""
    rows, start = [], time.monotonic()
    for B, T, D, compute in cases:
        log(f"B={B} T={T} D={D} {compute}")
        args = _problem(B, T, D)
        compute_dtype = None if compute == "float32" else compute
        reference = None
        for name, setting, loops in settings(quick, jax.default_backend(), compute):
            if budget_s is not None and time.monotonic() - start > budget_s:
                log(
                    f"time budget of {budget_s:.0f} s spent: B={B} T={T} D={D} {compute} {name} {setting} and later skipped"
                )
                return rows
            try:
                forward, train = _functions(loops, compute_dtype)
                grads = train(*args)
                _timed(forward, args), _timed(forward, args), _timed(train, args)
            except Exception as error:  # e.g. a tile Triton cannot fit
                log(f"  {name} {setting}: skipped ({type(error).__name__}: {str(error).splitlines()[0][:160]})")
                continue
            reference = grads if reference is None else reference
            ms = {"fwd": [], "train": []}
            for _ in range(repeats):
                ms["fwd"].append(_timed(forward, args))
                ms["train"].append(_timed(train, args))
            row = {"loops": name, "settings": setting, "B": B, "T": T, "D": D, "compute": compute}
            row.update({f"{kind}_ms": round(statistics.median(times), 4) for kind, times in ms.items()})
            row.update(error=_relative_error(grads, reference), repeats=repeats)
            row.update(backend=jax.default_backend(), device_name=jax.devices()[0].device_kind, jax=jax.__version__)
            rows.append(row)
            log(
                f"  {name:6s} {json.dumps(setting):58s} fwd {row['fwd_ms']:9.3f} ms  train {row['train_ms']:9.3f} ms"
                f"  error {row['error']:.1e}"
            )
            if save is not None:
                save(rows)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny shape, two unrolls, one Pallas setting")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=pathlib.Path, help="JSON rows, saved after every setting")
    parser.add_argument("--budget-s", type=float, help="start no new setting after this many seconds")
    args = parser.parse_args(argv)
    save = None if args.out is None else (lambda rows: write_atomic(args.out, json.dumps(rows, indent=1) + "\n"))
    tune(CASES["quick" if args.quick else "gpu"], args.quick, args.repeats, args.budget_s, save, log=_print)
    return 0


def _print(message: str) -> None:
    print(message, flush=True)


if __name__ == "__main__":
    sys.exit(main())
