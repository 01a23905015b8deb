"""The tables in experiments/README.md are printed from the committed results, not typed in (the sweeps'
tables, sentences and config headers: tests/test_sweep_report.py)."""

import json
import pathlib

from _util import load_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "experiments" / "README.md").read_text()


_script = load_experiment


def test_manual_vs_autodiff_table_is_generated():
    module = _script("manual_vs_autodiff")
    result = json.loads((module.RESULTS / "manual_vs_autodiff.json").read_text())
    assert module.table(result) in README


def test_gradient_flow_table_is_generated():
    module = _script("gradient_flow")
    summaries = json.loads((ROOT / "experiments" / "results" / "gradient_flow.json").read_text())["results"]
    assert module.markdown_table(summaries) in README


def test_mnist1d_table_is_generated():
    module = _script("mnist1d_experiment")
    results = module.read_results()
    assert module.table(results) in README
    assert len(results["rows"]) == 36 and {r["seed"] for r in results["rows"]} == {0, 1, 2}


def test_regularisers_table_is_generated():
    module = _script("regularisers")
    assert module.table(module.read_results()) in README
