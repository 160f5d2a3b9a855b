"""An old-style (covid_shared) pipeline for the compatibility tests.

Each task runs ``python -c`` to append its label to a file, then exits with the
code it was given, so a test can see what ran, how often, and make tasks fail.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable
from pathlib import Path

from gristmill.compat.covid_shared import workflow

__version__ = "1.2.3"
__jobmon_tool_version__ = 7

PY = shlex.quote(sys.executable)
#: argv: OUT LABEL CODE -> append LABEL to OUT, exit CODE (no braces: templates are format strings)
RECORD = shlex.quote(
    "import sys; out, label, code = sys.argv[1:4]; "
    "open(out, 'a').write(label + chr(10)); sys.exit(int(code))"
)


class FitSpecification(workflow.TaskSpecification):
    default_max_runtime_seconds = 1000
    default_m_mem_free = "1G"
    default_num_cores = 1


class CheckSpecification(workflow.TaskSpecification):
    default_max_runtime_seconds = 600
    default_m_mem_free = "2G"
    default_num_cores = 2


class FlowSpecification(workflow.WorkflowSpecification):
    tasks = {"fit": FitSpecification, "check": CheckSpecification}


class FitTemplate(workflow.TaskTemplate):
    task_args = ["out"]
    node_args = ["draw", "code"]
    task_name_template = "fit_{draw}"
    # 'fit {draw}' is one word with a space: it must reach the program as one argument.
    command_template = f"{PY} -c {RECORD} {{out}} 'fit {{draw}}' {{code}}"


class CheckTemplate(workflow.TaskTemplate):
    task_args = ["out"]
    task_name_template = "check"
    command_template = f"{PY} -c {RECORD} {{out}} check 0"


class Flow(workflow.WorkflowTemplate):
    tool = workflow.get_jobmon_tool(sys.modules[__name__])
    workflow_name_template = "flow-{version}"
    task_template_classes = {"fit": FitTemplate, "check": CheckTemplate}
    fail_fast = False

    def attach_tasks(self, out: str, n_draws: int, failing: Iterable[int] = ()) -> None:
        bad = set(failing)
        check = self.task_templates["check"].get_task(out=out)
        self.workflow.add_task(check)
        for draw in range(n_draws):
            fit = self.task_templates["fit"].get_task(
                out=out, draw=draw, code=3 if draw in bad else 0
            )
            fit.add_downstream(check)
            self.workflow.add_task(fit)


class FailFastFlow(Flow):
    fail_fast = True


def build(version: Path, out: Path, n_draws: int = 3, failing: Iterable[int] = (),
          spec: workflow.WorkflowSpecification | None = None, cls: type[Flow] = Flow) -> Flow:
    """A flow with its tasks attached."""
    flow = cls(str(version), spec or FlowSpecification())
    flow.attach_tasks(out=str(out), n_draws=n_draws, failing=failing)
    return flow


def lines(path: Path) -> list[str]:
    """What the tasks appended to ``path``, in order."""
    return path.read_text().splitlines() if path.exists() else []
