"""Spec text to spec values: strict YAML, cattrs structuring, errors that name their YAML path.

cattrs does the shape (mappings, unknown keys: a misspelt key is an error, never
"ignored"); hooks parse the values (``10G``, ``2h``, ``x1.5``). cattrs collects every
problem it finds, and :func:`structure_spec` reports them all at once, each as
``tasks.fit.mem: '10 gigs' is not a memory size``.
"""

# cattrs evaluates the private *Doc annotations at runtime, so they must spell Optional[...]
# to work on Python 3.9:
# ruff: noqa: UP045

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any, Callable, NewType, Optional, TypeVar

import attrs
import cattrs
import yaml
from cattrs.gen import make_dict_structure_fn

from gristmill.errors import SpecError
from gristmill.resources import (
    Policy,
    Resources,
    escalation,
    parse_duration,
    parse_memory,
    parse_memory_with_unit,
)
from gristmill.spec.settings import TaskSettings, WorkflowSettings

#: covid_shared spellings accepted in a task's settings, and the key each stands for.
ALIASES = {"max_runtime_seconds": "runtime", "m_mem_free": "mem", "num_cores": "cores"}

#: The source of a spec that did not come from a file; messages then name no file.
NO_SOURCE = "<spec>"
_T = TypeVar("_T")


def structure_spec(
    data: object, source: str = NO_SOURCE, *, stored: bool = False
) -> tuple[WorkflowSettings, TaskSettings, dict[str, TaskSettings]]:
    """Parsed YAML as (workflow, default, tasks), with workflow ``project``/``queue`` folded
    into the default; every problem found is reported at once, each with its path.

    ``stored`` reads what an older gristmill kept in a run's store, where a memory size
    that is not a whole KiB was written as a bare number of bytes.
    """
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{source_prefix(source)}the spec must be a mapping with keys workflow, default, "
            f"tasks; got {_describe(data)}"
        )
    try:
        doc = (_STORED_CONVERTER if stored else _CONVERTER).structure(data, _SpecDoc)
    except (cattrs.BaseValidationError, SpecError) as exc:  # cattrs groups every error found
        lines = [f"{source_prefix(source)}{_join(path)}{msg}" for path, msg in _flatten(exc, ())]
        raise SpecError("\n".join(lines)) from None
    flow = doc.workflow or _WorkflowDoc()
    lowest = TaskSettings(Resources(project=flow.project, queue=flow.queue))
    workflow = WorkflowSettings(
        backend=flow.backend,
        max_concurrent=flow.max_concurrent,
        fail_fast=flow.fail_fast,
        poll_interval=flow.poll_interval,
        backend_options=flow.options or (),
        on_success=flow.on_success,
        on_failure=flow.on_failure,
    )
    tasks = {name: settings or TaskSettings() for name, settings in (doc.tasks or {}).items()}
    return workflow, lowest.merged_with(doc.default), tasks


def parse_yaml(text: str, name: str) -> object:
    """YAML text from the file ``name``; a key given twice or bad syntax is a ``SpecError``."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader that refuses duplicate keys
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        raise SpecError(f"{where}: invalid YAML: {exc.problem or exc.context}{context}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{name}: invalid YAML: {exc}") from None


def source_prefix(source: str) -> str:
    """``"spec.yaml: "`` to start a message about that file; nothing without a file."""
    return "" if source == NO_SOURCE else f"{source}: "


def strip_label(what: str, exc: SpecError) -> str:
    """Drop the ``what: `` that gristmill.resources puts first, so the YAML path replaces it."""
    message = str(exc)
    return message[len(what) + 2 :] if message.startswith(f"{what}: ") else message


_Memory = NewType("_Memory", int)
_Duration = NewType("_Duration", int)
_Cores = NewType("_Cores", int)
_Gpus = NewType("_Gpus", int)
_Retries = NewType("_Retries", int)
_Launch = NewType("_Launch", str)
_Limit = NewType("_Limit", int)
_Chunk = NewType("_Chunk", int)
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
    chunk: Optional[_Chunk] = None
    launch: Optional[_Launch] = None


@attrs.frozen
class _WorkflowDoc:
    backend: Optional[_Text] = None
    project: Optional[_Text] = None
    queue: Optional[_Text] = None
    max_concurrent: Optional[_Limit] = None
    fail_fast: Optional[_Flag] = None
    poll_interval: Optional[_Seconds] = None
    options: Optional[_Flags] = None
    on_success: Optional[_Text] = None
    on_failure: Optional[_Text] = None


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


def _join(path: tuple[str, ...]) -> str:
    return f"{'.'.join(path)}: " if path else ""


def _value(what: str, parse: Callable[[], _T]) -> _T:
    try:
        return parse()
    except SpecError as exc:
        raise SpecError(strip_label(what, exc)) from None


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


def _strict(cl: type[Any], converter: cattrs.Converter) -> Callable[[object, object], Any]:
    """cattrs' generated hook, after a mapping check, aliases and required keys."""
    inner = make_dict_structure_fn(
        cl, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )

    def hook(value: object, _: object) -> Any:
        if not isinstance(value, Mapping):
            raise SpecError(f"must be a mapping like {_EXAMPLES[cl]}; got {_describe(value)}")
        data = dict(value)
        spelt: dict[str, str] = {}  # canonical key -> the alias the spec wrote
        for alias, key in ALIASES.items() if cl is _TaskDoc else ():
            if alias in data:
                if key in data:
                    raise SpecError(
                        f"both {alias!r} and {key!r} are given; {alias!r} is the "
                        f"covid_shared name for {key!r}, keep only one"
                    )
                data[key] = data.pop(alias)
                spelt[key] = alias
        required = _REQUIRED.get(cl)
        if required is not None and required not in data:
            raise SpecError(
                f"the key inside must be {required!r}, as in {_EXAMPLES[cl]}; "
                f"got {', '.join(map(repr, data)) or 'nothing'}"
            )
        try:
            return inner(data, cl)
        except cattrs.ClassValidationError as exc:
            _respell(exc, spelt)
            raise

    return hook


def _respell(exc: cattrs.ClassValidationError, spelt: Mapping[str, str]) -> None:
    """Make an error under an aliased key carry the key the spec wrote (``m_mem_free``),
    so its YAML path points at what the user can find in the file."""
    for sub in exc.exceptions:
        notes = getattr(sub, "__notes__", None)
        if not notes:
            continue
        for i, note in enumerate(notes):
            if isinstance(note, cattrs.AttributeValidationNote) and note.name in spelt:
                alias = spelt[note.name]
                notes[i] = cattrs.AttributeValidationNote(
                    note.replace(f"attribute {note.name}", f"attribute {alias}"), alias, note.type
                )


def _make_converter(memory: Callable[[Any], int]) -> cattrs.Converter:
    """The strict converter; ``memory`` parses a memory size (its errors unlabelled)."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

    def tasks(value: object, _: object) -> dict[str, TaskSettings | None]:
        if not isinstance(value, Mapping):
            raise SpecError(
                f"must be a mapping of task name to settings, e.g. {{fit: {{mem: 10G}}}}; "
                f"got {_describe(value)}"
            )
        return converter.structure(value, dict[str, Optional[TaskSettings]])

    def task_settings(value: object, _: object) -> TaskSettings:
        doc: _TaskDoc = converter.structure(value, _TaskDoc)
        oom, timeout = doc.on_oom, doc.on_timeout
        on_oom = escalation("mem", oom.mem, oom.max) if oom else None
        on_timeout = escalation("runtime", timeout.runtime, timeout.max) if timeout else None
        fields = {key: getattr(doc, key) for key in ("mem", "cores", "runtime", "queue", "gpus")}
        resources = Resources(**fields, project=doc.project, extra=dict(doc.extra or ()))
        policy = Policy(doc.retries, doc.max_concurrent, on_oom, on_timeout,
                        chunk=doc.chunk, launch=doc.launch)
        return TaskSettings(resources, policy)

    hooks: dict[Any, Callable[[Any, Any], Any]] = {
        _Memory: lambda v, _: _value("mem", lambda: memory(v)),
        _Duration: lambda v, _: _value("runtime", lambda: parse_duration(v)),
        _Cores: lambda v, _: _value("cores", lambda: Resources(cores=v).cores),
        _Gpus: lambda v, _: _value("gpus", lambda: Resources(gpus=v).gpus),
        _Retries: lambda v, _: _value("retries", lambda: Policy(retries=v).retries),
        _Launch: lambda v, _: _value("launch", lambda: Policy(launch=v).launch),
        _Limit: lambda v, _: _value(
            "max_concurrent", lambda: Policy(max_concurrent=v).max_concurrent
        ),
        _Chunk: lambda v, _: _value("chunk", lambda: Policy(chunk=v).chunk),
        _Factor: lambda v, _: escalation("mem", v).factor,
        _Text: _text,
        _Flag: _flag,
        _Seconds: _seconds,
        _Flags: _flags,
        _Tasks: tasks,
        TaskSettings: task_settings,
    }
    for kind, hook in hooks.items():
        converter.register_structure_hook(kind, hook)
    for doc in _EXAMPLES:
        converter.register_structure_hook(doc, _strict(doc, converter))
    return converter


_CONVERTER = _make_converter(parse_memory_with_unit)
#: For a run's stored spec, where older versions wrote a size not a whole KiB as bare bytes.
_STORED_CONVERTER = _make_converter(parse_memory)


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


#: The most values a spec may hold once its aliases are expanded. A real spec holds a few
#: hundred; a few hundred bytes of nested aliases ("billion laughs") would expand to
#: billions and keep the structuring walking them for hours.
MAX_VALUES = 100_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded (memoised: linear)."""
    found = sizes.get(id(node))
    if found is not None:
        return found
    sizes[id(node)] = MAX_VALUES + 1  # a node reached again while being sized: a cycle
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes)
                       for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    else:
        size = 1
    sizes[id(node)] = size = min(size, MAX_VALUES + 1)
    return size


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error,
    and a document whose aliases expand to more than ``MAX_VALUES`` values is refused
    before anything is built from it."""

    def construct_document(self, node: yaml.Node) -> Any:
        if _expanded_size(node, {}) > MAX_VALUES:
            raise yaml.constructor.ConstructorError(
                problem=f"the document expands to more than {MAX_VALUES:,} values through "
                "its aliases (&anchor / *alias); a spec needs far fewer: write the values out "
                "or use fewer nested aliases", problem_mark=node.start_mark)
        return super().construct_document(node)

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
