"""Learning-curve plot of a run (matplotlib, headless)."""

from __future__ import annotations

import math
import numbers
import os

#: Metrics plotted in their own unit instead of the loss's: name -> (axis label, factor from nats to that unit).
#: The eval curve is then the metric itself; the train loss and the baseline (in nats) are multiplied by the factor.
METRIC_UNITS = {"bits_per_char": ("bits per character", 1 / math.log(2))}

#: What every record must hold (the keys ``train._evaluate_and_log`` writes to metrics.jsonl that the plot reads).
RECORD_KEYS = ("step", "loss")


def first_solved_step(records: list[dict]) -> int | None:
    """The step of the first record marked ``solved``, or None when no record is."""
    return next((r["step"] for r in records if r.get("solved")), None)


def check_records(records) -> None:
    """Raise unless ``records`` is a non-empty list of dicts, each with a ``step`` and a ``loss``."""
    if not isinstance(records, (list, tuple)) or not records:
        got = f"an empty {type(records).__name__}" if isinstance(records, (list, tuple)) else type(records).__name__
        raise ValueError(f"records: expected a non-empty list of evaluation records (dicts), got {got}")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or any(k not in record for k in RECORD_KEYS):
            got = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"records[{i}]: expected a dict with keys {', '.join(RECORD_KEYS)}, got {got}")


def _curves(records: list[dict], baseline: float) -> tuple[str, list, list | None, float, bool]:
    """(y label, eval curve, train curve or None, baseline, log scale) in the unit the run's metric asks for."""
    train = [r["train_loss"] for r in records] if all("train_loss" in r for r in records) else None
    unit = METRIC_UNITS.get(records[0].get("metric_name"))
    if unit is None:
        return "loss", [r["loss"] for r in records], train, baseline, True
    label, factor = unit
    train = None if train is None else [x * factor for x in train]
    return label, [r["metric"] for r in records], train, baseline * factor, False


def plot_learning_curve(records: list[dict], path: str | os.PathLike, *, title: str, baseline: float) -> None:
    """Write :func:`learning_curve_figure` of the run's evaluation records to ``path`` (PNG; the Agg backend)."""
    fig = learning_curve_figure(records, title=title, baseline=baseline)
    fig.savefig(path)
    _pyplot().close(fig)


def learning_curve_figure(records: list[dict], *, title: str, baseline: float):
    """Evaluation loss against step, the train loss of the last batch, the task's trivial baseline
    (dashed) and the first solved step (a vertical line), on a log scale; a metric of
    :data:`METRIC_UNITS` (the char-LM's bits per character) is plotted in its own unit instead, on a
    linear scale. Returns the matplotlib figure.

    Raises:
      ValueError: ``records`` is not a non-empty list of dicts with ``step`` and ``loss``, or
        ``baseline`` is not a real number.
    """
    check_records(records)
    if not isinstance(baseline, numbers.Real) or isinstance(baseline, bool):
        raise ValueError(f"baseline: expected a real number (the task's trivial loss), got {baseline!r}")
    ylabel, evals, train, base, log = _curves(records, baseline)
    fig, ax = _pyplot().subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in records]
    ax.plot(steps, evals, marker=".", label=f"eval {ylabel}")
    if train is not None:
        ax.plot(steps, train, alpha=0.6, label=f"train {ylabel} (last batch)")
    ax.axhline(base, color="gray", linestyle="--", label=f"baseline {base:.3g}")
    solved = first_solved_step(records)
    if solved is not None:
        ax.axvline(solved, color="green", linestyle=":", label=f"solved at step {solved}")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
