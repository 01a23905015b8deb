"""The run directory: ``metrics.jsonl`` (one JSON object per evaluation), ``summary.json``.

Layout (``DESIGN.md``)::

    runs/<name>/config.yaml      resolved config, exactly what ran
    runs/<name>/metrics.jsonl    one JSON object per evaluation: step, loss, metric, baseline, time
    runs/<name>/summary.json     final metrics, baseline, solved, steps, wall seconds, devices
    runs/<name>/checkpoints/     atomic, restorable, resumable
    runs/<name>/*.png            learning curve

In a multi-process run only process 0 writes it (:func:`lstm_jax.train.is_writer`).
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
CURVE = "learning_curve.png"


TEMPORARY_PREFIX = ".tmp_"


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same directory, flushed and
    fsynced, then ``os.replace`` (atomic on POSIX) and an fsync of the directory. A process killed
    at any moment leaves the old file or the new one, never half of one; at worst a temporary
    file, which :func:`remove_temporaries` deletes."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMPORARY_PREFIX}{path.name}_")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_directory(path.parent)


def remove_temporaries(*directories: str | os.PathLike) -> None:
    """Delete the temporary files a killed :func:`write_atomic` may have left in ``directories``."""
    for directory in map(pathlib.Path, directories):
        if directory.is_dir():
            for leftover in directory.glob(f"{TEMPORARY_PREFIX}*"):
                leftover.unlink(missing_ok=True)


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make a rename durable (POSIX; a no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_metrics(run_dir: str | os.PathLike, record: dict) -> None:
    """Append one evaluation record as a JSON line (flushed and fsynced: it survives a kill)."""
    with open(pathlib.Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """All complete records (a last line torn by a kill is dropped)."""
    path = pathlib.Path(run_dir) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def truncate_metrics(run_dir: str | os.PathLike, last_step: int) -> None:
    """Keep only the records up to ``last_step`` (on resume, what came after the checkpoint is redone)."""
    kept = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    write_atomic(pathlib.Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in kept))


def write_summary(run_dir: str | os.PathLike, summary: dict) -> None:
    write_atomic(pathlib.Path(run_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")


def read_summary(run_dir: str | os.PathLike) -> dict:
    return json.loads((pathlib.Path(run_dir) / SUMMARY).read_text())
