"""The run directory: ``metrics.jsonl`` (one JSON object per evaluation), ``summary.json``.

Layout (``DESIGN.md``)::

    runs/<name>/config.yaml      resolved config, exactly what ran
    runs/<name>/metrics.jsonl    one JSON object per evaluation: step, loss, metric, baseline, time
    runs/<name>/summary.json     final metrics, baseline, solved, steps, wall seconds, devices
    runs/<name>/checkpoints/     atomic, restorable, resumable
    runs/<name>/*.png            learning curve
    runs/<name>/.lock            held (``flock``) by the process training into the directory

In a multi-process run only process 0 writes it (:func:`lstm_jax.train.is_writer`).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import tempfile

try:
    import fcntl
except ImportError:  # not POSIX: no lock (Windows)
    fcntl = None

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
CURVE = "learning_curve.png"
LOCK = ".lock"
TENSORBOARD = "tensorboard"


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


class RunLockedError(ValueError):
    """Another live process is training into the run directory."""


def _lock_owner(path: pathlib.Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def lock(run_dir: str | os.PathLike):
    """Hold ``run_dir/.lock`` for the duration: an exclusive ``flock`` and a line ``pid <pid> on <host>``.

    The kernel releases an ``flock`` when its process dies, so a lock file left by a killed run is
    taken over, never waited for. If the file is replaced while we wait to lock it (its owner
    finished and removed it), we lock the new one instead.

    Raises:
      RunLockedError: another live process holds the lock; the message names its pid and host.
    """
    path = pathlib.Path(run_dir) / LOCK
    if fcntl is None:
        yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"run directory: expected no other run in {run_dir}, got one running ({_lock_owner(path)}); "
                "wait for it to end or choose another --out"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file we locked was unlinked by its previous owner: lock the current one
    try:
        owner = f"pid {os.getpid()} on {socket.gethostname()}\n".encode()
        os.pwrite(fd, owner, 0)  # overwrite in place, then cut: a reader never sees an empty file
        os.ftruncate(fd, len(owner))
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
