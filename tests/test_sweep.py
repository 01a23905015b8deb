"""The sweep runner (experiments/sweep.py): its grid, seeds, worker processes and options."""

import json

import pytest
from _util import load_experiment


@pytest.fixture(scope="module")
def sweep():
    return load_experiment("sweep")


def test_unknown_experiment_is_exit_2(sweep, capsys):
    with pytest.raises(SystemExit) as error:
        sweep.main(["adding_problem", "--plot"])
    assert error.value.code == 2
    assert "invalid choice: 'adding_problem'" in capsys.readouterr().err


def test_grid_has_seeds_zero_to_n_per_point(sweep):
    names = [p.name for p in sweep.runs("copy", seeds=2)]
    assert names == [f"copy_{cell}_T{T}_seed{s}" for cell in ("lstm", "gru", "rnn") for T in (10, 20) for s in (0, 1)]
    assert len(list(sweep.runs("copy"))) == 3 * 2 * sweep.SEEDS
    assert len(list(sweep.runs("temporal_order"))) == 3 * 3 * 20  # the experiment's own seeds
    assert sweep.SEEDS >= 10


def test_jobs_train_in_worker_processes(sweep, tmp_path, monkeypatch, capsys):
    """Two tiny real runs in two spawned workers; their rows are gathered in the grid's order."""
    tiny = {"configs": ["configs/quickstart.yaml"], "grid": {"train.steps": [2], "task.params.T": [5]}, "published": {}}
    monkeypatch.setitem(sweep.EXPERIMENTS, "tiny", tiny)
    monkeypatch.setattr(sweep.report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(sweep, "RUNS", tmp_path / "runs")
    rows = sweep.run_grid("tiny", seeds=2, jobs=2)
    assert [r["run"] for r in rows] == ["quickstart_steps2_T5_seed0", "quickstart_steps2_T5_seed1"]
    assert json.loads((tmp_path / "results" / "tiny.json").read_text()) == rows
    assert [(r["status"], r["steps"], r["task"]["params"]["T"]) for r in rows] == [("completed", 2, 5)] * 2
    assert rows[0]["final"]["loss"] != rows[1]["final"]["loss"]  # seeds 0 and 1
    out = capsys.readouterr().out
    assert all(f"{r['run']}: completed at step 2, loss {r['final']['loss']}" in out for r in rows)
    assert sweep.run_grid("tiny", seeds=2, jobs=2) == rows  # finished runs are not trained again


def test_curve_is_the_records_as_columns(sweep):
    records = [{"step": 100, "loss": 0.2, "metric": 0.3, "time": 1.0}, {"step": 200, "loss": 0.1, "metric": 0.2}]
    assert sweep.curve(records) == {"step": [100, 200], "loss": [0.2, 0.1], "metric": [0.3, 0.2]}


@pytest.mark.parametrize("experiment", ["adding", "copy", "temporal_order"])
def test_gru_is_a_model_of_the_experiment_with_the_lstm_grid(sweep, experiment):
    """The committed results hold the GRU on the LSTM's grid (same T and seeds), between the LSTM and the RNN."""
    rows = sweep.report.read_results(experiment)
    grid = {
        cell: sorted((r["task"]["params"]["T"], r["overrides"][-1]) for r in rows if r["model"]["cell"] == cell)
        for cell in ("lstm", "gru", "rnn")
    }
    assert grid["gru"] == grid["lstm"] == grid["rnn"] != []
    assert list(dict.fromkeys(r["model"]["cell"] for r in rows)) == ["lstm", "gru", "rnn"]
    groups = [key for key, _ in sweep.report.by_config_and_T(rows)]
    Ts = sorted({T for T, _ in grid["gru"]})
    assert groups == [(f"{experiment}_{cell}", T) for cell in ("lstm", "gru", "rnn") for T in Ts]


def _fake_fit(trained):
    """A stand-in for ``lstm_jax.train.fit`` that records what it was asked to train and writes a tiny run."""
    from lstm_jax import rundir

    def fit(config, run_dir, resume=False):
        run_dir.mkdir(parents=True, exist_ok=True)
        T = config.task.params["T"]
        trained.append((config.model.cell, T, config.seed))
        summary = {
            "name": config.name,
            "task": {"name": config.task.name, "params": {"T": T}},
            "model": {"cell": config.model.cell},
            "status": "completed",
            "steps": 3,
            "final": {"loss": 0.5, "accuracy_on_copy": 0.25},
            "baseline": {"loss": 0.6},
            "solved": False,
            "metric_name": "accuracy_on_copy",
            "wall_seconds": 0.1,
        }
        rundir.append_metrics(run_dir, {"step": 3, "loss": 0.5, "metric": 0.25})
        rundir.write_summary(run_dir, summary)
        return summary

    return fit


def test_cells_runs_only_that_cell_and_keeps_the_other_rows(sweep, tmp_path, monkeypatch, capsys):
    import lstm_jax.train

    grid = {p.name for p in sweep.runs("copy", seeds=3)}
    committed = [r for r in sweep.report.read_results("copy") if r["model"]["cell"] != "gru" and r["run"] in grid]
    dropped = committed.pop()  # a grid point the file lacks: left out, with a message, never trained
    (tmp_path / "copy.json").write_text(json.dumps(committed))
    monkeypatch.setattr(sweep.report, "RESULTS", tmp_path)
    monkeypatch.setattr(sweep, "RUNS", tmp_path / "runs")
    trained = []
    monkeypatch.setattr(lstm_jax.train, "fit", _fake_fit(trained))
    rows = sweep.run_grid("copy", ["gru"], seeds=3)
    assert trained == [("gru", T, seed) for T in (10, 20) for seed in (0, 1, 2)]
    expected = [p.name for p in sweep.runs("copy", seeds=3) if p.name != dropped["run"]]
    assert [r["run"] for r in rows] == expected
    assert [r for r in rows if r["model"]["cell"] != "gru"] == committed
    assert json.loads((tmp_path / "copy.json").read_text()) == rows
    assert f"{dropped['run']}: not in copy.json, left out" in capsys.readouterr().out
    again = []  # a second call reuses the finished GRU runs
    monkeypatch.setattr(lstm_jax.train, "fit", _fake_fit(again))
    assert sweep.run_grid("copy", ["gru"], seeds=3) == rows
    assert again == []


def test_cells_naming_no_config_of_the_experiment_is_an_error(sweep):
    with pytest.raises(ValueError, match="cells: expected the cell of one of"):
        sweep.run_grid("clipping", ["gru"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["copy", "--table", "--cells", "gru"], "--cells is for running the grid; it does not go with --table"),
        (["copy", "--plot", "--seeds", "3"], "--seeds is for running the grid; it does not go with --plot"),
        (["copy", "--docs", "--jobs", "2"], "--jobs is for running the grid; it does not go with --docs"),
        (["copy", "--seeds", "0"], "--seeds: expected a positive integer, got '0'"),
        (["copy", "--jobs", "two"], "--jobs: expected a positive integer, got 'two'"),
    ],
)
def test_run_options_are_checked(sweep, capsys, argv, message):
    with pytest.raises(SystemExit) as error:
        sweep.main(argv)
    assert error.value.code == 2
    assert message in capsys.readouterr().err
