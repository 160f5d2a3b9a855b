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

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``gm.runs`` on first use: a task process that never makes a run directory does
    not pay for importing it (and its YAML and provenance code) at every start."""
    if name == "runs":
        import importlib

        return importlib.import_module("gristmill.runs.directory")
    raise AttributeError(f"module 'gristmill' has no attribute {name!r}")

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
