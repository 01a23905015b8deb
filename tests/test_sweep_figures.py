"""The sweep figures (experiments/sweep.py --plot) drawn from the committed results, headless."""

import shutil

import matplotlib
import matplotlib.pyplot as plt
import pytest
from _util import ROOT, load_experiment

EXPERIMENTS = ["adding", "clipping", "copy", "gate_init", "quickstart", "temporal_order"]
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
        made.append(sweep.figures.FIGURES[experiment](sweep.report.read_results(experiment) if rows is None else rows))
        return made[-1]

    yield make
    for fig in made:
        plt.close(fig)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_figure_is_written_from_the_committed_results(sweep, experiment, tmp_path):
    path = sweep.figures.figure(experiment, tmp_path / f"{experiment}.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 10_000
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_committed_figure_is_shown_in_the_readme(experiment):
    assert (ROOT / "experiments" / "results" / f"{experiment}.png").stat().st_size > 10_000
    assert f"(results/{experiment}.png)" in README
    assert f"python experiments/sweep.py {experiment} --plot" in README


def test_plot_option_writes_the_png_beside_the_results(sweep, tmp_path, monkeypatch, capsys):
    shutil.copy(sweep.report.RESULTS / "copy.json", tmp_path / "copy.json")
    monkeypatch.setattr(sweep.report, "RESULTS", tmp_path)
    assert sweep.main(["copy", "--plot"]) == 0
    assert (tmp_path / "copy.png").read_bytes()[:8] == PNG_MAGIC
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'copy.png'}"


@pytest.mark.parametrize("experiment", ["adding", "copy", "gate_init", "quickstart", "temporal_order"])
def test_rate_panel_is_runs_over_seeds_with_wilson_bars(sweep, draw, experiment):
    report = sweep.report
    rows = report.read_results(experiment)
    fig = draw(experiment)
    (panel,) = [ax for ax in fig.axes if ax.get_title().endswith("with 95% Wilson intervals")]
    for config in report.configs(rows):
        (bars,) = [c for c in panel.containers if c.get_label() == config]
        predicate = report.main_rate(rows)[0]  # solved; for copy, where none did, left the baseline
        rates = [report.rate(g, predicate) for _, g in report.over_T_of(rows, config)]
        assert list(bars.lines[0].get_ydata()) == [r.k / r.n for r in rates]
        (caps,) = bars.lines[2]  # the vertical bars: one segment per T, from the interval's low to its high
        ends = [value for seg in caps.get_segments() for value in seg[:, 1]]
        assert ends == pytest.approx([value for r in rates for value in (r.low, r.high)])


@pytest.mark.parametrize("experiment", ["copy", "gate_init", "temporal_order"])
def test_metric_figure_draws_every_runs_curve_and_marks_the_solved(sweep, draw, experiment):
    rows = sweep.report.read_results(experiment)
    fig = draw(experiment)
    panels = [ax for ax in fig.axes if ax.get_title().endswith("a line per seed (dot: solved there)")]
    assert len(panels) == len(sweep.report.configs(rows))
    drawn = [list(x.get_ydata()) for ax in panels for x in ax.get_lines() if x.get_linestyle() == "-"]
    assert sorted(drawn) == sorted(r["curve"]["loss"] for r in rows)
    dots = [x for ax in panels for x in ax.get_lines() if x.get_marker() == "o"]
    assert len(dots) == sum(bool(r["solved"]) for r in rows)


def test_copy_baseline_follows_T(sweep, draw):
    rows = sweep.report.read_results("copy")
    (loss,) = [ax for ax in draw("copy").axes if ax.get_title().startswith("final eval loss")]
    (line,) = [x for x in loss.get_lines() if x.get_label().startswith("baseline")]
    by_T = {r["task"]["params"]["T"]: r["baseline"]["loss"] for r in rows}
    assert list(line.get_ydata()) == [by_T[10], by_T[10], by_T[20], by_T[20]]


def test_clipping_figure_marks_every_non_finite_run(sweep, draw):
    rows = sweep.report.read_results("clipping")
    ax = draw("clipping").axes[0]
    crosses = [x for x in ax.get_lines() if x.get_marker() == "x"]
    assert len(crosses) == sum(r["status"] == "non_finite" for r in rows) > 0
    assert [t.get_text() for t in ax.texts] == [str(r["steps"] + 1) for r in rows if r["status"] == "non_finite"]


def test_adding_figure_draws_the_committed_curves(sweep, draw):
    rows = sweep.report.read_results("adding")
    fig = draw("adding", rows)
    configs = ["adding_lstm", "adding_gru", "adding_rnn"]
    assert len(fig.axes) == len(configs) + 3
    panels = fig.axes[: len(configs)]
    assert [ax.get_title() for ax in panels] == [
        f"{c}: eval loss, a line per seed (dot: solved there)" for c in configs
    ]
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
    rows = [{k: v for k, v in r.items() if k != "curve"} for r in sweep.report.read_results("adding")]
    assert len(draw("adding", rows).axes) == 3
