"""Learning-curve plot of a run (matplotlib, headless)."""

from __future__ import annotations

import os


def plot_learning_curve(records: list[dict], path: str | os.PathLike, *, title: str, baseline: float) -> None:
    """Evaluation loss against step, with the task's trivial baseline as a dashed line (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["loss"] for r in records], marker=".", label="eval loss")
    if "train_loss" in (records[0] if records else {}):
        ax.plot(steps, [r["train_loss"] for r in records], alpha=0.6, label="train loss")
    ax.axhline(baseline, color="gray", linestyle="--", label=f"baseline {baseline:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
