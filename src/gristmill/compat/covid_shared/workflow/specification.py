"""Task and workflow specifications: resources per kind of task, checked and serialisable.

As in covid_shared, a ``TaskSpecification`` subclass gives the defaults of one kind of
task (``default_max_runtime_seconds``, ``default_m_mem_free``, ``default_num_cores``)
and a ``WorkflowSpecification`` subclass maps task names to those classes. Unlike
covid_shared, overrides read from a dict or YAML take effect and round-trip through
``to_dict``, and an unknown key or task name is an error naming its path, not a
warning followed by the default.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from gristmill.errors import SpecError
from gristmill.resources import Resources, format_memory, parse_duration, parse_memory

_GIB = 2**30
_TASK_KEYS = ("max_runtime_seconds", "m_mem_free", "num_cores")
_DEFAULTS = tuple(f"default_{key}" for key in _TASK_KEYS)
#: Other names for the three settings: ``to_dict`` writes the first three, as covid_shared did.
_TASK_ALIASES = {
    "runtime": "max_runtime_seconds",
    "memory": "m_mem_free",
    "cores": "num_cores",
    "mem": "m_mem_free",
}
_PLACEMENT_KEYS = ("queue", "project")
_WORKFLOW_KEYS = ("project", "queue", "backend", "max_concurrent", "tasks")

TSpec = TypeVar("TSpec", bound="WorkflowSpecification")
TTask = TypeVar("TTask", bound="TaskSpecification")


def _text(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: {value!r} must be a non-empty string")
    return value


def _read_yaml(path: str | os.PathLike[str]) -> object:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{os.fspath(path)}: no such specification file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SpecError(f"{os.fspath(path)}: cannot read the specification: {exc}") from None


def _dump_yaml(data: Mapping[str, Any], path: str | os.PathLike[str] | None) -> str:
    text = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


class TaskSpecification:
    """Resources of one kind of task: class defaults, overridden per key from a dict or YAML.

    ``runtime_bounds`` (seconds), ``mem_bounds_gb`` and ``num_cores_bounds`` are the
    covid_shared limits; a subclass may set its own.
    """

    default_max_runtime_seconds: ClassVar[int]
    default_m_mem_free: ClassVar[str]
    default_num_cores: ClassVar[int]

    runtime_bounds: ClassVar[tuple[int, int]] = (100, 60 * 60 * 24)
    mem_bounds_gb: ClassVar[tuple[float, float]] = (1, 1000)
    num_cores_bounds: ClassVar[tuple[int, int]] = (1, 79)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check the class defaults when the class is defined, as covid_shared did."""
        super().__init_subclass__(**kwargs)
        for attr in _DEFAULTS:
            if getattr(cls, attr, None) is None:
                raise AttributeError(
                    f"task specification {cls.__name__} has no {attr}; set all of "
                    f"{', '.join(_DEFAULTS)} in the class body"
                )
        cls._runtime(cls.default_max_runtime_seconds, f"{cls.__name__}.default_max_runtime_seconds")
        cls._memory(cls.default_m_mem_free, f"{cls.__name__}.default_m_mem_free")
        cls._cores(cls.default_num_cores, f"{cls.__name__}.default_num_cores")

    def __init__(
        self, task_specification_dict: Mapping[str, Any] | None = None, *, where: str | None = None
    ) -> None:
        self.name = type(self).__name__
        where = where or self.name
        data = self._canonical_keys(dict(task_specification_dict or {}), where)
        unknown = sorted(set(data) - set(_TASK_KEYS) - set(_PLACEMENT_KEYS))
        if unknown:
            known = ", ".join([*_TASK_KEYS, *_PLACEMENT_KEYS])
            raise SpecError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {known}"
            )
        self.max_runtime_seconds: int = self._runtime(
            data.get("max_runtime_seconds", self.default_max_runtime_seconds),
            f"{where}.max_runtime_seconds",
        )
        self.m_mem_free: str = self._memory(
            data.get("m_mem_free", self.default_m_mem_free), f"{where}.m_mem_free"
        )
        self.num_cores: int = self._cores(
            data.get("num_cores", self.default_num_cores), f"{where}.num_cores"
        )
        self.queue: str | None = _text(data.get("queue"), f"{where}.queue")
        self.project: str | None = _text(data.get("project"), f"{where}.project")

    @staticmethod
    def _canonical_keys(data: dict[str, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = _TASK_ALIASES.get(key, key)
            if name in out:
                raise SpecError(f"{where}: {name} is given twice (as {key!r} and {name!r})")
            out[name] = value
        return out

    @classmethod
    def _runtime(cls, value: object, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SpecError(f"{where}: {value!r} is not a runtime; use seconds, e.g. 3600")
        seconds = parse_duration(value, what=where)
        low, high = cls.runtime_bounds
        if not low <= seconds <= high:
            raise SpecError(
                f"{where}: {value!r} is outside the allowed {low} to {high} seconds; "
                f"change it, or set runtime_bounds on {cls.__name__}"
            )
        return seconds

    @classmethod
    def _memory(cls, value: object, where: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise SpecError(f"{where}: {value!r} is not a memory size; use e.g. \"10G\"")
        size = parse_memory(value, what=where)
        low, high = cls.mem_bounds_gb
        if not low * _GIB <= size <= high * _GIB:
            raise SpecError(
                f"{where}: {value!r} is outside the allowed {low:g}G to {high:g}G; "
                f"change it, or set mem_bounds_gb on {cls.__name__}"
            )
        return value if isinstance(value, str) else format_memory(size)

    @classmethod
    def _cores(cls, value: object, where: str) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: {value!r} is not a whole number of cores; use e.g. 4")
        low, high = cls.num_cores_bounds
        if not low <= value <= high:
            raise SpecError(
                f"{where}: {value} is outside the allowed {low} to {high} cores; "
                f"change it, or set num_cores_bounds on {cls.__name__}"
            )
        return value

    def validate(self) -> None:
        """Check the current values again (they are plain attributes and may have been changed)."""
        self._runtime(self.max_runtime_seconds, f"{self.name}.max_runtime_seconds")
        self._memory(self.m_mem_free, f"{self.name}.m_mem_free")
        self._cores(self.num_cores, f"{self.name}.num_cores")
        _text(self.queue, f"{self.name}.queue")
        _text(self.project, f"{self.name}.project")

    @property
    def resources(self) -> Resources:
        """These settings as gristmill resources (what the engine and the backends read)."""
        self.validate()
        return Resources(
            mem=self.m_mem_free,
            cores=self.num_cores,
            runtime=self.max_runtime_seconds,
            queue=self.queue,
            project=self.project,
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings under covid_shared's keys (``runtime``, ``memory``, ``cores``, ``queue``).

        :meth:`from_dict` reads them back (they are aliases of the class-default names),
        so they round-trip. ``project`` is added only when this task sets its own.
        """
        out: dict[str, Any] = {
            "runtime": self.max_runtime_seconds,
            "memory": self.m_mem_free,
            "cores": self.num_cores,
            "queue": self.queue,
        }
        if self.project is not None:
            out["project"] = self.project
        return out

    @classmethod
    def from_dict(cls: type[TTask], data: Mapping[str, Any] | None) -> TTask:
        return cls(data)

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """YAML text of :meth:`to_dict`, also written to ``path`` when given."""
        return _dump_yaml(self.to_dict(), path)

    @classmethod
    def from_yaml(cls: type[TTask], path: str | os.PathLike[str]) -> TTask:
        data = _read_yaml(path)
        if data is not None and not isinstance(data, Mapping):
            raise SpecError(f"{os.fspath(path)}: expected a mapping of settings, got {data!r}")
        try:
            return cls(data)
        except SpecError as exc:
            raise SpecError(f"{os.fspath(path)}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the original

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"


class WorkflowSpecification:
    """Workflow-level settings plus one :class:`TaskSpecification` per task name.

    Subclasses set ``tasks = {name: TaskSpecification subclass}``. ``project`` and
    ``queue`` apply to every task that does not set its own; ``backend`` and
    ``max_concurrent`` are gristmill additions read by ``WorkflowTemplate.run``.
    ``allowed_projects``/``allowed_queues`` restrict the values when a site wants that
    (covid_shared hard-coded IHME's); ``default_project``/``default_queue`` fill them in.
    """

    tasks: ClassVar[Mapping[str, type[TaskSpecification]]]
    default_project: ClassVar[str | None] = None
    default_queue: ClassVar[str | None] = None
    allowed_projects: ClassVar[Collection[str] | None] = None
    allowed_queues: ClassVar[Collection[str] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tasks = getattr(cls, "tasks", None)
        if tasks is None:
            return  # an intermediate base; instantiating it says what is missing
        if not isinstance(tasks, Mapping):
            raise TypeError(f"{cls.__name__}.tasks must be a dict of task name to class")
        for name, spec_class in tasks.items():
            if not (isinstance(spec_class, type) and issubclass(spec_class, TaskSpecification)):
                raise TypeError(
                    f"{cls.__name__}.tasks[{name!r}] is {spec_class!r}, not a TaskSpecification "
                    "subclass"
                )

    def __init__(
        self,
        tasks: Mapping[str, Mapping[str, Any] | None] | None = None,
        project: str | None = None,
        queue: str | None = None,
        backend: str | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        self.name = type(self).__name__
        if getattr(type(self), "tasks", None) is None:
            raise TypeError(
                f"{self.name} has no tasks; subclass WorkflowSpecification and set "
                "tasks = {'task_name': TaskSpecificationSubclass, ...}"
            )
        self.project: str | None = project if project is not None else self.default_project
        self.queue: str | None = queue if queue is not None else self.default_queue
        self.backend: str | None = backend
        self.max_concurrent: int | None = max_concurrent
        self.validate()
        self.task_specifications: dict[str, TaskSpecification] = self.process_task_dicts(
            tasks or {}
        )

    def validate(self) -> None:
        """Check the workflow-level settings."""
        for key, allowed in (("project", self.allowed_projects), ("queue", self.allowed_queues)):
            value = _text(getattr(self, key), key)
            if allowed is not None and value is not None and value not in allowed:
                raise SpecError(
                    f"{key}: {value!r} is not allowed for {self.name}; use one of "
                    f"{', '.join(sorted(allowed))}"
                )
        _text(self.backend, "backend")
        count = self.max_concurrent
        bad_type = isinstance(count, bool) or not isinstance(count, int)
        if count is not None and (bad_type or count < 1):
            raise SpecError(f"max_concurrent: {count!r} must be a whole number of at least 1")

    def process_task_dicts(
        self, task_specification_dicts: Mapping[str, Mapping[str, Any] | None]
    ) -> dict[str, TaskSpecification]:
        """One :class:`TaskSpecification` per task name: class defaults, then the overrides."""
        if not isinstance(task_specification_dicts, Mapping):
            raise SpecError(f"tasks: expected a mapping of task name to settings, got "
                            f"{task_specification_dicts!r}")
        known = list(self.tasks)
        problems = []
        for name in task_specification_dicts:
            if name not in self.tasks:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(
                    f"tasks.{name}: unknown task {name!r} for {self.name}; known tasks: "
                    f"{', '.join(known) or '(none)'}{hint}"
                )
        if problems:
            raise SpecError("\n".join(problems))
        specifications = {}
        for name, spec_class in self.tasks.items():
            given = task_specification_dicts.get(name) or {}
            if not isinstance(given, Mapping):
                raise SpecError(f"tasks.{name}: expected a mapping of settings, got {given!r}")
            placement = {k: getattr(self, k) for k in _PLACEMENT_KEYS if getattr(self, k)}
            specifications[name] = spec_class({**placement, **given}, where=f"tasks.{name}")
        return specifications

    def to_dict(self) -> dict[str, Any]:
        """covid_shared's ``{project, queue, tasks}`` (plus ``backend`` and ``max_concurrent``
        when set); :meth:`from_dict` reads it back to an equal specification."""
        out: dict[str, Any] = {"project": self.project, "queue": self.queue}
        for key in ("backend", "max_concurrent"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["tasks"] = {name: spec.to_dict() for name, spec in self.task_specifications.items()}
        return out

    @classmethod
    def from_dict(cls: type[TSpec], data: Mapping[str, Any] | None) -> TSpec:
        """Build from parsed YAML: ``{project, queue, backend, max_concurrent, tasks: {...}}``."""
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise SpecError(f"a workflow specification must be a mapping, got {data!r}")
        unknown = sorted(set(data) - set(_WORKFLOW_KEYS))
        if unknown:
            raise SpecError(
                f"unknown key(s) {', '.join(map(repr, unknown))} in the workflow specification; "
                f"known keys: {', '.join(_WORKFLOW_KEYS)}"
            )
        return cls(
            tasks=data.get("tasks"),
            project=data.get("project"),
            queue=data.get("queue"),
            backend=data.get("backend"),
            max_concurrent=data.get("max_concurrent"),
        )

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """YAML text of :meth:`to_dict`, also written to ``path`` when given."""
        return _dump_yaml(self.to_dict(), path)

    @classmethod
    def from_yaml(cls: type[TSpec], path: str | os.PathLike[str]) -> TSpec:
        """Read a YAML file; errors name the file and the key path."""
        data = _read_yaml(path)
        try:
            return cls.from_dict(data)  # type: ignore[arg-type]  # checked in from_dict
        except SpecError as exc:
            raise SpecError(f"{os.fspath(path)}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the original

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"
