"""Run a grid of training runs from configs and tabulate them against the published results.

Usage (from the repository root)::

    python experiments/sweep.py adding            # run the grid (finished runs are reused)
    python experiments/sweep.py adding --table    # print the Markdown table from the results file
    python experiments/sweep.py adding copy --plot  # draw experiments/results/<experiment>.png from it
    python experiments/sweep.py adding --cells gru  # run only the GRU's grid, keep the other rows of the file

Each run is an ordinary ``lstm_jax.train.fit`` into ``runs/sweeps/<experiment>/<run>/``; the
summaries (with each run's evaluation curve) are gathered into ``experiments/results/<experiment>.json``,
which is committed, and the table and figure in ``experiments/README.md`` are made from that file,
never typed in. With ``--cells``, only the grid points of the configs whose ``model.cell`` is named
are run; the other rows are taken unchanged from the committed results file (a model added to an
experiment does not rerun the others).
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import statistics
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
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
    "temporal_order": {
        "configs": [
            "configs/temporal_order_lstm.yaml",
            "configs/temporal_order_gru.yaml",
            "configs/temporal_order_rnn.yaml",
        ],
        "grid": {"task.params.T": [20, 50, 100]},
        "published": {
            "temporal_order_lstm": "Hochreiter & Schmidhuber 1997: LSTM solves 6a (T ~ 100)",
            "temporal_order_gru": GRU_PUBLISHED,
            "temporal_order_rnn": "Pascanu et al. 2013 Fig. 7: plain RNN success rate falls with T",
        },
    },
}

#: A run "diverged" when it stopped on a NaN/inf, or its final eval loss is over this many baselines.
DIVERGED_FACTOR = 10


def runs(experiment: str, seeds: int = SEEDS):
    """``(config path, overrides, run name)`` for every point of the experiment's grid, seeds 0 .. seeds - 1."""
    spec = EXPERIMENTS[experiment]
    grid = {**spec["grid"], "seed": list(range(seeds))}
    for config in spec["configs"]:
        for values in itertools.product(*grid.values()):
            overrides = [f"{k}={v}" for k, v in zip(grid, values)]
            name = pathlib.Path(config).stem + "_" + "_".join(f"{k.split('.')[-1]}{v}" for k, v in zip(grid, values))
            yield config, overrides, name


def run_grid(experiment: str, cells: list[str] | None = None, seeds: int = SEEDS, jobs: int = 1) -> list[dict]:
    """Run the experiment's grid and write its results file; returns its rows, in the grid's order.

    With ``cells``, only the configs whose ``model.cell`` is one of them run; every other grid point
    keeps its row from the committed results file (left out, with a message, if the file lacks it).
    A grid point whose run directory holds a finished run is not trained again. With ``jobs > 1`` the
    runs train in that many worker processes (spawned, one run at a time each); the results file is
    rewritten as each run finishes, in the grid's order.
    """
    from lstm_jax.config import load_config

    if seeds < 1 or jobs < 1:
        raise ValueError(f"seeds, jobs: expected positive integers, got {seeds}, {jobs}")
    grid = list(runs(experiment, seeds))
    selected = {c for c, _, _ in grid if cells is None or load_config(ROOT / c).model.cell in cells}
    if cells is not None and not selected:
        raise ValueError(f"cells: expected the cell of one of {EXPERIMENTS[experiment]['configs']}, got {cells}")
    kept = {} if cells is None else {row["run"]: row for row in _committed_rows(experiment)}
    done: dict[str, dict] = {}
    todo = []
    for config_path, overrides, name in grid:
        if config_path not in selected:
            if name in kept:
                done[name] = kept[name]
            else:
                print(f"{name}: not in {experiment}.json, left out (run without --cells to add it)", flush=True)
        elif _finished(RUNS / experiment / name):
            done[name] = _row(experiment, config_path, overrides, name)
        else:
            todo.append((config_path, overrides, name))
    for config_path, overrides, name in _train(experiment, todo, jobs):
        done[name] = row = _row(experiment, config_path, overrides, name)
        print(f"{name}: {row['status']} at step {row['steps']}, loss {(row['final'] or {}).get('loss')}", flush=True)
        write_results(experiment, _in_grid_order(grid, done, kept))
    rows = _in_grid_order(grid, done, kept)
    write_results(experiment, rows)
    return rows


def _finished(run_dir: pathlib.Path) -> bool:
    from lstm_jax import rundir

    return (run_dir / rundir.SUMMARY).exists() and rundir.read_summary(run_dir)["status"] in (
        "completed",
        "solved",
        "non_finite",
    )


def _row(experiment: str, config_path: str, overrides: list[str], name: str) -> dict:
    """A finished run's results row: its summary, the grid point and its evaluation curve."""
    from lstm_jax import rundir

    run_dir = RUNS / experiment / name
    summary = rundir.read_summary(run_dir)
    row = {"run": name, "config": pathlib.Path(config_path).stem, "overrides": overrides, **summary}
    row["curve"] = curve(rundir.read_metrics(run_dir))
    return row


def _train(experiment: str, todo: list[tuple], jobs: int):
    """Train the grid points of ``todo``; yields each one as its run finishes (a diverged run is a finished run)."""
    import lstm_jax.train
    from lstm_jax import rundir
    from lstm_jax.config import load_config

    def call(config_path, overrides, name):
        """``fit`` and its arguments for one grid point (resumed where the run left checkpoints)."""
        run_dir = RUNS / experiment / name
        config = load_config(ROOT / config_path, overrides)
        return lstm_jax.train.fit, (config, run_dir), {"resume": (run_dir / rundir.CHECKPOINTS).exists()}

    def settle(point, result):
        try:
            result()
        except lstm_jax.train.NonFiniteError as error:  # a diverged run is a result, recorded in its summary
            print(f"{point[2]}: {error}", flush=True)
        return point

    if jobs == 1:
        for point in todo:
            fit, args, kwargs = call(*point)
            yield settle(point, lambda: fit(*args, **kwargs))
        return
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # JAX runs threads: a forked copy of it can deadlock
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {}
        for point in todo:
            fit, args, kwargs = call(*point)
            futures[pool.submit(fit, *args, **kwargs)] = point
        for future in concurrent.futures.as_completed(futures):
            yield settle(futures[future], future.result)


def _committed_rows(experiment: str) -> list[dict]:
    """The rows of the results file, or none if there is no file yet."""
    return read_results(experiment) if (RESULTS / f"{experiment}.json").exists() else []


def _in_grid_order(grid: list[tuple], done: dict[str, dict], kept: dict[str, dict]) -> list[dict]:
    """The rows run so far, or kept for grid points not yet reached, in the grid's order."""
    return [done[name] if name in done else kept[name] for _, _, name in grid if name in done or name in kept]


def curve(records: list[dict]) -> dict:
    """A run's evaluations as columns: ``{"step": [...], "loss": [...], "metric": [...]}``."""
    return {key: [r[key] for r in records] for key in ("step", "loss", "metric")}


def write_results(experiment: str, rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{experiment}.json").write_text(json.dumps(rows, indent=1) + "\n")


def read_results(experiment: str) -> list[dict]:
    """The experiment's rows, from its committed results file."""
    return json.loads((RESULTS / f"{experiment}.json").read_text())


def table(experiment: str) -> str:
    """The experiment's Markdown table, from its committed results."""
    return TABLES[experiment](read_results(experiment), EXPERIMENTS[experiment]["published"])


def _final_loss(row: dict) -> float:
    return row["final"]["loss"] if row["final"] else float("nan")


def _by_config_and_T(rows: list[dict]) -> list[tuple[tuple[str, int], list[dict]]]:
    """The rows grouped by (config, T): one table row per group of seeds, the configs in the order they
    first appear in ``rows`` (the grid's: LSTM, GRU, RNN), T ascending within each."""
    order = {config: k for k, config in enumerate(dict.fromkeys(row["config"] for row in rows))}
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["config"], row["task"]["params"]["T"]), []).append(row)
    return sorted(groups.items(), key=lambda item: (order[item[0][0]], item[0][1]))


def _by_clip_norm(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """The clipping rows grouped by their clip_norm override ("none" for null), in the grid's order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        clip = row["overrides"][0].split("=", 1)[1]
        groups.setdefault("none" if clip == "null" else clip, []).append(row)
    return list(groups.items())


def _nan_step(row: dict) -> int:
    """The step whose update was non-finite (the summary counts the good steps before it)."""
    return row["steps"] + 1


def _diverged(row: dict) -> bool:
    """Stopped on a NaN/inf, or ended over DIVERGED_FACTOR baselines."""
    return row["status"] == "non_finite" or _final_loss(row) > DIVERGED_FACTOR * row["baseline"]["loss"]


def _adding_table(rows: list[dict], published: dict) -> str:
    """Per config and T: final eval loss over seeds, solved count, steps, wall time."""
    out = [
        "| model | T | final eval loss, per seed | mean | solved | steps (median) | wall s (total) | baseline | published |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (config, T), group in _by_config_and_T(rows):
        losses = [_final_loss(r) for r in group]
        out.append(
            f"| {config} | {T} | {', '.join(f'{x:.4f}' for x in losses)} | {statistics.mean(losses):.4f} "
            f"| {sum(bool(r['solved']) for r in group)}/{len(group)} | {statistics.median(r['steps'] for r in group):.0f} "
            f"| {sum(r['wall_seconds'] for r in group):.0f} | {group[0]['baseline']['loss']:.4f} "
            f"| {published.get(config, '')} |"
        )
    return "\n".join(out)


def _clipping_table(rows: list[dict], published: dict) -> str:
    """Per clip_norm: diverged runs (NaN/inf, or final loss over DIVERGED_FACTOR baselines), losses."""
    out = [
        f"| clip_norm | diverged (non-finite or loss > {DIVERGED_FACTOR}x baseline) | stopped on NaN/inf at step "
        "| final eval loss of the others, per seed | baseline | published |",
        "|---|---|---|---|---|---|",
    ]
    for clip, group in _by_clip_norm(rows):
        nan_steps = [_nan_step(r) for r in group if r["status"] == "non_finite"]
        finite = [_final_loss(r) for r in group if r["status"] != "non_finite"]
        baseline = group[0]["baseline"]["loss"]
        out.append(
            f"| {clip} | {sum(map(_diverged, group))}/{len(group)} | {', '.join(map(str, nan_steps)) or '-'} "
            f"| {', '.join(f'{x:.3f}' for x in finite) or '-'} | {baseline:.4f} | {published.get(group[0]['config'], '')} |"
        )
    return "\n".join(out)


def _metric_table(rows: list[dict], published: dict) -> str:
    """Per config and T: eval loss and the task's metric per seed, solved count (success rate)."""
    metric = rows[0]["metric_name"]
    out = [
        f"| model | T | final eval loss, per seed | {metric}, per seed | solved | steps (median) "
        "| wall s (total) | baseline loss | published |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (config, T), group in _by_config_and_T(rows):
        metrics = ", ".join(f"{r['final'][metric]:.3f}" for r in group)
        out.append(
            f"| {config} | {T} | {', '.join(f'{_final_loss(r):.4f}' for r in group)} | {metrics} "
            f"| {sum(bool(r['solved']) for r in group)}/{len(group)} | {statistics.median(r['steps'] for r in group):.0f} "
            f"| {sum(r['wall_seconds'] for r in group):.0f} | {group[0]['baseline']['loss']:.4f} "
            f"| {published.get(config, '')} |"
        )
    return "\n".join(out)


TABLES = {"adding": _adding_table, "clipping": _clipping_table, "copy": _metric_table, "temporal_order": _metric_table}

# Figures: drawn from the same rows as the tables, one PNG per experiment (matplotlib, headless).


def figure(experiment: str, path: str | pathlib.Path | None = None) -> pathlib.Path:
    """Draw the experiment's figure from its committed results; returns the path written
    (``experiments/results/<experiment>.png`` unless ``path`` is given)."""
    path = pathlib.Path(path) if path is not None else RESULTS / f"{experiment}.png"
    fig = FIGURES[experiment](read_results(experiment))
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(row: dict) -> str:
    """One colour per cell in every figure: LSTM blue, RNN orange, GRU pink (C2-C4 colour T in the curves)."""
    return {"lstm": "C0", "rnn": "C1", "gru": "C6"}.get(row["model"]["cell"], "C7")


def _T_axis(ax, rows: list[dict]) -> None:
    """A log-scaled x axis labelled with the grid's sequence lengths."""
    Ts = sorted({r["task"]["params"]["T"] for r in rows})
    ax.set_xscale("log")
    ax.set_xticks(Ts, [str(T) for T in Ts])
    ax.minorticks_off()
    ax.set_xlim(Ts[0] / 1.3, Ts[-1] * 1.3)
    ax.set_xlabel("sequence length T")
    ax.grid(alpha=0.3)


def _over_T_of(rows: list[dict], config: str) -> list[tuple[int, list[dict]]]:
    """One config's rows as ``(T, rows of its seeds)``, T ascending."""
    return [(T, group) for (c, T), group in _by_config_and_T(rows) if c == config]


def _configs(rows: list[dict]) -> list[str]:
    """The configs of ``rows`` in the order they first appear (the grid's)."""
    return list(dict.fromkeys(r["config"] for r in rows))


def _cells_title(rows: list[dict]) -> str:
    """The compared cells for a figure title, e.g. ``LSTM vs GRU vs tanh RNN``."""
    names = {"lstm": "LSTM", "gru": "GRU", "rnn": "tanh RNN"}
    cells = dict.fromkeys(r["model"]["cell"] for r in rows)
    return " vs ".join(names.get(cell, cell) for cell in cells)


def _over_T(ax, rows: list[dict], value, *, seeds: bool = True, hollow=None) -> None:
    """Per config: the mean of ``value(row)`` over seeds against T (a line), and each seed's value (dots,
    hollow where ``hollow(row)``); the configs are set slightly apart in x so their dots do not hide."""
    configs = _configs(rows)
    for k, config in enumerate(configs):
        groups = _over_T_of(rows, config)
        shift = 1.04 ** (k - (len(configs) - 1) / 2)
        colour = _colour(groups[0][1][0])
        xs = [T * shift for T, _ in groups]
        means = [statistics.mean(map(value, g)) for _, g in groups]
        ax.plot(xs, means, "-" if seeds else "-s", color=colour, lw=2, label=config)
        if seeds:
            for x, (_, group) in zip(xs, groups):
                for row in group:
                    face = "none" if hollow is not None and hollow(row) else colour
                    ax.plot(x, value(row), "o", ms=5, mec=colour, mfc=face, alpha=0.8)


def _baseline_over_T(ax, rows: list[dict], label: str = "baseline") -> None:
    """The task's trivial loss against T (dashed gray; flat where it does not depend on T), to the axis edges."""
    points = sorted({(r["task"]["params"]["T"], r["baseline"]["loss"]) for r in rows})
    Ts, values = [T for T, _ in points], [b for _, b in points]
    bases = f"{values[0]:.3g}" if len(set(values)) == 1 else "-".join(f"{b:.3g}" for b in (values[0], values[-1]))
    xs = [Ts[0] / 1.3] + Ts + [Ts[-1] * 1.3]
    ax.plot(xs, values[:1] + values + values[-1:], color="gray", ls="--", lw=1, label=f"{label} {bases}")


def _log_if_wide(ax, values: list[float]) -> None:
    """A log y axis when the values span more than a decade (under one, a log axis shows no labelled tick)."""
    if max(values) > 10 * min(values):
        ax.set_yscale("log")


def _curves(ax, rows: list[dict], config: str) -> None:
    """Eval loss against step for one config: a colour per T, a thin line per seed, the baseline."""
    for k, (T, group) in enumerate(_over_T_of(rows, config)):
        for j, row in enumerate(group):
            ax.plot(
                row["curve"]["step"], row["curve"]["loss"], color=f"C{k + 2}", lw=1, label=None if j else f"T = {T}"
            )
    for base in sorted({r["baseline"]["loss"] for r in rows if r["config"] == config}):
        ax.axhline(base, color="gray", ls="--", lw=1, label=f"baseline {base:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("eval loss (MSE)")
    ax.set_title(f"{config}: eval loss per seed", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _adding_figure(rows: list[dict]) -> Figure:
    """Final eval MSE and steps used against T per model (dots: seeds; hollow: not solved); above
    them, when the rows hold curves, eval loss against step per model."""
    plt = _pyplot()
    configs = _configs(rows)
    has_curves = all(r.get("curve") for r in rows)
    width = max(2, len(configs))
    rows_of_panels = [configs, ["loss", "steps"]] if has_curves else [["loss", "steps"]]
    mosaic = [panels + ["."] * (width - len(panels)) for panels in rows_of_panels]
    fig, axes = plt.subplot_mosaic(mosaic, figsize=(5.5 * width, 4.2 * len(mosaic)), dpi=90)
    for config in configs if has_curves else []:
        _curves(axes[config], rows, config)
    ax = axes["loss"]
    _over_T(ax, rows, _final_loss, hollow=lambda r: not r["solved"])
    _baseline_over_T(ax, rows, "baseline (predict 1)")
    ax.set_yscale("log")
    ax.set_ylabel("final eval loss (MSE)")
    ax.set_title("final eval loss: mean over seeds (line), each seed (dots; hollow: not solved)", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes["steps"]
    _over_T(ax, rows, lambda r: r["steps"], hollow=lambda r: not r["solved"])
    ax.set_ylabel("training steps")
    ax.set_title("steps to solve (hollow: not solved, stopped at the step limit)", fontsize=10)
    ax.set_ylim(0, None)
    for ax in (axes["loss"], axes["steps"]):
        _T_axis(ax, rows)
    fig.suptitle(f"Adding problem, {_cells_title(rows)} (solved: {_rule(rows)})", fontsize=11)
    fig.tight_layout()
    return fig


def _rule(rows: list[dict]) -> str:
    """The solved rule without its citation, e.g. ``mse < 0.01``."""
    return rows[0]["solved_rule"].split(" (")[0]


def _metric_figure(rows: list[dict]) -> Figure:
    """Success rate, the task's final metric and the final eval loss against T, per model."""
    plt = _pyplot()
    metric = rows[0]["metric_name"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4), dpi=90)
    _over_T(axes[0], rows, lambda r: float(bool(r["solved"])), seeds=False)
    seeds = len(_by_config_and_T(rows)[0][1])
    axes[0].set_ylabel(f"success rate (solved runs / {seeds} seeds)")
    axes[0].set_ylim(-0.05, 1.05)
    axes[0].set_title("success rate", fontsize=10)
    _over_T(axes[1], rows, lambda r: r["final"][metric])
    axes[1].set_ylabel(f"final {metric.replace('_', ' ')}")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title(f"final {metric.replace('_', ' ')}: mean (line), each seed (dots)", fontsize=10)
    _over_T(axes[2], rows, _final_loss)
    _baseline_over_T(axes[2], rows)
    _log_if_wide(axes[2], [_final_loss(r) for r in rows] + [r["baseline"]["loss"] for r in rows])
    axes[2].set_ylabel("final eval loss (cross-entropy, nats)")
    axes[2].set_title("final eval loss: mean (line), each seed (dots)", fontsize=10)
    for ax in axes:
        _T_axis(ax, rows)
        ax.legend(fontsize=8)
    title = rows[0]["task"]["name"].replace("_", " ")
    fig.suptitle(f"{title.capitalize()}, {_cells_title(rows)} (solved: {_rule(rows)})", fontsize=11)
    fig.tight_layout()
    return fig


def _clipping_figure(rows: list[dict]) -> Figure:
    """Each seed's final eval loss per clip_norm (log scale); runs stopped on NaN/inf as crosses above the rest."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=90)
    baseline = rows[0]["baseline"]["loss"]
    top = max([_final_loss(r) for r in rows if r["status"] != "non_finite"] + [DIVERGED_FACTOR * baseline]) * 4
    for x, (_, group) in enumerate(_by_clip_norm(rows)):
        for j, row in enumerate(group):
            dx = (j - (len(group) - 1) / 2) * 0.08
            if row["status"] == "non_finite":
                ax.plot(x + dx, top, "x", color="C3", ms=9, mew=2, label="stopped on NaN/inf" if x + j == 0 else None)
                ax.annotate(
                    f"step {_nan_step(row)}",
                    (x + dx, top),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize=7,
                    color="C3",
                )
            else:
                ax.plot(x + dx, _final_loss(row), "o", color="C3" if _diverged(row) else "C0", ms=6)
    ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"baseline {baseline:.3g} (predict 1)")
    ax.axhline(
        DIVERGED_FACTOR * baseline, color="C3", ls=":", lw=1, label=f"diverged above {DIVERGED_FACTOR}x baseline"
    )
    groups = _by_clip_norm(rows)
    ax.set_xticks(range(len(groups)), [f"{c}\n{sum(map(_diverged, g))}/{len(g)} diverged" for c, g in groups])
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_yscale("log")
    ax.set_ylim(None, top * 3)
    ax.set_xlabel("global-norm clipping threshold (clip_norm)")
    ax.set_ylabel("final eval loss (MSE), one dot per seed")
    task, cell = rows[0]["task"], rows[0]["model"]["cell"].upper()
    ax.set_title(f"Gradient clipping ablation: {cell} on {task['name']} T = {task['params']['T']}", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    return fig


FIGURES = {
    "adding": _adding_figure,
    "clipping": _clipping_figure,
    "copy": _metric_figure,
    "temporal_order": _metric_figure,
}


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
        "--cells",
        nargs="+",
        metavar="cell",
        help="run only the configs of these cells (e.g. gru); the other rows stay as committed",
    )
    parser.add_argument(
        "--seeds", type=_positive, default=SEEDS, metavar="N", help=f"seeds 0 .. N-1 per grid point (default {SEEDS})"
    )
    parser.add_argument(
        "--jobs", type=_positive, default=1, metavar="J", help="train J runs at a time, one process each (default 1)"
    )
    args = parser.parse_args(argv)
    if args.cells and (args.table or args.plot):
        parser.error("--cells selects runs to run; it does not go with --table or --plot")
    for experiment in args.experiments:
        if not (args.table or args.plot):
            run_grid(experiment, args.cells, args.seeds, args.jobs)
        if args.table or not args.plot:
            print(table(experiment))
        if args.plot or not args.table:
            print(f"wrote {figure(experiment)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
