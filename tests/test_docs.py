"""The documentation's Python: every ``from nnp... import ...`` line in a code block of docs/ and README.md names
something that exists (the Python API is as documented)."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"^\s*from (nnp[\w.]*) import ([\w, ]+?)\s*(#.*)?$")


def documented_imports() -> list[tuple[str, str, str]]:
    """(where, module, name) for each name imported from nnp in a fenced code block."""
    found = []
    for path in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        fenced = False
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            match = IMPORT.match(line) if fenced else None
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
