"""The YAML spec file: per-task resources and run policy, and workflow settings.

A spec is parsed once, strictly (a misspelt key is an error, never "ignored"),
and every error names its YAML path, e.g. ``tasks.fit.mem: '10 gigs' is not a
memory size``. Within one spec the layers are, lowest first: workflow-level
``project``/``queue`` < ``default:`` < ``tasks.<name>:``. :meth:`Spec.to_dict`
writes memory as ``"12G"`` and runtime as compact units (``"2h"``, ``"1h30m"``).

The section values are in :mod:`gristmill.spec.settings`, parsing in
:mod:`gristmill.spec.parse` and rendering in :mod:`gristmill.spec.render`; the names
used elsewhere are re-exported here.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
from loguru import logger

from gristmill.errors import SpecError
from gristmill.resources import Resources, parse_memory_with_unit
from gristmill.spec.parse import (
    NO_SOURCE,
    parse_yaml,
    source_prefix,
    strip_label,
    structure_spec,
)
from gristmill.spec.render import task_dict, workflow_dict
from gristmill.spec.settings import TaskSettings, WorkflowSettings

#: The resource options the CLI offers, in the order :func:`resources_from_cli` takes them.
CLI_RESOURCE_KEYS = ("mem", "cores", "runtime", "queue", "project")


@attrs.frozen(eq=False)
class _TaskTable(Mapping[str, TaskSettings]):
    """A read-only, hashable, picklable ``{task name: TaskSettings}`` in document order."""

    pairs: tuple[tuple[str, TaskSettings], ...] = ()
    _index: dict[str, TaskSettings] = attrs.field(
        init=False,
        repr=False,
        default=attrs.Factory(lambda self: dict(self.pairs), takes_self=True),
    )

    def __getitem__(self, key: str) -> TaskSettings:
        return self._index[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __hash__(self) -> int:
        return hash(frozenset(self.pairs))


def _task_table(value: Mapping[str, TaskSettings]) -> _TaskTable:
    return value if isinstance(value, _TaskTable) else _TaskTable(tuple(value.items()))


@attrs.frozen
class Spec:
    """A parsed spec file. ``source`` (the file name) is only used in messages, not compared."""

    workflow: WorkflowSettings = attrs.field(factory=WorkflowSettings)
    default: TaskSettings = attrs.field(factory=TaskSettings)
    tasks: Mapping[str, TaskSettings] = attrs.field(factory=_TaskTable, converter=_task_table)
    source: str = attrs.field(default=NO_SOURCE, eq=False)

    @classmethod
    def empty(cls) -> Spec:
        """A spec that says nothing, so every task keeps its decorator's settings."""
        return cls()

    @classmethod
    def from_dict(cls, data: object, source: str = NO_SOURCE) -> Spec:
        """Structure parsed YAML; every problem found is reported at once, each with its path."""
        workflow, default, tasks = structure_spec(data, source)
        return cls(workflow, default, tasks, source)

    @classmethod
    def from_stored(cls, data: object, source: str = NO_SOURCE) -> Spec:
        """:meth:`from_dict` for the spec a run's store keeps (``gristmill resume``).

        Older versions wrote a memory size that is not a whole KiB as a bare number
        of bytes there; such a run must still resume, so bare sizes are bytes here.
        """
        workflow, default, tasks = structure_spec(data, source, stored=True)
        return cls(workflow, default, tasks, source)

    def settings_for(self, task: str) -> TaskSettings:
        """``default:`` merged with ``tasks.<task>:`` (the task's own settings win)."""
        return self.default.merged_with(self.tasks.get(task))

    def check_tasks(self, known: Collection[str]) -> None:
        """Refuse task names the workflow does not have (a typo would otherwise be ignored)."""
        names = ", ".join(sorted(known)) or "(none)"
        lines = []
        for name in self.tasks:
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                lines.append(
                    f"{source_prefix(self.source)}tasks.{name}: unknown task {name!r}; "
                    f"known tasks: {names}{hint}"
                )
        if lines:
            raise SpecError("\n".join(lines))

    def to_dict(self) -> dict[str, object]:
        """YAML-able data in human units; ``Spec.from_dict(spec.to_dict()) == spec``.

        Empty sections are left out; workflow-level ``project``/``queue`` come back
        under ``default:``, where parsing folded them.
        """
        out: dict[str, object] = {}
        workflow = workflow_dict(self.workflow)
        default = task_dict(self.default)
        if workflow:
            out["workflow"] = workflow
        if default:
            out["default"] = default
        if self.tasks:
            out["tasks"] = {name: task_dict(s) for name, s in self.tasks.items()}
        return out

    def without_hooks(self) -> Spec:
        """This spec without ``workflow.on_success``/``on_failure`` (commands to run)."""
        return attrs.evolve(self, workflow=attrs.evolve(self.workflow, on_success=None,
                                                        on_failure=None))

    def merged_with(self, other: Spec) -> Spec:
        """Layer ``other`` over this spec key by key (e.g. a CLI ``--spec`` over a workflow's own).

        What ``other`` sets wins over the same key here; a task's own settings
        still beat any ``default:``, whichever spec they come from.
        """
        tasks = dict(self.tasks)
        for name, settings in other.tasks.items():
            tasks[name] = tasks[name].merged_with(settings) if name in tasks else settings
        sources = [s for s in (self.source, other.source) if s != NO_SOURCE]
        return Spec(
            self.workflow.merged_with(other.workflow),
            self.default.merged_with(other.default),
            tasks,
            " + ".join(sources) or NO_SOURCE,
        )


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and parse a YAML spec file; an empty file is an empty spec."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{name}: no such spec file (looked from {os.getcwd()})") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SpecError(f"{name}: cannot read the spec file ({reason})") from None
    data = parse_yaml(text, name)
    spec = Spec.from_dict({} if data is None else data, source=name)
    logger.debug("loaded spec {} ({} task entries)", name, len(spec.tasks))
    return spec


def resources_from_cli(
    mem: str | None = None,
    cores: int | None = None,
    runtime: str | None = None,
    queue: str | None = None,
    project: str | None = None,
) -> Resources:
    """The top-precedence layer from ``--mem/--cores/--runtime/--queue/--project``.

    ``--mem`` must name its unit, as a spec's ``mem:`` must (``--mem 100`` is refused).
    """
    given: dict[str, Any] = {}
    for key, value in zip(CLI_RESOURCE_KEYS, (mem, cores, runtime, queue, project)):
        if value is not None:
            one: dict[str, Any] = {key: value}
            try:
                if key == "mem":
                    parse_memory_with_unit(value)
                Resources(**one)
            except SpecError as exc:
                raise SpecError(f"--{key}: {strip_label(key, exc)}") from None
            given[key] = value
    return Resources(**given)
