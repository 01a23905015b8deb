r"""Export a trained run for deployment: ``lstm-jax export RUN_DIR --to torch|safetensors|keras``.

The recurrent stack, the head and the input layer (if the model has one) are written under the
names of a ``torch.nn.ModuleDict`` that computes the model, with a JSON description that says how
to rebuild it:

====================================  ==========================================  ======================================
name                                  shape                                       torch module
====================================  ==========================================  ======================================
``input.weight``, ``input.bias``      ``(F, M)``, ``(F,)``                        ``nn.Linear(M, F)`` (``dense``)
``embedding.weight``                  ``(M, F)``                                  ``nn.Embedding(M, F)`` (``embedding``)
``rnn.weight_ih_l0``, ...             :func:`lstm_jax.interop.pytorch.to_torch`   ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``
``head.weight``, ``head.bias``        ``(N, H)``, ``(N,)``                        ``nn.Linear(H, N)``
====================================  ==========================================  ======================================

Our ``embedding`` input layer is linear on one-hot inputs, :math:`E x_t`: ``embedding.weight`` is
:math:`E^\top`, so ``nn.Embedding`` on the symbol ids (``x.argmax(-1)``) gives the same features as
``x @ embedding.weight`` on the one-hot ``x``. The description (``description()``: ``"torch"`` holds each
module's class and keyword arguments) rebuilds and runs the model in a few lines of PyTorch::

    import json, torch
    d = json.load(open("model.json"))                  # beside model.pt
    model = torch.nn.ModuleDict({name: getattr(torch.nn, m["module"])(**m["kwargs"]) for name, m in d["torch"].items()})
    model.load_state_dict(torch.load("model.pt"))      # strict: every tensor has its place
    model.to(getattr(torch, d["dtype"]))               # float32 unless the run was float64
    x = model["input"](x) if "input" in model else model["embedding"](x.argmax(-1)) if "embedding" in model else x
    ys, final = model["rnn"](x)                        # batch_first=True: (B, T, H)
    h_n = final[0] if d["cell"] == "lstm" else final
    last = torch.cat([h_n[-2], h_n[-1]], -1) if d["bidirectional"] else h_n[-1]
    logits = model["head"](last if d["many_to_one"] else ys)   # then d["output_activation"]

Formats: ``torch`` writes ``model.pt`` (``torch.save`` of the state dict; needs torch) and
``model.json`` beside it; ``safetensors`` writes ``model.safetensors`` with the description in its
``__metadata__`` (``"lstm_jax"``: the JSON), written here with NumPy alone (neither torch nor the
``safetensors`` package is needed to write it, nor torch or JAX to read it); ``keras`` saves the
``keras.Model`` of :func:`lstm_jax.interop.keras_layers.to_keras_model` as ``model.keras``. A model
the target cannot express (peepholes, layer normalisation, zoneout, an RNN activation PyTorch lacks)
is a ``ValueError`` naming it. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import struct
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from lstm_jax import rundir
from lstm_jax.losses import OUTPUT_ACTIVATION
from lstm_jax.models import ModelParams, ModelSpec

__all__ = [
    "FORMATS",
    "Exported",
    "check_expressible",
    "description",
    "export_run",
    "export_tensors",
    "safetensors_bytes",
]

#: Export format -> the file's suffix.
FORMATS = {"torch": ".pt", "safetensors": ".safetensors", "keras": ".keras"}

#: The key of ``__metadata__`` in a safetensors file that holds the description (a JSON string).
METADATA_KEY = "lstm_jax"

#: Version of the description's layout.
VERSION = 1

#: NumPy dtype name -> safetensors dtype code.
_SAFETENSORS_DTYPES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


class Exported(NamedTuple):
    """What :func:`export_run` wrote: the files, the run's step, the description."""

    paths: tuple[pathlib.Path, ...]
    step: int
    description: dict


def check_expressible(spec: ModelSpec, target: str = "torch") -> None:
    """Raise a ``ValueError`` naming the option if ``target``'s layers cannot compute the model ``spec`` describes.

    Zoneout, for every target; for ``"torch"`` (and the safetensors file, which holds PyTorch's tensors) also
    peepholes, layer normalisation and an RNN activation other than tanh and relu. The Keras model's own
    limits are :func:`lstm_jax.interop.keras_layers.to_keras_model`'s to check.
    """
    if spec.dropout.zoneout_h or spec.dropout.zoneout_c:
        raise ValueError(
            f"model.zoneout_h/zoneout_c: at evaluation a zoneout model mixes each new state with the previous one "
            f"(by the rate), which {target}'s layers do not do, so this model cannot be exported to {target}"
        )
    if target == "keras":
        return
    if spec.cell not in ("rnn", "lstm", "gru"):
        raise ValueError(f"model.cell: expected 'rnn', 'lstm' or 'gru' (PyTorch's modules), got {spec.cell!r}")
    if spec.peepholes:
        raise ValueError("model.peepholes: PyTorch's nn.LSTM has no peepholes, so this model cannot be exported to it")
    if spec.layer_norm:
        raise ValueError(
            "model.layer_norm: PyTorch's nn.LSTM has no layer normalisation, so this model cannot be exported to it"
        )
    if spec.cell == "rnn" and spec.activation not in ("tanh", "relu"):
        raise ValueError(
            f"model.activation: PyTorch's nn.RNN has nonlinearity 'tanh' or 'relu', got {spec.activation!r}, "
            "so this model cannot be exported to it"
        )


def export_tensors(params: ModelParams, spec: ModelSpec) -> dict[str, np.ndarray]:
    """The model's tensors under the names in the module docstring (``input.*`` or ``embedding.weight``,
    ``rnn.*`` as :func:`lstm_jax.interop.pytorch.to_torch` names them, ``head.*``), NumPy arrays in the
    parameters' dtype, in the order of the modules."""
    from lstm_jax.interop.pytorch import to_torch

    check_expressible(spec)
    tensors: dict[str, np.ndarray] = {}
    if params.input is not None:
        if params.input.b is None:  # the embedding: E x on one-hot x, nn.Embedding's table is E^T
            tensors["embedding.weight"] = np.ascontiguousarray(np.asarray(params.input.w).T)
        else:
            tensors["input.weight"] = np.array(params.input.w)
            tensors["input.bias"] = np.array(params.input.b)
    tensors.update({f"rnn.{name}": value for name, value in to_torch(params.layers).items()})
    tensors["head.weight"] = np.array(params.head.w)
    if params.head.b is not None:
        tensors["head.bias"] = np.array(params.head.b)
    return tensors


def description(
    params: ModelParams, spec: ModelSpec, *, loss: str, reduction: str | None = None, run: Mapping | None = None
) -> dict[str, Any]:
    """The JSON description of an export: the cell, its sizes, how the head reads the stack, the output
    activation and loss, and under ``"torch"`` each module's class and keyword arguments (the
    ``nn.ModuleDict`` of the module docstring). ``run`` adds what the run was (name, step, task, loss)."""
    from lstm_jax.interop.pytorch import torch_layout

    check_expressible(spec)
    if loss not in OUTPUT_ACTIVATION:
        raise ValueError(f"loss: expected one of {sorted(OUTPUT_ACTIVATION)}, got {loss!r}")
    layout = torch_layout(params.layers)
    modules: dict[str, Any] = {}
    input_layer, model_input_size = "none", layout.input_size
    if params.input is not None:
        features, model_input_size = (int(n) for n in np.shape(params.input.w))
        if params.input.b is None:
            input_layer = "embedding"
            modules["embedding"] = {
                "module": "Embedding",
                "kwargs": {"num_embeddings": model_input_size, "embedding_dim": features},
            }
        else:
            input_layer = "dense"
            modules["input"] = {
                "module": "Linear",
                "kwargs": {"in_features": model_input_size, "out_features": features, "bias": True},
            }
    nonlinearity = spec.activation if spec.cell == "rnn" else None
    modules["rnn"] = {"module": layout.module, "kwargs": layout.kwargs(batch_first=True, nonlinearity=nonlinearity)}
    output_size, head_input = (int(n) for n in np.shape(params.head.w))
    modules["head"] = {
        "module": "Linear",
        "kwargs": {"in_features": head_input, "out_features": output_size, "bias": params.head.b is not None},
    }
    many_to_one = bool(spec.many_to_one)
    return {
        "format": "lstm_jax export",
        "version": VERSION,
        "cell": spec.cell,
        "nonlinearity": nonlinearity,
        "input_size": layout.input_size,
        "hidden_size": layout.hidden_size,
        "num_layers": layout.num_layers,
        "bidirectional": layout.bidirectional,
        "proj_size": layout.proj_size,
        "input_layer": input_layer,
        "model_input_size": model_input_size,
        "output_size": output_size,
        "many_to_one": many_to_one,
        "head_reads": (
            "the last layer's final h (bidirectional: [h_n[-2]; h_n[-1]], the forward direction's at the last step "
            "and the backward direction's at the first)"
            if many_to_one
            else "the last layer's output at every step"
        ),
        "output_activation": OUTPUT_ACTIVATION[loss],
        "loss": loss,
        "reduction": reduction,
        "dtype": np.dtype(params.head.w.dtype).name,
        "compute_dtype": spec.compute_dtype,
        "batch_first": True,
        "torch": modules,
        **({"run": dict(run)} if run is not None else {}),
    }


def safetensors_bytes(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """A safetensors file of NumPy arrays, written with NumPy and json alone: an 8-byte little-endian header
    length, the JSON header (per tensor ``dtype``, ``shape``, ``data_offsets``; ``__metadata__`` of strings),
    padded with spaces to 8 bytes, then each tensor's little-endian C-order bytes, back to back."""
    header: dict[str, Any] = {}
    if metadata:
        for key, value in metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"metadata[{key!r}]: expected a string key and value, got {type(value).__name__}")
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name, value in tensors.items():
        array = np.asarray(value)
        if name == "__metadata__" or array.dtype.name not in _SAFETENSORS_DTYPES:
            raise ValueError(
                f"{name}: expected a tensor name other than __metadata__ and a dtype among "
                f"{sorted(_SAFETENSORS_DTYPES)}, got {array.dtype}"
            )
        if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
            array = array.byteswap()  # the format is little-endian
        data = np.ascontiguousarray(array).tobytes()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[array.dtype.name],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def _torch_bytes(tensors: Mapping[str, np.ndarray]) -> bytes:
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"--to torch: expected PyTorch installed (pip install torch; --to safetensors needs none), got {error}"
        ) from None

    from lstm_jax.interop.pytorch import _torch_tensor

    buffer = io.BytesIO()
    torch.save({name: _torch_tensor(torch, value) for name, value in tensors.items()}, buffer)
    return buffer.getvalue()


def _save_keras(params: ModelParams, spec: ModelSpec, input_size: int, path: pathlib.Path) -> None:
    try:
        from lstm_jax.interop.keras_layers import to_keras_model
    except ImportError as error:
        raise ImportError(
            f"--to keras: expected lstm_jax.interop.keras_layers.to_keras_model (and keras), got {error}"
        ) from None
    model = to_keras_model(params, spec, input_size)
    temporary = path.parent / f"{rundir.TEMPORARY_PREFIX}{path.stem}_{os.getpid()}.keras"  # keras wants .keras
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _output_path(run_dir: pathlib.Path, to: str, out) -> pathlib.Path:
    suffix = FORMATS[to]
    if out is None:
        return run_dir / f"model{suffix}"
    path = pathlib.Path(out)
    if not path.name:
        raise ValueError(f"--out: expected a file path, got {str(out)!r}")
    if to == "keras" and path.suffix != suffix:
        raise ValueError(f"--out: expected a path ending in .keras (Keras's format), got {str(out)!r}")
    if to == "torch" and path.suffix == ".json":
        raise ValueError(f"--out: expected the .pt file's path (its .json goes beside it), got {str(out)!r}")
    if path.is_dir():
        raise ValueError(f"--out: expected a file path, got the directory {str(out)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"--out: expected an existing directory to write into, got no directory {str(path.parent)!r}")
    return path


def export_run(run_dir: str | os.PathLike, to: str, out: str | os.PathLike | None = None) -> Exported:
    """Export a run's latest checkpoint (module docstring): ``to`` is ``"torch"``, ``"safetensors"`` or ``"keras"``;
    ``out`` the file (default ``RUN_DIR/model.pt``, ``.safetensors``, ``.keras``; ``torch`` writes the
    description beside it, with the suffix ``.json``)."""
    from lstm_jax import train
    from lstm_jax.api import load_run
    from lstm_jax.config import load_config

    if to not in FORMATS:
        raise ValueError(f"--to: expected one of {sorted(FORMATS)}, got {to!r}")
    run_dir = pathlib.Path(run_dir)
    path = _output_path(run_dir, to, out)
    config_file = run_dir / rundir.CONFIG
    if not config_file.is_file():
        raise ValueError(f"run directory: expected {config_file}, got no such file")
    config = load_config(config_file)
    task, _ = train.tasks_for(config)
    spec = train.model_spec(config, task)
    check_expressible(spec, to)  # before restoring anything
    run = load_run(run_dir)
    final = (run.summary or {}).get("final") or {}
    about = {
        "name": run.config.name,
        "step": run.step,
        "task": run.config.task.name,
        "task_params": dict(run.config.task.params),
        "eval_loss": final.get("loss"),
    }
    if to == "keras":
        with train.precision(run.config):
            _save_keras(run.params, spec, task.input_size, path)
        return Exported((path,), run.step, {"format": "lstm_jax export", "version": VERSION, "run": about})
    tensors = export_tensors(run.params, spec)
    about_model = description(run.params, spec, loss=task.loss, reduction=task.reduction, run=about)
    text = json.dumps(about_model, indent=2)
    if to == "safetensors":
        rundir.write_atomic(path, safetensors_bytes(tensors, {"format": "pt", METADATA_KEY: text}))
        return Exported((path,), run.step, about_model)
    rundir.write_atomic(path, _torch_bytes(tensors))
    rundir.write_atomic(path.with_suffix(".json"), text + "\n")
    return Exported((path, path.with_suffix(".json")), run.step, about_model)
