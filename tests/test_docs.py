"""What the documentation tells users to type works: every ``from nnp... import ...`` line in a code block of
docs/ and README.md names something that exists, and every ``nnp`` command and every command of a script under
training/, benchmarks/ or scripts/ in a code block of docs/, README.md, RESULTS.md and examples/ parses with today's
arguments (the Python API and the CLI are as documented, and RESULTS's commands still run)."""

import argparse
import contextlib
import importlib
import io
import re
import runpy
import shlex
import sys
from pathlib import Path

import pytest

from nnp.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"^\s*from (nnp[\w.]*) import ([\w, ]+?)\s*(#.*)?$")
# a command: at the start of a shell statement, after VAR=value assignments, the executable maybe with a path
COMMAND = re.compile(r"^(?:\w+=\S*\s+)*(?:\S*/)?nnp\s+(?=[a-z])")
SCRIPT = re.compile(r"^(?:\w+=\S*\s+)*(?:nice\s+)?(?:\S*/)?python3?\s+((?:training|benchmarks|scripts)/\S+\.py)\b")
STATEMENT = re.compile(r";|&&|\|\||\||\bdo\b|\bthen\b|&(?!&)")
SHELL_VARIABLE = re.compile(r"\$\{?(\w+)\}?")
ASSIGNMENT = re.compile(r"^(\w+)=(\"[^\"]*\"|'[^']*')$")  # W="--targets water ..." on its own
FOR_LOOP = re.compile(r"^for (\w+) in (\S+)")
PLACEHOLDER = re.compile(r"<[^<>]*>")


def fenced_lines(path: Path):
    """(line number, text) of each logical line in the file's fenced code blocks (backslash continuations joined)."""
    lines, fenced, k = path.read_text().splitlines(), False, 0
    while k < len(lines):
        number, text = k + 1, lines[k]
        while text.rstrip().endswith("\\") and k + 1 < len(lines):
            k += 1
            text = text.rstrip()[:-1] + " " + lines[k]
        k += 1
        if text.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            yield number, text


def documented_imports() -> list[tuple[str, str, str]]:
    """(where, module, name) for each name imported from nnp in a fenced code block."""
    found = []
    for path in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        for number, line in fenced_lines(path):
            match = IMPORT.match(line)
            if match:
                for name in match.group(2).split(","):
                    found.append((f"{path.relative_to(ROOT)}:{number}", match.group(1), name.strip()))
    return found


IMPORTS = documented_imports()


def test_the_docs_import_something():
    assert len(IMPORTS) > 30  # the pattern still finds the API pages' imports


@pytest.mark.parametrize("where, module, name", IMPORTS, ids=[f"{w} {m}.{n}" for w, m, n in IMPORTS])
def test_documented_import_exists(where, module, name):
    imported = importlib.import_module(module)
    if not hasattr(imported, name):  # a submodule imports on its own
        importlib.import_module(f"{module}.{name}")


def documented_commands(pattern: re.Pattern) -> list[tuple[str, str, list[str]]]:
    """(where, ``pattern``'s group 1 or ``nnp``, the argv after it) of each command in a fenced code block that
    ``pattern`` finds. Shell variables set in the file (``C="--targets water"``, ``for m in a b``: the first) are
    expanded, others become 1; a ``<placeholder>`` becomes one word; ``...`` and optional-argument brackets are
    dropped, so that only the command's own words are checked."""
    found = []
    paths = [ROOT / "README.md", ROOT / "RESULTS.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").rglob("*.md")]
    for path in sorted(paths):
        variables = {}
        for number, line in fenced_lines(path):
            code = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
            code = PLACEHOLDER.sub("X", code).split(">")[0]  # <a placeholder> before any > redirection
            for statement in STATEMENT.split(code):
                statement = statement.strip().lstrip("(")  # ( ... &): a subshell
                if ASSIGNMENT.match(statement):
                    name, value = ASSIGNMENT.match(statement).groups()
                    variables[name] = shlex.split(value)[0] if value else ""
                elif FOR_LOOP.match(statement):
                    variables[FOR_LOOP.match(statement).group(1)] = FOR_LOOP.match(statement).group(2)
                match = pattern.match(statement)
                if match:
                    words = SHELL_VARIABLE.sub(lambda v: variables.get(v.group(1), "1"), statement[match.end():])
                    words = words.replace("[", " ").replace("]", " ").replace("...", " ")
                    program = match.group(1) if pattern.groups else "nnp"
                    found.append((f"{path.relative_to(ROOT)}:{number}", program, shlex.split(words)))
    return found


COMMANDS = documented_commands(COMMAND)
SCRIPTS = documented_commands(SCRIPT)


def test_the_docs_give_commands():
    assert len(COMMANDS) > 40 and {argv[0] for *_, argv in COMMANDS} >= {"train", "finetune", "stability", "learn"}
    assert len(SCRIPTS) > 100


@pytest.mark.parametrize("where, _, argv", COMMANDS, ids=[f"{w} {' '.join(a[:2])}" for w, _, a in COMMANDS])
def test_documented_command_parses(where, _, argv):
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            build_parser().parse_args(argv)
        except SystemExit as stop:
            assert not stop.code, f"{where}: nnp {shlex.join(argv)}\n{errors.getvalue()}"


class Parsed(Exception):
    """Raised instead of running a script once its arguments have parsed."""


@pytest.mark.parametrize("where, script, argv", SCRIPTS, ids=[f"{w} {s}" for w, s, _ in SCRIPTS])
def test_documented_script_command_parses(where, script, argv, monkeypatch):
    """The experiment and benchmark commands RESULTS gives: the script exists and takes these arguments."""
    path = ROOT / script
    assert path.is_file(), f"{where}: {script} does not exist"
    parse_args = argparse.ArgumentParser.parse_args

    def parse_only(self, args=None, namespace=None):
        parse_args(self, args, namespace)  # a bad argument exits with 2, as on the command line
        raise Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    monkeypatch.syspath_prepend(str(path.parent))
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), pytest.raises(Parsed):
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as stop:
            assert not stop.code, f"{where}: {script} {shlex.join(argv)}\n{errors.getvalue()}"
