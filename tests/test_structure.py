"""The package's structure, as docs/architecture.md draws it: every import of every module (those inside functions
too) follows the layers below, no two modules import each other in a circle, and every module imports on its own.

Data flows one way: file -> ``io`` / ``data`` -> tensor -> ``models`` -> latents -> ``metrics`` / writers, with the
jobs on top. A module may import from its own layer and the layers below it, never from one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO, import_each_module

PACKAGE = REPO / "vidtok"

#: The layers, lowest first: the top-level module or package of ``vidtok`` each part of the package belongs to.
LAYERS: list[set[str]] = [
    {"errors", "version", "defaults"},
    {"config_loader", "config", "composition", "distributed", "accelerator", "synthetic"},
    {"io", "modules"},
    {"hub"},
    {"models"},
    {"data", "metrics", "losses", "diffusers_export"},
    {"inference", "hydra_app", "demo", "assets"},
    {"evaluation", "encoding", "decoding", "training"},
    {"cli", "train", "evaluate", "encode", "decode", "vidtok"},  # "vidtok": the package's own __init__
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (functions, methods, branches), except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            elif _is_type_checking(child):
                pending.extend(child.orelse)  # the else branch runs
            else:
                pending.append(child)
    return found


def _edges(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its code (resolved to the deepest known module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()

    def deepest(dotted: str) -> str:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted

    for node in _imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            edges.update(deepest(alias.name) for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            edges.add(deepest(f"{target}.{alias.name}"))
    edges.discard("")
    edges.discard(name)
    return edges


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, set(modules)) for name, path in modules.items()}


def _part(module: str) -> str:
    """The top-level module or package of ``vidtok`` a module belongs to (``vidtok`` for the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "vidtok"


def _layer(module: str) -> int:
    part = _part(module)
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {_part(m) for m in _modules()}
    placed = set().union(*LAYERS)
    assert parts <= placed, f"parts of vidtok in no layer (add them to LAYERS and the docs): {parts - placed}"
    assert not placed - parts, f"LAYERS names parts that do not exist: {placed - parts}"


def test_the_architecture_page_lists_these_layers() -> None:
    """docs/architecture.md draws the same layers, in the same order, as this test enforces."""
    import re

    page = (REPO / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^\d+\. (.+)$", page.split("## Data flow", 1)[1].split("\n\n##", 1)[0], flags=re.M)
    drawn = [set(re.findall(r"`(\w+)`", line)) for line in listed]
    drawn[-1] = (drawn[-1] - {"__init__"}) | {"vidtok"}  # the page names the package's own module by its file
    assert drawn == LAYERS, f"docs/architecture.md lists {drawn}"


def test_no_module_imports_a_higher_layer() -> None:
    bad = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    )
    assert not bad, "imports against the layering (function-level ones included):\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    # A package importing its own submodules (re-exports in __init__) is not a cycle; anything else is, wherever in a
    # module the import stands (a function-level import that closes a circle is still a circle).
    graph = {m: {e for e in edges if not e.startswith(m + ".")} for m, edges in _graph().items()}
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
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_module_imports_on_its_own() -> None:
    """Each module imported first, in a fresh interpreter state (a cycle that depends on import order fails)."""
    run = import_each_module(sorted(_modules()))
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checker itself: module-level, function-level, relative, absolute and ``import a.b`` imports are all seen,
    ``if TYPE_CHECKING:`` ones are not, and a planted upward import and a planted circle are both caught."""
    graph = _graph()
    assert {"vidtok.models.streams", "vidtok.models.options", "vidtok.config"} <= graph["vidtok.models.tokenizer"]
    assert "vidtok.models.tokenizer" not in graph["vidtok.models.streams"]  # TYPE_CHECKING only
    assert "vidtok.inference.pipeline" in graph["vidtok.cli"]  # imported inside the command functions only

    known = {"vidtok.models.a", "vidtok.models.b", "vidtok.training.c"}
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..training import c\n"
        "def f():\n    from . import b\n"
        "class K:\n    def g(self):\n        import vidtok.training.c\n"
    )
    assert _edges("vidtok.models.a", source, known) == {"vidtok.models.b", "vidtok.training.c"}
    assert _layer("vidtok.training.c") > _layer("vidtok.models.a")  # what test_no_module_imports_a_higher_layer flags
