"""The ``lstm-jax`` command line: thin wrappers that parse, call the library and print.

Bad input (missing file, bad YAML, unknown task or optimiser, impossible sizes), a run directory
in use, out of memory, an XLA runtime error or an unavailable platform give one line on stderr and
exit code 2; a run stopped by a NaN or inf exits with 1; a run stopped by SIGINT or SIGTERM
checkpoints, prints one line and exits with 130 or 143 (a second signal ends it at once).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import sys

from lstm_jax import signals


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got 0")
    return value


def _resume_mode(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(f"expected no value or 'auto', got {text!r}")
    return text


def _directory(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a directory path, got {text!r}")
    return text


def _gradcheck(args: argparse.Namespace) -> int:
    from lstm_jax import gradcheck

    rows = gradcheck.run(args.seed)
    print("Gradient check (float64): max relative error, random problem with ragged lengths and non-zero initial state")
    print(f"{'model':<9} {'manual vs autodiff':>20} {'autodiff vs FD':>16} {'manual vs FD':>14}  status")
    for row in rows:
        status = "ok" if row.ok else "FAIL"
        print(
            f"{row.model:<9} {row.manual_vs_autodiff:>20.2e} {row.autodiff_vs_fd:>16.2e} {row.manual_vs_fd:>14.2e}  {status}"
        )
    print(
        f"tolerances: manual vs autodiff <= {gradcheck.MANUAL_TOL:.0e}; vs finite differences <= {gradcheck.FD_TOL:.0e}"
    )
    return 0 if all(row.ok for row in rows) else 1


def _train(args: argparse.Namespace) -> int:
    from lstm_jax import config as cfg
    from lstm_jax import train

    config = cfg.load_config(args.config, args.set)
    run_dir = pathlib.Path(args.out) if args.out is not None else pathlib.Path("runs") / config.name
    summary = train.fit(config, run_dir, resume=args.resume, progress=False if args.no_progress else "auto")
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

    prompt = args.prompt if args.prompt is not None else ev.default_prompt(args.run_dir)
    print(prompt + ev.sample_run(args.run_dir, prompt, args.length, temperature=args.temperature, seed=args.seed))
    return 0


#: ``lstm-jax export --to`` choices (:data:`lstm_jax.export.FORMATS`, named here so that parsing imports nothing).
EXPORT_FORMATS = ("torch", "safetensors", "keras")


def _file(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file path, got {text!r}")
    return text


def _export(args: argparse.Namespace) -> int:
    from lstm_jax import export

    done = export.export_run(args.run_dir, args.to, args.out)
    d = done.description
    model = ""
    if "cell" in d:
        shape = [d["cell"], f"{d['num_layers']} layer(s)", f"hidden {d['hidden_size']}"]
        shape += ["bidirectional"] * d["bidirectional"] + [f"proj {d['proj_size']}"] * bool(d["proj_size"])
        model = f" ({', '.join(shape)})"
    print(f"{args.run_dir}: step {done.step} exported for {args.to}{model}: {', '.join(map(str, done.paths))}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from lstm_jax.api import catalog

    found = catalog(args.configs)
    print("configs:")
    paths = [
        os.path.relpath(c.path) if not os.path.relpath(c.path).startswith("..") else str(c.path) for c in found.configs
    ]
    width = max(map(len, paths), default=0)
    for path, entry in zip(paths, found.configs):
        print(f"  {path:<{width}}  {entry.purpose}")
    if not found.configs:
        print("  (none found; pass --configs DIR)")
    print("tasks (task.name, then task.params with defaults):")
    for entry in found.tasks:
        print(f"  {entry.name:<15} {entry.purpose}")
        params = ", ".join(f"{k}={v!r}" for k, v in entry.parameters.items() if k != "split")
        print(f"  {'':<15} {params or '(no parameters)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-jax", description="The article's RNN and LSTM in JAX.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("gradcheck", help="manual BPTT vs jax.grad vs finite differences (float64)")
    check.add_argument("--seed", type=_non_negative_int, default=0, help="PRNG seed of the random problem (default 0)")
    check.set_defaults(run=_gradcheck)
    tr = commands.add_parser("train", help="train from a YAML config into a run directory")
    tr.add_argument("config", help="a YAML config, e.g. configs/quickstart.yaml")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    tr.add_argument("--out", type=_directory, help="run directory (default runs/<config name>)")
    tr.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        type=_resume_mode,
        metavar="auto",
        help="continue from the run directory's newest checkpoint; '--resume auto' starts fresh where there is "
        "none (one command for jobs that may be requeued)",
    )
    tr.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: one line per evaluation (the default off a terminal)",
    )
    tr.set_defaults(run=_train)
    ev = commands.add_parser("eval", help="evaluate a run's latest checkpoint on held-out data")
    ev.add_argument("run_dir")
    ev.add_argument(
        "--batches",
        type=_positive_int,
        default=8,
        help="fresh evaluation batches of a generated task (default 8); real-data tasks use their whole test split",
    )
    ev.set_defaults(run=_eval)
    sp = commands.add_parser("sample", help="sample text from a trained character model (task charlm)")
    sp.add_argument("run_dir")
    sp.add_argument(
        "--prompt", help="text the model reads first (default: the first line of the run's own training text)"
    )
    sp.add_argument("--length", type=_positive_int, default=200, help="characters to generate (default 200)")
    sp.add_argument("--temperature", type=float, default=0.7, help="softmax temperature > 0 (default 0.7)")
    sp.add_argument("--seed", type=_non_negative_int, default=0)
    sp.set_defaults(run=_sample)
    ex = commands.add_parser(
        "export", help="write a run's trained model under PyTorch's names (torch .pt, safetensors) or as a Keras model"
    )
    ex.add_argument("run_dir")
    ex.add_argument("--to", required=True, choices=EXPORT_FORMATS, help="the format: %(choices)s")
    ex.add_argument(
        "--out",
        type=_file,
        help="the file to write (default RUN_DIR/model.pt, .safetensors or .keras; torch writes its .json beside it)",
    )
    ex.set_defaults(run=_export)
    ls = commands.add_parser("list", help="the configs with their purpose, the tasks and their parameters")
    ls.add_argument(
        "--configs", type=_directory, help="a directory of YAML configs (default: the source tree's configs/)"
    )
    ls.set_defaults(run=_list)
    return parser


def _error(message: str, code: int) -> int:
    lines = [line for line in str(message).splitlines() if line.strip()]
    print(f"lstm-jax: {lines[0] if lines else message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import jax

        from lstm_jax.train import NonFiniteError, ResourceError, check_platform
    except ImportError as error:
        return _error(f"error: {error}", 2)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    # `train` stops gracefully on SIGINT/SIGTERM, also while JAX starts its backend and compiles;
    # the other commands keep Python's own handling (Ctrl-C: KeyboardInterrupt, caught below).
    handlers = signals.stop_requests() if args.command == "train" else contextlib.nullcontext(signals.StopRequest())
    with handlers as stop:
        try:
            check_platform()
            if stop.signum is not None:  # before any work began: nothing to save
                return _error(f"{stop.name}: stopped before training began", 128 + stop.signum)
            return args.run(args)
        except KeyboardInterrupt:  # a Ctrl-C outside the training loop
            return _error("interrupted", 130)
        except signals.Interrupted as stopped:
            return _error(str(stopped), stopped.exit_code)
        except NonFiniteError as error:
            return _error(str(error), 1)
        except (ResourceError, ValueError, OSError, ImportError) as error:
            return _error(f"error: {error}", 2)
        except jax.errors.JaxRuntimeError as error:  # outside training (eval, sample): the device's own error
            return _error(f"error: XLA runtime error: {error}", 2)


if __name__ == "__main__":
    sys.exit(main())
