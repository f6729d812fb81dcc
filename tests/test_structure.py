"""The package's structure: no import cycle between modules, every module importable on its own, and the
one-way data flow (low-level packages never import training, evaluation or the command line)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "vidtok"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.Import | ast.ImportFrom, package: str, known: set[str]) -> set[str]:
    """Modules of the package that one import statement names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in known}
    if node.level:
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = {target} if target in known else set()
    return found | {f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known}


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _import_time_edges(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports when it is imported (module level, not TYPE_CHECKING)."""
    package = _package_of(name, path)
    edges: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and not _is_type_checking(node):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_imported(node, package, known))

    visit(ast.parse(path.read_text()).body)
    edges.discard(name)
    return edges


def _all_edges(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the package that ``name`` imports anywhere: module level, inside functions, TYPE_CHECKING."""
    package = _package_of(name, path)
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            edges.update(_imported(node, package, known))
    edges.discard(name)
    return edges


def _graph(edges_of=_import_time_edges) -> dict[str, set[str]]:
    modules = _modules()
    return {name: edges_of(name, path, set(modules)) for name, path in modules.items()}


def _is_package_of(a: str, b: str) -> bool:
    return b.startswith(a + ".")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    # A package importing its own submodules (re-exports in __init__) is not a cycle; anything else is.
    graph = {m: {e for e in edges if not _is_package_of(m, e)} for m, edges in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                walk(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    return cycles


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_even_through_imports_inside_functions() -> None:
    """A loop closed by an import inside a function is still two modules that need each other (the weights
    dispatch, models.weights, exists so that models.pretrained needs no models.loading)."""
    cycles = _cycles(_graph(_all_edges))
    assert not cycles, "import cycles (counting imports inside functions): " + "; ".join(" -> ".join(c) for c in cycles)


def test_low_level_packages_do_not_import_upward() -> None:
    upward = (
        "vidtok.training",
        "vidtok.evaluation",
        "vidtok.encoding",
        "vidtok.cli",
        "vidtok.inference",
        "vidtok.hydra_app",
    )
    low = ("vidtok.modules", "vidtok.models", "vidtok.io", "vidtok.metrics", "vidtok.data", "vidtok.losses")
    graph = _graph()
    bad = [
        f"{m} -> {e}"
        for m, edges in graph.items()
        if m.startswith(low)
        for e in edges
        if e.startswith(upward) and not m.startswith("vidtok.models.loading")
    ]
    assert not bad, "low-level modules import upward: " + ", ".join(sorted(bad))


def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, in a fresh interpreter state (a cycle that depends on import order fails)."""
    names = sorted(_modules())
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'vidtok' or m.startswith('vidtok.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr


def test_graph_sees_imports() -> None:
    """The checker itself: it finds the tokenizer's known dependencies, so an empty result means something."""
    graph = _graph()
    assert {"vidtok.models.streams", "vidtok.models.options", "vidtok.config"} <= graph["vidtok.models.tokenizer"]
    assert "vidtok.models.tokenizer" not in graph["vidtok.models.streams"]  # TYPE_CHECKING only
