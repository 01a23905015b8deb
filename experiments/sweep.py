"""Run a grid of training runs from configs and tabulate them against the published results.

Usage (from the repository root)::

    python experiments/sweep.py adding            # run the grid (finished runs are reused)
    python experiments/sweep.py adding --table    # print the Markdown table from the results file
    python experiments/sweep.py adding copy --plot  # draw experiments/results/<experiment>.png from it
    python experiments/sweep.py adding --cells gru  # run only the GRU's grid, keep the other rows of the file
    python experiments/sweep.py adding --seeds 20 --jobs 2  # seeds 0-19, two runs at a time
    python experiments/sweep.py adding --docs     # rewrite the adding blocks of the READMEs and configs

Each run is an ordinary ``lstm_jax.train.fit`` into ``runs/sweeps/<experiment>/<run>/``; the
summaries (with each run's evaluation curve) are gathered into ``experiments/results/<experiment>.json``,
which is committed, and the tables, figures and every number quoted in the READMEs and the config
headers are made from that file (``sweep_report.py``, ``sweep_figures.py``), never typed in. With ``--cells``, only the grid points of the configs whose ``model.cell`` is named
are run; the other rows are taken unchanged from the committed results file (a model added to an
experiment does not rerun the others).
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import sys
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))  # sweep_report, sweep_figures
sys.path.insert(1, str(ROOT))  # the repository root, when not pip-installed

import sweep_figures as figures  # noqa: E402
import sweep_report as report  # noqa: E402

#: Where the runs go, one directory per grid point: ``RUNS / <experiment> / <run>``.
RUNS = ROOT / "runs" / "sweeps"

#: The GRU's "published" cell. Neither paper ran these tasks: Chung et al. 2014 compared the cells on polyphonic
#: music and speech signals; Jozefowicz et al. 2015's abstract is about the LSTM's forget bias against the GRU.
GRU_PUBLISHED = (
    "Chung et al. 2014 (music, speech): GRU comparable to LSTM; "
    "Jozefowicz et al. 2015: forget bias 1 closes the LSTM-GRU gap"
)

#: Seeds per grid point unless ``--seeds`` says otherwise (0 .. SEEDS - 1): enough for a success rate's interval.
SEEDS = 10

#: name -> configs, the grid of --set overrides (the seeds are added by :func:`runs`), and what the literature
#: reports per config and T.
EXPERIMENTS = {
    "adding": {
        "configs": ["configs/adding_lstm.yaml", "configs/adding_gru.yaml", "configs/adding_rnn.yaml"],
        "grid": {"task.params.T": [50, 100, 200]},
        "published": {
            "adding_lstm": "Arjovsky et al. 2016 Fig. 2: LSTM MSE falls to ~0 for T = 100, 200, 400",
            "adding_gru": GRU_PUBLISHED,
            "adding_rnn": "Arjovsky et al. 2016 Fig. 2: tanh RNN stays at the 0.167 baseline",
        },
    },
    "clipping": {
        "configs": ["configs/clipping_rnn.yaml"],
        "grid": {"optim.clip_norm": ["null", 10, 1]},
        "published": {
            "clipping_rnn": "Pascanu et al. 2013: without clipping, exploding gradients derail SGD; clipping prevents it",
        },
    },
    "copy": {
        "configs": ["configs/copy_lstm.yaml", "configs/copy_gru.yaml", "configs/copy_rnn.yaml"],
        "grid": {"task.params.T": [10, 20]},
        "published": {
            "copy_lstm": "Arjovsky et al. 2016 Fig. 1: LSTM beats the baseline only partly (T = 100+)",
            "copy_gru": GRU_PUBLISHED,
            "copy_rnn": "Arjovsky et al. 2016 Fig. 1: RNN stays at the memoryless baseline",
        },
    },
    "gate_init": {
        "configs": [
            {
                "path": "configs/temporal_order_lstm.yaml",
                "set": {"model.forget_bias": 0.0},
                "name": "lstm_forget_bias0",
            },
            {"path": "configs/temporal_order_gru.yaml", "set": {"model.update_bias": 1.0}, "name": "gru_update_bias1"},
        ],
        "grid": {"task.params.T": [100]},
        "published": {
            "lstm_forget_bias0": "Jozefowicz et al. 2015: a forget bias of 1 closes the gap between the LSTM and the GRU",
            "gru_update_bias1": "no published run: the GRU's counterpart of forget bias 1",
        },
    },
    "quickstart": {
        "configs": ["configs/quickstart.yaml"],
        "grid": {},
        "published": {"quickstart": "Arjovsky et al. 2016 Fig. 2: LSTM MSE falls to ~0 for T = 100"},
    },
    "temporal_order": {
        "configs": [
            "configs/temporal_order_lstm.yaml",
            "configs/temporal_order_gru.yaml",
            "configs/temporal_order_rnn.yaml",
        ],
        "grid": {"task.params.T": [20, 50, 100]},
        "seeds": 20,  # the article's central claim: twice the seeds, half as wide an interval
        "published": {
            "temporal_order_lstm": "Hochreiter & Schmidhuber 1997: LSTM solves 6a (T ~ 100)",
            "temporal_order_gru": GRU_PUBLISHED,
            "temporal_order_rnn": "Pascanu et al. 2013 Fig. 7: plain RNN success rate falls with T",
        },
    },
}


class Point(NamedTuple):
    """One run of a grid: its config file, its ``--set`` overrides, its run name and its config's name in the
    results (the file's stem, or the variant's name)."""

    path: str
    overrides: list[str]
    name: str
    config: str


def runs(experiment: str, seeds: int | None = None):
    """The :class:`Point` of every run of the experiment's grid, seeds 0 .. seeds - 1 (default: the
    experiment's ``seeds``, else :data:`SEEDS`).

    A config is a path, or ``{"path": ..., "set": {key: value}, "name": ...}``: that file with overrides of
    its own before the grid's (a variant, named ``name`` in the results)."""
    spec = EXPERIMENTS[experiment]
    grid = {**spec["grid"], "seed": list(range(seeds or spec.get("seeds", SEEDS)))}
    for entry in spec["configs"]:
        entry = entry if isinstance(entry, dict) else {"path": entry, "set": {}, "name": pathlib.Path(entry).stem}
        for values in itertools.product(*grid.values()):
            overrides = [f"{k}={v}" for k, v in (*entry["set"].items(), *zip(grid, values))]
            name = entry["name"] + "_" + "_".join(f"{k.split('.')[-1]}{v}" for k, v in zip(grid, values))
            yield Point(entry["path"], overrides, name, entry["name"])


def run_grid(experiment: str, cells: list[str] | None = None, seeds: int | None = None, jobs: int = 1) -> list[dict]:
    """Run the experiment's grid and write its results file; returns its rows, in the grid's order.

    With ``cells``, only the configs whose ``model.cell`` is one of them run; every other grid point
    keeps its row from the committed results file (left out, with a message, if the file lacks it).
    A grid point whose run directory holds a finished run is not trained again. With ``jobs > 1`` the
    runs train in that many worker processes (spawned, one run at a time each); the results file is
    rewritten as each run finishes, in the grid's order.
    """
    from lstm_jax.config import load_config

    if (seeds is not None and seeds < 1) or jobs < 1:
        raise ValueError(f"seeds, jobs: expected positive integers, got {seeds}, {jobs}")
    grid = list(runs(experiment, seeds))
    selected = {p.path for p in grid if cells is None or load_config(ROOT / p.path).model.cell in cells}
    if cells is not None and not selected:
        raise ValueError(f"cells: expected the cell of one of {EXPERIMENTS[experiment]['configs']}, got {cells}")
    kept = {} if cells is None else {row["run"]: row for row in _committed_rows(experiment)}
    done: dict[str, dict] = {}
    todo = []
    for point in grid:
        if point.path not in selected:
            if point.name in kept:
                done[point.name] = kept[point.name]
            else:
                print(f"{point.name}: not in {experiment}.json, left out (run without --cells to add it)", flush=True)
        elif _finished(RUNS / experiment / point.name):
            done[point.name] = _row(experiment, point)
        else:
            todo.append(point)
    for point in _train(experiment, todo, jobs):
        done[point.name] = row = _row(experiment, point)
        print(
            f"{point.name}: {row['status']} at step {row['steps']}, loss {(row['final'] or {}).get('loss')}", flush=True
        )
        report.write_results(experiment, _in_grid_order(grid, done, kept))
    rows = _in_grid_order(grid, done, kept)
    report.write_results(experiment, rows)
    return rows


def _finished(run_dir: pathlib.Path) -> bool:
    """The run directory holds a run that ended: solved, completed its steps, or stopped on a NaN/inf."""
    from lstm_jax import rundir

    ended = ("completed", "solved", "non_finite")
    return (run_dir / rundir.SUMMARY).exists() and rundir.read_summary(run_dir)["status"] in ended


def _row(experiment: str, point: Point) -> dict:
    """A finished run's results row: its summary, the grid point and its evaluation curve."""
    from lstm_jax import rundir

    run_dir = RUNS / experiment / point.name
    summary = rundir.read_summary(run_dir)
    row = {"run": point.name, "config": point.config, "overrides": point.overrides, **summary}
    row["curve"] = curve(rundir.read_metrics(run_dir))
    return row


def _train(experiment: str, todo: list[Point], jobs: int):
    """Train the grid points of ``todo``; yields each one as its run finishes (a diverged run is a finished run)."""
    import lstm_jax.train
    from lstm_jax import rundir
    from lstm_jax.config import load_config

    def call(point):
        """``fit`` and its arguments for one grid point (resumed where the run left checkpoints)."""
        run_dir = RUNS / experiment / point.name
        config = load_config(ROOT / point.path, point.overrides)
        return lstm_jax.train.fit, (config, run_dir), {"resume": (run_dir / rundir.CHECKPOINTS).exists()}

    def settle(point, result):
        try:
            result()
        except lstm_jax.train.NonFiniteError as error:  # a diverged run is a result, recorded in its summary
            print(f"{point.name}: {error}", flush=True)
        return point

    if jobs == 1:
        for point in todo:
            fit, args, kwargs = call(point)
            yield settle(point, lambda: fit(*args, **kwargs))
        return
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # JAX runs threads: a forked copy of it can deadlock
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {}
        for point in todo:
            fit, args, kwargs = call(point)
            futures[pool.submit(fit, *args, **kwargs)] = point
        for future in concurrent.futures.as_completed(futures):
            yield settle(futures[future], future.result)


def _committed_rows(experiment: str) -> list[dict]:
    """The rows of the results file, or none if there is no file yet."""
    return report.read_results(experiment) if (report.RESULTS / f"{experiment}.json").exists() else []


def _in_grid_order(grid: list[Point], done: dict[str, dict], kept: dict[str, dict]) -> list[dict]:
    """The rows run so far, or kept for grid points not yet reached, in the grid's order."""
    names = [p.name for p in grid]
    return [done[name] if name in done else kept[name] for name in names if name in done or name in kept]


def curve(records: list[dict]) -> dict:
    """A run's evaluations as columns: ``{"step": [...], "loss": [...], "metric": [...]}``."""
    return {key: [r[key] for r in records] for key in ("step", "loss", "metric")}


def table(experiment: str) -> str:
    """The experiment's Markdown table, from its committed results."""
    return report.table(experiment, EXPERIMENTS[experiment]["published"])


def update_docs(experiments: list[str]) -> list[pathlib.Path]:
    """Rewrite the experiments' ``sweep:`` blocks in the READMEs and configs from the committed results."""
    return report.update_docs(experiments, lambda experiment: EXPERIMENTS[experiment]["published"])


def _positive(text: str) -> int:
    """An argparse type: a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "experiments",
        nargs="+",
        choices=sorted(EXPERIMENTS),
        metavar="experiment",
        help=f"one or more of {', '.join(sorted(EXPERIMENTS))}",
    )
    parser.add_argument("--table", action="store_true", help="print the Markdown table of the saved results")
    parser.add_argument(
        "--plot", action="store_true", help="draw experiments/results/<experiment>.png from the saved results"
    )
    parser.add_argument(
        "--docs", action="store_true", help="rewrite the sweep blocks of the READMEs and configs from the saved results"
    )
    parser.add_argument(
        "--cells",
        nargs="+",
        metavar="cell",
        help="run only the configs of these cells (e.g. gru); the other rows stay as committed",
    )
    parser.add_argument(
        "--seeds",
        type=_positive,
        metavar="N",
        help=f"seeds 0 .. N-1 per grid point (default {SEEDS}, temporal_order 20)",
    )
    parser.add_argument(
        "--jobs", type=_positive, metavar="J", help="train J runs at a time, one process each (default 1)"
    )
    args = parser.parse_args(argv)
    shows = [flag for flag in ("table", "plot", "docs") if getattr(args, flag)]
    runs_with = [flag for flag in ("cells", "seeds", "jobs") if getattr(args, flag) is not None]
    if shows and runs_with:
        parser.error(f"--{runs_with[0]} is for running the grid; it does not go with --{shows[0]}")
    for experiment in args.experiments:
        if not shows:
            run_grid(experiment, args.cells, args.seeds, args.jobs or 1)
        if args.table or not shows:
            print(table(experiment))
        if args.plot or not shows:
            print(f"wrote {figures.figure(experiment)}")
    if args.docs or not shows:
        for path in update_docs(args.experiments):
            print(f"rewrote the sweep blocks of {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
