"""What ``get_task`` returns and what ``self.workflow`` collects, recorded as a gristmill workflow.

A :class:`TemplateTask` is one node: a template's gristmill task plus its argument
values. ``add_upstream``/``add_downstream`` link tasks both ways, as jobmon did;
:class:`TaskDag` (``self.workflow`` of a ``WorkflowTemplate``) keeps the tasks added
to it and records them, upstream first, into a :class:`gristmill.dsl.workflow.Workflow`
whose ``after=`` edges are those links.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from loguru import logger

from gristmill.dsl.nodes import Node
from gristmill.dsl.params import canonical
from gristmill.dsl.recording import Recorder
from gristmill.dsl.task import Task
from gristmill.dsl.workflow import Workflow
from gristmill.errors import GraphError
from gristmill.resources import Resources


class TemplateTask:
    """One task made by ``TaskTemplate.get_task``: its command, job name and dependencies."""

    __slots__ = ("_key", "args", "argv", "downstream_tasks", "name", "task", "upstream_tasks")

    def __init__(self, task: Task, args: Mapping[str, Any], argv: list[str], name: str) -> None:
        self.task = task
        self.args: dict[str, Any] = dict(args)
        self.argv = argv
        self.name = name
        self.upstream_tasks: set[TemplateTask] = set()
        self.downstream_tasks: set[TemplateTask] = set()
        self._key = (task.key, tuple(sorted((k, canonical(v)) for k, v in self.args.items())))

    @property
    def template_name(self) -> str:
        """The task name the template was registered under (its spec and log directory name)."""
        return self.task.name

    @property
    def command(self) -> str:
        """The command as one line (``shlex.join`` of :attr:`argv`; it never passes a shell)."""
        return shlex.join(self.argv)

    @property
    def resources(self) -> Resources:
        return self.task.resources

    def add_upstream(self, other: TemplateTask) -> None:
        """Make this task wait for ``other``."""
        _check_task(other, "add_upstream")
        self.upstream_tasks.add(other)
        other.downstream_tasks.add(self)

    def add_downstream(self, other: TemplateTask) -> None:
        """Make ``other`` wait for this task."""
        _check_task(other, "add_downstream")
        other.add_upstream(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemplateTask) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"<TemplateTask {self.name} {self.command!r}>"


def _check_task(other: object, method: str) -> None:
    if not isinstance(other, TemplateTask):
        raise TypeError(f"{method}() takes a task made by TaskTemplate.get_task, got {other!r}")


class TaskDag:
    """The tasks of one workflow, in the order they were added (``self.workflow``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks: dict[TemplateTask, TemplateTask] = {}

    def add_task(self, task: TemplateTask) -> TemplateTask:
        """Add a task; adding an equal task again merges their dependencies."""
        _check_task(task, "add_task")
        existing = self.tasks.get(task)
        if existing is None:
            self.tasks[task] = task
            return task
        if existing is not task:
            logger.debug("task {} was added twice; merging its dependencies", task.name)
            for up in task.upstream_tasks:
                existing.add_upstream(up)
            for down in task.downstream_tasks:
                existing.add_downstream(down)
        return existing

    def add_tasks(self, tasks: Iterable[TemplateTask]) -> None:
        for task in tasks:
            self.add_task(task)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[TemplateTask]:
        return iter(self.tasks)

    def ordered(self) -> list[TemplateTask]:
        """Upstream before downstream, otherwise in the order added (the same in every process).

        A missing upstream or a cycle is an error.
        """
        index = {task: i for i, task in enumerate(self.tasks)}

        def upstream(task: TemplateTask) -> Iterator[TemplateTask]:
            ups = (self._canonical(up, task) for up in task.upstream_tasks)
            return iter(sorted(ups, key=index.__getitem__))

        order: list[TemplateTask] = []
        state: dict[TemplateTask, bool] = {}  # False while on the stack, True once emitted
        for root in self.tasks:
            if root in state:
                continue
            state[root] = False
            stack = [(root, upstream(root))]
            while stack:
                task, ups = stack[-1]
                for up in ups:
                    seen = state.get(up)
                    if seen is None:
                        state[up] = False
                        stack.append((up, upstream(up)))
                        break
                    if seen is False:
                        path = [t for t, _ in stack]
                        cycle = [*path[path.index(up):], up]
                        raise GraphError(
                            f"workflow {self.name!r}: its tasks depend on each other in a cycle: "
                            f"{' -> '.join(t.name for t in reversed(cycle))}; remove one of "
                            "these add_upstream/add_downstream links"
                        )
                else:
                    stack.pop()
                    state[task] = True
                    order.append(task)
        return order

    def _canonical(self, up: TemplateTask, task: TemplateTask) -> TemplateTask:
        found = self.tasks.get(up)
        if found is None:
            raise GraphError(
                f"workflow {self.name!r}: task {task.name} depends on {up.name}, which was "
                f"never added to the workflow; call self.workflow.add_task(...) for it too"
            )
        return found

    def record(self, *, function: str, args: dict[str, Any], fail_fast: bool) -> Workflow:
        """The gristmill workflow of these tasks (nothing runs)."""
        wf = Workflow(name=self.name, function=function, args=args, fail_fast=fail_fast)
        recorder = Recorder(wf)
        order = self.ordered()
        position = {task: i for i, task in enumerate(order)}
        nodes: list[Node] = []
        for task in order:
            ups = sorted(position[self.tasks[up]] for up in task.upstream_tasks)
            after = [nodes[i] for i in ups]
            nodes.append(recorder.add_node(task.task, dict(task.args), after or None, None))
        return wf

    def describe(self) -> list[dict[str, Any]]:
        """Plain data for every task (template name, args, upstream positions), recording order."""
        order = self.ordered()
        position = {task: i for i, task in enumerate(order)}
        return [
            {
                "template": task.template_name,
                "args": task.args,
                "upstream": sorted(position[self.tasks[up]] for up in task.upstream_tasks),
            }
            for task in order
        ]
