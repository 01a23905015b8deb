"""What dropout and zoneout cost on the fast path: one training step's gradient, with and without each regulariser.

Every mask is drawn once per call, outside the time loop (``lstm_jax.dropout``); this measures what that
leaves: the draws themselves, one multiply of the recurrent operand per step (recurrent dropout), the
zoneout blend per step and its saved pre-zoneout carries. Each configuration is jit-compiled once, then
the configurations are timed in interleaved rounds (so a change in the machine's load hits them alike)
and each one's median is divided by the median of the same cell without dropout.

    python experiments/dropout_cost.py            # writes experiments/results/dropout_cost.{json,md}
    python experiments/dropout_cost.py --table    # prints the table from the committed JSON
    python experiments/dropout_cost.py --quick    # tiny shapes, 3 rounds (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp

import lstm_jax as lj
from lstm_jax import registry

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
#: The regularisers timed, by label (two stacked layers, so between-layer dropout has a place to act).
SETTINGS = {
    "none": lj.Dropout(),
    "between layers 0.3": lj.Dropout(between_layers=0.3),
    "input 0.25": lj.Dropout(input=0.25),
    "recurrent 0.25": lj.Dropout(recurrent=0.25),
    "zoneout h 0.1, c 0.5": lj.Dropout(zoneout_h=0.1, zoneout_c=0.5),
    "all of them": lj.Dropout(between_layers=0.3, input=0.25, recurrent=0.25, zoneout_h=0.1, zoneout_c=0.5),
}


def _step(cell_name: str, rates: lj.Dropout, layers, xs):
    cell = registry.make_cell(cell_name)
    if cell_name != "lstm":
        rates = rates._replace(zoneout_c=0.0)

    @jax.jit
    def grads(layers, xs, key):
        def loss(layers):
            _, hs = lj.unroll_layers(cell, layers, xs, dropout=rates, key=key, training=True)
            return jnp.sum(hs**2)

        return jax.grad(loss)(layers)

    return grads


def measure(cells=("lstm", "gru"), B=32, T=100, M=32, D=128, rounds=15) -> list[dict]:
    """``rounds`` interleaved timings of every (cell, setting); one row per pair with median and ratio to none."""
    rows = []
    for cell_name in cells:
        init = registry.cell_type(cell_name).init
        layers = lj.init_layers(jax.random.key(0), init, M, D, num_layers=2)
        xs = jax.random.normal(jax.random.key(1), (B, T, M))
        steps = {label: _step(cell_name, rates, layers, xs) for label, rates in SETTINGS.items()}
        times = {label: [] for label in SETTINGS}
        for fn in steps.values():  # compile, and one warm run
            jax.block_until_ready(fn(layers, xs, jax.random.key(2)))
        load_start = os.getloadavg()[0]
        for r in range(rounds):
            for label, fn in steps.items():
                start = time.perf_counter()
                jax.block_until_ready(fn(layers, xs, jax.random.key(r)))
                times[label].append(time.perf_counter() - start)
        base = statistics.median(times["none"])
        for label in SETTINGS:
            median = statistics.median(times[label])
            rows.append(
                dict(
                    cell=cell_name,
                    setting=label,
                    B=B,
                    T=T,
                    M=M,
                    D=D,
                    layers=2,
                    median_ms=round(1e3 * median, 3),
                    ratio_to_none=round(median / base, 3),
                    load_start=round(load_start, 2),
                    load_end=round(os.getloadavg()[0], 2),
                )
            )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| cell | regulariser | gradient step, median ms | × no dropout | load (1 min) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['setting']} | {r['median_ms']:.2f} | {r['ratio_to_none']:.2f} | "
            f"{r['load_start']:.1f} → {r['load_end']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the table from the committed JSON")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, 3 rounds, nothing written")
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads((args.out / "dropout_cost.json").read_text())["rows"]))
        return
    if args.quick:
        print(table(measure(B=2, T=5, M=3, D=4, rounds=3)))
        return
    rows = measure()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = dict(backend=jax.default_backend(), jax=jax.__version__, cpus=os.cpu_count(), machine=platform.machine())
    (args.out / "dropout_cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    text = table(rows)
    (args.out / "dropout_cost.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
