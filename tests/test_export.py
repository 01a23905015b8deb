"""``lstm-jax export`` (lstm_jax.export): a trained run into PyTorch (.pt), safetensors and Keras, rebuilt there."""

import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import cli, export, rundir
from lstm_jax.api import fit, load_run
from lstm_jax.config import config_from_dict, load_config, save_config
from lstm_jax.models import ModelSpec, apply_model, init_model
from lstm_jax.train import model_spec, run_keys, tasks_for

try:
    import torch
except ImportError:  # Python 3.13 here: no CPU wheel; the safetensors tests still run
    torch = None


def _needs_torch():
    if torch is None:
        pytest.skip("the export's torch tests need PyTorch (pip install torch==2.13.0, CPU build)")


def _fit(tmp_path_factory, name, task, model, steps=4):
    """A run that trains in seconds (``steps`` steps, one evaluation at the end)."""
    config = config_from_dict(
        {
            "name": name,
            "task": task,
            "model": model,
            "optim": {"name": "adam", "learning_rate": 1e-2},
            "train": {
                "steps": steps,
                "batch_size": 8,
                "eval_every": steps,
                "eval_batches": 2,
                "checkpoint_every": steps,
            },
        }
    )
    run = tmp_path_factory.mktemp(name) / "run"
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        fit(config, run, progress=False)
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run of the copy task (many-to-many, softmax cross-entropy over every step): an embedding, two
    bidirectional LSTM layers; 4 steps, one evaluation at the end."""
    model = {"cell": "lstm", "hidden_size": 6, "num_layers": 2, "bidirectional": True, "input_layer": "embedding",
             "input_features": 4}  # fmt: skip
    return _fit(
        tmp_path_factory, "lstm", {"name": "copy", "params": {"T": 4, "num_symbols": 3, "copy_length": 2}}, model
    )


# ----------------------------------------------------------------------------------------------
# What a PyTorch user writes, from the export alone (the module docstring's recipe).


def _torch_model(description, state):
    _needs_torch()
    modules = {name: getattr(torch.nn, m["module"])(**m["kwargs"]) for name, m in description["torch"].items()}
    model = torch.nn.ModuleDict(modules)
    model.load_state_dict(state)  # strict: every tensor has its place, every place its tensor
    return model.to(getattr(torch, description["dtype"]))


def _torch_logits(model, description, x):
    if "input" in model:
        x = model["input"](x)
    elif "embedding" in model:
        x = model["embedding"](x.argmax(-1))  # one-hot symbols -> ids
    ys, final = model["rnn"](x)
    h_n = final[0] if description["cell"] == "lstm" else final
    last = torch.cat([h_n[-2], h_n[-1]], -1) if description["bidirectional"] else h_n[-1]
    return model["head"](last if description["many_to_one"] else ys)


def _torch_loss(description, logits, targets, mask):
    """The task's loss in torch: per-step loss, then the reduction (lstm_jax.losses)."""
    if description["loss"] == "mse":
        per_step = ((logits - targets) ** 2).mean(-1)
    elif description["loss"] == "softmax_cross_entropy":
        per_step = -(targets * torch.log_softmax(logits, -1)).sum(-1)
    else:
        per_step = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)
    if description["many_to_one"]:
        return per_step.mean()
    mask = mask.to(per_step.dtype)
    if description["reduction"] == "mean":
        return (per_step * mask).sum() / mask.sum()
    return (per_step * mask).sum() / mask.shape[0]


def _as_torch(array):
    return torch.from_numpy(np.array(array))


def _recorded_evaluation_in_torch(run, model, description):
    """The loss of the run's last evaluation, recomputed in torch on the very batches the trainer drew."""
    config = load_config(run / rundir.CONFIG)
    task, eval_task = tasks_for(config)
    step = rundir.read_summary(run)["steps"]
    key = jax.random.fold_in(run_keys(config.seed)[2], step)
    make_batch = jax.jit(eval_task.make_batch, static_argnums=1)
    losses, first = [], None
    for k in jax.random.split(key, config.train.eval_batches):
        batch = make_batch(k, config.train.batch_size)
        with torch.no_grad():
            logits = _torch_logits(model, description, _as_torch(batch.inputs))
            losses.append(_torch_loss(description, logits, _as_torch(batch.targets), _as_torch(batch.mask)).item())
        first = (batch.inputs, logits.numpy()) if first is None else first
    return np.mean(np.float32(losses)), first


def test_the_torch_export_rebuilds_in_torch_and_reproduces_the_run_s_evaluation_loss(trained, capsys):
    """The issue's test: export, load into torch.nn.LSTM (+ Embedding and Linear head), recompute the loss."""
    _needs_torch()
    assert cli.main(["export", str(trained), "--to", "torch"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (
        f"{trained}: step 4 exported for torch (lstm, 2 layer(s), hidden 6, bidirectional): "
        f"{trained / 'model.pt'}, {trained / 'model.json'}"
    )
    description = json.loads((trained / "model.json").read_text())
    assert {k: description[k] for k in ("cell", "input_size", "hidden_size", "num_layers", "bidirectional", "proj_size")} == {
        "cell": "lstm", "input_size": 4, "hidden_size": 6, "num_layers": 2, "bidirectional": True, "proj_size": 0
    }  # fmt: skip
    assert (description["many_to_one"], description["loss"], description["reduction"]) == (
        False, "softmax_cross_entropy", "mean"
    )  # fmt: skip
    assert (description["output_activation"], description["input_layer"]) == ("softmax", "embedding")
    assert description["torch"]["rnn"]["module"] == "LSTM" and description["run"]["step"] == 4
    state = torch.load(trained / "model.pt", weights_only=True)  # a plain state dict: the safe loader reads it
    assert list(state)[0] == "embedding.weight" and list(state)[-2:] == ["head.weight", "head.bias"]
    model = _torch_model(description, state)
    assert isinstance(model["rnn"], torch.nn.LSTM) and model["rnn"].bidirectional

    loss, (inputs, logits) = _recorded_evaluation_in_torch(trained, model, description)
    recorded = rundir.read_metrics(trained)[-1]
    assert recorded["step"] == 4 and recorded["loss"] == rundir.read_summary(trained)["final"]["loss"]
    np.testing.assert_allclose(loss, recorded["loss"], rtol=1e-5)
    np.testing.assert_allclose(logits, load_run(trained).apply(inputs), rtol=0, atol=1e-5)


def _read_safetensors(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return {name: f.get_tensor(name) for name in f.keys()}, f.metadata()


def test_the_safetensors_export_needs_no_torch_to_write_and_reproduces_the_loss_in_torch(trained, tmp_path, capsys):
    pytest.importorskip("safetensors", reason="reading the file back needs the safetensors package (test extra)")
    out = tmp_path / "exported.safetensors"
    assert cli.main(["export", str(trained), "--to", "safetensors", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(f"(lstm, 2 layer(s), hidden 6, bidirectional): {out}")
    tensors, metadata = _read_safetensors(out)
    description = json.loads(metadata[export.METADATA_KEY])
    assert metadata["format"] == "pt"
    assert (description["input_layer"], description["many_to_one"], description["reduction"]) == (
        "embedding",
        False,
        "mean",
    )
    run = load_run(trained)
    spec = model_spec(run.config, tasks_for(run.config)[0])
    expected = export.export_tensors(run.params, spec)
    assert list(tensors) == sorted(expected)  # the package lists names sorted
    for name, value in expected.items():
        np.testing.assert_array_equal(tensors[name], value, err_msg=name)
    assert tensors["embedding.weight"].shape == (5, 4)  # nn.Embedding(M symbols, F features): E^T
    np.testing.assert_array_equal(tensors["embedding.weight"], np.asarray(run.params.input.w).T)
    np.testing.assert_array_equal(tensors["rnn.bias_ih_l1_reverse"], run.params.layers[1].backward.b)
    assert not tensors["rnn.bias_hh_l1_reverse"].any()  # b = bias_ih + bias_hh: all of it in bias_ih

    _needs_torch()
    model = _torch_model(description, {name: torch.from_numpy(value) for name, value in tensors.items()})
    loss, (inputs, logits) = _recorded_evaluation_in_torch(trained, model, description)
    np.testing.assert_allclose(loss, rundir.read_metrics(trained)[-1]["loss"], rtol=1e-5)
    np.testing.assert_allclose(logits, run.apply(inputs), rtol=0, atol=1e-5)


def test_the_safetensors_writer_follows_the_format():
    """Header length (8 bytes, little-endian), JSON header padded to 8 bytes, offsets back to back; read by the
    safetensors package, every dtype and shape bit for bit."""
    numpy_reader = pytest.importorskip("safetensors.numpy", reason="the safetensors package (test extra)")
    rng = np.random.default_rng(0)
    tensors = {
        "b": rng.standard_normal((2, 3)).astype(np.float32),
        "a": rng.standard_normal(5).astype(np.float16),
        "c": rng.standard_normal((1, 2, 2)),
        "d": np.arange(4, dtype=np.int32),
        "scalar": np.float32(2.5),
        "empty": np.zeros((0, 3), np.float32),
    }
    data = export.safetensors_bytes(tensors, {"k": "v"})
    (length,) = struct.unpack("<Q", data[:8])
    assert length % 8 == 0
    header = json.loads(data[8 : 8 + length])
    assert header["__metadata__"] == {"k": "v"} and header["a"] == {
        "dtype": "F16",
        "shape": [5],
        "data_offsets": [24, 34],
    }
    assert len(data) == 8 + length + sum(np.asarray(t).nbytes for t in tensors.values())
    back = numpy_reader.load(data)
    for name, value in tensors.items():
        assert back[name].dtype == np.asarray(value).dtype and back[name].shape == np.shape(value), name
        np.testing.assert_array_equal(back[name], value)
    big_endian = np.arange(3, dtype=">f4")
    np.testing.assert_array_equal(numpy_reader.load(export.safetensors_bytes({"x": big_endian}))["x"], big_endian)
    with pytest.raises(ValueError, match=r"metadata\['k'\]: expected a string key and value, got int"):
        export.safetensors_bytes(tensors, {"k": 1})
    with pytest.raises(ValueError, match=r"x: expected a tensor name other than __metadata__ and a dtype among"):
        export.safetensors_bytes({"x": np.array(["text"])})


# ----------------------------------------------------------------------------------------------
# Every model PyTorch can express, without training: the rebuilt torch model computes apply_model's logits.


@pytest.mark.parametrize(
    "spec, sizes",
    [
        (ModelSpec(cell="rnn", activation="relu", many_to_one=True), dict(num_layers=2, bidirectional=True)),
        (
            ModelSpec(cell="lstm", proj_size=2, many_to_one=True),
            dict(num_layers=2, input_layer="dense", input_features=4),
        ),
        (ModelSpec(cell="gru"), dict(bidirectional=True, input_layer="embedding", input_features=4)),
    ],
    ids=["rnn-relu-bidirectional", "lstm-projection-dense", "gru-bidirectional-embedding"],
)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_the_rebuilt_torch_model_computes_apply_model_s_logits(spec, sizes):
    _needs_torch()
    M, N = 3, 2
    shapes = jax.eval_shape(lambda: init_model(jax.random.key(0), spec, M, 5, N, **sizes))  # no compilation
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda x: jnp.asarray(0.4 * rng.standard_normal(x.shape).astype(x.dtype)), shapes
    )  # biases too
    description = export.description(params, spec, loss="softmax_cross_entropy", reduction="mean")
    state = {name: torch.from_numpy(value) for name, value in export.export_tensors(params, spec).items()}
    model = _torch_model(description, state)
    xs = jnp.asarray(np.eye(M, dtype=np.float32)[rng.integers(0, M, (2, 6))])  # one-hot: the embedding's inputs
    with torch.no_grad():
        logits = _torch_logits(model, description, _as_torch(xs)).numpy()
    np.testing.assert_allclose(logits, apply_model(spec, params, xs), rtol=0, atol=1e-5)
    assert description["nonlinearity"] == ("relu" if spec.cell == "rnn" else None)
    assert description["output_activation"] == "softmax"


@pytest.mark.parametrize(
    "spec, message",
    [
        (ModelSpec(cell="lstm", peepholes=True), "model.peepholes: PyTorch's nn.LSTM has no peepholes"),
        (ModelSpec(cell="lstm", layer_norm=True), "model.layer_norm: PyTorch's nn.LSTM has no layer normalisation"),
        (ModelSpec(cell="rnn", activation="sigmoid"), "model.activation: PyTorch's nn.RNN has nonlinearity 'tanh' or"),
        (ModelSpec(cell="gru", dropout=ModelSpec().dropout._replace(zoneout_h=0.1)), "model.zoneout_h/zoneout_c"),
    ],
)
def test_a_model_pytorch_cannot_express_is_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=message):
        export.check_expressible(spec)


# ----------------------------------------------------------------------------------------------
# The command line.


def test_export_needs_a_run_directory_and_a_format(tmp_path, capsys):
    assert cli.main(["export", str(tmp_path / "missing"), "--to", "safetensors"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"lstm-jax: error: run directory: expected {tmp_path / 'missing' / 'config.yaml'}, got no such file"
    )
    for argv in (["export", str(tmp_path)], ["export", str(tmp_path), "--to", "onnx"], ["export", "--to", "torch"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: lstm-jax export [-h] --to {torch,safetensors,keras} [--out OUT] run_dir" in err
    assert set(cli.EXPORT_FORMATS) == set(export.FORMATS)
    assert "export" in cli.build_parser().format_help()


@pytest.mark.parametrize(
    "model, to, message",
    [
        ({"peepholes": True}, "torch", "model.peepholes: PyTorch's nn.LSTM has no peepholes"),
        ({"layer_norm": True}, "safetensors", "model.layer_norm: PyTorch's nn.LSTM has no layer normalisation"),
        ({"cell": "rnn", "activation": "sigmoid"}, "torch", "model.activation: PyTorch's nn.RNN has nonlinearity"),
        ({"zoneout_h": 0.1}, "keras", "model.zoneout_h/zoneout_c: at evaluation a zoneout model mixes"),
    ],
)
def test_a_run_the_target_cannot_express_exits_2_with_one_line_naming_it(tmp_path, capsys, model, to, message):
    """Refused from the run's config, before any checkpoint is read (this run has none)."""
    config = config_from_dict({"task": {"name": "adding", "params": {"T": 8}}, "model": {"hidden_size": 4, **model}})
    save_config(config, tmp_path / rundir.CONFIG)
    assert cli.main(["export", str(tmp_path), "--to", to]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not list(tmp_path.glob("model*"))


def test_export_paths_are_checked(trained, tmp_path, capsys):
    for to, out, message in [
        ("keras", tmp_path / "m.h5", "--out: expected a path ending in .keras"),
        ("torch", tmp_path / "m.json", "--out: expected the .pt file's path"),
        ("safetensors", tmp_path / "no" / "m.safetensors", "--out: expected an existing directory to write into"),
        ("safetensors", tmp_path, "--out: expected a file path, got the directory"),
    ]:
        assert cli.main(["export", str(trained), "--to", to, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["export", str(trained), "--to", "torch", "--out", " "])


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # keras's
def test_the_keras_export_computes_the_run_s_logits(trained, tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported: the backend of our arrays
    pytest.importorskip("keras", reason="the keras export needs keras (test extra)")
    keras_layers = pytest.importorskip("lstm_jax.interop.keras_layers", reason="lstm_jax.interop.keras_layers missing")
    if not hasattr(keras_layers, "to_keras_model"):
        pytest.skip("lstm_jax.interop.keras_layers.to_keras_model is not there yet")
    import keras

    out = tmp_path / "exported.keras"
    done = export.export_run(trained, "keras", out)
    assert done.paths == (out,) and done.step == 4 and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(rundir.TEMPORARY_PREFIX)]
    run = load_run(trained)
    xs = jnp.asarray(np.eye(5, dtype=np.float32)[np.random.default_rng(0).integers(0, 5, (2, 8))])
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):  # Keras's own layers broadcast
        model = keras.saving.load_model(out)
        logits = np.asarray(model(np.asarray(xs)))
    np.testing.assert_allclose(logits, run.apply(xs), rtol=0, atol=1e-5)


def test_writes_are_atomic_and_leave_no_temporary(trained, tmp_path, monkeypatch):
    """A write killed before its file is complete leaves neither the file nor a temporary (rundir.write_atomic)."""
    out = tmp_path / "m.safetensors"

    def interrupted(fd):
        raise OSError("disk full")

    monkeypatch.setattr(rundir.os, "fsync", interrupted)
    assert cli.main(["export", str(trained), "--to", "safetensors", "--out", str(out)]) == 2
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    export.export_run(trained, "safetensors", out)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
