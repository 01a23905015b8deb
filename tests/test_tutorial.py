"""The tutorial notebook, ``docs/tutorial.ipynb`` (issue 14): it runs end to end, it is committed without
outputs, and every section of ``docs/maths.md`` it names exists.

The notebook runs in a fresh ipykernel started from *this* interpreter (a kernel spec written into a temporary
directory, argv ``[sys.executable, "-m", "ipykernel_launcher", ...]``), so it imports the same JAX and lstm_jax as the
tests; the kernel has JAX's defaults, not the suite's strict promotion (a user runs it that way). Everything the
kernel, IPython, matplotlib and Jupyter write goes under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
MATHS = ROOT / "docs" / "maths.md"
CELL_TIMEOUT_S = 120
#: Links into docs/maths.md, ``[text](maths.md#anchor)``, and plain mentions ``maths.md §N``.
LINK = re.compile(r"\[([^\]]*)\]\((?:docs/)?maths\.md(?:#([^)]*))?\)")
MENTION = re.compile(r"maths\.md §(\d+(?:\.\d+)?)")
SECTION = re.compile(r"^§(\d+(?:\.\d+)?)\s+(.*)$")


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def test_tutorial_runs(tmp_path, monkeypatch):
    import nbformat
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    for variable in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    # The conftest's compilation cache is for the test processes; the kernel compiles as a user's would.
    for variable in [v for v in os.environ if v == "JAX_COMPILATION_CACHE_DIR" or v.startswith("JAX_PERSISTENT_CACHE")]:
        monkeypatch.delenv(variable)
    prefix = tmp_path / "kernel"
    install(kernel_name="lstm-jax-tutorial", prefix=str(prefix))
    specs = KernelSpecManager(kernel_dirs=[str(prefix / "share" / "jupyter" / "kernels")])
    manager = KernelManager(kernel_name="lstm-jax-tutorial", kernel_spec_manager=specs)
    assert manager.kernel_spec.argv[0] == sys.executable

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    probe = "import sys, jax, lstm_jax\nprint(sys.executable, jax.__file__, lstm_jax.__file__, sep='\\n')"
    notebook.cells.append(nbformat.v4.new_code_cell(probe))
    workdir = tmp_path / "work"
    workdir.mkdir()
    client = NotebookClient(
        notebook, km=manager, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()  # raises CellExecutionError on the first cell that fails (the notebook asserts its numbers)

    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None
            assert not [out for out in cell.outputs if out.output_type == "error"]
    executable, jax_file, _ = "".join(out.text for out in notebook.cells[-1].outputs if "text" in out).split("\n")[:3]
    import jax

    assert (executable, jax_file) == (sys.executable, jax.__file__)
    assert not list(workdir.iterdir())  # the notebook's run directory was temporary


def test_committed_notebook_has_no_outputs():
    import nbformat

    text = NOTEBOOK.read_text(encoding="utf-8")
    nbformat.validate(nbformat.reads(text, as_version=4))
    notebook = json.loads(text)
    assert set(notebook["metadata"]) <= {"kernelspec", "language_info"}
    assert len(notebook["cells"]) >= 10
    for cell in notebook["cells"]:
        assert cell["metadata"] == {}, cell["id"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["id"]


def _slug(title: str) -> str:
    """GitHub's anchor of a heading: lowercased, punctuation but ``-`` and ``_`` dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.replace("`", "").strip().lower()).replace(" ", "-")


def _headings(markdown: str) -> dict[str, str]:
    """``{anchor: title}`` of every heading (fenced code skipped; duplicates numbered as GitHub does)."""
    headings, fenced, seen = {}, False, {}
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)):
            title = match.group(1)
            slug = _slug(title)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            headings[slug if count == 0 else f"{slug}-{count}"] = title.replace("`", "")
    return headings


def _bad_references(sources: list[str], maths: str) -> list[str]:
    """Every link or mention of docs/maths.md in ``sources`` whose anchor, number or title is not a heading there."""
    headings = _headings(maths)
    numbered = {m.group(1): m.group(2) for t in headings.values() if (m := re.match(r"^(\d+(?:\.\d+)?)\.?\s+(.*)$", t))}
    bad = []
    for source in sources:
        for text, anchor in LINK.findall(source):
            if anchor and anchor not in headings:
                bad.append(f"[{text}]: no heading with anchor #{anchor}")
            if section := SECTION.match(text.strip()):
                number, title = section.groups()
                if not numbered.get(number, "").startswith(title):
                    bad.append(f"[{text}]: §{number} is {numbered.get(number)!r}")
                if anchor in headings and headings[anchor].split(".")[0] != number:
                    bad.append(f"[{text}]: #{anchor} is not §{number}")
        bad += [f"maths.md §{n}: no such section" for n in MENTION.findall(source) if n not in numbered]
    return bad


def test_named_maths_sections_exist():
    maths = MATHS.read_text(encoding="utf-8")
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    sources = [_source(cell) for cell in cells]
    assert sum(len(LINK.findall(s)) for s in sources) >= 6  # the notebook does point into docs/maths.md
    assert _bad_references(sources, maths) == []
    # The check itself catches a wrong anchor, a wrong title, a wrong number and a plain mention of a missing section.
    wrong = [
        "[§2 Forward pass](maths.md#2-backward-pass)",
        "[§3 Backward pass](maths.md#3-losses-lossespy)",
        "[§4 Losses](maths.md#3-losses-lossespy)",
        "see docs/maths.md §99",
    ]
    assert [len(_bad_references([s], maths)) for s in wrong] == [1, 1, 2, 1]
