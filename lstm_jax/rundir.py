"""The run directory: ``metrics.jsonl`` (one JSON object per evaluation), ``summary.json``.

Layout (``DESIGN.md``)::

    runs/<name>/config.yaml      resolved config, exactly what ran
    runs/<name>/metrics.jsonl    one JSON object per evaluation: step, loss, metric, baseline, time
    runs/<name>/summary.json     final metrics, baseline, solved, steps, wall seconds, devices
    runs/<name>/checkpoints/     atomic, restorable, resumable
    runs/<name>/*.png            learning curve
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


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (never half a file)."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp_{path.name}_")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
