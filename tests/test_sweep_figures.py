"""The sweep figures (experiments/sweep.py --plot) drawn from the committed results, headless."""

import json
import shutil
import statistics

import matplotlib
import matplotlib.pyplot as plt
import pytest
from _util import ROOT, load_experiment

EXPERIMENTS = ["adding", "clipping", "copy", "temporal_order"]
README = (ROOT / "experiments" / "README.md").read_text()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep():
    return load_experiment("sweep")


@pytest.fixture
def draw(sweep):
    """Draw ``FIGURES[experiment](rows)`` and close every figure drawn afterwards."""
    made = []

    def make(experiment, rows=None):
        made.append(sweep.FIGURES[experiment](sweep.read_results(experiment) if rows is None else rows))
        return made[-1]

    yield make
    for fig in made:
        plt.close(fig)


def _labelled(ax, label):
    """The lines of ``ax`` whose legend label is ``label``."""
    return [x for x in ax.get_lines() if x.get_label() == label]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_figure_is_written_from_the_committed_results(sweep, experiment, tmp_path):
    path = sweep.figure(experiment, tmp_path / f"{experiment}.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_committed_figure_is_shown_in_the_readme(experiment):
    assert (ROOT / "experiments" / "results" / f"{experiment}.png").stat().st_size > 10_000
    assert f"(results/{experiment}.png)" in README
    assert f"python experiments/sweep.py {experiment} --plot" in README


def test_plot_option_writes_the_png_beside_the_results(sweep, tmp_path, monkeypatch, capsys):
    shutil.copy(sweep.RESULTS / "copy.json", tmp_path / "copy.json")
    monkeypatch.setattr(sweep, "RESULTS", tmp_path)
    assert sweep.main(["copy", "--plot"]) == 0
    assert (tmp_path / "copy.png").read_bytes()[:8] == PNG_MAGIC
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'copy.png'}"


def test_unknown_experiment_is_exit_2(sweep, capsys):
    with pytest.raises(SystemExit) as error:
        sweep.main(["adding_problem", "--plot"])
    assert error.value.code == 2
    assert "invalid choice: 'adding_problem'" in capsys.readouterr().err


def test_metric_figure_success_rate_is_solved_runs_over_seeds(sweep, draw):
    rows = sweep.read_results("temporal_order")
    success = draw("temporal_order").axes[0]
    for config in ("temporal_order_lstm", "temporal_order_gru", "temporal_order_rnn"):
        expected = [
            statistics.mean(bool(r["solved"]) for r in g) for (c, _), g in sweep._by_config_and_T(rows) if c == config
        ]
        (line,) = _labelled(success, config)
        assert list(line.get_ydata()) == expected


def test_copy_baseline_follows_T(sweep, draw):
    rows = sweep.read_results("copy")
    loss = draw("copy").axes[2]
    (line,) = [x for x in loss.get_lines() if x.get_label().startswith("baseline")]
    by_T = {r["task"]["params"]["T"]: r["baseline"]["loss"] for r in rows}
    assert list(line.get_ydata()) == [by_T[10], by_T[10], by_T[20], by_T[20]]


def test_clipping_figure_marks_every_non_finite_run(sweep, draw):
    rows = sweep.read_results("clipping")
    ax = draw("clipping").axes[0]
    crosses = [x for x in ax.get_lines() if x.get_marker() == "x"]
    assert len(crosses) == sum(r["status"] == "non_finite" for r in rows) > 0
    assert [t.get_text() for t in ax.texts] == [f"step {r['steps'] + 1}" for r in rows if r["status"] == "non_finite"]


def test_adding_figure_draws_the_committed_curves(sweep, draw):
    rows = sweep.read_results("adding")
    fig = draw("adding", rows)
    configs = ["adding_lstm", "adding_gru", "adding_rnn"]
    assert len(fig.axes) == len(configs) + 2
    panels = fig.axes[: len(configs)]
    assert [ax.get_title() for ax in panels] == [f"{c}: eval loss per seed" for c in configs]
    for ax in panels:
        assert [x.get_label() for x in ax.get_lines() if x.get_label().startswith("T =")] == [
            "T = 50",
            "T = 100",
            "T = 200",
        ]
    drawn = [list(x.get_ydata()) for ax in panels for x in ax.get_lines() if x.get_linestyle() == "-"]
    assert sorted(drawn) == sorted(r["curve"]["loss"] for r in rows)
    (baseline,) = [x for x in panels[0].get_lines() if x.get_label().startswith("baseline")]
    assert list(baseline.get_ydata()) == [rows[0]["baseline"]["loss"]] * 2
    assert fig._suptitle.get_text().startswith("Adding problem, LSTM vs GRU vs tanh RNN")


def test_adding_figure_without_curves_has_only_the_panels_over_T(sweep, draw):
    rows = [{k: v for k, v in r.items() if k != "curve"} for r in sweep.read_results("adding")]
    assert len(draw("adding", rows).axes) == 2


def test_curve_is_the_records_as_columns(sweep):
    records = [{"step": 100, "loss": 0.2, "metric": 0.3, "time": 1.0}, {"step": 200, "loss": 0.1, "metric": 0.2}]
    assert sweep.curve(records) == {"step": [100, 200], "loss": [0.2, 0.1], "metric": [0.3, 0.2]}


@pytest.mark.parametrize("experiment", ["adding", "copy", "temporal_order"])
def test_gru_is_a_model_of_the_experiment_with_the_lstm_grid(sweep, experiment):
    """The committed results hold the GRU on the LSTM's grid (same T and seeds), between the LSTM and the RNN."""
    rows = sweep.read_results(experiment)
    grid = {
        cell: sorted((r["task"]["params"]["T"], r["overrides"][-1]) for r in rows if r["model"]["cell"] == cell)
        for cell in ("lstm", "gru", "rnn")
    }
    assert grid["gru"] == grid["lstm"] == grid["rnn"] != []
    assert list(dict.fromkeys(r["model"]["cell"] for r in rows)) == ["lstm", "gru", "rnn"]
    groups = [key for key, _ in sweep._by_config_and_T(rows)]
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

    grid = {name for _, _, name in sweep.runs("copy", seeds=3)}
    committed = [r for r in sweep.read_results("copy") if r["model"]["cell"] != "gru" and r["run"] in grid]
    dropped = committed.pop()  # a grid point the file lacks: left out, with a message, never trained
    (tmp_path / "copy.json").write_text(json.dumps(committed))
    monkeypatch.setattr(sweep, "RESULTS", tmp_path)
    monkeypatch.setattr(sweep, "RUNS", tmp_path / "runs")
    trained = []
    monkeypatch.setattr(lstm_jax.train, "fit", _fake_fit(trained))
    rows = sweep.run_grid("copy", ["gru"], seeds=3)
    assert trained == [("gru", T, seed) for T in (10, 20) for seed in (0, 1, 2)]
    expected = [name for _, _, name in sweep.runs("copy", seeds=3) if name != dropped["run"]]
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


def test_cells_does_not_go_with_table_or_plot(sweep, capsys):
    with pytest.raises(SystemExit) as error:
        sweep.main(["copy", "--table", "--cells", "gru"])
    assert error.value.code == 2
    assert "--cells selects runs to run" in capsys.readouterr().err
