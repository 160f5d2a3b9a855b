"""Spec settings back to YAML-able data, in the units people write.

Memory reads ``"12G"`` (``"1000B"`` when not a whole KiB: a spec's sizes always name
their unit), runtime compact units (``"2h"``, ``"1h30m"``), growth factors ``"x1.5"``;
parsing these gives the same values back, so a spec survives a round trip through a
file, and so does what ``gristmill spec`` prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gristmill.resources import Escalation, format_memory

if TYPE_CHECKING:
    from gristmill.spec.settings import TaskSettings, WorkflowSettings


def _memory_text(num_bytes: int) -> str:
    return format_memory(num_bytes) if num_bytes % 1024 == 0 else f"{num_bytes}B"


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


def task_dict(settings: TaskSettings) -> dict[str, object]:
    """A task's settings as a spec section (``default:`` or ``tasks.<name>:``)."""
    out = settings.resources.as_dict()
    if settings.resources.mem is not None:
        out["mem"] = _memory_text(settings.resources.mem)
    if settings.resources.runtime is not None:
        out["runtime"] = _runtime_text(settings.resources.runtime)
    policy = settings.policy
    for name, value in (("retries", policy.retries), ("max_concurrent", policy.max_concurrent),
                        ("chunk", policy.chunk),
                        ("launch", policy.launch)):
        if value is not None:
            out[name] = value
    for name, rule in (("on_oom", policy.on_oom), ("on_timeout", policy.on_timeout)):
        if rule is not None:
            out[name] = _escalation_dict(rule)
    return out


def workflow_dict(settings: WorkflowSettings) -> dict[str, object]:
    """The ``workflow:`` section; ``project``/``queue`` are not here but under ``default:``."""
    out: dict[str, object] = {}
    for name in ("backend", "max_concurrent", "fail_fast"):
        if getattr(settings, name) is not None:
            out[name] = getattr(settings, name)
    if settings.poll_interval is not None:
        interval = settings.poll_interval
        out["poll_interval"] = int(interval) if interval.is_integer() else interval
    if settings.backend_options:
        out["options"] = dict(settings.backend_options)
    for name in ("on_success", "on_failure"):
        if getattr(settings, name) is not None:
            out[name] = getattr(settings, name)
    return out
