"""The sweep figures (experiments/sweep.py --plot), drawn from the committed results with matplotlib, headless.

Every figure shows each run, not only a summary: dots per seed for the final values, a thin line per seed
for the evaluation curves (so runs that solve and runs that stay at chance are seen as two groups), and the
success rates with their 95% Wilson intervals as error bars.
"""

from __future__ import annotations

import pathlib
import statistics
from typing import TYPE_CHECKING

import sweep_report as report

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure(experiment: str, path: str | pathlib.Path | None = None) -> pathlib.Path:
    """Draw the experiment's figure from its committed results; returns the path written
    (``experiments/results/<experiment>.png`` unless ``path`` is given)."""
    path = pathlib.Path(path) if path is not None else report.RESULTS / f"{experiment}.png"
    fig = FIGURES[experiment](report.read_results(experiment))
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


def _cells_title(rows: list[dict]) -> str:
    """The compared cells for a figure title, e.g. ``LSTM vs GRU vs tanh RNN``."""
    cells = dict.fromkeys(r["model"]["cell"] for r in rows)
    return " vs ".join(report.CELL_NAMES.get(cell, cell) for cell in cells)


def _shifts(rows: list[dict]):
    """``(config, x factor)`` per config: the configs set slightly apart in x so that their marks do not hide."""
    configs = report.configs(rows)
    return [(config, 1.04 ** (k - (len(configs) - 1) / 2)) for k, config in enumerate(configs)]


def _over_T(ax, rows: list[dict], value, *, hollow=None) -> None:
    """Per config: the median of ``value(row)`` over seeds against T (a line), and each seed's value (dots,
    hollow where ``hollow(row)``)."""
    for config, shift in _shifts(rows):
        groups = report.over_T_of(rows, config)
        colour = _colour(groups[0][1][0])
        xs = [T * shift for T, _ in groups]
        ax.plot(xs, [statistics.median(map(value, g)) for _, g in groups], "-", color=colour, lw=2, label=config)
        for x, (_, group) in zip(xs, groups):
            for row in group:
                face = "none" if hollow is not None and hollow(row) else colour
                ax.plot(x, value(row), "o", ms=4, mec=colour, mfc=face, alpha=0.7)


def _rates_over_T(ax, rows: list[dict], predicate, what: str) -> None:
    """Per config: the rate of ``predicate`` against T with its 95% Wilson interval as an error bar."""
    for config, shift in _shifts(rows):
        groups = report.over_T_of(rows, config)
        rates = [report.rate(g, predicate) for _, g in groups]
        ys = [r.k / r.n for r in rates]
        errors = [[y - r.low for y, r in zip(ys, rates)], [r.high - y for y, r in zip(ys, rates)]]
        ax.errorbar(
            [T * shift for T, _ in groups],
            ys,
            yerr=errors,
            fmt="-o",
            color=_colour(groups[0][1][0]),
            lw=2,
            ms=5,
            capsize=4,
            label=config,
        )
    ax.set_ylabel(f"{what} (runs / {report.seed_count(report.by_config_and_T(rows))} seeds)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"{what}, with 95% Wilson intervals", fontsize=10)


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


def _curves(ax, rows: list[dict], config: str, ylabel: str) -> None:
    """Eval loss against step (log) for one config: a colour per T, a thin line per seed ending in a dot where
    the run solved, the baseline(s)."""
    for k, (T, group) in enumerate(report.over_T_of(rows, config)):
        for j, row in enumerate(group):
            steps, losses = row["curve"]["step"], row["curve"]["loss"]
            colour = f"C{k + 2}"
            ax.plot(steps, losses, color=colour, lw=0.8, alpha=0.6, label=None if j else f"T = {T}")
            if row["solved"]:
                ax.plot(steps[-1], losses[-1], "o", color=colour, ms=3)
    for base in sorted({r["baseline"]["loss"] for r in rows if r["config"] == config}):
        ax.axhline(base, color="gray", ls="--", lw=1, label=f"baseline {base:.3g}")
    _log_if_wide(ax, [x for r in rows if r["config"] == config for x in r["curve"]["loss"]])
    last = max(r["curve"]["step"][-1] for r in rows if r["config"] == config)
    ticks = [t for t in (100, 200, 500, 1000, 2000, 3000, 5000, 10000) if t <= last] or [last]
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("step (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{config}: eval loss, a line per seed (dot: solved there)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _has_curves(rows: list[dict]) -> bool:
    return all(r.get("curve") for r in rows)


def _grid_of_panels(rows: list[dict], below: list[str], loss_label: str):
    """A figure with, above (when the rows hold curves), each model's eval curves (:func:`_curves`), and
    below, empty panels named ``below`` (the first is the success rate with its intervals); ``(fig, axes)``."""
    configs = report.configs(rows)
    width = max(3, len(configs))
    rows_of_panels = ([configs] if _has_curves(rows) else []) + [below]
    mosaic = [panels + ["."] * (width - len(panels)) for panels in rows_of_panels]
    fig, axes = _pyplot().subplot_mosaic(mosaic, figsize=(5.2 * width, 4.2 * len(mosaic)), dpi=90)
    for config in configs if _has_curves(rows) else []:
        _curves(axes[config], rows, config, loss_label)
    return fig, axes


def _adding_figure(rows: list[dict]) -> Figure:
    """Above (when the rows hold curves): eval loss against step per model, a line per seed. Below: the
    success rate with its interval, each seed's final eval MSE and the steps it used, against T."""
    fig, axes = _grid_of_panels(rows, ["rate", "loss", "steps"], "eval loss (MSE)")
    _rates_over_T(axes["rate"], rows, report.solved, "solved")
    ax = axes["loss"]
    _over_T(ax, rows, report.final_loss, hollow=lambda r: not r["solved"])
    _baseline_over_T(ax, rows, "baseline (predict 1)")
    ax.set_yscale("log")
    ax.set_ylabel("final eval loss (MSE)")
    ax.set_title("final eval loss: median (line), each seed (dots; hollow: not solved)", fontsize=10)
    ax = axes["steps"]
    _over_T(ax, rows, lambda r: r["steps"], hollow=lambda r: not r["solved"])
    ax.set_ylabel("training steps")
    ax.set_title("steps to solve (hollow: not solved, stopped at the step limit)", fontsize=10)
    ax.set_ylim(0, None)
    for name in ("rate", "loss", "steps"):
        _T_axis(axes[name], rows)
        axes[name].legend(fontsize=8)
    fig.suptitle(f"Adding problem, {_cells_title(rows)} (solved: {report.rule(rows)})", fontsize=11)
    fig.tight_layout()
    return fig


def _metric_figure(rows: list[dict]) -> Figure:
    """Above (when the rows hold curves): eval loss against step per model, a line per seed. Below: the
    success rate with its interval, the task's final metric and the final eval loss against T."""
    metric = rows[0]["metric_name"]
    fig, axes = _grid_of_panels(rows, ["rate", "metric", "loss"], "eval loss (cross-entropy, nats)")
    predicate = report.main_rate(rows)[0]  # for copy, where no run solved: the runs off the baseline
    what = "success rate" if predicate is report.solved else f"loss < {report.baseline_factor(rows):g}× baseline"
    _rates_over_T(axes["rate"], rows, predicate, what)
    ax = axes["metric"]
    _over_T(ax, rows, lambda r: r["final"][metric])
    ax.set_ylabel(f"final {metric.replace('_', ' ')}")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"final {metric.replace('_', ' ')}: median (line), each seed (dots)", fontsize=10)
    ax = axes["loss"]
    _over_T(ax, rows, report.final_loss)
    _baseline_over_T(ax, rows)
    _log_if_wide(ax, [report.final_loss(r) for r in rows] + [r["baseline"]["loss"] for r in rows])
    ax.set_ylabel("final eval loss (cross-entropy, nats)")
    ax.set_title("final eval loss: median (line), each seed (dots)", fontsize=10)
    for name in ("rate", "metric", "loss"):
        _T_axis(axes[name], rows)
        axes[name].legend(fontsize=8)
    title = rows[0]["task"]["name"].replace("_", " ")
    fig.suptitle(f"{title.capitalize()}, {_cells_title(rows)} (solved: {report.rule(rows)})", fontsize=11)
    fig.tight_layout()
    return fig


def _clipping_figure(rows: list[dict]) -> Figure:
    """Each seed's final eval loss per clip_norm (log scale); runs stopped on NaN/inf as crosses above the
    rest; the diverged rate with its interval under each setting."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=90)
    baseline = rows[0]["baseline"]["loss"]
    finite = [report.final_loss(r) for r in rows if r["status"] != "non_finite"]
    top = max(finite + [report.DIVERGED_FACTOR * baseline]) * 4
    groups = report.by_clip_norm(rows)
    for x, (_, group) in enumerate(groups):
        for j, row in enumerate(group):
            dx = (j - (len(group) - 1) / 2) * 0.05
            if row["status"] == "non_finite":
                ax.plot(x + dx, top, "x", color="C3", ms=8, mew=2, label="stopped on NaN/inf" if x + j == 0 else None)
                ax.annotate(
                    str(report.nan_step(row)),
                    (x + dx, top),
                    textcoords="offset points",
                    xytext=(0, 7 + 7 * (j % 2)),
                    ha="center",
                    fontsize=6,
                    color="C3",
                )
            else:
                ax.plot(x + dx, report.final_loss(row), "o", color="C3" if report.diverged(row) else "C0", ms=5)
    ax.axhline(baseline, color="gray", ls="--", lw=1, label=f"baseline {baseline:.3g} (predict 1)")
    ax.axhline(
        report.DIVERGED_FACTOR * baseline,
        color="C3",
        ls=":",
        lw=1,
        label=f"diverged above {report.DIVERGED_FACTOR}x baseline",
    )
    ticks = [f"{c}\n{report.rate(g, report.diverged)} diverged" for c, g in groups]
    ax.set_xticks(range(len(groups)), ticks)
    ax.set_xlim(-0.5, len(groups) - 0.5)
    ax.set_yscale("log")
    ax.set_ylim(None, top * 4)
    ax.set_xlabel("global-norm clipping threshold (clip_norm); diverged k/n (95% Wilson interval)")
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
    "gate_init": _metric_figure,
    "quickstart": _adding_figure,
    "temporal_order": _metric_figure,
}
