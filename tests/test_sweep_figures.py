"""The sweep figures (experiments/sweep.py --plot) drawn from the committed results, headless."""

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
    for config in ("temporal_order_lstm", "temporal_order_rnn"):
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
    assert len(fig.axes) == 4
    lstm = fig.axes[0]
    assert lstm.get_title() == "adding_lstm: eval loss per seed"
    assert [x.get_label() for x in lstm.get_lines() if x.get_label().startswith("T =")] == [
        "T = 50",
        "T = 100",
        "T = 200",
    ]
    drawn = [list(x.get_ydata()) for ax in fig.axes[:2] for x in ax.get_lines() if x.get_linestyle() == "-"]
    assert sorted(drawn) == sorted(r["curve"]["loss"] for r in rows)
    (baseline,) = [x for x in lstm.get_lines() if x.get_label().startswith("baseline")]
    assert list(baseline.get_ydata()) == [rows[0]["baseline"]["loss"]] * 2


def test_adding_figure_without_curves_has_only_the_panels_over_T(sweep, draw):
    rows = [{k: v for k, v in r.items() if k != "curve"} for r in sweep.read_results("adding")]
    assert len(draw("adding", rows).axes) == 2


def test_curve_is_the_records_as_columns(sweep):
    records = [{"step": 100, "loss": 0.2, "metric": 0.3, "time": 1.0}, {"step": 200, "loss": 0.1, "metric": 0.2}]
    assert sweep.curve(records) == {"step": [100, 200], "loss": [0.2, 0.1], "metric": [0.3, 0.2]}
