"""Atomic checkpoints of any pytree of arrays (a ``TrainState``), with ``flax.serialization``.

A checkpoint is one msgpack file, ``ckpt_<step>.msgpack``. It is written to a temporary file in
the same directory, flushed and fsynced, then renamed into place with ``os.replace``, which is
atomic on POSIX: a process killed at any moment leaves either the previous checkpoint or the new
one, never a torn file, so the latest complete checkpoint is always restorable.
"""

from __future__ import annotations

import os
import pathlib
import re
import tempfile

from flax import serialization

_NAME = re.compile(r"^ckpt_(\d+)\.msgpack$")


def checkpoint_path(directory: str | os.PathLike, step: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"ckpt_{step:09d}.msgpack"


def save_checkpoint(directory: str | os.PathLike, step: int, tree, *, keep: int = 3) -> pathlib.Path:
    """Write ``tree`` as the checkpoint of ``step`` atomically; keep the newest ``keep`` checkpoints."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = serialization.to_bytes(tree)
    final = checkpoint_path(directory, step)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_ckpt_")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_directory(directory)
    for old in checkpoint_steps(directory)[:-keep]:
        checkpoint_path(directory, old).unlink(missing_ok=True)
    return final


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending (temporary files are ignored)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def latest_step(directory: str | os.PathLike) -> int | None:
    steps = checkpoint_steps(directory)
    return steps[-1] if steps else None


def restore_checkpoint(directory: str | os.PathLike, template, step: int | None = None):
    """The checkpoint of ``step`` (default: the latest), restored into the structure of ``template``."""
    step = latest_step(directory) if step is None else step
    if step is None:
        raise ValueError(f"checkpoint: expected a ckpt_<step>.msgpack in {directory}, got none")
    return serialization.from_bytes(template, checkpoint_path(directory, step).read_bytes())


def _fsync_directory(directory: pathlib.Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
