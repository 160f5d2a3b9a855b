"""gristmill: batch pipelines from click commands, on a laptop or a cluster.

Write each stage as ``@gm.task`` over a click command, call tasks inside a
``@gm.workflow`` function to record a lazy DAG, then ``wf.run(backend=...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loguru import logger

from gristmill.dsl.nodes import Node, NodeGroup, product
from gristmill.dsl.task import Task, task
from gristmill.dsl.workflow import Workflow, workflow
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
from gristmill.resources import Escalation, Policy, Resources

if TYPE_CHECKING:
    from gristmill import runs
    from gristmill.engine.runner import RunResult
    from gristmill.spec.load import Spec

__version__ = "0.1.0"

#: Public names imported on first use: a task process, which only records or runs one
#: command, never pays for the run-directory, spec (YAML, cattrs) or engine code.
_LAZY = {
    "runs": ("gristmill.runs", None),
    "Spec": ("gristmill.spec.load", "Spec"),
    "RunResult": ("gristmill.engine.runner", "RunResult"),
}


def __getattr__(name: str) -> Any:
    """``gm.runs``, ``gm.Spec`` and ``gm.RunResult``, imported on first use (see _LAZY)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'gristmill' has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)

logger.disable("gristmill")

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
