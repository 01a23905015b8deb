"""Run a grid of training runs from configs and tabulate them against the published results.

Usage (from the repository root)::

    python experiments/sweep.py adding            # run the grid (finished runs are reused)
    python experiments/sweep.py adding --table    # print the Markdown table from the results file

Each run is an ordinary ``lstm_jax.train.fit`` into ``runs/sweeps/<experiment>/<run>/``; the
summaries are gathered into ``experiments/results/<experiment>.json``, which is committed, and the
table in ``experiments/README.md`` is printed from that file, never typed in.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"

#: name -> configs, the grid of --set overrides, and what the literature reports per config and T.
EXPERIMENTS = {
    "adding": {
        "configs": ["configs/adding_lstm.yaml", "configs/adding_rnn.yaml"],
        "grid": {"task.params.T": [50, 100, 200], "seed": [0, 1, 2]},
        "published": {
            "adding_lstm": "Arjovsky et al. 2016 Fig. 2: LSTM MSE falls to ~0 for T = 100, 200, 400",
            "adding_rnn": "Arjovsky et al. 2016 Fig. 2: tanh RNN stays at the 0.167 baseline",
        },
    },
    "clipping": {
        "configs": ["configs/clipping_rnn.yaml"],
        "grid": {"optim.clip_norm": ["null", 10, 1], "seed": [0, 1, 2, 3, 4]},
        "published": {
            "clipping_rnn": "Pascanu et al. 2013: without clipping, exploding gradients derail SGD; clipping prevents it",
        },
    },
    "copy": {
        "configs": ["configs/copy_lstm.yaml", "configs/copy_rnn.yaml"],
        "grid": {"task.params.T": [10, 20], "seed": [0, 1, 2]},
        "published": {
            "copy_lstm": "Arjovsky et al. 2016 Fig. 1: LSTM beats the baseline only partly (T = 100+)",
            "copy_rnn": "Arjovsky et al. 2016 Fig. 1: RNN stays at the memoryless baseline",
        },
    },
    "temporal_order": {
        "configs": ["configs/temporal_order_lstm.yaml", "configs/temporal_order_rnn.yaml"],
        "grid": {"task.params.T": [20, 50, 100], "seed": [0, 1, 2]},
        "published": {
            "temporal_order_lstm": "Hochreiter & Schmidhuber 1997: LSTM solves 6a (T ~ 100)",
            "temporal_order_rnn": "Pascanu et al. 2013 Fig. 7: plain RNN success rate falls with T",
        },
    },
}

#: A run "diverged" when it stopped on a NaN/inf, or its final eval loss is over this many baselines.
DIVERGED_FACTOR = 10


def runs(experiment: str):
    """``(config path, overrides, run name)`` for every point of the experiment's grid."""
    spec = EXPERIMENTS[experiment]
    keys = list(spec["grid"])
    for config in spec["configs"]:
        for values in itertools.product(*spec["grid"].values()):
            overrides = [f"{k}={v}" for k, v in zip(keys, values)]
            name = pathlib.Path(config).stem + "_" + "_".join(f"{k.split('.')[-1]}{v}" for k, v in zip(keys, values))
            yield config, overrides, name


def run_grid(experiment: str) -> list[dict]:
    from lstm_jax import rundir
    from lstm_jax.config import load_config
    from lstm_jax.train import NonFiniteError, fit

    rows = []
    for config_path, overrides, name in runs(experiment):
        run_dir = ROOT / "runs" / "sweeps" / experiment / name
        summary_path = run_dir / rundir.SUMMARY
        if summary_path.exists() and rundir.read_summary(run_dir)["status"] in ("completed", "solved", "non_finite"):
            summary = rundir.read_summary(run_dir)
        else:
            config = load_config(ROOT / config_path, overrides)
            try:
                summary = fit(config, run_dir, resume=(run_dir / rundir.CHECKPOINTS).exists())
            except NonFiniteError as error:  # a diverged run is a result, recorded in its summary
                print(f"{name}: {error}", flush=True)
                summary = rundir.read_summary(run_dir)
        row = {"run": name, "config": pathlib.Path(config_path).stem, "overrides": overrides, **summary}
        rows.append(row)
        final = summary["final"] or {}
        print(f"{name}: {summary['status']} at step {summary['steps']}, loss {final.get('loss')}", flush=True)
        write_results(experiment, rows)
    return rows


def write_results(experiment: str, rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{experiment}.json").write_text(json.dumps(rows, indent=1) + "\n")


def table(experiment: str) -> str:
    """The experiment's Markdown table, from its committed results."""
    rows = json.loads((RESULTS / f"{experiment}.json").read_text())
    return TABLES[experiment](rows, EXPERIMENTS[experiment]["published"])


def _final_loss(row: dict) -> float:
    return row["final"]["loss"] if row["final"] else float("nan")


def _by_config_and_T(rows: list[dict]) -> list[tuple[tuple[str, int], list[dict]]]:
    """The rows grouped by (config, T), in sorted order: one table row per group of seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["config"], row["task"]["params"]["T"]), []).append(row)
    return sorted(groups.items())


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
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["overrides"][0].split("=", 1)[1], []).append(row)
    for clip, group in groups.items():
        baseline = group[0]["baseline"]["loss"]
        nan_steps = [r["steps"] + 1 for r in group if r["status"] == "non_finite"]
        finite = [_final_loss(r) for r in group if r["status"] != "non_finite"]
        diverged = len(nan_steps) + sum(x > DIVERGED_FACTOR * baseline for x in finite)
        out.append(
            f"| {'none' if clip == 'null' else clip} | {diverged}/{len(group)} | {', '.join(map(str, nan_steps)) or '-'} "
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=sorted(EXPERIMENTS))
    parser.add_argument("--table", action="store_true", help="print the Markdown table of the saved results")
    args = parser.parse_args(argv)
    if args.table:
        print(table(args.experiment))
    else:
        run_grid(args.experiment)
        print(table(args.experiment))
    return 0


if __name__ == "__main__":
    sys.exit(main())
