"""The ``lstm-jax`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

import argparse
import sys


def _gradcheck(args: argparse.Namespace) -> int:
    from lstm_jax import gradcheck

    rows = gradcheck.run(args.seed)
    print("Gradient check (float64): max relative error, random problem with ragged lengths and non-zero initial state")
    print(f"{'model':<6} {'manual vs autodiff':>20} {'autodiff vs FD':>16} {'manual vs FD':>14}  status")
    for row in rows:
        status = "ok" if row.ok else "FAIL"
        print(
            f"{row.model:<6} {row.manual_vs_autodiff:>20.2e} {row.autodiff_vs_fd:>16.2e} {row.manual_vs_fd:>14.2e}  {status}"
        )
    print(
        f"tolerances: manual vs autodiff <= {gradcheck.MANUAL_TOL:.0e}; vs finite differences <= {gradcheck.FD_TOL:.0e}"
    )
    return 0 if all(row.ok for row in rows) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-jax", description="The article's RNN and LSTM in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("gradcheck", help="manual BPTT vs jax.grad vs finite differences (float64)")
    check.add_argument("--seed", type=int, default=0, help="PRNG seed of the random problem (default 0)")
    check.set_defaults(run=_gradcheck)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
