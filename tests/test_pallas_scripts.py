"""experiments/pallas_check.py and loops_tune.py, the GPU scripts for the time loops, run here on the CPU.

On the CPU the Pallas kernels run in the interpreter: these check the scripts' logic and output,
not GPU behaviour or speed (``experiments/device_check.sh`` runs them on a GPU).
"""

import json

import pytest
from _util import load_experiment

pallas_check = load_experiment("pallas_check")
loops_tune = load_experiment("loops_tune")


@pytest.mark.parametrize("compute", ["float32", "bfloat16"])
def test_check_shape_reports_small_errors(compute):
    row = pallas_check.check_shape((3, 4, 3, 16), compute, "pallas_interpret", reverse=True)
    assert set(row["errors"]) == {"hs", "final_h", "final_c", "d_w_ih", "d_w_hh", "d_b", "d_h0", "d_c0"}
    assert row["ok"] and max(row["errors"].values()) < 1e-6  # the same arithmetic as the reference, in float32
    assert (row["B"], row["T"], row["M"], row["D"], row["compute"], row["reverse"]) == (3, 4, 3, 16, compute, True)


def test_relative_error():
    assert pallas_check.relative_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert pallas_check.relative_error([3.0, 4.5], [3.0, 4.0]) == pytest.approx(0.1)


def test_loops_tune_quick_writes_rows(tmp_path):
    out = tmp_path / "tune.json"
    assert loops_tune.main(["--quick", "--repeats", "2", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["loops"], r["settings"]) for r in rows] == [
        ("scan", {"unroll": 1}),
        ("scan", {"unroll": 2}),
        ("pallas", {"block_hidden": 16}),
    ]
    for row in rows:
        assert row["fwd_ms"] > 0 and row["train_ms"] > 0 and (row["B"], row["T"], row["D"]) == (3, 4, 16)
    assert rows[0]["error"] == 0.0 and all(row["error"] < 1e-6 for row in rows)  # the same recurrence


def test_loops_tune_gpu_grid():
    """bfloat16 gets the Pallas block grid, float32 the defaults; every setting builds a PallasLoops."""
    bf16 = loops_tune.settings(False, "gpu", "bfloat16")
    assert [s for name, s, _ in bf16 if name == "scan"] == [{"unroll": u} for u in (1, 2, 4, 8, 16)]
    assert [s for name, s, _ in bf16 if name == "pallas"][0] == dict(block_hidden=64, num_warps=4, num_stages=1)
    assert len([1 for name, _, _ in bf16 if name == "pallas"]) == 12
    assert all(not loops.interpret for name, _, loops in bf16 if name == "pallas")
    assert [s for name, s, _ in loops_tune.settings(False, "gpu", "float32") if name == "pallas"] == [{}]


def test_pallas_check_main_quick(tmp_path):
    out = tmp_path / "check.json"
    assert pallas_check.main(["--quick", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 4 and all(row["ok"] and row["impl"] == "pallas_interpret" for row in rows)


def test_loops_tune_budget_stops_between_settings():
    messages, saved = [], []
    rows = loops_tune.tune(loops_tune.CASES["quick"], True, 1, budget_s=0, save=saved.append, log=messages.append)
    assert rows == [] and saved == []
    assert messages[-1].startswith("time budget of 0 s spent: B=3 T=4 D=16 float32 scan")
