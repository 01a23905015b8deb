"""The README's promises: its set-up commands are what CI runs, and its tour code runs."""

import pathlib
import re

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


def test_tour_code_runs():
    (tour,) = _blocks("python")
    exec(compile(tour, "README.md", "exec"), {})
