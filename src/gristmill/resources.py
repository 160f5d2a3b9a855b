"""Resources a task asks for, parsed once at the edge, and the rules that escalate them.

Memory is stored in bytes and runtime in seconds so that every backend renders
from the same numbers; binary units are used because Slurm and Grid Engine use
them (1G = 2**30 bytes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

import attrs

from gristmill.errors import SpecError
from gristmill.merge import merge_fields

# Parsing and rendering live in gristmill.units (no attrs there, for the worker); their
# names stay importable from here.
from gristmill.units import MAX_DURATION as MAX_DURATION
from gristmill.units import format_duration as format_duration
from gristmill.units import format_memory as format_memory
from gristmill.units import format_memory_mb as format_memory_mb
from gristmill.units import parse_duration as parse_duration
from gristmill.units import parse_memory as parse_memory
from gristmill.units import parse_memory_with_unit as parse_memory_with_unit

MemoryLike = Union[int, float, str]
DurationLike = Union[int, float, str]


def _join_extra(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    return dict(base) | dict(override)


def _opt_memory(value: MemoryLike | None) -> int | None:
    return None if value is None else parse_memory(value)


def _opt_duration(value: DurationLike | None) -> int | None:
    return None if value is None else parse_duration(value)


def _opt_count(what: str, minimum: int) -> Callable[[object], int | None]:
    def convert(value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise SpecError(f"{what}: {value!r} is not a whole number; use e.g. {max(minimum, 1)}")
        try:
            number = int(value)
        except ValueError:
            raise SpecError(
                f"{what}: {value!r} is not a whole number; use e.g. {max(minimum, 1)}"
            ) from None
        if number < minimum:
            raise SpecError(
                f"{what}: {value!r} must be at least {minimum}; use e.g. {max(minimum, 1)}"
            )
        return number

    return convert


def _opt_text(what: str) -> Callable[[object], str | None]:
    def convert(value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise SpecError(f"{what}: {value!r} must be a non-empty string")
        return value

    return convert


def _cores(value: object) -> int | None:
    return _opt_count("cores", 1)(value)


def _gpus(value: object) -> int | None:
    return _opt_count("gpus", 0)(value)


def _retries(value: object) -> int | None:
    return _opt_count("retries", 0)(value)


def _max_concurrent(value: object) -> int | None:
    return _opt_count("max_concurrent", 1)(value)


def _chunk(value: object) -> int | None:
    return _opt_count("chunk", 1)(value)


#: How a task's nodes start: ``exec`` (a fresh process each, the default) or ``fork``
#: (forks of one warm interpreter that imported the task; see docs/launch.md).
LAUNCH_MODES = ("exec", "fork")


def check_launch(value: object, task: str | None = None) -> str | None:
    """``launch`` as given (None: not set); anything but ``exec``/``fork`` is a SpecError
    naming the task (when known) and the allowed values."""
    if value is None or value in LAUNCH_MODES:
        return value
    where = f"task {task!r}: " if task else ""
    raise SpecError(f"{where}launch: {value!r} is not a launch mode; use one of "
                    f"{', '.join(LAUNCH_MODES)} (e.g. launch: fork)")


def _launch(value: object) -> str | None:
    return check_launch(value)


def _queue(value: object) -> str | None:
    return _opt_text("queue")(value)


def _project(value: object) -> str | None:
    return _opt_text("project")(value)


def _frozen_extra(value: Mapping[str, object] | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if isinstance(value, tuple):
        return value  # already normalised
    if not isinstance(value, Mapping):
        raise SpecError(f"extra: {value!r} must be a mapping of site flags to values")
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


@attrs.frozen
class Resources:
    """What one attempt of a task asks the backend for; ``None`` means "not set here".

    Unset fields let layers merge: decorator < spec default < spec task <
    per-call ``resources=`` < CLI flags (see :meth:`merged_with`).
    """

    mem: int | None = attrs.field(default=None, converter=_opt_memory)
    cores: int | None = attrs.field(default=None, converter=_cores)
    runtime: int | None = attrs.field(default=None, converter=_opt_duration)
    queue: str | None = attrs.field(default=None, converter=_queue)
    gpus: int | None = attrs.field(default=None, converter=_gpus)
    project: str | None = attrs.field(default=None, converter=_project)
    extra: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_frozen_extra)

    def merged_with(self, override: Resources | None) -> Resources:
        """Return these resources with every field that ``override`` sets replaced."""
        return merge_fields(self, override, {"extra": _join_extra})

    def as_dict(self) -> dict[str, object]:
        """The set fields only, in the units the store and the spec file use."""
        out: dict[str, object] = {}
        for f in attrs.fields(Resources):
            value = getattr(self, f.name)
            if f.name == "extra":
                if value:
                    out["extra"] = dict(value)
            elif value is not None:
                out[f.name] = value
        return out

    def describe(self) -> str:
        """A short human summary, e.g. ``mem=10G cores=1 runtime=00:16:40``."""
        parts = []
        if self.mem is not None:
            parts.append(f"mem={format_memory(self.mem)}")
        if self.cores is not None:
            parts.append(f"cores={self.cores}")
        if self.runtime is not None:
            parts.append(f"runtime={format_duration(self.runtime)}")
        for name in ("queue", "gpus", "project"):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}={value}")
        parts.extend(f"{k}={v}" for k, v in self.extra)
        return " ".join(parts) or "(none)"


#: The resources a task gets when nothing at all is said about it.
DEFAULT_RESOURCES = Resources(mem="1G", cores=1, runtime="1h")

def _factor(value: object) -> float:
    text = str(value).strip().lower()
    if text.startswith("x"):
        text = text[1:]
    try:
        factor = float(text)
    except ValueError:
        raise SpecError(f"{value!r} is not a growth factor; use e.g. x1.5") from None
    if not factor > 1.0:
        raise SpecError(f"growth factor {value!r} must be greater than 1; use e.g. x1.5")
    return factor


@attrs.frozen
class Escalation:
    """How a resource grows before a retry after an OOM or a TIMEOUT, up to a cap.

    A spec writes ``on_oom: {mem: x1.5, max: 64G}`` or ``on_timeout: {runtime: x2}``.
    """

    resource: Literal["mem", "runtime"]
    factor: float = attrs.field(converter=_factor)
    cap: int | None = None

    def apply(self, resources: Resources, base: Resources) -> Resources | None:
        """Grow ``resources``; ``None`` when already at the cap (retrying would not help).

        ``base`` supplies the value when the attempt's resources leave it unset.
        """
        current = getattr(resources, self.resource) or getattr(base, self.resource)
        if current is None:
            return None
        grown = math.ceil(current * self.factor)
        if self.resource == "mem":  # whole MiB: what every scheduler can be asked for
            grown = math.ceil(grown / 2**20) * 2**20
        if self.cap is not None:
            if current >= self.cap:
                return None
            grown = min(grown, self.cap)
        changes: dict[str, Any] = {self.resource: grown}
        return attrs.evolve(resources, **changes)

    def describe(self) -> str:
        cap = ""
        if self.cap is not None:
            mem = self.resource == "mem"
            cap_text = format_memory(self.cap) if mem else format_duration(self.cap)
            cap = f" up to {cap_text}"
        return f"{self.resource} x{self.factor:g}{cap}"


def escalation(
    resource: Literal["mem", "runtime"], factor: object, cap: object = None
) -> Escalation:
    """Build an :class:`Escalation`, parsing ``cap`` in the resource's own units."""
    parsed_cap: int | None = None
    if cap is not None:
        parsed_cap = (
            parse_memory(cap, what="on_oom.max")  # type: ignore[arg-type]
            if resource == "mem"
            else parse_duration(cap, what="on_timeout.max")  # type: ignore[arg-type]
        )
    return Escalation(resource, factor, parsed_cap)


DEFAULT_ON_OOM = escalation("mem", 1.5)
DEFAULT_ON_TIMEOUT = escalation("runtime", 2)


@attrs.frozen
class Policy:
    """Per-task run policy that is not a resource: retries, escalation, concurrency, launch.

    ``None`` means "not set here", so layers merge the way :class:`Resources` do.
    """

    retries: int | None = attrs.field(default=None, converter=_retries)
    max_concurrent: int | None = attrs.field(default=None, converter=_max_concurrent)
    on_oom: Escalation | None = None
    on_timeout: Escalation | None = None
    #: How many ready nodes of the task (same resources) a scheduler backend may pack into
    #: one job, run one after another inside it (docs/chunks.md); None and 1 mean one each.
    chunk: int | None = attrs.field(default=None, converter=_chunk)


    #: ``"exec"`` or ``"fork"`` (:data:`LAUNCH_MODES`); None: not set here (exec).
    launch: str | None = attrs.field(default=None, converter=_launch)

    def merged_with(self, override: Policy | None) -> Policy:
        """Return this policy with every field that ``override`` sets replaced."""
        return merge_fields(self, override)
