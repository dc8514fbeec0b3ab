"""No ``assert`` statements in the library or the CLI: ``python -O`` strips them.

A check that must hold at run time raises: a :class:`~multiscale.errors.MultiscaleError`
subclass for what a user can fix, ``ValueError``/``RuntimeError`` for a bug.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Files with asserts left, by path relative to the repository (none now).
KNOWN: set[str] = set()


def _asserts() -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for folder in ("multiscale", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            lines = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
            if lines:
                found[path.relative_to(ROOT).as_posix()] = lines
    return found


def test_no_runtime_checks_are_asserts():
    found = {name: lines for name, lines in _asserts().items() if name not in KNOWN}
    assert not found, "assert statements (stripped by python -O): " + "; ".join(
        f"{name} line(s) {', '.join(map(str, lines))}" for name, lines in found.items()
    )
