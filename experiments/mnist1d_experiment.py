"""MNIST-1D (Greydanus & Kobak 2024): LSTM, GRU and tanh RNN against the published table.

Usage (from the repository root)::

    python experiments/mnist1d_experiment.py           # 36 runs (6 models x 3 seeds x time axis in order / shuffled)
    python experiments/mnist1d_experiment.py --table   # the Markdown table, from experiments/results/mnist1d.json
    python experiments/mnist1d_experiment.py --plot    # the figure, experiments/results/mnist1d.png, from the same file

Each run is ``lstm_jax.train.fit`` of ``configs/mnist1d_{lstm,gru,rnn}.yaml`` with ``seed`` and
``task.params.shuffle_time`` overridden (and, for the paper-sized GRU, the model's size), into
``runs/sweeps/mnist1d/<run>/`` (finished runs are reused); the summaries, with each run's
test-accuracy curve, go to ``experiments/results/mnist1d.json``, which is committed, and the table and
figure in ``experiments/README.md`` are made from that file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import statistics
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"

#: The models, in table order: name -> (config, its overrides, label). "gru_2x6" is the paper's
#: recurrent core (a bidirectional GRU of 6 units per direction) with this library's readout; the two
#: models still learning at 3000 steps also run for the paper's 6000.
PAPER_SIZE = ["model.hidden_size=6", "model.bidirectional=true"]
MODELS = {
    "lstm": ("configs/mnist1d_lstm.yaml", [], "LSTM"),
    "gru": ("configs/mnist1d_gru.yaml", [], "GRU"),
    "rnn": ("configs/mnist1d_rnn.yaml", [], "tanh RNN"),
    "rnn_6000": ("configs/mnist1d_rnn.yaml", ["train.steps=6000"], "tanh RNN, 6000 steps"),
    "gru_2x6": ("configs/mnist1d_gru.yaml", PAPER_SIZE, "GRU, 2 x 6 units"),
    "gru_2x6_6000": ("configs/mnist1d_gru.yaml", [*PAPER_SIZE, "train.steps=6000"], "GRU, 2 x 6 units, 6000 steps"),
}
SEEDS = (0, 1, 2)
SHUFFLE_TIME = (False, True)

#: Published test accuracies in % as (time axis in order, shuffled): the mnist1d README's table, the
#: same as the paper's (Greydanus & Kobak 2024); "human" is ~96 / ~30 there. The GRU is the paper's
#: only recurrent model: a bidirectional GRU of 6 units per direction whose 40 x 12 outputs are all
#: flattened into a linear readout (5,134 parameters), trained by Adam at 1e-2, batch 100, 6000 steps.
PUBLISHED = {"logistic regression": (32, 32), "MLP": (68, 68), "CNN": (94, 56), "GRU": (91, 57)}
SOURCE = "Greydanus & Kobak 2024, mnist1d README table"


def runs():
    """``(model, seed, shuffle_time, overrides, run name)`` for every run, in the order they run."""
    for model, shuffle, seed in itertools.product(MODELS, SHUFFLE_TIME, SEEDS):
        overrides = [f"seed={seed}", f"task.params.shuffle_time={str(shuffle).lower()}", *MODELS[model][1]]
        name = f"mnist1d_{model}_{'shuffled' if shuffle else 'ordered'}_seed{seed}"
        yield model, seed, shuffle, overrides, name


def parameter_count(config) -> int:
    """Trainable parameters of a config's model (shapes only, nothing computed)."""
    import jax

    from lstm_jax.train import init_state, make_optimizer, tasks_for

    task, _ = tasks_for(config)
    optimizer = make_optimizer(config.optim, config.train.steps)
    state = jax.eval_shape(lambda key: init_state(config, task, optimizer, key), jax.random.key(0))
    return sum(leaf.size for leaf in jax.tree.leaves(state.params))


def run_all(steps: int | None = None, runs_dir: pathlib.Path | None = None) -> dict:
    """Train every run (reusing finished ones) and return the results; ``steps`` overrides
    ``train.steps`` (a quick check, not the committed results)."""
    from lstm_jax import rundir
    from lstm_jax.config import load_config
    from lstm_jax.train import fit

    runs_dir = runs_dir or ROOT / "runs" / "sweeps" / "mnist1d"
    rows, start = [], time.perf_counter()
    for model, seed, shuffle, overrides, name in runs():
        run_dir = runs_dir / name
        extra = [] if steps is None else [f"train.steps={steps}", f"train.eval_every={max(1, steps // 4)}"]
        config = load_config(ROOT / MODELS[model][0], overrides + extra)
        if (run_dir / rundir.SUMMARY).exists() and rundir.read_summary(run_dir)["status"] == "completed":
            summary = rundir.read_summary(run_dir)
        else:
            summary = fit(config, run_dir, resume=(run_dir / rundir.CHECKPOINTS).exists(), progress=False)
        records = rundir.read_metrics(run_dir)
        rows.append(
            {
                "run": name,
                "model": model,
                "cell": config.model.cell,
                "seed": seed,
                "shuffle_time": shuffle,
                "overrides": overrides + extra,
                "hidden_size": config.model.hidden_size,
                "bidirectional": config.model.bidirectional,
                "parameters": parameter_count(config),
                "learning_rate": config.optim.learning_rate,
                "batch_size": config.train.batch_size,
                "steps": summary["steps"],
                "accuracy": summary["final"]["accuracy"],
                "loss": summary["final"]["loss"],
                "wall_seconds": summary["wall_seconds"],
                "curve": {key: [r[key] for r in records] for key in ("step", "loss", "metric", "train_loss")},
            }
        )
        print(f"{name}: test accuracy {rows[-1]['accuracy']:.3f} after {summary['steps']} steps", flush=True)
    return {
        "published": {model: list(pair) for model, pair in PUBLISHED.items()},
        "source": SOURCE,
        "invocation_seconds": round(time.perf_counter() - start, 1),  # finished runs reused: only read
        "rows": rows,
    }


def write_results(results: dict, path: pathlib.Path | None = None) -> pathlib.Path:
    path = path or RESULTS / "mnist1d.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


def read_results(path: pathlib.Path | None = None) -> dict:
    """The committed results (``experiments/results/mnist1d.json`` unless ``path`` is given)."""
    return json.loads((path or RESULTS / "mnist1d.json").read_text())


def groups(results: dict) -> list[tuple[str, bool, list[dict]]]:
    """``(model, shuffle_time, rows of its seeds)`` in table order: models as in :data:`MODELS`, ordered first."""
    out = []
    for model, shuffle in itertools.product(MODELS, SHUFFLE_TIME):
        rows = [r for r in results["rows"] if r["model"] == model and r["shuffle_time"] == shuffle]
        if rows:
            out.append((model, shuffle, sorted(rows, key=lambda r: r["seed"])))
    return out


def _percent(row: dict) -> float:
    return 100 * row["accuracy"]


def _best(row: dict) -> float:
    """The highest test accuracy of a run's evaluations, in % (chosen on the test set: optimistic)."""
    return 100 * max(row["curve"]["metric"])


def table(results: dict) -> str:
    """The Markdown table: per model and time axis, test accuracy per seed, mean ± std, the published
    GRU's and the gap to it (percentage points)."""
    published = results["published"]["GRU"]
    out = [
        "| model | parameters | time axis | test accuracy per seed (%) | mean ± std | best evaluation, mean "
        "| published GRU | gap to it | steps | wall s (total) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, shuffle, rows in groups(results):
        accuracies = [_percent(r) for r in rows]
        mean = statistics.mean(accuracies)
        std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        reference = published[int(shuffle)]
        out.append(
            f"| {MODELS[model][2]} | {rows[0]['parameters']:,} | {'shuffled' if shuffle else 'in order'} "
            f"| {', '.join(f'{a:.1f}' for a in accuracies)} "
            f"| {mean:.1f} ± {std:.1f} | {statistics.mean(map(_best, rows)):.1f} | {reference} "
            f"| {mean - reference:+.1f} | {rows[0]['steps']} | {sum(r['wall_seconds'] for r in rows):.0f} |"
        )
    return "\n".join(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLOURS = {"lstm": "C0", "gru": "C2", "rnn": "C1", "rnn_6000": "C3", "gru_2x6": "C4", "gru_2x6_6000": "C5"}
REFERENCE_STYLES = {"logistic regression": ":", "MLP": "-.", "CNN": "--", "GRU": "-"}


def make_figure(results: dict) -> Figure:
    """Left, middle: test accuracy per model (a dot per seed, a bar at the mean) with the published
    accuracies as horizontal lines, time axis in order and shuffled. Right: test accuracy against
    step, the mean over seeds per model (solid: in order, dashed: shuffled)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.4), dpi=90, gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    models = list(MODELS)
    for ax, shuffle in zip(axes[:2], SHUFFLE_TIME):
        above = None  # the reference whose label sits just above this one's line
        for model, pair in sorted(results["published"].items(), key=lambda item: -item[1][int(shuffle)]):
            value = pair[int(shuffle)]
            ax.axhline(value, color="black" if model == "GRU" else "gray", ls=REFERENCE_STYLES.get(model, "-"), lw=1)
            below = above is not None and above - value < 5  # close to the one above: label under the line
            ax.annotate(  # right of the axes: x in axes coordinates, y in data
                f"published\n{model} {value}%",
                (1.01, value),
                xycoords=ax.get_yaxis_transform(),
                xytext=(0, -3 if below else 3),
                textcoords="offset points",
                fontsize=7,
                color="black" if model == "GRU" else "dimgray",
                ha="left",
                va="top" if below else "bottom",
            )
            above = value
        for x, model in enumerate(models):
            rows = [r for m, s, group in groups(results) if m == model and s == shuffle for r in group]
            if not rows:
                continue
            values = [_percent(r) for r in rows]
            ax.bar(x, statistics.mean(values), width=0.5, color=COLOURS[model], alpha=0.3)
            for j, value in enumerate(values):
                ax.plot(x + (j - (len(values) - 1) / 2) * 0.08, value, "o", color=COLOURS[model], ms=6)
            ax.annotate(f"{statistics.mean(values):.1f}", (x, 2), ha="center", fontsize=8)
        ax.set_xticks(range(len(models)), [MODELS[m][2].replace(", ", "\n") for m in models], fontsize=8)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylim(0, 100)
        ax.set_ylabel("test accuracy (%), 1000 examples")
        ax.set_title(f"time axis {'shuffled' if shuffle else 'in order'}: a dot per seed, bar = mean", fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    ax = axes[2]
    for model, shuffle, rows in groups(results):
        if _continued(results, model, shuffle, rows):
            continue  # its curves are the first part of a longer run's: drawn by that one
        steps = rows[0]["curve"]["step"]
        mean = [100 * statistics.mean(r["curve"]["metric"][k] for r in rows) for k in range(len(steps))]
        label = f"{MODELS[model][2]}, {'shuffled' if shuffle else 'in order'}"
        ax.plot(steps, mean, ls="--" if shuffle else "-", color=COLOURS[model], lw=1.8, label=label)
    for shuffle in SHUFFLE_TIME:
        ax.axhline(results["published"]["GRU"][int(shuffle)], color="gray", lw=1, ls="--" if shuffle else "-")
    ax.set_ylim(0, 100)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%), mean over seeds")
    ax.set_title("test accuracy during training (gray lines: published GRU)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"MNIST-1D: LSTM, GRU and tanh RNN against the published table ({results['source']})")
    fig.tight_layout()
    return fig


def _continued(results: dict, model: str, shuffle: bool, rows: list[dict]) -> bool:
    """Whether another model's runs are these runs trained longer: the same seeds, and each of these
    curves is the start of one of theirs (same batches from the same keys, so the same evaluations)."""
    for other, other_shuffle, longer in groups(results):
        if other == model or other_shuffle != shuffle or len(longer) != len(rows):
            continue
        if all(
            b["seed"] == a["seed"]
            and b["steps"] > a["steps"]
            and b["curve"]["metric"][: len(a["curve"]["metric"])] == a["curve"]["metric"]
            for a, b in zip(rows, longer)
        ):
            return True
    return False


def figure(results: dict, path: pathlib.Path | None = None) -> pathlib.Path:
    """Draw :func:`make_figure` to ``path`` (``experiments/results/mnist1d.png`` unless given)."""
    path = path or RESULTS / "mnist1d.png"
    fig = make_figure(results)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the Markdown table of the committed results")
    parser.add_argument("--plot", action="store_true", help="draw experiments/results/mnist1d.png from them")
    parser.add_argument("--steps", type=int, help="train.steps for every run (a quick check; writes under --out)")
    parser.add_argument("--out", type=pathlib.Path, help="results folder (default experiments/results)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.out is None:
        parser.error("--steps: expected --out too (the committed results are the configs' full runs)")
    out = args.out or RESULTS
    path = out / "mnist1d.json"
    if not (args.table or args.plot):
        runs_dir = None if args.out is None else args.out / "runs"
        write_results(run_all(args.steps, runs_dir), path)
    results = read_results(path)
    if args.table or not args.plot:
        print(table(results))
    if args.plot or not args.table:
        print(f"wrote {figure(results, out / 'mnist1d.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
