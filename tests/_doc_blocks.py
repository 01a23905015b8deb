"""The one mechanism behind the doc tests: every fenced block of the pages (``README.md``, ``docs/*.md``,
``experiments/README.md``) with its language, page, line and section, and what "the block runs" means for each.

- A ```python block runs as it is, on its own: a fresh namespace (a reader copies one block), JAX's default numerics
  (rank promotion allowed, standard dtype promotion: what a user's session has; the suite's conftest makes both
  strict, which Keras's own code and optax do not pass), a scratch working directory. A block that imports a peer
  library that is not installed skips and says what to install (:data:`PEERS`). A block that names a run directory
  made by a ```bash block of its page (``lstm-jax train ... --out DIR``) runs beside a tiny run of that block
  (:func:`made_run`: the train line with :data:`TINY_RUN`, the export lines as they are).
- A ```bash (or ```sh, ```shell) block is shell (``bash -n`` parses it), and each of its commands, as every command line of a plain
  block, is checked without training (:func:`check_command`): ``lstm-jax ...`` parses with ``lstm_jax.cli``'s own
  parser, a ``train`` line's config exists and loads with its ``--set`` overrides, ``lstm-jax list`` and ``--help``
  run (they are cheap); ``python experiments/X.py ...`` names a script that exists and whose own parser (the one its
  ``main`` builds, captured before it parses) accepts the arguments shown; ``bash experiments/X.sh`` exists and
  parses. A usage synopsis (a line with ``[...]``, ``a|b`` or ``...``) is checked for its options only: each
  ``--flag`` is one the command has, each ``a|b`` after it among its choices. Install and test commands (``pip``,
  ``python -m venv``, ``pytest``) are not run: the README's two set-up commands are checked to be CI's
  (``tests/test_readme.py``).
- A ```yaml (or ```yml) block loads (``yaml.safe_load``); one with a ``task`` is a config and loads as one
  (``lstm_jax.config.config_from_dict``).
- A plain ````` block (no language), a ```text or a ```math block is not code: maths, tables, printed output, a
  usage synopsis, printed output. Its lines that are commands (as above) are checked as commands, and the rest is
  text; one that opens with ``#!/bin/bash`` is a shell script shown whole and parses (``bash -n``) too. Any other language fails (:data:`LANGUAGES`), so a typo such as ```pyhton cannot hide a block.

Every failure names the page, the line and the section: ``docs/x.md:12: the python block in section 'A > B' ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import linecache
import os
import pathlib
import re
import shlex
import subprocess
import traceback
from typing import NamedTuple

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: The pages whose blocks are tested, relative to the repository root (docs/*.md found anew on every run).
PAGES = (
    "README.md",
    *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")),
    "experiments/README.md",
)

#: The fence languages the tests know, by what they get; "" (a plain block), text and math are not code.
SHELL, YAML, TEXT = ("bash", "sh", "shell"), ("yaml", "yml"), ("", "text", "math")
LANGUAGES = ("python", *SHELL, *YAML, *TEXT)

#: A peer a python block may import -> what to install. A block importing one that is missing skips.
PEERS = {
    "torch": "PyTorch (pip install torch==2.13.0, the CPU build; there is none for Python 3.13 here)",
    "flax": "flax (pip install flax)",
    "keras": "Keras 3 (pip install keras)",
    "haiku": "dm-haiku (pip install dm-haiku)",
    "equinox": "Equinox (pip install equinox)",
    "safetensors": "safetensors (pip install safetensors)",
}

#: ``lstm-jax train`` of a ```bash block, made tiny (seconds): the run's files are what the python blocks read.
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
    page: str  # relative to the repository root, e.g. "docs/coming_from.md"
    language: str  # "python", "bash", "yaml", "" (plain): see LANGUAGES
    section: str  # "## title", with " > ### title" inside a subsection; the page's "# title" before any "##"
    line: int  # the line of the block's first code line in the page (1-based)
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def id(self) -> str:
        """A readable test id: ``docs/coming_from.md:84-pytorch``."""
        return f"{self.where}-{slug(self.section)[:40]}".rstrip("-")


def blocks(page: str, text: str | None = None, language: str | None = None) -> list[Block]:
    """Every fenced block of ``page`` (of ``language``, or all) with its section, in the page's order."""
    text = (ROOT / page).read_text() if text is None else text
    found, chapter, section, code, start, lang, indent = [], "", "", None, 0, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip()
        if code is not None:
            if stripped.startswith("```"):
                found.append(Block(page, lang, section, start, "\n".join(code) + "\n"))
                code = None
            else:
                code.append(line[indent:] if not line[:indent].strip() else line.lstrip())
        elif stripped.startswith("```"):
            code, start, indent = [], number + 1, len(line) - len(stripped)
            lang = stripped[3:].strip().split(" ")[0].split("{")[0]
        elif line.startswith("# ") and not chapter:
            section = line[2:].strip()
        elif line.startswith("## "):
            chapter = section = line[3:].strip()
        elif line.startswith("### "):
            section = f"{chapter} > {line[4:].strip()}"
    assert code is None, f"{page}: the block opened at line {start - 1} is never closed"
    return [b for b in found if language is None or b.language == language]


def all_blocks(language: str | None = None) -> list[Block]:
    return [b for page in PAGES for b in blocks(page, language=language)]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return {slug(m) for m in re.findall(r"^#{1,6} (.+)$", prose, flags=re.M)}


def links(page: str, text: str | None = None) -> list[tuple[int, str]]:
    """The page's markdown links ``](target)`` outside code, with their lines."""
    text = (ROOT / page).read_text() if text is None else text
    found, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            found += [(number, link) for link in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`\n]*`", "", line))]
    return found


def check_links(page: str, text: str | None = None) -> None:
    """Every relative link names a file that exists, and its anchor a heading there (GitHub's slugs)."""
    text = (ROOT / page).read_text() if text is None else text
    for number, link in links(page, text):
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = ((ROOT / page).parent / path).resolve() if path else ROOT / page
        assert target.exists(), f"{page}:{number}: the link {link!r} names no file"
        if anchor and target.suffix == ".md":
            body = text if not path else target.read_text()
            assert anchor in anchors(body), f"{page}:{number}: the link {link!r} names no heading of {target.name}"


# ----------------------------------------------------------------------------------------------
# python blocks


def imported(code: str) -> set[str]:
    """The top-level packages a block imports."""
    return set(re.findall(r"^(?:import|from)\s+([A-Za-z_]\w*)", code, flags=re.M))


def need(package: str):
    """Import a peer or skip, saying what to install; Keras on the JAX backend only."""
    if package == "keras":
        os.environ.setdefault("KERAS_BACKEND", "jax")
    module = pytest.importorskip(package, reason=f"the block imports {package}: {PEERS[package]}")
    if package == "keras" and module.backend.backend() != "jax":
        pytest.skip(f"the docs' Keras blocks run Keras on JAX, got KERAS_BACKEND={module.backend.backend()!r}")
    return module


def missing(package: str) -> bool:
    try:
        importlib.import_module(package)
    except ImportError:
        return True
    return False


def user_numerics():
    """JAX's defaults, what a user's session has (the conftest's strict promotion is the suite's, not theirs)."""
    return jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard")


def run_python(block: Block) -> None:
    """Run one python block in a fresh namespace, here (the caller picks the directory); a failure names the page,
    the line that failed and the section. Peers are the caller's: see :func:`need_peers`."""
    filename = f"{block.page}, the block at line {block.line}"  # its source in linecache: tracebacks show the block
    linecache.cache[filename] = (len(block.code), None, block.code.splitlines(True), filename)
    rank, dtype = user_numerics()
    try:
        code = compile(block.code, filename, "exec")
        with rank, dtype:
            exec(code, {"__name__": "doc_block"})
    except Exception as error:
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == filename]
        if isinstance(error, SyntaxError) and error.filename == filename:
            lines.append(error.lineno)
        line = block.line + (lines[-1] - 1 if lines else 0)
        raise AssertionError(
            f"{block.page}:{line}: the python block in section {block.section!r} (from line {block.line}) failed: "
            f"{type(error).__name__}: {error}"
        ) from error


def need_peers(block: Block) -> None:
    for package in sorted(imported(block.code) & set(PEERS)):
        need(package)


# ----------------------------------------------------------------------------------------------
# runs made by a page's bash block

_RUNS: dict[str, pathlib.Path] = {}


def run_dirs(page: str) -> list[str]:
    """The run directories the page's ```bash blocks train into (``lstm-jax train ... --out DIR``)."""
    found = []
    for block in [b for b in blocks(page) if b.language in SHELL]:
        for _, argv in commands(block):
            if argv[:2] == ["lstm-jax", "train"] and "--out" in argv:
                found.append(argv[argv.index("--out") + 1])
    return found


def made_run(page: str, tmp_path_factory) -> pathlib.Path:
    """A directory where the page's ```bash blocks ran, tiny: each ``lstm-jax train`` with :data:`TINY_RUN`, each
    ``lstm-jax export`` as it is (``--to torch`` only where torch is installed). Made once per session."""
    if page in _RUNS:
        return _RUNS[page]
    from lstm_jax import cli
    from lstm_jax.api import fit

    home = tmp_path_factory.mktemp(pathlib.Path(page).stem)
    with contextlib.chdir(home) if hasattr(contextlib, "chdir") else _chdir(home):
        for block in [b for b in blocks(page) if b.language in SHELL]:
            for line, argv in commands(block):
                where = f"{page}:{line}: in section {block.section!r}"
                if argv[:2] == ["lstm-jax", "train"]:
                    config, out = argv[2], argv[argv.index("--out") + 1]
                    assert (ROOT / config).is_file(), f"{where}: {config} is no file"
                    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
                    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
                        fit(ROOT / config, out, overrides=[*overrides, *TINY_RUN], progress=False)
                elif argv[:2] == ["lstm-jax", "export"]:
                    if not (argv[argv.index("--to") + 1] == "torch" and missing("torch")):
                        assert cli.main(argv[1:]) == 0, f"{where}: {shlex.join(argv)} failed"
    _RUNS[page] = home
    return home


@contextlib.contextmanager
def _chdir(path):  # contextlib.chdir is Python >= 3.11
    cwd = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)


# ----------------------------------------------------------------------------------------------
# commands: lstm-jax, python experiments/X.py, bash experiments/X.sh

#: Words before a command that do not change it: srun, taskset -c N, timeout N, env assignments.
_WRAPPERS = {"srun": 0, "taskset": 2, "timeout": 1, "env": 0, "nohup": 0, "time": 0}


def commands(block: Block) -> list[tuple[int, list[str]]]:
    """The commands of a non-python block this module checks, each with its page line: argv from ``lstm-jax``,
    ``python experiments/...`` (``python`` for any ``python3``, ``.venv/bin/python``, ``$py``) or ``bash
    experiments/...``; other commands (pip, venv, pytest, shell syntax) are not returned."""
    found = []
    lines = block.code.splitlines()
    number = 0
    while number < len(lines):
        first, text = number, lines[number]
        while text.rstrip().endswith("\\") and number + 1 < len(lines):
            number += 1
            text = text.rstrip()[:-1] + " " + lines[number]
        number += 1
        try:
            words = shlex.split(text, comments=True)
        except ValueError:
            continue  # a line of text, not a command
        segment: list[str] = []
        for word in [*words, ";"]:
            if word in ("&&", "||", ";", "|") or word.endswith(";"):
                argv = _command(segment + ([word[:-1]] if word.endswith(";") and word != ";" else []))
                if argv:
                    found.append((block.line + first, argv))
                segment = []
            else:
                segment.append(word)
    return found


def _command(words: list[str]) -> list[str] | None:
    while words and (words[0] in _WRAPPERS or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0])):
        words = words[1 + _WRAPPERS.get(words[0], 0) :]
    if not words:
        return None
    program = words[0].rsplit("/", 1)[-1]
    if program == "lstm-jax":
        return ["lstm-jax", *words[1:]]
    if (
        re.fullmatch(r"python[\d.]*|\$py|\$\{?PYTHON\S*", program)
        and words[1:2]
        and words[1].startswith("experiments/")
    ):
        return ["python", *words[1:]]
    if program == "bash" and words[1:2] and words[1].startswith("experiments/"):
        return ["bash", *words[1:]]
    return None


def is_synopsis(argv: list[str]) -> bool:
    """A usage line (``[--flag]``, ``a|b``, ``ARGS ...``) rather than a command to run."""
    return any(re.search(r"[\[\]|]|\.\.\.", word) for word in argv)


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


class _ParseError(Exception):
    pass


def _raise_parse_error(message):
    raise _ParseError(message)


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def script_parser(path: str) -> argparse.ArgumentParser:
    """The argparse parser ``experiments/X.py``'s ``main`` builds: the script is imported (not run) and its ``main``
    stopped at ``parse_args``."""
    if path not in _PARSERS:
        spec = importlib.util.spec_from_file_location(f"doc_script_{pathlib.Path(path).stem}", ROOT / path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)

        def capture(self, *args, **kwargs):
            raise _Captured(self)

        real = argparse.ArgumentParser.parse_args
        argparse.ArgumentParser.parse_args = capture
        try:
            module.main([])
        except _Captured as captured:
            _PARSERS[path] = captured.parser
        else:
            raise AssertionError(f"{path}: main() returned without parsing its arguments")
        finally:
            argparse.ArgumentParser.parse_args = real
    return _PARSERS[path]


def _subparser(parser: argparse.ArgumentParser, argv: list[str]):
    """The parser that reads the options after ``argv[0]`` when it names a sub-command, and the rest."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and argv and argv[0] in action.choices:
            return action.choices[argv[0]], argv[1:]
    return parser, argv


def _parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """Parse as the command would, without exiting; ``--help`` prints nothing and returns None."""
    flat = list(_parsers(parser))
    for p in flat:
        p.error = _raise_parse_error
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit as stop:  # --help
        if stop.code not in (0, None):
            raise _ParseError(f"exit {stop.code}") from None
        return None
    finally:
        for p in flat:
            del p.error


def _check_synopsis(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    parser, argv = _subparser(parser, argv)
    options = parser._option_string_actions
    words = [w.strip("[]") for w in argv]
    for i, word in enumerate(words):
        if word.startswith("-") and word != "-":
            flag = word.split("=")[0]
            if flag not in options:
                raise _ParseError(f"unrecognized option {flag!r}; {parser.prog} has {sorted(options)}")
            action, value = options[flag], words[i + 1] if i + 1 < len(words) else ""
            if action.choices and "|" in value:
                wrong = [v for v in value.split("|") if v not in action.choices]
                if wrong:
                    raise _ParseError(f"{flag}: {wrong} not among {list(action.choices)}")


def check_command(argv: list[str]) -> None:
    """Check one command (see the module's docstring); raises ``_ParseError``/``AssertionError`` with the reason."""
    if argv[0] == "lstm-jax":
        from lstm_jax import cli

        if is_synopsis(argv):
            return _check_synopsis(cli.build_parser(), argv[1:])
        args = _parse(cli.build_parser(), argv[1:])
        if args is None:
            return
        if args.command == "train":
            from lstm_jax.config import load_config

            assert (ROOT / args.config).is_file(), f"the config {args.config} is no file"
            load_config(ROOT / args.config, args.set)
        elif args.command == "list":
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                assert cli.main(argv[1:]) == 0
            assert "configs:" in printed.getvalue()
        return
    script = argv[1]
    assert (ROOT / script).is_file(), f"{script} is no file"
    if argv[0] == "bash":
        done = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
        assert done.returncode == 0, f"bash -n {script}: {done.stderr.strip()}"
        return
    parser = script_parser(script)
    if is_synopsis(argv):
        return _check_synopsis(parser, argv[2:])
    _parse(parser, argv[2:])


def check_shell(block: Block) -> None:
    """``bash -n`` of a ```bash block (a syntax error names the page's line)."""
    done = subprocess.run(["bash", "-n"], input=block.code, capture_output=True, text=True)
    if done.returncode:
        found = re.search(r"line (\d+)", done.stderr)
        line = block.line + (int(found.group(1)) - 1 if found else 0)
        raise AssertionError(
            f"{block.page}:{line}: the bash block in section {block.section!r} does not parse: {done.stderr.strip()}"
        )


def check_commands(block: Block) -> None:
    """Every command of a non-python block (see :func:`commands`); a failure names page, line and section."""
    for line, argv in commands(block):
        try:
            check_command(argv)
        except (_ParseError, AssertionError, ValueError) as error:
            raise AssertionError(
                f"{block.page}:{line}: the command {shlex.join(argv)!r} in section {block.section!r} "
                f"(block from line {block.line}) fails: {type(error).__name__}: {error}"
            ) from error


def check_yaml(block: Block) -> None:
    """A ```yaml block loads; one with a ``task`` key loads as a config."""
    import yaml

    try:
        data = yaml.safe_load(block.code)
        if isinstance(data, dict) and "task" in data:
            from lstm_jax.config import config_from_dict

            config_from_dict(data)
    except Exception as error:
        raise AssertionError(
            f"{block.page}:{block.line}: the yaml block in section {block.section!r} does not load: "
            f"{type(error).__name__}: {error}"
        ) from error


def check_block(block: Block) -> None:
    """What a non-python block gets (the module's docstring); python blocks: :func:`run_python`."""
    if block.language not in LANGUAGES:
        raise AssertionError(
            f"{block.page}:{block.line - 1}: a ```{block.language} block in section {block.section!r}: "
            f"the doc tests know {LANGUAGES} (tests/_doc_blocks.py)"
        )
    if block.language in SHELL or is_script(block):
        check_shell(block)
    if block.language in YAML:
        check_yaml(block)
    check_commands(block)


def is_script(block: Block) -> bool:
    """A plain block that is a shell script shown whole (``#!/bin/bash``, ``#!/usr/bin/env bash``)."""
    return block.language in TEXT and bool(re.match(r"#!\S*(/|env )(ba)?sh\b", block.code))


def checked(block: Block) -> bool:
    """Whether a non-python block has anything to check (a plain block of text or maths has not)."""
    return block.language not in (*TEXT, "python") or bool(commands(block))
