"""A training run's side effects on its run directory, in one object (:mod:`lstm_jax.rundir` has the layout).

:class:`RunWriter` is what process 0 uses: it creates and locks the directory, decides between a
fresh start and a resume (:func:`resume_decision`), writes the config, the metrics, the checkpoints
(with the run's wall time so far), the summary, the learning curve and the TensorBoard scalars, and,
if the run fails before its first checkpoint, removes what it wrote, so that a failed start never
leaves a half-made run directory. :class:`RunReader` is what every other process of a multi-process
run uses: the same questions answered from the directory, and no writes.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil

from lstm_jax import checkpoint, rundir

#: Config keys that may differ on resume: they change what is logged or when, or how far the run
#: goes, but not the steps already taken. ``train.steps`` only under a schedule that does not
#: depend on it (:data:`STEP_FREE_SCHEDULES`).
RESUMABLE_KEYS = (
    "name",
    "train.steps",
    "train.eval_every",
    "train.checkpoint_every",
    "train.log_every",
    "train.stop_when_solved",
    "train.tensorboard",
)
STEP_FREE_SCHEDULES = ("constant", "exponential")


def _flat(mapping, prefix: str = "") -> dict:
    """``{"a.b.c": value}`` for nested mappings (``task.params.T`` as ``--set`` spells it)."""
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def config_changes(saved, config) -> dict[str, tuple]:
    """``{dotted key: (saved value, new value)}`` for every key where two configs differ."""
    from lstm_jax.config import config_to_dict

    old, new = _flat(config_to_dict(saved)), _flat(config_to_dict(config))
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def check_resumable(saved, config, where) -> None:
    """Raise unless ``config`` differs from the ``saved`` one only in :data:`RESUMABLE_KEYS`."""
    changes = config_changes(saved, config)
    allowed = set(RESUMABLE_KEYS)
    if saved.optim.schedule not in STEP_FREE_SCHEDULES:
        allowed.discard("train.steps")
    refused = {k: v for k, v in changes.items() if k not in allowed}
    if refused:
        listed = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in refused.items())
        steps = "train.steps (e.g. --set train.steps=N to extend the run), " if "train.steps" in allowed else ""
        raise ValueError(
            f"--resume: expected the config saved in {where}, got changes in {listed}; only {steps}"
            f"{', '.join(k for k in RESUMABLE_KEYS if k != 'train.steps')} may change on resume"
        )


def resume_decision(config, run_dir: pathlib.Path, resume) -> bool:
    """Whether to restore the run in ``run_dir``: ``resume`` is False (a new run), True (must resume)
    or ``"auto"`` (resume if there is a checkpoint, else start fresh: one command for requeued jobs)."""
    from lstm_jax.config import load_config

    if resume not in (False, True, "auto"):
        raise ValueError(f"resume: expected False, True or 'auto', got {resume!r}")
    has_checkpoint = checkpoint.latest_step(run_dir / rundir.CHECKPOINTS) is not None
    if not has_checkpoint:
        if resume is True:
            raise ValueError(
                f"--resume: expected a checkpoint in {run_dir / rundir.CHECKPOINTS}, got none "
                "(--resume auto starts fresh where there is none)"
            )
        return False
    if resume is False:
        raise ValueError(
            f"run directory: expected a new directory (or --resume / --resume auto), got {run_dir} with checkpoints"
        )
    check_resumable(load_config(run_dir / rundir.CONFIG), config, run_dir / rundir.CONFIG)
    return True


class RunReader:
    """The run directory as a process that does not write it sees it (every process but 0)."""

    writes = False

    def __init__(self, run_dir: pathlib.Path):
        self.run_dir, self.checkpoints = run_dir, run_dir / rundir.CHECKPOINTS

    @contextlib.contextmanager
    def session(self):
        yield self

    def start(self, config) -> None:
        pass

    def resumed(self, config, step: int) -> None:
        pass

    def records(self) -> list[dict]:
        return rundir.read_metrics(self.run_dir)

    def append(self, record: dict, rate: float) -> None:
        pass

    def save(self, state, wall_seconds: float, *, final: bool = False) -> None:
        pass

    def summary(self, summary: dict) -> None:
        pass

    def plot(self, title: str, baseline: float) -> None:
        pass


class RunWriter(RunReader):
    """The run directory as process 0 writes it; :meth:`session` holds the lock."""

    writes = True

    def __init__(self, run_dir: pathlib.Path, *, tensorboard: bool = False):
        super().__init__(run_dir)
        self._tensorboard_wanted, self._tensorboard = tensorboard, None
        self._saved_step: int | None = None  # the step this session last checkpointed or restored

    @contextlib.contextmanager
    def session(self):
        """Create and lock the directory; on an exception before any checkpoint exists, remove what
        this session created (the entries that were not there before it, and the directory and its
        parents if it made them), never what it found."""
        new_dirs = [d for d in (self.run_dir, *self.run_dir.parents) if not d.exists()]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        found = set(os.listdir(self.run_dir))
        failed = False
        try:
            with rundir.lock(self.run_dir):
                rundir.remove_temporaries(self.run_dir, self.checkpoints)  # left by a kill mid-write
                try:
                    yield self
                except BaseException:
                    failed = checkpoint.latest_step(self.checkpoints) is None
                    if failed:  # still holding the lock: nothing else writes here meanwhile
                        self._remove_new_entries(found)
                    raise
                finally:
                    if self._tensorboard is not None:
                        self._tensorboard.close()
        finally:
            if failed:  # the lock released and its file removed: the directories this session made, if empty
                for directory in new_dirs:
                    with contextlib.suppress(OSError):
                        directory.rmdir()

    def _remove_new_entries(self, found: set[str]) -> None:
        for name in set(os.listdir(self.run_dir)) - found - {rundir.LOCK}:
            path = self.run_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def _open_tensorboard(self) -> None:
        if self._tensorboard_wanted and self._tensorboard is None:
            from lstm_jax.logs import TensorBoard

            self._tensorboard = TensorBoard(self.run_dir / rundir.TENSORBOARD)

    def start(self, config) -> None:
        from lstm_jax.config import save_config

        (self.run_dir / rundir.METRICS).unlink(missing_ok=True)
        shutil.rmtree(self.run_dir / rundir.TENSORBOARD, ignore_errors=True)
        save_config(config, self.run_dir / rundir.CONFIG)
        self._open_tensorboard()

    def resumed(self, config, step: int) -> None:
        from lstm_jax.config import save_config

        self._saved_step = step
        rundir.truncate_metrics(self.run_dir, step)
        save_config(config, self.run_dir / rundir.CONFIG)  # it may extend train.steps
        self._open_tensorboard()

    def append(self, record: dict, rate: float) -> None:
        rundir.append_metrics(self.run_dir, record)
        if self._tensorboard is not None:
            self._tensorboard.evaluation(record, rate)

    def save(self, state, wall_seconds: float, *, final: bool = False) -> None:
        """Checkpoint ``state`` unless this session saved or restored its step already (``final``: save
        it again, with this wall time). A damaged checkpoint skipped on resume is overwritten when
        training reaches its step again."""
        step = int(state.step)
        if final or step != self._saved_step:
            checkpoint.save_checkpoint(self.checkpoints, step, state, meta={"wall_seconds": wall_seconds})
            self._saved_step = step

    def summary(self, summary: dict) -> None:
        rundir.write_summary(self.run_dir, summary)

    def plot(self, title: str, baseline: float) -> None:
        from lstm_jax.plots import plot_learning_curve

        records = self.records()
        if records:
            plot_learning_curve(records, self.run_dir / rundir.CURVE, title=title, baseline=baseline)


def for_this_process(run_dir, config, writes: bool) -> RunReader:
    """The :class:`RunWriter` of ``run_dir`` in the writing process, else its :class:`RunReader`."""
    run_dir = pathlib.Path(run_dir)
    if not writes:
        return RunReader(run_dir)
    return RunWriter(run_dir, tensorboard=config.train.tensorboard)
