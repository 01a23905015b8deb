"""experiments/gemm_probe.py: rows and table of the GEMM throughput probe (no speed is asserted)."""

import json

import pytest
from _util import load_experiment

gemm_probe = load_experiment("gemm_probe")


def test_time_library_returns_one_median_per_shape():
    for library in ("xla", "numpy"):
        medians = gemm_probe.time_library(library, gemm_probe.QUICK * 2, repeats=2)
        assert len(medians) == 2 and all(ms > 0 for ms in medians)


def test_probe_quick_writes_rows_and_table(tmp_path):
    out = tmp_path / "gemm.json"
    assert gemm_probe.main(["--quick", "--repeats", "2", "--rounds", "1", "--out", str(out), "--table"]) == 0
    rows = json.loads(out.read_text())
    assert {row["library"] for row in rows} >= {"xla", "numpy"}
    for row in rows:
        assert (row["m"], row["k"], row["n"]) == (8, 16, 32) and row["ms"] > 0
        assert row["gflops"] == pytest.approx(2 * 8 * 16 * 32 / row["ms"] / 1e6, rel=0.1)  # ms is rounded
    table = out.with_suffix(".md").read_text()
    assert "| GEMM (m×k×n) | xla GF/s | numpy GF/s |" in table and "tiny (8×16×32)" in table


def test_table_ratios():
    rows = [
        {
            "gemm": "g",
            "m": 1,
            "k": 1,
            "n": 1,
            "library": lib,
            "gflops": gf,
            "machine": "m",
            "versions": {},
            "repeats": 1,
        }
        for lib, gf in (("xla", 50.0), ("numpy", 100.0))
    ]
    assert "| g (1×1×1) | 50 | 100 | 0.50 |" in gemm_probe.table(rows)
