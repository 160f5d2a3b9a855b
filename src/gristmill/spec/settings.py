"""What a spec says about one task and about the workflow: the values its sections become.

Both merge field-wise, so spec layers (``tasks.<name>:`` over ``default:``, a CLI
``--spec`` over a workflow's own) combine one key at a time.
"""

from __future__ import annotations

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

    def merged_with(self, other: WorkflowSettings | None) -> WorkflowSettings:
        """Field-wise merge: every field ``other`` sets wins; options merge key by key."""
        return merge_fields(self, other, {"backend_options": _join_options})
