"""``TaskTemplate`` and ``WorkflowTemplate``: covid_shared's jobmon templates, run by gristmill.

A ``TaskTemplate`` subclass becomes one gristmill task (its nodes run the filled
``command_template``); ``get_task`` makes one node of it, checked at once. A
``WorkflowTemplate`` collects those nodes in ``self.workflow`` (``attach_tasks``), records
them as a gristmill :class:`~gristmill.dsl.workflow.Workflow` and runs it with
:func:`gristmill.engine.runner.run_workflow` on any backend.
"""

from __future__ import annotations

import abc
import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from loguru import logger

from gristmill import runs
from gristmill.compat.covid_shared.cli_tools.completion import complete_application
from gristmill.compat.covid_shared.errors import WorkflowInterruptedError, WorkflowRunError
from gristmill.compat.covid_shared.workflow.command import (
    CommandTemplate,
    check_declared,
    fill,
    gristmill_task,
    placeholders,
)
from gristmill.compat.covid_shared.workflow.dag import TaskDag, TemplateTask
from gristmill.compat.covid_shared.workflow.specification import (
    TaskSpecification,
    WorkflowSpecification,
)
from gristmill.compat.covid_shared.workflow.utilities import Tool
from gristmill.dsl.workflow import Workflow, rebuilds_workflow
from gristmill.engine.runner import RunResult, run_workflow
from gristmill.errors import GraphError, RunDirError, SpecError, TaskArgumentError
from gristmill.resources import Resources
from gristmill.store.db import STORE_NAME


class TaskTemplate:
    """Factory of one kind of task: a command template over declared arguments.

    Subclasses set ``task_args`` (the same for every task of the kind), ``node_args``
    (what tasks are parallelised by), ``task_name_template`` and ``command_template``.
    Every placeholder must be a declared argument and every argument must appear in the
    command; this is checked when the template is built, so a mismatch fails when the
    workflow is built, not on the cluster.
    """

    tool: ClassVar[Tool | None] = None
    task_name_template: ClassVar[str]
    command_template: ClassVar[str]
    task_args: ClassVar[Sequence[str]] = ()
    node_args: ClassVar[Sequence[str]] = ()

    def __init__(self, name: str, task_specification: TaskSpecification | None = None) -> None:
        cls = type(self)
        where = cls.__qualname__
        for attr in ("task_name_template", "command_template"):
            if not isinstance(getattr(cls, attr, None), str):
                raise TypeError(f"{where} must set {attr} to a string in its class body")
        self.declared = self._declared(where)
        command = CommandTemplate.parse(cls.command_template, f"{where}.command_template")
        check_declared(
            where,
            self.declared,
            {
                "task_name_template": placeholders(
                    cls.task_name_template, f"{where}.task_name_template"
                ),
                "command_template": list(command.fields),
            },
        )
        if task_specification is not None and not isinstance(task_specification, TaskSpecification):
            raise TypeError(f"{where}: task_specification must be a TaskSpecification, "
                            f"got {task_specification!r}")
        self.name = name
        self.task_specification = task_specification
        self.params: dict[str, Any] = task_specification.to_dict() if task_specification else {}
        self.task = gristmill_task(
            name=name,
            module=cls.__module__,
            qualname=f"{cls.__qualname__}[{name}]",
            args=self.declared,
            command=command,
            name_template=cls.task_name_template,
            resources=task_specification.resources if task_specification else Resources(),
        )

    @classmethod
    def _declared(cls, where: str) -> list[str]:
        declared: list[str] = []
        for attr in ("task_args", "node_args"):
            names = getattr(cls, attr)
            if isinstance(names, str) or not isinstance(names, Sequence):
                raise TypeError(f"{where}.{attr} must be a list of argument names, got {names!r}")
            for arg in names:
                if not isinstance(arg, str) or not arg.isidentifier():
                    raise TaskArgumentError(
                        f"{where}.{attr}: {arg!r} is not a valid argument name (use a Python "
                        "identifier such as 'output_version')"
                    )
                if arg in declared:
                    raise TaskArgumentError(
                        f"{where}: argument {arg!r} is declared twice in task_args + node_args"
                    )
                declared.append(arg)
        return declared

    def get_task(self, *args: Any, **kwargs: Any) -> TemplateTask:
        """One task with these argument values; exactly the declared args, by keyword."""
        where = type(self).__qualname__
        shown = ", ".join(self.declared) or "(none)"
        if args:
            raise TaskArgumentError(
                f"{where}.get_task takes keyword arguments only, got {len(args)} positional; "
                f"call it as get_task({', '.join(f'{a}=...' for a in self.declared)})"
            )
        missing = [a for a in self.declared if a not in kwargs]
        extra = [k for k in kwargs if k not in self.declared]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected {', '.join(extra)}")
            raise TaskArgumentError(
                f"{where}.get_task: {'; '.join(parts)}; its declared args (task_args + "
                f"node_args) are: {shown}"
            )
        # str.format wrote None as "None" into the command; keep that rather than drop the arg.
        values = {k: ("None" if v is None else v) for k, v in kwargs.items()}
        argv = self.task.signature.render(values)
        name = fill(type(self).task_name_template, values, f"{where}.task_name_template")
        return TemplateTask(self.task, values, argv, name)


class WorkflowTemplate(abc.ABC):
    """Builds one workflow from a specification (``attach_tasks``) and runs it with gristmill.

    ``run`` puts the run under ``<version>/gristmill/`` (a numbered gristmill run
    directory) unless given ``run_dir``; running the same workflow again resumes that
    run, so tasks that finished are skipped.
    """

    tool: ClassVar[Tool | None] = None
    workflow_name_template: ClassVar[str]
    task_template_classes: ClassVar[Mapping[str, type[TaskTemplate]]]
    fail_fast: ClassVar[bool] = True
    run_subdirectory: ClassVar[str] = "gristmill"

    def __init__(
        self, version: str | os.PathLike[str], workflow_specification: WorkflowSpecification
    ) -> None:
        cls = type(self)
        where = cls.__qualname__
        template = getattr(cls, "workflow_name_template", None)
        if not isinstance(template, str):
            raise TypeError(
                f"{where} must set workflow_name_template (e.g. 'my-workflow-{{version}}')"
            )
        for field in placeholders(template, f"{where}.workflow_name_template"):
            if field != "version":
                raise TaskArgumentError(
                    f"{where}.workflow_name_template {template!r} uses {{{field}}}; the only "
                    "placeholder it can use is {version}"
                )
        classes = getattr(cls, "task_template_classes", None)
        if not isinstance(classes, Mapping):
            raise TypeError(
                f"{where} must set task_template_classes = {{name: TaskTemplate subclass}}"
            )
        for name, value in classes.items():
            if not (isinstance(value, type) and issubclass(value, TaskTemplate)):
                raise TypeError(
                    f"{where}.task_template_classes[{name!r}] is {value!r}, not a TaskTemplate "
                    "subclass"
                )
        if not isinstance(workflow_specification, WorkflowSpecification):
            raise TypeError(
                f"{where}: workflow_specification must be a WorkflowSpecification, got "
                f"{workflow_specification!r}"
            )
        spec_names, template_names = set(workflow_specification.tasks), set(classes)
        if spec_names != template_names:
            raise SpecError(
                f"{where}: the task names of {workflow_specification.name} "
                f"({', '.join(sorted(spec_names))}) and of task_template_classes "
                f"({', '.join(sorted(template_names))}) must be the same; only in the "
                f"specification: {', '.join(sorted(spec_names - template_names)) or '-'}; only in "
                f"the templates: {', '.join(sorted(template_names - spec_names)) or '-'}"
            )
        self.version = str(version)
        self.workflow_specification = workflow_specification
        self.task_templates = self.build_task_templates(workflow_specification.task_specifications)
        name = fill(template, {"version": self.version}, f"{where}.workflow_name_template")
        self.workflow = TaskDag(name)
        self.result: RunResult | None = None

    def build_task_templates(
        self, task_specifications: Mapping[str, TaskSpecification]
    ) -> dict[str, TaskTemplate]:
        """One template per task name, each with its task's specification."""
        return {
            name: self.task_template_classes[name](name, spec)
            for name, spec in task_specifications.items()
        }

    @abc.abstractmethod
    def attach_tasks(self, *args: Any, **kwargs: Any) -> None:
        """Make tasks with ``self.task_templates[name].get_task(...)``, link them, add them."""

    def to_gristmill(self) -> Workflow:
        """The recorded gristmill workflow of the tasks added so far (nothing runs)."""
        cls = type(self)
        spec = self.workflow_specification
        args = {
            "version": self.version,
            "specification": {
                "class": f"{type(spec).__module__}:{type(spec).__qualname__}",
                "settings": spec.to_dict(),
            },
            "tasks": self.workflow.describe(),
        }
        return self.workflow.record(
            function=f"{cls.__module__}:{cls.__qualname__}.from_recorded",
            args=args,
            fail_fast=self.fail_fast,
        )

    @classmethod
    @rebuilds_workflow
    def from_recorded(
        cls, version: str, specification: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]]
    ) -> Workflow:
        """Record a run's workflow again from what its store kept (``gristmill resume RUN_DIR``)."""
        spec_class = _import(str(specification["class"]))
        spec = spec_class.from_dict(specification["settings"])
        self = cls.__new__(cls)
        WorkflowTemplate.__init__(self, version, spec)
        made: list[TemplateTask] = []
        for entry in tasks:
            task = self.task_templates[entry["template"]].get_task(**entry["args"])
            for index in entry["upstream"]:
                task.add_upstream(made[index])
            made.append(self.workflow.add_task(task))
        wf = self.to_gristmill()
        # A resume that completes a run a failed application was waiting for finishes it.
        wf.on_finish.append(complete_application)
        return wf

    def run(
        self,
        backend: str | None = None,
        *,
        run_dir: str | os.PathLike[str] | None = None,
        spec: Any = None,
        resume: bool = True,
        **backend_options: Any,
    ) -> RunResult:
        """Run the workflow to the end; raise :class:`WorkflowRunError` unless every task succeeded.

        The backend is ``backend``, else the specification's ``backend``, else a
        gristmill ``spec`` file's, else ``local``.
        """
        if not len(self.workflow):
            raise GraphError(
                f"workflow {self.workflow.name!r} has no tasks; call attach_tasks(...) (which "
                "adds them with self.workflow.add_task) before run()"
            )
        wf = self.to_gristmill()
        settings = self.workflow_specification
        result = run_workflow(
            wf,
            backend=backend or settings.backend,
            run_dir=self._run_target(run_dir, resume),
            spec=spec,
            resume=resume,
            max_concurrent=settings.max_concurrent,
            **backend_options,
        )
        self.result = result
        self._record_tool(result.run_dir)
        if not result.ok:
            status = "cancelled" if result.interrupted else "failed"
            error = WorkflowInterruptedError if result.interrupted else WorkflowRunError
            raise error(
                f"Workflow {wf.name!r} {status} with status {status.upper()}: "
                f"{dict(result.counts)}."
                f"\nRun directory: {result.run_dir} (see: gristmill status {result.run_dir}; "
                f"continue with: gristmill resume {result.run_dir})",
                status,
                result,
            )
        return result

    def _run_target(self, run_dir: str | os.PathLike[str] | None, resume: bool) -> Path:
        """``run_dir`` or ``<version>/gristmill``; its latest run when it is this workflow's."""
        root = Path(run_dir) if run_dir is not None else Path(self.version) / self.run_subdirectory
        if not resume or (root / STORE_NAME).exists():
            return root
        latest = root / runs.LATEST_LINK
        if (latest / STORE_NAME).exists():
            try:
                previous = runs.load_run_metadata(latest).extra.get("workflow")
            except RunDirError as exc:
                logger.warning("not resuming {}: {}", latest, exc)
                return root
            if previous == self.workflow.name:
                logger.info("resuming {} ({})", latest.resolve(), previous)
                return latest.resolve()
        return root

    def _record_tool(self, run_dir: Path) -> None:
        tool = type(self).tool
        if tool is None:
            return
        metadata = runs.load_run_metadata(run_dir)
        metadata.extra["jobmon_tool"] = tool.as_dict()
        if metadata.jobmon_tool_version is None:
            metadata.jobmon_tool_version = tool.jobmon_tool_version
        if metadata.package is None:
            metadata.package, metadata.package_version = tool.name, tool.version
        metadata.dump(run_dir)


def _import(target: str) -> Any:
    module, _, qualname = target.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise RunDirError(
            f"cannot import {target} to rebuild the workflow: {exc}; define the class at module "
            "level in an importable module"
        ) from exc
    return obj
