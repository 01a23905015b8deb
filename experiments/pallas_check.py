"""Check the Pallas LSTM kernels against the plain scan on this machine's backend, at the benchmark shapes.

Usage (from the repository root)::

    python experiments/pallas_check.py --out results.json          # on a GPU: impl="pallas"
    python experiments/pallas_check.py --quick                      # anywhere: impl="pallas_interpret", small shapes

For each shape and each ``compute_dtype`` (float32 operands, bfloat16 operands) it runs the forward
pass and the gradient of ``mean(hs**2)`` with the kernels and with the reference, and reports the
relative error ``‖ours − ref‖ / ‖ref‖`` of the outputs and of every gradient. The reference is
``impl="scan"`` at ``highest`` matmul precision for float32 operands (the kernels' float32 dots are
IEEE, where XLA's default on a GPU may be TF32), and the fast path's ``lax.scan`` loops with the
same bfloat16 operands for ``compute_dtype="bfloat16"``. Inputs are random normal (never zeros) and
drawn afresh per shape. Exit code 1 if any error is over its bound (float32: 1e-5; bfloat16: 2e-2).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root, when not pip-installed
import lstm_jax as lj  # noqa: E402
from lstm_jax.rundir import write_atomic  # noqa: E402

#: (B, T, M, D): the issue's small-batch GPU shapes, and one with two programs and masked lengths.
SHAPES = {
    "gpu": [(16, 1000, 256, 256), (8, 150, 256, 256), (40, 64, 64, 128)],
    "quick": [(3, 5, 4, 16), (20, 4, 3, 32)],
}
BOUNDS = {"float32": 1e-5, "bfloat16": 2e-2}


def _relative(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _outputs_and_grads(params, xs, lengths, **options):
    def loss(params):
        hs = lj.unroll(lj.lstm_cell(), params, xs, lengths=lengths, **options)[1]
        return jnp.mean(jnp.square(hs)), hs

    (_, hs), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return hs, grads


def check_shape(shape, compute: str, impl: str, seed: int = 0) -> dict:
    """One row: the relative errors of the outputs and of each gradient, and whether all are in bounds."""
    B, T, M, D = shape
    k_p, k_x, k_l = jax.random.split(jax.random.key(seed), 3)
    params = lj.init_lstm(k_p, M, D)
    xs = jax.random.normal(k_x, (B, T, M))
    lengths = jax.random.randint(k_l, (B,), 0, T + 1).at[0].set(T)  # ragged, one full sequence
    compute_dtype = None if compute == "float32" else compute
    ours = _outputs_and_grads(params, xs, lengths, impl=impl, compute_dtype=compute_dtype)
    if compute_dtype is None:
        with jax.default_matmul_precision("highest"):
            ref = _outputs_and_grads(params, xs, lengths, impl="scan")
    else:
        ref = _outputs_and_grads(params, xs, lengths, impl="fast", compute_dtype=compute_dtype)
    errors = {"hs": _relative(ours[0], ref[0])}
    errors.update({f"d_{name}": _relative(a, b) for name, a, b in zip(ours[1]._fields, ours[1], ref[1])})
    return {
        "B": B,
        "T": T,
        "M": M,
        "D": D,
        "impl": impl,
        "compute": compute,
        "backend": jax.default_backend(),
        "device_name": jax.devices()[0].device_kind,
        "errors": errors,
        "bound": BOUNDS[compute],
        "ok": all(np.isfinite(e) and e <= BOUNDS[compute] for e in errors.values()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (the interpreter's pace)")
    parser.add_argument("--out", type=pathlib.Path, help="write the rows here as JSON")
    args = parser.parse_args(argv)
    impl = "pallas" if jax.default_backend() == "gpu" else "pallas_interpret"
    rows = []
    for shape in SHAPES["quick" if args.quick else "gpu"]:
        for compute in BOUNDS:
            row = check_shape(shape, compute, impl)
            rows.append(row)
            worst = max(row["errors"].values())
            print(
                f"{impl} B={shape[0]} T={shape[1]} M={shape[2]} D={shape[3]} {compute:8s} worst {worst:.2e} "
                f"(bound {row['bound']:.0e}) {'ok' if row['ok'] else 'FAILED'}",
                flush=True,
            )
    if args.out:
        write_atomic(args.out, json.dumps(rows, indent=1) + "\n")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
