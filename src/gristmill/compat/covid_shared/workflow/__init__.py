"""``covid_shared.workflow`` on gristmill: specifications, task and workflow templates.

The SEIIR tutorial's classes keep their names and class constants; what they build
is a gristmill workflow, run on any backend by ``WorkflowTemplate.run``.
"""

from __future__ import annotations

from gristmill.compat.covid_shared.errors import WorkflowInterruptedError, WorkflowRunError
from gristmill.compat.covid_shared.workflow import specification, template, utilities
from gristmill.compat.covid_shared.workflow.dag import TaskDag, TemplateTask
from gristmill.compat.covid_shared.workflow.specification import (
    TaskSpecification,
    WorkflowSpecification,
)
from gristmill.compat.covid_shared.workflow.template import TaskTemplate, WorkflowTemplate
from gristmill.compat.covid_shared.workflow.utilities import Tool, get_jobmon_tool

__all__ = [
    "TaskDag",
    "TaskSpecification",
    "TaskTemplate",
    "TemplateTask",
    "Tool",
    "WorkflowInterruptedError",
    "WorkflowRunError",
    "WorkflowSpecification",
    "WorkflowTemplate",
    "get_jobmon_tool",
    "specification",
    "template",
    "utilities",
]
