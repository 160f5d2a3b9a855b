"""gristmill: batch pipelines from click commands, on a laptop or a cluster.

Write each stage as ``@gm.task`` over a click command, call tasks inside a
``@gm.workflow`` function to record a lazy DAG, then ``wf.run(backend=...)``.
"""

from __future__ import annotations

from loguru import logger

from gristmill import runs
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
from gristmill.task import Task, task
from gristmill.workflow import Node, NodeGroup, Workflow, product, workflow

__version__ = "0.1.0"

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
