"""experiments/regularisers.py: its runs' configs load with the regulariser keys it sets, the table
renders from the committed results and agrees with them, and the training-split score it adds to
each run is computed as the trainer scores the held-out split (checked on a tiny run)."""

import dataclasses
import math
import statistics

import pytest
from _util import load_experiment

from lstm_jax.train import check_trainable

reg = load_experiment("regularisers")

#: The model keys each regulariser sets (all others keep their default 0).
EXPECTED_RATES = {
    "none": {},
    "dropout": {"dropout": 0.3},
    "variational": {"input_dropout": 0.25, "recurrent_dropout": 0.25},
    "zoneout": {"zoneout_h": 0.05, "zoneout_c": 0.5},
}


def _rates(expected: dict) -> dict:
    return {key: expected.get(key, 0.0) for key in reg.RATE_KEYS}


@pytest.fixture(scope="module")
def results():
    return reg.read_results()


def test_every_run_config_loads_with_its_rates():
    configs = reg.configs()
    assert len(configs) == len(reg.REGULARISERS) * len(reg.SEEDS) == 12
    base = configs["regularisers_none_seed0"]
    for regulariser, seed, _, name in reg.runs():
        config = configs[name]
        check_trainable(config)
        assert config.seed == seed
        assert {key: getattr(config.model, key) for key in reg.RATE_KEYS} == _rates(EXPECTED_RATES[regulariser])
        assert config.model.dropout_rates().active == (regulariser != "none")
        # only the regulariser's keys and the seed differ from the base config
        assert dataclasses.replace(config.model, **{key: 0.0 for key in reg.RATE_KEYS}) == base.model
        assert (config.task, config.optim, config.train) == (base.task, base.optim, base.train)
    assert base.model.num_layers == 2  # dropout between layers needs a stacked model


def test_committed_results_match_the_runs(results):
    rows = results["rows"]
    assert [(r["regulariser"], r["seed"]) for r in rows] == [(g, s) for g, s, _, _ in reg.runs()]
    configs = reg.configs()
    for row in rows:
        config = configs[row["run"]]
        assert row["rates"] == _rates(EXPECTED_RATES[row["regulariser"]])
        assert row["steps"] == config.train.steps == row["curve"]["step"][-1]
        assert row["hidden_size"] == config.model.hidden_size and row["num_layers"] == config.model.num_layers
        losses = row["curve"]["loss"]
        assert row["final"]["loss"] == losses[-1]
        assert row["best"]["loss"] == min(losses)
        assert row["curve"]["step"][losses.index(min(losses))] == row["best"]["step"]
        assert row["best"]["bits"] <= row["final"]["bits"]
        assert math.isclose(row["gap_bits"], row["final"]["bits"] - row["train"]["bits"], rel_tol=1e-9)


def test_table_renders_from_the_committed_results(results):
    table = reg.table(results)
    lines = table.splitlines()
    assert len(lines) == 2 + len(reg.REGULARISERS)
    for (regulariser, rows), line in zip(reg.groups(results), lines[2:]):
        assert line.startswith(f"| {reg.REGULARISERS[regulariser][1]} |")
        assert ", ".join(f"{r['best']['bits']:.2f}" for r in rows) in line
        assert f"{statistics.mean(r['gap_bits'] for r in rows):.2f} ± " in line
    assert "| none | - |" in table and "| +0.00 |" in lines[2]


def test_table_needs_no_rerun(tmp_path, results):
    """--table reads the results file only: a copy elsewhere prints the same table."""
    reg.write_results(results, tmp_path / "regularisers.json")
    assert reg.table(reg.read_results(tmp_path / "regularisers.json")) == reg.table(results)


def test_training_split_score_is_the_trainers_evaluation(tmp_path):
    """A tiny zoneout run: the checkpoint scored on the test split by split_loss equals the trainer's last
    held-out loss (so the training-split figure is the same evaluation, without dropout), and the row holds it."""
    _, seed, overrides, name = next(r for r in reg.runs() if r[0] == "zoneout")
    tiny = ["model.hidden_size=8", "train.steps=4", "train.eval_every=2", "train.checkpoint_every=4"]
    row = reg.run_one("zoneout", seed, overrides, tmp_path / name, tiny)
    held_out, step = reg.split_loss(tmp_path / name, "test")
    assert step == row["steps"] == 4
    assert held_out == pytest.approx(row["final"]["loss"], rel=1e-6)
    train, _ = reg.split_loss(tmp_path / name, "train")
    assert row["train"]["loss"] == train != held_out  # the training split, not the held-out one
    assert row["rates"]["zoneout_c"] == 0.5 and row["curve"]["step"] == [2, 4]
