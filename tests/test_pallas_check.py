"""experiments/pallas_check.py: the GPU check of the Pallas kernels, run here in the interpreter."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("pallas_check", ROOT / "experiments" / "pallas_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pallas_check = _load()


@pytest.mark.parametrize("compute", ["float32", "bfloat16"])
def test_check_shape_reports_small_errors(compute):
    row = pallas_check.check_shape((3, 4, 3, 16), compute, "pallas_interpret")
    assert set(row["errors"]) == {"hs", "d_w_ih", "d_w_hh", "d_b"}
    assert row["ok"] and max(row["errors"].values()) < 1e-6  # the same arithmetic as the reference, in float32
    assert (row["B"], row["T"], row["M"], row["D"], row["compute"]) == (3, 4, 3, 16, compute)


def test_relative_error():
    assert pallas_check._relative([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert pallas_check._relative([3.0, 4.5], [3.0, 4.0]) == pytest.approx(0.1)
