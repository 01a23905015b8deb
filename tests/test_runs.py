"""Runs that survive what clusters and people do to them: signals, requeues, damaged checkpoints,
a second run on the same directory, resource errors; and the logs, TensorBoard and Python API.

The subprocess tests send real signals to real training processes; each compares the resumed run's
final parameters with an uninterrupted run's, bit for bit.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from test_train import final_params, small_config

import lstm_jax as lj
from lstm_jax import checkpoint, cli, rundir, train
from lstm_jax.config import save_config
from lstm_jax.train import ResourceError, fit

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "lstm_jax.cli"]


@pytest.fixture(autouse=True)
def _standard_dtype_promotion():
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam (see test_train)
        yield


def _config_file(path, **sections):
    save_config(small_config(**sections), path)
    return path


def _wait_for(condition, timeout=180.0, what="condition"):
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _same_params(run_a, run_b):
    for a, b in zip(jax.tree.leaves(final_params(run_a)), jax.tree.leaves(final_params(run_b))):
        np.testing.assert_array_equal(a, b)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------
# Graceful stop.


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_checkpoints_exits_128_plus_n_and_resumes_to_the_uninterrupted_result(tmp_path, sig, code):
    """SIGTERM is resumed and compared with an uninterrupted run; SIGINT takes the same path after the handler."""
    sections = dict(train={"steps": 3000, "eval_every": 20, "checkpoint_every": 100000, "stop_when_solved": False})
    cfg, run = _config_file(tmp_path / "c.yaml", **sections), tmp_path / "run"
    proc = subprocess.Popen([*CLI, "train", str(cfg), "--out", str(run), "--no-progress"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _wait_for(lambda: rundir.read_metrics(run), what="a first evaluation")
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    line = _one_line(err)
    summary = rundir.read_summary(run)
    stopped = summary["steps"]
    assert f"{signal.Signals(sig).name}: stopped after step {stopped} of 3000, checkpoint saved" in line
    assert summary["status"] == "interrupted" and 20 <= stopped < 3000
    assert checkpoint.latest_step(run / rundir.CHECKPOINTS) == stopped  # checkpoint_every would never have saved
    if sig == signal.SIGINT:
        return
    resumed = subprocess.run([*CLI, "train", str(cfg), "--out", str(run), "--resume", "--no-progress"],
                             cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    fit(small_config(**sections), tmp_path / "straight", progress=None)
    _same_params(run, tmp_path / "straight")


def test_the_second_signal_ends_the_process_at_once():
    code = (
        "import os, signal, time\n"
        "from lstm_jax.signals import stop_requests\n"
        "with stop_requests() as request:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.1)\n"
        "    print(request.name, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(60)\n"
        "    print('still running', flush=True)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.stdout == "SIGINT\n" and result.returncode == -signal.SIGINT, result


def test_stop_requests_restore_the_previous_handlers():
    from lstm_jax.signals import stop_requests

    before = signal.getsignal(signal.SIGTERM)
    with stop_requests() as outer, stop_requests() as inner:
        assert inner is outer and signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_DFL)
    assert signal.getsignal(signal.SIGTERM) == before


# ----------------------------------------------------------------------------------------------
# One command for requeued jobs.


def test_resume_auto_survives_kills_before_and_after_the_first_checkpoint(tmp_path):
    sections = dict(train={"steps": 2000, "eval_every": 100, "checkpoint_every": 1000, "stop_when_solved": False})
    cfg, run = _config_file(tmp_path / "c.yaml", **sections), tmp_path / "run"
    command = [*CLI, "train", str(cfg), "--out", str(run), "--resume", "auto", "--no-progress"]
    ckpts = run / rundir.CHECKPOINTS
    early = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: (run / rundir.CONFIG).exists(), what="the run's config.yaml")
    early.kill()  # the run has started (config, lock), not yet reached its first checkpoint
    early.wait()
    assert checkpoint.latest_step(ckpts) is None and (run / rundir.CONFIG).exists()
    later = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: (checkpoint.latest_step(ckpts) or 0) >= 1000, what="a checkpoint at step 1000")
    later.kill()
    later.wait()
    killed_at = checkpoint.latest_step(ckpts)
    assert (run / rundir.LOCK).exists()  # the killed process's lock, taken over below
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    summary = rundir.read_summary(run)
    assert summary["steps"] == 2000 and summary["resumed_from"] == killed_at
    assert not (run / rundir.LOCK).exists()
    fit(small_config(**sections), tmp_path / "straight", progress=None)
    _same_params(run, tmp_path / "straight")


def test_resume_modes(tmp_path):
    config = small_config()
    with pytest.raises(ValueError, match=r"--resume: expected a checkpoint in .* got none \(--resume auto starts"):
        fit(config, tmp_path / "a", resume=True)
    assert not (tmp_path / "a").exists()  # a failed start leaves nothing
    assert fit(config, tmp_path / "a", resume="auto", progress=None)["resumed_from"] is None
    assert fit(config, tmp_path / "a", resume="auto", progress=None)["steps"] == 40
    with pytest.raises(ValueError, match=r"expected a new directory \(or --resume / --resume auto\)"):
        fit(config, tmp_path / "a")
    with pytest.raises(ValueError, match="resume: expected False, True or 'auto', got 'yes'"):
        fit(config, tmp_path / "b", resume="yes")


# ----------------------------------------------------------------------------------------------
# Checkpoints.


def _tree():
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.int32(7)}


def test_a_checkpoint_damaged_after_writing_is_detected_by_its_checksum(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path, 7, _tree(), meta={"wall_seconds": 1.5})
    restored = checkpoint.restore(tmp_path, _tree(), 7)
    assert restored.meta == {"wall_seconds": 1.5} and restored.step == 7
    data = bytearray(path.read_bytes())
    middle = data.index(_tree()["w"].tobytes()) + 4  # inside the payload's array bytes
    data[middle : middle + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.DamagedCheckpoint, match=r"checkpoint: expected SHA-256 \w+ in .*, got \w+"):
        checkpoint.restore(tmp_path, _tree(), 7)


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, damage):
    for step in (1, 2, 3):
        checkpoint.save_checkpoint(tmp_path, step, {**_tree(), "step": np.int32(step)})
    newest = checkpoint.checkpoint_path(tmp_path, 3)
    data = newest.read_bytes()
    middle = data.index(_tree()["w"].tobytes()) + 4
    newest.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:middle] + b"\xff" * 8 + data[middle + 8 :])
    with pytest.warns(checkpoint.CheckpointWarning, match="skipped damaged step 3 .* restored step 2"):
        restored = checkpoint.restore_latest(tmp_path, _tree())
    assert restored.step == 2 and int(restored.tree["step"]) == 2
    for step in (1, 2):
        checkpoint.checkpoint_path(tmp_path, step).write_bytes(b"garbage")
    with pytest.raises(ValueError, match="expected an intact checkpoint in .* got 3 damaged"):
        checkpoint.restore_latest(tmp_path, _tree())


def test_the_checksum_covers_the_meta_too(tmp_path):
    path = checkpoint.save_checkpoint(tmp_path, 7, _tree(), meta={"wall_seconds": 1.5})
    path.write_bytes(path.read_bytes().replace(b"wall_seconds", b"wall_secondz"))
    with pytest.raises(checkpoint.DamagedCheckpoint, match="SHA-256"):
        checkpoint.restore(tmp_path, _tree(), 7)


def test_a_checkpoint_of_another_model_is_an_error_not_a_fallback(tmp_path):
    checkpoint.save_checkpoint(tmp_path, 1, _tree())
    other = {"w": np.zeros((3, 3), np.float32), "step": np.int32(0)}
    with pytest.raises(ValueError, match=r"expected \['w'\] of shape \(3, 3\)"):
        checkpoint.restore_latest(tmp_path, other)


def test_a_checkpoint_from_before_checksums_still_loads(tmp_path):
    from flax import serialization

    checkpoint.checkpoint_path(tmp_path, 4).write_bytes(serialization.to_bytes(_tree()))
    restored = checkpoint.restore_latest(tmp_path, _tree())
    assert restored.step == 4 and restored.meta == {}
    np.testing.assert_array_equal(restored.tree["w"], _tree()["w"])


def test_resume_warns_in_one_line_and_uses_the_older_checkpoint(tmp_path, capsys):
    config = small_config()
    fit(config, tmp_path / "run", progress=None)
    newest = checkpoint.checkpoint_path(tmp_path / "run" / rundir.CHECKPOINTS, 40)
    newest.write_bytes(newest.read_bytes()[:100])
    capsys.readouterr()
    summary = fit(config, tmp_path / "run", resume=True, progress=False)
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "skipped damaged step 40" in warning[0] and "restored step 30" in warning[0]
    assert summary["resumed_from"] == 30 and summary["steps"] == 40
    assert checkpoint.restore(tmp_path / "run" / rundir.CHECKPOINTS, final_params(tmp_path / "run"), 40).step == 40


def test_a_failed_start_removes_only_what_it_created(tmp_path):
    fit(small_config(), tmp_path / "old", progress=None)
    for step in checkpoint.checkpoint_steps(tmp_path / "old" / rundir.CHECKPOINTS):  # deleted: the rest stays
        checkpoint.checkpoint_path(tmp_path / "old" / rundir.CHECKPOINTS, step).unlink()
    found = sorted(p.name for p in (tmp_path / "old").iterdir())
    with pytest.raises(ValueError, match="--resume: expected a checkpoint"):
        fit(small_config(), tmp_path / "old", resume=True)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == found
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(ResourceError, match="out of memory"):
        fit(small_config(train={"batch_size": 10**9}), tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    with pytest.raises(ResourceError, match="out of memory"):
        fit(small_config(train={"batch_size": 10**9}), tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()


def test_temporary_files_are_removed_when_a_run_starts(tmp_path):
    leftover = tmp_path / rundir.CHECKPOINTS / ".tmp_ckpt_000000020.msgpack_abc"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a checkpoint")
    fit(small_config(train={"steps": 10}), tmp_path, resume="auto", progress=None)
    assert not leftover.exists()


# ----------------------------------------------------------------------------------------------
# The run-directory lock.


def test_a_second_run_on_a_locked_directory_exits_2_naming_the_running_pid(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom lstm_jax import rundir\n"
         "with rundir.lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n", str(run)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        cfg = _config_file(tmp_path / "c.yaml")
        capsys.readouterr()
        assert cli.main(["train", str(cfg), "--out", str(run)]) == 2
        assert f"got one running (pid {holder.pid} on " in _one_line(capsys.readouterr().err)
        assert sorted(p.name for p in run.iterdir()) == [rundir.LOCK]  # nothing written beside the lock
    finally:
        holder.kill()
        holder.wait()
    assert (run / rundir.LOCK).exists()  # stale: its process is dead
    assert fit(small_config(), run, progress=None)["steps"] == 40  # taken over
    assert not (run / rundir.LOCK).exists()


# ----------------------------------------------------------------------------------------------
# Resource errors and other one-line errors.


def _cli(*args, env=None):
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, env=env)


def test_out_of_memory_is_one_line_exit_2_naming_the_sizes_and_leaves_no_run_directory(tmp_path, capsys):
    cfg = _config_file(tmp_path / "c.yaml")
    assert cli.main(["train", str(cfg), "--out", str(tmp_path / "run"), "--set", "train.batch_size=1000000000"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "out of memory" in line and "train.batch_size=1000000000" in line and "task.params.T=10" in line
    assert not (tmp_path / "run").exists()


def test_resource_errors_become_resource_error(tmp_path):
    with pytest.raises(ResourceError, match="out of memory: .* with train.batch_size=16"):
        with train.resource_errors(small_config()):
            raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 1073741824 bytes.")
    with pytest.raises(ResourceError, match="^XLA runtime error: INTERNAL: boom$"):
        with train.resource_errors(small_config()):
            raise jax.errors.JaxRuntimeError("INTERNAL: Error dispatching computation: boom\ntrace")


def test_an_unavailable_platform_is_one_line_exit_2(tmp_path):
    cfg = _config_file(tmp_path / "c.yaml")
    env = {**os.environ, "JAX_PLATFORMS": "cuda"}
    if subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True).returncode == 0:
        pytest.skip("this machine has a CUDA backend")
    result = _cli("train", str(cfg), "--out", str(tmp_path / "run"), env=env)
    assert result.returncode == 2
    assert "platform: expected a JAX backend that starts for JAX_PLATFORMS='cuda'" in _one_line(result.stderr)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "CFG", "--out", ""], "argument --out: expected a directory path, got ''"),
        (["gradcheck", "--seed", "-1"], "argument --seed: expected a non-negative integer, got -1"),
        (["train", "CFG", "--resume", "yes"], "argument --resume: expected no value or 'auto', got 'yes'"),
        (["sample", "RUN", "--length", "0"], "argument --length: expected a positive integer, got 0"),
    ],
)
def test_bad_command_line_values_name_their_option(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / "c.yaml") if a == "CFG" else a for a in argv]
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Resume of a finished run, a changed config, extending a run.


def test_resuming_a_finished_run_keeps_its_wall_time(tmp_path):
    first = fit(small_config(), tmp_path, progress=None)
    again = fit(small_config(), tmp_path, resume=True, progress=None)
    assert first["wall_seconds"] > 0 and first["wall_seconds"] <= again["wall_seconds"] < first["wall_seconds"] + 5


def test_a_changed_config_on_resume_names_the_changed_keys(tmp_path):
    fit(small_config(), tmp_path, progress=None)
    changed = small_config(model={"hidden_size": 8}, optim={"learning_rate": 0.02})
    with pytest.raises(ValueError, match=r"changes in model.hidden_size \(16 -> 8\), optim.learning_rate \(0.01 -> 0.02\); "
                       r"only train.steps \(e.g. --set train.steps=N to extend the run\)"):  # fmt: skip
        fit(changed, tmp_path, resume=True)
    cosine = small_config(optim={"schedule": "cosine"})
    fit(cosine, tmp_path / "cosine", progress=None)
    with pytest.raises(ValueError, match=r"changes in train.steps \(40 -> 60\); only name, train.eval_every"):
        fit(small_config(optim={"schedule": "cosine"}, train={"steps": 60}), tmp_path / "cosine", resume=True)


def test_extending_a_run_equals_running_it_longer(tmp_path):
    fit(small_config(), tmp_path / "run", progress=None)
    longer = small_config(train={"steps": 60})
    summary = fit(longer, tmp_path / "run", resume=True, progress=None)
    assert summary["steps"] == 60 and summary["resumed_from"] == 40
    fit(longer, tmp_path / "straight", progress=None)
    _same_params(tmp_path / "run", tmp_path / "straight")


# ----------------------------------------------------------------------------------------------
# The loop does not wait for the device after every step.


def test_the_loop_reads_the_device_only_at_evaluations_and_checkpoints(tmp_path, monkeypatch):
    reads = []
    real = train._stop_if_not_finite
    monkeypatch.setattr(train, "_stop_if_not_finite", lambda *a: reads.append(1) or real(*a))
    fit(small_config(train={"steps": 40, "eval_every": 20, "checkpoint_every": 10}), tmp_path, progress=False)
    assert len(reads) == 5  # steps 10, 20, 30, 40 and the end, not 40


def test_the_guarded_step_freezes_the_state_at_the_first_non_finite_step_and_equals_the_plain_step():
    import jax.numpy as jnp

    config = small_config()
    task, _ = train.tasks_for(config)
    optimizer = train.make_optimizer(config.optim, 40)
    spec = train.model_spec(config, task)
    state = train.init_state(config, task, optimizer, jax.random.key(0))
    plain = train.make_train_step(spec, task, optimizer)
    guarded = train.make_guarded_step(spec, task, optimizer)
    batch = task.make_batch(jax.random.key(1), 16)
    a, _ = plain(state, batch)
    b, bad, metrics = guarded(state, jnp.array(-1, jnp.int32), batch)
    assert int(bad) == -1 and bool(metrics["finite"])
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    poisoned = batch._replace(inputs=batch.inputs.at[0, 0, 0].set(jnp.nan))
    c, bad, _ = guarded(b, bad, poisoned)
    assert int(bad) == 1
    d, bad, _ = guarded(c, bad, batch)  # a finite step after the bad one changes nothing
    assert int(bad) == 1
    for x, y, z in zip(jax.tree.leaves(b), jax.tree.leaves(c), jax.tree.leaves(d)):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


# ----------------------------------------------------------------------------------------------
# Logs and TensorBoard.


def test_off_a_terminal_each_evaluation_is_one_line(tmp_path, capsys):
    cfg = _config_file(tmp_path / "c.yaml")
    assert cli.main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0  # captured: not a terminal
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["20/40", "40/40"]
    assert all(w in lines[0] for w in ("eval loss", "(baseline 0.1667)", "mse", "train loss", "elapsed", "steps/s"))
    assert err == ""


def test_tensorboard_event_files(tmp_path):
    pytest.importorskip("tensorboardX")
    fit(small_config(train={"tensorboard": True}), tmp_path, progress=None)
    events = list((tmp_path / rundir.TENSORBOARD).glob("events.out.tfevents.*"))
    assert len(events) == 1 and b"eval/loss" in events[0].read_bytes() and b"eval/mse" in events[0].read_bytes()


def test_tensorboard_without_its_package_names_the_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ValueError, match=r"train.tensorboard: expected the tensorboardX package \(pip install 'lstm_jax\[tensorboard\]'\)"):  # fmt: skip
        fit(small_config(train={"tensorboard": True}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# The Python API and `lstm-jax list`.


def test_python_api_fit_and_load_run(tmp_path):
    data = {"task": {"name": "adding", "params": {"T": 10}}, "model": {"hidden_size": 16},
            "train": {"steps": 20, "batch_size": 16, "eval_every": 10}}  # fmt: skip
    summary = lj.fit(data, tmp_path / "run", overrides=["train.steps=30"], progress=None)
    assert summary["steps"] == 30
    run = lj.load_run(tmp_path / "run")
    assert run.step == 30 and run.summary == summary and run.config.train.steps == 30
    assert run.params.layers[0].w_hh.shape == (64, 16)
    logits = run.apply(np.zeros((3, 10, 2), np.float32))
    assert logits.shape == (3, 1)
    cfg = _config_file(tmp_path / "c.yaml")
    assert lj.fit(cfg, tmp_path / "from_yaml", progress=None)["steps"] == 40
    assert lj.fit(lj.load_config(cfg), tmp_path / "from_config", progress=None)["steps"] == 40
    with pytest.raises(ValueError, match="config: expected a Config, a mapping or a YAML path, got int"):
        lj.fit(3, tmp_path / "x")
    with pytest.raises(ValueError, match="run_dir: expected a directory path, got ''"):
        lj.fit(data, "")
    assert {"fit", "load_run", "catalog", "load_config", "Config"} <= set(lj.__all__)


def test_list_shows_configs_tasks_and_parameters(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "configs/quickstart.yaml" in out and "Quickstart: an LSTM on the adding problem" in out
    for name in ("adding", "copy", "temporal_order", "sunspots", "digits", "charlm"):
        assert f"\n  {name} " in out
    assert "T=100, num_symbols=8, copy_length=10" in out  # copy's parameters with their defaults
    catalog = lj.catalog()
    configs = {entry.path.name for entry in catalog.configs}
    assert configs == {p.name for p in (ROOT / "configs").glob("*.yaml")}
    assert all(entry.purpose for entry in catalog.configs + catalog.tasks)
    with pytest.raises(ValueError, match="configs: expected a directory of YAML files, got /nonexistent"):
        lj.catalog("/nonexistent")

