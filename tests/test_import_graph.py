"""The import graph of ``multiscale`` and its CLI: no cycles, imports only down the layers, no CLI in the library.

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

#: The layers of the package, lowest first. A module may import modules of lower
#: layers and of its own sub-package (the foundation counts as one), never a
#: higher layer or a sibling of its own layer: objectives, optimisers and
#: descriptors do not know each other, and only the jobs combine them.
LAYERS: tuple[tuple[str, ...], ...] = (
    # foundation: names, errors, configuration, files
    ("multiscale._version", "multiscale._tf", "multiscale.errors", "multiscale.layers", "multiscale.config",
     "multiscale.io", "multiscale.npz"),
    ("multiscale.measure",),
    ("multiscale.objectives", "multiscale.optim", "multiscale.descriptors"),
    ("multiscale.jobs",),
    ("multiscale",),  # the public API (the package's __init__)
    ("multiscale_cli",),
)  # fmt: skip


def _layer(module: str) -> tuple[int, str]:
    """(layer, group) of a module: its sub-package, or "foundation" for the lowest layer."""
    best: tuple[int, str, int] | None = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or module.startswith(prefix + ".")
            if inside and (best is None or len(prefix) > best[2]):
                best = (rank, "foundation" if rank == 0 else prefix, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer of LAYERS: place it")
    return best[0], best[1]


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
    assert "multiscale.jobs.synthesize" in graph and "multiscale_cli.main" in graph
    assert "multiscale.config" in graph["multiscale.jobs.synthesize"]
    # a lazy import inside a function counts
    assert "multiscale.jobs.synthesize" in graph["multiscale_cli.synthesize"]


def test_cycle_finder():
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"d2"}, "d2": set()}
    assert _cycles(graph) == [("a", "b"), ("a", "b", "c")]


def test_no_import_cycles():
    graph, lines = _graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycle(s):\n" + "\n".join(_describe(c, lines) for c in cycles)


def test_every_module_is_in_a_layer():
    for module in _modules():
        _layer(module)


def test_imports_only_go_down_the_layers():
    """measure → objectives | optim | descriptors → jobs → the API → the CLI; siblings apart."""
    graph, lines = _graph()
    offenders = []
    for module, imported in graph.items():
        rank, group = _layer(module)
        for name in imported:
            its_rank, its_group = _layer(name)
            if its_group != group and its_rank >= rank:
                offenders.append(f"{module} (line {lines[module, name]}) imports {name}")
    assert not offenders, "imports against the layers:\n" + "\n".join(sorted(offenders))


def test_the_layer_rule_catches_an_upward_import():
    assert _layer("multiscale.measure.gram") == (1, "multiscale.measure")
    assert _layer("multiscale.config") == (0, "foundation")
    assert _layer("multiscale.jobs.stylize")[0] > _layer("multiscale.objectives.style")[0]
    assert _layer("multiscale.optim.projected")[0] == _layer("multiscale.objectives.texture")[0]


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


def test_every_subpackage_is_installed():
    """pyproject.toml lists its packages explicitly: a sub-package left out would import in a
    checkout and be missing from the wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(["multiscale", *p.parent.relative_to(PACKAGES["multiscale"]).parts])
        for p in PACKAGES["multiscale"].rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
