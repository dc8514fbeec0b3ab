"""The import graph of ``multiscale`` and its CLI: no cycles, and no import of the CLI by the library.

The graph is read statically with :mod:`ast`, so it holds every import a
module can make: top-level ones, lazy ones inside functions and those under
``if TYPE_CHECKING``. Data flows one way (CLI → library); if two modules need
each other, the shared piece belongs lower down, and a lazy import that
reaches back up only hides the cycle until the next refactoring.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Package name → folder. The CLI is installed as ``multiscale_cli`` from ``cli/``.
PACKAGES = {"multiscale": ROOT / "multiscale", "multiscale_cli": ROOT / "cli"}
ALIASES = {"cli": "multiscale_cli"}

#: Modules tangled in cycles today, scheduled to be untangled: a cycle among
#: these modules only is tolerated; any cycle reaching another module fails.
KNOWN_CYCLES = (
    # content → gram → losses → tiling → content (and shorter loops among them, all lazy
    # imports back into tiling.py): to be broken by the objectives re-layout (issue 13)
    frozenset({"multiscale.content", "multiscale.gram", "multiscale.losses", "multiscale.tiling"}),
)


def _known(cycle: tuple[str, ...]) -> bool:
    return any(set(cycle) <= group for group in KNOWN_CYCLES)


def _modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of everything ``tree`` imports, relative imports resolved.

    For ``from X import a`` both ``X`` and ``X.a`` are yielded: ``a`` may be a
    submodule; names that are not modules are filtered out later.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # A package's own module is its __init__: level 1 is itself.
                base = module.split(".")
                drop = node.level - 1 if is_package else node.level
                if drop >= len(base):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top package")
                prefix = ".".join(base[: len(base) - drop])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def _canonical(name: str) -> str:
    head, _, rest = name.partition(".")
    head = ALIASES.get(head, head)
    return f"{head}.{rest}" if rest else head


def _graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], int]]:
    """Intra-package import edges (module → modules it imports) and the line of each edge."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    lines: dict[tuple[str, str], int] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line in _imported_names(tree, module, path.name == "__init__.py"):
            name = _canonical(name)
            # `from pkg.mod import func` yields pkg.mod.func: keep its longest module prefix
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
                lines.setdefault((module, name), line)
    return graph, lines


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The elementary cycles of ``graph`` (Johnson-style search from each node, smallest first).

    Each cycle is rotated to start at its smallest module, so that one cycle
    has one spelling.
    """
    found: set[tuple[str, ...]] = set()
    order = sorted(graph)
    for i, start in enumerate(order):
        allowed = set(order[i:])  # a cycle is found from its smallest node only
        stack = [(start, iter(sorted(graph[start] & allowed)))]
        path, on_path = [start], {start}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(path.pop())
            elif child == start:
                found.add(tuple(path))
            elif child not in on_path:
                path.append(child)
                on_path.add(child)
                stack.append((child, iter(sorted(graph[child] & allowed))))
    return sorted(found, key=lambda c: (len(c), c))


def _describe(cycle: tuple[str, ...], lines: dict[tuple[str, str], int]) -> str:
    hops = zip(cycle, (*cycle[1:], cycle[0]), strict=True)
    return " → ".join(f"{a} (line {lines[a, b]})" for a, b in hops) + f" → {cycle[0]}"


def test_graph_is_read():
    graph, _ = _graph()
    assert "multiscale.synthesize" in graph and "multiscale_cli.main" in graph
    assert "multiscale.config" in graph["multiscale.synthesize"]
    # a lazy import inside a function counts
    assert "multiscale.synthesize" in graph["multiscale_cli.synthesize"]


def test_cycle_finder():
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"d2"}, "d2": set()}
    assert _cycles(graph) == [("a", "b"), ("a", "b", "c")]


def test_no_new_import_cycles():
    graph, lines = _graph()
    cycles = _cycles(graph)
    new = [c for c in cycles if not _known(c)]
    assert not new, "import cycle(s):\n" + "\n".join(_describe(c, lines) for c in new)


def test_known_cycles_still_exist():
    """A known cycle that is gone is removed from KNOWN_CYCLES, so it cannot come back unnoticed."""
    cycles = _cycles(_graph()[0])
    gone = [sorted(group) for group in KNOWN_CYCLES if not any(set(c) <= group for c in cycles)]
    assert not gone, f"no longer cycles, remove them from KNOWN_CYCLES: {gone}"


@pytest.mark.parametrize("forbidden", ["multiscale_cli", "click"])
def test_library_never_imports_the_cli(forbidden):
    modules = _modules()
    offenders = []
    for module, path in modules.items():
        if not module.startswith("multiscale.") and module != "multiscale":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, line in _imported_names(tree, module, path.name == "__init__.py"):
            if _canonical(name).split(".")[0] == forbidden:
                offenders.append(f"{module} (line {line}): imports {name}")
    assert not offenders, "\n".join(sorted(set(offenders)))
