"""The ``lstm-jax`` command line: thin wrappers that parse, call the library and print.

Bad input (missing file, bad YAML, unknown task or optimiser, impossible sizes) gives one line on
stderr and exit code 2; a run stopped by a NaN or inf exits with 1.
"""

from __future__ import annotations

import argparse
import pathlib
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


def _train(args: argparse.Namespace) -> int:
    from lstm_jax import config as cfg
    from lstm_jax import train

    config = cfg.load_config(args.config, args.set)
    run_dir = pathlib.Path(args.out) if args.out else pathlib.Path("runs") / config.name
    summary = train.fit(config, run_dir, resume=args.resume, progress=not args.no_progress)
    final = summary["final"] or {}
    metric = summary["metric_name"]
    print(
        f"{config.name}: {summary['status']} after {summary['steps']} steps in {summary['wall_seconds']:.1f} s; "
        f"eval loss {final.get('loss', float('nan')):.4g} vs baseline {summary['baseline']['loss']:.4g} "
        f"({summary['baseline']['what']}); {metric} {final.get(metric, float('nan')):.4g}; "
        f"solved: {summary['solved']} ({summary['solved_rule']})"
    )
    print(f"run directory: {run_dir}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from lstm_jax import evaluate as ev

    result = ev.evaluate_run(args.run_dir, num_batches=args.batches)
    print(
        f"{args.run_dir}: step {result['step']}: loss {result['loss']:.4g} vs baseline {result['baseline']:.4g}; "
        f"{result['metric_name']} {result['metric']:.4g}; solved: {result['solved']}"
    )
    return 0


def _sample(args: argparse.Namespace) -> int:
    from lstm_jax import evaluate as ev

    print(
        args.prompt
        + ev.sample_run(args.run_dir, args.prompt, args.length, temperature=args.temperature, seed=args.seed)
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-jax", description="The article's RNN and LSTM in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("gradcheck", help="manual BPTT vs jax.grad vs finite differences (float64)")
    check.add_argument("--seed", type=int, default=0, help="PRNG seed of the random problem (default 0)")
    check.set_defaults(run=_gradcheck)
    tr = commands.add_parser("train", help="train from a YAML config into a run directory")
    tr.add_argument("config", help="a YAML config, e.g. configs/quickstart.yaml")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    tr.add_argument("--out", help="run directory (default runs/<config name>)")
    tr.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(run=_train)
    ev = commands.add_parser("eval", help="evaluate a run's latest checkpoint on held-out data")
    ev.add_argument("run_dir")
    ev.add_argument(
        "--batches",
        type=int,
        default=8,
        help="fresh evaluation batches of a generated task (default 8); real-data tasks use their whole test split",
    )
    ev.set_defaults(run=_eval)
    sp = commands.add_parser("sample", help="sample text from a trained character model (task charlm)")
    sp.add_argument("run_dir")
    sp.add_argument("--prompt", default="Beautiful is", help="text the model reads first")
    sp.add_argument("--length", type=int, default=200, help="characters to generate (default 200)")
    sp.add_argument("--temperature", type=float, default=0.7, help="softmax temperature > 0 (default 0.7)")
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(run=_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import jax

    from lstm_jax.train import NonFiniteError

    try:
        return args.run(args)
    except NonFiniteError as error:
        print(f"lstm-jax: {error}", file=sys.stderr)
        return 1
    except (ValueError, OSError, ImportError) as error:
        print(f"lstm-jax: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    except jax.errors.JaxRuntimeError as error:  # e.g. RESOURCE_EXHAUSTED: sizes too large for the device
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        print(f"lstm-jax: error: out of device memory: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
