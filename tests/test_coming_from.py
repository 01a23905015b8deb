"""docs/coming_from.md keeps its promises: every ```python block runs as it is, each on its own (a fresh namespace:
a reader copies one block), in the order of the page; its ```bash block's commands are real; its links resolve.

A block runs as a user's session would: JAX's default numerics (rank promotion allowed, standard dtype promotion;
the suite's conftest makes both strict, which Keras's own code and optax do not pass), in a scratch directory.
A block that imports a peer library that is not installed (torch exists only on Python 3.11 here) skips and
says which. A failing block names its section and the page's line that failed (the traceback shows the block).
Blocks that read ``runs/quickstart`` run beside a tiny run made by the page's ```bash block: its ``lstm-jax train``
line with a few steps at small sizes, its ``lstm-jax export`` lines as they are (``lstm_jax.cli.main``).
"""

from __future__ import annotations

import importlib
import linecache
import os
import pathlib
import re
import shlex
import traceback
from typing import NamedTuple

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "coming_from.md"
NAME = "docs/coming_from.md"
TEXT = PAGE.read_text()

#: A peer a block may import -> what to install. A block importing one that is missing skips.
PEERS = {
    "torch": "PyTorch (pip install torch==2.13.0, the CPU build; there is none for Python 3.13 here)",
    "flax": "flax (pip install flax)",
    "keras": "Keras 3 (pip install keras)",
    "haiku": "dm-haiku (pip install dm-haiku)",
    "equinox": "Equinox (pip install equinox)",
    "safetensors": "safetensors (pip install safetensors)",
}

#: The sections the page must have, each with at least one python block.
SECTIONS = ("PyTorch", "flax (linen and nnx)", "Keras 3", "Haiku", "Equinox", "cuDNN: `jax.experimental.rnn`")

#: ``lstm-jax train`` of the bash block, made tiny (seconds): the run's files are what the blocks read.
TINY_RUN = (
    "train.steps=2",
    "train.eval_every=2",
    "train.checkpoint_every=2",
    "train.batch_size=4",
    "train.eval_batches=1",
    "task.params.T=5",
    "model.hidden_size=8",
    "model.recurrent_init=uniform",  # no QR to compile: the run's values do not matter, only its files
)


class Block(NamedTuple):
    section: str  # "## title", with " > ### title" inside a subsection
    line: int  # the line of the block's first code line in the page (1-based)
    code: str


def blocks(language: str, text: str = TEXT) -> list[Block]:
    """Every fenced block of ``language`` with its section, in the page's order."""
    found, chapter, section, code, start = [], "", "", None, 0
    for number, line in enumerate(text.splitlines(), 1):
        if code is not None:
            if line.startswith("```"):
                found.append(Block(section, start, "\n".join(code) + "\n"))
                code = None
            else:
                code.append(line)
        elif line.startswith("```" + language) and line[3:].strip() == language:
            code, start = [], number + 1
        elif line.startswith("## "):
            chapter = section = line[3:].strip()
        elif line.startswith("### "):
            section = f"{chapter} > {line[4:].strip()}"
    assert code is None, f"{NAME}: the block opened at line {start - 1} is never closed"
    return found


def imported(code: str) -> set[str]:
    """The top-level packages a block imports."""
    return set(re.findall(r"^(?:import|from)\s+([A-Za-z_]\w*)", code, flags=re.M))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def need(package: str):
    """Import a peer or skip, saying what to install; Keras on the JAX backend only."""
    if package == "keras":
        os.environ.setdefault("KERAS_BACKEND", "jax")
    module = pytest.importorskip(package, reason=f"the block imports {package}: {PEERS[package]}")
    if package == "keras" and module.backend.backend() != "jax":
        pytest.skip(f"the page's Keras blocks run Keras on JAX, got KERAS_BACKEND={module.backend.backend()!r}")
    return module


def user_numerics():
    """JAX's defaults, what a user's session has (the conftest's strict promotion is the suite's, not theirs)."""
    return jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard")


def run_block(block: Block) -> None:
    """Run one block in a fresh namespace; a failure names the section and the page's line that failed."""
    filename = f"{NAME}, the block at line {block.line}"  # its source in linecache: tracebacks show the block
    linecache.cache[filename] = (len(block.code), None, block.code.splitlines(True), filename)
    rank, dtype = user_numerics()
    try:
        code = compile(block.code, filename, "exec")
        with rank, dtype:
            exec(code, {"__name__": "coming_from"})
    except Exception as error:
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == filename]
        if isinstance(error, SyntaxError) and error.filename == filename:
            lines.append(error.lineno)
        line = block.line + (lines[-1] - 1 if lines else 0)
        raise AssertionError(
            f"{NAME}:{line}: the python block in section {block.section!r} (from line {block.line}) failed: "
            f"{type(error).__name__}: {error}"
        ) from error


PYTHON = blocks("python")


# ----------------------------------------------------------------------------------------------
# the page's shape


def test_every_peer_has_its_section_with_python_blocks():
    chapters = [m for m in re.findall(r"^## (.+)$", TEXT, flags=re.M)]
    for section in SECTIONS:
        assert section in chapters, f"{NAME}: expected a section '## {section}', got {chapters}"
        assert any(b.section.split(" > ")[0] == section for b in PYTHON), f"{NAME}: '## {section}' has no python block"
    assert len(PYTHON) == TEXT.count("\n```python\n"), "a python fence the parser did not read"


def test_the_parser_sees_sections_lines_and_an_unclosed_fence():
    text = "# t\n## A\n```python\nx = 1\n```\n### B\n\n```python\ny = 2\nz = 3\n```\n```bash\nls\n```\n"
    assert blocks("python", text) == [Block("A", 4, "x = 1\n"), Block("A > B", 9, "y = 2\nz = 3\n")]
    assert blocks("bash", text) == [Block("A > B", 13, "ls\n")]
    with pytest.raises(AssertionError, match="line 2 is never closed"):
        blocks("python", "# t\n```python\nx = 1\n")


def test_the_links_resolve():
    """Every relative link names a file that exists, and its anchor a heading there (GitHub's slugs)."""
    prose = re.sub(r"^```.*?^```", "", TEXT, flags=re.M | re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`\n]*`", "", prose))
    assert any(link.startswith("maths.md#") for link in links), "the page links docs/maths.md's equations"
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = (PAGE.parent / path).resolve() if path else PAGE
        assert target.is_file(), f"{NAME}: the link {link!r} names no file"
        if anchor:
            assert anchor in anchors(target.read_text()), f"{NAME}: the link {link!r} names no heading of {target.name}"


def test_a_wrong_block_fails_with_its_section_and_line():
    """The harness can fail: a block whose assert is false is reported with its section and line."""
    wrong = Block(
        "PyTorch > Bring a trained model over", 42, "import numpy as np\nnp.testing.assert_allclose(1.0, 2.0)\n"
    )
    with pytest.raises(AssertionError, match=r"coming_from\.md:43: .*'PyTorch > Bring a trained model over'"):
        run_block(wrong)
    with pytest.raises(AssertionError, match=r"coming_from\.md:8: .*SyntaxError"):
        run_block(Block("Haiku", 7, "x = 1\nx = = 2\n"))


# ----------------------------------------------------------------------------------------------
# the bash block: a tiny run made and exported as the page says


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory):
    """A directory holding ``runs/quickstart`` as the bash block leaves it: ``lstm-jax train`` (tiny) then every
    ``lstm-jax export`` line (``--to torch`` only where torch is installed)."""
    from lstm_jax import cli
    from lstm_jax.api import fit

    (bash,) = blocks("bash")
    home = tmp_path_factory.mktemp("coming_from")
    cwd = os.getcwd()
    os.chdir(home)
    try:
        for line in bash.code.splitlines():
            argv = shlex.split(line, comments=True)
            assert argv[0] == "lstm-jax", f"{NAME}: expected lstm-jax commands in the bash block, got {line!r}"
            if argv[1] == "train":
                config, out = argv[2], argv[argv.index("--out") + 1]
                assert out == "runs/quickstart" and (ROOT / config).is_file(), line
                with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
                    fit(ROOT / config, out, overrides=list(TINY_RUN), progress=False)
            elif argv[1] == "export" and not (argv[argv.index("--to") + 1] == "torch" and _missing("torch")):
                assert cli.main(argv[1:]) == 0, f"{NAME}: {line!r} failed"
            elif argv[1] != "export":
                raise AssertionError(f"{NAME}: a bash line this test does not run: {line!r}")
    finally:
        os.chdir(cwd)
    return home


def _missing(package: str) -> bool:
    try:
        importlib.import_module(package)
    except ImportError:
        return True
    return False


def test_the_bash_block_trains_and_exports():
    commands = [shlex.split(line, comments=True)[:2] for line in blocks("bash")[0].code.splitlines()]
    assert ["lstm-jax", "train"] in commands and ["lstm-jax", "export"] in commands


# ----------------------------------------------------------------------------------------------
# every python block


@pytest.mark.parametrize("block", PYTHON, ids=[f"L{b.line}-{slug(b.section)[:40]}" for b in PYTHON])
def test_the_python_block_runs(block, request, tmp_path, monkeypatch):
    for package in sorted(imported(block.code) & set(PEERS)):
        need(package)
    monkeypatch.chdir(request.getfixturevalue("quickstart_dir") if "runs/quickstart" in block.code else tmp_path)
    run_block(block)
