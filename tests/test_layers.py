"""The import graph of ``src/gristmill``: no cycle, and no edge a layer rule forbids.

Every ``import``/``from … import`` of a gristmill module counts, at any depth (a
function-level import is still an edge: it runs, and it ties the two modules),
except under ``if TYPE_CHECKING:``. The rules are those of docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "gristmill"

#: (importer prefix, imported prefix): a module under the first never imports the second.
FORBIDDEN = [
    *[("gristmill.backends", f"gristmill.{layer}")
      for layer in ("dsl", "engine", "store", "cli", "graph", "spec", "runs")],
    *[("gristmill.worker", f"gristmill.{layer}")
      for layer in ("backends", "engine", "store", "dsl", "graph", "spec", "runs", "cli")],
    ("gristmill.store", "gristmill.engine"),
    ("gristmill.store", "gristmill.backends"),
    ("gristmill.graph", "gristmill.engine"),
    ("gristmill.graph", "gristmill.store"),
    ("gristmill.spec", "gristmill.engine"),
    ("gristmill.runs", "gristmill.engine"),
    ("gristmill.engine", "gristmill.cli"),
    *[("gristmill.report", f"gristmill.{layer}")
      for layer in ("engine", "backends", "cli", "dsl", "graph", "spec", "worker")],
    *[(f"gristmill.{layer}", "gristmill.report")
      for layer in ("engine", "backends", "store", "runs", "worker", "dsl", "graph", "spec")],
    ("gristmill.backends.batch", "gristmill.backends.slurm"),
    ("gristmill.backends.batch", "gristmill.backends.sge"),
    # build runs inside a build backend: it reads source and names scripts, nothing more
    *[("gristmill.build", f"gristmill.{layer}")
      for layer in ("engine", "store", "backends", "cli", "graph", "spec", "runs", "worker",
                    "compat")],
    # and only the CLI reaches it (gristmill check reports what the hook cannot read)
    *[(f"gristmill.{layer}", "gristmill.build")
      for layer in ("dsl", "engine", "store", "backends", "graph", "spec", "runs", "worker",
                    "compat")],
]
#: The leaves: they import no other gristmill module.
LEAVES = ("gristmill.states", "gristmill.errors", "gristmill.merge", "gristmill.logs",
          "gristmill.text", "gristmill.users",
          "gristmill.worker.atomic")
BACKENDS = ("local", "slurm", "sge", "dask", "jobmon")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports_of(path: Path, modules: set[str]) -> Iterator[tuple[str, int, bool]]:
    """(imported gristmill module, line, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_nodes(tree)
    top = {id(n) for n in tree.body}
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import mod` imports pkg.mod; `from mod import name` imports mod
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                       for a in node.names]
        for target in targets:
            if target.startswith("gristmill"):
                while target not in modules and "." in target:
                    target = target.rpartition(".")[0]
                if target in modules:
                    yield target, node.lineno, id(node) in top


def graph() -> dict[str, dict[str, tuple[int, bool]]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(files)
    edges: dict[str, dict[str, tuple[int, bool]]] = {}
    for name, path in files.items():
        out = edges.setdefault(name, {})
        for target, line, top in imports_of(path, modules):
            if target != name:
                out.setdefault(target, (line, top))
    return edges


EDGES = graph()


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _where(src: str, dst: str) -> str:
    line, _ = EDGES[src][dst]
    return f"{src} (line {line}) -> {dst}"


def test_the_graph_sees_the_whole_package() -> None:
    assert {"gristmill.engine.loop", "gristmill.worker.wrapper", "gristmill.dsl.task",
            "gristmill.backends.slurm.backend"} <= set(EDGES)
    assert "gristmill.states" in EDGES["gristmill.engine.loop"]  # a known edge is found


def test_no_import_cycle() -> None:
    """Tarjan's strongly connected components: any with two or more modules is a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in EDGES.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(EDGES):
        if node not in index:
            visit(node)
    detail = [
        "; ".join(_where(a, b) for a in cycle for b in cycle if b in EDGES[a])
        for cycle in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_layer_rule(importer: str, imported: str) -> None:
    bad = [_where(src, dst) for src, targets in EDGES.items() if _under(src, importer)
           for dst in targets if _under(dst, imported)]
    assert not bad, f"{importer} must not import {imported}:\n" + "\n".join(bad)


def test_a_backend_never_imports_another_backend() -> None:
    bad = [
        _where(src, dst)
        for src, targets in EDGES.items() for dst in targets
        for mine in BACKENDS if _under(src, f"gristmill.backends.{mine}")
        for other in BACKENDS
        if other != mine and _under(dst, f"gristmill.backends.{other}")
    ]
    assert not bad, "\n".join(bad)


def test_the_dsl_reaches_the_engine_only_lazily() -> None:
    bad = [_where(src, dst) for src, targets in EDGES.items() if _under(src, "gristmill.dsl")
           for dst, (_, top) in targets.items() if _under(dst, "gristmill.engine") and top]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_no_gristmill_module(leaf: str) -> None:
    assert EDGES[leaf] == {}, f"{leaf} imports {sorted(EDGES[leaf])}"


def test_the_engine_never_imports_a_concrete_backend() -> None:
    bad = [_where(src, dst) for src, targets in EDGES.items() if _under(src, "gristmill.engine")
           for dst in targets for name in (*BACKENDS, "batch")
           if _under(dst, f"gristmill.backends.{name}")]
    assert not bad, "\n".join(bad)


def test_only_the_build_hook_imports_hatchling() -> None:
    """hatchling is a build-time dependency: gristmill must import without it."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "hatchling" or n.startswith("hatchling.") for n in names):
                found.add(module_name(path))
    assert found == {"gristmill.build.hooks"}


def test_the_build_takes_only_the_naming_rules_from_the_dsl() -> None:
    """The hook must name scripts as ``gristmill entry-points`` does, and need nothing else:
    the rest of the DSL is about recording and running tasks."""
    bad = [_where(src, dst) for src, targets in EDGES.items() if _under(src, "gristmill.build")
           for dst in targets if _under(dst, "gristmill.dsl") and dst != "gristmill.dsl.naming"]
    assert not bad, "\n".join(bad)


def test_nothing_imports_the_build_hook() -> None:
    """hatchling loads it through the ``hatch`` entry-point group, and nothing else may."""
    bad = [_where(src, dst) for src, targets in EDGES.items() for dst in targets
           if dst == "gristmill.build.hooks"]
    assert not bad, "\n".join(bad)


def test_a_forbidden_edge_is_caught(tmp_path: Path) -> None:
    """The checker itself: a function-level import counts, a TYPE_CHECKING one does not."""
    path = tmp_path / "gristmill" / "store" / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gristmill.engine import loop\n"
        "def f():\n    from gristmill.backends.base import JobRequest\n"
    )
    modules = {"gristmill.engine.loop", "gristmill.backends.base", "gristmill.store.probe"}
    global SRC
    saved, SRC = SRC, tmp_path
    try:
        found = list(imports_of(path, modules))
    finally:
        SRC = saved
    assert found == [("gristmill.backends.base", 5, False)]
