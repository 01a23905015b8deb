"""The README's promises: its set-up commands are what CI runs; its tour and its peers' section are there (they run,
with every block of the docs, in tests/test_docs.py, by tests/_doc_blocks.py)."""

import _doc_blocks as docs

BASH = docs.blocks("README.md", language="bash")
PYTHON = docs.blocks("README.md", language="python")


def test_ci_runs_the_readme_test_command():
    commands = [block.code.strip() for block in BASH]
    assert len(commands) >= 2, "the README opens with two set-up commands"
    install_and_run, install_and_test = commands[:2]
    assert [argv[:2] for _, argv in docs.commands(BASH[0])] == [["lstm-jax", "train"]], install_and_run
    assert install_and_test in (docs.ROOT / ".ci" / "run").read_text()


def test_the_readme_has_its_two_python_blocks():
    # the tour and the peers' section; a lost fence would drop one
    assert [b.section for b in PYTHON] == ["A tour", "Coming from PyTorch, flax, Keras, Haiku or Equinox"]
