"""The ``lstm-jax`` command line."""

import subprocess
import sys

import pytest

from lstm_jax import cli, gradcheck, registry


def test_gradcheck_reports_every_cell_within_tolerance(capsys):
    """One row per built-in cell (the registry's order, so the GRU's too), then the LSTM variants; all ok."""
    assert cli.main(["gradcheck"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["model"])
    rows = [line.split() for line in lines[header + 1 :] if not line.startswith("tolerances")]
    assert [r[0] for r in rows] == [*registry.CELLS, *gradcheck.LSTM_VARIANTS]
    assert "gru" in [r[0] for r in rows]
    for _, manual_vs_auto, auto_vs_fd, manual_vs_fd, status in rows:
        assert float(manual_vs_auto) <= gradcheck.MANUAL_TOL
        assert max(float(auto_vs_fd), float(manual_vs_fd)) <= gradcheck.FD_TOL
        assert status == "ok"


def test_gradcheck_exits_non_zero_when_a_tolerance_is_exceeded(monkeypatch, capsys):
    monkeypatch.setattr(gradcheck, "MANUAL_TOL", -1.0)  # no error can be below a negative tolerance
    monkeypatch.setattr(gradcheck, "LSTM_VARIANTS", {})  # the cells' rows are enough (the full report: above)
    assert cli.main(["gradcheck", "--seed", "1"]) == 1
    assert "FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["gradcheck", "--seed", "x"]])
def test_bad_command_lines_exit_with_code_2(argv):
    result = subprocess.run([sys.executable, "-m", "lstm_jax.cli", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage: lstm-jax" in result.stderr
