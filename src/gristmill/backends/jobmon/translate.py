"""Pure translation between gristmill job requests and a jobmon workflow description.

Nothing here imports jobmon: the backend (:mod:`gristmill.backends.jobmon.backend`) writes a
:class:`WorkflowPlan` to the run directory as JSON and a driver process turns it
into jobmon objects, one for one:

- one jobmon *TaskTemplate* per gristmill task. Its ``command_template`` is derived
  from the argv of the task's nodes: a word that varies between nodes is a
  ``node_arg``, an option value that is the same for every node is a ``task_arg``
  (the rule of the design: constant means task arg, varying means node arg), option
  names and flags stay literal, and the program path and the worker wrapper (which
  names the attempt's result and log files) are ``op_args``, so neither a new
  attempt nor a reinstalled script changes a jobmon task's identity and a resumed
  jobmon workflow finds its tasks again;
- one jobmon *Task* per node, named ``<job name>.<node>.<attempt>``; the name is not
  part of jobmon's identity, jobmon rewrites it when a resume resets the task, and
  it lets a poll tell the current attempt's state from an earlier attempt's;
- ``upstream_tasks`` from ``JobRequest.after``, ``max_attempts`` as given,
  ``compute_resources`` from :class:`~gristmill.resources.Resources`.
"""

from __future__ import annotations

import graphlib
import json
import math
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import attrs

from gristmill.backends.base import JobRequest
from gristmill.backends.isolated import isolated_argv
from gristmill.errors import BackendError, SpecError
from gristmill.resources import Resources
from gristmill.states import JobState

#: Clusters jobmon ships with; each has one queue, ``null.q``.
LOCAL_CLUSTERS = ("sequential", "multiprocess", "dummy")
LOCAL_QUEUE = "null.q"
PLAN_VERSION = 1

#: jobmon task status letters (``jobmon.core.constants.TaskStatus``) and the labels its
#: CLI routes map them to. E (a recoverable error) and A (adjusting resources) wait
#: for jobmon's own retry.
STATES: dict[str, JobState] = {
    "G": JobState.QUEUED, "Q": JobState.QUEUED, "I": JobState.QUEUED, "O": JobState.QUEUED,
    "A": JobState.QUEUED, "E": JobState.QUEUED, "R": JobState.RUNNING,
    "D": JobState.SUCCEEDED, "F": JobState.FAILED,
    "PENDING": JobState.QUEUED, "SCHEDULED": JobState.QUEUED, "RUNNING": JobState.RUNNING,
    "DONE": JobState.SUCCEEDED, "FATAL": JobState.FAILED,
}

Value = Union[str, int, float]
_ILLEGAL = re.compile(r"[/\\'\" ]")  # jobmon.core.constants.SpecialChars
_IDENT = re.compile(r"[^0-9A-Za-z_]")
#: ``TaskTemplate.create_task`` parameters: a template argument may not take these names.
_RESERVED = frozenset({
    "self", "name", "upstream_tasks", "task_attributes", "max_attempts", "compute_resources",
    "compute_resources_callable", "resource_scales", "cluster_name", "fallback_queues",
})


def node_and_attempt(key: str) -> tuple[str, int]:
    """Split an engine key ``<node>.<attempt>`` into its node (stable) and attempt number."""
    stem, dot, tail = key.rpartition(".")
    if dot and tail.isdigit():
        return stem, int(tail)
    return key, 0


def run_dir_of(job: JobRequest) -> Path:
    """The run directory: result files are ``RUN_DIR/logs/<task>/<job>.<key>.result.json``."""
    return Path(job.result_path).resolve().parents[2]


def workflow_args_for(run_dir: Path) -> str:
    """jobmon's ``workflow_args`` for a run: the same run directory resumes the same workflow."""
    return f"gristmill:{Path(run_dir).resolve()}"


def name_node(node: str) -> str:
    """A node as it appears inside a jobmon task name."""
    return _ILLEGAL.sub("_", node).replace(".", "_")


def task_name(job_name: str, key: str) -> str:
    """A jobmon task name (no ``/\\'"`` or space, no leading digit) ending ``.<node>.<attempt>``."""
    stem, attempt = node_and_attempt(key)
    head = _ILLEGAL.sub("_", job_name)[:150] or "task"
    if head[0].isdigit():
        head = "t" + head
    return f"{head}.{name_node(stem)}.{attempt}"


def parse_task_name(name: str) -> tuple[str, int] | None:
    """``(node, attempt)`` of a name made by :func:`task_name`; ``None`` for others."""
    parts = name.rsplit(".", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def compute_resources(res: Resources, cluster: str, queue: str | None = None,
                      project: str | None = None) -> dict[str, Value]:
    """jobmon ``compute_resources`` for one attempt: memory in MiB text, runtime in seconds.

    ``queue``/``project`` are the backend's defaults; the task's own win. Site flags
    (``Resources.extra``) pass through under their own names.
    """
    out: dict[str, Value] = {}
    chosen = res.queue or queue or (LOCAL_QUEUE if cluster in LOCAL_CLUSTERS else None)
    if chosen is None:
        raise SpecError(
            f"jobmon cluster {cluster!r} needs a queue: set it per task in the spec "
            f"(queue: all.q) or for the run with --option queue=all.q"
        )
    out["queue"] = chosen
    if res.cores is not None:
        out["cores"] = res.cores
    if res.mem is not None:
        out["memory"] = f"{math.ceil(res.mem / 2**20)}M"
    if res.runtime is not None:
        out["runtime"] = res.runtime
    if res.project or project:
        out["project"] = res.project or project or ""
    if res.gpus:
        out["gpus"] = res.gpus
    out.update(dict(res.extra))
    return out


#: The module the detached driver (``drive``) runs.
DRIVER = "gristmill.backends.jobmon.driver"
#: The module each jobmon task runs: one try of an attempt, under the worker wrapper.
ATTEMPT = "gristmill.backends.jobmon.attempt"


def wrapper_argv(job: JobRequest, python: str) -> list[str]:
    """The worker wrapper in front of the task's argv (:mod:`gristmill.backends.jobmon.attempt`).

    Started isolated (:mod:`gristmill.backends.isolated`): a module in the directory jobmon
    runs it in cannot shadow the standard library inside the wrapper. The template puts
    ``--`` (or ``--node NODE --``) between it and the task's argv.
    """
    words = [*isolated_argv(python, ATTEMPT),
             "--result", str(job.result_path), "--key", job.key, "--stdout", str(job.stdout),
             "--stderr", str(job.stderr), "--max-attempts", str(job.max_attempts)]
    if job.resources.mem is not None:
        words += ["--mem", str(job.resources.mem)]
    if job.resources.runtime is not None:
        words += ["--runtime", str(job.resources.runtime)]
    for key, value in job.env:
        words += ["--env", f"{key}={value}"]
    if job.cwd is not None:
        words += ["--cwd", str(job.cwd)]
    return words


@attrs.frozen
class PlannedTask:
    """One node as the driver will hand it to jobmon (JSON-friendly)."""

    node: str
    key: str
    task: str
    name: str
    argv: tuple[str, ...]
    wrapper: tuple[str, ...]
    upstream: tuple[str, ...]  # nodes
    max_attempts: int
    compute_resources: Mapping[str, Value]
    result_path: str


@attrs.frozen
class Template:
    """One jobmon TaskTemplate version, and how each of its tasks fills it in."""

    name: str
    command_template: str
    node_args: tuple[str, ...]
    task_args: tuple[str, ...]
    op_args: tuple[str, ...]
    values: Mapping[str, Mapping[str, str]]  # node -> arg -> shell-quoted value


@attrs.frozen
class WorkflowPlan:
    """Everything the driver needs to (re)build the jobmon workflow of one run."""

    workflow_args: str
    name: str
    tool: str
    cluster: str
    fail_fast: bool
    max_concurrent: int | None
    tasks: tuple[PlannedTask, ...]  # upstreams first

    def by_node(self) -> dict[str, PlannedTask]:
        return {t.node: t for t in self.tasks}

    def to_json(self) -> str:
        data = attrs.asdict(self, recurse=True)
        data["version"] = PLAN_VERSION
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "the plan") -> WorkflowPlan:
        try:
            data = json.loads(text)
            if data.pop("version", None) != PLAN_VERSION:
                raise ValueError(f"not a version {PLAN_VERSION} plan")
            tasks = tuple(
                PlannedTask(**{**t, "argv": tuple(t["argv"]), "wrapper": tuple(t["wrapper"]),
                               "upstream": tuple(t["upstream"])})
                for t in data.pop("tasks")
            )
            return cls(**data, tasks=tasks)
        except (ValueError, TypeError, KeyError) as exc:
            raise BackendError(
                f"jobmon workflow plan {where} is unreadable ({exc}); delete it to start a "
                "new jobmon workflow for this run"
            ) from None


def plan_tasks(jobs: Sequence[JobRequest], *, cluster: str, python: str,
               queue: str | None = None, project: str | None = None) -> list[PlannedTask]:
    """One :class:`PlannedTask` per request, ``after`` keys turned into upstream nodes."""
    node_of = {job.key: node_and_attempt(job.key)[0] for job in jobs}
    out = []
    for job in jobs:
        node = node_of[job.key]
        unknown = [k for k in job.after if k not in node_of]
        if unknown:
            raise BackendError(
                f"jobmon: request {job.key} waits for {unknown[0]!r}, which is not in the same "
                "submit call; a dag backend needs every upstream in the call or done"
            )
        out.append(PlannedTask(
            node=node, key=job.key, task=job.task, name=task_name(job.job_name, job.key),
            argv=tuple(job.argv), wrapper=tuple(wrapper_argv(job, python)),
            upstream=tuple(dict.fromkeys(node_of[k] for k in job.after)),
            max_attempts=job.max_attempts,
            compute_resources=compute_resources(job.resources, cluster, queue, project),
            result_path=str(job.result_path),
        ))
    return out


def merge(previous: Iterable[PlannedTask], new: Iterable[PlannedTask]) -> tuple[PlannedTask, ...]:
    """The union of an earlier plan and new requests, upstreams first.

    A node in both takes the new attempt (command, resources, attempts) and keeps
    every upstream either side names: the engine leaves out upstreams that are
    already done, but jobmon resumes a workflow only with the same graph.
    """
    tasks: dict[str, PlannedTask] = {t.node: t for t in previous}
    for task in new:
        old = tasks.get(task.node)
        if old is not None:
            task = attrs.evolve(task, upstream=tuple(dict.fromkeys(old.upstream + task.upstream)))
        tasks[task.node] = task
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for task in tasks.values():
        sorter.add(task.node, *(u for u in task.upstream if u in tasks))
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise BackendError(f"jobmon: the requests form a cycle: {exc.args[1]}") from None
    return tuple(tasks[n] for n in order)


def _arg_name(flag: str, taken: set[str], position: int) -> str:
    """A format-field name for the value after ``flag`` (``--output-root`` -> ``output_root``)."""
    base = _IDENT.sub("_", flag.lstrip("-")) if flag.startswith("--") else ""
    if not base or base[0].isdigit() or base.startswith("gm_"):
        base = f"arg{position}"
    name = base if base not in taken and base not in _RESERVED else f"{base}_{position}"
    taken.add(name)
    return name


def _literal(word: str) -> str:
    return shlex.quote(word).replace("{", "{{").replace("}", "}}")


def template_for(task: str, members: Sequence[PlannedTask]) -> Template:
    """The TaskTemplate of one gristmill task, from the argv of all its nodes."""
    argvs = [m.argv for m in members]
    op_args = ["gm_wrapper", "gm_program"]
    values: dict[str, dict[str, str]] = {
        m.node: {"gm_wrapper": shlex.join(m.wrapper), "gm_program": shlex.quote(m.argv[0])}
        for m in members
    }
    parts = ["{gm_wrapper}", "{gm_program}"]
    node_args: list[str] = []
    task_args: list[str] = []
    if len({len(a) for a in argvs}) != 1:  # optional words differ: the whole rest is the node
        node_args.append("gm_args")
        parts.append("{gm_args}")
        for m in members:
            values[m.node]["gm_args"] = shlex.join(m.argv[1:])
    else:
        taken: set[str] = set()
        for pos in range(1, len(argvs[0])):
            words = {a[pos] for a in argvs}
            prev = argvs[0][pos - 1]
            is_value = prev.startswith("--") and len({a[pos - 1] for a in argvs}) == 1
            if len(words) == 1 and not (is_value and not argvs[0][pos].startswith("-")):
                parts.append(_literal(argvs[0][pos]))  # a flag, or a word with no option name
                continue
            name = _arg_name(prev if is_value else "", taken, pos)
            (node_args if len(words) > 1 else task_args).append(name)
            parts.append("{" + name + "}")
            for m in members:
                values[m.node][name] = shlex.quote(m.argv[pos])
    keys = [tuple(values[m.node][a] for a in node_args) for m in members]
    if len(set(keys)) < len(keys):  # same command twice (hand-made requests): tell them apart
        node_args.append("gm_node")
        parts[0] = "{gm_wrapper} --node {gm_node} --"
        for m in members:
            values[m.node]["gm_node"] = shlex.quote(m.node)
    else:
        parts[0] = "{gm_wrapper} --"
    return Template(task, " ".join(parts), tuple(node_args), tuple(task_args),
                    tuple(op_args), values)


def templates(plan: WorkflowPlan) -> dict[str, Template]:
    """Every gristmill task's TaskTemplate, keyed by task name."""
    by_task: dict[str, list[PlannedTask]] = defaultdict(list)
    for task in plan.tasks:
        by_task[task.task].append(task)
    return {name: template_for(name, members) for name, members in by_task.items()}


def parse_workflow_tasks(payload: Mapping[str, Any]) -> dict[str, str]:
    """Task name -> status from jobmon's ``GET /workflow/<id>/workflow_tasks``.

    The route answers a pandas ``to_json`` text (column -> row -> value) under
    ``workflow_tasks``; the status is a TaskStatus letter or, where the server's
    pandas applied its relabelling, a CLI label. Both map through :data:`STATES`.
    """
    raw = payload.get("workflow_tasks")
    try:
        table: Any = json.loads(raw) if isinstance(raw, str) else raw
        names, statuses = table["TASK_NAME"], table["STATUS"]
        return {str(names[row]): str(statuses[row]) for row in names}
    except (TypeError, KeyError, ValueError) as exc:
        raise BackendError(
            f"jobmon answered workflow_tasks in an unexpected form ({exc!r}): {str(raw)[:200]}"
        ) from None


def ancestors_failed(plan: WorkflowPlan, failed: set[str]) -> set[str]:
    """Nodes below a failed node: jobmon never runs them."""
    below: set[str] = set()
    for task in plan.tasks:  # upstreams first, so one pass suffices
        if any(u in failed or u in below for u in task.upstream):
            below.add(task.node)
    return below
