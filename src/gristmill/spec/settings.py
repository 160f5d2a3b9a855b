"""What a spec says about one task and about the workflow: the values its sections become.

Both merge field-wise, so spec layers (``tasks.<name>:`` over ``default:``, a CLI
``--spec`` over a workflow's own) combine one key at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from gristmill.merge import merge_fields
from gristmill.resources import Policy, Resources


@attrs.frozen
class TaskSettings:
    """What a spec says about one task (or about every task, under ``default:``)."""

    resources: Resources = attrs.field(factory=Resources)
    policy: Policy = attrs.field(factory=Policy)

    def merged_with(self, other: TaskSettings | None) -> TaskSettings:
        """Field-wise merge: every field ``other`` sets wins."""
        return merge_fields(self, other, {"resources": Resources.merged_with,
                                          "policy": Policy.merged_with})


def idle_escalations(policies: Iterable[tuple[str, Policy]]) -> list[str]:
    """A warning for each task whose ``on_oom``/``on_timeout`` can never apply.

    A rule grows the resources of the *retry* after an OOM or a TIMEOUT; with
    ``retries`` 0 (or unset) there is no retry, so a rule someone wrote does nothing.
    ``policies`` are (task name, merged policy) pairs; a name's first pair counts.
    """
    first: dict[str, Policy] = {}
    for task, policy in policies:
        first.setdefault(task, policy)
    warnings = []
    for task, policy in first.items():
        rules = [f"{name} ({rule.describe()})"
                 for name, rule in (("on_oom", policy.on_oom), ("on_timeout", policy.on_timeout))
                 if rule is not None]
        if rules and not policy.retries:
            one = len(rules) == 1
            warnings.append(
                f"task {task!r}: {' and '.join(rules)} {'does' if one else 'do'} nothing while "
                f"retries is 0, as {'it grows' if one else 'they grow'} the resources of a "
                f"retry; set retries (e.g. `retries: 2` under tasks.{task} in the spec, or "
                "--retries 2)"
            )
    return warnings


def _join_options(
    base: tuple[tuple[str, Any], ...], override: tuple[tuple[str, Any], ...]
) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((dict(base) | dict(override)).items()))


@attrs.frozen
class WorkflowSettings:
    """The ``workflow:`` section, minus ``project``/``queue`` (those become default resources)."""

    backend: str | None = None
    max_concurrent: int | None = None
    fail_fast: bool | None = None
    poll_interval: float | None = None
    #: Site or backend specific ``workflow.options``, passed through as strings.
    backend_options: tuple[tuple[str, str], ...] = ()
    #: Shell commands run when the run ends (see :mod:`gristmill.engine.hooks`).
    on_success: str | None = None
    on_failure: str | None = None

    def merged_with(self, other: WorkflowSettings | None) -> WorkflowSettings:
        """Field-wise merge: every field ``other`` sets wins; options merge key by key."""
        return merge_fields(self, other, {"backend_options": _join_options})
