"""Atomic checkpoints of any pytree of arrays (a ``TrainState``), with ``flax.serialization``.

A checkpoint is one msgpack file, ``ckpt_<step>.msgpack``, written with
:func:`lstm_jax.rundir.write_atomic` (temporary file, fsync, ``os.replace``): a process killed at
any moment leaves either the previous checkpoint or the new one, never a torn file, so the latest
complete checkpoint is always restorable. Restoring checks every leaf's shape and dtype against the
template, so a checkpoint never silently loads into a model of another size.
"""

from __future__ import annotations

import os
import pathlib
import re

import jax
from flax import serialization

from lstm_jax.rundir import write_atomic

_NAME = re.compile(r"^ckpt_(\d+)\.msgpack$")


def checkpoint_path(directory: str | os.PathLike, step: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"ckpt_{step:09d}.msgpack"


def save_checkpoint(directory: str | os.PathLike, step: int, tree, *, keep: int = 3) -> pathlib.Path:
    """Write ``tree`` as the checkpoint of ``step`` atomically; keep the newest ``keep`` checkpoints."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    write_atomic(path, serialization.to_bytes(tree))
    for old in checkpoint_steps(directory)[:-keep]:
        checkpoint_path(directory, old).unlink(missing_ok=True)
    return path


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
    """The checkpoint of ``step`` (default: the latest), restored into the structure of ``template``.

    Raises:
      ValueError: no checkpoint, an unreadable file, or a leaf whose shape or dtype differs from
        the template's (e.g. a config edited after training).
    """
    step = latest_step(directory) if step is None else step
    if step is None:
        raise ValueError(f"checkpoint: expected a ckpt_<step>.msgpack in {directory}, got none")
    path = checkpoint_path(directory, step)
    try:
        restored = serialization.from_bytes(template, path.read_bytes())
    except Exception as error:  # msgpack and flax raise many types for a corrupt file
        raise ValueError(
            f"checkpoint: expected a flax msgpack checkpoint in {path}, got unreadable data ({error})"
        ) from None
    for (where, want), got in zip(jax.tree_util.tree_leaves_with_path(template), jax.tree.leaves(restored)):
        if (jax.numpy.shape(got), jax.numpy.result_type(got)) != (jax.numpy.shape(want), jax.numpy.result_type(want)):
            raise ValueError(
                f"checkpoint: expected {jax.tree_util.keystr(where)} of shape {jax.numpy.shape(want)} and dtype "
                f"{jax.numpy.result_type(want)} (from the config), got {jax.numpy.shape(got)} {jax.numpy.result_type(got)} in {path}"
            )
    return restored
