"""Check the Pallas LSTM kernels against the plain scan on this machine's backend, at the benchmark shapes.

Usage (from the repository root)::

    python experiments/pallas_check.py --out results.json          # on a GPU: impl="pallas"
    python experiments/pallas_check.py --quick                      # anywhere: impl="pallas_interpret", small shapes

For each case (shape, direction) and each ``compute_dtype`` (float32 operands, bfloat16 operands) it
runs the forward pass and the gradient of a loss of the outputs and the final carry with respect to
the parameters and the (random) initial carry, with the kernels and with the reference, and reports
the relative error ``‖ours − ref‖ / ‖ref‖`` of the outputs, the final carry and every gradient.
Float32: both run at ``highest`` matmul precision (the kernels' float32 dots, like XLA's, are TF32
by default on a GPU), the reference being ``impl="scan"``. bfloat16: the reference is the fast
path's ``lax.scan`` loops with the same bfloat16 operands. Inputs are random normal (never zeros)
with ragged lengths. Exit code 1 if any error is over its bound (float32: 1e-5; bfloat16: 2e-3;
kernels that skipped the bfloat16 rounding differ by about 1e-3 on small problems).
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

#: ((B, T, M, D), reverse): the issue's small-batch GPU shapes, and three programs run in reverse.
CASES = {
    "gpu": [((16, 1000, 256, 256), False), ((8, 150, 256, 256), False), ((40, 64, 64, 128), True)],
    "quick": [((3, 5, 4, 16), False), ((20, 4, 3, 32), True)],
}
BOUNDS = {"float32": 1e-5, "bfloat16": 2e-3}


def relative_error(a, b) -> float:
    """``‖a − b‖ / ‖b‖`` in float64 (``b`` the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _outputs_and_grads(params, xs, carry0, lengths, **options):
    """``(hs, final carry, ∂L/∂params, ∂L/∂carry0)`` for a loss of every output and the final carry."""

    def loss(params, carry0):
        carry, hs = lj.unroll(lj.lstm_cell(), params, xs, carry0, lengths=lengths, **options)
        return jnp.mean(jnp.square(hs)) + jnp.mean(carry.h) + jnp.mean(jnp.square(carry.c)), (hs, carry)

    grad = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
    (_, (hs, carry)), (d_params, d_carry0) = grad(params, carry0)
    return hs, carry, d_params, d_carry0


def check_shape(shape, compute: str, impl: str, reverse: bool = False, seed: int = 0) -> dict:
    """One row: the relative error of the outputs, the final carry and each gradient; whether all are in bounds."""
    B, T, M, D = shape
    k_p, k_x, k_l, k_h, k_c = jax.random.split(jax.random.key(seed), 5)
    params = lj.init_lstm(k_p, M, D)
    xs = jax.random.normal(k_x, (B, T, M))
    carry0 = lj.LSTMState(jax.random.normal(k_h, (B, D)), jax.random.normal(k_c, (B, D)))
    lengths = jax.random.randint(k_l, (B,), 0, T + 1).at[0].set(T)  # ragged, one full sequence
    args = (params, xs, carry0, lengths)
    if compute == "float32":
        with jax.default_matmul_precision("highest"):
            ours = _outputs_and_grads(*args, impl=impl, reverse=reverse)
            ref = _outputs_and_grads(*args, impl="scan", reverse=reverse)
    else:
        ours = _outputs_and_grads(*args, impl=impl, reverse=reverse, compute_dtype=compute)
        ref = _outputs_and_grads(*args, impl="fast", reverse=reverse, compute_dtype=compute)
    errors = {"hs": relative_error(ours[0], ref[0])}
    errors.update({f"final_{name}": relative_error(a, b) for name, a, b in zip(ours[1]._fields, ours[1], ref[1])})
    errors.update({f"d_{name}": relative_error(a, b) for name, a, b in zip(ours[2]._fields, ours[2], ref[2])})
    errors.update({f"d_{name}0": relative_error(a, b) for name, a, b in zip(ours[3]._fields, ours[3], ref[3])})
    return {
        "B": B,
        "T": T,
        "M": M,
        "D": D,
        "reverse": reverse,
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
    for shape, reverse in CASES["quick" if args.quick else "gpu"]:
        for compute in BOUNDS:
            row = check_shape(shape, compute, impl, reverse)
            rows.append(row)
            worst = max(row["errors"], key=row["errors"].get)
            print(
                f"{impl} B={shape[0]} T={shape[1]} M={shape[2]} D={shape[3]} reverse={reverse} {compute:8s} "
                f"worst {worst} {row['errors'][worst]:.2e} (bound {row['bound']:.0e}) {'ok' if row['ok'] else 'FAILED'}",
                flush=True,
            )
    if args.out:
        write_atomic(args.out, json.dumps(rows, indent=1) + "\n")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
