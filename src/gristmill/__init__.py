"""gristmill: batch pipelines from click commands, on a laptop or a cluster.

Write each stage as ``@gm.task`` over a click command, call tasks inside a
``@gm.workflow`` function to record a lazy DAG, then ``wf.run(backend=...)``.

Every public name but the errors is imported on first use (module ``__getattr__``):
``python -m gristmill.worker``, which runs in every attempt of a job, imports this
package first and must not pay for click, loguru or attrs; a task process pays for what
``gm.task`` needs when it first uses it.
"""

from __future__ import annotations

import sys

from gristmill.errors import (
    BackendError,
    GraphError,
    GristmillError,
    NotInWorkflowError,
    RunDirError,
    SpecError,
    StoreError,
    TaskArgumentError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy reads the name)
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

    from gristmill import runs
    from gristmill.dsl.nodes import Node, NodeGroup, product
    from gristmill.dsl.task import Task, task
    from gristmill.dsl.workflow import Workflow, workflow
    from gristmill.engine.runner import RunResult
    from gristmill.resources import Escalation, Policy, Resources
    from gristmill.spec.load import Spec

__version__ = "0.1.0"

#: Public name -> (module, attribute; ``None`` for the module itself), imported on first use.
_LAZY = {
    "Node": ("gristmill.dsl.nodes", "Node"),
    "NodeGroup": ("gristmill.dsl.nodes", "NodeGroup"),
    "product": ("gristmill.dsl.nodes", "product"),
    "Task": ("gristmill.dsl.task", "Task"),
    "task": ("gristmill.dsl.task", "task"),
    "Workflow": ("gristmill.dsl.workflow", "Workflow"),
    "workflow": ("gristmill.dsl.workflow", "workflow"),
    "Escalation": ("gristmill.resources", "Escalation"),
    "Policy": ("gristmill.resources", "Policy"),
    "Resources": ("gristmill.resources", "Resources"),
    "runs": ("gristmill.runs", None),
    "Spec": ("gristmill.spec.load", "Spec"),
    "RunResult": ("gristmill.engine.runner", "RunResult"),
}


def __getattr__(name: str) -> Any:
    """A public name of :data:`_LAZY`, imported on first use and kept; or a subpackage
    (``gristmill.dsl``), as an eager ``__init__`` would have made it an attribute."""
    import importlib

    if name in _LAZY:
        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module 'gristmill' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _LoguruWatch:
    """Turns gristmill's log records off the moment loguru is imported.

    A library that logs with loguru disables its records (``logger.disable``) so that a
    program using it sees them only when it asks (``logger.enable("gristmill")``, as the
    CLI does). Importing loguru here would cost every ``python -m gristmill.worker`` about
    30 ms; this finder finds nothing itself, and when loguru is first imported, after
    this package, it wraps the loader so the records are disabled right after loguru
    loads: before any gristmill module can log, and before the program can enable them.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "loguru":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if find is None else find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _DisableAfterLoad(spec.loader)
                return spec
        return None


class _DisableAfterLoad:
    """loguru's own loader, then ``logger.disable("gristmill")`` (see :class:`_LoguruWatch`)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        created: ModuleType | None = self.loader.create_module(spec)
        return created

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # type: ignore[union-attr]
        self.loader.exec_module(module)
        module.logger.disable("gristmill")


if "loguru" in sys.modules:
    sys.modules["loguru"].logger.disable("gristmill")
else:
    sys.meta_path.insert(0, _LoguruWatch())

__all__ = [
    "BackendError",
    "Escalation",
    "GraphError",
    "GristmillError",
    "Node",
    "NodeGroup",
    "NotInWorkflowError",
    "Policy",
    "Resources",
    "RunDirError",
    "RunResult",
    "Spec",
    "SpecError",
    "StoreError",
    "Task",
    "TaskArgumentError",
    "Workflow",
    "__version__",
    "product",
    "runs",
    "task",
    "workflow",
]
