"""A package's tasks read from its source with ``ast``: nothing is imported.

The build hook runs inside a build backend, where the package's dependencies
are usually not installed and its modules may not even import. So it reads
``@gm.task`` decorators as syntax: which local names mean gristmill's ``task``
(``gm.task``, ``gristmill.task``, ``from gristmill import task as t`` ...,
also through the package's own modules: ``from .common import task``), which
functions carry one, and their literal ``script=``, ``name=`` and
``program=`` arguments. The script names then come from the same rule as
``gristmill entry-points`` (:mod:`gristmill.dsl.naming`).

What cannot be read as syntax (``script=`` computed at run time, ``task``
applied as a call, a task defined inside a function) is reported as
:class:`Unreadable` with its file and line, never guessed: a wrong guess would
install a script under a name the code does not use.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs

from gristmill.dsl.naming import claim_scripts, default_script_name, script_target

#: What ``task`` resolves to when it is gristmill's decorator, however it was imported.
TASK_DECORATORS = frozenset({"gristmill.task", "gristmill.dsl.task.task"})


@attrs.frozen
class FoundTask:
    """A task that has a console script, as its decorator declares it."""

    module: str
    qualname: str
    script: str
    #: The ``name=`` job-name template, when it is a literal (it never names the script).
    job_name: str | None
    path: Path
    line: int

    @property
    def key(self) -> str:
        """``module:qualname``, as the registry keys the task."""
        return f"{self.module}:{self.qualname}"

    @property
    def target(self) -> str:
        """The console-script target (``module:qualname.main``)."""
        return script_target(self.module, self.qualname)


@attrs.frozen
class Unreadable:
    """A use of ``task`` whose console script cannot be known without running the code."""

    path: Path
    line: int
    reason: str
    #: The script target the task would have, when the task is known but not its script
    #: (a script declared by hand for this target settles the matter).
    target: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@attrs.frozen
class Scan:
    """Everything read from some source: the tasks with scripts, and what could not be read."""

    tasks: tuple[FoundTask, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()

    def __add__(self, other: Scan) -> Scan:
        return Scan(self.tasks + other.tasks, self.unreadable + other.unreadable)

    def table(self) -> dict[str, str]:
        """``{script: target}``, the ``[project.scripts]`` of these tasks (same name, error)."""
        return claim_scripts((t.key, t.script, t.target) for t in self.tasks)


def scan_package(path: Path, name: str | None = None) -> Scan:
    """Every task of the package at ``path`` (a directory, or one ``.py`` module).

    ``name`` is its import name (default: the directory's or file's own name, as
    hatchling's ``packages = ["src/foo"]`` installs ``foo``).
    """
    if name is None:
        name = path.stem if path.is_file() else path.name
    parsed = [(module, file, _parse(file.read_bytes(), file))
              for module, file in package_modules(path, name)]
    # what each module binds by import, so `from .common import task` resolves too
    exports = {module: _imports(tree, module, file.name == "__init__.py")
               for module, file, tree in parsed if isinstance(tree, ast.Module)}
    scan = Scan()
    for module, file, tree in parsed:
        scan += _read(tree, module, file, exports)
    return scan


def scan_importable(package: str) -> Scan:
    """The tasks of an importable package, read from the files it would import.

    ``gristmill check`` uses it to say which tasks a build hook would leave without
    a script. Finding a top-level package's files imports none of its code.
    """
    spec = importlib.util.find_spec(package)
    if spec is None:
        return Scan()
    if spec.submodule_search_locations:
        scan = Scan()
        for location in spec.submodule_search_locations:
            scan += scan_package(Path(location), package)
        return scan
    if spec.origin and spec.origin.endswith(".py"):
        return scan_package(Path(spec.origin), package)
    return Scan()


def package_modules(path: Path, name: str) -> Iterator[tuple[str, Path]]:
    """``(module name, file)`` for each module that ``gristmill entry-points`` would import.

    The same modules as ``pkgutil.walk_packages``, which the registry uses: ``.py``
    files, and subdirectories only when they hold an ``__init__.py``; ``__main__``
    modules are left out (importing one runs the package's program).
    """
    if path.is_file():
        yield name, path
        return
    if (path / "__init__.py").is_file():
        yield name, path / "__init__.py"
    for child in sorted(path.iterdir()):
        if child.is_file() and child.suffix == ".py":
            stem = child.stem
            if stem.isidentifier() and stem not in ("__init__", "__main__"):
                yield f"{name}.{stem}", child
        elif child.is_dir() and child.name.isidentifier() and (child / "__init__.py").is_file():
            yield from package_modules(child, f"{name}.{child.name}")


def scan_source(source: str | bytes, module: str, path: Path) -> Scan:
    """The tasks of one module's source alone (``path`` is only for messages)."""
    tree = _parse(source, path)
    exports = {}
    if isinstance(tree, ast.Module):
        exports[module] = _imports(tree, module, path.name == "__init__.py")
    return _read(tree, module, path, exports)


def _parse(source: str | bytes, path: Path) -> ast.Module | Unreadable:
    try:
        return ast.parse(source, str(path))
    except SyntaxError as exc:
        return Unreadable(path, exc.lineno or 1, f"cannot parse: {exc.msg}")
    except ValueError as exc:  # null bytes
        return Unreadable(path, 1, f"cannot parse: {exc}")


def _read(tree: ast.Module | Unreadable, module: str, path: Path,
          exports: Mapping[str, Mapping[str, str]]) -> Scan:
    if isinstance(tree, Unreadable):
        return Scan(unreadable=(tree,))
    reader = _Reader(module, path, exports)
    reader.visit(tree)
    reader.find_other_uses(tree)
    return Scan(tuple(reader.tasks), tuple(sorted(reader.unreadable, key=lambda u: u.line)))


def _imports(tree: ast.Module, module: str, is_package: bool) -> dict[str, str]:
    """Local name -> the dotted name an import binds it to, from every import in the module
    (``import gristmill as gm``: ``gm`` -> ``gristmill``; ``from .common import task``:
    ``task`` -> ``pkg.common.task``); ``from M import *`` binds ``*`` -> ``M``."""
    package = module if is_package else module.rpartition(".")[0]
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:  # `import gristmill.dsl.task` binds `gristmill`
                    top = alias.name.split(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                base = package.split(".")[: max(len(package.split(".")) - node.level + 1, 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                if alias.name == "*":
                    bound[f"*{source}"] = source
                else:
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
    return bound


def _is_gristmill(name: str | None) -> bool:
    return name is not None and (name == "gristmill" or name.startswith("gristmill."))


class _Reader(ast.NodeVisitor):
    """Walks one module, keeping the class/function nesting that makes a qualname."""

    def __init__(self, module: str, path: Path,
                 exports: Mapping[str, Mapping[str, str]]) -> None:
        self.module = module
        self.path = path
        self.exports = exports
        self.scope: list[tuple[str, bool]] = []  # (name, is a function)
        self.applied: set[int] = set()  # ids of `task` expressions used as decorators
        self.tasks: list[FoundTask] = []
        self.unreadable: list[Unreadable] = []

    def dotted(self, expr: ast.expr) -> str | None:
        """``gm.task`` -> ``gristmill.task``; None for a name no import bound."""
        if isinstance(expr, ast.Name):
            found = self.lookup(self.module, expr.id)
            return None if found is None else self.canonical(found)
        if isinstance(expr, ast.Attribute):
            base = self.dotted(expr.value)
            return None if base is None else self.canonical(f"{base}.{expr.attr}")
        return None

    def lookup(self, module: str, name: str, seen: frozenset[str] = frozenset()) -> str | None:
        """What ``name`` is bound to by an import in ``module`` (star imports included)."""
        bound = self.exports.get(module, {})
        if name in bound:
            return bound[name]
        for key, source in bound.items():
            if not key.startswith("*") or source in seen | {module}:
                continue
            if f"{source}.{name}" in TASK_DECORATORS or (
                source in self.exports and self.lookup(source, name, seen | {module}) is not None
            ):
                return f"{source}.{name}"
        return None

    def canonical(self, dotted: str) -> str:
        """Follow re-exports through the package's own modules: with ``pkg/common.py``
        doing ``from gristmill import task``, ``pkg.common.task`` is ``gristmill.task``."""
        for _ in range(32):  # re-export chains are short; a cycle must not loop forever
            parts = dotted.split(".")
            for cut in range(len(parts) - 1, 0, -1):
                module = ".".join(parts[:cut])
                if module in self.exports:
                    found = self.lookup(module, parts[cut])
                    if found is not None:
                        replaced = ".".join([found, *parts[cut + 1:]])
                        if replaced != dotted:
                            dotted = replaced
                            break
            else:
                return dotted
        return dotted

    def is_task(self, expr: ast.expr) -> bool:
        return self.dotted(expr) in TASK_DECORATORS

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append((node.name, False))
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for index, decorator in enumerate(node.decorator_list):
            call = decorator if isinstance(decorator, ast.Call) else None
            func = call.func if call is not None else decorator
            if self.is_task(func):
                self.applied.add(id(func))
                self._task(node, index, func, call)
        self.scope.append((node.name, True))
        self.generic_visit(node)
        self.scope.pop()

    def _task(self, node: ast.FunctionDef | ast.AsyncFunctionDef, index: int, func: ast.expr,
              call: ast.Call | None) -> None:
        """One ``@task`` decorator: a FoundTask, nothing (a ``program=`` task), or Unreadable."""
        line = node.decorator_list[index].lineno
        spelled = ast.unparse(func)
        functions = [name for name, is_function in self.scope if is_function]
        if functions:
            self._unreadable(line, (
                f"task {node.name} is defined inside the function {functions[-1]}(), where "
                f"no console script can import it; define the task at module level"
            ))
            return
        qualname = ".".join([*(name for name, _ in self.scope), node.name])
        target = script_target(self.module, qualname)
        if index:
            self._unreadable(line, (
                f"@{spelled} is not the topmost decorator of {node.name}, so the name "
                f"{node.name} is bound to what the decorators above it return, not to the "
                f"task; put @{spelled} on top"
            ), target)
            return
        keywords = {} if call is None else {k.arg: k.value for k in call.keywords}
        if None in keywords:
            self._unreadable(line, (
                f"@{spelled}(**{ast.unparse(keywords[None])}) on {node.name}: script= or "
                f"program= may hide in the ** mapping; pass them as literal keyword arguments"
            ), target)
            return
        program = keywords.get("program")
        if program is not None and not _is_none(program):
            return  # runs an external program, not a console script
        script = keywords.get("script")
        if script is None or _is_none(script) or _literal(script) == "":
            name = default_script_name(self.module, node.name)
        elif isinstance(_literal(script), str):
            name = str(_literal(script))
        else:
            self._unreadable(line, (
                f"script={ast.unparse(script)} on task {node.name} is not a literal string; "
                f"write the name itself (script=\"my-name\")"
            ), target)
            return
        job_name = keywords.get("name")
        literal_name = None if job_name is None else _literal(job_name)
        self.tasks.append(FoundTask(
            module=self.module, qualname=qualname, script=name,
            job_name=literal_name if isinstance(literal_name, str) else None,
            path=self.path, line=line,
        ))

    def find_other_uses(self, tree: ast.Module) -> None:
        """``task`` met anywhere but as a decorator: applied by a call, or passed around."""
        parents = {id(child): node for node in ast.walk(tree)
                   for child in ast.iter_child_nodes(node)}
        called: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and self.is_task(node.func) \
                    and id(node.func) not in self.applied:
                called.add(id(node.func))
                spelled = ast.unparse(node.func)
                self._unreadable(node.lineno, (
                    f"{spelled}(...) is called, not applied as a decorator, so which function "
                    f"it makes a task is only known at run time; write @{spelled}(...) "
                    f"directly above the def"
                ), self._bound_target(node, parents))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load) \
                    and self.is_task(node) and id(node) not in self.applied | called:
                spelled = ast.unparse(node)
                self._unreadable(node.lineno, (
                    f"{spelled} is used as a value, not applied as a decorator, so which "
                    f"function it makes a task is only known at run time; write @{spelled} "
                    f"directly above the def"
                ))

    def _bound_target(self, call: ast.Call, parents: dict[int, ast.AST]) -> str | None:
        """The target of ``f = task(...)(f)`` (or ``f = task(f)``) at module level, else None.

        Only there is the task bound to its own function's name, which is what its
        console script imports.
        """
        applied = parents.get(id(call))
        if isinstance(applied, ast.Call) and applied.func is call:
            call = applied
        statement = parents.get(id(call))
        if not (isinstance(statement, ast.Assign) and parents.get(id(statement)) is not None
                and isinstance(parents[id(statement)], ast.Module)):
            return None
        names = [a.id for a in call.args if isinstance(a, ast.Name)]
        targets = [t.id for t in statement.targets if isinstance(t, ast.Name)]
        if len(names) == 1 and targets == names:
            return script_target(self.module, names[0])
        return None

    def _unreadable(self, line: int, reason: str, target: str | None = None) -> None:
        self.unreadable.append(Unreadable(self.path, line, reason, target))


def _is_none(expr: ast.expr) -> bool:
    return isinstance(expr, ast.Constant) and expr.value is None


def _literal(expr: ast.expr) -> object:
    """A constant's value (implicitly concatenated strings included), else a sentinel."""
    return expr.value if isinstance(expr, ast.Constant) else _NOT_LITERAL


_NOT_LITERAL = object()
