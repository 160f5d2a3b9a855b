"""The one registry of tasks, keyed by ``module:qualname``.

It is the only module-level mutable state in gristmill: a task registers itself
when its module is imported, so ``gristmill entry-points PKG`` and the
``gristmill.dsl.exec`` fallback can find every task of a package by importing it.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import TYPE_CHECKING, NoReturn

from gristmill.errors import GristmillError

if TYPE_CHECKING:
    from gristmill.dsl.task import Task


class Registry:
    """Tasks by key; a key registered twice keeps the newest (module reloads)."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}

    def register(self, task: Task) -> None:
        self._tasks[task.key] = task

    def get(self, key: str) -> Task:
        """The task registered as ``module:qualname``, importing its module if needed."""
        task = self._tasks.get(key)
        if task is None:
            module, _, qualname = key.partition(":")
            if not module or not qualname:
                raise GristmillError(f"{key!r} is not a task key; use 'package.module:function'")
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise GristmillError(f"cannot import {module!r} for task {key!r}: {exc}") from exc
            task = self._tasks.get(key)
        if task is None:
            raise GristmillError(
                f"{key!r} is not a registered task; decorate the function with @gm.task"
            )
        return task

    def tasks_in(self, package: str) -> list[Task]:
        """Every task defined in ``package`` or its submodules, importing them all first."""
        import_package(package)
        prefix = package + "."
        return sorted(
            (t for t in self._tasks.values() if t.module == package or t.module.startswith(prefix)),
            key=lambda t: t.key,
        )

    def __contains__(self, key: object) -> bool:
        return key in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


def import_package(package: str) -> None:
    """Import a package and all its submodules, so that their tasks register.

    ``__main__`` modules are left out: importing one runs the package's program.
    """
    try:
        root = importlib.import_module(package)
    except ImportError as exc:
        raise GristmillError(
            f"cannot import package {package!r}: {exc}; is it installed (pip install -e .)?"
        ) from exc
    paths = getattr(root, "__path__", None)
    if paths is None:
        return
    import pkgutil  # only to scan a package: a task process never does

    for info in pkgutil.walk_packages(paths, prefix=package + ".", onerror=_cannot_import):
        if info.name.rpartition(".")[2] == "__main__":
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            _cannot_import(info.name, exc)


def _cannot_import(name: str, exc: BaseException | None = None) -> NoReturn:
    """Every module of a package must import, or its tasks would silently go missing."""
    if exc is None:
        exc = sys.exc_info()[1]
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    raise GristmillError(
        f"cannot import {name!r} while looking for tasks: {detail}; fix the module, or "
        "move code that must not be imported out of the package"
    ) from exc


_REGISTRY = Registry()


def registry() -> Registry:
    """The process-wide task registry."""
    return _REGISTRY
