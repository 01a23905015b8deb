"""Every code block of README.md, docs/*.md and experiments/README.md runs, by the one mechanism of
``tests/_doc_blocks.py`` (its docstring says what "runs" means for each kind of block): each ```python block runs on
its own; each ```bash block parses and its commands parse (nothing trains); each ```yaml block loads; the command
lines of plain blocks parse; plain blocks of maths, tables and output are text. The links of every page resolve.
A failing block names its page, line and section.

The pages' own promises stay beside them: the README's set-up commands are CI's (tests/test_readme.py), the peers'
page has its sections and its bash block trains and exports (tests/test_coming_from.py).
"""

from __future__ import annotations

import _doc_blocks as docs
import pytest

PYTHON = docs.all_blocks("python")
OTHERS = [b for b in docs.all_blocks() if b.language != "python" and docs.checked(b)]


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(block, tmp_path, tmp_path_factory, monkeypatch):
    docs.need_peers(block)
    runs = [d for d in docs.run_dirs(block.page) if d in block.code]
    monkeypatch.chdir(docs.made_run(block.page, tmp_path_factory) if runs else tmp_path)
    docs.run_python(block)


@pytest.mark.parametrize("block", OTHERS, ids=[f"{b.id}-{b.language or 'plain'}" for b in OTHERS])
def test_block_checks(block):
    docs.check_block(block)


@pytest.mark.parametrize("page", docs.PAGES)
def test_links_resolve(page):
    docs.check_links(page)


# ----------------------------------------------------------------------------------------------
# the mechanism finds every block and can fail


def test_every_page_and_fence_is_seen():
    assert {"README.md", "docs/maths.md", "docs/coming_from.md", "experiments/README.md"} <= set(docs.PAGES)
    for page in docs.PAGES:
        text = (docs.ROOT / page).read_text()
        fences = sum(line.lstrip().startswith("```") for line in text.splitlines())
        assert len(docs.blocks(page)) == fences // 2, f"{page}: a fence the parser did not read"
    assert len(PYTHON) >= 14 and any(docs.commands(b) for b in OTHERS if b.page == "experiments/README.md")


def test_the_parser_sees_languages_sections_lines_and_an_unclosed_fence():
    text = (
        "# t\n```\na\n```\n## A\n```python\nx = 1\n```\n### B\n\n```python\ny = 2\nz = 3\n```\n  ```bash\n  ls\n  ```\n"
    )
    assert docs.blocks("p.md", text) == [
        docs.Block("p.md", "", "t", 3, "a\n"),
        docs.Block("p.md", "python", "A", 7, "x = 1\n"),
        docs.Block("p.md", "python", "A > B", 12, "y = 2\nz = 3\n"),
        docs.Block("p.md", "bash", "A > B", 16, "ls\n"),
    ]
    with pytest.raises(AssertionError, match="p.md: the block opened at line 2 is never closed"):
        docs.blocks("p.md", "# t\n```python\nx = 1\n")


def _page(tmp_path, body: str) -> list[docs.Block]:
    """A page in a scratch folder of the repository's shape, and its blocks."""
    path = tmp_path / "page.md"
    path.write_text(body)
    return docs.blocks(str(path), path.read_text())


def test_a_wrong_python_block_fails_with_its_page_section_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body = "# Page\n## Use it\n### Bring a model over\n\n```python\nimport numpy as np\nnp.testing.assert_allclose(1, 2)\n```\n"
    body += "## Other\n```python\nx = 1\nx = = 2\n```\n"
    wrong, bad_syntax = _page(tmp_path, body)
    with pytest.raises(AssertionError, match=r"page\.md:7: the python block in section 'Use it > Bring a model over'"):
        docs.run_python(wrong)
    with pytest.raises(AssertionError, match=r"page\.md:12: .*'Other'.*SyntaxError"):
        docs.run_python(bad_syntax)


@pytest.mark.parametrize(
    "command, reason",
    [
        ("lstm-jax train configs/quickstart.yaml --epochs 3", "unrecognized arguments: --epochs 3"),
        ("lstm-jax train configs/quickstart.yaml --set model.hiden_size=8", "hiden_size"),
        ("lstm-jax train configs/nowhere.yaml", "the config configs/nowhere.yaml is no file"),
        ("lstm-jax export runs/x --to onnx", "invalid choice: 'onnx'"),
        ("lstm-jax export RUN_DIR --to torch|onnx [--out PATH]", r"\['onnx'\] not among"),
        ("lstm-jax eval RUN_DIR [--batch N]", "unrecognized option '--batch'"),
        ("python experiments/nowhere.py --table", "experiments/nowhere.py is no file"),
        ("python experiments/sweep.py adding --tabel", "unrecognized arguments: --tabel"),
        ("python experiments/sweep.py addition --table", "invalid choice: 'addition'"),
        ("python experiments/pallas_check.py [--quik]", "unrecognized option '--quik'"),
    ],
)
def test_a_wrong_command_fails_with_its_page_section_and_line(tmp_path, command, reason):
    (block,) = _page(tmp_path, f"# Page\n## Run it\n```bash\n# a comment\n{command}  # what it does\n```\n")
    with pytest.raises(AssertionError, match=rf"page\.md:5: the command .* in section 'Run it' .*{reason}"):
        docs.check_block(block)


def test_the_right_commands_pass_and_shell_syntax_is_checked(tmp_path):
    body = (
        "# P\n```bash\n.venv/bin/lstm-jax train configs/quickstart.yaml --set seed=1 && lstm-jax list\n"
        "taskset -c 0 python experiments/sweep.py adding copy --table   # comment\n"
        "python experiments/pallas_check.py [--quick]\nlstm-jax eval --help\npip install torch\n```\n"
        "```\nlstm-jax export RUN_DIR --to torch|safetensors|keras [--out PATH]\nσ(x) = 1 / (1 + e^{-x})\n```\n"
        "```bash\nif [ 1 -eq 1 ]; then\n  echo\n```\n```pyhton\nx = 1\n```\n"
    )
    good, synopsis, unclosed_if, typo = _page(tmp_path, body)
    assert [argv[:2] for _, argv in docs.commands(good)] == [
        ["lstm-jax", "train"],
        ["lstm-jax", "list"],
        ["python", "experiments/sweep.py"],
        ["python", "experiments/pallas_check.py"],
        ["lstm-jax", "eval"],
    ]
    docs.check_block(good)
    docs.check_block(synopsis)
    with pytest.raises(AssertionError, match=r"page\.md:\d+: the bash block in section 'P' does not parse"):
        docs.check_block(unclosed_if)
    with pytest.raises(AssertionError, match=r"page\.md:17: a ```pyhton block"):
        docs.check_block(typo)


def test_maths_and_text_are_not_code(tmp_path):
    body = "# P\n```math\n\\sigma(x) = 1 / (1 + e^{-x})\n```\n```text\nlstm-jax train CONFIG.yaml [--set KEY=VALUE ...]\n```\n"
    maths, synopsis = _page(tmp_path, body)
    assert not docs.checked(maths) and docs.checked(synopsis)
    (script,) = _page(tmp_path, "# P\n```\n#!/bin/bash\nif true; then\n  lstm-jax list\n```\n")
    assert docs.is_script(script) and not docs.is_script(maths)
    with pytest.raises(AssertionError, match=r"page\.md:\d+: the bash block in section 'P' does not parse"):
        docs.check_block(script)
    docs.check_block(maths)
    docs.check_block(synopsis)


def test_a_yaml_block_loads_as_a_config(tmp_path):
    body = "# P\n```yaml\ntask: {name: adding}\nmodel: {hidden_size: 8}\n```\n```yaml\ntask: {name: adding}\nmodel: {hiden_size: 8}\n```\n"
    good, wrong = _page(tmp_path, body)
    docs.check_block(good)
    with pytest.raises(AssertionError, match=r"page\.md:7: the yaml block .*hiden_size"):
        docs.check_block(wrong)


def test_a_broken_link_names_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# P\n\n[ok](#p) and [gone](#nowhere)\n")
    with pytest.raises(AssertionError, match=r"page\.md:3: the link '#nowhere' names no heading"):
        docs.check_links(str(page))
