"""What a spec says about one task and about the workflow: the values its sections become.

Both merge field-wise, so spec layers (``tasks.<name>:`` over ``default:``, a CLI
``--spec`` over a workflow's own) combine one key at a time.
"""

from __future__ import annotations

from typing import Any

import attrs

from gristmill.resources import Policy, Resources


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
