"""Training: the step, fit, resume (bit-identical), kill-safety, NaN stop, manual gradients, devices."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _util import assert_trees_close

from lstm_jax import checkpoint, rundir
from lstm_jax.config import OPTIM_KEY_USERS, OPTIMIZERS, SCHEDULES, OptimConfig, config_from_dict, load_config
from lstm_jax.models import apply_model
from lstm_jax.registry import CELLS
from lstm_jax.tasks import make_task
from lstm_jax.train import (
    NonFiniteError,
    evaluate,
    fit,
    init_state,
    make_eval_step,
    make_optimizer,
    make_train_step,
    model_spec,
    run_keys,
    tasks_for,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _standard_dtype_promotion():
    """optax's Adam mixes Python floats with int32 counts, which strict promotion rejects (an
    optax matter, not ours): these tests use JAX's standard promotion; rank promotion stays strict."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def small_config(**sections):
    """A config that trains in seconds: the adding problem with T = 10."""
    data = {
        "name": "small",
        "task": {"name": "adding", "params": {"T": 10}},
        "model": {"cell": "lstm", "hidden_size": 16},
        "optim": {"name": "adam", "learning_rate": 1e-2},
        "train": {"steps": 40, "batch_size": 16, "eval_every": 20, "eval_batches": 2, "checkpoint_every": 10},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_dict(data)


def final_params(run_dir):
    config = load_config(pathlib.Path(run_dir) / rundir.CONFIG)
    task = make_task(config.task.name, **dict(config.task.params))
    template = init_state(config, task, make_optimizer(config.optim, config.train.steps), run_keys(config.seed)[0])
    return checkpoint.restore_checkpoint(pathlib.Path(run_dir) / rundir.CHECKPOINTS, template)


@pytest.mark.parametrize("cell", CELLS)
def test_one_step_changes_every_parameter(cell):
    config = small_config(model={"cell": cell})
    task = make_task("adding", T=10)
    optimizer = make_optimizer(config.optim, config.train.steps)
    init_key, train_key, _ = run_keys(0)
    state = init_state(config, task, optimizer, init_key)
    step = make_train_step(model_spec(config, task), task, optimizer)
    new, metrics = step(state, task.make_batch(train_key, 8))
    assert int(new.step) == 1 and bool(metrics["finite"])
    for old, updated in zip(jax.tree.leaves(state.params), jax.tree.leaves(new.params)):
        assert not np.array_equal(old, updated)


def _updates_after_three_steps(optim):
    """The parameters after three steps of ``make_optimizer(optim, 10)`` on fixed gradients."""
    params, grads = {"w": jnp.array([1.0, -0.5, 2.0])}, {"w": jnp.array([0.3, -2.0, 1.0])}
    optimizer = make_optimizer(optim, 10)
    state = optimizer.init(params)
    for _ in range(3):
        updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params["w"])


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_make_optimizer_uses_an_optim_key_exactly_where_the_config_allows_it(name, schedule):
    """config.OPTIM_KEY_USERS, which rejects settings that would do nothing, agrees with make_optimizer."""
    base = {f.name: f.default for f in dataclasses.fields(OptimConfig)} | {"name": name, "schedule": schedule}
    other = {"momentum": 0.5, "weight_decay": 0.1, "warmup_steps": 3, "decay_rate": 0.1, "decay_steps": 2}
    assert set(other) == set(OPTIM_KEY_USERS)
    reference = _updates_after_three_steps(types.SimpleNamespace(**base))
    for key, value in other.items():
        changed = _updates_after_three_steps(types.SimpleNamespace(**{**base, key: value}))
        chooser, users = OPTIM_KEY_USERS[key]
        assert (not np.array_equal(changed, reference)) == (base[chooser] in users), key


def test_fit_beats_the_baseline_and_writes_the_run_directory(tmp_path):
    config = small_config(train={"steps": 200, "eval_every": 50, "stop_when_solved": False})
    summary = fit(config, tmp_path / "run")
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "checkpoints",
        "learning_curve.png",
    }
    records = rundir.read_metrics(run)
    assert [r["step"] for r in records] == [50, 100, 150, 200]
    assert set(records[0]) >= {"step", "loss", "metric", "metric_name", "baseline", "time", "solved"}
    assert summary == rundir.read_summary(run)
    assert summary["status"] == "completed" and summary["steps"] == 200
    assert summary["final"]["loss"] < 0.5 * summary["baseline"]["loss"]  # well below 1/6
    assert summary["beats_baseline"] is True
    assert load_config(run / "config.yaml") == config


def test_resume_gives_bit_identical_parameters(tmp_path):
    config = small_config()
    fit(config, tmp_path / "straight")
    fit(config, tmp_path / "interrupted")
    ckpts = tmp_path / "interrupted" / rundir.CHECKPOINTS
    for step in (30, 40):  # as if the process had died just after step 20's checkpoint
        checkpoint.checkpoint_path(ckpts, step).unlink()
    summary = fit(config, tmp_path / "interrupted", resume=True)
    assert summary["resumed_from"] == 20 and summary["steps"] == 40
    straight, resumed = final_params(tmp_path / "straight"), final_params(tmp_path / "interrupted")
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)
    assert [r["step"] for r in rundir.read_metrics(tmp_path / "interrupted")] == [20, 40]


def test_a_second_run_into_the_same_directory_needs_resume(tmp_path):
    config = small_config(train={"steps": 10})
    fit(config, tmp_path)
    with pytest.raises(ValueError, match="expected a new directory"):
        fit(config, tmp_path)


@pytest.mark.parametrize("checkpoint_every", [1, 1000])
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, checkpoint_every):
    """Also when it happens before the first scheduled checkpoint: the last good state is saved then."""
    config = small_config(
        model={"cell": "rnn", "activation": "relu", "recurrent_init": "scaled_normal", "recurrent_scale": 3.0},
        optim={"name": "sgd", "learning_rate": 1e6, "clip_norm": None, "momentum": 0.0},
        train={"steps": 50, "checkpoint_every": checkpoint_every},
    )
    with pytest.raises(NonFiniteError, match=r"non-finite loss, gradient or parameters at step (\d+): run stopped"):
        fit(config, tmp_path)
    summary = rundir.read_summary(tmp_path)
    assert summary["status"] == "non_finite"
    kept = checkpoint.latest_step(tmp_path / rundir.CHECKPOINTS)
    assert kept is not None and kept == summary["steps"]
    state = final_params(tmp_path)
    assert int(state.step) == kept
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(state))


def _snapshot(directory):
    """Every path under ``directory`` with the bytes and modification time of each file."""
    return {
        p.relative_to(directory): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
        for p in directory.rglob("*")
    }


def test_only_process_0_writes_the_run_directory(tmp_path, monkeypatch):
    """Another process of a multi-process run trains the same model and writes nothing: not on a
    new run, not on resume (it restores process 0's checkpoint), not when the run stops on a NaN."""
    config, run = small_config(), tmp_path / "run"
    monkeypatch.setattr(jax, "process_index", lambda *args, **kwargs: 1)
    other = fit(config, run)
    assert not run.exists()
    monkeypatch.setattr(jax, "process_index", lambda *args, **kwargs: 0)
    first = fit(config, run)
    assert other["final"] == first["final"] and other["steps"] == first["steps"] == 40
    for step in (30, 40):  # as if the processes had died just after step 20's checkpoint
        checkpoint.checkpoint_path(run / rundir.CHECKPOINTS, step).unlink()
    before = _snapshot(run)
    monkeypatch.setattr(jax, "process_index", lambda *args, **kwargs: 1)
    resumed = fit(config, run, resume=True)
    assert _snapshot(run) == before
    assert resumed["resumed_from"] == 20 and resumed["final"] == first["final"]
    exploding = small_config(
        model={"cell": "rnn", "activation": "relu", "recurrent_init": "scaled_normal", "recurrent_scale": 3.0},
        optim={"name": "sgd", "learning_rate": 1e6, "clip_norm": None, "momentum": 0.0},
        train={"steps": 50, "checkpoint_every": 1000},
    )
    with pytest.raises(NonFiniteError):
        fit(exploding, tmp_path / "nan")
    assert not (tmp_path / "nan").exists()


_PROCESS = """
import json, sys, jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from lstm_jax.config import load_config
from lstm_jax.train import fit
with jax.numpy_dtype_promotion("standard"):
    summary = fit(load_config(sys.argv[3]), sys.argv[4])
print(json.dumps([jax.process_index(), len(jax.devices()), summary["final"]]))
"""


def test_two_jax_processes_train_together_and_process_0_writes(tmp_path):
    """A real multi-process run on one machine: two CPU processes (jax.distributed, gloo), one device each."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _write_config(tmp_path / "c.yaml")
    args = [f"127.0.0.1:{port}", None, str(cfg), str(tmp_path / "run")]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS, *args[:1], str(i), *args[2:]],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    (i0, n0, final0), (i1, n1, final1) = (json.loads(out.strip().splitlines()[-1]) for out, _ in outputs)
    assert (i0, i1, n0, n1) == (0, 1, 2, 2) and final0 == final1
    assert [r["step"] for r in rundir.read_metrics(tmp_path / "run")] == [20, 40]  # one writer, no duplicates
    assert rundir.read_summary(tmp_path / "run")["final"] == final0
    one = fit(small_config(), tmp_path / "one")  # the same run in this single process
    np.testing.assert_allclose(final0["loss"], one["final"]["loss"], rtol=1e-5)


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    config = small_config()
    first = fit(config, tmp_path)
    records = rundir.read_metrics(tmp_path)
    again = fit(config, tmp_path, resume=True)
    assert again["final"] == first["final"] and again["steps"] == first["steps"] == 40
    assert rundir.read_metrics(tmp_path) == records


def test_a_run_stopped_as_solved_stays_stopped_on_resume(tmp_path):
    config = small_config(task={"params": {"T": 5}}, train={"steps": 2000, "eval_every": 10, "checkpoint_every": 10})
    first = fit(config, tmp_path)
    assert first["status"] == "solved" and first["steps"] < 2000
    again = fit(config, tmp_path, resume=True)
    assert again["status"] == "solved" and again["steps"] == first["steps"] and again["final"] == first["final"]


def test_resume_rejects_another_config_and_mismatched_checkpoints(tmp_path):
    config = small_config(train={"steps": 10})
    fit(config, tmp_path)
    with pytest.raises(ValueError, match="--resume: expected the config saved in"):
        fit(small_config(model={"hidden_size": 8}, train={"steps": 10}), tmp_path, resume=True)
    with pytest.raises(ValueError, match="--resume: expected a checkpoint in"):
        fit(config, tmp_path / "empty", resume=True)
    task = make_task("adding", T=10)
    other = small_config(model={"hidden_size": 8})
    template = init_state(other, task, make_optimizer(other.optim, 10), run_keys(0)[0])
    with pytest.raises(ValueError, match=r"checkpoint: expected .*w_ih of shape \(32, 2\) .* got \(64, 2\)"):
        checkpoint.restore_checkpoint(tmp_path / rundir.CHECKPOINTS, template)


def test_temporary_files_of_a_killed_write_are_removed_on_resume(tmp_path):
    config = small_config(train={"steps": 10})
    fit(config, tmp_path)
    leftover = tmp_path / rundir.CHECKPOINTS / ".tmp_ckpt_000000020.msgpack_abc"
    leftover.write_bytes(b"half a checkpoint")
    fit(config, tmp_path, resume=True)
    assert not leftover.exists()


@pytest.mark.parametrize("cell", CELLS)
def test_manual_bptt_training_follows_the_autodiff_curve(cell, tmp_path):
    train = {"steps": 20, "eval_every": 5, "stop_when_solved": False}
    fit(small_config(model={"cell": cell}, train=train), tmp_path / "auto")
    fit(small_config(model={"cell": cell}, train={**train, "gradients": "manual"}), tmp_path / "manual")
    auto, manual = rundir.read_metrics(tmp_path / "auto"), rundir.read_metrics(tmp_path / "manual")
    np.testing.assert_allclose([r["loss"] for r in manual], [r["loss"] for r in auto], rtol=1e-4)
    assert_trees_close(
        final_params(tmp_path / "manual").params, final_params(tmp_path / "auto").params, rtol=1e-3, atol=1e-5
    )


def test_manual_gradients_reject_stacked_models():
    with pytest.raises(ValueError, match="train.gradients: expected 'autodiff' for this model"):
        fit(small_config(model={"num_layers": 2}, train={"gradients": "manual"}), "/nonexistent/never/created")


@pytest.mark.parametrize("model", [{"remat": "sqrt"}, {"truncate": 5}])
def test_manual_gradients_reject_remat_and_truncation(model):
    with pytest.raises(ValueError, match="train.gradients: expected 'autodiff' with model.remat or model.truncate"):
        fit(small_config(model=model, train={"gradients": "manual"}), "/nonexistent/never/created")


def _cli(*args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "lstm_jax.cli", *args], capture_output=True, text=True, cwd=ROOT, env=env, **kw
    )


def _write_config(path, **sections):
    from lstm_jax.config import save_config

    save_config(small_config(**sections), path)
    return path


def test_kill_at_any_moment_leaves_a_restorable_checkpoint(tmp_path):
    """SIGKILL a real training process while it checkpoints every step; then restore and resume."""
    cfg = _write_config(tmp_path / "c.yaml", train={"steps": 400, "checkpoint_every": 1, "eval_every": 400})
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstm_jax.cli", "train", str(cfg), "--out", str(run), "--no-progress"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while (checkpoint.latest_step(run / rundir.CHECKPOINTS) or 0) < 30 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = checkpoint.latest_step(run / rundir.CHECKPOINTS)
    assert step is not None and 30 <= step < 400
    state = final_params(run)  # the newest checkpoint restores
    assert int(state.step) == step
    result = _cli("train", str(cfg), "--out", str(run), "--resume", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert rundir.read_summary(run)["steps"] == 400
    assert not list((run / rundir.CHECKPOINTS).glob(".tmp_*"))
    straight = _cli("train", str(cfg), "--out", str(tmp_path / "straight"), "--no-progress")
    assert straight.returncode == 0, straight.stderr
    for a, b in zip(jax.tree.leaves(final_params(tmp_path / "straight")), jax.tree.leaves(final_params(run))):
        np.testing.assert_array_equal(a, b)  # killed + resumed == uninterrupted, bit for bit


def test_cli_train_and_eval(tmp_path):
    cfg = _write_config(tmp_path / "c.yaml", train={"steps": 20, "eval_every": 10})
    result = _cli("train", str(cfg), "--out", str(tmp_path / "run"), "--set", "train.steps=30", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "after 30 steps" in result.stdout and "baseline 0.1667" in result.stdout
    result = _cli("eval", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "step 30: loss" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "missing.yaml"], "no such file"),
        (["train", "{bad}"], "no such file"),
        (["train", "BADYAML"], "invalid YAML"),
        (["train", "CFG", "--set", "task.name=adder"], "task.name: expected one of ['adding'"),
        (["train", "CFG", "--set", "optim.name=adamm"], "optim.name"),
        (["train", "CFG", "--set", "model.hidden_size=0"], "model.hidden_size"),
        (["train", "CFG", "--set", "task.params.T=1"], "T"),
        (["eval", "/nonexistent/run"], "no such file"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, message, tmp_path):
    cfg = _write_config(tmp_path / "c.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    args = [str(cfg) if a == "CFG" else str(bad) if a == "BADYAML" else a for a in args]
    result = _cli(*args, "--out", str(tmp_path / "run")) if args[0] == "train" else _cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_four_devices_give_the_same_losses_as_one(tmp_path):
    """Data parallel over 4 CPU devices (XLA_FLAGS), batch sharded, parameters replicated."""
    cfg = _write_config(tmp_path / "c.yaml", train={"steps": 20, "eval_every": 5, "stop_when_solved": False})
    one = _cli("train", str(cfg), "--out", str(tmp_path / "one"), "--no-progress")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    four = _cli("train", str(cfg), "--out", str(tmp_path / "four"), "--no-progress", env=env)
    assert one.returncode == 0 and four.returncode == 0, one.stderr + four.stderr
    assert len(json.loads((tmp_path / "four" / "summary.json").read_text())["devices"]) == 4
    losses = [[r["loss"] for r in rundir.read_metrics(tmp_path / d)] for d in ("one", "four")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    probe = (
        "from lstm_jax.train import data_parallel; import jax; b, r = data_parallel(16); "
        "x = jax.jit(lambda: jax.numpy.zeros((16, 3)), out_shardings=b)(); "
        "print(len(x.addressable_shards), x.addressable_shards[0].data.shape, r.is_fully_replicated)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env)
    assert result.stdout.split() == ["4", "(4,", "3)", "True"], result.stderr


@pytest.mark.parametrize("name", ["sunspots", "charlm"])
def test_real_data_tasks_are_evaluated_on_their_test_split(tmp_path, name):
    pytest.importorskip("statsmodels")
    config = config_from_dict(
        {
            "task": {"name": name, "params": {"T": 16}},
            "model": {"hidden_size": 8},
            "train": {"steps": 10, "batch_size": 8, "eval_every": 10, "checkpoint_every": 10},
        }
    )
    summary = fit(config, tmp_path)
    train_task, test_task = make_task(name, T=16), make_task(name, T=16, split="test")
    assert train_task.baseline != test_task.baseline  # e.g. persistence differs between 1700-1946 and 1947-2008
    assert summary["baseline"]["loss"] == test_task.baseline
    spec = model_spec(config, test_task)
    loss, metric = evaluate(make_eval_step(spec, test_task), test_task, final_params(tmp_path).params, None, 1, 1)
    assert summary["final"] == {"loss": loss, test_task.metric_name: metric}  # scored on the whole test split
    with pytest.raises(ValueError, match="task.params.split: expected no value"):
        fit(config_from_dict({"task": {"name": name, "params": {"split": "test"}}}), tmp_path / "x")


def _by_hand(name, spec, params):
    """``(loss, metric)`` of a model on the whole test split, from the raw data, with numpy."""
    from lstm_jax.tasks import real

    logits_of = jax.jit(lambda x: apply_model(spec, params, x))
    if name == "digits":  # every test image once: cross-entropy and accuracy
        inputs, labels = real.digits_split("test", "rows")
        logits = np.asarray(logits_of(jnp.asarray(inputs)), np.float64)
        log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -log_p[np.arange(len(labels)), labels].mean(), np.mean(logits.argmax(-1) == labels)
    if name == "sunspots":  # every test window of 16 years once: MSE of the next year's value
        x = real.sunspots_split("test").values.astype(np.float32)
        windows = np.stack([x[s : s + 17] for s in range(len(x) - 16)])
        forecast = np.asarray(logits_of(jnp.asarray(windows[:, :16, None])))[..., 0]
        mse = np.mean((forecast.astype(np.float64) - windows[:, 1:]) ** 2)
        return mse, mse
    # charlm, T = 57: the 171 target characters of the Zen's test part are 3 windows of 57, each once
    text, vocabulary = real.charlm_split("zen", "test"), real.charlm_vocabulary("zen")
    ids = np.array([vocabulary.index(c) if c in vocabulary else len(vocabulary) - 1 for c in text])  # unseen: UNKNOWN
    chunks = np.stack([ids[s : s + 58] for s in (0, 57, 114)])
    logits = np.asarray(logits_of(jax.nn.one_hot(jnp.asarray(chunks[:, :57]), len(vocabulary))), np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nats = -np.take_along_axis(log_p, chunks[:, 1:, None], -1).mean()
    return nats, nats / np.log(2)


@pytest.mark.parametrize("name, params", [("digits", {}), ("sunspots", {"T": 16}), ("charlm", {"T": 57})])
def test_evaluation_on_a_finite_test_split_scores_every_example_once(name, params):
    pytest.importorskip("statsmodels")
    pytest.importorskip("sklearn")
    config = config_from_dict({"task": {"name": name, "params": params}, "model": {"hidden_size": 8}})
    _, test_task = tasks_for(config)
    spec = model_spec(config, test_task)
    params_ = init_state(config, test_task, make_optimizer(config.optim, 10), run_keys(0)[0]).params
    eval_step = make_eval_step(spec, test_task)
    first = evaluate(eval_step, test_task, params_, jax.random.key(1), 1, 4)
    assert evaluate(eval_step, test_task, params_, jax.random.key(2), 5, 64) == first  # no draws: deterministic
    np.testing.assert_allclose(first, _by_hand(name, spec, params_), rtol=1e-5)


def test_cli_sample_from_a_character_model(tmp_path, capsys):
    from lstm_jax import cli
    from lstm_jax.config import save_config
    from lstm_jax.tasks.real import charlm_vocabulary

    cfg = tmp_path / "c.yaml"
    save_config(
        config_from_dict(
            {
                "task": {"name": "charlm", "params": {"T": 16}},
                "model": {"hidden_size": 16},
                "train": {"steps": 10, "batch_size": 8, "eval_every": 10, "checkpoint_every": 10},
            }
        ),
        cfg,
    )
    assert cli.main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["sample", str(tmp_path / "run"), "--prompt", "Beautiful", "--length", "40", "--seed", "3"]) == 0
    text = capsys.readouterr().out[:-1]  # print's own newline
    assert text.startswith("Beautiful") and len(text) == len("Beautiful") + 40
    assert set(text) <= set(charlm_vocabulary("zen"))
    assert cli.main(["sample", str(tmp_path / "run"), "--temperature", "0"]) == 2
    assert cli.main(["sample", str(tmp_path / "run"), "--length", "5"]) == 0  # the prompt: the run's own text
    assert capsys.readouterr().out.startswith("The Zen of Python, by Tim Peters")


def test_training_with_an_embedding_input_layer(tmp_path):
    config = small_config(model={"input_layer": "embedding", "input_features": 4}, train={"steps": 10})
    summary = fit(config, tmp_path)
    assert summary["steps"] == 10
    assert final_params(tmp_path).params.input.w.shape == (4, 2)
    with pytest.raises(ValueError, match="input_layer='embedding'"):
        fit(small_config(model={"input_layer": "embedding"}, train={"gradients": "manual"}), tmp_path / "m")
