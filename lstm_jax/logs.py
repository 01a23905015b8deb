"""What a training run tells a person: a progress bar on a terminal, one line per evaluation in a
batch job's log, warnings as one line, and optional TensorBoard event files.

* :class:`Console` — with ``progress="auto"`` a rich progress bar on stderr when stdout and stderr
  are terminals, else one flushed line per evaluation on stdout (step, loss, metric, baseline, elapsed,
  steps/s), which is what a SLURM log or ``| tee`` shows;
* :class:`TensorBoard` — ``train.tensorboard: true`` writes scalars with ``tensorboardX`` (the extra
  ``pip install 'lstm_jax[tensorboard]'``) to ``<run>/tensorboard``; ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import contextlib
import pathlib
import sys


def evaluation_line(record: dict, total_steps: int, rate: float) -> str:
    """One evaluation as a line: ``step 500/1000  eval loss 0.0130 (baseline 0.1667)  mse 0.0130 ...``."""
    solved = "  solved" if record.get("solved") else ""
    return (
        f"step {record['step']}/{total_steps}  eval loss {record['loss']:.4g} (baseline {record['baseline']:.4g})  "
        f"{record['metric_name']} {record['metric']:.4g}  train loss {record['train_loss']:.4g}  "
        f"elapsed {record['time']:.1f} s  {rate:.1f} steps/s{solved}"
    )


class Console:
    """The run's console output: a progress bar (terminal) or evaluation lines (log file), or nothing.

    Args:
      progress: ``True`` a bar, ``False`` evaluation lines only, ``"auto"`` a bar if stdout and
        stderr are terminals else lines, ``None`` silent (processes other than 0 of a multi-process run).
      total: the run's last step; ``completed``: the step it starts from.
    """

    def __init__(self, progress, total: int, completed: int):
        if progress == "auto":  # lines wherever stdout goes to a file or a pipe (`> log`, `| tee log`)
            progress = sys.stdout.isatty() and sys.stderr.isatty()
        self.total, self.silent = total, progress is None
        self._stack = contextlib.ExitStack()
        self._bar = self._task = None
        if progress and not self.silent:
            self._bar = self._stack.enter_context(_rich_progress())
            self._task = self._bar.add_task("train", total=total, completed=completed, loss=float("nan"), rate=0.0)

    @property
    def wants_train_loss(self) -> bool:
        """Whether :meth:`step` shows the training loss (reading it waits for the device)."""
        return self._bar is not None

    def step(self, done: int, loss: float, rate: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, loss=loss, rate=rate)

    def evaluation(self, record: dict, rate: float) -> None:
        if self._bar is None and not self.silent:
            print(evaluation_line(record, self.total, rate), flush=True)

    def warn(self, message: str) -> None:
        if not self.silent:
            print(f"lstm-jax: warning: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._stack.close()


def _rich_progress():
    """A rich progress bar with loss and steps/s, on stderr."""
    from rich.console import Console as RichConsole
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TextColumn("{task.fields[rate]:.1f} steps/s"),
        TimeRemainingColumn(),
        console=RichConsole(stderr=True),
        transient=False,
    )


def require_tensorboard():
    """The ``tensorboardX`` module, or a ValueError that says which ``pip install`` provides it."""
    try:
        import tensorboardX
    except ImportError:
        raise ValueError(
            "train.tensorboard: expected the tensorboardX package (pip install 'lstm_jax[tensorboard]'), "
            "got no such module"
        ) from None
    return tensorboardX


class TensorBoard:
    """Scalars of each evaluation written as TensorBoard event files in ``directory``."""

    def __init__(self, directory: str | pathlib.Path):
        self._writer = require_tensorboard().SummaryWriter(str(directory))

    def evaluation(self, record: dict, rate: float) -> None:
        step = record["step"]
        self._writer.add_scalar("eval/loss", record["loss"], step)
        self._writer.add_scalar(f"eval/{record['metric_name']}", record["metric"], step)
        self._writer.add_scalar("eval/baseline", record["baseline"], step)
        self._writer.add_scalar("train/loss", record["train_loss"], step)
        self._writer.add_scalar("train/steps_per_second", rate, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
