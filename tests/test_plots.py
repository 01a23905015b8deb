"""The run's learning-curve plot (lstm_jax.plots) on synthetic metrics.jsonl records."""

import math

import matplotlib
import matplotlib.pyplot as plt
import pytest

from lstm_jax.plots import first_solved_step, learning_curve_figure, plot_learning_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records(losses, *, solved_from=None, metric_name="mse", metric=None, train=True):
    """Records as train._evaluate_and_log writes them: one per 100 steps."""
    out = []
    for i, loss in enumerate(losses):
        step = 100 * (i + 1)
        record = {
            "step": step,
            "loss": loss,
            "metric": loss if metric is None else metric[i],
            "metric_name": metric_name,
            "baseline": 1 / 6,
            "solved": solved_from is not None and step >= solved_from,
            "time": 0.1 * i,
        }
        if train:
            record["train_loss"] = 1.1 * loss
        out.append(record)
    return out


def _line(ax, label):
    """The one line of ``ax`` whose legend label starts with ``label``."""
    (line,) = [x for x in ax.get_lines() if x.get_label().startswith(label)]
    return line


@pytest.fixture
def figure():
    """Yield a factory of learning-curve figures and close them all afterwards."""
    made = []

    def make(records, **kwargs):
        made.append(learning_curve_figure(records, title="t", baseline=kwargs.pop("baseline", 1 / 6), **kwargs))
        return made[-1].axes[0]

    yield make
    for fig in made:
        plt.close(fig)


def test_plot_learning_curve_writes_a_png_headless(tmp_path):
    path = tmp_path / "curve.png"
    plot_learning_curve(_records([0.2, 0.05, 0.005], solved_from=300), path, title="quickstart", baseline=1 / 6)
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5_000
    assert matplotlib.get_backend().lower() == "agg"


@pytest.mark.parametrize("solved_from, expected", [(300, 300), (200, 200), (None, None)])
def test_first_solved_step(solved_from, expected):
    assert first_solved_step(_records([0.2, 0.05, 0.005, 0.004], solved_from=solved_from)) == expected


def test_solved_step_is_a_labelled_vertical_line(figure):
    ax = figure(_records([0.2, 0.05, 0.005, 0.004], solved_from=300))
    line = _line(ax, "solved at step 300")
    assert list(line.get_xdata()) == [300, 300]


def test_no_solved_line_when_no_record_is_solved(figure):
    ax = figure(_records([0.2, 0.15]))
    assert not [x for x in ax.get_lines() if "solved" in x.get_label()]


def test_loss_task_plots_the_loss_on_a_log_scale(figure):
    records = _records([0.2, 0.05, 0.005])
    ax = figure(records)
    assert list(_line(ax, "eval loss").get_ydata()) == [r["loss"] for r in records]
    assert list(_line(ax, "train loss").get_ydata()) == [r["train_loss"] for r in records]
    assert list(_line(ax, "baseline").get_ydata()) == [1 / 6, 1 / 6]
    assert (ax.get_yscale(), ax.get_ylabel()) == ("log", "loss")


def test_charlm_plots_bits_per_char_not_nats(figure):
    nats = [3.2, 2.9, 2.6]
    bits = [x / math.log(2) + 0.01 for x in nats]  # the metric itself is drawn, not the loss converted
    records = _records(nats, metric_name="bits_per_char", metric=bits)
    ax = figure(records, baseline=3.39)
    assert list(_line(ax, "eval bits per character").get_ydata()) == bits
    train = _line(ax, "train bits per character").get_ydata()
    assert train == pytest.approx([r["train_loss"] / math.log(2) for r in records])
    assert _line(ax, "baseline").get_ydata()[0] == pytest.approx(3.39 / math.log(2))
    assert (ax.get_yscale(), ax.get_ylabel()) == ("linear", "bits per character")


def test_records_without_train_loss_draw_no_train_curve(figure):
    ax = figure(_records([0.2, 0.1], train=False))
    assert not [x for x in ax.get_lines() if x.get_label().startswith("train")]


@pytest.mark.parametrize(
    "records, match",
    [
        ([], "records: expected a non-empty list of evaluation records \\(dicts\\), got an empty list"),
        ({"step": 1, "loss": 0.1}, "records: expected a non-empty list .*got dict"),
        ([{"step": 100}], r"records\[0\]: expected a dict with keys step, loss, got \['step'\]"),
        ([{"step": 100, "loss": 0.1}, 0.1], r"records\[1\]: expected a dict with keys step, loss, got float"),
    ],
)
def test_bad_records_are_a_value_error(tmp_path, records, match):
    with pytest.raises(ValueError, match=match):
        plot_learning_curve(records, tmp_path / "x.png", title="t", baseline=0.1)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("baseline", ["0.1", None, True])
def test_bad_baseline_is_a_value_error(tmp_path, baseline):
    with pytest.raises(ValueError, match="baseline: expected a real number"):
        plot_learning_curve(_records([0.2]), tmp_path / "x.png", title="t", baseline=baseline)
