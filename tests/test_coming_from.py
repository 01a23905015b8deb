"""docs/coming_from.md keeps its promises: a section per peer, each with python blocks; its ```bash block trains and
exports a run (the python blocks that read ``runs/quickstart`` run beside it); its links resolve.

The blocks themselves run in tests/test_docs.py, with every block of the docs, by the one mechanism of
tests/_doc_blocks.py: each ```python block on its own in a fresh namespace, JAX's default numerics, a scratch
directory (beside the tiny run of the bash block when it reads ``runs/quickstart``), skipping with a reason when its
peer library is missing, and naming the section and the page's line when it fails.
"""

from __future__ import annotations

import re

import _doc_blocks as docs
import pytest

NAME = "docs/coming_from.md"
TEXT = (docs.ROOT / NAME).read_text()
PYTHON = docs.blocks(NAME, language="python")

#: The sections the page must have, each with at least one python block.
SECTIONS = ("PyTorch", "flax (linen and nnx)", "Keras 3", "Haiku", "Equinox", "cuDNN: `jax.experimental.rnn`")


def test_every_peer_has_its_section_with_python_blocks():
    chapters = [m for m in re.findall(r"^## (.+)$", TEXT, flags=re.M)]
    for section in SECTIONS:
        assert section in chapters, f"{NAME}: expected a section '## {section}', got {chapters}"
        assert any(b.section.split(" > ")[0] == section for b in PYTHON), f"{NAME}: '## {section}' has no python block"
    assert len(PYTHON) == TEXT.count("\n```python\n"), "a python fence the parser did not read"


def test_the_links_resolve():
    """Every relative link names a file that exists, and its anchor a heading there (GitHub's slugs)."""
    assert any(link.startswith("maths.md#") for _, link in docs.links(NAME)), "the page links docs/maths.md's equations"
    docs.check_links(NAME)


def test_a_wrong_block_fails_with_its_section_and_line():
    """The harness can fail: a block whose assert is false is reported with its section and line."""
    section = "PyTorch > Bring a trained model over"
    wrong = docs.Block(NAME, "python", section, 42, "import numpy as np\nnp.testing.assert_allclose(1.0, 2.0)\n")
    with pytest.raises(AssertionError, match=r"coming_from\.md:43: .*'PyTorch > Bring a trained model over'"):
        docs.run_python(wrong)
    with pytest.raises(AssertionError, match=r"coming_from\.md:8: .*SyntaxError"):
        docs.run_python(docs.Block(NAME, "python", "Haiku", 7, "x = 1\nx = = 2\n"))


def test_the_bash_block_trains_and_exports(tmp_path_factory):
    """The bash block, run tiny (``lstm-jax train`` with a few steps, the export lines as they are), leaves the files
    the python blocks read."""
    (bash,) = docs.blocks(NAME, language="bash")
    commands = [argv[:2] for _, argv in docs.commands(bash)]
    assert ["lstm-jax", "train"] in commands and ["lstm-jax", "export"] in commands
    assert docs.run_dirs(NAME) == ["runs/quickstart"]
    run = docs.made_run(NAME, tmp_path_factory) / "runs" / "quickstart"
    assert (run / "model.safetensors").is_file()
    assert (run / "model.pt").is_file() or docs.missing("torch")
    assert any("runs/quickstart" in b.code for b in PYTHON), "no python block reads the run any more"
