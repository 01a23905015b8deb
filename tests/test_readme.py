"""The README's promises: its set-up commands are what CI runs, and its tour code runs."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = [block.strip() for block in _blocks("bash")]
    assert len(commands) >= 2, "the README opens with two set-up commands"
    install_and_run, install_and_test = commands[:2]
    assert "lstm-jax" in install_and_run
    assert install_and_test in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_blocks_run(index):
    """Each ```python block of the README (the tour, the peers' section) runs as it is, on its own."""
    block = _blocks("python")[index]
    line = README[: README.index(block)].count("\n") + 1
    exec(compile("\n" * (line - 1) + block, "README.md", "exec"), {})


def test_the_readme_has_its_two_python_blocks():
    assert len(_blocks("python")) == 2  # the tour and the peers' section; a lost fence would drop one
