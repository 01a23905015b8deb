"""The sweeps' numbers (experiments/sweep_report.py): intervals, tables, sentences, and the text of the READMEs
and config headers that must follow the committed results."""

import json

import pytest
from _util import ROOT, load_experiment

SWEEPS = ["adding", "clipping", "copy", "gate_init", "quickstart", "temporal_order"]
#: The sweeps with a line in the top-level README (gate_init's configs are variants, quickstart's runs are adding's).
HEADLINED = ["adding", "clipping", "copy", "temporal_order"]


@pytest.fixture(scope="module")
def sweep():
    return load_experiment("sweep")


@pytest.fixture(scope="module")
def report(sweep):
    return sweep.report


def _row(config="t_lstm", T=10, seed=0, *, loss=1.0, baseline=1.0, solved=False, steps=3000, status=None):
    """A results row with what the report reads."""
    return {
        "run": f"{config}_T{T}_seed{seed}",
        "config": config,
        "overrides": [f"task.params.T={T}", f"seed={seed}"],
        "task": {"name": "temporal_order", "params": {"T": T}},
        "model": {"cell": config.rsplit("_", 1)[-1]},
        "status": status or ("solved" if solved else "completed"),
        "steps": steps,
        "final": {"loss": loss, "accuracy": 1.0 if solved else 0.25},
        "baseline": {"loss": baseline},
        "solved": solved,
        "solved_rule": "accuracy >= 0.99 (a citation)",
        "metric_name": "accuracy",
        "wall_seconds": 1.5,
    }


# --- Wilson intervals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 10, 13, 50])
def test_wilson_equals_statsmodels(report, n):
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    for k in range(n + 1):
        expected = proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
        assert report.wilson(k, n) == pytest.approx(expected, abs=1e-12)


def test_wilson_by_its_formula_and_known_values(report):
    # 0/10: the upper end solves (1 - p) = z^2 / (n + z^2) at k = 0, i.e. z^2 / (n + z^2)
    z2 = report.Z95**2
    assert report.wilson(0, 10) == (0.0, pytest.approx(z2 / (10 + z2), rel=1e-12))
    assert report.wilson(10, 10) == (pytest.approx(10 / (10 + z2), rel=1e-12), 1.0)
    low, high = report.wilson(8, 13)  # the fresh temporal-order seeds: 8 of 13 solved
    assert (round(low, 4), round(high, 4)) == (0.3552, 0.8229)
    assert low < 8 / 13 < high
    # symmetric in k <-> n - k
    assert report.wilson(3, 10) == pytest.approx(tuple(1 - x for x in reversed(report.wilson(7, 10))), abs=1e-15)


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (0, 0), (1.0, 2), (1, "2")])
def test_wilson_refuses_impossible_counts(report, k, n):
    with pytest.raises(ValueError, match=r"k, n: expected integers with 0 <= k <= n and n >= 1, got"):
        report.wilson(k, n)


def test_rate_counts_and_prints_k_of_n_with_its_interval(report):
    rows = [_row(seed=s, solved=s < 3) for s in range(10)]
    rate = report.rate(rows, report.solved)
    assert (rate.k, rate.n) == (3, 10)
    assert (rate.low, rate.high) == report.wilson(3, 10)
    assert str(rate) == "3/10 (11–60%)"


def test_spread_is_median_and_range(report):
    assert report.spread([0.3, 0.1, 0.2, 10.0]) == "0.25 [0.1–10]"
    assert report.spread([1.3862, 1.3863]) == "1.39"  # equal to the digits shown
    assert report.spread([0.5]) == "0.5"


# --- Tables and sentences on made-up rows ----------------------------------------------------------------


def _bimodal_rows():
    """LSTM: 10/10 at T = 10, 4/10 at T = 20 (the others at chance); RNN: none, one of them off the baseline."""
    rows = [_row("t_lstm", 10, s, loss=0.01, solved=True, steps=100) for s in range(10)]
    rows += [_row("t_lstm", 20, s, loss=0.02, solved=True, steps=200 + 100 * s) for s in range(4)]
    rows += [_row("t_lstm", 20, s, loss=1.001) for s in range(4, 10)]
    rows += [_row("t_rnn", T, s, loss=0.5 if (T, s) == (10, 0) else 0.999) for T in (10, 20) for s in range(10)]
    return rows


def test_rate_table_has_a_row_per_model_and_T(report):
    table = report.rate_table(_bimodal_rows(), {"t_lstm": "a paper"}).splitlines()
    assert table[0].startswith("| model | T | solved (95% interval) | solved at step: median (max) | loss < 0.95x")
    assert len(table) == 2 + 4
    assert table[3] == (
        "| t_lstm | 20 | 4/10 (17–69%) | 350 (500) | 4/10 (17–69%) | 1 [0.02–1] | 0.25 [0.25–1] | 15 | 1.0000 "
        "| a paper |"
    )
    assert table[4].startswith("| t_rnn | 10 | 0/10 (0–28%) | - | 1/10 (2–40%) | 0.999 [0.5–0.999] |")


def test_bimodality_says_all_or_nothing_only_when_it_is(report):
    rows = _bimodal_rows()
    text = report.bimodality(rows)
    assert text == (
        "Where a setting's seeds split (LSTM 4/10 at T = 20, by step 500), every other run was still at the "
        "baseline after 3000 steps (final loss 1, baseline 1): all or nothing."
    )
    rows[-21]["final"]["loss"] = 0.5  # an unsolved LSTM run at T = 20 that left the baseline
    assert report.bimodality(rows).endswith(
        "of the 6 other runs, 1 left the baseline without solving and 5 stayed at it: not all or nothing."
    )
    unsplit = [r for r in rows if r["task"]["params"]["T"] == 10 or r["config"] == "t_rnn"]
    assert report.bimodality(unsplit) == "No setting split: in each, every seed solved or none did."
    unsolved = [r for r in rows if r["config"] == "t_rnn"]
    assert report.bimodality(unsolved) == "No run solved within 3000 steps."


def test_no_sentence_says_solves_for_a_partial_rate(report, monkeypatch, tmp_path):
    (tmp_path / "temporal_order.json").write_text(json.dumps(_bimodal_rows()))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    text = report.summary("temporal_order")
    assert "- LSTM solved 10/10 (72–100%) at T = 10, 4/10 (17–69%) at T = 20." in text
    assert "- tanh RNN solved 0/10 (0–28%) at T = 10, 0/10 (0–28%) at T = 20." in text
    assert "  Left the baseline: 1/10 (2–40%) at T = 10, 0/10 (0–28%) at T = 20." in text
    assert text.count("Left the baseline") == 1  # the LSTM's line would repeat its solved rates
    assert report.headline("temporal_order") == (
        "- **Temporal order**: k/n seeds solved (accuracy >= 0.99) at T = 10, 20, with the 95% interval at T = 20: "
        "LSTM 10/10, 4/10 (17–69%); tanh RNN 0/10, 0/10 (0–28%)."
    )
    assert report.config_line("temporal_order", "t_rnn") == (  # no configs/t_rnn.yaml: no "This command"
        "Over 10 seeds (python experiments/sweep.py temporal_order): solved (accuracy >= 0.99) 0/10 (0–28%) at "
        "T = 10, 0/10 (0–28%) at T = 20; final loss under 0.95x the baseline: 1/10 (2–40%) at T = 10, 0/10 (0–28%) "
        "at T = 20."
    )
    with pytest.raises(ValueError, match=r"config: expected one of \['t_lstm', 't_rnn'\], got 't_gru'"):
        report.config_line("temporal_order", "t_gru")


def test_config_line_starts_with_what_the_configs_own_command_gives(report, monkeypatch, tmp_path):
    """configs/temporal_order_lstm.yaml has T = 50 and seed 0: its own command is that row, not T = 100's."""
    rows = [
        _row("temporal_order_lstm", T, s, loss=0.01, solved=True, steps=100 * (s + 1))
        for T in (50, 100)
        for s in range(10)
    ]
    rows[0]["steps"] = 700
    rows[10]["steps"] = 900  # T = 100, seed 0
    (tmp_path / "temporal_order.json").write_text(json.dumps(rows))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.own_run("temporal_order", "temporal_order_lstm") == rows[0]
    assert report.config_line("temporal_order", "temporal_order_lstm").startswith(
        "This command: solved at step 700 (eval loss 0.01, accuracy 1). Over 10 seeds"
    )
    for row in rows:
        row["overrides"][0] = "task.params.T=20"  # no run of the file's own settings
    (tmp_path / "temporal_order.json").write_text(json.dumps(rows))
    assert report.own_run("temporal_order", "temporal_order_lstm") is None
    assert report.config_line("temporal_order", "temporal_order_lstm").startswith("Over 10 seeds")


def test_outcome_of_a_run(report):
    assert report.outcome(_row(loss=1.3863)) == "not solved after 3000 steps (eval loss 1.39, accuracy 0.25)"
    assert report.outcome(_row(status="non_finite", steps=40)) == "stopped on a NaN/inf at step 41"


def test_main_rate_is_solved_unless_no_run_solved(report):
    rows = _bimodal_rows()
    assert report.main_rate(rows) == (report.solved, "solved (accuracy >= 0.99)")
    unsolved = [r for r in rows if not r["solved"]]
    predicate, what = report.main_rate(unsolved)
    assert what == "ended under 0.95× the baseline loss (none solved)"
    assert [predicate(r) for r in unsolved] == [r["final"]["loss"] < 0.95 for r in unsolved]
    assert report.baseline_factor([_row() | {"task": {"name": "adding", "params": {"T": 5}}}]) == 0.5


def test_clipping_table_counts_diverged_runs_with_an_interval(report):
    rows = [_row("c_rnn", 50, s, loss=0.3, baseline=0.2) for s in range(4)]
    rows += [_row("c_rnn", 50, 4, loss=float("nan"), baseline=0.2, status="non_finite", steps=40)]
    rows += [_row("c_rnn", 50, 5, loss=2.5, baseline=0.2)]  # over 10 baselines
    for row in rows:
        row["overrides"] = ["optim.clip_norm=null", row["overrides"][1]]
    table = report.clipping_table(rows, {}).splitlines()
    assert table[2] == "| none | 2/6 (10–70%) | 41 | 0.3 [0.3–2.5] | 0.2000 |  |"


@pytest.mark.parametrize(
    "what", ["adding tables", "adding table extra", "adding config", "adding headline x", "adding"]
)
def test_render_refuses_unknown_blocks(report, what):
    with pytest.raises(ValueError, match="sweep block: expected 'EXPERIMENT table|summary|headline|config CONFIG'"):
        report.render(what, {})


def test_rewrite_fills_markdown_and_yaml_blocks_and_leaves_the_rest(report, monkeypatch, tmp_path):
    (tmp_path / "temporal_order.json").write_text(json.dumps(_bimodal_rows()))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    markdown = "before\n<!-- sweep: temporal_order headline -->\nstale\n<!-- sweep: end -->\nafter\n"
    assert report.rewrite(markdown, False, lambda e: {}) == (
        "before\n<!-- sweep: temporal_order headline -->\n"
        "- **Temporal order**: k/n seeds solved (accuracy >= 0.99) at T = 10, 20, with the 95% interval at T = 20: "
        "LSTM 10/10, 4/10 (17–69%); tanh RNN 0/10, 0/10 (0–28%).\n<!-- sweep: end -->\nafter\n"
    )
    assert report.rewrite(markdown, False, lambda e: {}, experiments=["copy"]) == markdown
    yaml = "# head\n# sweep: temporal_order config t_lstm\n# stale\n# sweep: end\nname: x\n"
    new = report.rewrite(yaml, True, lambda e: {})
    assert new.startswith("# head\n# sweep: temporal_order config t_lstm\n# Over 10 seeds (python experiments/")
    assert new.endswith("# sweep: end\nname: x\n")
    assert all(line.startswith("#") and len(line) <= 102 for line in new.splitlines()[:-1])
    assert report.rewrite(new, True, lambda e: {}) == new


# --- The committed results and the documents -------------------------------------------------------------


@pytest.mark.parametrize("experiment", SWEEPS)
def test_every_rate_comes_from_at_least_ten_seeds(report, experiment):
    rows = report.read_results(experiment)
    groups = report.by_clip_norm(rows) if experiment == "clipping" else report.by_config_and_T(rows)
    assert min(len(g) for _, g in groups) >= 10
    for _, group in groups:
        seeds = [r["overrides"][-1] for r in group]
        assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize("path", [p.relative_to(ROOT) for p in load_experiment("sweep_report").DOCS])
def test_the_text_follows_the_committed_results(sweep, report, path):
    """Rewriting a document's sweep blocks from the committed JSON changes nothing: no number was typed in."""
    text = (ROOT / path).read_text()
    yaml = path.suffix == ".yaml"
    new = report.rewrite(text, yaml, lambda e: sweep.EXPERIMENTS[e]["published"])
    assert new == text, f"{path}: run python experiments/sweep.py {' '.join(SWEEPS)} --docs"


def test_each_sweep_has_its_blocks(report):
    readme = report.blocks((ROOT / "experiments" / "README.md").read_text(), False)
    for experiment in SWEEPS:
        assert f"{experiment} table" in readme and f"{experiment} summary" in readme
    top = report.blocks((ROOT / "README.md").read_text(), False)
    assert {w.split()[0] for w in top if w.endswith("headline")} == set(HEADLINED)
    for experiment in [*HEADLINED, "quickstart"]:
        for config in report.configs(report.read_results(experiment)):
            header = (ROOT / "configs" / f"{config}.yaml").read_text()
            assert f"# sweep: {experiment} config {config}\n" in header, config


def test_docs_option_rewrites_only_the_stale_files(sweep, report, tmp_path, monkeypatch, capsys):
    stale = tmp_path / "README.md"
    block = "<!-- sweep: clipping headline -->\n{}\n<!-- sweep: end -->\n"
    stale.write_text(block.format("typed in"))
    fresh = tmp_path / "fresh.md"
    fresh.write_text(block.format(report.headline("clipping")))
    monkeypatch.setattr(report, "DOCS", [stale, fresh])
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    assert sweep.main(["clipping", "--docs"]) == 0
    assert capsys.readouterr().out == "rewrote the sweep blocks of README.md\n"
    assert stale.read_text() == fresh.read_text()


def test_the_quickstart_runs_are_the_adding_sweeps_lstm_runs_at_T_100(report):
    """Same config but the step limit, same seeds: a solved quickstart run is its adding twin, step for step
    (the training is deterministic, also across the sweep's worker processes)."""
    adding = {r["overrides"][-1]: r for r in report.read_results("adding") if r["run"].startswith("adding_lstm_T100_")}
    quickstart = report.read_results("quickstart")
    assert len(quickstart) >= 10 and all(r["solved"] for r in quickstart)
    for row in quickstart:
        twin = adding[row["overrides"][-1]]
        assert (row["steps"], row["final"], row["curve"]) == (twin["steps"], twin["final"], twin["curve"])
