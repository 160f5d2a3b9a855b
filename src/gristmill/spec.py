"""The YAML spec file: per-task resources and run policy, and workflow settings.

A spec is parsed once, strictly (a misspelt key is an error, never "ignored"),
and every error names its YAML path, e.g. ``tasks.fit.mem: '10 gigs' is not a
memory size``. Within one spec the layers are, lowest first: workflow-level
``project``/``queue`` < ``default:`` < ``tasks.<name>:``. :meth:`Spec.to_dict`
writes memory as ``"12G"`` and runtime as compact units (``"2h"``, ``"1h30m"``).
"""

# cattrs evaluates the private *Doc annotations at runtime, so they must spell Optional[...]
# to work on Python 3.9:
# ruff: noqa: UP045

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, Callable, NewType, Optional, TypeVar

import attrs
import cattrs
import yaml
from cattrs.gen import make_dict_structure_fn
from loguru import logger

from gristmill.errors import SpecError
from gristmill.resources import (
    Escalation,
    Policy,
    Resources,
    escalation,
    format_memory,
    parse_duration,
    parse_memory,
)

#: The resource options the CLI offers, in the order :func:`resources_from_cli` takes them.
CLI_RESOURCE_KEYS = ("mem", "cores", "runtime", "queue", "project")

#: covid_shared spellings accepted in a task's settings, and the key each stands for.
ALIASES = {"max_runtime_seconds": "runtime", "m_mem_free": "mem", "num_cores": "cores"}

_NO_SOURCE = "<spec>"
_T = TypeVar("_T")


@attrs.frozen
class TaskSettings:
    """What a spec says about one task (or about every task, under ``default:``)."""

    resources: Resources = attrs.field(factory=Resources)
    policy: Policy = attrs.field(factory=Policy)

    def merged_with(self, other: TaskSettings | None) -> TaskSettings:
        """Field-wise merge: every field ``other`` sets wins."""
        if other is None:
            return self
        return TaskSettings(
            self.resources.merged_with(other.resources), self.policy.merged_with(other.policy)
        )


@attrs.frozen
class WorkflowSettings:
    """The ``workflow:`` section, minus ``project``/``queue`` (those become default resources)."""

    backend: str | None = None
    max_concurrent: int | None = None
    fail_fast: bool | None = None
    poll_interval: float | None = None
    #: Site or backend specific ``workflow.options``, passed through as strings.
    backend_options: tuple[tuple[str, str], ...] = ()

    def merged_with(self, other: WorkflowSettings | None) -> WorkflowSettings:
        """Field-wise merge: every field ``other`` sets wins; options merge key by key."""
        if other is None:
            return self
        changes: dict[str, Any] = {
            f.name: getattr(other, f.name)
            for f in attrs.fields(WorkflowSettings)
            if f.name != "backend_options" and getattr(other, f.name) is not None
        }
        if other.backend_options:
            options = dict(self.backend_options) | dict(other.backend_options)
            changes["backend_options"] = tuple(sorted(options.items()))
        return attrs.evolve(self, **changes) if changes else self


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

    workflow: WorkflowSettings = WorkflowSettings()
    default: TaskSettings = TaskSettings()
    tasks: Mapping[str, TaskSettings] = attrs.field(factory=_TaskTable, converter=_task_table)
    source: str = attrs.field(default=_NO_SOURCE, eq=False)

    @classmethod
    def empty(cls) -> Spec:
        """A spec that says nothing, so every task keeps its decorator's settings."""
        return cls()

    @classmethod
    def from_dict(cls, data: object, source: str = _NO_SOURCE) -> Spec:
        """Structure parsed YAML; every problem found is reported at once, each with its path."""
        if not isinstance(data, Mapping):
            raise SpecError(
                f"{_prefix(source)}the spec must be a mapping with keys workflow, default, tasks; "
                f"got {_describe(data)}"
            )
        try:
            doc = _CONVERTER.structure(data, _SpecDoc)
        except (cattrs.BaseValidationError, SpecError) as exc:  # cattrs groups every error found
            lines = [f"{_prefix(source)}{_join(path)}{msg}" for path, msg in _flatten(exc, ())]
            raise SpecError("\n".join(lines)) from None
        flow = doc.workflow or _WorkflowDoc()
        lowest = TaskSettings(Resources(project=flow.project, queue=flow.queue))
        workflow = WorkflowSettings(
            backend=flow.backend,
            max_concurrent=flow.max_concurrent,
            fail_fast=flow.fail_fast,
            poll_interval=flow.poll_interval,
            backend_options=flow.options or (),
        )
        tasks = {name: settings or TaskSettings() for name, settings in (doc.tasks or {}).items()}
        return cls(workflow, lowest.merged_with(doc.default), tasks, source)

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
                    f"{_prefix(self.source)}tasks.{name}: unknown task {name!r}; "
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
        workflow = _workflow_dict(self.workflow)
        default = _task_dict(self.default)
        if workflow:
            out["workflow"] = workflow
        if default:
            out["default"] = default
        if self.tasks:
            out["tasks"] = {name: _task_dict(s) for name, s in self.tasks.items()}
        return out

    def merged_with(self, other: Spec) -> Spec:
        """Layer ``other`` over this spec key by key (e.g. a CLI ``--spec`` over a workflow's own).

        What ``other`` sets wins over the same key here; a task's own settings
        still beat any ``default:``, whichever spec they come from.
        """
        tasks = dict(self.tasks)
        for name, settings in other.tasks.items():
            tasks[name] = tasks[name].merged_with(settings) if name in tasks else settings
        sources = [s for s in (self.source, other.source) if s != _NO_SOURCE]
        return Spec(
            self.workflow.merged_with(other.workflow),
            self.default.merged_with(other.default),
            tasks,
            " + ".join(sources) or _NO_SOURCE,
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
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader that refuses duplicate keys
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise SpecError(f"{where}: invalid YAML: {exc.problem or exc.context}{context}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: invalid YAML: {exc}") from None
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
    """The top-precedence layer from ``--mem/--cores/--runtime/--queue/--project``."""
    given: dict[str, Any] = {}
    for key, value in zip(CLI_RESOURCE_KEYS, (mem, cores, runtime, queue, project)):
        if value is not None:
            one: dict[str, Any] = {key: value}
            try:
                Resources(**one)
            except SpecError as exc:
                raise SpecError(f"--{key}: {_strip(key, exc)}") from None
            given[key] = value
    return Resources(**given)


# --- structuring: cattrs does the shape (unknown keys, mappings), hooks the values ---------

_Memory = NewType("_Memory", int)
_Duration = NewType("_Duration", int)
_Cores = NewType("_Cores", int)
_Gpus = NewType("_Gpus", int)
_Retries = NewType("_Retries", int)
_Limit = NewType("_Limit", int)
_Text = NewType("_Text", str)
_Flag = NewType("_Flag", bool)
_Seconds = NewType("_Seconds", float)
_Factor = NewType("_Factor", float)
_Flags = NewType("_Flags", tuple[tuple[str, str], ...])
_Tasks = NewType("_Tasks", dict[str, Optional[TaskSettings]])


@attrs.frozen
class _OnOomDoc:
    mem: _Factor
    max: Optional[_Memory] = None


@attrs.frozen
class _OnTimeoutDoc:
    runtime: _Factor
    max: Optional[_Duration] = None


@attrs.frozen
class _TaskDoc:
    mem: Optional[_Memory] = None
    cores: Optional[_Cores] = None
    runtime: Optional[_Duration] = None
    queue: Optional[_Text] = None
    gpus: Optional[_Gpus] = None
    project: Optional[_Text] = None
    extra: Optional[_Flags] = None
    retries: Optional[_Retries] = None
    max_concurrent: Optional[_Limit] = None
    on_oom: Optional[_OnOomDoc] = None
    on_timeout: Optional[_OnTimeoutDoc] = None


@attrs.frozen
class _WorkflowDoc:
    backend: Optional[_Text] = None
    project: Optional[_Text] = None
    queue: Optional[_Text] = None
    max_concurrent: Optional[_Limit] = None
    fail_fast: Optional[_Flag] = None
    poll_interval: Optional[_Seconds] = None
    options: Optional[_Flags] = None


@attrs.frozen
class _SpecDoc:
    workflow: Optional[_WorkflowDoc] = None
    default: Optional[TaskSettings] = None
    tasks: Optional[_Tasks] = None


_EXAMPLES = {
    _TaskDoc: "{mem: 10G, runtime: 2h}",
    _OnOomDoc: "{mem: x1.5, max: 64G}",
    _OnTimeoutDoc: "{runtime: x2, max: 24h}",
    _WorkflowDoc: "{backend: slurm, queue: all.q}",
    _SpecDoc: "{workflow: ..., default: ..., tasks: ...}",
}
_REQUIRED = {_OnOomDoc: "mem", _OnTimeoutDoc: "runtime"}


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def _prefix(source: str) -> str:
    return "" if source == _NO_SOURCE else f"{source}: "


def _join(path: tuple[str, ...]) -> str:
    return f"{'.'.join(path)}: " if path else ""


def _strip(what: str, exc: SpecError) -> str:
    """Drop the ``what: `` that gristmill.resources puts first, so the YAML path replaces it."""
    message = str(exc)
    return message[len(what) + 2 :] if message.startswith(f"{what}: ") else message


def _value(what: str, parse: Callable[[], _T]) -> _T:
    try:
        return parse()
    except SpecError as exc:
        raise SpecError(_strip(what, exc)) from None


def _flags(value: object, _: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise SpecError(
            f"must be a mapping of flag to value, e.g. {{constraint: haswell}}; "
            f"got {_describe(value)}"
        )
    flags = {}
    for key, item in value.items():
        if item is None or isinstance(item, (Mapping, list, tuple)):
            raise SpecError(f"the value of {key!r} must be a string or number; got {item!r}")
        flags[str(key)] = str(item).lower() if isinstance(item, bool) else str(item)
    return tuple(sorted(flags.items()))


def _tasks(value: object, _: object) -> dict[str, TaskSettings | None]:
    if not isinstance(value, Mapping):
        raise SpecError(
            f"must be a mapping of task name to settings, e.g. {{fit: {{mem: 10G}}}}; "
            f"got {_describe(value)}"
        )
    return _CONVERTER.structure(value, dict[str, Optional[TaskSettings]])


def _text(value: object, _: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{value!r} must be a non-empty string")
    return value


def _flag(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{value!r} must be true or false")
    return value


def _seconds(value: object, _: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return float(_value("poll_interval", lambda: parse_duration(value, what="poll_interval")))  # type: ignore[arg-type]


def _strict(cl: type[Any]) -> Callable[[object, object], Any]:
    """cattrs' generated hook, after a mapping check, aliases and required keys."""
    inner = make_dict_structure_fn(
        cl, _CONVERTER, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )

    def hook(value: object, _: object) -> Any:
        if not isinstance(value, Mapping):
            raise SpecError(f"must be a mapping like {_EXAMPLES[cl]}; got {_describe(value)}")
        data = dict(value)
        for alias, key in ALIASES.items() if cl is _TaskDoc else ():
            if alias in data:
                if key in data:
                    raise SpecError(
                        f"both {alias!r} and {key!r} are given; {alias!r} is the "
                        f"covid_shared name for {key!r}, keep only one"
                    )
                data[key] = data.pop(alias)
        required = _REQUIRED.get(cl)
        if required is not None and required not in data:
            raise SpecError(
                f"the key inside must be {required!r}, as in {_EXAMPLES[cl]}; "
                f"got {', '.join(map(repr, data)) or 'nothing'}"
            )
        return inner(data, cl)

    return hook


def _task_settings(value: object, _: object) -> TaskSettings:
    doc: _TaskDoc = _CONVERTER.structure(value, _TaskDoc)
    oom, timeout = doc.on_oom, doc.on_timeout
    on_oom = escalation("mem", oom.mem, oom.max) if oom else None
    on_timeout = escalation("runtime", timeout.runtime, timeout.max) if timeout else None
    fields = {key: getattr(doc, key) for key in ("mem", "cores", "runtime", "queue", "gpus")}
    resources = Resources(**fields, project=doc.project, extra=dict(doc.extra or ()))
    policy = Policy(doc.retries, doc.max_concurrent, on_oom, on_timeout)
    return TaskSettings(resources, policy)


_CONVERTER = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
_HOOKS: dict[Any, Callable[[Any, Any], Any]] = {
    _Memory: lambda v, _: _value("mem", lambda: parse_memory(v)),
    _Duration: lambda v, _: _value("runtime", lambda: parse_duration(v)),
    _Cores: lambda v, _: _value("cores", lambda: Resources(cores=v).cores),
    _Gpus: lambda v, _: _value("gpus", lambda: Resources(gpus=v).gpus),
    _Retries: lambda v, _: _value("retries", lambda: Policy(retries=v).retries),
    _Limit: lambda v, _: _value("max_concurrent", lambda: Policy(max_concurrent=v).max_concurrent),
    _Factor: lambda v, _: escalation("mem", v).factor,
    _Text: _text,
    _Flag: _flag,
    _Seconds: _seconds,
    _Flags: _flags,
    _Tasks: _tasks,
    TaskSettings: _task_settings,
}
for _type, _hook in _HOOKS.items():
    _CONVERTER.register_structure_hook(_type, _hook)
for _doc in _EXAMPLES:
    _CONVERTER.register_structure_hook(_doc, _strict(_doc))


def _allowed(cl: type[Any]) -> list[str]:
    return sorted(f.name for f in attrs.fields(cl))


def _flatten(exc: BaseException, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every leaf error in a cattrs error tree, with its YAML path."""
    if isinstance(exc, (cattrs.ClassValidationError, cattrs.IterableValidationError)):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            step = note.name if isinstance(note, cattrs.AttributeValidationNote) else note.index
            yield from _flatten(sub, (*path, str(step)))
        for sub in without:
            yield from _flatten(sub, path)
    elif isinstance(exc, cattrs.ForbiddenExtraKeysError):
        allowed = _allowed(exc.cl)
        aliases = list(ALIASES) if exc.cl is _TaskDoc else []
        tip = "; backend-specific keys go under workflow.options" if exc.cl is _WorkflowDoc else ""
        for key in sorted(exc.extra_fields, key=str):
            close = difflib.get_close_matches(str(key), allowed + aliases, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            yield (
                (*path, str(key)),
                f"unknown key {key!r}{hint}; allowed keys: " + ", ".join(allowed) + tip,
            )
    elif isinstance(exc, KeyError):
        yield path, f"required key {exc.args[0]!r} is missing"
    else:
        yield path, str(exc)


# --- rendering back to YAML-able data ------------------------------------------------------


def _memory_text(num_bytes: int) -> object:
    return format_memory(num_bytes) if num_bytes % 1024 == 0 else num_bytes


def _runtime_text(seconds: int) -> str:
    parts, rest = [], seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _escalation_dict(rule: Escalation) -> dict[str, object]:
    short = f"{rule.factor:g}"
    factor = short if float(short) == rule.factor else repr(rule.factor)
    out: dict[str, object] = {rule.resource: f"x{factor}"}
    if rule.cap is not None:
        out["max"] = _memory_text(rule.cap) if rule.resource == "mem" else _runtime_text(rule.cap)
    return out


def _task_dict(settings: TaskSettings) -> dict[str, object]:
    out = settings.resources.as_dict()
    if settings.resources.mem is not None:
        out["mem"] = _memory_text(settings.resources.mem)
    if settings.resources.runtime is not None:
        out["runtime"] = _runtime_text(settings.resources.runtime)
    policy = settings.policy
    for name, value in (("retries", policy.retries), ("max_concurrent", policy.max_concurrent)):
        if value is not None:
            out[name] = value
    for name, rule in (("on_oom", policy.on_oom), ("on_timeout", policy.on_timeout)):
        if rule is not None:
            out[name] = _escalation_dict(rule)
    return out


def _workflow_dict(settings: WorkflowSettings) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ("backend", "max_concurrent", "fail_fast"):
        if getattr(settings, name) is not None:
            out[name] = getattr(settings, name)
    if settings.poll_interval is not None:
        interval = settings.poll_interval
        out["poll_interval"] = int(interval) if interval.is_integer() else interval
    if settings.backend_options:
        out["options"] = dict(settings.backend_options)
    return out


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    twice = f"key {key_node.value!r} is given twice (first on line {seen[key]})"
                    raise yaml.constructor.ConstructorError(
                        problem=twice, problem_mark=key_node.start_mark
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)
