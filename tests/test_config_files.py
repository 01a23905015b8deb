"""Every config in configs/ loads, and opens with its command, expected result and runtime."""

import pathlib

import pytest

from lstm_jax.config import load_config

CONFIGS = sorted((pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_there_is_a_quickstart():
    assert "quickstart.yaml" in [p.name for p in CONFIGS]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads_and_says_how_to_run_it(path):
    config = load_config(path)
    lines = path.read_text().splitlines()
    first_key = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    header = "\n".join(lines[:first_key])
    for field in ("# Command:", "# Expected:", "# Runtime:"):
        assert field in header, f"{path.name}: the opening comment lacks {field!r}"
    assert f"lstm-jax train configs/{path.name}" in header
    assert config.name
