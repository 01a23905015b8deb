"""Atomic, checksummed checkpoints of any pytree of arrays (a ``TrainState``), with ``flax.serialization``.

A checkpoint is one msgpack file, ``ckpt_<step>.msgpack``, written with
:func:`lstm_jax.rundir.write_atomic` (temporary file, fsync, ``os.replace``): a process killed at
any moment leaves either the previous checkpoint or the new one, never a torn file. The file is a
msgpack map ``{"format", "sha256", "payload", "meta"}``: ``payload`` is
``flax.serialization.to_bytes`` of the tree, ``meta`` small JSON values (the run's wall time so
far), and ``sha256`` the SHA-256 of both (``meta`` as canonical JSON), checked on every load, so a
file damaged after it was written (a flipped byte, a truncated copy) is detected instead of loaded.
A file written before checksums existed (a bare flax msgpack) still loads.

Restoring checks every leaf's shape and dtype against the template, so a checkpoint never silently
loads into a model of another size. :func:`restore_latest` falls back from a damaged newest
checkpoint to the newest one that is intact, with a one-line warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import warnings
from typing import Any, NamedTuple

import jax
from flax import serialization

from lstm_jax.rundir import write_atomic

_NAME = re.compile(r"^ckpt_(\d+)\.msgpack$")
FORMAT = "lstm_jax-checkpoint-1"


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older, intact one."""


class DamagedCheckpoint(ValueError):
    """A checkpoint file that cannot be read or fails its checksum."""


class Restored(NamedTuple):
    """A restored checkpoint: the tree, its step and its ``meta`` (``{}`` for a file without one)."""

    tree: Any
    step: int
    meta: dict


def checkpoint_path(directory: str | os.PathLike, step: int) -> pathlib.Path:
    return pathlib.Path(directory) / f"ckpt_{step:09d}.msgpack"


def save_checkpoint(directory: str | os.PathLike, step: int, tree, *, keep: int = 3, meta=None) -> pathlib.Path:
    """Write ``tree`` (with its SHA-256 and ``meta``) as the checkpoint of ``step`` atomically; keep
    the newest ``keep`` checkpoints."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    payload, meta = serialization.to_bytes(tree), dict(meta or {})
    record = {"format": FORMAT, "sha256": _digest(payload, meta), "payload": payload, "meta": meta}
    write_atomic(path, serialization.msgpack_serialize(record))
    for old in checkpoint_steps(directory)[:-keep]:
        checkpoint_path(directory, old).unlink(missing_ok=True)
    return path


def _digest(payload: bytes, meta: dict) -> str:
    """SHA-256 of the payload and of ``meta`` as canonical JSON, in hex."""
    return hashlib.sha256(payload + json.dumps(meta, sort_keys=True).encode()).hexdigest()


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending (temporary files are ignored)."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def latest_step(directory: str | os.PathLike) -> int | None:
    steps = checkpoint_steps(directory)
    return steps[-1] if steps else None


def _read(path: pathlib.Path) -> tuple[bytes, dict | None]:
    """``(payload, meta)`` of a checkpoint file, its checksum verified (``meta`` None: a legacy
    file without checksum); :class:`DamagedCheckpoint` if it is unreadable or fails the checksum."""
    try:
        data = path.read_bytes()
        record = serialization.msgpack_restore(data)
    except Exception as error:  # msgpack raises many types for a corrupt file
        raise DamagedCheckpoint(
            f"checkpoint: expected a flax msgpack checkpoint in {path}, got unreadable data ({error})"
        ) from None
    if not (isinstance(record, dict) and record.get("format") == FORMAT):
        return data, None  # a bare flax msgpack file, from before checksums
    payload, meta = record.get("payload"), record.get("meta")
    digest = _digest(payload, meta) if isinstance(payload, bytes) and isinstance(meta, dict) else None
    if digest != record.get("sha256"):
        raise DamagedCheckpoint(
            f"checkpoint: expected SHA-256 {record.get('sha256')} in {path}, got {digest} (the file is damaged)"
        )
    return payload, dict(meta)


def _check_like(template, restored, path: pathlib.Path) -> None:
    for (where, want), got in zip(jax.tree_util.tree_leaves_with_path(template), jax.tree.leaves(restored)):
        if (jax.numpy.shape(got), jax.numpy.result_type(got)) != (jax.numpy.shape(want), jax.numpy.result_type(want)):
            raise ValueError(
                f"checkpoint: expected {jax.tree_util.keystr(where)} of shape {jax.numpy.shape(want)} and dtype "
                f"{jax.numpy.result_type(want)} (from the config), got {jax.numpy.shape(got)} "
                f"{jax.numpy.result_type(got)} in {path}"
            )


def restore(directory: str | os.PathLike, template, step: int) -> Restored:
    """The checkpoint of ``step``, verified and restored into the structure of ``template``.

    Raises:
      ValueError: no such checkpoint, an unreadable or damaged file (checksum), or a leaf whose
        shape or dtype differs from the template's (e.g. a config edited after training).
    """
    path = checkpoint_path(directory, step)
    if not path.is_file():
        raise ValueError(f"checkpoint: expected {path}, got no such file")
    payload, meta = _read(path)
    try:
        tree = serialization.from_bytes(template, payload)
    except Exception as error:  # a verified payload is another model's tree; a legacy file may be torn
        what = f"a checkpoint of this model (from the config), got another tree ({error})"
        raise (ValueError if meta is not None else DamagedCheckpoint)(
            f"checkpoint: expected {what} in {path}"
        ) from None
    _check_like(template, tree, path)
    return Restored(tree, step, meta or {})


def restore_latest(directory: str | os.PathLike, template) -> Restored:
    """The newest checkpoint in ``directory`` that is intact and fits ``template``.

    A newest checkpoint that is damaged (unreadable, checksum mismatch) is skipped with a one-line
    :class:`CheckpointWarning` naming it and the one used instead. A checkpoint of another model
    (shape mismatch) is an error, not skipped: every checkpoint of the directory would fail alike.
    A legacy file (no checksum) that flax cannot parse counts as damaged.

    Raises:
      ValueError: no checkpoint, every checkpoint damaged, or a shape/dtype mismatch.
    """
    steps = checkpoint_steps(directory)
    if not steps:
        raise ValueError(f"checkpoint: expected a ckpt_<step>.msgpack in {directory}, got none")
    damaged = []
    for step in reversed(steps):
        try:
            restored = restore(directory, template, step)
        except DamagedCheckpoint as error:
            damaged.append((step, error))
            continue
        if damaged:
            skipped = ", ".join(f"step {s}" for s, _ in damaged)
            warnings.warn(
                f"checkpoint: skipped damaged {skipped} in {directory}, restored step {step} ({damaged[0][1]})",
                CheckpointWarning,
                stacklevel=2,
            )
        return restored
    raise DamagedCheckpoint(
        f"checkpoint: expected an intact checkpoint in {directory}, got {len(steps)} damaged ({damaged[0][1]})"
    )


def restore_checkpoint(directory: str | os.PathLike, template, step: int | None = None):
    """The tree of the checkpoint of ``step`` (default: the newest intact one, see :func:`restore_latest`)."""
    return (restore_latest(directory, template) if step is None else restore(directory, template, step)).tree
